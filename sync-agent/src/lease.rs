//! One writer per agent name (DESIGN.md): replicas of one agent (a sidecar
//! on a Deployment with replicas > 1, or both pods during a rolling update)
//! elect a writer through the `GitOpsSync` object itself. The holder and
//! its renew time are annotations on it, written by a merge patch that
//! carries the object's resourceVersion, so two candidates can never both
//! win. The others stay ready and write nothing.
//!
//! Expiry is judged the way client-go's leader election judges it: by how
//! long the renew time has *not changed* as this process observed it, never
//! by comparing clocks of two machines.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::{cluster, report::Reporter, watch::Waker};

/// The lease's annotations (gitops-kube: `status` reads them too). Expiry is
/// judged here by observed change of the renew time, not by its clock.
pub use gitops_kube::gitopssync::{
    ANNOTATION_HOLDER, ANNOTATION_LEASE_SECONDS, ANNOTATION_RENEW, ANNOTATION_STOPPED,
};

/// A JSON pointer to annotation `key` (RFC 6901: `/` is `~1`).
fn annotation_path(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

/// The JSON patch that renews (or takes over) a lease held by `holder`,
/// last renewed at `renewed`: it applies only while both annotations are
/// still what was read.
fn lease_patch(
    holder: &str,
    renewed: &str,
    identity: &str,
    duration: Duration,
) -> Result<json_patch::Patch, serde_json::Error> {
    let mut ops =
        vec![json!({"op": "test", "path": annotation_path(ANNOTATION_HOLDER), "value": holder})];
    if !renewed.is_empty() {
        ops.push(
            json!({"op": "test", "path": annotation_path(ANNOTATION_RENEW), "value": renewed}),
        );
    }
    ops.push(json!({"op": "add", "path": annotation_path(ANNOTATION_HOLDER), "value": identity}));
    ops.push(json!({"op": "add", "path": annotation_path(ANNOTATION_RENEW), "value": Timestamp::now().to_string()}));
    ops.push(json!({"op": "add", "path": annotation_path(ANNOTATION_LEASE_SECONDS), "value": duration.as_secs_f64().to_string()}));
    serde_json::from_value(Value::Array(ops))
}

/// Who holds the lease, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// This process: it may write.
    Me,
    /// Another process, and what it last wrote.
    Other { holder: String, renewed: String },
}

/// The lease of one agent name.
#[derive(Debug)]
pub struct Lease {
    reporter: Reporter,
    api: Api<DynamicObject>,
    name: String,
    identity: String,
    duration: Duration,
    /// The other holder's renew time as last seen, and when it was first seen.
    observed: Option<(String, String, Instant)>,
    /// When this process last renewed.
    renewed: Option<Instant>,
}

/// Reads of the lease after a 409 before standing by.
const CONFLICT_ATTEMPTS: usize = 3;

impl Lease {
    pub fn new(reporter: Reporter, identity: &str, duration: Duration) -> Self {
        Self {
            api: reporter.api().clone(),
            name: reporter.name().to_string(),
            reporter,
            identity: identity.to_string(),
            duration,
            observed: None,
            renewed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Take, keep or respect the lease (creating the `GitOpsSync` first
    /// when it does not exist yet).
    ///
    /// The lease lives in the annotations of the `GitOpsSync`, whose status
    /// this agent writes too: a renewal refused by its resourceVersion (409)
    /// may only mean that one of our own status writes landed in between.
    /// So a 409 reads the object again, and only a holder that is not us
    /// makes this replica stand by.
    pub async fn try_hold(&mut self) -> Result<Holder, kube::Error> {
        for _ in 0..CONFLICT_ATTEMPTS {
            if let Some(holder) = self.try_hold_once().await? {
                return Ok(holder);
            }
        }
        Ok(Holder::Other {
            holder: "(another replica, just now)".into(),
            renewed: String::new(),
        })
    }

    /// One read-decide-write of [`Lease::try_hold`]; `None` when the write
    /// lost a race (409).
    async fn try_hold_once(&mut self) -> Result<Option<Holder>, kube::Error> {
        let object = match cluster::call(|| self.api.get_opt(&self.name), None).await? {
            Some(object) => object,
            None => {
                self.reporter.ensure().await?;
                cluster::call(|| self.api.get(&self.name), None).await?
            }
        };
        let annotations = object.metadata.annotations.clone().unwrap_or_default();
        let holder = annotations
            .get(ANNOTATION_HOLDER)
            .cloned()
            .unwrap_or_default();
        let renewed = annotations
            .get(ANNOTATION_RENEW)
            .cloned()
            .unwrap_or_default();
        let now = Instant::now();
        if !holder.is_empty() && holder != self.identity {
            // Someone else's: expired only when its renew time has not moved
            // for a whole lease duration, as seen from here.
            let first_seen = match &self.observed {
                Some((h, r, at)) if *h == holder && *r == renewed => *at,
                _ => {
                    self.observed = Some((holder.clone(), renewed.clone(), now));
                    now
                }
            };
            if now.duration_since(first_seen) < self.duration {
                self.renewed = None;
                return Ok(Some(Holder::Other { holder, renewed }));
            }
            info!(%holder, "the writer stopped renewing its lease; taking over");
        } else if holder == self.identity
            && self
                .renewed
                .is_some_and(|at| now.duration_since(at) < self.duration / 3)
        {
            return Ok(Some(Holder::Me)); // fresh enough: no write
        }
        let write = if holder.is_empty() {
            // Nobody holds it: take it only if nothing changed since the read.
            Patch::Merge(json!({
                "metadata": {
                    "resourceVersion": object.metadata.resource_version,
                    "annotations": {
                        ANNOTATION_HOLDER: self.identity,
                        ANNOTATION_RENEW: Timestamp::now().to_string(),
                        ANNOTATION_LEASE_SECONDS: self.duration.as_secs_f64().to_string(),
                        ANNOTATION_STOPPED: null,
                    },
                }
            }))
        } else {
            // Held (by us, or expired): the write holds only while the lease
            // annotations are as read. A JSON patch `test`, not the
            // resourceVersion: status writes and labels change the object
            // all the time, and must not cost the writer its lease.
            match lease_patch(&holder, &renewed, &self.identity, self.duration) {
                Ok(patch) => Patch::Json(patch),
                Err(e) => return Err(kube::Error::SerdeError(e)),
            }
        };
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &write)
            .await
        {
            Ok(_) => {
                self.renewed = Some(now);
                self.observed = None;
                Ok(Some(Holder::Me))
            }
            // Someone else wrote the lease first (409: the object changed
            // under a first take; 422: a `test` failed): whose write it
            // was, the next read tells.
            Err(e) if matches!(cluster::status_code(&e), Some(409 | 422)) => {
                self.renewed = None;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Let go on a clean stop, so a successor takes over at once.
    pub async fn release(&self) {
        let Ok(Some(object)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let mine = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_HOLDER))
            .is_some_and(|h| *h == self.identity);
        if !mine {
            return;
        }
        // `stopped-at` tells `kubectl gitops status` the agent is not
        // running (and a successor takes over at once).
        let patch = json!({
            "metadata": {
                "resourceVersion": object.metadata.resource_version,
                "annotations": {
                    ANNOTATION_HOLDER: null,
                    ANNOTATION_RENEW: null,
                    ANNOTATION_STOPPED: Timestamp::now().to_string(),
                },
            }
        });
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => info!("released the writer's lease"),
            Err(e) => debug!(error = %cluster::describe(&e), "lease not released"),
        }
    }

    /// Keep the lease in the background: every third of its duration, take
    /// or renew it, and publish whether this process writes. A change wakes
    /// the loop. A leader that cannot renew for a whole duration stops
    /// writing.
    pub async fn run(mut self, roles: Roles, waker: Waker) {
        let Roles { leader, standby } = roles;
        let mut last_ok = Instant::now();
        let mut tick = tokio::time::interval(self.duration / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shown: Option<Holder> = None;
        loop {
            tick.tick().await;
            let held = match self.try_hold().await {
                Ok(h) => {
                    last_ok = Instant::now();
                    h
                }
                Err(e) => {
                    debug!(error = %cluster::describe(&e), "lease not renewed");
                    // While the server cannot serve (5xx, no answer), nobody
                    // can take the lease over either: keep the role, and let
                    // the next renew settle it. A refusal (403, no CRD)
                    // ends a writer's role after a whole duration.
                    let keep = cluster::is_transient(&e) || last_ok.elapsed() < self.duration;
                    if keep && leader.load(Ordering::SeqCst) {
                        continue;
                    }
                    Holder::Other {
                        holder: String::new(),
                        renewed: String::new(),
                    }
                }
            };
            let me = held == Holder::Me;
            // A known other writer: this replica is a ready stand-by.
            let other = matches!(&held, Holder::Other { holder, .. } if !holder.is_empty());
            standby.store(other, Ordering::SeqCst);
            if leader.swap(me, Ordering::SeqCst) != me {
                waker.control();
            }
            let changed = match (&shown, &held) {
                (Some(Holder::Me), Holder::Me) => false,
                (Some(Holder::Other { holder: a, .. }), Holder::Other { holder: b, .. }) => a != b,
                _ => true,
            };
            if changed {
                match &held {
                    Holder::Me => info!(identity = %self.identity, "this process is the writer"),
                    Holder::Other { holder, .. } if holder.is_empty() => {
                        warn!("the writer's lease cannot be read or renewed; standing by")
                    }
                    Holder::Other { holder, .. } => {
                        info!(%holder, "another replica is the writer; standing by (ready, writing nothing)")
                    }
                }
                shown = Some(held);
            }
        }
    }
}

/// What the lease tells the loop: whether this replica writes, and whether
/// another one is known to (then this one is a ready stand-by).
#[derive(Debug, Clone, Default)]
pub struct Roles {
    pub leader: Arc<AtomicBool>,
    pub standby: Arc<AtomicBool>,
}

/// This process's name in the lease: `POD_NAME` (the downward API), else
/// the host name and process id.
pub fn identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "sync-agent".into());
    format!("{host}-{}", std::process::id())
}
