//! `diff [REV]`: desired state (the working tree, or REV) against the
//! cluster, per namespace. "In sync" means exactly what it means to the
//! sync agent: the shared plan (`gitops_shared::plan::plan`) has nothing to
//! create, update or prune. Each object that differs gets a unified diff of
//! its YAML: Git's desired object (as the agent would apply it) against the
//! live one, shown only in the fields Git sets (others are not compared).

use anyhow::{Result, bail};
use gitops_shared::{
    DesiredSet, ObjectKey, PlanOptions, gitopssync,
    layout::{list_namespaces, load_namespace, namespace_dir},
    manifest::LoadOptions,
    normalize::normalize,
    plan::{Action, PlanRefusal, kinds_in_use, plan},
};
use serde::Serialize;
use serde_json::Value;

use crate::{
    Status,
    cli::PolicyArgs,
    cluster::{Cluster, block_on},
    context::{Context, policy},
    output::{self, Format},
    textdiff, yaml,
};

/// Compare Git with the cluster: exit 0 in sync, 1 when they differ.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Compare this revision of the repo instead of the working tree
    #[arg(value_name = "REV")]
    pub rev: Option<String>,
    /// Name of the agents' GitOpsSync objects (their inventory says what they own)
    #[arg(long, default_value = gitopssync::DEFAULT_NAME, value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// One namespace's comparison.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceDiff {
    pub namespace: String,
    /// `working tree` or the revision compared.
    pub source: String,
    pub in_sync: bool,
    /// Why the agent would refuse to apply (an emptied folder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    pub changes: Vec<ObjectDiff>,
}

/// One object that differs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDiff {
    /// `create` (missing live), `update` (differs) or `prune` (live, owned, not in Git).
    pub action: &'static str,
    pub group: String,
    pub kind: String,
    pub name: String,
    pub reason: String,
    /// Whether the live object moved away from what was applied (as opposed
    /// to Git having moved on).
    pub drift: bool,
    /// Unified diff, live (-) against Git (+).
    pub diff: String,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let repo = ctx.repo()?;
    let base = ctx.base(&repo)?;
    let tmp = repo.scratch()?;
    let (root, source) = match &args.rev {
        Some(rev) => {
            let (_, tree) = repo.resolve(rev)?;
            repo.materialize(tree, &base, tmp.path())?;
            (tmp.path().to_path_buf(), rev.clone())
        }
        None => (repo.workdir().to_path_buf(), "working tree".to_string()),
    };
    let namespaces = if ctx.global.all_namespaces {
        list_namespaces(&root, &base)?
    } else {
        vec![ctx.namespace("diff")?]
    };
    let mut desired = Vec::new();
    for ns in &namespaces {
        if !namespace_dir(&root, &base, ns).is_dir() {
            bail!("there is no folder {base}/{ns} in the {}", source);
        }
        let policy = policy(ns, &args.policy)?;
        match load_namespace(&root, &base, &policy, &LoadOptions::default()) {
            Ok(set) => desired.push(set),
            Err(e) => {
                return Err(super::problems(
                    &format!("{base}/{ns} does not load (the sync agent would reject it too)"),
                    &e.errors,
                ));
            }
        }
    }

    let color = ctx.format() == Format::Table && output::color_stdout();
    let diffs = block_on(async {
        let cluster = Cluster::connect(&ctx.global).await?;
        let mut out = Vec::new();
        for set in &desired {
            out.push(diff_namespace(&cluster, set, &args.name, &source, color).await?);
        }
        anyhow::Ok(out)
    })??;

    match ctx.format() {
        Format::Table => {
            let mut text = String::new();
            for d in &diffs {
                if let Some(why) = &d.refused {
                    text.push_str(&format!("# {}: {why}\n", d.namespace));
                }
                for c in &d.changes {
                    text.push_str(&format!(
                        "# {}: {}/{}: {} ({}){}\n",
                        d.namespace,
                        c.kind,
                        c.name,
                        c.action,
                        c.reason,
                        if c.drift { ", drifted" } else { "" }
                    ));
                    text.push_str(&c.diff);
                }
            }
            output::print(&text)?;
        }
        format => output::print_data(format, &diffs)?,
    }
    Ok(if diffs.iter().all(|d| d.in_sync) {
        Status::Ok
    } else {
        Status::Differences
    })
}

/// The live objects the agent would compare with, and its inventory:
/// every object of the kinds in use, and owned objects of any other kind.
async fn live_state(
    cluster: &Cluster,
    desired: &DesiredSet,
    name: &str,
) -> Result<(Vec<Value>, Vec<ObjectKey>)> {
    let ns = desired.namespace.as_str();
    let inventory: Vec<ObjectKey> = match cluster.gitopssync(ns, name).await {
        Ok(Some(gos)) => gos.status.map(|s| s.inventory_keys()).unwrap_or_default(),
        Ok(None) => Vec::new(),
        Err(error) => {
            tracing::warn!(%error, namespace = ns, "cannot read the agent's inventory");
            Vec::new()
        }
    };
    let in_use = kinds_in_use(desired, &inventory);
    let live = cluster.live(ns, &in_use).await?;
    for kind in &live.unserved {
        tracing::warn!(
            namespace = ns,
            "the cluster does not serve {} ({}): is its CRD installed?",
            kind.kind,
            kind.group
        );
    }
    let live = live.objects;
    Ok((live, inventory))
}

async fn diff_namespace(
    cluster: &Cluster,
    desired: &DesiredSet,
    name: &str,
    source: &str,
    color: bool,
) -> Result<NamespaceDiff> {
    let ns = desired.namespace.clone();
    let (live, inventory) = live_state(cluster, desired, name).await?;
    let mut result = NamespaceDiff {
        namespace: ns.clone(),
        source: source.to_string(),
        in_sync: true,
        refused: None,
        changes: Vec::new(),
    };
    let plan = match plan(
        &Ok(desired.clone()),
        &live,
        &inventory,
        &PlanOptions::default(),
    ) {
        Ok(plan) => plan,
        Err(refusal @ PlanRefusal::WouldEmpty { .. }) => {
            result.in_sync = false;
            result.refused = Some(refusal.to_string());
            return Ok(result);
        }
        Err(refusal) => bail!("{ns}: {refusal}"),
    };
    for step in plan.apply.iter().chain(plan.prune.iter()) {
        let label = format!("{ns}/{}/{}", step.key.kind, step.key.name);
        let object = step.object_value();
        let (old, new) = match (step.action, &object, &step.live) {
            (Action::Prune, _, Some(live)) => {
                (yaml::to_yaml(&normalize(live, &ns))?, String::new())
            }
            (_, Some(object), Some(live)) => {
                let mut shown = project(object, live);
                shown["apiVersion"] = object["apiVersion"].clone();
                (yaml::to_yaml(&shown)?, yaml::to_yaml(object)?)
            }
            (_, Some(object), None) => (String::new(), yaml::to_yaml(object)?),
            _ => continue,
        };
        let old_name = if step.live.is_some() {
            format!("live/{label}")
        } else {
            "/dev/null".into()
        };
        let new_name = if step.object.is_some() {
            format!("git/{label}")
        } else {
            "/dev/null".into()
        };
        let diff = textdiff::unified(&old, &new, &old_name, &new_name, color);
        result.changes.push(ObjectDiff {
            action: step.action.as_str(),
            group: step.key.group.clone(),
            kind: step.key.kind.clone(),
            name: step.key.name.clone(),
            reason: step.reason.clone(),
            drift: plan.drift.iter().any(|d| d.key == step.key),
            diff,
        });
    }
    result.in_sync = result.changes.is_empty();
    Ok(result)
}

/// `live`, restricted to the fields `desired` sets: what the comparison
/// looks at. Lists of the same length are matched item by item.
fn project(desired: &Value, live: &Value) -> Value {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => Value::Object(
            d.iter()
                .filter_map(|(k, dv)| {
                    let shown = project(dv, l.get(k)?);
                    // A map Git fills that holds none of Git's keys live is
                    // shown as absent, not as `{}`.
                    let emptied = shown.as_object().is_some_and(|m| m.is_empty())
                        && dv.as_object().is_some_and(|m| !m.is_empty());
                    (!emptied).then(|| (k.clone(), shown))
                })
                .collect(),
        ),
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            Value::Array(d.iter().zip(l).map(|(dv, lv)| project(dv, lv)).collect())
        }
        (_, l) => l.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn projection_keeps_only_what_git_sets() {
        let desired =
            json!({"spec": {"http": [{"route": [{"weight": 80}]}]}, "metadata": {"name": "r"}});
        let live = json!({"spec": {"http": [{"route": [{"weight": 50, "x": 1}]}], "extra": true},
            "metadata": {"name": "r", "uid": "u"}, "status": {}});
        assert_eq!(
            project(&desired, &live),
            json!({"spec": {"http": [{"route": [{"weight": 50}]}]}, "metadata": {"name": "r"}})
        );
        // a map with none of Git's keys is absent
        let git = json!({"metadata": {"name": "r", "annotations": {"a": "1"}}});
        let annotated = json!({"metadata": {"name": "r", "annotations": {"b": "2"}}});
        assert_eq!(
            project(&git, &annotated),
            json!({"metadata": {"name": "r"}})
        );
        // lists of another length are shown whole
        let live = json!({"spec": {"http": [{"a": 1}, {"b": 2}]}});
        assert_eq!(
            project(&desired, &live)["spec"]["http"],
            live["spec"]["http"]
        );
    }
}
