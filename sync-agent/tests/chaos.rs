//! Chaos, end to end (issue 12): random revisions (adds, edits, moves,
//! removes) across five namespaces, each with its own agent, while a fault
//! driver stops and restarts etcd and the API server at random and the TCP
//! proxy in front of the server adds latency, resets connections and
//! refuses new ones. At the end every namespace equals Git exactly, every
//! agent's status says so, the audit log shows no request outside each
//! agent's namespace and no delete of an object that Git still held, and
//! the counts are printed (and written to target/reliability/chaos.txt,
//! which scripts/reliability.sh puts into docs/reliability.md).
//!
//! Bounded for CI (200 revisions, `GITOPS_CHAOS_REVISIONS` to change it);
//! `GITOPS_CHAOS_SOAK=1` runs 2,000. `GITOPS_CHAOS_SEED` replays a run.

// Helpers outside `#[test]` fns panic on failure on purpose: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::sleep,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gitops_shared::{
    ANNOTATION_HASH, LABEL_OWNER,
    manifest::{LoadOptions, parse_str},
    normalize::desired_object,
};
use gitops_tests::scope::{by_agent_of, outside};
use support::*;

const NAMESPACES: [&str; 5] = ["chaos-a", "chaos-b", "chaos-c", "chaos-d", "chaos-e"];
/// A delete is wrong when Git held the object in every revision published
/// this long before it: an agent may still be applying an older revision
/// (one that removed it) for a while after a newer one re-adds it.
const LAG: f64 = 30.0;

/// xorshift64*: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One object of the model: its kind, name and (for a VirtualService) weight.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Obj {
    kind: &'static str,
    name: String,
    weight: u32,
}

impl Obj {
    fn yaml(&self) -> String {
        match self.kind {
            "VirtualService" => vs(&self.name, self.weight, 100 - self.weight),
            _ => dr(&self.name),
        }
    }

    fn resource(&self) -> &'static str {
        match self.kind {
            "VirtualService" => "virtualservices",
            _ => "destinationrules",
        }
    }
}

/// Git as the test wrote it: namespace -> file -> object.
type Model = BTreeMap<&'static str, BTreeMap<String, Obj>>;

/// (resource, name) of every object of `ns` in `model`.
fn keys(model: &Model, ns: &str) -> BTreeSet<(String, String)> {
    model[ns]
        .values()
        .map(|o| (o.resource().to_string(), o.name.clone()))
        .collect()
}

/// What the faults did.
#[derive(Debug, Default)]
struct Faults {
    etcd_restarts: usize,
    server_restarts: usize,
    latency: usize,
    resets: usize,
    refusals: usize,
}

impl Faults {
    fn total(&self) -> usize {
        self.etcd_restarts + self.server_restarts + self.latency + self.resets + self.refusals
    }
}

/// One random change of the model; returns what it did.
fn change(model: &mut Model, rng: &mut Rng, serial: &mut usize) -> &'static str {
    let ns = NAMESPACES[rng.below(NAMESPACES.len())];
    let files = model.get_mut(ns).unwrap();
    let pick = |files: &BTreeMap<String, Obj>, rng: &mut Rng| {
        files.keys().nth(rng.below(files.len())).cloned().unwrap()
    };
    match rng.below(10) {
        // an add (more often, so namespaces grow)
        0..=3 => {
            *serial += 1;
            let kind = if rng.below(2) == 0 {
                "VirtualService"
            } else {
                "DestinationRule"
            };
            let obj = Obj {
                kind,
                name: format!("o{serial}"),
                weight: rng.below(101) as u32,
            };
            files.insert(format!("{}-{}.yaml", obj.resource(), obj.name), obj);
            "add"
        }
        // an edit of a VirtualService's weights
        4..=5 => {
            let vss: Vec<String> = files
                .iter()
                .filter(|(_, o)| o.kind == "VirtualService")
                .map(|(f, _)| f.clone())
                .collect();
            let Some(file) = vss.get(rng.below(vss.len().max(1))) else {
                return "none";
            };
            let obj = files.get_mut(file).unwrap();
            obj.weight = (obj.weight + 1 + rng.below(99) as u32) % 101;
            "edit"
        }
        // a move to another file (the same object)
        6..=7 => {
            let file = pick(files, rng);
            let obj = files.remove(&file).unwrap();
            *serial += 1;
            files.insert(format!("moved-{serial}-{}.yaml", obj.name), obj);
            "move"
        }
        // a remove, never of a namespace's last object (emptying one is
        // refused without .allow-empty: a test of its own)
        _ if files.len() > 1 => {
            let file = pick(files, rng);
            files.remove(&file);
            "remove"
        }
        _ => "none",
    }
}

/// Write the model into the git-sync source (every file, stale ones removed).
fn write_model(gs: &GitSync, model: &Model, written: &mut BTreeMap<String, String>) {
    let mut now: BTreeMap<String, String> = BTreeMap::new();
    for (ns, files) in model {
        for (file, obj) in files {
            now.insert(format!("namespaces/{ns}/{file}"), obj.yaml());
        }
    }
    for path in written.keys() {
        if !now.contains_key(path) {
            gs.remove(path).unwrap();
        }
    }
    for (path, content) in &now {
        if written.get(path) != Some(content) {
            gs.write(path, content).unwrap();
        }
    }
    *written = now;
}

/// The hash the agent must have applied for `obj` at `file` in `ns`.
fn expected_hash(ns: &str, file: &str, obj: &Obj) -> String {
    let source = format!("namespaces/{ns}/{file}");
    let m = parse_str(&obj.yaml(), Path::new(&source), &LoadOptions::default())
        .unwrap()
        .remove(0);
    desired_object(&m.object, ns, "sync-agent", &source).1
}

/// The fault driver: one fault at a time, at random, until `stop`.
fn drive_faults(
    cluster: Arc<Mutex<TestCluster>>,
    proxy: &gitops_tests::FaultProxy,
    stop: &AtomicBool,
    mut rng: Rng,
) -> Faults {
    let mut faults = Faults::default();
    while !stop.load(Ordering::SeqCst) {
        sleep(rng.millis(100, 800));
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match rng.below(5) {
            0 => {
                let mut c = cluster.lock().unwrap();
                c.stop_etcd().unwrap();
                sleep(rng.millis(300, 2000));
                c.start_etcd().unwrap();
                faults.etcd_restarts += 1;
            }
            1 => {
                let mut c = cluster.lock().unwrap();
                c.stop_server().unwrap();
                sleep(rng.millis(100, 1000));
                c.start_server().unwrap();
                faults.server_restarts += 1;
            }
            2 => {
                proxy.set_latency(rng.millis(20, 400));
                sleep(rng.millis(500, 3000));
                proxy.set_latency(Duration::ZERO);
                faults.latency += 1;
            }
            3 => {
                proxy.cut();
                faults.resets += 1;
            }
            _ => {
                proxy.set_refuse(true);
                sleep(rng.millis(200, 1500));
                proxy.set_refuse(false);
                faults.refusals += 1;
            }
        }
    }
    faults
}

#[test]
fn random_revisions_under_faults_end_equal_to_git_with_nothing_lost() {
    let revisions: usize = std::env::var("GITOPS_CHAOS_REVISIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if std::env::var_os("GITOPS_CHAOS_SOAK").is_some() {
            2000
        } else {
            200
        });
    let seed: u64 = std::env::var("GITOPS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("chaos: seed {seed} (GITOPS_CHAOS_SEED={seed} replays it), {revisions} revisions");
    let mut rng = Rng(seed);

    let cluster = cluster();
    let (_runtime, proxy, kubeconfig) = proxied(&cluster);
    let gs = GitSync::new().unwrap();
    let mut model: Model = NAMESPACES.iter().map(|ns| (*ns, BTreeMap::new())).collect();
    let mut serial = 0;
    for ns in NAMESPACES {
        for kind in ["VirtualService", "DestinationRule"] {
            serial += 1;
            let obj = Obj {
                kind,
                name: format!("o{serial}"),
                weight: 50,
            };
            model
                .get_mut(ns)
                .unwrap()
                .insert(format!("{}-{}.yaml", obj.resource(), obj.name), obj);
        }
    }
    let mut written = BTreeMap::new();
    write_model(&gs, &model, &mut written);
    let first = gs.commit_and_publish("seed").unwrap();
    let agents: Vec<Agent> = NAMESPACES
        .iter()
        .map(|ns| Agent::gitsync_via(&kubeconfig, &gs, ns, &["--resync", "5s"], &[]))
        .collect();
    for agent in &agents {
        wait_status(agent, &cluster, "Synced", Some(&first));
    }
    let audit_from = cluster.audit().unwrap().len();

    // Revisions, while faults run beside them.
    let cluster = Arc::new(Mutex::new(cluster));
    let stop = AtomicBool::new(false);
    let fault_rng = Rng(rng.next() | 1);
    let mut history: Vec<(f64, Model)> = vec![(now(), model.clone())];
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    let faults = std::thread::scope(|s| {
        let driver = s.spawn(|| drive_faults(cluster.clone(), &proxy, &stop, fault_rng));
        for i in 0..revisions {
            for _ in 0..1 + rng.below(4) {
                *ops.entry(change(&mut model, &mut rng, &mut serial))
                    .or_default() += 1;
            }
            write_model(&gs, &model, &mut written);
            gs.commit_and_publish(&format!("revision {i}")).unwrap();
            history.push((now(), model.clone()));
            sleep(rng.millis(0, 150));
        }
        stop.store(true, Ordering::SeqCst);
        driver.join().unwrap()
    });
    proxy.set_latency(Duration::ZERO);
    proxy.set_refuse(false);
    let cluster = Arc::into_inner(cluster).unwrap().into_inner().unwrap();
    let head = gs.published().unwrap();

    // Every agent converges on the last revision, and says so truly.
    let mut lost = 0;
    let mut wrong = Vec::new();
    for agent in &agents {
        let ns = agent.namespace.as_str();
        let status = wait_status(agent, &cluster, "Synced", Some(&head));
        assert_eq!(status["observedRevision"], head.as_str(), "{ns}: {status}");
        let inventory: BTreeSet<(String, String)> = status["inventory"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let kind = e["kind"].as_str().unwrap();
                let resource = if kind == "VirtualService" {
                    "virtualservices"
                } else {
                    "destinationrules"
                };
                (
                    resource.to_string(),
                    e["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            inventory,
            keys(&model, ns),
            "{ns}: the status inventory is not Git"
        );
        // the namespace equals Git: the same objects, each with Git's hash
        let mut live = BTreeSet::new();
        for resource in ["virtualservices", "destinationrules"] {
            for name in names(&cluster, ns, resource) {
                live.insert((resource.to_string(), name));
            }
        }
        let want = keys(&model, ns);
        lost += want.difference(&live).count();
        assert_eq!(live, want, "{ns}: live objects are not Git's");
        for (file, obj) in &model[ns] {
            let o = get(&cluster, ns, obj.resource(), &obj.name).unwrap();
            assert_eq!(
                o["metadata"]["annotations"][ANNOTATION_HASH].as_str(),
                Some(expected_hash(ns, file, obj).as_str()),
                "{ns}/{}: not what Git holds",
                obj.name
            );
            assert_eq!(o["metadata"]["labels"][LABEL_OWNER], ns);
        }
    }

    // The audit log: nothing outside a namespace, no delete of what Git held.
    let events = audit_since(&cluster, audit_from);
    let mut outside_requests = Vec::new();
    let mut deletes = 0;
    for ns in NAMESPACES {
        for e in events.iter().filter(|e| by_agent_of(e, ns)) {
            if outside(e, ns) {
                outside_requests.push(format!("{ns}: {} {}", e.verb, e.request_uri));
            }
            let Some(o) = e.object_ref.as_ref() else {
                continue;
            };
            if e.verb != "delete" || !(200..300).contains(&e.code.unwrap_or(0)) {
                continue;
            }
            deletes += 1;
            let key = (o.resource.clone(), o.name.clone());
            let at = e.received_us as f64 / 1e6;
            // justified when some revision published up to the delete, and
            // no more than LAG before it, lacked the object
            let justified = history
                .iter()
                .enumerate()
                .filter(|(i, (published, _))| {
                    *published <= at && history.get(i + 1).is_none_or(|(next, _)| *next >= at - LAG)
                })
                .any(|(_, (_, m))| !keys(m, ns).contains(&key));
            if !justified {
                wrong.push(format!("{ns}: delete {}/{} at {at:.3}", o.resource, o.name));
            }
        }
    }
    let running = agents.len();
    let mut agents = agents;
    let crashed = agents
        .iter_mut()
        .map(|a| !a.is_running())
        .filter(|dead| *dead)
        .count();

    let report = format!(
        "seed: {seed}\nrevisions: {revisions}\nchanges: {}\nfaults: {}\netcd restarts: {}\nserver restarts: {}\nlatency spells: {}\nconnection resets: {}\nrefusal spells: {}\nagents: {running}\nagents crashed: {crashed}\nrequests audited: {}\ndeletes: {deletes}\nobjects lost: {lost}\nwrong prunes: {}\nrequests outside the namespace: {}\n",
        ops.iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        faults.total(),
        faults.etcd_restarts,
        faults.server_restarts,
        faults.latency,
        faults.resets,
        faults.refusals,
        events.len(),
        wrong.len(),
        outside_requests.len(),
    );
    eprint!("chaos:\n{report}");
    let dir = gitops_tests::cluster::repo_root().join("target/reliability");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("chaos.txt"), &report).unwrap();

    assert!(wrong.is_empty(), "wrong prunes:\n{}", wrong.join("\n"));
    assert!(
        outside_requests.is_empty(),
        "requests outside the namespace:\n{}",
        outside_requests.join("\n")
    );
    assert_eq!(crashed, 0, "an agent crashed");
    assert!(faults.total() > 0, "no fault was injected");
}
