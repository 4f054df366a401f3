//! The `GitOpsSync` object: how one agent reports, in the shape of DESIGN.md
//! ("Ownership, inventory and status in the cluster").

use gitops_kube::gitopssync::GitOpsSync;
pub use gitops_kube::gitopssync::{Phase, SyncStatus};
use gitops_shared::gitopssync;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
};
use serde_json::json;
use tracing::debug;

use crate::cluster;

/// What the agent reads from its `GitOpsSync`.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub exists: bool,
    pub suspend: bool,
    pub generation: Option<i64>,
    pub status: SyncStatus,
    /// Why the status in the cluster does not parse (written by another
    /// version of the agent, say). Its inventory is then unknown.
    pub unreadable: Option<String>,
}

/// Reads and writes the agent's `GitOpsSync`.
#[derive(Debug, Clone)]
pub struct Reporter {
    api: Api<DynamicObject>,
    name: String,
    field_manager: String,
    /// A digest of the status written last (not a copy: at 5,000 objects
    /// its inventory was half a megabyte).
    last_written: Option<String>,
}

impl Reporter {
    pub fn new(client: Client, namespace: &str, name: &str, field_manager: &str) -> Self {
        Self {
            api: Api::namespaced_with(client, namespace, &cluster::gitopssync_resource()),
            name: name.to_string(),
            field_manager: field_manager.to_string(),
            last_written: None,
        }
    }

    pub fn api(&self) -> &Api<DynamicObject> {
        &self.api
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object's suspend flag, generation and status (defaults when absent).
    pub async fn read(&self) -> Result<Control, kube::Error> {
        let object = cluster::call(|| self.api.get_opt(&self.name), None).await?;
        let Some(object) = object else {
            return Ok(Control::default());
        };
        let generation = object.metadata.generation;
        let read = GitOpsSync::read(object);
        Ok(Control {
            exists: true,
            suspend: read.sync.suspended(),
            generation,
            status: read.sync.status.unwrap_or_default(),
            unreadable: read.unreadable,
        })
    }

    /// Create the object if it is missing: a server-side apply of just its
    /// identity, which leaves `spec` (the plugin's `suspend`) alone.
    pub async fn ensure(&self) -> Result<Option<i64>, kube::Error> {
        let body = json!({
            "apiVersion": format!("{}/{}", gitopssync::GROUP, gitopssync::VERSION),
            "kind": gitopssync::KIND,
            "metadata": {"name": self.name},
        });
        let params = PatchParams::apply(&self.field_manager).force();
        let patch = Patch::Apply(&body);
        let object = cluster::call(|| self.api.patch(&self.name, &params, &patch), None).await?;
        Ok(object.metadata.generation)
    }

    /// Write `status` unless it is what was written last. Returns whether it wrote.
    pub async fn write(&mut self, status: &SyncStatus) -> Result<bool, kube::Error> {
        let digest = digest(status);
        if self.last_written.as_ref() == Some(&digest) {
            return Ok(false);
        }
        let body = status.apply_body(&self.name);
        let params = PatchParams::apply(&self.field_manager).force();
        let apply = Patch::Apply(&body);
        let patch = || self.api.patch_status(&self.name, &params, &apply);
        let result = cluster::call(patch, None).await;
        match result {
            Ok(_) => {}
            Err(e) if cluster::status_code(&e) == Some(404) => {
                debug!("GitOpsSync missing; creating it");
                self.ensure().await?;
                cluster::call(patch, None).await?;
            }
            Err(e) => return Err(e),
        }
        self.last_written = Some(digest);
        Ok(true)
    }

    /// Take `status` as what the object holds now (read back at start-up).
    pub fn assume_written(&mut self, status: &SyncStatus) {
        self.last_written = Some(digest(status));
    }

    /// Forget what was written (the object was deleted or re-created).
    pub fn forget(&mut self) {
        self.last_written = None;
    }
}

/// What tells two statuses apart: the hash of their JSON.
fn digest(status: &SyncStatus) -> String {
    let json = serde_json::to_vec(status).unwrap_or_default();
    gitops_shared::hash::bytes_hash(&json)
}
