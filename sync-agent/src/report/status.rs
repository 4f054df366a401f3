//! The `GitOpsSync` object: how one agent reports, in the shape of DESIGN.md
//! ("Ownership, inventory and status in the cluster").

use std::fmt;

use gitops_shared::{ObjectKey, gitopssync, plan::Drift};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::debug;

use crate::cluster;

/// The longest message written (the CRD allows 32768 in a condition).
const MAX_MESSAGE: usize = 16 * 1024;

/// `status.phase`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Synced,
    #[default]
    Progressing,
    Failed,
    Drifted,
    Suspended,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Synced => "Synced",
            Phase::Progressing => "Progressing",
            Phase::Failed => "Failed",
            Phase::Drifted => "Drifted",
            Phase::Suspended => "Suspended",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `status.inventory[]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InventoryEntry {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
}

impl From<&ObjectKey> for InventoryEntry {
    fn from(k: &ObjectKey) -> Self {
        Self {
            group: k.group.clone(),
            kind: k.kind.clone(),
            name: k.name.clone(),
        }
    }
}

impl InventoryEntry {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.group, &self.kind, &self.name)
    }
}

/// `status.drift[]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DriftEntry {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub reason: String,
}

impl From<&Drift> for DriftEntry {
    fn from(d: &Drift) -> Self {
        Self {
            group: d.key.group.clone(),
            kind: d.key.kind.clone(),
            name: d.key.name.clone(),
            reason: d.reason.clone(),
        }
    }
}

/// `status.conditions[]`, the usual Kubernetes shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// `GitOpsSync.status`, written whole on every report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncStatus {
    /// The git commit that is fully applied (empty until one is).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// The newest commit seen (it may have failed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub observed_revision: String,
    pub phase: Phase,
    /// RFC 3339 time of the last successful sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<String>,
    pub message: String,
    /// Sorted.
    pub inventory: Vec<InventoryEntry>,
    /// Sorted; empty when none.
    pub drift: Vec<DriftEntry>,
    /// `drift.len()`, for the Drifted printer column.
    pub drifted: u32,
    pub conditions: Vec<Condition>,
}

impl SyncStatus {
    /// The inventory as object keys.
    pub fn inventory_keys(&self) -> Vec<ObjectKey> {
        self.inventory.iter().map(InventoryEntry::key).collect()
    }

    pub fn set_inventory<'a>(&mut self, keys: impl IntoIterator<Item = &'a ObjectKey>) {
        let mut inv: Vec<InventoryEntry> = keys.into_iter().map(InventoryEntry::from).collect();
        inv.sort();
        inv.dedup();
        self.inventory = inv;
    }

    pub fn set_drift<'a>(&mut self, drift: impl IntoIterator<Item = &'a Drift>) {
        let mut d: Vec<DriftEntry> = drift.into_iter().map(DriftEntry::from).collect();
        d.sort();
        d.dedup();
        self.drifted = u32::try_from(d.len()).unwrap_or(u32::MAX);
        self.drift = d;
    }

    /// Set phase, message and the `Ready` condition (its transition time
    /// moves only when its status does).
    pub fn set_phase(
        &mut self,
        phase: Phase,
        reason: &str,
        message: &str,
        generation: Option<i64>,
        now: Timestamp,
    ) {
        self.phase = phase;
        self.message = truncate(message);
        let ready = if matches!(phase, Phase::Synced) {
            "True"
        } else {
            "False"
        };
        let last_transition_time = match self.conditions.iter().find(|c| c.type_ == "Ready") {
            Some(c) if c.status == ready => c.last_transition_time.clone(),
            _ => rfc3339(now),
        };
        self.conditions.retain(|c| c.type_ != "Ready");
        self.conditions.push(Condition {
            type_: "Ready".into(),
            status: ready.into(),
            reason: reason.into(),
            message: self.message.clone(),
            last_transition_time,
            observed_generation: generation,
        });
        self.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    }

    /// The body of a server-side apply of the status subresource.
    pub fn apply_body(&self, name: &str) -> Value {
        json!({
            "apiVersion": format!("{}/{}", gitopssync::GROUP, gitopssync::VERSION),
            "kind": gitopssync::KIND,
            "metadata": {"name": name},
            "status": self,
        })
    }
}

/// RFC 3339, whole seconds, UTC (`2026-11-29T01:02:03Z`).
pub fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ... (truncated)", &message[..end])
}

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
    last_written: Option<SyncStatus>,
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
        let (status, unreadable) = match object.data.get("status").cloned() {
            None | Some(Value::Null) => (SyncStatus::default(), None),
            Some(raw) => match serde_json::from_value(raw) {
                Ok(status) => (status, None),
                Err(e) => (SyncStatus::default(), Some(e.to_string())),
            },
        };
        Ok(Control {
            exists: true,
            suspend: object.data["spec"]["suspend"].as_bool().unwrap_or(false),
            generation: object.metadata.generation,
            status,
            unreadable,
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
        if self.last_written.as_ref() == Some(status) {
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
        self.last_written = Some(status.clone());
        Ok(true)
    }

    /// Take `status` as what the object holds now (read back at start-up).
    pub fn assume_written(&mut self, status: &SyncStatus) {
        self.last_written = Some(status.clone());
    }

    /// Forget what was written (the object was deleted or re-created).
    pub fn forget(&mut self) {
        self.last_written = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn status_serializes_in_the_contract_shape() {
        let mut s = SyncStatus {
            revision: "abc".into(),
            observed_revision: "abc".into(),
            synced_at: Some(rfc3339(ts(1_800_000_000))),
            ..SyncStatus::default()
        };
        let keys = [
            ObjectKey::new("networking.istio.io", "VirtualService", "reviews"),
            ObjectKey::new("networking.istio.io", "DestinationRule", "reviews"),
        ];
        s.set_inventory(keys.iter());
        s.set_drift(&[Drift {
            key: keys[0].clone(),
            reason: "spec.x: Git has 1, live has 2".into(),
        }]);
        s.set_phase(
            Phase::Drifted,
            "Drifted",
            "1 object drifted",
            Some(3),
            ts(1_800_000_000),
        );
        let body = s.apply_body("sync-agent");
        assert_eq!(body["apiVersion"], "kubectl-gitops.io/v1alpha1");
        assert_eq!(body["kind"], "GitOpsSync");
        assert_eq!(body["metadata"]["name"], "sync-agent");
        let st = &body["status"];
        assert_eq!(st["revision"], "abc");
        assert_eq!(st["observedRevision"], "abc");
        assert_eq!(st["phase"], "Drifted");
        assert_eq!(st["syncedAt"], "2027-01-15T08:00:00Z");
        assert_eq!(st["message"], "1 object drifted");
        assert_eq!(
            st["inventory"],
            json!([
                {"group": "networking.istio.io", "kind": "DestinationRule", "name": "reviews"},
                {"group": "networking.istio.io", "kind": "VirtualService", "name": "reviews"}
            ])
        );
        assert_eq!(
            st["drift"],
            json!([{"group": "networking.istio.io", "kind": "VirtualService", "name": "reviews", "reason": "spec.x: Git has 1, live has 2"}])
        );
        assert_eq!(st["drifted"], 1);
        assert_eq!(
            st["conditions"],
            json!([{"type": "Ready", "status": "False", "reason": "Drifted", "message": "1 object drifted",
                    "lastTransitionTime": "2027-01-15T08:00:00Z", "observedGeneration": 3}])
        );
        // and reads back the same (inventory survives restarts)
        let back: SyncStatus = serde_json::from_value(st.clone()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.inventory_keys()[1], keys[0]);
    }

    #[test]
    fn ready_transition_time_moves_only_when_ready_flips() {
        let mut s = SyncStatus::default();
        s.set_phase(Phase::Synced, "Synced", "ok", None, ts(100));
        s.set_phase(Phase::Synced, "Synced", "still ok", None, ts(200));
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(s.conditions[0].last_transition_time, rfc3339(ts(100)));
        s.set_phase(Phase::Failed, "InvalidRevision", "bad", None, ts(300));
        assert_eq!(s.conditions[0].status, "False");
        assert_eq!(s.conditions[0].last_transition_time, rfc3339(ts(300)));
        s.set_phase(Phase::Drifted, "Drifted", "d", None, ts(400));
        assert_eq!(s.conditions[0].last_transition_time, rfc3339(ts(300)));
    }

    #[test]
    fn a_fresh_status_omits_what_is_not_known_yet_and_messages_are_bounded() {
        let mut s = SyncStatus::default();
        s.set_phase(Phase::Failed, "X", &"é".repeat(20_000), None, ts(0));
        let v = serde_json::to_value(&s).unwrap();
        assert!(v.get("revision").is_none());
        assert!(v.get("syncedAt").is_none());
        assert_eq!(v["inventory"], json!([]));
        assert_eq!(v["drift"], json!([]));
        assert!(s.message.len() < MAX_MESSAGE + 20);
        assert!(s.message.ends_with("(truncated)"));
    }
}
