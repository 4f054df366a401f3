//! `diff [REV]`: desired state (the working tree, or REV) against the
//! cluster, per namespace. "In sync" means exactly what it means to the
//! sync agent: the shared plan (`gitops_shared::plan::plan`) has nothing to
//! create, update or prune. Each object that differs gets a unified diff of
//! its YAML: Git's desired object (as the agent would apply it) against the
//! live one, shown in the fields Git sets, whole inside lists (the server
//! replaces most lists whole), and in the fields other managers own (drift
//! whatever their value, DESIGN.md "Drift").

use std::sync::Arc;

use anyhow::{Result, bail};
use gitops_shared::{
    DEFAULT_FIELD_MANAGER, DesiredSet, ObjectKey, PlanOptions,
    drift::{Schemas, Shape},
    gitopssync,
    layout::{list_namespaces, load_namespace, namespace_dir},
    managed::foreign_field_paths,
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
    /// The agents' field manager (their --field-manager): a field of spec, a
    /// label or an annotation another manager owns is drift
    #[arg(long, default_value = DEFAULT_FIELD_MANAGER, value_name = "NAME")]
    pub field_manager: String,
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
        let policy = policy(ctx, ns, &args.policy)?;
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
            out.push(diff_namespace(&cluster, set, &args, &source, color).await?);
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

/// The live objects the agent would compare with, its inventory, and the
/// kinds' schemas: every object of the kinds in use, and owned objects of
/// any other kind.
async fn live_state(
    cluster: &Cluster,
    desired: &DesiredSet,
    args: &Args,
) -> Result<(Vec<Value>, Vec<ObjectKey>, Schemas)> {
    let name = args.name.as_str();
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
    let live = cluster.live(ns, &in_use, &args.field_manager).await?;
    let schemas = cluster.schemas(&in_use).await?;
    for kind in &live.unserved {
        tracing::warn!(
            namespace = ns,
            "the cluster does not serve {} ({}): is its CRD installed?",
            kind.kind,
            kind.group
        );
    }
    let live = live.objects;
    Ok((live, inventory, schemas))
}

async fn diff_namespace(
    cluster: &Cluster,
    desired: &DesiredSet,
    args: &Args,
    source: &str,
    color: bool,
) -> Result<NamespaceDiff> {
    let ns = desired.namespace.clone();
    let (live, inventory, schemas) = live_state(cluster, desired, args).await?;
    let opts = PlanOptions {
        field_manager: args.field_manager.clone(),
        schemas: Arc::new(schemas),
        ..PlanOptions::default()
    };
    let mut result = NamespaceDiff {
        namespace: ns.clone(),
        source: source.to_string(),
        in_sync: true,
        refused: None,
        changes: Vec::new(),
    };
    let plan = match plan(&Ok(desired.clone()), &live, &inventory, &opts) {
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
                let shape = opts.schemas.get(&step.key.group, &step.key.kind);
                let mut defaulted = object.clone();
                if let Some(shape) = shape {
                    shape.default_into(&mut defaulted);
                }
                let foreign = foreign_field_paths(live, &opts.field_manager);
                let mut shown = Shown {
                    foreign: &foreign,
                    path: Vec::new(),
                }
                .project(object, &defaulted, live, shape, false);
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
            // A prune is its own label: the object is no longer in Git.
            drift: step.action != Action::Prune && plan.drift.iter().any(|d| d.key == step.key),
            diff,
        });
    }
    result.in_sync = result.changes.is_empty();
    Ok(result)
}

/// What of a live object `diff` shows: the fields Git sets, the fields
/// other managers own (`foreign`, as field names down from the root), and
/// inside a list everything but what the server defaulted.
struct Shown<'a> {
    foreign: &'a [Vec<String>],
    /// Field names down to the object being projected.
    path: Vec<String>,
}

impl Shown<'_> {
    /// `live` restricted to what the comparison looks at, for Git's `git`
    /// (`defaulted` as the server defaults it). `whole`: inside a list,
    /// where every field counts.
    fn project(
        &mut self,
        git: &Value,
        defaulted: &Value,
        live: &Value,
        shape: Option<&Shape>,
        whole: bool,
    ) -> Value {
        match (git, live) {
            (Value::Object(g), Value::Object(l)) => {
                let mut out = serde_json::Map::new();
                for (k, lv) in l {
                    let dv = &defaulted[k.as_str()];
                    let gv = g.get(k);
                    let owned = !whole && {
                        self.path.push(k.clone());
                        let owned = self.foreign.iter().any(|p| p.starts_with(&self.path));
                        self.path.pop();
                        owned
                    };
                    let shown = match gv {
                        Some(gv) => {
                            self.path.push(k.clone());
                            let child = shape.and_then(|s| s.field(k));
                            let shown = self.project(gv, dv, lv, child, whole);
                            self.path.pop();
                            // A map Git fills that holds none of Git's keys live is
                            // shown as absent, not as `{}`.
                            let emptied = shown.as_object().is_some_and(|m| m.is_empty())
                                && gv.as_object().is_some_and(|m| !m.is_empty());
                            (!emptied).then_some(shown)
                        }
                        // Inside a list a field Git does not set is shown
                        // unless it is the server's default.
                        None if whole && dv != lv => Some(lv.clone()),
                        None if owned => Some(lv.clone()),
                        None => None,
                    };
                    if let Some(shown) = shown {
                        out.insert(k.clone(), shown);
                    }
                }
                Value::Object(out)
            }
            (Value::Array(g), Value::Array(l)) if g.len() == l.len() => {
                let items = shape.and_then(|s| s.items.as_deref());
                let defaulted = defaulted.as_array();
                Value::Array(
                    g.iter()
                        .zip(l)
                        .enumerate()
                        .map(|(i, (gv, lv))| {
                            let dv = defaulted.and_then(|d| d.get(i)).unwrap_or(gv);
                            self.project(gv, dv, lv, items, true)
                        })
                        .collect(),
                )
            }
            (_, l) => l.clone(),
        }
    }
}

#[cfg(test)]
fn project(desired: &Value, live: &Value) -> Value {
    Shown {
        foreign: &[],
        path: Vec::new(),
    }
    .project(desired, desired, live, None, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn projection_keeps_what_git_sets_and_lists_whole() {
        let desired =
            json!({"spec": {"http": [{"route": [{"weight": 80}]}]}, "metadata": {"name": "r"}});
        let live = json!({"spec": {"http": [{"route": [{"weight": 50, "x": 1}]}], "extra": true},
            "metadata": {"name": "r", "uid": "u"}, "status": {}});
        assert_eq!(
            project(&desired, &live),
            json!({"spec": {"http": [{"route": [{"weight": 50, "x": 1}]}]}, "metadata": {"name": "r"}})
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

    #[test]
    fn fields_other_managers_own_are_shown_and_defaults_are_not() {
        let git = json!({"metadata": {"name": "r", "labels": {"a": "1"}},
                         "spec": {"host": "r", "rules": [{"x": 1}]}});
        let mut defaulted = git.clone();
        defaulted["spec"]["rules"][0]["mode"] = json!("Default");
        let live = json!({"metadata": {"name": "r", "labels": {"a": "1", "b": "2"}},
                          "spec": {"host": "r", "rules": [{"x": 1, "mode": "Default"}],
                                   "trafficPolicy": {"connectionPool": {"tcp": {}}}, "server": "set"}});
        let foreign = vec![
            vec!["metadata".to_string(), "labels".into(), "b".into()],
            vec![
                "spec".to_string(),
                "trafficPolicy".into(),
                "connectionPool".into(),
                "tcp".into(),
            ],
        ];
        let shown = Shown {
            foreign: &foreign,
            path: Vec::new(),
        }
        .project(&git, &defaulted, &live, None, false);
        assert_eq!(
            shown,
            json!({"metadata": {"name": "r", "labels": {"a": "1", "b": "2"}},
                   "spec": {"host": "r", "rules": [{"x": 1}],
                            "trafficPolicy": {"connectionPool": {"tcp": {}}}}})
        );
    }
}
