//! Everything that wakes the reconcile loop: the git-sync volume (or plain
//! folder) through inotify, the Istio objects of the kinds in use and the
//! agent's own `GitOpsSync` through API watches.
//!
//! Wake-ups are flags in a [`tokio::sync::watch`] channel ([`Wake`]): however
//! many arrive while a reconcile runs, the loop runs once more and reads the
//! newest state. That is how a burst of revisions collapses to the latest one
//! (git-sync's own `pkg/hook` does the same with a one-slot channel).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt as _};
use gitops_kube::resources::Served;
use gitops_shared::{IstioKind, ObjectKey, normalize::is_owned_by};
use kube::{
    Api, Client,
    api::DynamicObject,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::{cluster, config::Source, report::Metrics};

/// Why the loop should run again. Flags accumulate until the loop takes them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    /// The link moved (or a plain folder changed).
    pub revision: bool,
    /// An object of a kind in use changed in the cluster.
    pub drift: bool,
    /// The `GitOpsSync` object's spec changed (suspend/resume) or it was deleted.
    pub control: bool,
}

impl Wake {
    pub fn any(&self) -> bool {
        self.revision || self.drift || self.control
    }
}

/// The sending side of the wake-up channel; cheap to clone.
#[derive(Debug, Clone)]
pub struct Waker(Arc<watch::Sender<Wake>>);

impl Waker {
    pub fn new() -> (Self, watch::Receiver<Wake>) {
        let (tx, rx) = watch::channel(Wake::default());
        (Self(Arc::new(tx)), rx)
    }

    pub fn revision(&self) {
        self.0.send_modify(|w| w.revision = true);
    }

    pub fn drift(&self) {
        self.0.send_modify(|w| w.drift = true);
    }

    pub fn control(&self) {
        self.0.send_modify(|w| w.control = true);
    }

    /// Take the accumulated flags, leaving none; `rx` is marked as seen.
    pub fn take(&self, rx: &mut watch::Receiver<Wake>) -> Wake {
        let wake = self.0.send_replace(Wake::default());
        rx.borrow_and_update();
        wake
    }
}

/// How events are coalesced: wait until `quiet` passes without one, but
/// never longer than `max` after the first.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub quiet: Duration,
    pub max: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            quiet: Duration::from_millis(50),
            max: Duration::from_millis(500),
        }
    }
}

/// Collapse bursts of events on `events` into calls of `settled`: one call
/// per burst, after the burst went quiet. Returns when `events` closes.
pub async fn coalesce(
    mut events: mpsc::UnboundedReceiver<()>,
    window: Window,
    mut settled: impl FnMut(),
) {
    while events.recv().await.is_some() {
        let deadline = tokio::time::Instant::now() + window.max;
        loop {
            let until = (tokio::time::Instant::now() + window.quiet).min(deadline);
            match tokio::time::timeout_at(until, events.recv()).await {
                Ok(Some(())) if tokio::time::Instant::now() < deadline => continue,
                Ok(Some(())) | Err(_) => break,
                Ok(None) => {
                    settled();
                    return;
                }
            }
        }
        settled();
    }
}

/// Where `link` points, as an absolute path (git-sync writes it relative:
/// `.worktrees/<sha>`).
pub fn read_link(link: &Path) -> std::io::Result<PathBuf> {
    let target = std::fs::read_link(link)?;
    Ok(if target.is_absolute() {
        target
    } else {
        link.parent().unwrap_or(Path::new(".")).join(target)
    })
}

/// Watches the volume; dropping it stops the watch.
#[derive(Debug)]
pub struct FsWatch {
    _watcher: RecommendedWatcher,
    _task: AbortOnDrop,
}

/// Watch the revision source and wake the loop on a new revision.
///
/// git-sync mode watches the link's parent folder, not the link (inotify
/// would follow it to the old tree), and wakes as soon as `readlink` gives a
/// new target. Plain mode watches the folder recursively and wakes once a
/// burst of changes goes quiet (`window`: an editor or `git checkout`
/// writes many files). Either way a missed event is not fatal: every resync tick reads
/// the link again.
pub fn watch_source(source: &Source, waker: Waker, window: Window) -> notify::Result<FsWatch> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(event) if event.kind.is_access() => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            // An overflowed queue means events were lost: look anyway.
            Err(error) => {
                warn!(%error, "file watch error");
                let _ = tx.send(());
            }
        }
    })?;
    let task = match source {
        Source::Link { link, .. } => {
            let parent = link.parent().unwrap_or(Path::new(".")).to_path_buf();
            watcher.watch(&parent, RecursiveMode::NonRecursive)?;
            let link = link.clone();
            let mut last = read_link(&link).ok();
            // No waiting for quiet: git-sync publishes with one rename, so
            // the first event that shows a new target is the revision whole
            // (a burst of them still collapses in the wake-up flags).
            let mut rx = rx;
            tokio::spawn(async move {
                while rx.recv().await.is_some() {
                    let now = read_link(&link).ok();
                    if now != last {
                        debug!(target = ?now, "link moved");
                        last = now;
                        waker.revision();
                    }
                }
            })
        }
        Source::Plain { dir } => {
            watcher.watch(dir, RecursiveMode::Recursive)?;
            tokio::spawn(coalesce(rx, window, move || waker.revision()))
        }
    };
    Ok(FsWatch {
        _watcher: watcher,
        _task: AbortOnDrop(task),
    })
}

/// A spawned task that is aborted when this handle is dropped.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the drift watches care about, shared with the loop: the objects the
/// agent tracks (desired and inventory) and the resource versions its own
/// writes produced (an event for those is the agent's own echo); and what
/// the watches saw, by kind.
#[derive(Debug)]
pub struct Tracked {
    pub keys: BTreeSet<ObjectKey>,
    pub own_writes: HashMap<ObjectKey, String>,
    /// The agent's name: whose labelled objects count as its own.
    pub agent: String,
    /// Plural -> what the watch of that kind saw.
    pub index: BTreeMap<&'static str, KindIndex>,
}

/// What the drift watch of one kind saw: the resource version of every
/// object of the kind in the namespace, and whether it carries this agent's
/// ownership labels. Complete (`synced`) from the end of the watch's LIST
/// until the watch fails; a failed watch lists again.
#[derive(Debug, Default)]
pub struct KindIndex {
    /// The version of the kind watched.
    pub version: &'static str,
    pub synced: bool,
    /// Name -> what was seen of it.
    pub objects: HashMap<String, Seen>,
    /// The objects of a LIST in progress.
    listing: Option<HashMap<String, Seen>>,
}

/// One object as a watch saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub version: String,
    /// Labelled as this agent's (`is_owned_by`).
    pub owned: bool,
}

impl KindIndex {
    fn apply(&mut self, event: &watcher::Event<(String, Seen)>) {
        match event {
            watcher::Event::Init => self.listing = Some(HashMap::new()),
            watcher::Event::InitApply((name, seen)) => {
                if let Some(listing) = &mut self.listing {
                    listing.insert(name.clone(), seen.clone());
                }
            }
            watcher::Event::InitDone => {
                if let Some(mut listed) = self.listing.take() {
                    listed.shrink_to_fit();
                    self.objects = listed;
                    self.synced = true;
                }
            }
            watcher::Event::Apply((name, seen)) => {
                self.objects.insert(name.clone(), seen.clone());
            }
            watcher::Event::Delete((name, _)) => {
                self.objects.remove(name);
            }
        }
    }

    /// The watch failed: events may be missed until it lists again.
    fn failed(&mut self) {
        self.synced = false;
        self.listing = None;
    }
}

pub type SharedTracked = Arc<Mutex<Tracked>>;

impl Default for Tracked {
    fn default() -> Self {
        Self {
            keys: BTreeSet::new(),
            own_writes: HashMap::new(),
            agent: gitops_shared::gitopssync::DEFAULT_NAME.to_string(),
            index: BTreeMap::new(),
        }
    }
}

impl Tracked {
    /// Whether an event about the object `key`, seen at `seen`, could mean
    /// drift. The echo of the agent's own write is not, and is forgotten
    /// once seen (a resource version is never seen twice).
    pub fn is_relevant(&mut self, key: &ObjectKey, seen: &Seen) -> bool {
        !self.forget_echo(key, seen) && (self.keys.contains(key) || seen.owned)
    }

    /// Whether `key` at `seen` is the echo of the agent's own write; it is
    /// forgotten once seen, as an event or in a watch's LIST (which may run
    /// while the agent writes).
    pub fn forget_echo(&mut self, key: &ObjectKey, seen: &Seen) -> bool {
        if self.own_writes.get(key) != Some(&seen.version) {
            return false;
        }
        self.own_writes.remove(key);
        if self.own_writes.is_empty() {
            // after a sync of thousands, hold no table for them
            self.own_writes.shrink_to_fit();
        }
        true
    }
}

/// One API watch per kind in use, started and stopped as the kinds change.
pub struct DriftWatches {
    client: Client,
    namespace: String,
    waker: Waker,
    tracked: SharedTracked,
    metrics: Arc<Metrics>,
    /// plural -> (the version watched, the watch task)
    running: BTreeMap<&'static str, (&'static str, AbortOnDrop)>,
}

impl std::fmt::Debug for DriftWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftWatches")
            .field("namespace", &self.namespace)
            .field("kinds", &self.kinds())
            .finish_non_exhaustive()
    }
}

impl DriftWatches {
    pub fn new(
        client: Client,
        namespace: &str,
        waker: Waker,
        tracked: SharedTracked,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            waker,
            tracked,
            metrics,
            running: BTreeMap::new(),
        }
    }

    /// Watch exactly `kinds` from now on, each at the version served (a
    /// watch whose version is no longer the one served starts again).
    pub fn set_kinds(&mut self, kinds: &[&'static IstioKind], served: &Served) {
        let wanted: BTreeMap<&'static str, &'static str> = kinds
            .iter()
            .map(|k| (k.plural, served.preferred(k)))
            .collect();
        self.running
            .retain(|plural, (version, _)| wanted.get(plural) == Some(version));
        if let Ok(mut t) = self.tracked.lock() {
            let running = &self.running;
            t.index.retain(|plural, _| running.contains_key(plural));
        }
        for kind in kinds {
            if self.running.contains_key(kind.plural) {
                continue;
            }
            let version = served.preferred(kind);
            let api: Api<PartialObjectMeta<DynamicObject>> = Api::namespaced_with(
                self.client.clone(),
                &self.namespace,
                &cluster::api_resource(kind, version),
            );
            if let Ok(mut t) = self.tracked.lock() {
                t.index.insert(
                    kind.plural,
                    KindIndex {
                        version,
                        ..KindIndex::default()
                    },
                );
            }
            let task = tokio::spawn(drift_watch(
                api,
                kind,
                self.namespace.clone(),
                self.waker.clone(),
                self.tracked.clone(),
                self.metrics.clone(),
            ));
            debug!(kind = kind.kind, version, "drift watch started");
            self.running
                .insert(kind.plural, (version, AbortOnDrop(task)));
        }
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.running.keys().copied().collect()
    }
}

/// Watch the metadata of `kind`'s objects: keep the index of what is live
/// (the loop plans from it without a LIST) and wake the loop when an object
/// it tracks changes. A failed watch starts again with a LIST, after a
/// backoff, so the index is whole again only when that LIST is.
async fn drift_watch(
    api: Api<PartialObjectMeta<DynamicObject>>,
    kind: &'static IstioKind,
    namespace: String,
    waker: Waker,
    tracked: SharedTracked,
    metrics: Arc<Metrics>,
) {
    let mut initial = true;
    let mut failing = Failing::new("drift", kind.kind);
    let mut backoff = watch_backoff();
    loop {
        let stream = watcher(api.clone(), watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    failing.failed(&error, &metrics);
                    if let Ok(mut t) = tracked.lock()
                        && let Some(index) = t.index.get_mut(kind.plural)
                    {
                        index.failed();
                    }
                    break;
                }
            };
            failing.recovered();
            let Ok(mut t) = tracked.lock() else { return };
            let event = seen_event(event, &namespace, &t.agent);
            if let Some(index) = t.index.get_mut(kind.plural) {
                index.apply(&event);
            }
            let key = |name: &str| ObjectKey::new(kind.group, kind.kind, name);
            match &event {
                watcher::Event::Apply((name, seen)) | watcher::Event::Delete((name, seen)) => {
                    if t.is_relevant(&key(name), seen) {
                        debug!(kind = kind.kind, name = %name, "object changed");
                        waker.drift();
                    }
                }
                watcher::Event::InitApply((name, seen)) => {
                    t.forget_echo(&key(name), seen);
                }
                watcher::Event::InitDone => {
                    backoff = watch_backoff();
                    // After a re-list, events may have been missed: look again.
                    if !std::mem::take(&mut initial) {
                        waker.drift();
                    }
                }
                watcher::Event::Init => {}
            }
        }
        let delay = backoff.next().unwrap_or(WATCH_BACKOFF_MAX);
        tokio::time::sleep(delay).await;
    }
}

const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Between a failed watch and its next LIST: 0.8 s doubling to 30 s, with
/// jitter (kube's `default_backoff`), reset once a LIST completes.
fn watch_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder as _;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(800))
        .with_max_delay(WATCH_BACKOFF_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

fn seen_event(
    event: watcher::Event<PartialObjectMeta<DynamicObject>>,
    namespace: &str,
    agent: &str,
) -> watcher::Event<(String, Seen)> {
    use watcher::Event::*;
    match event {
        Init => Init,
        InitDone => InitDone,
        InitApply(o) => InitApply(seen(&o, namespace, agent)),
        Apply(o) => Apply(seen(&o, namespace, agent)),
        Delete(o) => Delete(seen(&o, namespace, agent)),
    }
}

/// The name of a watched object and what the index keeps of it.
fn seen(o: &PartialObjectMeta<DynamicObject>, namespace: &str, agent: &str) -> (String, Seen) {
    let labels = serde_json::json!({"metadata": {"labels": o.metadata.labels}});
    (
        o.metadata.name.clone().unwrap_or_default(),
        Seen {
            version: o.metadata.resource_version.clone().unwrap_or_default(),
            owned: is_owned_by(&labels, namespace, agent),
        },
    )
}

/// Watch the agent's own `GitOpsSync` and wake the loop when its spec
/// changes (`metadata.generation` moves: suspend, resume) or it is deleted.
/// Status writes do not move the generation, so the agent's own reports do
/// not wake it.
pub async fn control_watch(
    api: Api<DynamicObject>,
    name: String,
    waker: Waker,
    metrics: Arc<Metrics>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff();
    let mut generation: Option<i64> = None;
    let mut failing = Failing::new("control", "GitOpsSync");
    for_each(stream, |event| match event {
        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
            let g = o.metadata.generation;
            if generation.is_some() && g != generation {
                debug!(generation = ?g, "GitOpsSync spec changed");
                waker.control();
            }
            generation = g;
        }
        Ok(watcher::Event::Delete(_)) => {
            failing.recovered();
            generation = None;
            waker.control();
        }
        Ok(_) => failing.recovered(),
        Err(error) => failing.failed(&error, &metrics),
    })
    .await;
}

/// A watch's run of errors: the first is a warning (sub-second drift
/// detection or the suspend wake-up is off until it recovers, and the
/// resync tick is what is left), the rest are counted and logged at debug.
struct Failing {
    watch: &'static str,
    kind: &'static str,
    since: Option<std::time::Instant>,
}

impl Failing {
    fn new(watch: &'static str, kind: &'static str) -> Self {
        Self {
            watch,
            kind,
            since: None,
        }
    }

    fn failed(&mut self, error: &watcher::Error, metrics: &Metrics) {
        metrics.observe_watch_error(self.watch, self.kind);
        if self.since.is_none() {
            self.since = Some(std::time::Instant::now());
            warn!(%error, watch = self.watch, kind = self.kind,
                "API watch failed; until it recovers, changes are seen on the resync tick only (retrying with backoff)");
        } else {
            debug!(%error, watch = self.watch, kind = self.kind, "API watch still failing");
        }
    }

    fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            info!(watch = self.watch, kind = self.kind, failing_for = ?since.elapsed(), "API watch recovered");
        }
    }
}

/// Drive a stream to its end, calling `f` on each item.
async fn for_each<S: Stream>(stream: S, mut f: impl FnMut(S::Item)) {
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        f(item);
    }
}

/// A future that never resolves (a disabled `select!` branch).
pub fn pending<T>() -> impl Future<Output = T> {
    std::future::pending()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::{Instant, advance, sleep};

    fn counter() -> (Arc<AtomicUsize>, impl FnMut()) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (n, move || {
            m.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_settles_once_after_it_goes_quiet() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (n, f) = counter();
        let window = Window {
            quiet: Duration::from_millis(50),
            max: Duration::from_secs(5),
        };
        let task = tokio::spawn(coalesce(rx, window, f));
        let start = Instant::now();
        for _ in 0..20 {
            tx.send(()).unwrap();
            sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(n.load(Ordering::SeqCst), 0, "still inside the burst");
        sleep(Duration::from_millis(100)).await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
        // virtual time: exactly the burst plus the quiet period
        assert!(start.elapsed() >= Duration::from_millis(250));
        // a second burst, a second call
        tx.send(()).unwrap();
        sleep(Duration::from_millis(60)).await;
        assert_eq!(n.load(Ordering::SeqCst), 2);
        drop(tx);
        task.await.unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 2, "closing adds nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_stream_of_events_still_settles_every_max() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (n, f) = counter();
        let window = Window {
            quiet: Duration::from_millis(50),
            max: Duration::from_millis(500),
        };
        tokio::spawn(coalesce(rx, window, f));
        for _ in 0..100 {
            tx.send(()).unwrap();
            sleep(Duration::from_millis(20)).await;
        }
        // 2 s of events every 20 ms: settled about every 500 ms, never starved
        let calls = n.load(Ordering::SeqCst);
        assert!((3..=4).contains(&calls), "{calls}");
    }

    #[tokio::test(start_paused = true)]
    async fn wake_flags_accumulate_until_taken() {
        let (waker, mut rx) = Waker::new();
        waker.revision();
        waker.drift();
        waker.revision();
        rx.changed().await.unwrap();
        let wake = waker.take(&mut rx);
        assert_eq!(
            wake,
            Wake {
                revision: true,
                drift: true,
                control: false
            }
        );
        // taking marks it seen: nothing pending until the next kick
        let next = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        assert!(next.is_err(), "no wake-up without a kick");
        waker.control();
        advance(Duration::from_millis(1)).await;
        rx.changed().await.unwrap();
        assert!(waker.take(&mut rx).control);
    }

    #[test]
    fn read_link_resolves_relative_targets_against_the_link_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".worktrees/abc")).unwrap();
        std::os::unix::fs::symlink(".worktrees/abc", dir.path().join("repo")).unwrap();
        assert_eq!(
            read_link(&dir.path().join("repo")).unwrap(),
            dir.path().join(".worktrees/abc")
        );
        assert!(read_link(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn own_writes_and_foreign_objects_are_not_drift() {
        let mut t = Tracked::default();
        let key = ObjectKey::new("networking.istio.io", "VirtualService", "reviews");
        t.keys.insert(key.clone());
        let at = |version: &str, owned| Seen {
            version: version.into(),
            owned,
        };
        assert!(t.is_relevant(&key, &at("5", false)));
        t.own_writes.insert(key.clone(), "5".into());
        assert!(!t.is_relevant(&key, &at("5", false)), "our own echo");
        assert!(t.own_writes.is_empty(), "an echo seen is forgotten");
        t.own_writes.insert(key.clone(), "7".into());
        assert!(!t.forget_echo(&key, &at("6", false)));
        assert!(t.forget_echo(&key, &at("7", false)), "seen in a LIST");
        assert!(t.own_writes.is_empty());
        assert!(t.is_relevant(&key, &at("6", false)), "someone else's edit");
        let foreign = ObjectKey::new("networking.istio.io", "VirtualService", "hand-made");
        assert!(!t.is_relevant(&foreign, &at("9", false)));
        let labelled = ObjectKey::new("networking.istio.io", "VirtualService", "x");
        assert!(t.is_relevant(&labelled, &at("3", true)));
    }

    fn meta(
        name: &str,
        version: &str,
        labels: serde_json::Value,
    ) -> PartialObjectMeta<DynamicObject> {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "resourceVersion": version, "labels": labels}
        }))
        .unwrap()
    }

    #[test]
    fn the_index_is_whole_only_from_a_completed_list_until_a_failure() {
        use watcher::Event::*;
        let mut index = KindIndex::default();
        let ours = serde_json::json!({
            "app.kubernetes.io/managed-by": "kubectl-gitops",
            "kubectl-gitops.io/owner": "team-a"});
        let feed = |index: &mut KindIndex,
                    event: watcher::Event<PartialObjectMeta<DynamicObject>>| {
            index.apply(&seen_event(event, "team-a", "sync-agent"));
        };
        feed(&mut index, Init);
        feed(&mut index, InitApply(meta("a", "1", ours.clone())));
        feed(&mut index, InitApply(meta("b", "2", serde_json::json!({}))));
        assert!(!index.synced, "a LIST in progress is not whole");
        assert!(index.objects.is_empty());
        feed(&mut index, InitDone);
        assert!(index.synced);
        assert_eq!(
            index.objects.get("a"),
            Some(&Seen {
                version: "1".into(),
                owned: true
            })
        );
        assert!(!index.objects["b"].owned);
        feed(&mut index, Apply(meta("b", "7", serde_json::json!({}))));
        feed(&mut index, Delete(meta("a", "8", ours.clone())));
        assert_eq!(index.objects.len(), 1);
        assert_eq!(index.objects["b"].version, "7");
        // an owner label for another team, or another agent, is not ours
        let theirs = serde_json::json!({
            "app.kubernetes.io/managed-by": "kubectl-gitops",
            "kubectl-gitops.io/owner": "team-b"});
        feed(&mut index, Apply(meta("c", "9", theirs)));
        assert!(!index.objects["c"].owned);

        index.failed();
        assert!(!index.synced);
        // the LIST after the failure replaces everything once it completes
        feed(&mut index, Init);
        feed(
            &mut index,
            InitApply(meta("d", "10", serde_json::json!({}))),
        );
        assert!(!index.synced);
        feed(&mut index, InitDone);
        assert!(index.synced);
        assert_eq!(index.objects.keys().collect::<Vec<_>>(), ["d"]);
    }
}
