//! Write a plan: server-side apply of every create and update, rank by rank
//! (Istio's make-before-break: DestinationRule ... VirtualService), with
//! bounded parallelism inside a rank; then prunes in prune order. Transient
//! API errors are retried with exponential backoff and jitter; a rank that
//! fails stops the apply, so a route never goes out before its subsets.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, atomic::AtomicBool},
};

use gitops_shared::{
    ObjectKey,
    kinds::split_api_version,
    managed::take_over,
    plan::{Action, Plan, Step},
};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, ValidationDirective},
};
use tokio::{sync::Semaphore, task::JoinSet};
use tracing::{debug, info, warn};

use gitops_kube::resources::Served;

use crate::cluster;

/// What was written.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// Objects applied, with the resource version the write produced.
    pub written: Vec<(ObjectKey, Action, Option<String>)>,
    pub pruned: Vec<ObjectKey>,
    /// Prunes refused by their UID precondition (409): someone deleted and
    /// re-created the object since the plan. It is theirs now: it leaves the
    /// inventory, so no later pass deletes it.
    pub released: Vec<ObjectKey>,
}

impl Applied {
    pub fn count(&self, action: Action) -> usize {
        match action {
            Action::Prune => self.pruned.len(),
            _ => self.written.iter().filter(|(_, a, _)| *a == action).count(),
        }
    }
}

/// One object that could not be written.
#[derive(Debug)]
pub struct ObjectFailure {
    pub key: ObjectKey,
    pub action: Action,
    pub error: Cause,
}

/// Why an object was not written.
#[derive(Debug)]
pub enum Cause {
    /// The API server refused, or could not be reached.
    Api(kube::Error),
    /// The task writing it panicked: whether it wrote is unknown, so it
    /// counts as a failed write (the revision is not synced).
    Panicked(String),
}

impl Cause {
    pub fn is_transient(&self) -> bool {
        match self {
            Cause::Api(e) => cluster::is_transient(e),
            Cause::Panicked(_) => false,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Api(e) => f.write_str(&cluster::describe(e)),
            Cause::Panicked(why) => {
                write!(f, "the write panicked ({why}); a bug, please report it")
            }
        }
    }
}

impl fmt::Display for ObjectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Prune => "prune",
            _ => "apply",
        };
        write!(f, "{verb} {}: {}", self.key, self.error)
    }
}

/// The outcome of one task of a [`JoinSet`], with the object it was for
/// (found by task id when the task panicked).
fn joined<T>(
    result: Result<(ObjectKey, Action, T), tokio::task::JoinError>,
    keys: &BTreeMap<tokio::task::Id, (ObjectKey, Action)>,
) -> Result<(ObjectKey, Action, T), Box<ObjectFailure>> {
    result.map_err(|e| {
        let (key, action) = keys
            .get(&e.id())
            .cloned()
            .unwrap_or_else(|| (ObjectKey::new("", "unknown", "unknown"), Action::Update));
        let why = if e.is_panic() { "panic" } else { "cancelled" };
        Box::new(ObjectFailure {
            key,
            action,
            error: Cause::Panicked(why.to_string()),
        })
    })
}

/// An apply that stopped part-way; `done` is what was written before.
#[derive(Debug, thiserror::Error)]
pub struct ApplyError {
    pub failures: Vec<ObjectFailure>,
    pub done: Applied,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

impl ApplyError {
    /// Whether retrying soon may help: every failure was the server's trouble.
    pub fn is_transient(&self) -> bool {
        self.failures.iter().all(|f| f.error.is_transient())
    }

    /// The longest wait the server asked for in any failure (`Retry-After`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.failures
            .iter()
            .filter_map(|f| match &f.error {
                Cause::Api(e) => cluster::retry_after(e),
                Cause::Panicked(_) => None,
            })
            .max()
    }
}

/// Writes plans into one namespace.
#[derive(Clone)]
pub struct Applier {
    pub client: Client,
    pub namespace: String,
    pub field_manager: String,
    pub concurrency: usize,
    /// Set on SIGTERM: finish what is in flight, retry nothing more.
    pub stopping: Arc<AtomicBool>,
}

impl fmt::Debug for Applier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applier")
            .field("namespace", &self.namespace)
            .field("field_manager", &self.field_manager)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Applier {
    /// Apply the plan's creates and updates, then (when `prune`) its prunes.
    pub async fn apply(
        &self,
        plan: &Plan,
        prune: bool,
        served: &Served,
    ) -> Result<Applied, ApplyError> {
        let mut done = Applied::default();
        let mut ranks: BTreeMap<u8, Vec<&Step>> = BTreeMap::new();
        for step in &plan.apply {
            ranks.entry(step.kind.apply_rank).or_default().push(step);
        }
        for steps in ranks.values() {
            let mut tasks = JoinSet::new();
            let mut keys = BTreeMap::new();
            let permits = Arc::new(Semaphore::new(self.concurrency));
            for step in steps {
                if step.object.is_none() {
                    continue;
                }
                // At most `concurrency` writes in flight, and so at most that
                // many copies of their objects: the slot is taken before the
                // copy, not inside the task.
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (mut object, key, action) = (
                    step.object_value().expect("checked above"),
                    step.key.clone(),
                    step.action,
                );
                // Sent at a version the server serves: Istio's versions of a
                // kind share one schema, so only `apiVersion` changes.
                let (_, given) = split_api_version(object["apiVersion"].as_str().unwrap_or(""));
                let version = served.for_version(step.kind, given);
                if given != version {
                    object["apiVersion"] = format!("{}/{version}", step.kind.group).into();
                }
                let api: Api<DynamicObject> = Api::namespaced_with(
                    self.client.clone(),
                    &self.namespace,
                    &cluster::api_resource(step.kind, version),
                );
                let params = PatchParams {
                    field_validation: Some(ValidationDirective::Strict),
                    ..PatchParams::apply(&self.field_manager).force()
                };
                // Fields kubectl owns become the agent's first, so this apply
                // removes those that Git no longer sets (kubernetes #99003).
                let takeover = step
                    .live
                    .as_ref()
                    .and_then(|live| {
                        let fields = take_over(live, &self.field_manager)?;
                        let rv = live["metadata"]["resourceVersion"].clone();
                        Some(serde_json::json!({"metadata": {"managedFields": fields, "resourceVersion": rv}}))
                    });
                let stopping = self.stopping.clone();
                let task_key = (key.clone(), action);
                let handle = tasks.spawn(async move {
                    let _permit = permit;
                    if let Some(takeover) = &takeover {
                        // resourceVersion in the body: refused if the object
                        // changed since the plan (the next pass plans again).
                        let (merge, plain) = (Patch::Merge(takeover), PatchParams::default());
                        let taken =
                            cluster::call(|| api.patch(&key.name, &plain, &merge), Some(&stopping))
                                .await;
                        match taken {
                            Ok(_) => debug!(kind = %key.kind, name = %key.name, "took kubectl's fields over"),
                            Err(e) => return (key, action, Err(e)),
                        }
                    }
                    let apply = Patch::Apply(&object);
                    let result = cluster::call(
                        || api.patch(&key.name, &params, &apply),
                        Some(&stopping),
                    )
                    .await;
                    (key, action, result.map(|o| o.metadata.resource_version))
                });
                keys.insert(handle.id(), task_key);
            }
            let mut failures = Vec::new();
            while let Some(result) = tasks.join_next().await {
                let (key, action, result) = match joined(result, &keys) {
                    Ok(done) => done,
                    Err(failure) => {
                        warn!(kind = %failure.key.kind, name = %failure.key.name, "apply task panicked");
                        failures.push(*failure);
                        continue;
                    }
                };
                match result {
                    Ok(rv) => {
                        info!(kind = %key.kind, name = %key.name, action = action.as_str(), "applied");
                        done.written.push((key, action, rv));
                    }
                    Err(error) => {
                        warn!(kind = %key.kind, name = %key.name, error = %cluster::describe(&error), "apply failed");
                        failures.push(ObjectFailure {
                            key,
                            action,
                            error: Cause::Api(error),
                        });
                    }
                }
            }
            if !failures.is_empty() {
                failures.sort_by(|a, b| a.key.cmp(&b.key));
                return Err(ApplyError { failures, done });
            }
        }
        if prune {
            self.prune(plan, served, done).await
        } else {
            Ok(done)
        }
    }

    async fn prune(
        &self,
        plan: &Plan,
        served: &Served,
        mut done: Applied,
    ) -> Result<Applied, ApplyError> {
        // prune order: highest rank (VirtualService) first, one rank at a time
        let mut ranks: Vec<(u8, Vec<&Step>)> = Vec::new();
        for step in &plan.prune {
            match ranks.last_mut() {
                Some((rank, steps)) if *rank == step.kind.apply_rank => steps.push(step),
                _ => ranks.push((step.kind.apply_rank, vec![step])),
            }
        }
        for (_, steps) in ranks {
            let mut tasks = JoinSet::new();
            let mut keys = BTreeMap::new();
            let permits = Arc::new(Semaphore::new(self.concurrency));
            for step in steps {
                let api: Api<DynamicObject> = Api::namespaced_with(
                    self.client.clone(),
                    &self.namespace,
                    &served.resource(step.kind),
                );
                // Delete exactly the object the plan saw: if someone deleted
                // and re-created it since, it is theirs now.
                let uid = step
                    .live
                    .as_ref()
                    .and_then(|l| l["metadata"]["uid"].as_str())
                    .map(str::to_string);
                let params = DeleteParams {
                    preconditions: uid.map(|uid| Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let key = step.key.clone();
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let stopping = self.stopping.clone();
                let task_key = (key.clone(), Action::Prune);
                let handle = tasks.spawn(async move {
                    let _permit = permit;
                    let result =
                        cluster::call(|| api.delete(&key.name, &params), Some(&stopping)).await;
                    (key, Action::Prune, result.map(|_| ()))
                });
                keys.insert(handle.id(), task_key);
            }
            let mut failures = Vec::new();
            while let Some(result) = tasks.join_next().await {
                let (key, _, result) = match joined(result, &keys) {
                    Ok(done) => done,
                    Err(failure) => {
                        warn!(kind = %failure.key.kind, name = %failure.key.name, "prune task panicked");
                        failures.push(*failure);
                        continue;
                    }
                };
                match result {
                    Ok(()) => {
                        info!(kind = %key.kind, name = %key.name, action = "prune", "pruned");
                        done.pruned.push(key);
                    }
                    Err(e) if cluster::status_code(&e) == Some(404) => {
                        debug!(kind = %key.kind, name = %key.name, "already gone");
                        done.pruned.push(key);
                    }
                    Err(e) if cluster::status_code(&e) == Some(409) => {
                        info!(kind = %key.kind, name = %key.name, "re-created by someone else since the plan; left alone, and no longer ours");
                        done.released.push(key);
                    }
                    Err(error) => {
                        warn!(kind = %key.kind, name = %key.name, error = %cluster::describe(&error), "prune failed");
                        failures.push(ObjectFailure {
                            key,
                            action: Action::Prune,
                            error: Cause::Api(error),
                        });
                    }
                }
            }
            if !failures.is_empty() {
                failures.sort_by(|a, b| a.key.cmp(&b.key));
                return Err(ApplyError { failures, done });
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicked_write_is_a_failed_write_of_its_object() {
        let mut tasks = JoinSet::new();
        let mut keys = BTreeMap::new();
        let key = ObjectKey::new("networking.istio.io", "VirtualService", "reviews");
        let handle = tasks.spawn(async {
            #[allow(clippy::panic)] // the point of the test
            if true {
                panic!("boom");
            }
            (ObjectKey::new("", "", ""), Action::Update, ())
        });
        keys.insert(handle.id(), (key.clone(), Action::Update));
        let ok = tasks.spawn(async { (ObjectKey::new("g", "K", "n"), Action::Create, ()) });
        keys.insert(ok.id(), (ObjectKey::new("g", "K", "n"), Action::Create));
        let mut failures = Vec::new();
        let mut done = 0;
        while let Some(result) = tasks.join_next().await {
            match joined(result, &keys) {
                Ok(_) => done += 1,
                Err(f) => failures.push(*f),
            }
        }
        assert_eq!(done, 1);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].key, key);
        assert!(!failures[0].error.is_transient());
        let error = ApplyError {
            failures,
            done: Applied::default(),
        };
        assert!(!error.is_transient());
        assert!(
            error
                .to_string()
                .starts_with("apply VirtualService/reviews: the write panicked"),
            "{error}"
        );
    }
}
