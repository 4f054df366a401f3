//! The next `GitOpsSync` status, computed from the last one and what a
//! pass did: pure, so each report is unit-tested without a cluster. The
//! agent writes the result and sets the metrics from it.

use std::collections::BTreeSet;

use gitops_kube::gitopssync::{Phase, SyncStatus, rfc3339};
use gitops_shared::{
    ObjectKey,
    plan::{Action, Drift, Plan},
};
use k8s_openapi::jiff::Timestamp;

use crate::apply::Applied;

/// One pass that wrote what it had to (or had nothing to write).
#[derive(Debug, Clone, Copy)]
pub struct Pass<'a> {
    pub revision: &'a str,
    pub plan: &'a Plan,
    pub applied: &'a Applied,
    /// Whether the pass applied (a new revision, drift healed) or only
    /// compared.
    pub did_apply: bool,
    pub generation: Option<i64>,
    pub now: Timestamp,
    /// `--self-heal`, for the message when drift remains.
    pub self_heal: bool,
}

/// The status after a [`Pass`], with what the loop logs and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub status: SyncStatus,
    /// Objects the agent owns now.
    pub owned: usize,
    /// Drift left (self-heal or prune off).
    pub remaining: usize,
    /// Drifted objects this pass wrote back to Git's state.
    pub healed: usize,
    /// Whether anything happened worth an info log line.
    pub noteworthy: bool,
}

/// The status after a pass that synced: the inventory is what Git wants plus
/// what the pass could not prune; drift the pass healed is gone; the
/// revision and (when anything changed) `syncedAt` move; a pass that changed
/// nothing keeps the last message, so it writes no status at all.
pub fn synced(last: &SyncStatus, pass: Pass<'_>) -> Synced {
    let Pass {
        revision,
        plan,
        applied,
        did_apply,
        generation,
        now,
        self_heal,
    } = pass;
    let handled: BTreeSet<&ObjectKey> = applied
        .written
        .iter()
        .map(|(k, _, _)| k)
        .chain(&applied.pruned)
        .chain(&applied.released)
        .collect();
    let remaining: Vec<&Drift> = plan
        .drift
        .iter()
        .filter(|d| !handled.contains(&d.key))
        .collect();
    // Healed: drift the pass wrote back to Git's. An owned object that left
    // Git and was pruned is counted as pruned, not healed.
    let rewritten: BTreeSet<&ObjectKey> = applied.written.iter().map(|(k, _, _)| k).collect();
    let healed = plan
        .drift
        .iter()
        .filter(|d| rewritten.contains(&d.key))
        .count();
    // What the agent owns: the desired set, and what it did not prune.
    let mut owned: BTreeSet<ObjectKey> = plan.desired.iter().cloned().collect();
    owned.extend(
        plan.prune
            .iter()
            .filter(|s| !applied.pruned.contains(&s.key) && !applied.released.contains(&s.key))
            .map(|s| s.key.clone()),
    );
    let mut status = last.clone();
    status.set_inventory(&owned);
    status.set_drift(remaining.iter().copied());
    let new_revision = last.revision != revision;
    status.revision = revision.to_string();
    if did_apply || new_revision || status.synced_at.is_none() {
        status.synced_at = Some(rfc3339(now));
    }
    let (phase, mut message) = summary(plan, applied, &remaining, healed, revision, self_heal);
    if !did_apply && !new_revision && phase == Phase::Synced && last.phase == Phase::Synced {
        message = last.message.clone();
    }
    status.set_phase(phase, phase.as_str(), &message, generation, now);
    Synced {
        status,
        owned: owned.len(),
        remaining: remaining.len(),
        healed,
        noteworthy: did_apply || new_revision || !remaining.is_empty(),
    }
}

/// The status while a revision is being applied.
pub fn progressing(
    last: &SyncStatus,
    revision: &str,
    plan: &Plan,
    prune: bool,
    generation: Option<i64>,
    now: Timestamp,
) -> SyncStatus {
    let mut status = last.clone();
    status.set_phase(
        Phase::Progressing,
        "Progressing",
        &format!(
            "applying revision {revision}: {} to create, {} to update, {} to prune",
            plan.count(Action::Create),
            plan.count(Action::Update),
            if prune { plan.prune.len() } else { 0 }
        ),
        generation,
        now,
    );
    status
}

/// The status while `spec.suspend` holds: the plan's drift is reported,
/// nothing else changes (the inventory stays that of the last sync).
pub fn suspended(
    last: &SyncStatus,
    plan: &Plan,
    prune: bool,
    generation: Option<i64>,
    now: Timestamp,
) -> SyncStatus {
    let changes = plan.apply.len() + if prune { plan.prune.len() } else { 0 };
    let mut status = last.clone();
    status.set_drift(&plan.drift);
    status.set_phase(
        Phase::Suspended,
        "Suspended",
        &format!(
            "suspended by spec.suspend: {changes} change(s) not applied, {} object(s) drifted",
            plan.drift.len()
        ),
        generation,
        now,
    );
    status
}

/// The status after an apply that stopped part-way: the inventory gains
/// what was written and loses what was pruned or released, so nothing
/// written is forgotten and nothing released is pruned later.
pub fn apply_failed_inventory(inventory: &[ObjectKey], done: &Applied) -> BTreeSet<ObjectKey> {
    let mut keys: BTreeSet<ObjectKey> = inventory.iter().cloned().collect();
    keys.extend(done.written.iter().map(|(k, _, _)| k.clone()));
    for k in done.pruned.iter().chain(&done.released) {
        keys.remove(k);
    }
    keys
}

/// The status after a failed pass: Failed, with the reason and message;
/// the generation observed last is kept.
pub fn failed(last: &SyncStatus, reason: &str, message: &str, now: Timestamp) -> SyncStatus {
    let generation = last.ready().and_then(|c| c.observed_generation);
    let mut status = last.clone();
    status.set_phase(Phase::Failed, reason, message, generation, now);
    status
}

fn summary(
    plan: &Plan,
    applied: &Applied,
    remaining: &[&Drift],
    healed: usize,
    revision: &str,
    self_heal: bool,
) -> (Phase, String) {
    let mut message = if applied.written.is_empty() && applied.pruned.is_empty() {
        format!(
            "revision {revision}: {} object(s) in sync",
            plan.desired.len()
        )
    } else {
        format!(
            "revision {revision}: {} created, {} updated, {} pruned, {} unchanged",
            applied.count(Action::Create),
            applied.count(Action::Update),
            applied.count(Action::Prune),
            plan.count(Action::Unchanged)
        )
    };
    if healed > 0 {
        message.push_str(&format!("; healed {healed} drifted object(s)"));
    }
    if remaining.is_empty() {
        return (Phase::Synced, message);
    }
    let why = if self_heal {
        "pruning is off"
    } else {
        "self-heal is off"
    };
    message.push_str(&format!(
        "; {} object(s) drifted from Git ({why}):",
        remaining.len()
    ));
    for d in remaining {
        message.push_str(&format!("\n{}: {}", d.key, d.reason));
    }
    (Phase::Drifted, message)
}

#[cfg(test)]
mod tests {
    use gitops_shared::plan::Step;

    use super::*;
    use gitops_kube::gitopssync::ConditionStatus;

    const NET: &str = "networking.istio.io";

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn key(kind: &str, name: &str) -> ObjectKey {
        ObjectKey::new(NET, kind, name)
    }

    fn step(action: Action, key: &ObjectKey) -> Step {
        Step {
            action,
            key: key.clone(),
            kind: gitops_shared::kinds::lookup(&key.group, &key.kind).unwrap(),
            reason: String::new(),
            object: None,
            source: None,
            hash: None,
            live: None,
            live_version: None,
        }
    }

    fn pass<'a>(revision: &'a str, plan: &'a Plan, applied: &'a Applied, now: i64) -> Pass<'a> {
        Pass {
            revision,
            plan,
            applied,
            did_apply: !applied.written.is_empty() || !applied.pruned.is_empty(),
            generation: Some(1),
            now: ts(now),
            self_heal: true,
        }
    }

    fn created(keys: &[&ObjectKey]) -> Applied {
        Applied {
            written: keys
                .iter()
                .map(|k| ((*k).clone(), Action::Create, Some("1".into())))
                .collect(),
            ..Applied::default()
        }
    }

    /// revision r1 with one VirtualService, created at t=100
    fn synced_once() -> (ObjectKey, Synced) {
        let vs = key("VirtualService", "reviews");
        let plan = Plan {
            apply: vec![step(Action::Create, &vs)],
            desired: vec![vs.clone()],
            ..Plan::default()
        };
        let first = synced(
            &SyncStatus::default(),
            pass("r1", &plan, &created(&[&vs]), 100),
        );
        (vs, first)
    }

    #[test]
    fn a_new_revision_moves_revision_inventory_and_synced_at() {
        let (vs, dr) = (
            key("VirtualService", "reviews"),
            key("DestinationRule", "reviews"),
        );
        let plan = Plan {
            apply: vec![step(Action::Create, &dr), step(Action::Create, &vs)],
            desired: vec![dr.clone(), vs.clone()],
            ..Plan::default()
        };
        let applied = created(&[&dr, &vs]);
        let s = synced(&SyncStatus::default(), pass("r1", &plan, &applied, 100));
        assert_eq!(s.status.revision, "r1");
        assert_eq!(s.status.phase, Phase::Synced);
        assert_eq!(s.status.inventory_keys(), [dr, vs]);
        assert_eq!(s.status.synced_at.as_deref(), Some("1970-01-01T00:01:40Z"));
        assert_eq!(
            s.status.message,
            "revision r1: 2 created, 0 updated, 0 pruned, 0 unchanged"
        );
        assert_eq!(s.status.ready().unwrap().status, ConditionStatus::True);
        assert!(s.noteworthy);
        assert_eq!((s.owned, s.remaining, s.healed), (2, 0, 0));
    }

    #[test]
    fn a_pass_that_changed_nothing_leaves_the_status_as_it_was() {
        let (vs, first) = synced_once();
        let noop = Plan {
            unchanged: vec![step(Action::Unchanged, &vs)],
            desired: vec![vs.clone()],
            ..Plan::default()
        };
        let again = synced(&first.status, pass("r1", &noop, &Applied::default(), 200));
        assert_eq!(again.status, first.status, "nothing to write");
        assert!(!again.noteworthy);
    }

    #[test]
    fn drift_left_with_self_heal_off_is_drifted_and_keeps_synced_at() {
        let (vs, first) = synced_once();
        let drifted = Plan {
            drift: vec![Drift {
                key: vs.clone(),
                reason: "spec.http: Git has 1, live has 2".into(),
            }],
            unchanged: vec![],
            desired: vec![vs.clone()],
            ..Plan::default()
        };
        let nothing = Applied::default();
        let mut p = pass("r1", &drifted, &nothing, 200);
        p.self_heal = false;
        let s = synced(&first.status, p);
        assert_eq!(s.status.phase, Phase::Drifted);
        assert_eq!(s.status.drifted, 1);
        assert!(
            s.status.message.contains("(self-heal is off)"),
            "{}",
            s.status.message
        );
        assert!(
            s.status
                .message
                .contains("spec.http: Git has 1, live has 2")
        );
        assert_eq!(s.status.synced_at, first.status.synced_at);
        assert_eq!(s.status.ready().unwrap().status, ConditionStatus::False);
        assert!(s.noteworthy);
        // healed on the next pass: the drift is gone again
        let healed = Applied {
            written: vec![(vs.clone(), Action::Update, Some("2".into()))],
            ..Applied::default()
        };
        let s = synced(&s.status, pass("r1", &drifted, &healed, 300));
        assert_eq!(
            (s.status.phase, s.healed, s.remaining),
            (Phase::Synced, 1, 0)
        );
        assert!(s.status.message.ends_with("; healed 1 drifted object(s)"));
    }

    #[test]
    fn a_prune_is_counted_as_a_prune_not_as_healed_drift() {
        let (vs, old) = (
            key("VirtualService", "reviews"),
            key("VirtualService", "old"),
        );
        // the plan sees `old` as drift ("not in Git") and prunes it
        let plan = Plan {
            prune: vec![step(Action::Prune, &old)],
            drift: vec![Drift {
                key: old.clone(),
                reason: "not in Git".into(),
            }],
            desired: vec![vs.clone()],
            ..Plan::default()
        };
        let applied = Applied {
            pruned: vec![old.clone()],
            ..Applied::default()
        };
        let s = synced(&SyncStatus::default(), pass("r2", &plan, &applied, 100));
        assert_eq!((s.healed, s.remaining), (0, 0));
        assert!(
            s.status.message.contains("1 pruned"),
            "{}",
            s.status.message
        );
        assert!(!s.status.message.contains("healed"), "{}", s.status.message);
    }

    #[test]
    fn what_was_not_pruned_stays_owned_and_what_was_released_leaves() {
        let (a, b, c) = (
            key("VirtualService", "a"),
            key("VirtualService", "b"),
            key("VirtualService", "c"),
        );
        let plan = Plan {
            prune: vec![
                step(Action::Prune, &a),
                step(Action::Prune, &b),
                step(Action::Prune, &c),
            ],
            ..Plan::default()
        };
        let applied = Applied {
            pruned: vec![a.clone()],
            released: vec![b.clone()],
            ..Applied::default()
        };
        let s = synced(&SyncStatus::default(), pass("r2", &plan, &applied, 100));
        // c was neither pruned (say, --no-prune) nor released: still ours
        assert_eq!(s.status.inventory_keys(), [c]);
    }

    #[test]
    fn a_failed_apply_keeps_what_it_wrote_and_drops_what_it_pruned() {
        let (a, b, c) = (
            key("DestinationRule", "a"),
            key("VirtualService", "b"),
            key("VirtualService", "c"),
        );
        let done = Applied {
            written: vec![(c.clone(), Action::Create, None)],
            pruned: vec![a.clone()],
            ..Applied::default()
        };
        let keys = apply_failed_inventory(&[a, b.clone()], &done);
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), [b, c]);
    }

    #[test]
    fn failed_and_suspended_keep_the_inventory_of_the_last_sync() {
        let (vs, last) = synced_once();
        let last = last.status;

        let f = failed(&last, "ApiError", "listing live objects: 403", ts(200));
        assert_eq!(f.phase, Phase::Failed);
        assert_eq!(f.inventory, last.inventory);
        assert_eq!(f.revision, "r1");
        assert_eq!(f.ready().unwrap().reason, "ApiError");
        assert_eq!(f.ready().unwrap().observed_generation, Some(1));

        let pending = Plan {
            apply: vec![step(Action::Update, &vs)],
            drift: vec![Drift {
                key: vs.clone(),
                reason: "x".into(),
            }],
            desired: vec![vs.clone()],
            ..Plan::default()
        };
        let s = suspended(&last, &pending, true, Some(2), ts(300));
        assert_eq!(s.phase, Phase::Suspended);
        assert_eq!(s.inventory, last.inventory);
        assert_eq!(s.drifted, 1);
        assert_eq!(
            s.message,
            "suspended by spec.suspend: 1 change(s) not applied, 1 object(s) drifted"
        );

        let p = progressing(&last, "r2", &pending, true, Some(2), ts(300));
        assert_eq!(p.phase, Phase::Progressing);
        assert_eq!(p.revision, "r1", "not applied yet");
        assert_eq!(
            p.message,
            "applying revision r2: 0 to create, 1 to update, 0 to prune"
        );
    }
}
