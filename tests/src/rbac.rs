//! The agent's Role, proven from what agents did: every end-to-end test's
//! audit log gives the permissions its agents used (group, resource with
//! subresource, verb, and for our own `GitOpsSync` the object's name), each
//! test cluster appends them to `target/reliability/agent-permissions.log`
//! when it is dropped ([`record`]), and `rbac-check` (run by scripts/test.sh
//! after the tests) fails when the shipped Role (`manifests/rbac`) grants
//! less or more than that ([`check`]).
//!
//! The test API server authorizes everything (its client is in
//! `system:masters`), so the audit log is the evidence: a Role checked only
//! against a real cluster's denials would never show what it grants and
//! nobody uses.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::OpenOptions,
    io::Write as _,
    path::PathBuf,
};

use serde_json::Value;

use crate::{AuditEvent, scope};

/// The group of our own `GitOpsSync`.
const OWN_GROUP: &str = gitops_shared::gitopssync::GROUP;
/// The name the shipped manifests give the agent (`--name`).
const SHIPPED_NAME: &str = gitops_shared::gitopssync::DEFAULT_NAME;

/// One permission one request needed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    pub group: String,
    /// `gitopssyncs`, `gitopssyncs/status`.
    pub resource: String,
    pub verb: String,
    /// The object, where RBAC can narrow to it: a request naming one, or a
    /// list or watch selecting one by `metadata.name`.
    pub name: Option<String>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.group, self.resource, self.verb)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

impl Permission {
    fn parse(line: &str) -> Option<Permission> {
        let mut parts = line.split_whitespace();
        Some(Permission {
            group: parts.next()?.to_string(),
            resource: parts.next()?.to_string(),
            verb: parts.next()?.to_string(),
            name: parts.next().map(str::to_string),
        })
    }
}

/// `metadata.name=X` of a `fieldSelector` in `query`.
fn selected_name(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("fieldSelector=")?;
        let value = value.replace("%3D", "=").replace("%3d", "=");
        value.strip_prefix("metadata.name=").map(str::to_string)
    })
}

/// What the agents' requests in `events` needed. Discovery (no namespace)
/// needs no Role; requests outside the agent's namespace are
/// [`scope::check`]'s to refuse.
pub fn used(events: &[AuditEvent]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for e in events {
        if scope::agent_namespace(e).is_none() {
            continue;
        }
        let (path, query) = e
            .request_uri
            .split_once('?')
            .unwrap_or((e.request_uri.as_str(), ""));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["apis", group, _version, "namespaces", _ns, rest @ ..] => (*group, rest),
            ["api", _version, "namespaces", _ns, rest @ ..] => ("", rest),
            _ => continue,
        };
        let (resource, name) = match rest {
            [resource] => (resource.to_string(), selected_name(query)),
            [resource, name] => (resource.to_string(), Some(name.to_string())),
            [resource, name, sub] => (format!("{resource}/{sub}"), Some(name.to_string())),
            _ => continue,
        };
        // RBAC narrows by name only for our own object; an Istio kind's
        // rule covers every object of it.
        let name = name.filter(|_| group == OWN_GROUP);
        let mut verbs = vec![e.verb.clone()];
        // An apply that created the object was authorized as a create too.
        if e.verb == "patch" && e.code == Some(201) {
            verbs.push("create".to_string());
        }
        for verb in verbs {
            // A create names no object in its path (RBAC cannot narrow it).
            let name = if verb == "create" { None } else { name.clone() };
            out.insert(Permission {
                group: group.to_string(),
                resource: resource.clone(),
                verb,
                name,
            });
        }
    }
    out
}

fn log_path() -> PathBuf {
    crate::cluster::repo_root().join("target/reliability/agent-permissions.log")
}

/// Append `used` to the log `rbac-check` reads (best effort: a read-only
/// target folder must not fail a test).
pub fn record(used: &BTreeSet<Permission>) {
    let path = log_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(&path) {
        let text: String = used.iter().map(|p| format!("{p}\n")).collect();
        let _ = file.write_all(text.as_bytes());
    }
}

/// Everything recorded since the log was last removed.
pub fn recorded() -> std::io::Result<BTreeSet<Permission>> {
    let text = std::fs::read_to_string(log_path())?;
    Ok(text.lines().filter_map(Permission::parse).collect())
}

/// One rule of a Role.
#[derive(Debug, Default)]
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: BTreeSet<String>,
    names: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn rules(role: &Value) -> Vec<Rule> {
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Rule {
            groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            verbs: strings(&r["verbs"]).into_iter().collect(),
            names: strings(&r["resourceNames"]),
        })
        .collect()
}

fn is_istio(group: &str) -> bool {
    group.ends_with(".istio.io")
}

/// What is wrong with `role` (a Role's JSON) given what agents `used`:
/// a permission used and not granted; a verb granted on an Istio kind that
/// no agent used on any Istio kind (the tests use some of the kinds, and
/// the agent treats every kind alike); a permission on our `GitOpsSync` that
/// is granted and never used, or not narrowed to the shipped name. Requests
/// for a `GitOpsSync` of another `--name` are left out: the shipped Role is
/// for the shipped name.
pub fn check(role: &Value, used: &BTreeSet<Permission>) -> Vec<String> {
    let rules = rules(role);
    let mut problems = Vec::new();
    let used: Vec<&Permission> = used
        .iter()
        .filter(|p| p.group != OWN_GROUP || p.name.as_deref().is_none_or(|n| n == SHIPPED_NAME))
        .collect();
    // less: every permission used is granted
    for p in &used {
        let granted = rules.iter().any(|r| {
            r.groups.contains(&p.group)
                && r.resources.contains(&p.resource)
                && r.verbs.contains(&p.verb)
                && (r.names.is_empty() || p.name.as_ref().is_some_and(|n| r.names.contains(n)))
        });
        if !granted {
            problems.push(format!("agents used `{p}`, which the Role does not grant"));
        }
    }
    // more, for the Istio kinds: each rule grants exactly the verbs used
    let istio_verbs: BTreeSet<&str> = used
        .iter()
        .filter(|p| is_istio(&p.group))
        .map(|p| p.verb.as_str())
        .collect();
    for r in rules
        .iter()
        .filter(|r| r.groups.iter().any(|g| is_istio(g)))
    {
        let granted: BTreeSet<&str> = r.verbs.iter().map(String::as_str).collect();
        if granted != istio_verbs {
            problems.push(format!(
                "the Role grants {granted:?} on {:?}; agents used {istio_verbs:?} on Istio kinds",
                r.resources
            ));
        }
    }
    // more, for our own object: every verb granted is used, on the shipped
    // name where RBAC can narrow to it
    let mut by_resource: BTreeMap<(&str, &str), Vec<&Permission>> = BTreeMap::new();
    for p in used.iter().filter(|p| p.group == OWN_GROUP) {
        by_resource
            .entry((p.resource.as_str(), p.verb.as_str()))
            .or_default()
            .push(p);
    }
    for r in rules
        .iter()
        .filter(|r| r.groups.iter().any(|g| g == OWN_GROUP))
    {
        for resource in &r.resources {
            for verb in &r.verbs {
                if !by_resource.contains_key(&(resource.as_str(), verb.as_str())) {
                    problems.push(format!(
                        "the Role grants `{verb}` on {resource} that no agent used"
                    ));
                }
                let narrowable = verb != "create";
                if narrowable && r.names != [SHIPPED_NAME] {
                    problems.push(format!(
                        "the Role grants `{verb}` on {resource} without resourceNames [{SHIPPED_NAME}]"
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AGENT: &str = "sync-agent/0.1.0 (team-a) pod-1";

    fn event(verb: &str, uri: &str, code: u16) -> AuditEvent {
        AuditEvent {
            verb: verb.into(),
            request_uri: uri.into(),
            username: "admin".into(),
            user_agent: AGENT.into(),
            object_ref: None,
            code: Some(code),
            stage: "ResponseComplete".into(),
            received_us: 0,
        }
    }

    fn events() -> Vec<AuditEvent> {
        vec![
            event("get", "/apis/networking.istio.io/v1", 200),
            event(
                "list",
                "/apis/networking.istio.io/v1/namespaces/team-a/virtualservices?limit=100",
                200,
            ),
            event(
                "patch",
                "/apis/networking.istio.io/v1/namespaces/team-a/virtualservices/reviews?fieldManager=kubectl-gitops&force=true",
                201,
            ),
            event(
                "delete",
                "/apis/networking.istio.io/v1/namespaces/team-a/destinationrules/old",
                200,
            ),
            event(
                "watch",
                "/apis/kubectl-gitops.io/v1alpha1/namespaces/team-a/gitopssyncs?fieldSelector=metadata.name%3Dsync-agent&watch=true",
                200,
            ),
            event(
                "get",
                "/apis/kubectl-gitops.io/v1alpha1/namespaces/team-a/gitopssyncs/sync-agent",
                200,
            ),
            event(
                "patch",
                "/apis/kubectl-gitops.io/v1alpha1/namespaces/team-a/gitopssyncs/sync-agent",
                201,
            ),
            event(
                "patch",
                "/apis/kubectl-gitops.io/v1alpha1/namespaces/team-a/gitopssyncs/sync-agent/status",
                200,
            ),
            // another --name: not the shipped Role's business
            event(
                "get",
                "/apis/kubectl-gitops.io/v1alpha1/namespaces/team-a/gitopssyncs/security",
                200,
            ),
        ]
    }

    fn role(istio_verbs: &[&str], own: Value) -> Value {
        let mut rules = vec![
            json!({"apiGroups": ["networking.istio.io"], "resources": ["virtualservices", "destinationrules"], "verbs": istio_verbs}),
        ];
        rules.extend(own.as_array().unwrap().iter().cloned());
        json!({"rules": rules})
    }

    fn own_rules() -> Value {
        json!([
            {"apiGroups": ["kubectl-gitops.io"], "resources": ["gitopssyncs"], "verbs": ["create"]},
            {"apiGroups": ["kubectl-gitops.io"], "resources": ["gitopssyncs"], "resourceNames": ["sync-agent"], "verbs": ["get", "patch", "watch"]},
            {"apiGroups": ["kubectl-gitops.io"], "resources": ["gitopssyncs/status"], "resourceNames": ["sync-agent"], "verbs": ["patch"]},
        ])
    }

    #[test]
    fn a_role_that_grants_exactly_what_was_used_passes() {
        let used = used(&events());
        assert!(
            used.iter()
                .any(|p| p.verb == "create" && p.group == "networking.istio.io")
        );
        let problems = check(
            &role(&["create", "delete", "list", "patch"], own_rules()),
            &used,
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn less_or_more_than_what_was_used_fails() {
        let used = used(&events());
        // less: no delete on Istio kinds
        let problems = check(&role(&["create", "list", "patch"], own_rules()), &used);
        assert!(
            problems.iter().any(|p| p.contains("delete")),
            "{problems:#?}"
        );
        // more: update nobody used
        let problems = check(
            &role(
                &["create", "delete", "list", "patch", "update"],
                own_rules(),
            ),
            &used,
        );
        assert!(
            problems.iter().any(|p| p.contains("\"update\"")),
            "{problems:#?}"
        );
        // more on our own object: list granted, not used
        let mut own = own_rules();
        own[1]["verbs"] = json!(["get", "patch", "watch", "list"]);
        let problems = check(&role(&["create", "delete", "list", "patch"], own), &used);
        assert_eq!(
            problems,
            ["the Role grants `list` on gitopssyncs that no agent used"]
        );
        // not narrowed to the shipped name
        let mut own = own_rules();
        own[2].as_object_mut().unwrap().remove("resourceNames");
        let problems = check(&role(&["create", "delete", "list", "patch"], own), &used);
        assert_eq!(
            problems,
            ["the Role grants `patch` on gitopssyncs/status without resourceNames [sync-agent]"]
        );
    }
}
