//! What one pass does, decided without the cluster: the loaded revision, the
//! agent's `GitOpsSync` (suspend, the last status), the plan against the
//! live objects and the flags go in; what to write comes out. Every safety
//! rule of the agent is here, in plain functions the unit tests below call.
//!
//! The runner ([`crate::agent`]) does the I/O around it: load, read the
//! control object, list the live objects, then carry out the [`Decision`].

use gitops_shared::{
    DesiredSet,
    plan::{Action, Plan, PlanRefusal},
};

use crate::{config::Config, error::SyncError, load::Loaded, plan, report::status::Control};

/// The flags a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// `--name`: whose labelled objects it owns and may prune.
    pub name: &'a str,
    pub dry_run: bool,
    pub prune: bool,
    pub self_heal: bool,
}

impl<'a> Settings<'a> {
    pub fn of(cfg: &'a Config) -> Self {
        Self {
            name: &cfg.name,
            dry_run: cfg.dry_run,
            prune: cfg.prune,
            self_heal: cfg.self_heal,
        }
    }
}

/// What the runner remembers between passes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory<'a> {
    /// Digest of the desired set last applied in full by this process.
    pub applied_digest: Option<&'a str>,
    /// `status.revision`: the revision reported as fully applied.
    pub reported_revision: &'a str,
}

/// What to do with one revision.
#[derive(Debug)]
pub enum Decision {
    /// `--dry-run`: print the plan; write nothing.
    Print { plan: Plan },
    /// `spec.suspend`: report the plan (and drift); write nothing else.
    Suspend { plan: Plan },
    /// Write the plan. `pending`: a desired set not applied yet (reported
    /// as Progressing first); otherwise self-heal of drift.
    Apply {
        plan: Plan,
        digest: String,
        pending: bool,
        prune: bool,
    },
    /// Nothing to write; report (drift remains with `--no-self-heal` or
    /// `--no-prune`).
    Report { plan: Plan, digest: String },
}

impl Decision {
    pub fn plan(&self) -> &Plan {
        match self {
            Decision::Print { plan }
            | Decision::Suspend { plan }
            | Decision::Apply { plan, .. }
            | Decision::Report { plan, .. } => plan,
        }
    }
}

/// Refuse to go on when the last status cannot be read: its inventory is
/// what the agent may prune, so nothing may be planned, written or pruned.
pub fn check_control(control: &Control, name: &str) -> Result<(), SyncError> {
    match &control.unreadable {
        Some(why) => Err(SyncError::StatusUnreadable {
            name: name.to_string(),
            why: why.clone(),
        }),
        None => Ok(()),
    }
}

/// The desired set of a revision, or why the revision is refused whole (a
/// revision is all or nothing: one bad file and nothing is applied or pruned).
pub fn admit(loaded: &Loaded) -> Result<&DesiredSet, SyncError> {
    match (&loaded.desired, loaded.refusal()) {
        (Ok(desired), None) => Ok(desired),
        (_, refusal) => Err(SyncError::InvalidRevision {
            revision: loaded.revision.clone(),
            refusal: refusal.unwrap_or_default(),
        }),
    }
}

/// Decide one pass of an admitted revision, given its plan against the live
/// objects (or why there is none).
pub fn decide(
    loaded: &Loaded,
    control: &Control,
    planned: Result<Plan, PlanRefusal>,
    settings: Settings<'_>,
    memory: Memory<'_>,
) -> Result<Decision, SyncError> {
    let plan = planned.map_err(|refusal| SyncError::PruneRefused {
        revision: loaded.revision.clone(),
        refusal,
    })?;
    if settings.dry_run {
        return Ok(Decision::Print { plan });
    }
    if control.suspend {
        return Ok(Decision::Suspend { plan });
    }
    let digest = plan::desired_digest(&plan);
    let pending = match memory.applied_digest {
        Some(applied) => applied != digest,
        // After a restart: a commit (or content digest) names its content, so
        // the revision the status reports is applied; a dirty plain checkout
        // is not known to be.
        None => memory.reported_revision != loaded.revision || loaded.revision.ends_with("-dirty"),
    };
    let writes = !plan.apply.is_empty() || (settings.prune && !plan.prune.is_empty());
    // A new desired set is always applied; drift only with self-heal.
    if writes && (pending || settings.self_heal) {
        return Ok(Decision::Apply {
            plan,
            digest,
            pending,
            prune: settings.prune,
        });
    }
    Ok(Decision::Report { plan, digest })
}

/// Counts of a plan for `gitops_objects`.
pub fn counts(plan: &Plan) -> [(&'static str, usize); 4] {
    [
        ("create", plan.count(Action::Create)),
        ("update", plan.count(Action::Update)),
        ("unchanged", plan.count(Action::Unchanged)),
        ("prune", plan.count(Action::Prune)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitops_shared::{
        ANNOTATION_HASH, LABEL_MANAGED_BY, LoadError, ManifestError, ObjectKey,
        manifest::{LoadOptions, Problem, parse_str},
    };
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    const NS: &str = "team-a";
    const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n";
    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n";

    fn loaded(revision: &str, files: &[&str]) -> Loaded {
        let mut manifests = Vec::new();
        for (i, text) in files.iter().enumerate() {
            let path = format!("namespaces/{NS}/f{i}.yaml");
            manifests.extend(parse_str(text, Path::new(&path), &LoadOptions::default()).unwrap());
        }
        Loaded {
            tree: PathBuf::new(),
            revision: revision.into(),
            base_path: "namespaces".into(),
            desired: Ok(DesiredSet {
                namespace: NS.into(),
                manifests,
                allow_empty: false,
            }),
            findings: Vec::new(),
            prepared: Vec::new(),
            parsed_files: 0,
        }
    }

    fn settings() -> Settings<'static> {
        Settings {
            name: "sync-agent",
            dry_run: false,
            prune: true,
            self_heal: true,
        }
    }

    /// What the cluster holds after the agent applied `l`.
    fn live_after(l: &Loaded) -> Vec<Value> {
        let plan = plan::make(&l.desired, &[], &[], "sync-agent").unwrap();
        plan.apply
            .iter()
            .map(|s| {
                let mut o = s.object_value().unwrap();
                o["metadata"]["namespace"] = NS.into();
                o["metadata"]["uid"] = format!("uid-{}", s.key.name).into();
                o
            })
            .collect()
    }

    fn keys(live: &[Value]) -> Vec<ObjectKey> {
        live.iter().filter_map(ObjectKey::of).collect()
    }

    /// [`decide`] with the plan of `l` against `live`.
    fn decide_on(
        l: &Loaded,
        control: &Control,
        live: &[Value],
        inventory: &[ObjectKey],
        settings: Settings<'_>,
        memory: Memory<'_>,
    ) -> Result<Decision, SyncError> {
        let planned = plan::make(&l.desired, live, inventory, settings.name);
        decide(l, control, planned, settings, memory)
    }

    fn run(
        l: &Loaded,
        control: &Control,
        live: &[Value],
        settings: Settings<'_>,
        memory: Memory<'_>,
    ) -> Decision {
        decide_on(l, control, live, &keys(live), settings, memory).unwrap()
    }

    #[test]
    fn a_new_revision_creates_what_is_missing() {
        let l = loaded("c1", &[DR, VS]);
        let d = run(&l, &Control::default(), &[], settings(), Memory::default());
        let Decision::Apply {
            plan,
            pending,
            prune,
            ..
        } = &d
        else {
            panic!("{d:?}");
        };
        assert!(*pending && *prune);
        assert_eq!(plan.count(Action::Create), 2);
        assert_eq!(counts(plan)[0], ("create", 2));
    }

    #[test]
    fn an_applied_revision_is_left_alone() {
        let l = loaded("c1", &[DR, VS]);
        let live = live_after(&l);
        let memory = Memory {
            applied_digest: None,
            reported_revision: "c1",
        };
        let d = run(&l, &Control::default(), &live, settings(), memory);
        let Decision::Report { plan, .. } = &d else {
            panic!("{d:?}");
        };
        assert!(plan.is_noop());
        assert_eq!(plan.count(Action::Unchanged), 2);
    }

    #[test]
    fn an_edit_in_git_is_an_update() {
        let l = loaded("c2", &[&DR.replace("host: reviews", "host: ratings"), VS]);
        let live = live_after(&loaded("c1", &[DR, VS]));
        let memory = Memory {
            applied_digest: Some("old"),
            reported_revision: "c1",
        };
        let d = run(&l, &Control::default(), &live, settings(), memory);
        let Decision::Apply { plan, pending, .. } = &d else {
            panic!("{d:?}");
        };
        assert!(*pending);
        assert_eq!(plan.count(Action::Update), 1);
        assert_eq!(plan.count(Action::Unchanged), 1);
    }

    #[test]
    fn what_left_git_is_pruned_only_with_prune() {
        let live = live_after(&loaded("c1", &[DR, VS]));
        let l = loaded("c2", &[DR]);
        let memory = Memory {
            applied_digest: Some("old"),
            reported_revision: "c1",
        };
        let d = run(&l, &Control::default(), &live, settings(), memory);
        let Decision::Apply { plan, prune, .. } = &d else {
            panic!("{d:?}");
        };
        assert!(*prune);
        assert_eq!(plan.count(Action::Prune), 1);
        assert_eq!(plan.prune[0].key.kind, "VirtualService");

        // --no-prune: nothing to write, the object stays owned
        let no_prune = Settings {
            prune: false,
            ..settings()
        };
        let applied = plan::desired_digest(plan);
        let memory = Memory {
            applied_digest: Some(&applied),
            reported_revision: "c2",
        };
        let d = run(&l, &Control::default(), &live, no_prune, memory);
        assert!(matches!(d, Decision::Report { .. }), "{d:?}");
        assert_eq!(d.plan().count(Action::Prune), 1);
    }

    #[test]
    fn objects_of_others_are_never_pruned() {
        let live = live_after(&loaded("c1", &[DR, VS]));
        let l = loaded("c2", &[DR]);
        // Owned by another agent in the same namespace (its --name).
        let other = Settings {
            name: "other-agent",
            ..settings()
        };
        let d = decide_on(
            &l,
            &Control::default(),
            &live,
            &[],
            other,
            Memory::default(),
        )
        .unwrap();
        assert_eq!(d.plan().count(Action::Prune), 0, "{d:?}");

        // Not ours at all: no managed-by label, not in the inventory.
        let mut theirs = live.clone();
        for o in &mut theirs {
            o["metadata"]["labels"] = Value::Object(Default::default());
        }
        let d = decide_on(
            &l,
            &Control::default(),
            &theirs,
            &[],
            settings(),
            Memory::default(),
        )
        .unwrap();
        assert_eq!(d.plan().count(Action::Prune), 0, "{d:?}");
    }

    #[test]
    fn drift_is_healed_only_with_self_heal() {
        let l = loaded("c1", &[DR]);
        let mut live = live_after(&l);
        live[0]["spec"]["host"] = "edited-by-hand".into();
        let applied = plan::desired_digest(
            run(&l, &Control::default(), &[], settings(), Memory::default()).plan(),
        );
        let memory = Memory {
            applied_digest: Some(&applied),
            reported_revision: "c1",
        };
        let d = run(&l, &Control::default(), &live, settings(), memory);
        let Decision::Apply { plan, pending, .. } = &d else {
            panic!("{d:?}");
        };
        assert!(!*pending, "healing is not a new revision");
        assert_eq!(plan.drift.len(), 1);

        let no_heal = Settings {
            self_heal: false,
            ..settings()
        };
        let d = run(&l, &Control::default(), &live, no_heal, memory);
        let Decision::Report { plan, .. } = &d else {
            panic!("{d:?}");
        };
        assert_eq!(plan.drift.len(), 1, "reported, not healed");
    }

    #[test]
    fn a_new_revision_is_applied_even_without_self_heal() {
        let live = live_after(&loaded("c1", &[DR]));
        let l = loaded("c2", &[&DR.replace("host: reviews", "host: ratings")]);
        let no_heal = Settings {
            self_heal: false,
            ..settings()
        };
        let memory = Memory {
            applied_digest: None,
            reported_revision: "c1",
        };
        let d = run(&l, &Control::default(), &live, no_heal, memory);
        assert!(matches!(d, Decision::Apply { pending: true, .. }), "{d:?}");
    }

    #[test]
    fn a_dirty_checkout_is_applied_after_a_restart() {
        let l = loaded("abc-dirty", &[DR]);
        let mut live = live_after(&l);
        live[0]["spec"]["host"] = "edited".into();
        let no_heal = Settings {
            self_heal: false,
            ..settings()
        };
        let memory = Memory {
            applied_digest: None,
            reported_revision: "abc-dirty",
        };
        let d = run(&l, &Control::default(), &live, no_heal, memory);
        assert!(matches!(d, Decision::Apply { pending: true, .. }), "{d:?}");
    }

    #[test]
    fn suspended_writes_nothing() {
        let l = loaded("c2", &[DR]);
        let control = Control {
            exists: true,
            suspend: true,
            ..Control::default()
        };
        let d = run(&l, &control, &[], settings(), Memory::default());
        let Decision::Suspend { plan } = &d else {
            panic!("{d:?}");
        };
        assert_eq!(
            plan.count(Action::Create),
            1,
            "what would be done is reported"
        );
    }

    #[test]
    fn dry_run_only_prints() {
        let l = loaded("c2", &[DR]);
        let dry = Settings {
            dry_run: true,
            ..settings()
        };
        let control = Control {
            suspend: true,
            ..Control::default()
        };
        let d = run(&l, &control, &[], dry, Memory::default());
        assert!(matches!(d, Decision::Print { .. }), "{d:?}");
    }

    #[test]
    fn emptying_the_namespace_is_refused() {
        let live = live_after(&loaded("c1", &[DR, VS]));
        let empty = loaded("c2", &[]);
        let e = decide_on(
            &empty,
            &Control::default(),
            &live,
            &keys(&live),
            settings(),
            Memory::default(),
        )
        .unwrap_err();
        assert_eq!(e.metric_label(), "refused");
        assert!(e.to_string().contains(".allow-empty"), "{e}");

        // With .allow-empty it is a prune of everything.
        let mut allowed = loaded("c2", &[]);
        if let Ok(d) = &mut allowed.desired {
            d.allow_empty = true;
        }
        let d = run(
            &allowed,
            &Control::default(),
            &live,
            settings(),
            Memory::default(),
        );
        assert_eq!(d.plan().count(Action::Prune), 2);
    }

    #[test]
    fn a_broken_revision_is_refused_whole() {
        let mut l = loaded("c2", &[DR]);
        l.desired = Err(LoadError {
            errors: vec![ManifestError {
                file: "namespaces/team-a/bad.yaml".into(),
                document: Some(1),
                line: Some(3),
                problem: Problem::Yaml("did not find expected key".into()),
            }],
        });
        let e = admit(&l).unwrap_err();
        assert_eq!(e.metric_label(), "invalid");
        assert!(e.to_string().contains("bad.yaml"), "{e}");
        assert!(!e.retry_soon());
        // and the plan refuses it as well, should a caller skip admit
        let live = live_after(&loaded("c1", &[DR]));
        let e = decide_on(
            &l,
            &Control::default(),
            &live,
            &keys(&live),
            settings(),
            Memory::default(),
        )
        .unwrap_err();
        assert_eq!(e.metric_label(), "refused");
    }

    #[test]
    fn an_unreadable_status_stops_everything() {
        let control = Control {
            exists: true,
            unreadable: Some("invalid type: string, expected a sequence".into()),
            ..Control::default()
        };
        let e = check_control(&control, "sync-agent").unwrap_err();
        assert_eq!(e.metric_label(), "status_unreadable");
        assert!(!e.report());
        assert!(check_control(&Control::default(), "sync-agent").is_ok());
    }

    #[test]
    fn a_label_stripped_by_hand_is_drift_not_a_prune() {
        let l = loaded("c1", &[DR]);
        let mut live = live_after(&l);
        let inventory = keys(&live);
        live[0]["metadata"]["labels"] = Value::Object(Default::default());
        let d = decide_on(
            &l,
            &Control::default(),
            &live,
            &inventory,
            settings(),
            Memory {
                applied_digest: None,
                reported_revision: "c1",
            },
        )
        .unwrap();
        assert_eq!(d.plan().count(Action::Prune), 0);
        assert_eq!(d.plan().drift.len(), 1, "{d:?}");
        let applied = &live_after(&l)[0]["metadata"];
        assert!(applied["labels"].get(LABEL_MANAGED_BY).is_some());
        assert!(applied["annotations"].get(ANNOTATION_HASH).is_some());
    }
}
