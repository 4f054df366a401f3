//! The reconcile loop: watch -> load -> plan -> apply -> report, one revision
//! at a time, for one namespace.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use gitops_kube::{live, resources::Served, schema};
use gitops_shared::{
    DesiredSet, IstioKind, ObjectKey,
    drift::Schemas,
    kinds,
    plan::{Action, Plan, Planner, Verified, kinds_in_use},
};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, api::DynamicObject};
use tokio::{net::TcpListener, time::Instant};
use tracing::{Instrument as _, debug, field, info, info_span, warn};

use crate::{
    apply::{Applied, Applier},
    cache::ParseCache,
    cluster::{self, Clients},
    config::{Config, Source},
    decide::{self, Decision, Memory, Settings},
    error::SyncError,
    lease::{Holder, Lease, Roles},
    load::{self, LoadFailure, Loaded},
    plan,
    report::{
        Metrics, Reporter, SyncStatus,
        next::{self, Pass},
    },
    server::{self, Health},
    watch::{self, AbortOnDrop, DriftWatches, SharedTracked, Wake, Waker, Window},
};

/// How one reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (or nothing to do); drift may remain with `--no-self-heal`.
    Synced,
    /// `spec.suspend`: nothing written but the status.
    Suspended,
    /// git-sync has not published a revision yet.
    Waiting,
    /// Another replica writes for this agent name: nothing done.
    Standby,
    /// Refused or failed; `retry_soon` when the cause may pass by itself,
    /// not before `retry_after` when the server asked for a wait.
    Failed {
        retry_soon: bool,
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Outcome::Synced | Outcome::Suspended | Outcome::Standby
        )
    }
}

/// One namespace's agent.
#[derive(Debug)]
pub struct Agent {
    cfg: Config,
    reporter: Reporter,
    applier: Applier,
    clients: Clients,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    /// What is reported; carries the inventory across reconciles.
    status: SyncStatus,
    /// The status was read back from the cluster (inventory known).
    initialized: bool,
    /// Digest of the desired set last applied in full.
    applied_digest: Option<String>,
    tracked: SharedTracked,
    drift_watches: Option<DriftWatches>,
    last_printed: Option<String>,
    /// The versions the server serves, from its discovery; read again after
    /// a failed pass (a CRD may have been upgraded).
    served: Option<Served>,
    /// The list types and defaults of the kinds asked for, from the
    /// server's OpenAPI; asked for again with every full LIST (a CRD may have
    /// changed: only a changed document is read again) and when a kind is new.
    schemas: Option<(Vec<&'static IstioKind>, Arc<Schemas>)>,
    /// The OpenAPI documents read, by their URL's hash.
    schema_cache: schema::Cache,
    /// Whether this replica is the writer; `None`: no election (`--dry-run`
    /// writes nothing, `--once` checked the lease before it started).
    leader: Option<Roles>,
    /// The files of the last revision, parsed: a pass parses only new content.
    cache: ParseCache,
    /// What the last plan found in sync, trusted while unchanged.
    verified: Verified,
    /// When the last LIST of every kind in use began; `None` after a
    /// failed pass.
    listed_at: Option<Instant>,
}

impl Agent {
    pub fn new(
        cfg: Config,
        clients: Clients,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
    ) -> Self {
        let tracked = SharedTracked::default();
        if let Ok(mut t) = tracked.lock() {
            t.agent = cfg.name.clone();
        }
        let applier = Applier {
            client: clients.requests.clone(),
            namespace: cfg.namespace.clone(),
            field_manager: cfg.field_manager.clone(),
            concurrency: cfg.concurrency,
            stopping: Arc::new(AtomicBool::new(false)),
        };
        Self {
            reporter: Reporter::new(
                clients.requests.clone(),
                &cfg.namespace,
                &cfg.name,
                &cfg.field_manager,
            ),
            applier,
            clients,
            metrics,
            ready,
            status: SyncStatus::default(),
            initialized: false,
            applied_digest: None,
            tracked,
            drift_watches: None,
            last_printed: None,
            served: None,
            schemas: None,
            schema_cache: schema::Cache::default(),
            leader: None,
            cache: ParseCache::default(),
            verified: Verified::default(),
            listed_at: None,
            cfg,
        }
    }

    /// Start API watches on the kinds in use (long-running mode only).
    pub fn enable_drift_watches(&mut self, waker: Waker) {
        self.drift_watches = Some(DriftWatches::new(
            self.clients.watches.clone(),
            &self.cfg.namespace,
            waker,
            self.tracked.clone(),
            self.metrics.clone(),
        ));
    }

    /// Stop retrying writes (SIGTERM); what is in flight finishes.
    pub fn stopping(&self) -> Arc<AtomicBool> {
        self.applier.stopping.clone()
    }

    /// One pass of the loop.
    pub async fn reconcile(&mut self, wake: Wake) -> Outcome {
        let span = info_span!("sync", namespace = %self.cfg.namespace, revision = field::Empty);
        let started = std::time::Instant::now();
        let outcome = self
            .reconcile_inner(wake, &span)
            .instrument(span.clone())
            .await;
        let result = match outcome {
            Ok((outcome, result)) => {
                if let Some(result) = result {
                    self.metrics.observe_sync(result, started.elapsed());
                }
                outcome
            }
            Err(error) => {
                self.served = None;
                self.schemas = None;
                self.listed_at = None;
                self.metrics
                    .observe_sync(error.metric_label(), started.elapsed());
                let _enter = span.enter();
                warn!(reason = error.reason(), message = %error, "sync failed");
                self.report_failure(&error).await;
                Outcome::Failed {
                    retry_soon: error.retry_soon(),
                    retry_after: error.retry_after(),
                }
            }
        };
        debug!(
            ?result,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reconcile done"
        );
        // What the pass parsed and listed is freed; idle, hold none of it.
        crate::memory::release_freed();
        result
    }

    /// The pipeline: load, read the control object, list, decide, apply,
    /// report. The I/O is here; what to do is [`decide`]'s.
    async fn reconcile_inner(
        &mut self,
        wake: Wake,
        span: &tracing::Span,
    ) -> Result<(Outcome, Option<&'static str>), SyncError> {
        // 0. another replica writes: stay ready, write nothing
        if let Some(roles) = &self.leader
            && !roles.leader.load(Ordering::SeqCst)
        {
            if roles.standby.load(Ordering::SeqCst) {
                self.mark_ready();
            }
            // Its reports replace ours: read them afresh when this takes over.
            self.initialized = false;
            self.applied_digest = None;
            self.reporter.forget();
            return Ok((Outcome::Standby, Some("standby")));
        }
        // 1. load (blocking file I/O)
        let cfg = self.cfg.clone();
        let mut cache = std::mem::take(&mut self.cache);
        let (loaded, cache) = tokio::task::spawn_blocking(move || {
            let loaded = load::load_cached(&cfg, &mut cache);
            (loaded, cache)
        })
        .await
        .map_err(|e| SyncError::LoadPanicked(e.to_string()))?;
        self.cache = cache;
        let loaded: Loaded = match loaded {
            Ok(l) => l,
            Err(LoadFailure::NoLink { link }) => {
                info!(link = %link.display(), "waiting for git-sync to publish a revision");
                return Ok((Outcome::Waiting, None));
            }
            Err(e @ LoadFailure::Unstable { .. }) => return Err(SyncError::RevisionUnstable(e)),
            Err(e) => return Err(SyncError::RepoUnreadable(e)),
        };
        span.record("revision", loaded.revision.as_str());
        if wake.control {
            self.reporter.forget();
        }

        // 2. the GitOpsSync: suspend, and (once) the inventory of the last run
        let control = self
            .reporter
            .read()
            .await
            .map_err(|e| SyncError::gitopssync("reading the GitOpsSync", e))?;
        decide::check_control(&control, &self.cfg.name)?;
        if !self.initialized {
            self.status = control.status.clone();
            self.reporter.assume_written(&control.status);
            info!(
                inventory = self.status.inventory.len(),
                revision = %self.status.revision,
                "read the inventory of the last run"
            );
            self.initialized = true;
        }
        let mut generation = control.generation;
        if !control.exists && !self.cfg.dry_run {
            generation = self
                .reporter
                .ensure()
                .await
                .map_err(|e| SyncError::gitopssync("creating the GitOpsSync", e))?;
            self.reporter.forget();
        }
        self.status.observed_revision = loaded.revision.clone();

        // 3. a broken revision is refused whole
        let desired = decide::admit(&loaded)?;

        // 4. the live objects of the kinds in use, at the versions served
        let served = match &self.served {
            Some(served) => served.clone(),
            None => {
                let served = Served::discover(&self.clients.requests)
                    .await
                    .map_err(|e| SyncError::api("reading the API server's discovery", e))?;
                self.served = Some(served.clone());
                served
            }
        };
        let inventory = self.status.inventory_keys();
        let kinds = kinds_in_use(desired, &inventory);
        if let Some(watches) = &mut self.drift_watches {
            watches.set_kinds(&kinds, &served);
        }
        if let Ok(mut t) = self.tracked.lock() {
            t.keys = desired
                .manifests
                .iter()
                .map(|m| m.key())
                .chain(inventory.iter().cloned())
                .collect();
        }
        // The plan is made a LIST page at a time: a live object is compared
        // as it arrives and only what a step needs of it is kept.
        // With the drift watches' index, only what changed is read; else
        // (the first pass, after a failure, every FULL_LIST_EVERY resync
        // periods, or when much changed) every object of the kinds in use.
        let fresh = self.drift_watches.is_some()
            && self
                .listed_at
                .is_some_and(|at| at.elapsed() < self.cfg.resync * FULL_LIST_EVERY);
        let schemas = self.schemas(&kinds, &served, fresh).await?;
        let opts = plan::options(&self.cfg.name, &self.cfg.field_manager, schemas);
        // An object of a file this pass did not parse comes with its hash
        // alone: when it must be compared or written, its file is read again.
        let changed = std::cell::RefCell::new(None);
        let load_opts = load::load_options(&self.cfg);
        let mut reread = |index: usize| {
            let again = self.cache.reread(
                &loaded.tree,
                &desired.manifests[index],
                &self.cfg.namespace,
                &self.cfg.name,
                &load_opts,
            );
            again
                .map_err(|file| *changed.borrow_mut() = Some(file))
                .ok()
        };
        let mut planner = plan::planner(&loaded.desired, &inventory, &opts).map(|p| {
            p.with_prepared(&loaded.prepared)
                .with_reread(&mut reread)
                .with_verified(&self.verified)
        });
        let to_read = match &mut planner {
            Ok(planner) if fresh => from_index(&self.tracked, &kinds, &served, desired, planner),
            _ => None,
        };
        let unserved = match to_read {
            Some(names) => {
                let objects = live::get_each(
                    &self.clients.requests,
                    &self.cfg.namespace,
                    &names,
                    &served,
                    &self.cfg.field_manager,
                )
                .await
                .map_err(|e| SyncError::api("reading live objects", e))?;
                debug!(
                    read = names.len(),
                    found = objects.len(),
                    "planned from the watches' index"
                );
                if let Ok(planner) = &mut planner {
                    objects.into_iter().for_each(|object| planner.add(object));
                }
                Vec::new()
            }
            None => {
                let listed = Instant::now();
                let unserved = live::list_pages(
                    &self.clients.requests,
                    &self.cfg.namespace,
                    &kinds,
                    &served,
                    &self.cfg.field_manager,
                    |_, page| {
                        if let Ok(planner) = &mut planner {
                            page.into_iter().for_each(|object| planner.add(object));
                        }
                    },
                )
                .await
                .map_err(|e| SyncError::api("listing live objects", e))?;
                self.listed_at = Some(listed);
                unserved
            }
        };
        if !unserved.is_empty() {
            let kinds: Vec<String> = unserved
                .iter()
                .map(|k| format!("{} ({})", k.kind, k.group))
                .collect();
            return Err(SyncError::KindsNotServed {
                kinds: kinds.join(", "),
            });
        }

        let planned = planner.and_then(Planner::finish);
        if let Some(file) = changed.take() {
            return Err(SyncError::RevisionUnstable(LoadFailure::Changed(file)));
        }

        // 5. decide
        let decision = decide::decide(
            &loaded,
            &control,
            planned,
            Settings::of(&self.cfg),
            Memory {
                applied_digest: self.applied_digest.as_deref(),
                reported_revision: &self.status.revision,
            },
        )?;
        self.verified = Verified::of(decision.plan());
        // The plan holds what is written; the parsed revision is not needed
        // while it is.
        let mut loaded = loaded;
        if let Ok(desired) = &mut loaded.desired {
            desired.manifests = Vec::new();
        }
        loaded.prepared = Vec::new();
        self.metrics.set_objects(&decide::counts(decision.plan()));
        let now = Timestamp::now();
        let (plan, digest, did_apply, applied) = match decision {
            Decision::Print { plan } => {
                let text =
                    plan::render(&plan, &self.cfg.namespace, &loaded.revision, self.cfg.prune);
                if self.last_printed.as_deref() != Some(text.as_str()) {
                    print!("{text}");
                    self.last_printed = Some(text);
                }
                self.metrics.set_drifted(plan.drift.len());
                // A plan printed is a dry run's success: ready, like a sync.
                self.mark_ready();
                return Ok((Outcome::Synced, Some("success")));
            }
            Decision::Suspend { plan } => {
                self.report_suspended(&plan, generation, now).await;
                return Ok((Outcome::Suspended, Some("suspended")));
            }
            Decision::Report { plan, digest } => (plan, digest, false, Applied::default()),
            Decision::Apply {
                plan,
                digest,
                pending,
                prune,
            } => {
                if pending {
                    self.status = next::progressing(
                        &self.status,
                        &loaded.revision,
                        &plan,
                        prune,
                        generation,
                        now,
                    );
                    self.write_status().await;
                }
                let result = self.applier.apply(&plan, prune, &served).await;
                let done = match &result {
                    Ok(applied) => applied,
                    Err(e) => &e.done,
                };
                self.remember_writes(done);
                match result {
                    Ok(applied) => {
                        for name in plan::rolled_back(&plan) {
                            info!(virtualservice = name, "a canary release was rolled back");
                            self.metrics.observe_rollback(name);
                        }
                        (plan, digest, true, applied)
                    }
                    Err(e) => {
                        let keys = next::apply_failed_inventory(&inventory, &e.done);
                        self.status.set_inventory(&keys);
                        return Err(SyncError::ApplyFailed {
                            revision: loaded.revision.clone(),
                            source: e,
                        });
                    }
                }
            }
        };

        // 6. report success
        self.applied_digest = Some(digest);
        // A pass that wrote nothing for a revision already reported is a
        // resync, not a sync.
        let result = if !did_apply && self.status.revision == loaded.revision {
            "unchanged"
        } else {
            "success"
        };
        self.report_synced(Pass {
            revision: &loaded.revision,
            plan: &plan,
            applied: &applied,
            did_apply,
            generation,
            now,
            self_heal: self.cfg.self_heal,
        })
        .await;
        Ok((Outcome::Synced, Some(result)))
    }

    /// Tell the drift watches which resource versions are the agent's own
    /// writes, so their events do not count as drift. The apply returns what
    /// it wrote; only the loop hands it on.
    fn remember_writes(&self, applied: &Applied) {
        if let Ok(mut t) = self.tracked.lock() {
            for (key, _, rv) in &applied.written {
                if let Some(rv) = rv {
                    t.own_writes.insert(key.clone(), rv.clone());
                }
            }
        }
    }

    async fn report_suspended(&mut self, plan: &Plan, generation: Option<i64>, now: Timestamp) {
        self.status = next::suspended(&self.status, plan, self.cfg.prune, generation, now);
        self.metrics.set_drifted(plan.drift.len());
        self.write_status().await;
        // Suspended on purpose is healthy: the pod must still become ready,
        // or a rollout with the brake on never completes.
        self.mark_ready();
        info!(drifted = plan.drift.len(), "{}", self.status.message);
    }

    /// Status, metrics and readiness after a pass that wrote what it had to.
    async fn report_synced(&mut self, pass: Pass<'_>) {
        let synced = next::synced(&self.status, pass);
        self.status = synced.status;
        self.write_status().await;
        self.metrics.set_objects(&[("managed", synced.owned)]);
        self.metrics.set_drifted(synced.remaining);
        self.metrics.set_synced(unix_now(), pass.revision);
        self.mark_ready();
        if synced.noteworthy {
            info!(
                phase = %self.status.phase,
                created = pass.applied.count(Action::Create),
                updated = pass.applied.count(Action::Update),
                pruned = pass.applied.count(Action::Prune),
                unchanged = pass.plan.count(Action::Unchanged),
                drifted = synced.remaining,
                healed = synced.healed,
                "{}",
                self.status.message
            );
        } else {
            debug!(unchanged = pass.plan.count(Action::Unchanged), "in sync");
        }
    }

    /// `/readyz` answers 200 from the first pass that did what it was asked
    /// (synced, suspended, or planned in `--dry-run`).
    fn mark_ready(&self) {
        if !self.ready.swap(true, Ordering::SeqCst) {
            info!("first pass done; ready");
        }
    }

    /// The shapes of `kinds` (list types and defaults) from the server's
    /// OpenAPI: asked for again when a kind is new, or unless `fresh` (a pass
    /// that reads only what the watches saw change).
    async fn schemas(
        &mut self,
        kinds: &[&'static IstioKind],
        served: &Served,
        fresh: bool,
    ) -> Result<Arc<Schemas>, SyncError> {
        if let Some((asked, schemas)) = &self.schemas
            && fresh
            && kinds.iter().all(|k| asked.contains(k))
        {
            return Ok(schemas.clone());
        }
        let schemas = schema::read(
            &self.clients.requests,
            served,
            kinds,
            &mut self.schema_cache,
        )
        .await
        .map_err(|e| SyncError::api("reading the API server's OpenAPI schemas", e))?;
        debug!(
            kinds = kinds.len(),
            shapes = schemas.len(),
            "read the kinds' schemas"
        );
        let schemas = Arc::new(schemas);
        self.schemas = Some((kinds.to_vec(), schemas.clone()));
        Ok(schemas)
    }

    async fn report_failure(&mut self, error: &SyncError) {
        self.metrics.set_phase("Failed");
        if self.cfg.dry_run {
            eprintln!("error: {error}");
            return;
        }
        if !self.initialized || !error.report() {
            // Without the last run's status, writing one would drop its
            // inventory; and a failing API server cannot take the write.
            return;
        }
        self.status = next::failed(
            &self.status,
            error.reason(),
            &error.to_string(),
            Timestamp::now(),
        );
        self.write_status().await;
    }

    async fn write_status(&mut self) {
        self.metrics.set_phase(self.status.phase.as_str());
        match self.reporter.write(&self.status).await {
            Ok(true) => debug!(phase = %self.status.phase, "status written"),
            Ok(false) => {}
            Err(e) => warn!(error = %cluster::describe(&e), "status not written"),
        }
    }
}

/// Every this many resync periods a pass LISTs every object of the kinds
/// in use even when the watches' index could tell what changed: what a
/// watch may have missed is found within that time.
const FULL_LIST_EVERY: u32 = 10;

/// More objects to read than this, and a LIST is cheaper than a GET each:
/// a request costs the server more than an object in a page, and the pass
/// after an apply reads every object it wrote (at 64, a fleet of 50 agents
/// of 20 objects made 13 GETs per agent in a resync period, against 7 GETs
/// and 2 LISTs before the index).
const MAX_GETS: usize = 8;

/// The live objects a plan must read, when the drift watches know what is
/// live: each kind in use is watched at the version served and has listed
/// since it last failed. A desired object the index shows at the version at
/// which it was found in sync, which Git asks for unchanged, is planned
/// unchanged here; what is left to read are the desired objects that changed
/// (or were never verified) and those Git no longer asks for that the agent
/// owns. An object the index does not have is planned as absent. `None`
/// when a LIST must be made instead.
fn from_index(
    tracked: &SharedTracked,
    kinds: &[&'static IstioKind],
    served: &Served,
    desired: &DesiredSet,
    planner: &mut Planner<'_>,
) -> Option<Vec<(&'static IstioKind, String)>> {
    let tracked = tracked.lock().ok()?;
    for kind in kinds {
        let index = tracked.index.get(kind.plural)?;
        if !index.synced || index.version != served.preferred(kind) {
            return None;
        }
    }
    let mut read = Vec::new();
    for m in &desired.manifests {
        let kind = kinds::lookup(&m.group, &m.kind)?;
        let index = tracked.index.get(kind.plural)?;
        if let Some(seen) = index.objects.get(&m.name)
            && !planner.add_version(&m.key(), &seen.version)
        {
            read.push((kind, m.name.clone()));
        }
    }
    for kind in kinds {
        let index = tracked.index.get(kind.plural)?;
        for (name, seen) in &index.objects {
            let key = ObjectKey::new(kind.group, kind.kind, name.as_str());
            if planner.would_prune(&key, seen.owned) {
                read.push((kind, name.clone()));
            }
        }
    }
    (read.len() <= MAX_GETS).then_some(read)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Log the effective configuration once.
fn log_config(cfg: &Config, clients: &Clients) {
    let (repo, link) = match &cfg.source {
        Source::Link { root, link } => (root.display().to_string(), link.display().to_string()),
        Source::Plain { dir } => (dir.display().to_string(), String::new()),
    };
    info!(
        version = env!("CARGO_PKG_VERSION"),
        namespace = %cfg.namespace,
        repo,
        link,
        path = cfg.base_path.as_deref().unwrap_or("(from .gitops/config.yaml, else namespaces)"),
        name = %cfg.name,
        field_manager = %cfg.field_manager,
        resync_seconds = cfg.resync.as_secs_f64(),
        self_heal = cfg.self_heal,
        prune = cfg.prune,
        allow_kinds = ?cfg.policy.allowed_kinds,
        root_namespace = %cfg.policy.root_namespace,
        strict = cfg.strict,
        once = cfg.once,
        dry_run = cfg.dry_run,
        listen = ?cfg.listen,
        concurrency = cfg.concurrency,
        server = %clients.url,
        "sync-agent starting"
    );
}

/// The longest wait a server's `Retry-After` can impose on the loop.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Delay before retrying a failed reconcile: 1 s doubling with jitter, at
/// most the resync period (and at most a minute), and never sooner than
/// the server's `Retry-After`.
#[derive(Debug)]
struct RetryDelay {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
}

impl RetryDelay {
    fn new(resync: Duration) -> Self {
        let max = resync
            .min(Duration::from_secs(60))
            .max(Duration::from_millis(100));
        let builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1).min(max))
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            delays: builder.build(),
            builder,
        }
    }

    fn take(&mut self, retry_after: Option<Duration>) -> Duration {
        let next = self.delays.next().unwrap_or(Duration::from_secs(1));
        match retry_after {
            Some(asked) => asked.min(MAX_RETRY_AFTER).max(next),
            None => next,
        }
    }

    fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

/// Run the agent until SIGTERM/SIGINT (or once, with `--once`). Returns
/// whether it succeeded (`--once`: the exit code).
pub async fn run(cfg: Config) -> anyhow::Result<bool> {
    if let Source::Plain { dir } | Source::Link { root: dir, .. } = &cfg.source
        && !dir.is_dir()
    {
        anyhow::bail!("--repo {}: no such folder", dir.display());
    }
    let identity = crate::lease::identity();
    let clients = cluster::connect(cfg.kubeconfig.as_deref(), &cfg.namespace, &identity).await?;
    log_config(&cfg, &clients);
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let mut agent = Agent::new(cfg.clone(), clients.clone(), metrics.clone(), ready.clone());

    let reporter = Reporter::new(
        clients.requests.clone(),
        &cfg.namespace,
        &cfg.name,
        &cfg.field_manager,
    );
    if cfg.once && !cfg.dry_run {
        let mut lease = Lease::new(reporter.clone(), &identity, cfg.lease_duration);
        match lease.try_hold().await {
            Ok(Holder::Me) => {}
            Ok(Holder::Other { holder, renewed }) => {
                eprintln!(
                    "error: another process writes for agent {:?} in {} ({holder}, renewed {renewed}); nothing done",
                    cfg.name, cfg.namespace
                );
                return Ok(false);
            }
            Err(e) => {
                eprintln!(
                    "error: taking the writer's lease: {}",
                    cluster::describe(&e)
                );
                return Ok(false);
            }
        }
        let outcome = agent.reconcile(Wake::default()).await;
        lease.release().await;
        if outcome == Outcome::Waiting {
            eprintln!("error: no revision to sync: the link does not exist yet");
        }
        return Ok(outcome.is_success());
    }
    if cfg.once {
        let outcome = agent.reconcile(Wake::default()).await;
        if outcome == Outcome::Waiting {
            eprintln!("error: no revision to sync: the link does not exist yet");
        }
        return Ok(outcome.is_success());
    }

    let _server = match cfg.listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("--listen {addr}"))?;
            info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
            Some(AbortOnDrop(tokio::spawn(server::serve(
                listener,
                Health {
                    metrics: metrics.clone(),
                    ready: ready.clone(),
                },
            ))))
        }
        None => None,
    };

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stopping = agent.stopping();
    let _signals = AbortOnDrop(tokio::spawn(async move {
        wait_for_signal().await;
        stopping.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        // keep the sender alive: a dropped sender also wakes the loop
        std::future::pending::<()>().await;
    }));

    let (waker, mut wake_rx) = Waker::new();
    let _fs = watch::watch_source(&cfg.source, waker.clone(), Window::default())
        .with_context(|| format!("watching --repo {}", cfg.source.root().display()))?;
    agent.enable_drift_watches(waker.clone());
    let _lease = if cfg.dry_run {
        None
    } else {
        let roles = Roles::default();
        agent.leader = Some(roles.clone());
        let lease = Lease::new(reporter.clone(), &identity, cfg.lease_duration);
        Some(AbortOnDrop(tokio::spawn(lease.run(roles, waker.clone()))))
    };
    let gos: Api<DynamicObject> = Api::namespaced_with(
        clients.watches.clone(),
        &cfg.namespace,
        &cluster::gitopssync_resource(),
    );
    let _control = AbortOnDrop(tokio::spawn(watch::control_watch(
        gos,
        cfg.name.clone(),
        waker.clone(),
        metrics.clone(),
    )));

    let mut resync = tokio::time::interval_at(Instant::now() + cfg.resync, cfg.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = RetryDelay::new(cfg.resync);
    let mut wake = Wake {
        revision: true,
        ..Wake::default()
    };
    loop {
        let outcome = agent.reconcile(wake).await;
        let next_retry = match outcome {
            Outcome::Failed {
                retry_soon: true,
                retry_after,
            } => {
                let delay = retry.take(retry_after);
                debug!(?delay, "retrying after a transient failure");
                Some(Instant::now() + delay)
            }
            _ => {
                retry.reset();
                None
            }
        };
        if *stop_rx.borrow() {
            break;
        }
        tokio::select! {
            _ = stop_rx.changed() => break,
            _ = wake_rx.changed() => {
                wake = waker.take(&mut wake_rx);
                debug!(?wake, "woken");
            }
            _ = resync.tick() => {
                wake = Wake::default();
                debug!("resync");
            }
            _ = async {
                match next_retry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => watch::pending::<()>().await,
                }
            } => {
                wake = Wake::default();
            }
        }
    }
    info!("signal received; stopped after finishing the current sync");
    if !cfg.dry_run {
        drop(_lease);
        Lease::new(reporter, &identity, cfg.lease_duration)
            .release()
            .await;
    }
    Ok(true)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_with_jitter_up_to_the_resync_period() {
        let mut r = RetryDelay::new(Duration::from_secs(5));
        let delays: Vec<_> = (0..6).map(|_| r.take(None).as_secs_f64()).collect();
        // backon's jitter adds up to one more delay to each
        for (d, base) in delays.iter().zip([1.0, 2.0, 4.0, 5.0, 5.0, 5.0]) {
            assert!(*d >= base && *d <= base * 2.0, "{delays:?}");
        }
        r.reset();
        assert!(r.take(None) < Duration::from_secs(2));
    }

    #[test]
    fn retry_delay_honours_retry_after() {
        let mut r = RetryDelay::new(Duration::from_secs(5));
        assert_eq!(
            r.take(Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        // a short Retry-After does not shorten the backoff
        assert!(r.take(Some(Duration::from_millis(10))) >= Duration::from_secs(2));
        // an absurd one is bounded
        assert_eq!(r.take(Some(Duration::from_secs(86_400))), MAX_RETRY_AFTER);
    }

    #[test]
    fn only_synced_and_suspended_succeed() {
        assert!(Outcome::Synced.is_success());
        assert!(Outcome::Suspended.is_success());
        assert!(!Outcome::Waiting.is_success());
        assert!(
            !Outcome::Failed {
                retry_soon: true,
                retry_after: None
            }
            .is_success()
        );
    }
}
