//! Which requests our two programs may make, judged from the audit log.
//!
//! The agent holds a namespaced Role: every request it makes is in its own
//! namespace, or a read of discovery. The plugin runs with its user's
//! credentials and keeps to namespaced requests too, but for the fleet view
//! (`status -A`), which lists `GitOpsSync`s in every namespace. Every
//! [`TestCluster`](crate::TestCluster) checks its whole audit log against
//! these rules when it is dropped, so every end-to-end test checks its own.

use std::fs::OpenOptions;
use std::io::Write as _;

use crate::AuditEvent;

/// The user agent the plugin sends (`kubectl-gitops/<version>`).
pub const PLUGIN_AGENT: &str = "kubectl-gitops/";
/// The user agent the agent sends (`sync-agent/<version> (<namespace>) <identity>`).
pub const SYNC_AGENT: &str = "sync-agent/";

/// Whether the agent of `ns` made the request (its user agent names it).
pub fn by_agent_of(e: &AuditEvent, ns: &str) -> bool {
    agent_namespace(e) == Some(ns)
}

/// The namespace of the agent that made the request, if an agent did.
pub fn agent_namespace(e: &AuditEvent) -> Option<&str> {
    let rest = e.user_agent.strip_prefix(SYNC_AGENT)?;
    let (_, after) = rest.split_once(" (")?;
    after.split_once(')').map(|(ns, _)| ns)
}

/// The namespace in the request's path, if it is a namespaced request:
/// `.../namespaces/<ns>/<resource>...`. A Namespace object itself
/// (`/api/v1/namespaces/<ns>`) is cluster-scoped.
fn path_namespace(e: &AuditEvent) -> Option<&str> {
    let rest = e.path().split_once("/namespaces/")?.1;
    let (ns, resource) = rest.split_once('/')?;
    (!ns.is_empty() && !resource.is_empty()).then_some(ns)
}

/// A read of the server's discovery documents (`/api`, `/apis/<group>/<version>`, `/version`,
/// and the OpenAPI v3 index and group versions the kinds' schemas come from).
pub fn is_discovery(e: &AuditEvent) -> bool {
    let parts: Vec<&str> = e.path().trim_matches('/').split('/').collect();
    e.verb == "get"
        && matches!(
            parts.as_slice(),
            ["api"]
                | ["api", _]
                | ["apis"]
                | ["apis", _]
                | ["apis", _, _]
                | ["version"]
                | ["openapi", "v3"]
                | ["openapi", "v3", "apis", _, _]
        )
}

/// A request outside `ns`: namespaced elsewhere, or cluster-scoped other
/// than discovery.
pub fn outside(e: &AuditEvent, ns: &str) -> bool {
    match path_namespace(e) {
        Some(other) => other != ns,
        None => !is_discovery(e),
    }
}

/// The plugin's fleet view: a list (or a watch) of `GitOpsSync`s in every namespace.
fn is_fleet_view(e: &AuditEvent) -> bool {
    let parts: Vec<&str> = e.path().trim_matches('/').split('/').collect();
    matches!(e.verb.as_str(), "list" | "watch")
        && matches!(
            parts.as_slice(),
            ["apis", "kubectl-gitops.io", _, "gitopssyncs"]
        )
}

/// What [`check`] found in one audit log.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests the agent made.
    pub agent: usize,
    /// Requests the plugin made.
    pub plugin: usize,
    /// Requests of either that were cluster-scoped (discovery and the
    /// fleet view aside) or in another namespace than the agent's.
    pub violations: Vec<String>,
}

/// Judge every request of the agent and the plugin in `events`.
pub fn check(events: &[AuditEvent]) -> Report {
    let mut report = Report::default();
    for e in events {
        if let Some(ns) = agent_namespace(e) {
            report.agent += 1;
            if outside(e, ns) {
                report.violations.push(format!(
                    "agent of {ns}: {} {} ({})",
                    e.verb, e.request_uri, e.user_agent
                ));
            }
        } else if e.user_agent.starts_with(PLUGIN_AGENT) {
            report.plugin += 1;
            if path_namespace(e).is_none() && !is_discovery(e) && !is_fleet_view(e) {
                report
                    .violations
                    .push(format!("plugin: {} {}", e.verb, e.request_uri));
            }
        }
    }
    report
}

impl Report {
    /// One line for `target/reliability/scope.log`, which
    /// `scripts/reliability.sh` sums into docs/reliability.md.
    pub fn record(&self) {
        let dir = crate::cluster::repo_root().join("target/reliability");
        let line = format!(
            "agent {} plugin {} violations {}\n",
            self.agent,
            self.plugin,
            self.violations.len()
        );
        // Best effort: a read-only target folder must not fail a test.
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(mut file) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("scope.log"))
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(verb: &str, uri: &str, agent: &str) -> AuditEvent {
        AuditEvent {
            verb: verb.into(),
            request_uri: uri.into(),
            username: "admin".into(),
            user_agent: agent.into(),
            object_ref: None,
            code: Some(200),
            stage: "ResponseComplete".into(),
            received_us: 0,
        }
    }

    const AGENT: &str = "sync-agent/0.1.0 (team-a) pod-1";

    #[test]
    fn the_agent_keeps_to_its_namespace_and_discovery() {
        let ok = [
            event("get", "/apis/networking.istio.io/v1", AGENT),
            event("get", "/api", AGENT),
            event("get", "/openapi/v3", AGENT),
            event(
                "get",
                "/openapi/v3/apis/networking.istio.io/v1?hash=AB12",
                AGENT,
            ),
            event(
                "list",
                "/apis/networking.istio.io/v1/namespaces/team-a/virtualservices?limit=500",
                AGENT,
            ),
            event(
                "patch",
                "/apis/kubectl-gitops.io/v1alpha1/namespaces/team-a/gitopssyncs/default/status",
                AGENT,
            ),
        ];
        let report = check(&ok);
        assert_eq!(report.agent, 6);
        assert!(report.violations.is_empty(), "{:?}", report.violations);

        let bad = [
            event(
                "list",
                "/apis/networking.istio.io/v1/namespaces/team-b/virtualservices",
                AGENT,
            ),
            event(
                "list",
                "/apis/networking.istio.io/v1/virtualservices",
                AGENT,
            ),
            event("list", "/api/v1/namespaces", AGENT),
            event("create", "/apis", AGENT),
            event("get", "/openapi/v2", AGENT),
            event(
                "list",
                "/apis/kubectl-gitops.io/v1alpha1/gitopssyncs",
                AGENT,
            ),
        ];
        assert_eq!(check(&bad).violations.len(), bad.len());
    }

    #[test]
    fn the_plugin_is_namespaced_but_for_the_fleet_view() {
        let plugin = "kubectl-gitops/0.1.0";
        let ok = [
            event(
                "list",
                "/apis/kubectl-gitops.io/v1alpha1/gitopssyncs",
                plugin,
            ),
            event(
                "get",
                "/apis/networking.istio.io/v1/namespaces/team-b/virtualservices/x",
                plugin,
            ),
            event("get", "/apis/networking.istio.io", plugin),
        ];
        let report = check(&ok);
        assert_eq!((report.plugin, report.violations.len()), (3, 0));
        let bad = [
            event(
                "list",
                "/apis/networking.istio.io/v1/virtualservices",
                plugin,
            ),
            event("get", "/api/v1/namespaces/team-b", plugin),
        ];
        // A Namespace object is cluster-scoped, though its path names it.
        assert_eq!(check(&bad).violations.len(), 2);
        // Requests of anyone else (the tests' own setup) are not judged.
        let setup = [event("create", "/api/v1/namespaces", "kubectl/v1.32")];
        let report = check(&setup);
        assert_eq!(
            (report.agent, report.plugin, report.violations.len()),
            (0, 0, 0)
        );
    }
}
