//! Desired against live, with the shared core: the live objects come from
//! `gitops_kube::live::list` (the same listing as `kubectl gitops diff`),
//! the plan from `gitops_shared::plan::Planner`, a page at a time.

use std::fmt::Write as _;

use std::sync::Arc;

use gitops_shared::{
    ANNOTATION_CANARY, DEFAULT_FIELD_MANAGER, DesiredSet, IstioKind, LoadError, ObjectKey,
    drift::Schemas,
    hash::bytes_hash,
    plan::{Action, KeepLive, Plan, PlanOptions, PlanRefusal, Planner},
};
use serde_json::Value;

/// The options of the agent's plans. Always planned with prune on: with
/// `--no-prune` the loop leaves the prune steps undone, and still knows
/// what it keeps owning.
pub fn options(agent: &str, field_manager: &str, schemas: Arc<Schemas>) -> PlanOptions {
    PlanOptions {
        prune: true,
        agent: agent.to_string(),
        field_manager: field_manager.to_string(),
        schemas,
    }
}

/// A planner for a desired set, fed the live objects a LIST page at a time;
/// its steps keep only the metadata of live objects (what the apply reads).
pub fn planner<'a>(
    desired: &'a Result<DesiredSet, LoadError>,
    inventory: &'a [ObjectKey],
    opts: &'a PlanOptions,
) -> Result<Planner<'a>, PlanRefusal> {
    Planner::new(desired, inventory, opts, KeepLive::Metadata)
}

/// The plan for a desired set against all of `live` at once.
pub fn make(
    desired: &Result<DesiredSet, LoadError>,
    live: &[Value],
    inventory: &[ObjectKey],
    agent: &str,
) -> Result<Plan, PlanRefusal> {
    let opts = options(agent, DEFAULT_FIELD_MANAGER, Arc::default());
    let mut planner = planner(desired, inventory, &opts)?;
    for object in live {
        planner.add(object.clone());
    }
    planner.finish()
}

/// A digest of what Git asks for (every desired object's hash, and the file
/// it is in): a new revision that changes nothing in this namespace has the
/// same digest; one that only moves a file has another, so the move is applied.
pub fn desired_digest(plan: &Plan) -> String {
    let mut entries: Vec<(&ObjectKey, &str, String)> = plan
        .apply
        .iter()
        .chain(&plan.unchanged)
        .map(|s| {
            let file = s
                .source
                .as_ref()
                .map(|src| src.file.to_string_lossy().into_owned())
                .unwrap_or_default();
            (&s.key, s.hash.as_deref().unwrap_or(""), file)
        })
        .collect();
    entries.sort();
    let mut buf = String::new();
    for (key, hash, file) in entries {
        let _ = writeln!(buf, "{}/{}/{}={hash} {file}", key.group, key.kind, key.name);
    }
    bytes_hash(buf.as_bytes())
}

/// The VirtualServices `plan` rolls a canary release back on: applied with
/// their canary annotation in phase `Aborted`, live not (yet) so. Counted
/// once, when the rollback commit is applied.
pub fn rolled_back(plan: &Plan) -> Vec<&str> {
    let phase = |object: &Value| -> Option<String> {
        let text = object["metadata"]["annotations"][ANNOTATION_CANARY].as_str()?;
        let release: Value = serde_json::from_str(text).ok()?;
        release["phase"].as_str().map(str::to_string)
    };
    plan.apply
        .iter()
        .filter(|s| s.key.kind == "VirtualService" && s.key.group == "networking.istio.io")
        .filter(|s| {
            let desired = s.object_value().as_ref().and_then(phase);
            let live = s.live.as_ref().and_then(phase);
            desired.as_deref() == Some("Aborted") && live.as_deref() != Some("Aborted")
        })
        .map(|s| s.key.name.as_str())
        .collect()
}

/// The plan as `--dry-run` prints it: one line per object, then the drift.
pub fn render(plan: &Plan, namespace: &str, revision: &str, prune: bool) -> String {
    let mut out = format!("plan for namespace {namespace} at revision {revision}:\n");
    for step in plan.apply.iter().chain(&plan.prune) {
        let verb = match (step.action, prune) {
            (Action::Prune, false) => "keep (--no-prune)",
            (action, _) => action.as_str(),
        };
        let source = step
            .source
            .as_ref()
            .map(|s| format!(" ({})", s.file.display()))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {verb:<9} {}{source}: {}",
            qualified(&step.key, step.kind),
            step.reason
        );
    }
    let _ = writeln!(
        out,
        "  {} to create, {} to update, {} unchanged, {} to prune",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Unchanged),
        if prune { plan.count(Action::Prune) } else { 0 }
    );
    if !plan.drift.is_empty() {
        let _ = writeln!(out, "drift:");
        for d in &plan.drift {
            let _ = writeln!(out, "  {}: {}", d.key, d.reason);
        }
    }
    out
}

fn qualified(key: &ObjectKey, kind: &IstioKind) -> String {
    format!("{}.{}/{}", kind.kind, kind.group, key.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitops_shared::manifest::{LoadOptions, parse_str};
    use std::path::Path;

    fn desired(text: &str) -> Result<DesiredSet, LoadError> {
        Ok(DesiredSet {
            namespace: "team-a".into(),
            manifests: parse_str(
                text,
                Path::new("namespaces/team-a/x.yaml"),
                &LoadOptions::default(),
            )
            .unwrap(),
            allow_empty: false,
        })
    }

    const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n";

    #[test]
    fn a_rollback_is_counted_when_it_is_applied() {
        let release = |phase: &str| {
            format!("'{{\"stable\":\"v1\",\"canary\":\"v2\",\"phase\":\"{phase}\"}}'")
        };
        let vs = |phase: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  annotations:\n    kubectl-gitops.io/canary: {}\nspec:\n  hosts: [reviews]\n",
                release(phase)
            )
        };
        let live_of = |text: &str| -> Vec<Value> {
            make(&desired(text), &[], &[], "sync-agent")
                .unwrap()
                .apply
                .iter()
                .map(|s| s.object_value().unwrap())
                .collect()
        };
        let progressing = live_of(&vs("Progressing"));
        let aborting = make(&desired(&vs("Aborted")), &progressing, &[], "sync-agent").unwrap();
        assert_eq!(rolled_back(&aborting), ["reviews"]);
        // applied again (drift healed, a later commit): not a new rollback
        let aborted = live_of(&vs("Aborted"));
        let again = make(&desired(&vs("Aborted")), &aborted, &[], "sync-agent").unwrap();
        assert!(rolled_back(&again).is_empty());
        let promoted = make(&desired(&vs("Promoted")), &progressing, &[], "sync-agent").unwrap();
        assert!(rolled_back(&promoted).is_empty());
    }

    #[test]
    fn digest_depends_on_content_not_on_live_state() {
        let d = desired(DR);
        let empty_live = make(&d, &[], &[], "sync-agent").unwrap();
        let applied: Vec<Value> = empty_live
            .apply
            .iter()
            .map(|s| s.object_value().unwrap())
            .collect();
        let synced = make(&d, &applied, &[], "sync-agent").unwrap();
        assert!(synced.is_noop());
        assert_eq!(desired_digest(&empty_live), desired_digest(&synced));
        let other = make(
            &desired(&DR.replace("host: reviews", "host: ratings")),
            &[],
            &[],
            "sync-agent",
        )
        .unwrap();
        assert_ne!(desired_digest(&other), desired_digest(&synced));
    }

    #[test]
    fn render_lists_steps_counts_and_drift() {
        let p = make(&desired(DR), &[], &[], "sync-agent").unwrap();
        let text = render(&p, "team-a", "abc123", true);
        assert!(
            text.starts_with("plan for namespace team-a at revision abc123:\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  create    DestinationRule.networking.istio.io/reviews (namespaces/team-a/x.yaml): new in Git"
            ),
            "{text}"
        );
        assert!(
            text.contains("1 to create, 0 to update, 0 unchanged, 0 to prune"),
            "{text}"
        );
    }
}
