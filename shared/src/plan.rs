//! Desired against live: what to create, update, leave alone and prune, what
//! has drifted and why, in the order Istio's make-before-break rule asks for.
//!
//! The plan is a pure function, so the CLI's `diff`/`status` and the agent's
//! apply agree on what "drift" means. Safety rules live here too: no plan (and
//! so no prune) from a revision that failed to load, and no emptying a
//! namespace without the folder's `.allow-empty` marker.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use serde_json::Value;

use crate::{
    ANNOTATION_HASH, ANNOTATION_SOURCE,
    drift::{self, Schemas},
    kinds::{self, IstioKind},
    layout::{DesiredSet, LoadError},
    manifest::{Manifest, ObjectKey, Source},
    normalize::{desired_object, is_owned_by},
};

/// What the plan does with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Prune,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Prune => "prune",
        }
    }
}

/// One object's step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: Action,
    pub key: ObjectKey,
    pub kind: &'static IstioKind,
    /// Why: "new in Git", "changed in Git", a drifted field, "no longer in Git".
    pub reason: String,
    /// The object to apply (create/update), as compact JSON: normalized,
    /// with the ownership labels and the hash and source annotations.
    /// `None` when unchanged. [`Step::object_value`] parses it.
    pub object: Option<Arc<str>>,
    /// Where it is defined in Git (create/update/unchanged).
    pub source: Option<Source>,
    /// The desired hash (create/update/unchanged).
    pub hash: Option<String>,
    /// The live object, when there is one (`None` when unchanged).
    pub live: Option<Value>,
    /// The live object's `metadata.resourceVersion`, when there is one.
    pub live_version: Option<String>,
}

impl Step {
    /// The object to apply, parsed.
    pub fn object_value(&self) -> Option<Value> {
        self.object.as_deref().map(parse_prepared)
    }
}

/// A desired object as it is applied ([`desired_object`]), kept as compact
/// JSON beside its hash: a parsed `Value` tree of a small Istio object
/// takes about ten times the memory (every map is a B-tree), and a step
/// shares the text. Between passes the agent keeps only the hash (a third
/// of its idle heap was these texts, docs/benchmarks.md) and the planner
/// asks for the object again when it must compare or write it
/// ([`Planner::with_reread`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// `None` when only the hash was kept.
    pub json: Option<Arc<str>>,
    pub hash: String,
}

impl Prepared {
    /// `m` as agent `agent` applies it in `namespace`; its source
    /// annotation is `m.source.file`.
    pub fn of(m: &Manifest, namespace: &str, agent: &str) -> Self {
        let source = m.source.file.to_string_lossy();
        let (object, hash) = desired_object(&m.object, namespace, agent, &source);
        Self {
            json: Some(object.to_string().into()),
            hash,
        }
    }

    /// The hash alone.
    pub fn hash_only(&self) -> Self {
        Self {
            json: None,
            hash: self.hash.clone(),
        }
    }

    /// The object, parsed (`None` when only the hash was kept).
    pub fn value(&self) -> Option<Value> {
        self.json.as_deref().map(parse_prepared)
    }
}

/// How a planner gets desired object `index` again when it was given only
/// its hash and the manifest no longer holds its document; `None` when it cannot (the planner then leaves the object out
/// and the caller must not use the plan).
pub type Reread<'a> = dyn FnMut(usize) -> Option<Prepared> + 'a;

fn resource_version(live: &Value) -> Option<String> {
    live["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
}

fn parse_prepared(json: &str) -> Value {
    // Only ever written by `Prepared::of`, from a `Value`.
    serde_json::from_str(json).expect("a prepared object is JSON")
}

/// Live objects that a plan found in sync, by key: the resource version it
/// read, the desired hash the object matched and the file it was in. A later
/// plan trusts an object that has not changed since (the same resource
/// version) and that Git asks for unchanged (the same hash and file),
/// without comparing it again: comparing was most of a no-op pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verified(BTreeMap<ObjectKey, VerifiedAt>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct VerifiedAt {
    version: String,
    /// [`verified_digest`] of the desired hash and the file: 32 bytes in
    /// place, not two strings (at 5,000 objects, a megabyte less).
    desired: [u8; 32],
}

fn verified_digest(hash: &str, file: &str) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut digest = Sha256::new();
    digest.update(hash.as_bytes());
    digest.update([0]);
    digest.update(file.as_bytes());
    digest.finalize().into()
}

impl Verified {
    /// What `plan` found in sync.
    pub fn of(plan: &Plan) -> Self {
        Self(
            plan.unchanged
                .iter()
                .filter_map(|s| {
                    let at = VerifiedAt {
                        version: s.live_version.clone()?,
                        desired: verified_digest(
                            s.hash.as_deref()?,
                            &s.source.as_ref()?.file.to_string_lossy(),
                        ),
                    };
                    Some((s.key.clone(), at))
                })
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn holds(&self, key: &ObjectKey, version: Option<&str>, hash: &str, file: &str) -> bool {
        matches!(
            (self.0.get(key), version),
            (Some(at), Some(version)) if at.version == version && at.desired == verified_digest(hash, file)
        )
    }
}

/// An object that differs from Git outside of a new revision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Drift {
    pub key: ObjectKey,
    pub reason: String,
}

/// A whole plan for one namespace.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Creates and updates, in apply order (DestinationRule ... VirtualService).
    pub apply: Vec<Step>,
    /// Deletions, in prune order (VirtualService ... DestinationRule).
    pub prune: Vec<Step>,
    pub unchanged: Vec<Step>,
    /// Sorted.
    pub drift: Vec<Drift>,
    /// The keys of the desired set, sorted: the inventory once applied.
    pub desired: Vec<ObjectKey>,
}

impl Plan {
    /// Nothing to write.
    pub fn is_noop(&self) -> bool {
        self.apply.is_empty() && self.prune.is_empty()
    }

    pub fn count(&self, action: Action) -> usize {
        match action {
            Action::Create | Action::Update => {
                self.apply.iter().filter(|s| s.action == action).count()
            }
            Action::Unchanged => self.unchanged.len(),
            Action::Prune => self.prune.len(),
        }
    }

    /// Every step, in apply order then prune order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.apply
            .iter()
            .chain(self.unchanged.iter())
            .chain(self.prune.iter())
    }
}

/// Why a plan was refused: the safety rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanRefusal {
    #[error("the revision failed to load; nothing is applied or pruned")]
    LoadFailed,
    #[error(
        "refusing to prune all {owned} objects: the namespace folder is empty; add a file named .allow-empty to the folder to allow it"
    )]
    WouldEmpty { owned: usize },
}

/// Knobs of a plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Delete owned objects that left Git (`--no-prune` turns this off).
    pub prune: bool,
    /// The agent's name (`--name`): its label on what it applies, and what
    /// it may prune.
    pub agent: String,
    /// The agent's field manager (`--field-manager`): a field of `spec`, a
    /// label or an annotation that another manager owns is drift.
    pub field_manager: String,
    /// The kinds' list types and defaults, as the server's OpenAPI says
    /// (`gitops_kube::schema`); a kind not in it compares every list as
    /// atomic and defaults nothing.
    pub schemas: Arc<Schemas>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            prune: true,
            agent: crate::gitopssync::DEFAULT_NAME.to_string(),
            field_manager: crate::DEFAULT_FIELD_MANAGER.to_string(),
            schemas: Arc::default(),
        }
    }
}

/// The kinds to LIST: those of the desired set and of the inventory.
pub fn kinds_in_use(desired: &DesiredSet, inventory: &[ObjectKey]) -> Vec<&'static IstioKind> {
    let mut set: BTreeSet<(u8, &str, &str)> = BTreeSet::new();
    let keys = desired
        .manifests
        .iter()
        .map(|m| (m.group.as_str(), m.kind.as_str()))
        .chain(
            inventory
                .iter()
                .map(|k| (k.group.as_str(), k.kind.as_str())),
        );
    let mut out = Vec::new();
    for (group, kind) in keys {
        if let Some(k) = kinds::lookup(group, kind)
            && set.insert((k.apply_rank, k.group, k.kind))
        {
            out.push(k);
        }
    }
    out.sort_by_key(|k| (k.apply_rank, k.kind));
    out
}

/// Plan `desired` against the `live` objects of the kinds in use in the
/// namespace, given the `inventory` of what the agent applied before.
pub fn plan(
    desired: &Result<DesiredSet, LoadError>,
    live: &[Value],
    inventory: &[ObjectKey],
    opts: &PlanOptions,
) -> Result<Plan, PlanRefusal> {
    let mut planner = Planner::new(desired, inventory, opts, KeepLive::Whole)?;
    for object in live {
        planner.add(object.clone());
    }
    planner.finish()
}

/// How much of a live object a [`Step`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepLive {
    /// All of it (`kubectl gitops diff` shows it).
    Whole,
    /// `apiVersion`, `kind` and `metadata`: what an apply reads (the
    /// resource version, and the managed fields it takes over).
    Metadata,
}

/// [`plan`], fed one live object at a time: each is compared as it comes and
/// dropped, so a namespace of thousands is never held whole (the agent feeds
/// it a LIST page at a time). The plan is the same in any order of `add`.
pub struct Planner<'a> {
    desired: &'a DesiredSet,
    opts: &'a PlanOptions,
    keep: KeepLive,
    inventory: BTreeSet<&'a ObjectKey>,
    /// Desired key -> index in `desired.manifests`; `true` once its live
    /// object was seen.
    wanted: BTreeMap<ObjectKey, (usize, bool)>,
    /// What [`Planner::with_prepared`] was given: `desired.manifests[i]`,
    /// prepared.
    prepared: Option<&'a [Prepared]>,
    reread: Option<&'a mut Reread<'a>>,
    verified: Option<&'a Verified>,
    plan: Plan,
    owned_not_wanted: Vec<Step>,
}

impl std::fmt::Debug for Planner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("namespace", &self.desired.namespace)
            .field("wanted", &self.wanted.len())
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl<'a> Planner<'a> {
    pub fn new(
        desired: &'a Result<DesiredSet, LoadError>,
        inventory: &'a [ObjectKey],
        opts: &'a PlanOptions,
        keep: KeepLive,
    ) -> Result<Self, PlanRefusal> {
        let Ok(desired) = desired else {
            return Err(PlanRefusal::LoadFailed);
        };
        let wanted = desired
            .manifests
            .iter()
            .enumerate()
            // policy refused unknown kinds already; a DesiredSet never holds one
            .filter(|(_, m)| kinds::lookup(&m.group, &m.kind).is_some())
            .map(|(i, m)| (m.key(), (i, false)))
            .collect();
        Ok(Self {
            desired,
            opts,
            keep,
            inventory: inventory.iter().collect(),
            wanted,
            prepared: None,
            reread: None,
            verified: None,
            plan: Plan::default(),
            owned_not_wanted: Vec::new(),
        })
    }

    /// Plan with the desired objects already prepared (the agent keeps
    /// them between passes): `prepared[i]` is `desired.manifests[i]`'s,
    /// whose own `object` is then not read.
    pub fn with_prepared(mut self, prepared: &'a [Prepared]) -> Self {
        assert_eq!(
            prepared.len(),
            self.desired.manifests.len(),
            "one prepared object per desired manifest"
        );
        self.prepared = Some(prepared);
        self
    }

    /// Where to get a prepared object that was given as its hash alone.
    pub fn with_reread(mut self, reread: &'a mut Reread<'a>) -> Self {
        self.reread = Some(reread);
        self
    }

    /// Trust what an earlier plan found in sync ([`Verified`]).
    pub fn with_verified(mut self, verified: &'a Verified) -> Self {
        self.verified = Some(verified);
        self
    }

    /// One live object of a kind in use (a second object with the same key
    /// is ignored).
    pub fn add(&mut self, live: Value) {
        let Some(key) = ObjectKey::of(&live) else {
            return;
        };
        match self.wanted.get_mut(&key) {
            Some((_, true)) => {}
            Some((index, seen)) => {
                *seen = true;
                let index = *index;
                self.step(index, key, Some(live));
            }
            None => self.unwanted(key, live),
        }
    }

    /// The live object of `key` is at resource version `version`, as a
    /// watch of its kind saw it last. `true` when that is enough: it is
    /// desired, was found in sync at that very version ([`Verified`]) and
    /// Git asks for it unchanged (the same hash and file), so it is planned
    /// unchanged without being read. `false` when the planner needs the
    /// object itself ([`Planner::add`]), or does not want it.
    pub fn add_version(&mut self, key: &ObjectKey, version: &str) -> bool {
        let Some(verified) = self.verified else {
            return false;
        };
        let Some((index, seen)) = self.wanted.get_mut(key) else {
            return false;
        };
        if *seen {
            return true;
        }
        let index = *index;
        let m = &self.desired.manifests[index];
        let Some(kind) = kinds::lookup(&m.group, &m.kind) else {
            return false;
        };
        let hash = match self.prepared {
            Some(prepared) => prepared[index].hash.clone(),
            None => Prepared::of(m, &self.desired.namespace, &self.opts.agent).hash,
        };
        if !verified.holds(key, Some(version), &hash, &m.source.file.to_string_lossy()) {
            return false;
        }
        *seen = true;
        let source = m.source.clone();
        self.unchanged(key.clone(), kind, source, hash, Some(version.to_string()));
        true
    }

    /// Whether the live object `key`, which Git does not ask for, is one the
    /// plan must see: it is in the inventory, or `owned` (labelled as the
    /// agent's), and so would be pruned.
    pub fn would_prune(&self, key: &ObjectKey, owned: bool) -> bool {
        !self.wanted.contains_key(key) && (owned || self.inventory.contains(key))
    }

    /// The plan, once every live object was added.
    pub fn finish(mut self) -> Result<Plan, PlanRefusal> {
        let wanted = std::mem::take(&mut self.wanted);
        for (key, (index, seen)) in &wanted {
            if !seen {
                self.step(*index, key.clone(), None);
            }
        }
        let desired = self.desired;
        if desired.manifests.is_empty() && !desired.allow_empty {
            let owned = self.owned_not_wanted.len().max(self.inventory.len());
            if owned > 0 {
                return Err(PlanRefusal::WouldEmpty { owned });
            }
        }
        let mut plan = self.plan;
        if self.opts.prune {
            plan.prune = self.owned_not_wanted;
        }
        plan.apply
            .sort_by(|a, b| (a.kind.apply_rank, &a.key).cmp(&(b.kind.apply_rank, &b.key)));
        plan.unchanged
            .sort_by(|a, b| (a.kind.apply_rank, &a.key).cmp(&(b.kind.apply_rank, &b.key)));
        plan.prune.sort_by(|a, b| {
            (std::cmp::Reverse(a.kind.apply_rank), &a.key)
                .cmp(&(std::cmp::Reverse(b.kind.apply_rank), &b.key))
        });
        plan.drift.sort();
        plan.desired = wanted.into_keys().collect();
        Ok(plan)
    }

    /// The step of desired manifest `index` against its live object.
    fn step(&mut self, index: usize, key: ObjectKey, live: Option<Value>) {
        let desired = self.desired;
        let m = &desired.manifests[index];
        let Some(kind) = kinds::lookup(&m.group, &m.kind) else {
            return;
        };
        let mut prepared = match self.prepared {
            Some(prepared) => Cow::Borrowed(&prepared[index]),
            None => Cow::Owned(Prepared::of(m, &self.desired.namespace, &self.opts.agent)),
        };
        let hash = prepared.hash.clone();
        let source_path = m.source.file.to_string_lossy();
        let live_version = live.as_ref().and_then(resource_version);
        let (action, reason) = match &live {
            None if self.inventory.contains(&key) => {
                self.plan.drift.push(Drift {
                    key: key.clone(),
                    reason: "missing: deleted outside Git".into(),
                });
                (Action::Create, "missing: deleted outside Git".to_string())
            }
            None => (Action::Create, "new in Git".to_string()),
            Some(live) => {
                let live_hash = live["metadata"]["annotations"][ANNOTATION_HASH].as_str();
                // The source annotation says where the object is in Git, not
                // what it is: a renamed or moved file is an update of that
                // annotation, never drift (it is outside the hash too).
                let live_source = live["metadata"]["annotations"][ANNOTATION_SOURCE].as_str();
                let trusted = live_hash == Some(hash.as_str())
                    && live_source == Some(source_path.as_ref())
                    && self.verified.is_some_and(|v| {
                        v.holds(&key, live_version.as_deref(), &hash, &source_path)
                    });
                if trusted {
                    (Action::Unchanged, "in sync".to_string())
                } else {
                    let Some(full) = self.full(index, prepared) else {
                        return;
                    };
                    prepared = full;
                    let mut compared = prepared.value().expect("a full prepared object");
                    if let Some(annotations) = compared["metadata"]["annotations"].as_object_mut() {
                        match live_source {
                            Some(s) => annotations.insert(ANNOTATION_SOURCE.into(), s.into()),
                            None => annotations.remove(ANNOTATION_SOURCE),
                        };
                    }
                    let shape = self.opts.schemas.get(&m.group, &m.kind);
                    let difference =
                        drift::difference(&compared, live, shape, &self.opts.field_manager);
                    match difference {
                        None if live_hash == Some(hash.as_str())
                            && live_source != Some(source_path.as_ref()) =>
                        {
                            (
                                Action::Update,
                                format!(
                                    "moved in Git: {} -> {source_path}",
                                    live_source.unwrap_or("(no source)")
                                ),
                            )
                        }
                        None if live_hash == Some(hash.as_str()) => {
                            (Action::Unchanged, "in sync".to_string())
                        }
                        None => (Action::Update, "hash annotation differs".to_string()),
                        Some(diff) if live_hash == Some(hash.as_str()) => {
                            self.plan.drift.push(Drift {
                                key: key.clone(),
                                reason: diff.clone(),
                            });
                            (Action::Update, diff)
                        }
                        Some(_) => (Action::Update, "changed in Git".to_string()),
                    }
                }
            }
        };
        if action == Action::Unchanged {
            self.unchanged(key, kind, m.source.clone(), hash, live_version);
            return;
        }
        let source = Some(m.source.clone());
        let Some(prepared) = self.full(index, prepared) else {
            return;
        };
        self.plan.apply.push(Step {
            action,
            key,
            kind,
            reason,
            object: prepared.json.clone(),
            source,
            hash: Some(hash),
            live: live.map(|l| self.kept(l)),
            live_version,
        });
    }

    /// An unchanged step: nothing to write, so the objects are not kept (a
    /// no-op pass over many objects would otherwise hold each twice more).
    fn unchanged(
        &mut self,
        key: ObjectKey,
        kind: &'static IstioKind,
        source: Source,
        hash: String,
        live_version: Option<String>,
    ) {
        self.plan.unchanged.push(Step {
            action: Action::Unchanged,
            key,
            kind,
            reason: "in sync".to_string(),
            object: None,
            source: Some(source),
            hash: Some(hash),
            live: None,
            live_version,
        });
    }

    /// `prepared` with its object: prepared from the manifest's document
    /// when it still has one, else asked for again; `None` when that failed.
    fn full(&mut self, index: usize, prepared: Cow<'a, Prepared>) -> Option<Cow<'a, Prepared>> {
        if prepared.json.is_some() {
            return Some(prepared);
        }
        let m = &self.desired.manifests[index];
        match self.reread.as_mut() {
            Some(reread) if m.object.is_null() => reread(index).map(Cow::Owned),
            _ => {
                let again = Prepared::of(m, &self.desired.namespace, &self.opts.agent);
                Some(Cow::Owned(again))
            }
        }
    }

    /// A live object that Git does not ask for: a prune when it is owned.
    fn unwanted(&mut self, key: ObjectKey, live: Value) {
        let ns = self.desired.namespace.as_str();
        if !(self.inventory.contains(&key) || is_owned_by(&live, ns, &self.opts.agent)) {
            return; // someone else's: never pruned, never drift
        }
        let Some(kind) = kinds::lookup(&key.group, &key.kind) else {
            return;
        };
        self.plan.drift.push(Drift {
            key: key.clone(),
            reason: "not in Git".into(),
        });
        let live_version = resource_version(&live);
        let live = self.kept(live);
        self.owned_not_wanted.push(Step {
            action: Action::Prune,
            key,
            kind,
            reason: "no longer in Git".into(),
            object: None,
            source: None,
            hash: None,
            live: Some(live),
            live_version,
        });
    }

    fn kept(&self, live: Value) -> Value {
        match (self.keep, live) {
            (KeepLive::Metadata, Value::Object(mut map)) => {
                map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
                Value::Object(map)
            }
            (_, live) => live,
        }
    }
}

pub use crate::drift::first_difference;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        LABEL_MANAGED_BY, LABEL_OWNER,
        manifest::{LoadOptions, parse_str},
    };
    use serde_json::json;
    use std::path::Path;

    /// A VirtualService builder: `vs("reviews").route("v1", 80).route("v2", 20)`.
    struct Vs {
        name: String,
        routes: Vec<(String, u32)>,
    }

    fn vs(name: &str) -> Vs {
        Vs {
            name: name.into(),
            routes: Vec::new(),
        }
    }

    impl Vs {
        fn route(mut self, subset: &str, weight: u32) -> Self {
            self.routes.push((subset.into(), weight));
            self
        }

        fn yaml(&self) -> String {
            let mut s = format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {}\nspec:\n  hosts: [{}]\n  http:\n  - route:\n",
                self.name, self.name
            );
            for (subset, weight) in &self.routes {
                s.push_str(&format!(
                    "    - destination:\n        host: {}\n        subset: {subset}\n      weight: {weight}\n",
                    self.name
                ));
            }
            s
        }
    }

    fn dr(name: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\nspec:\n  host: {name}\n  subsets:\n  - name: v1\n    labels: {{version: v1}}\n"
        )
    }

    fn desired(docs: &[String], allow_empty: bool) -> Result<DesiredSet, LoadError> {
        let text = docs.join("---\n");
        let manifests = parse_str(
            &text,
            Path::new("namespaces/team-a/all.yaml"),
            &LoadOptions::default(),
        )
        .unwrap();
        Ok(DesiredSet {
            namespace: "team-a".into(),
            manifests,
            allow_empty,
        })
    }

    /// What the server would hold after applying `set`: the desired object
    /// plus server-populated fields.
    fn applied(set: &Result<DesiredSet, LoadError>) -> Vec<Value> {
        let set = set.as_ref().unwrap();
        set.manifests
            .iter()
            .map(|m| {
                let (mut o, _) = desired_object(
                    &m.object,
                    "team-a",
                    "sync-agent",
                    &m.source.file.to_string_lossy(),
                );
                o["metadata"]["uid"] = json!("u-1");
                o["metadata"]["resourceVersion"] = json!("7");
                o["metadata"]["managedFields"] = json!([{"manager": "kubectl-gitops"}]);
                o["status"] = json!({});
                o
            })
            .collect()
    }

    fn keys(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.key.to_string()).collect()
    }

    fn inventory(live: &[Value]) -> Vec<ObjectKey> {
        live.iter().filter_map(ObjectKey::of).collect()
    }

    #[test]
    fn creates_in_make_before_break_order() {
        let d = desired(
            &[vs("reviews").route("v1", 100).yaml(), dr("reviews")],
            false,
        );
        let p = plan(&d, &[], &[], &PlanOptions::default()).unwrap();
        assert_eq!(
            keys(&p.apply),
            ["DestinationRule/reviews", "VirtualService/reviews"]
        );
        assert!(
            p.apply
                .iter()
                .all(|s| s.action == Action::Create && s.reason == "new in Git")
        );
        assert!(p.drift.is_empty());
        let obj = p.apply[1].object_value().unwrap();
        assert_eq!(obj["metadata"]["labels"][LABEL_OWNER], "team-a");
        assert_eq!(obj["metadata"]["namespace"], "team-a");
        assert_eq!(p.desired.len(), 2);
    }

    #[test]
    fn unchanged_objects_cost_no_write_even_with_server_fields() {
        let d = desired(
            &[vs("reviews").route("v1", 100).yaml(), dr("reviews")],
            false,
        );
        let live = applied(&d);
        let p = plan(&d, &live, &inventory(&live), &PlanOptions::default()).unwrap();
        assert!(p.is_noop(), "{:?}", p.apply);
        assert_eq!(p.count(Action::Unchanged), 2);
        assert!(p.drift.is_empty());
    }

    #[test]
    fn a_renamed_file_is_an_update_never_drift() {
        let d = desired(&[dr("reviews")], false);
        let live = applied(&d);
        let mut moved = d.unwrap();
        moved.manifests[0].source.file = "namespaces/team-a/rules/reviews.yaml".into();
        let moved = Ok(moved);
        let p = plan(&moved, &live, &inventory(&live), &PlanOptions::default()).unwrap();
        assert!(p.drift.is_empty(), "{:?}", p.drift);
        assert_eq!(keys(&p.apply), ["DestinationRule/reviews"]);
        assert_eq!(p.apply[0].action, Action::Update);
        assert_eq!(
            p.apply[0].reason,
            "moved in Git: namespaces/team-a/all.yaml -> namespaces/team-a/rules/reviews.yaml"
        );
        // Applied, it is in sync again.
        let after = applied(&moved);
        let p = plan(&moved, &after, &inventory(&after), &PlanOptions::default()).unwrap();
        assert!(p.is_noop() && p.drift.is_empty());
    }

    #[test]
    fn a_changed_weight_updates_exactly_one_object() {
        let before = desired(
            &[
                vs("reviews").route("v1", 80).route("v2", 20).yaml(),
                dr("reviews"),
            ],
            false,
        );
        let live = applied(&before);
        let after = desired(
            &[
                vs("reviews").route("v1", 50).route("v2", 50).yaml(),
                dr("reviews"),
            ],
            false,
        );
        let p = plan(&after, &live, &inventory(&live), &PlanOptions::default()).unwrap();
        assert_eq!(keys(&p.apply), ["VirtualService/reviews"]);
        assert_eq!(p.apply[0].action, Action::Update);
        assert_eq!(p.apply[0].reason, "changed in Git");
        assert!(p.drift.is_empty(), "a new revision is not drift");
    }

    #[test]
    fn a_field_edited_live_is_drift_and_is_healed() {
        let d = desired(
            &[vs("reviews").route("v1", 80).route("v2", 20).yaml()],
            false,
        );
        let mut live = applied(&d);
        live[0]["spec"]["http"][0]["route"][0]["weight"] = json!(0);
        let p = plan(&d, &live, &inventory(&live), &PlanOptions::default()).unwrap();
        assert_eq!(p.drift.len(), 1);
        assert_eq!(
            p.drift[0].reason,
            "spec.http[0].route[0].weight: Git has 80, live has 0"
        );
        assert_eq!(keys(&p.apply), ["VirtualService/reviews"]);
        assert_eq!(p.apply[0].action, Action::Update);
    }

    fn plan_with(
        d: &Result<DesiredSet, LoadError>,
        live: &[Value],
        prepared: &[Prepared],
        verified: &Verified,
    ) -> Plan {
        let opts = PlanOptions::default();
        let inv = inventory(live);
        let mut planner = Planner::new(d, &inv, &opts, KeepLive::Metadata)
            .unwrap()
            .with_prepared(prepared)
            .with_verified(verified);
        live.iter().for_each(|l| planner.add(l.clone()));
        planner.finish().unwrap()
    }

    fn prepared(d: &Result<DesiredSet, LoadError>) -> Vec<Prepared> {
        let set = d.as_ref().unwrap();
        set.manifests
            .iter()
            .map(|m| Prepared::of(m, "team-a", &PlanOptions::default().agent))
            .collect()
    }

    #[test]
    fn prepared_objects_plan_like_the_parsed_documents() {
        let d = desired(
            &[
                vs("reviews").route("v1", 80).route("v2", 20).yaml(),
                dr("reviews"),
            ],
            false,
        );
        let p = prepared(&d);
        // Without their documents: the planner reads only the prepared objects.
        let mut hollow = d.as_ref().unwrap().clone();
        hollow
            .manifests
            .iter_mut()
            .for_each(|m| m.object = Value::Null);
        let hollow = Ok(hollow);
        let mut live = applied(&d);
        live[0]["spec"]["http"][0]["route"][0]["weight"] = json!(0);
        let none = Verified::default();
        for live in [&[][..], &live[..1], &live[..]] {
            let want = plan(&d, live, &inventory(live), &PlanOptions::default()).unwrap();
            let summary = |p: &Plan| {
                let steps = p.apply.iter().chain(&p.unchanged).chain(&p.prune);
                let steps: Vec<_> = steps
                    .map(|s| {
                        let object = s.object_value();
                        (
                            s.action,
                            s.key.clone(),
                            s.reason.clone(),
                            object,
                            s.hash.clone(),
                        )
                    })
                    .collect();
                (steps, p.drift.clone(), p.desired.clone())
            };
            assert_eq!(
                summary(&plan_with(&hollow, live, &p, &none)),
                summary(&want)
            );
        }
    }

    #[test]
    fn hashes_alone_are_read_again_only_for_what_is_compared_or_written() {
        let d = desired(
            &[vs("reviews").route("v1", 100).yaml(), dr("reviews")],
            false,
        );
        let whole = prepared(&d);
        // as the agent holds them: the documents dropped, the hashes kept
        let mut hollow = d.as_ref().unwrap().clone();
        hollow
            .manifests
            .iter_mut()
            .for_each(|m| m.object = Value::Null);
        let hollow = Ok(hollow);
        let hashes: Vec<Prepared> = whole.iter().map(Prepared::hash_only).collect();
        let opts = PlanOptions::default();
        let mut live = applied(&d);
        let plan_of = |live: &[Value], verified: &Verified, fail: bool| {
            let asked = std::cell::RefCell::new(Vec::new());
            let mut reread = |i: usize| {
                asked.borrow_mut().push(i);
                (!fail).then(|| whole[i].clone())
            };
            let inv = inventory(live);
            let mut planner = Planner::new(&hollow, &inv, &opts, KeepLive::Metadata)
                .unwrap()
                .with_prepared(&hashes)
                .with_reread(&mut reread)
                .with_verified(verified);
            live.iter().for_each(|l| planner.add(l.clone()));
            let plan = planner.finish().unwrap();
            (plan, asked.into_inner())
        };
        // Nothing verified: each is compared, so each is read again, and
        // the plan is the one of the whole objects.
        let (first, asked) = plan_of(&live, &Verified::default(), false);
        assert_eq!(asked.len(), 2);
        let steps = |p: &Plan| {
            let steps = p.apply.iter().chain(&p.unchanged);
            let steps: Vec<_> = steps
                .map(|s| (s.action, s.key.clone(), s.reason.clone(), s.object.clone()))
                .collect();
            (steps, p.drift.clone())
        };
        let want = plan_with(&d, &live, &whole, &Verified::default());
        assert_eq!(steps(&first), steps(&want));
        // Verified and unchanged: nothing read.
        let verified = Verified::of(&first);
        let (again, asked) = plan_of(&live, &verified, false);
        assert!(again.is_noop() && asked.is_empty(), "{asked:?}");
        // One edited live: only that one is read, and written whole.
        live[0]["spec"]["hosts"] = json!(["other"]);
        live[0]["metadata"]["resourceVersion"] = json!("8");
        let (drifted, asked) = plan_of(&live, &verified, false);
        assert_eq!(asked.len(), 1);
        assert_eq!(drifted.apply.len(), 1);
        assert_eq!(drifted.apply[0].object, whole[asked[0]].json);
        // A read that fails leaves the object out (the caller drops the plan).
        let (partial, _) = plan_of(&live, &verified, true);
        assert!(partial.apply.is_empty(), "{:?}", partial.apply);
    }

    #[test]
    fn an_object_verified_in_sync_is_trusted_until_its_version_or_git_changes() {
        let d = desired(
            &[vs("reviews").route("v1", 100).yaml(), dr("reviews")],
            false,
        );
        let p = prepared(&d);
        let live = applied(&d);
        let first = plan_with(&d, &live, &p, &Verified::default());
        assert!(first.is_noop());
        let verified = Verified::of(&first);
        assert_eq!(verified.len(), 2);
        // Same resource version: not compared again (an edit the version
        // does not show, which the API server never makes, goes unseen).
        let mut unseen = live.clone();
        unseen[0]["spec"]["hosts"] = json!(["other"]);
        let again = plan_with(&d, &unseen, &p, &verified);
        assert!(again.is_noop() && again.drift.is_empty());
        assert_eq!(Verified::of(&again), verified);
        // A new resource version: compared, and the edit is drift.
        let mut edited = unseen.clone();
        edited[0]["metadata"]["resourceVersion"] = json!("8");
        let drifted = plan_with(&d, &edited, &p, &verified);
        assert_eq!(keys(&drifted.apply), ["VirtualService/reviews"]);
        assert_eq!(drifted.drift.len(), 1, "{:?}", drifted.drift);
        assert_eq!(Verified::of(&drifted).len(), 1);
        // Git changes the object: updated, whatever was verified.
        let changed = desired(
            &[vs("reviews").route("v2", 100).yaml(), dr("reviews")],
            false,
        );
        let c = plan_with(&changed, &live, &prepared(&changed), &verified);
        assert_eq!(keys(&c.apply), ["VirtualService/reviews"]);
        assert_eq!(c.apply[0].reason, "changed in Git");
        // Git moves the file: the source annotation is updated.
        let mut moved = d.as_ref().unwrap().clone();
        moved.manifests[1].source.file = "namespaces/team-a/dr.yaml".into();
        let moved = Ok(moved);
        let m = plan_with(&moved, &live, &prepared(&moved), &verified);
        assert_eq!(keys(&m.apply), ["DestinationRule/reviews"]);
        assert!(
            m.apply[0].reason.starts_with("moved in Git"),
            "{}",
            m.apply[0].reason
        );
    }

    #[test]
    fn a_version_from_a_watch_is_trusted_only_as_verified() {
        let d = desired(
            &[vs("reviews").route("v1", 100).yaml(), dr("reviews")],
            false,
        );
        let p = prepared(&d);
        let live = applied(&d);
        let verified = Verified::of(&plan_with(&d, &live, &p, &Verified::default()));
        let vs_key = ObjectKey::of(&live[0]).unwrap();
        let dr_key = ObjectKey::of(&live[1]).unwrap();
        let version = |i: usize| live[i]["metadata"]["resourceVersion"].as_str().unwrap();
        let opts = PlanOptions::default();
        let inv = inventory(&live);
        let planner = || {
            Planner::new(&d, &inv, &opts, KeepLive::Metadata)
                .unwrap()
                .with_prepared(&p)
                .with_verified(&verified)
        };
        // both at the versions verified: planned unchanged, nothing read
        let mut both = planner();
        assert!(both.add_version(&vs_key, version(0)));
        assert!(both.add_version(&dr_key, version(1)));
        let plan = both.finish().unwrap();
        assert!(plan.is_noop() && plan.apply.is_empty());
        assert_eq!(Verified::of(&plan), verified);
        // another version: the object must be read; what is read is compared
        let mut edited = planner();
        assert!(!edited.add_version(&vs_key, "999"));
        let mut changed = live[0].clone();
        changed["metadata"]["resourceVersion"] = json!("999");
        changed["spec"]["hosts"] = json!(["other"]);
        edited.add(changed);
        assert!(edited.add_version(&dr_key, version(1)));
        let plan = edited.finish().unwrap();
        assert_eq!(keys(&plan.apply), ["VirtualService/reviews"]);
        assert_eq!(plan.drift.len(), 1);
        // not verified at all, or not desired: read it
        let none = Verified::default();
        let mut fresh = Planner::new(&d, &inv, &opts, KeepLive::Metadata)
            .unwrap()
            .with_prepared(&p)
            .with_verified(&none);
        assert!(!fresh.add_version(&vs_key, version(0)));
        let other = ObjectKey::new("networking.istio.io", "VirtualService", "gone");
        assert!(!fresh.add_version(&other, "1"));
        // what Git no longer asks for is needed when the agent owns it
        assert!(fresh.would_prune(&other, true));
        assert!(!fresh.would_prune(&other, false));
        assert!(!fresh.would_prune(&vs_key, true), "desired, not a prune");
        // a desired object the watch never saw is created
        let plan = fresh.finish().unwrap();
        assert_eq!(plan.count(Action::Create), 2);
        // Git moves the file: not trusted, read and updated
        let mut moved = d.as_ref().unwrap().clone();
        moved.manifests[1].source.file = "namespaces/team-a/dr.yaml".into();
        let moved = Ok(moved);
        let mp = prepared(&moved);
        let mut m = Planner::new(&moved, &inv, &opts, KeepLive::Metadata)
            .unwrap()
            .with_prepared(&mp)
            .with_verified(&verified);
        assert!(!m.add_version(&dr_key, version(1)));
    }

    #[test]
    fn a_deleted_object_is_drift_and_recreated() {
        let d = desired(
            &[vs("reviews").route("v1", 100).yaml(), dr("reviews")],
            false,
        );
        let live = applied(&d);
        let inv = inventory(&live);
        // live[0] is the VirtualService: someone deleted it
        let p = plan(&d, &live[1..], &inv, &PlanOptions::default()).unwrap();
        assert_eq!(keys(&p.apply), ["VirtualService/reviews"]);
        assert_eq!(p.apply[0].action, Action::Create);
        assert_eq!(p.drift[0].reason, "missing: deleted outside Git");
    }

    #[test]
    fn server_populated_fields_are_not_drift() {
        let d = desired(&[dr("reviews")], false);
        let mut live = applied(&d);
        live[0]["spec"]["trafficPolicy"] = json!({"tls": {"mode": "ISTIO_MUTUAL"}});
        live[0]["metadata"]["labels"]["added-by-someone"] = json!("x");
        let p = plan(&d, &live, &inventory(&live), &PlanOptions::default()).unwrap();
        assert!(p.is_noop());
        assert!(p.drift.is_empty());
    }

    #[test]
    fn an_extra_list_item_live_is_drift() {
        let d = desired(&[dr("reviews")], false);
        let mut live = applied(&d);
        live[0]["spec"]["subsets"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "v9"}));
        let p = plan(&d, &live, &inventory(&live), &PlanOptions::default()).unwrap();
        assert_eq!(p.drift[0].reason, "spec.subsets: 1 items in Git, 2 live");
    }

    #[test]
    fn prunes_owned_objects_that_left_git_vs_before_dr() {
        let before = desired(
            &[
                vs("reviews").route("v1", 100).yaml(),
                dr("reviews"),
                dr("ratings"),
            ],
            false,
        );
        let live = applied(&before);
        let after = desired(&[dr("details")], false);
        let p = plan(&after, &live, &inventory(&live), &PlanOptions::default()).unwrap();
        assert_eq!(
            keys(&p.prune),
            [
                "VirtualService/reviews",
                "DestinationRule/ratings",
                "DestinationRule/reviews"
            ]
        );
        assert_eq!(p.drift.len(), 3);
        assert!(p.drift.iter().all(|d| d.reason == "not in Git"));
        let no_prune = plan(
            &after,
            &live,
            &inventory(&live),
            &PlanOptions {
                prune: false,
                ..PlanOptions::default()
            },
        )
        .unwrap();
        assert!(no_prune.prune.is_empty());
        assert_eq!(no_prune.drift.len(), 3, "still reported");
    }

    #[test]
    fn a_planner_fed_a_page_at_a_time_plans_as_the_whole_list_does() {
        let before = desired(
            &[
                vs("reviews").route("v1", 100).yaml(),
                dr("reviews"),
                dr("ratings"),
            ],
            false,
        );
        let mut live = applied(&before);
        live[1]["spec"]["host"] = json!("edited-live");
        let after = desired(
            &[
                vs("reviews").route("v1", 50).route("v2", 50).yaml(),
                dr("reviews"),
                dr("details"),
            ],
            false,
        );
        let inv = inventory(&live);
        let opts = PlanOptions::default();
        let whole = plan(&after, &live, &inv, &opts).unwrap();
        // reversed, one at a time, a duplicate ignored, live kept as metadata
        let mut planner = Planner::new(&after, &inv, &opts, KeepLive::Metadata).unwrap();
        for object in live.iter().rev().chain(live.first()) {
            planner.add(object.clone());
        }
        let paged = planner.finish().unwrap();
        let summary = |p: &Plan| -> Vec<(Action, String, String)> {
            p.steps()
                .map(|s| (s.action, s.key.to_string(), s.reason.clone()))
                .collect()
        };
        assert_eq!(summary(&paged), summary(&whole));
        assert_eq!(paged.drift, whole.drift);
        assert_eq!(paged.desired, whole.desired);
        assert_eq!(
            keys(&paged.apply),
            [
                "DestinationRule/details",
                "DestinationRule/reviews",
                "VirtualService/reviews"
            ]
        );
        assert_eq!(keys(&paged.prune), ["DestinationRule/ratings"]);
        // what a step keeps of a live object: its metadata, for the apply
        for step in paged.apply.iter().chain(&paged.prune) {
            let Some(kept) = &step.live else { continue };
            assert!(
                kept.get("spec").is_none() && kept.get("status").is_none(),
                "{kept}"
            );
            assert_eq!(kept["metadata"]["resourceVersion"], "7");
            assert!(kept["kind"].is_string() && kept["apiVersion"].is_string());
        }
        let whole_live = whole.apply.iter().find_map(|s| s.live.as_ref()).unwrap();
        assert!(
            whole_live.get("spec").is_some(),
            "diff shows the whole object"
        );
    }

    #[test]
    fn objects_of_others_are_never_pruned() {
        let d = desired(&[dr("reviews")], false);
        let mut live = applied(&d);
        let mut foreign = live[0].clone();
        foreign["metadata"]["name"] = json!("hand-made");
        foreign["metadata"]["labels"] = json!({"team": "a"});
        live.push(foreign.clone());
        // labelled for another owner: not ours either
        let mut other = live[0].clone();
        other["metadata"]["name"] = json!("team-b-thing");
        other["metadata"]["labels"][LABEL_OWNER] = json!("team-b");
        live.push(other);
        let p = plan(
            &d,
            &live,
            &[ObjectKey::of(&live[0]).unwrap()],
            &PlanOptions::default(),
        )
        .unwrap();
        assert!(p.prune.is_empty());
        assert!(p.drift.is_empty());
    }

    #[test]
    fn inventory_alone_makes_an_object_prunable() {
        let d = desired(&[dr("reviews"), dr("ratings")], false);
        let mut live = applied(&d);
        // labels stripped by someone, but the inventory says we applied it
        live[1]["metadata"]["labels"] = json!({});
        let inv = inventory(&live);
        let after = desired(&[dr("reviews")], false);
        let p = plan(&after, &live, &inv, &PlanOptions::default()).unwrap();
        assert_eq!(keys(&p.prune), ["DestinationRule/ratings"]);
        assert_eq!(
            p.prune[0].live.as_ref().unwrap()["metadata"]["labels"][LABEL_MANAGED_BY],
            Value::Null
        );
    }

    #[test]
    fn refuses_to_plan_a_revision_that_failed_to_load() {
        let failed: Result<DesiredSet, LoadError> = Err(LoadError { errors: vec![] });
        let live = applied(&desired(&[dr("reviews")], false));
        assert_eq!(
            plan(&failed, &live, &inventory(&live), &PlanOptions::default()).unwrap_err(),
            PlanRefusal::LoadFailed
        );
    }

    #[test]
    fn refuses_to_empty_a_namespace_without_allow_empty() {
        let live = applied(&desired(&[dr("reviews"), dr("ratings")], false));
        let empty = desired(&[], false);
        let err = plan(&empty, &live, &inventory(&live), &PlanOptions::default()).unwrap_err();
        assert_eq!(err, PlanRefusal::WouldEmpty { owned: 2 });
        assert!(err.to_string().contains(".allow-empty"));
        // inventory alone (objects already gone live) still counts
        let err = plan(&empty, &[], &inventory(&live), &PlanOptions::default()).unwrap_err();
        assert_eq!(err, PlanRefusal::WouldEmpty { owned: 2 });
        // with the marker, everything is pruned
        let allowed = desired(&[], true);
        let p = plan(&allowed, &live, &inventory(&live), &PlanOptions::default()).unwrap();
        assert_eq!(p.prune.len(), 2);
        // an empty namespace that owns nothing is fine
        assert!(
            plan(&empty, &[], &[], &PlanOptions::default())
                .unwrap()
                .is_noop()
        );
    }

    #[test]
    fn kinds_in_use_cover_desired_and_inventory() {
        let d = desired(&[vs("a").route("v1", 100).yaml()], false).unwrap();
        let inv = [ObjectKey::new(
            "security.istio.io",
            "AuthorizationPolicy",
            "x",
        )];
        let kinds: Vec<_> = kinds_in_use(&d, &inv).iter().map(|k| k.kind).collect();
        assert_eq!(kinds, ["AuthorizationPolicy", "VirtualService"]);
    }

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(
            first_difference(&json!({"a": 1}), &json!({"a": 1.0}), None),
            None
        );
        assert_eq!(
            first_difference(&json!({"a": null}), &json!({}), None),
            None
        );
        assert!(first_difference(&json!({"a": "1"}), &json!({"a": 1}), None).is_some());
    }
}
