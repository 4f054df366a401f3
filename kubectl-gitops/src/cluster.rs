//! All access to the cluster through kube: the kubeconfig (honouring
//! `--kubeconfig`, `$KUBECONFIG`, `--context` and the context's namespace as
//! kubectl does), reads of Istio objects and `GitOpsSync`s, and the one write
//! the plugin makes, `spec.suspend`.

use std::{path::Path, sync::Arc};

use anyhow::{Context as _, Result, anyhow, bail};
use gitops_kube::{
    errors::is_status,
    gitopssync::GitOpsSync,
    live::Live,
    resources::{Served, gitopssync_resource},
};
use gitops_shared::{IstioKind, drift::Schemas};
use kube::{
    Client, Config,
    api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig, KubeconfigError},
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::cli::Global;

/// The namespace a command works in when `-n` is not given: the kubeconfig
/// context's, else `default`, as kubectl does. Reads the kubeconfig only.
pub fn context_namespace(global: &Global) -> Result<String> {
    let config = match &global.kubeconfig {
        Some(path) => Some(read_kubeconfig(path)?),
        None => Kubeconfig::read().ok(),
    };
    let Some(config) = config else {
        if let Some(context) = &global.context {
            bail!("context {context:?} not found: there is no kubeconfig");
        }
        return Ok("default".to_string());
    };
    let name = global.context.clone().or(config.current_context.clone());
    let Some(name) = name else {
        return Ok("default".to_string());
    };
    let context = config.contexts.iter().find(|c| c.name == name);
    match context {
        Some(c) => Ok(c
            .context
            .as_ref()
            .and_then(|c| c.namespace.clone())
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_string())),
        None if global.context.is_some() => {
            bail!("context {name:?} not found in the kubeconfig")
        }
        None => Ok("default".to_string()),
    }
}

/// `kubectl-gitops/<version>`, the user agent of the plugin's requests.
pub fn user_agent() -> String {
    format!("kubectl-gitops/{}", env!("CARGO_PKG_VERSION"))
}

fn read_kubeconfig(path: &Path) -> Result<Kubeconfig> {
    Kubeconfig::read_from(path).map_err(said_once)
}

/// A kubeconfig error said once: kube's own message already holds its
/// cause (and quotes the path), so it is neither chained nor wrapped again.
fn said_once(error: KubeconfigError) -> anyhow::Error {
    match error {
        KubeconfigError::ReadConfig(io, path) => {
            anyhow!("cannot read kubeconfig {}: {io}", path.display())
        }
        other => anyhow!("kubeconfig: {other}"),
    }
}

/// Run a future on a small runtime: the CLI does one thing at a time.
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(future))
}

/// A connection to the cluster of the chosen kubeconfig context.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    /// What the connection is to, for messages.
    pub server: String,
    /// The versions the server serves, read from its discovery once.
    served: Arc<OnceCell<Served>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .finish()
    }
}

/// A `GitOpsSync` read part by part ([`GitOpsSync::read`]); unreadable is an error.
fn readable(object: DynamicObject) -> Result<GitOpsSync> {
    let read = GitOpsSync::read(object);
    match read.unreadable {
        None => Ok(read.sync),
        Some(why) => bail!(
            "GitOpsSync {} in {} does not parse ({why}): was it written by another version of the agent?",
            read.sync.metadata.name.as_deref().unwrap_or_default(),
            read.sync.metadata.namespace.as_deref().unwrap_or_default(),
        ),
    }
}

/// A dynamic object as JSON, with `apiVersion` and `kind` always set.
fn to_value(object: DynamicObject, resource: &ApiResource) -> Result<Value> {
    let mut value = serde_json::to_value(object)?;
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| resource.api_version.clone().into());
        map.entry("kind")
            .or_insert_with(|| resource.kind.clone().into());
    }
    Ok(value)
}

impl Cluster {
    /// Connect with the kubeconfig (`--kubeconfig`, else `$KUBECONFIG`, else
    /// `~/.kube/config`; in a pod without one, the in-cluster config).
    pub async fn connect(global: &Global) -> Result<Self> {
        let options = KubeConfigOptions {
            context: global.context.clone(),
            cluster: None,
            user: None,
        };
        let config = match &global.kubeconfig {
            Some(path) => Config::from_custom_kubeconfig(read_kubeconfig(path)?, &options)
                .await
                .map_err(said_once)
                .with_context(|| format!("loading kubeconfig {}", path.display()))?,
            None => match Config::from_kubeconfig(&options).await {
                Ok(config) => config,
                Err(kubeconfig_error) if global.context.is_none() => Config::incluster()
                    .map_err(|_| said_once(kubeconfig_error))
                    .context("loading the kubeconfig (pass --kubeconfig or set KUBECONFIG)")?,
                Err(e) => return Err(said_once(e)).context("loading the kubeconfig"),
            },
        };
        let server = config.cluster_url.to_string();
        let mut config = config;
        // The server's audit log then names the plugin, as it names kubectl.
        if let (Ok(name), Ok(value)) = ("user-agent".parse(), user_agent().parse()) {
            config.headers.push((name, value));
        }
        let client =
            gitops_kube::client::build(config).context("creating the Kubernetes client")?;
        Ok(Self {
            client,
            server,
            served: Arc::default(),
        })
    }

    /// What the server serves of the Istio kinds (its discovery, read once).
    async fn served(&self) -> Result<&Served> {
        self.served
            .get_or_try_init(|| async {
                Served::discover(&self.client)
                    .await
                    .map_err(self.context("reading the API server's discovery".into()))
            })
            .await
    }

    /// The live objects the plan of `namespace` is made against, listed as
    /// the agent lists them ([`gitops_kube::live::list`]); `manager` is the
    /// agent's field manager.
    pub async fn live(
        &self,
        namespace: &str,
        in_use: &[&'static IstioKind],
        manager: &str,
    ) -> Result<Live> {
        let served = self.served().await?;
        gitops_kube::live::list(&self.client, namespace, in_use, served, manager)
            .await
            .map_err(self.context(format!("listing the live objects in {namespace}")))
    }

    /// The list types and defaults of `kinds`, from the server's OpenAPI, as
    /// the agent reads them ([`gitops_kube::schema::read`]).
    pub async fn schemas(&self, kinds: &[&'static IstioKind]) -> Result<Schemas> {
        let served = self.served().await?;
        let mut cache = gitops_kube::schema::Cache::default();
        gitops_kube::schema::read(&self.client, served, kinds, &mut cache)
            .await
            .map_err(self.context("reading the API server's OpenAPI schemas".into()))
    }

    fn context(&self, what: String) -> impl FnOnce(kube::Error) -> anyhow::Error + '_ {
        move |e| anyhow::Error::new(e).context(format!("{what} (server {})", self.server))
    }

    /// One live object, `None` when it does not exist.
    pub async fn get(
        &self,
        kind: &IstioKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>> {
        let resource = self.served().await?.resource(kind);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        match api.get_opt(name).await {
            Ok(Some(o)) => Ok(Some(to_value(o, &resource)?)),
            Ok(None) => Ok(None),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(self
                .context(format!("reading {}/{name} in {namespace}", kind.kind))(
                e
            )),
        }
    }

    /// The objects of one kind in a namespace, optionally label-selected;
    /// `None` when the cluster does not serve the kind (no CRD).
    pub async fn list(
        &self,
        kind: &IstioKind,
        namespace: &str,
        selector: Option<&str>,
    ) -> Result<Option<Vec<Value>>> {
        let resource = self.served().await?.resource(kind);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let mut params = ListParams::default();
        if let Some(s) = selector {
            params = params.labels(s);
        }
        match api.list(&params).await {
            Ok(list) => Ok(Some(
                list.items
                    .into_iter()
                    .map(|o| to_value(o, &resource))
                    .collect::<Result<_>>()?,
            )),
            Err(e) if is_status(&e, 404) => {
                tracing::debug!(kind = kind.kind, "kind not served by the cluster");
                Ok(None)
            }
            Err(e) => Err(self
                .context(format!("listing {} in {namespace}", kind.plural))(
                e
            )),
        }
    }

    /// The namespace's `GitOpsSync` named `name`, `None` when absent (or the
    /// CRD is not installed). A spec or status that does not parse is an
    /// error naming the object, never an empty status.
    pub async fn gitopssync(&self, namespace: &str, name: &str) -> Result<Option<GitOpsSync>> {
        let resource = gitopssync_resource();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        match api.get_opt(name).await {
            Ok(o) => o.map(readable).transpose(),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(self
                .context(format!("reading GitOpsSync {name} in {namespace}"))(
                e
            )),
        }
    }

    /// Every `GitOpsSync` in the cluster (the fleet).
    pub async fn all_gitopssyncs(&self) -> Result<Vec<GitOpsSync>> {
        let resource = gitopssync_resource();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        match api.list(&ListParams::default()).await {
            Ok(list) => list.items.into_iter().map(readable).collect(),
            Err(e) if is_status(&e, 404) => bail!(
                "the cluster has no GitOpsSync resource (CRD gitopssyncs.kubectl-gitops.io): is the sync agent installed?"
            ),
            Err(e) => Err(self.context("listing GitOpsSyncs in all namespaces".into())(e)),
        }
    }

    /// Set `spec.suspend` on the namespace's `GitOpsSync`: the plugin's only
    /// write to the cluster.
    pub async fn set_suspend(&self, namespace: &str, name: &str, suspend: bool) -> Result<Value> {
        let resource = gitopssync_resource();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let patch = json!({"spec": {"suspend": suspend}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(o) => to_value(o, &resource),
            Err(e) if is_status(&e, 404) => bail!(
                "no GitOpsSync {name:?} in namespace {namespace:?}: is the sync agent deployed there?"
            ),
            Err(e) => Err(self
                .context(format!("patching GitOpsSync {name} in {namespace}"))(
                e
            )),
        }
    }
}
