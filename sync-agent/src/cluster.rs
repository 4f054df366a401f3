//! The agent's cluster access: the client, how an Istio kind maps to an API
//! resource (from `gitops_shared::kinds`, so no discovery is needed), and
//! which API errors are worth retrying.

use std::{path::Path, time::Duration};

use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::Context as _;
use backon::{ExponentialBuilder, Retryable as _};
use gitops_shared::{IstioKind, gitopssync};
use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
    core::ApiResource,
};

/// How long one request may take. Writes and lists are small; a server whose
/// storage is gone answers 5xx long before this, but a hung connection must
/// not hang the loop.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

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
    requests.connect_timeout = Some(Duration::from_secs(10));
    let mut watches = config;
    watches.connect_timeout = Some(Duration::from_secs(10));
    Ok(Clients {
        requests: Client::try_from(requests).context("building the API client")?,
        watches: Client::try_from(watches).context("building the API watch client")?,
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

/// The API resource of `kind` at `version`.
pub fn api_resource(kind: &IstioKind, version: &str) -> ApiResource {
    ApiResource {
        group: kind.group.to_string(),
        version: version.to_string(),
        api_version: format!("{}/{version}", kind.group),
        kind: kind.kind.to_string(),
        plural: kind.plural.to_string(),
    }
}

/// The API resource of `GitOpsSync`.
pub fn gitopssync_resource() -> ApiResource {
    ApiResource {
        group: gitopssync::GROUP.to_string(),
        version: gitopssync::VERSION.to_string(),
        api_version: format!("{}/{}", gitopssync::GROUP, gitopssync::VERSION),
        kind: gitopssync::KIND.to_string(),
        plural: gitopssync::PLURAL.to_string(),
    }
}

/// Whether an error may go away by itself: the server or its storage is
/// unavailable (5xx), it asks us to slow down (429), or the connection failed.
/// A 4xx validation error will fail the same way every time.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429 || status.code == 0,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        // A body cut short by a dying server fails to parse.
        kube::Error::SerdeError(_) => true,
        _ => false,
    }
}

/// Whether to retry at once, within the same reconcile: a transient error
/// that came back fast. A timeout (the server's 504, or no answer in time)
/// already took long; the loop retries the whole reconcile later instead.
pub fn retry_now(error: &kube::Error) -> bool {
    is_transient(error) && status_code(error) != Some(504) && !is_timeout(error)
}

/// Whether the request timed out on our side.
pub fn is_timeout(error: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        let text = e.to_string();
        if text.contains("timed out") || text.contains("deadline has elapsed") {
            return true;
        }
        source = e.source();
    }
    false
}

/// The status code of an API error, if the server answered.
pub fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A short, readable form of an API error: the server's message when it sent one.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{} ({})", status.message, status.code)
        }
        other => format!("{other}"),
    }
}

/// An attempt that failed after this long is not retried at once: the
/// server already spent that long trying (its storage is gone, say).
const SLOW_FAILURE: Duration = Duration::from_secs(5);

/// Run one API call with [`backoff`]: retried at once while it fails fast
/// with a transient error ([`retry_now`]); not when an attempt was slow to
/// fail, nor once `stopping` is set (SIGTERM).
pub async fn call<T, F, Fut>(mut f: F, stopping: Option<&AtomicBool>) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let slow = AtomicBool::new(false);
    let attempt = || {
        let started = tokio::time::Instant::now();
        let fut = f();
        let slow = &slow;
        async move {
            let result = fut.await;
            slow.store(
                result.is_err() && started.elapsed() > SLOW_FAILURE,
                Ordering::SeqCst,
            );
            result
        }
    };
    attempt
        .retry(backoff())
        .when(|e| {
            retry_now(e)
                && !slow.load(Ordering::SeqCst)
                && !stopping.is_some_and(|s| s.load(Ordering::SeqCst))
        })
        .notify(
            |e, after| tracing::debug!(error = %describe(e), ?after, "API call failed; retrying"),
        )
        .await
}

/// Exponential backoff with jitter for one API call: 200 ms, doubling, up
/// to 3 s apart, 5 retries (about 6 s of waiting in all).
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(3))
        .with_factor(2.0)
        .with_max_times(5)
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            Status {
                code,
                ..Status::failure("x", "y")
            }
            .boxed(),
        )
    }

    #[test]
    fn server_trouble_is_transient_validation_is_not() {
        for code in [500, 502, 503, 504, 429] {
            assert!(is_transient(&api_error(code)), "{code}");
        }
        for code in [400, 403, 404, 409, 422] {
            assert!(!is_transient(&api_error(code)), "{code}");
        }
        // a server that took its time to give up is retried later, not now
        assert!(is_transient(&api_error(504)));
        assert!(!retry_now(&api_error(504)));
        assert!(retry_now(&api_error(503)));
        let timeout = kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "read timed out",
        )));
        assert!(is_timeout(&timeout));
        assert!(is_transient(&timeout) && !retry_now(&timeout));
        assert_eq!(status_code(&api_error(422)), Some(422));
        assert_eq!(describe(&api_error(422)), "x (422)");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_retry_fast_transient_failures_only() {
        use std::sync::atomic::AtomicUsize;
        let n = AtomicUsize::new(0);
        let r: Result<(), _> = call(
            || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(api_error(503))
            },
            None,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 6, "1 + 5 retries");

        let n = AtomicUsize::new(0);
        let r = call(
            || async {
                match n.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(api_error(429)),
                    _ => Ok(7),
                }
            },
            None,
        )
        .await;
        assert_eq!(r.unwrap(), 7);

        // validation errors, and failures that took long, are not retried now
        for (code, delay) in [(422, 0), (500, 10)] {
            let n = AtomicUsize::new(0);
            let r: Result<(), _> = call(
                || async {
                    n.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(delay)).await;
                    Err(api_error(code))
                },
                None,
            )
            .await;
            assert!(r.is_err());
            assert_eq!(n.load(Ordering::SeqCst), 1, "{code}");
        }

        // nor once the agent is stopping
        let n = AtomicUsize::new(0);
        let stopping = AtomicBool::new(true);
        let _: Result<(), _> = call(
            || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(api_error(503))
            },
            Some(&stopping),
        )
        .await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn resources_come_from_the_shared_kinds() {
        let vs = gitops_shared::kinds::lookup("networking.istio.io", "VirtualService").unwrap();
        let ar = api_resource(vs, "v1beta1");
        assert_eq!(ar.api_version, "networking.istio.io/v1beta1");
        assert_eq!(ar.plural, "virtualservices");
        let gos = gitopssync_resource();
        assert_eq!(gos.api_version, "kubectl-gitops.io/v1alpha1");
        assert_eq!(gos.plural, "gitopssyncs");
    }
}
