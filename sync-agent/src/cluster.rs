//! The agent's cluster access: the client and its retries. What both
//! programs share (Istio kind -> API resource, API error classes) lives in
//! `gitops-kube` and is re-exported here.

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};

/// How long one request may take. Writes and lists are small; a server whose
/// storage is gone answers 5xx long before this, but a hung connection must
/// not hang the loop.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Clients for requests and for long-running watches.
#[derive(Clone)]
pub struct Clients {
    pub requests: Client,
    pub watches: Client,
    /// The server's URL, for the start-up log.
    pub url: String,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").field("url", &self.url).finish()
    }
}

/// Connect with `kubeconfig`, or in-cluster, then `KUBECONFIG` /
/// `~/.kube/config` (DESIGN.md: "default: in-cluster, then KUBECONFIG").
pub async fn connect(
    kubeconfig: Option<&Path>,
    namespace: &str,
    identity: &str,
) -> anyhow::Result<Clients> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => match kube::Config::incluster() {
            Ok(config) => config,
            Err(_) => kube::Config::infer()
                .await
                .context("no in-cluster service account and no usable KUBECONFIG or ~/.kube/config; pass --kubeconfig")?,
        },
    };
    let url = config.cluster_url.to_string();
    let mut config = config;
    // The server's audit log then names the agent and its namespace.
    if let (Ok(name), Ok(value)) = (
        "user-agent".parse(),
        user_agent(namespace, identity).parse(),
    ) {
        config.headers.push((name, value));
    }
    // kube's own retry layer retries 429/503/504 up to 15 times with waits
    // up to 1000 s: a storage outage would hang the loop for many minutes.
    // Retries are ours (`backoff`, `retry_now`), and bounded.
    config.default_retry = false;
    let mut requests = config.clone();
    requests.read_timeout = Some(REQUEST_TIMEOUT);
    requests.write_timeout = Some(REQUEST_TIMEOUT);
    requests.connect_timeout = Some(CONNECT_TIMEOUT);
    let mut watches = config;
    watches.connect_timeout = Some(CONNECT_TIMEOUT);
    let requests = gitops_kube::client::build(requests);
    let watches = gitops_kube::client::build(watches);
    Ok(Clients {
        requests: requests.context("building the API client")?,
        watches: watches.context("building the API watch client")?,
        url,
    })
}

/// `sync-agent/<version> (<namespace>) <identity>`: the audit log names
/// the namespace and the replica.
pub fn user_agent(namespace: &str, identity: &str) -> String {
    format!(
        "sync-agent/{} ({namespace}) {identity}",
        env!("CARGO_PKG_VERSION")
    )
}

pub use gitops_kube::{
    errors::{describe, is_timeout, is_transient, retry_after, retry_now, status_code},
    resources::{api_resource, gitopssync_resource},
    retry::{backoff, call},
};
