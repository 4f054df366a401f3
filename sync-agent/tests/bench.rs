//! Figures for the closing note and `scripts/bench.sh`: the time from
//! git-sync's link swap to `Synced` for the Bookinfo set, and the agent's
//! idle memory. Not a pass/fail test (machines are noisy); run it with
//!
//! ```text
//! cargo test --release -p sync-agent --test bench -- --ignored --nocapture
//! ```

// Helpers outside `#[test]` fns panic on failure on purpose: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use support::*;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Swap the link to `rev` and measure until the agent reports it synced:
/// `(agent side: swap -> sync complete per gitops_last_sync_timestamp_seconds,
///   observer side: swap -> GitOpsSync status Synced as seen with kubectl)`.
fn swap_and_measure(gs: &GitSync, agent: &Agent, cluster: &TestCluster, rev: &str) -> (f64, f64) {
    gs.prepare(rev).unwrap();
    let last = agent
        .metric("gitops_last_sync_timestamp_seconds")
        .unwrap_or(0.0);
    let started = Instant::now();
    let swapped_at = unix_now();
    if let Some(old) = gs.swap(rev).unwrap() {
        gs.cleanup(&old).unwrap();
    }
    let synced_at = agent.wait("the sync", || {
        let ts = agent.metric("gitops_last_sync_timestamp_seconds")?;
        let revision = agent.http("/metrics")?.1.contains(rev);
        (ts > last && revision).then_some(ts)
    });
    wait_status(agent, cluster, "Synced", Some(rev));
    let observed = started.elapsed().as_secs_f64();
    ((synced_at - swapped_at) * 1000.0, observed * 1000.0)
}

#[test]
#[ignore = "a measurement, not a test: run with --ignored --nocapture"]
fn bench_bookinfo_swap_to_synced_and_idle_rss() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    let ns = "bookinfo";
    let agent = Agent::gitsync(&cluster, &gs, ns, &[]);
    agent.wait("the HTTP server", || agent.http("/healthz"));
    let rss_start = agent.rss_kib();

    write_bookinfo(&gs, ns);
    let first = gs.commit("bookinfo").unwrap();
    let (agent_ms, observed_ms) = swap_and_measure(&gs, &agent, &cluster, &first);
    println!(
        "bench sync-agent: first Bookinfo revision ({BOOKINFO_OBJECTS} objects created): link swap -> synced {agent_ms:.0} ms (agent), -> Synced seen in status {observed_ms:.0} ms"
    );

    let mut agent_times = Vec::new();
    let mut observed_times = Vec::new();
    for i in 0..6 {
        let sample = if i % 2 == 0 {
            "virtual-service-reviews-90-10.yaml"
        } else {
            "virtual-service-reviews-80-20.yaml"
        };
        gs.copy_in(
            samples().join(sample),
            format!("namespaces/{ns}/virtual-service-reviews.yaml"),
        )
        .unwrap();
        let rev = gs.commit(&format!("weights {i}")).unwrap();
        let (a, o) = swap_and_measure(&gs, &agent, &cluster, &rev);
        agent_times.push(a);
        observed_times.push(o);
    }
    agent_times.sort_by(f64::total_cmp);
    observed_times.sort_by(f64::total_cmp);
    println!(
        "bench sync-agent: weight change (1 of {BOOKINFO_OBJECTS} objects updated), 6 runs: link swap -> synced median {:.0} ms (min {:.0}, max {:.0}) (agent); -> Synced seen in status median {:.0} ms",
        agent_times[3], agent_times[0], agent_times[5], observed_times[3]
    );

    // idle: synced, nothing to do but the watches
    sleep(Duration::from_secs(5));
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    println!(
        "bench sync-agent: RSS at start {rss_start} KiB; idle after sync VmRSS {} (peak VmHWM {}), threads {}",
        field("VmRSS:"),
        field("VmHWM:"),
        field("Threads:")
    );
}

// ---------------------------------------------------------------------------
// Scale: apply, change, no-op resync, footprint, fleet and plugin figures at
// 100 to 5,000 objects (issue 11). `scripts/bench.sh` runs this and writes
// the table to docs/benchmarks.md.

/// A DestinationRule and a VirtualService of realistic shape for service
/// `svc-<i>`: subsets with labels and a traffic policy; two routes with a
/// header match, weights, retries and a timeout. Written as JSON, which is
/// YAML.
fn realistic_pair(i: usize) -> [(String, Value); 2] {
    let host = format!("svc-{i}");
    let dr = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": host, "labels": {"app": host, "team": "bench"}},
        "spec": {
            "host": host,
            "trafficPolicy": {
                "connectionPool": {"tcp": {"maxConnections": 100}, "http": {"http1MaxPendingRequests": 64}},
                "outlierDetection": {"consecutive5xxErrors": 5, "interval": "30s", "baseEjectionTime": "60s"},
            },
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    });
    let vs = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": host, "labels": {"app": host, "team": "bench"}},
        "spec": {
            "hosts": [host],
            "http": [
                {
                    "name": "canary-testers",
                    "match": [{"headers": {"end-user": {"exact": "tester"}}}],
                    "route": [{"destination": {"host": host, "subset": "v2"}}],
                },
                {
                    "name": "primary",
                    "route": [
                        {"destination": {"host": host, "subset": "v1"}, "weight": 90},
                        {"destination": {"host": host, "subset": "v2"}, "weight": 10},
                    ],
                    "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset"},
                    "timeout": "10s",
                },
            ],
        },
    });
    [
        (format!("dr-{host}.yaml"), dr),
        (format!("vs-{host}.yaml"), vs),
    ]
}

/// `n` objects (n/2 pairs).
fn realistic(n: usize) -> Vec<(String, Value)> {
    (0..n / 2).flat_map(realistic_pair).collect()
}

fn write_objects(gs: &GitSync, ns: &str, objects: &[(String, Value)]) {
    for (file, object) in objects {
        gs.write(
            format!("namespaces/{ns}/{file}"),
            serde_json::to_string_pretty(object).unwrap(),
        )
        .unwrap();
    }
}

/// (median, min, max) of `v`.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn fmt_ms(v: &[f64]) -> String {
    let (med, min, max) = spread(v);
    if v.len() == 1 {
        format!("{med:.0} ms (1 run)")
    } else {
        format!("{med:.0} ms ({min:.0}–{max:.0}, {} runs)", v.len())
    }
}

fn fmt_mib(kib: &[f64]) -> String {
    let mib: Vec<f64> = kib.iter().map(|k| k / 1024.0).collect();
    let (med, min, max) = spread(&mib);
    if mib.len() == 1 {
        format!("{med:.1} MiB")
    } else {
        format!("{med:.1} MiB ({min:.1}–{max:.1})")
    }
}

/// `(times, peaks)` of a command's runs, as `median ms (..), peak median MiB (..)`.
fn fmt_runs(runs: &(Vec<f64>, Vec<f64>)) -> String {
    format!("{}, peak {}", fmt_ms(&runs.0), fmt_mib(&runs.1))
}

/// Runs per figure (`GITOPS_BENCH_RUNS`, default 3).
fn runs() -> usize {
    std::env::var("GITOPS_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// The object sizes to measure (`GITOPS_BENCH_SIZES`, default 100,1000,5000).
fn sizes() -> Vec<usize> {
    std::env::var("GITOPS_BENCH_SIZES")
        .unwrap_or_else(|_| "100,1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Whether to run `section` (`GITOPS_BENCH_SECTIONS`, a comma list of
/// create, concurrency, change, fleet, plugin; default all).
fn section(name: &str) -> bool {
    std::env::var("GITOPS_BENCH_SECTIONS")
        .map(|s| s.split(',').any(|x| x.trim() == name))
        .unwrap_or(true)
}

/// A process's figure from `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, `Threads:`), as a number.
fn proc_status(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// CPU time (user + system) of a process so far, in ms (`/proc/<pid>/stat`,
/// clock ticks of 10 ms).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // after the command name: state is field 0, utime 11, stime 12
    (ticks(11) + ticks(12)) * 10.0
}

/// Run `cmd` under `/usr/bin/time`: (wall ms, peak RSS KiB, success).
fn timed(cmd: Command) -> (f64, f64, bool) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(out.path())
        .arg(cmd.get_program());
    timed.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    timed.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let result = timed.output().unwrap();
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    let peak = std::fs::read_to_string(out.path())
        .unwrap_or_default()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0.0);
    if !result.status.success() {
        eprintln!(
            "bench: {:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&result.stderr)
        );
    }
    (wall, peak, result.status.success())
}

/// `sync-agent --once` on `gs`'s checkout for `ns`, logging warnings only.
fn once_command(cluster: &TestCluster, gs: &GitSync, ns: &str) -> Command {
    let root = gs.root();
    let mut cmd = agent_command(
        cluster,
        ns,
        &[
            "--once",
            "--listen=off",
            "--repo",
            root.to_str().unwrap(),
            "--link",
            gs.link_name(),
        ],
    );
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// The server's floor: the same server-side apply requests the agent
/// sends (its objects, with its labels and annotations, strict field
/// validation, forced), sent by a minimal kube client 64 at a time. ms.
fn floor_apply(cluster: &TestCluster, ns: &str, objects: &[(String, Value)]) -> f64 {
    use futures::StreamExt as _;
    use gitops_shared::{
        manifest::{LoadOptions, parse_str},
        plan::Prepared,
    };
    use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
    let objects: Vec<(String, Value)> = objects
        .iter()
        .map(|(file, object)| {
            let shown = format!("namespaces/{ns}/{file}");
            let text = serde_json::to_string(object).unwrap();
            let manifest = parse_str(&text, std::path::Path::new(&shown), &LoadOptions::default())
                .unwrap()
                .remove(0);
            let sent = Prepared::of(&manifest, ns, "sync-agent").value().unwrap();
            (file.clone(), sent)
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let params = PatchParams {
            field_validation: Some(ValidationDirective::Strict),
            ..PatchParams::apply("bench-floor").force()
        };
        let started = Instant::now();
        let mut requests = futures::stream::iter(objects.iter().map(|(_, object)| {
            let kind = object["kind"].as_str().unwrap();
            let plural = if kind == "VirtualService" {
                "virtualservices"
            } else {
                "destinationrules"
            };
            let resource = kube::core::ApiResource {
                group: "networking.istio.io".into(),
                version: "v1".into(),
                api_version: "networking.istio.io/v1".into(),
                kind: kind.into(),
                plural: plural.into(),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let params = params.clone();
            async move {
                api.patch(&name, &params, &Patch::Apply(object))
                    .await
                    .map(|_| ())
            }
        }))
        .buffer_unordered(64);
        while let Some(r) = requests.next().await {
            r.unwrap();
        }
        started.elapsed().as_secs_f64() * 1000.0
    })
}

fn create_namespace_folder_for_kubectl(objects: &[(String, Value)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (file, object) in objects {
        std::fs::write(
            dir.path().join(file),
            serde_json::to_string_pretty(object).unwrap(),
        )
        .unwrap();
    }
    dir
}

/// The plugin binary (release, from `scripts/bench.sh`).
fn plugin() -> PathBuf {
    std::env::var_os("GITOPS_BENCH_PLUGIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/kubectl-gitops")
        })
}

struct Table {
    rows: Vec<[String; 3]>,
}

impl Table {
    fn row(
        &mut self,
        what: impl Into<String>,
        figure: impl Into<String>,
        target: impl Into<String>,
    ) {
        let row = [what.into(), figure.into(), target.into()];
        println!("bench: {} | {} | {}", row[0], row[1], row[2]);
        self.rows.push(row);
    }

    fn markdown(&self) -> String {
        let mut out = String::from("| what | measured | target |\n| --- | --- | --- |\n");
        for [a, b, c] in &self.rows {
            out.push_str(&format!("| {a} | {b} | {c} |\n"));
        }
        out
    }
}

fn verdict(ok: bool, target: &str) -> String {
    format!("{target}: {}", if ok { "met" } else { "**missed**" })
}

/// Requests by verb, as `get 3, list 14, patch 1`.
fn by_verb(events: &[AuditEvent]) -> String {
    let mut verbs: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in events {
        *verbs.entry(e.verb.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = verbs.iter().map(|(v, n)| format!("{v} {n}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn mine(events: &[AuditEvent], ns: &str) -> Vec<AuditEvent> {
    events
        .iter()
        .filter(|e| e.user_agent.contains(&format!("({ns})")))
        .cloned()
        .collect()
}

#[test]
#[ignore = "a measurement, not a test: run with --ignored --nocapture (scripts/bench.sh)"]
fn bench_scale() {
    // every section (and every size) on a fresh server: what one left in
    // etcd does not slow the next
    let mut table = Table { rows: Vec::new() };
    let runs = runs();
    let quiet = [("RUST_LOG", "info")];

    for n in sizes().into_iter().filter(|_| section("create")) {
        let cluster = cluster();
        let objects = realistic(n);
        // agent --once: a fresh namespace each run, so every object is created
        let mut once_ms = Vec::new();
        let mut once_peak = Vec::new();
        let gs = GitSync::new().unwrap();
        for r in 0..runs {
            write_objects(&gs, &format!("once-{n}-{r}"), &objects);
        }
        gs.commit_and_publish("once").unwrap();
        for r in 0..runs {
            let ns = format!("once-{n}-{r}");
            let (ms, peak, ok) = timed(once_command(&cluster, &gs, &ns));
            assert!(ok, "sync-agent --once on {n} objects");
            once_ms.push(ms);
            once_peak.push(peak);
        }

        // the long-running agent: a link swap to N objects -> Synced
        let mut live_ms = Vec::new();
        let mut idle_rss = Vec::new();
        let mut idle_anon = Vec::new();
        let mut peak_rss = Vec::new();
        let mut threads = 0.0;
        for r in 0..runs {
            let ns = format!("live-{n}-{r}");
            let gs = GitSync::new().unwrap();
            write_objects(&gs, &ns, &objects[..2]);
            gs.commit_and_publish("seed").unwrap();
            let agent = Agent::gitsync_via(&cluster.kubeconfig_path(), &gs, &ns, &[], &quiet);
            wait_status(&agent, &cluster, "Synced", None);
            write_objects(&gs, &ns, &objects);
            let rev = gs.commit(&format!("{n} objects")).unwrap();
            let (agent_ms, _) = swap_and_measure(&gs, &agent, &cluster, &rev);
            live_ms.push(agent_ms);
            sleep(Duration::from_secs(5));
            idle_rss.push(proc_status(agent.pid(), "VmRSS:"));
            idle_anon.push(proc_status(agent.pid(), "RssAnon:"));
            peak_rss.push(proc_status(agent.pid(), "VmHWM:"));
            threads = proc_status(agent.pid(), "Threads:");
        }

        // kubectl apply --server-side of the same files
        let kubectl_runs = if n > 1000 { 1 } else { runs };
        let mut kubectl_ms = Vec::new();
        let files = create_namespace_folder_for_kubectl(&objects);
        for r in 0..kubectl_runs {
            let ns = format!("kubectl-{n}-{r}");
            let mut cmd = cluster.kubectl();
            cmd.args([
                "apply",
                "--server-side",
                "--field-manager=bench-kubectl",
                "-n",
                &ns,
                "-f",
            ])
            .arg(files.path());
            let (ms, _, ok) = timed(cmd);
            assert!(ok, "kubectl apply of {n} objects");
            kubectl_ms.push(ms);
        }

        // the server's floor
        let mut floor_ms = Vec::new();
        for r in 0..runs {
            floor_ms.push(floor_apply(&cluster, &format!("floor-{n}-{r}"), &objects));
        }

        let (once_med, ..) = spread(&once_ms);
        let (live_med, ..) = spread(&live_ms);
        let (kubectl_med, ..) = spread(&kubectl_ms);
        let (floor_med, ..) = spread(&floor_ms);
        table.row(format!("create {n}: agent `--once`"), fmt_ms(&once_ms), "");
        table.row(
            format!("create {n}: long-running agent, link swap -> Synced"),
            fmt_ms(&live_ms),
            if n == 1000 {
                verdict(live_med <= 1.3 * floor_med, "<= 1.3x the floor")
            } else {
                String::new()
            },
        );
        table.row(
            format!("create {n}: `kubectl apply --server-side`"),
            fmt_ms(&kubectl_ms),
            "",
        );
        table.row(
            format!("create {n}: server floor (64 concurrent SSA requests)"),
            fmt_ms(&floor_ms),
            "",
        );
        table.row(
            format!("create {n}: ratios"),
            format!(
                "agent/floor {:.2} (`--once` {:.2}); kubectl/agent {:.1}",
                live_med / floor_med,
                once_med / floor_med,
                kubectl_med / live_med
            ),
            if n == 1000 {
                verdict(kubectl_med >= 10.0 * live_med, "kubectl/agent >= 10")
            } else {
                String::new()
            },
        );
        table.row(
            format!("footprint {n}: RSS idle after the sync"),
            fmt_mib(&idle_rss),
            match n {
                1000 => verdict(spread(&idle_rss).0 <= 12.0 * 1024.0, "<= 12 MiB"),
                5000 => verdict(spread(&idle_rss).0 <= 16.0 * 1024.0, "<= 16 MiB"),
                _ => String::new(),
            },
        );
        // The rest of the RSS is the binary and the C library mapped from
        // their files: page cache, shared by every agent of one image on a node.
        table.row(
            format!("footprint {n}: of it anonymous (heap, stacks), idle"),
            fmt_mib(&idle_anon),
            "",
        );
        table.row(
            format!("footprint {n}: peak RSS, long-running agent / `--once`"),
            format!("{} / {}", fmt_mib(&peak_rss), fmt_mib(&once_peak)),
            if n == 1000 {
                verdict(spread(&peak_rss).0 <= 24.0 * 1024.0, "<= 24 MiB")
            } else {
                String::new()
            },
        );
        table.row(
            format!("footprint {n}: threads"),
            format!("{threads:.0}"),
            "",
        );
    }

    // the default --concurrency: --once creating 1,000 objects at each
    // setting, against the floor, in one run on one server
    if section("concurrency") {
        let cluster = cluster();
        let n = 1000;
        let objects = realistic(n);
        let settings = [1, 2, 4, 8, 16, 32, 64];
        let gs = GitSync::new().unwrap();
        for c in settings {
            for r in 0..runs {
                write_objects(&gs, &format!("conc-{c}-{r}"), &objects);
            }
        }
        gs.commit_and_publish("concurrency").unwrap();
        let mut floor_ms = Vec::new();
        let mut by_setting = Vec::new();
        // interleaved, so a slow spell of the machine hits every setting
        for r in 0..runs {
            floor_ms.push(floor_apply(&cluster, &format!("conc-floor-{r}"), &objects));
            for (i, c) in settings.iter().enumerate() {
                let ns = format!("conc-{c}-{r}");
                let mut cmd = once_command(&cluster, &gs, &ns);
                cmd.arg(format!("--concurrency={c}"));
                let (ms, _, ok) = timed(cmd);
                assert!(ok, "sync-agent --once --concurrency {c}");
                if by_setting.len() <= i {
                    by_setting.push(Vec::new());
                }
                by_setting[i].push(ms);
            }
        }
        let (floor_med, ..) = spread(&floor_ms);
        table.row(
            format!("create {n}, `--once` by `--concurrency`: server floor"),
            fmt_ms(&floor_ms),
            "",
        );
        for (c, ms) in settings.iter().zip(&by_setting) {
            let (med, ..) = spread(ms);
            table.row(
                format!("create {n}, `--once --concurrency {c}`"),
                format!("{} (agent/floor {:.2})", fmt_ms(ms), med / floor_med),
                if *c == sync_agent::config::DEFAULT_CONCURRENCY {
                    "the default".to_string()
                } else {
                    String::new()
                },
            );
        }
    }

    // one change in 1,000; then the no-op resync of 1,000 and idle CPU
    if section("change") {
        let cluster = cluster();
        let n = 1000;
        let ns = "change-1000";
        let objects = realistic(n);
        let gs = GitSync::new().unwrap();
        write_objects(&gs, ns, &objects);
        gs.commit_and_publish("1000").unwrap();
        let resync = 10;
        let agent = Agent::gitsync_via(
            &cluster.kubeconfig_path(),
            &gs,
            ns,
            &["--resync", &format!("{resync}s")],
            &quiet,
        );
        wait_status(&agent, &cluster, "Synced", None);
        let mut change_ms = Vec::new();
        let mut writes = Vec::new();
        for i in 0..runs.max(3) {
            let mut vs = objects[1].1.clone();
            vs["spec"]["http"][1]["route"][0]["weight"] = json!(80 - i);
            vs["spec"]["http"][1]["route"][1]["weight"] = json!(20 + i);
            gs.write(
                format!("namespaces/{ns}/{}", objects[1].0),
                serde_json::to_string_pretty(&vs).unwrap(),
            )
            .unwrap();
            let rev = gs.commit(&format!("change {i}")).unwrap();
            let before = cluster.audit().unwrap().len();
            let (ms, _) = swap_and_measure(&gs, &agent, &cluster, &rev);
            change_ms.push(ms);
            writes.push(agent_object_writes(&audit_since(&cluster, before), ns).len());
        }
        let (change_med, ..) = spread(&change_ms);
        table.row(
            "one change in 1,000: link swap -> Synced",
            fmt_ms(&change_ms),
            verdict(change_med < 200.0, "< 200 ms"),
        );
        table.row(
            "one change in 1,000: object writes per change",
            format!("{writes:?}"),
            verdict(writes.iter().all(|w| *w == 1), "exactly 1"),
        );

        // idle: resyncs only (no change), 60 s
        sleep(Duration::from_secs(3));
        let before = cluster.audit().unwrap().len();
        let cpu_before = cpu_ms(agent.pid());
        let idle = 60;
        sleep(Duration::from_secs(idle));
        let cpu = cpu_ms(agent.pid()) - cpu_before;
        let events = mine(&audit_since(&cluster, before), ns);
        let resyncs = (idle / resync) as f64;
        // writes of objects; the GitOpsSync's own (lease renewals, status)
        // are counted apart
        let writes = agent_object_writes(&events, ns).len();
        let own = events.iter().filter(|e| is_write(e)).count() - writes;
        table.row(
            format!("no-op resync of 1,000 (`--resync {resync}s`, {idle} s idle): requests"),
            format!(
                "{} in {idle} s ({:.1} per resync)",
                by_verb(&events),
                events.len() as f64 / resyncs
            ),
            "",
        );
        table.row(
            "no-op resync of 1,000: object writes (GitOpsSync lease and status writes apart)",
            format!("{writes} ({own})"),
            verdict(writes == 0, "0 object writes"),
        );
        table.row(
            "no-op resync of 1,000: CPU per resync",
            format!(
                "{:.0} ms ({cpu:.0} ms over {idle} s: {:.2}% of a core)",
                cpu / resyncs,
                cpu / (idle as f64 * 10.0)
            ),
            verdict(cpu / resyncs <= 50.0, "<= 50 ms"),
        );
    }

    // fleet: 50 agents, 20 objects each, one server
    if section("fleet") {
        let cluster = cluster();
        let agents_n = 50;
        let per = 20;
        let gs = GitSync::new().unwrap();
        let objects = realistic(per);
        for a in 0..agents_n {
            write_objects(&gs, &format!("fleet-{a}"), &objects);
        }
        gs.commit_and_publish("fleet").unwrap();
        let resync = 30;
        let agents: Vec<Agent> = (0..agents_n)
            .map(|a| {
                Agent::gitsync_via(
                    &cluster.kubeconfig_path(),
                    &gs,
                    &format!("fleet-{a}"),
                    &["--resync", &format!("{resync}s")],
                    &quiet,
                )
            })
            .collect();
        for agent in &agents {
            wait_status(agent, &cluster, "Synced", None);
        }
        sleep(Duration::from_secs(5));
        let total: f64 = agents.iter().map(|a| proc_status(a.pid(), "VmRSS:")).sum();
        let before = cluster.audit().unwrap().len();
        sleep(Duration::from_secs(resync));
        let events: Vec<AuditEvent> = audit_since(&cluster, before)
            .into_iter()
            .filter(|e| e.user_agent.starts_with("sync-agent/"))
            .collect();
        table.row(
            format!("fleet: {agents_n} agents x {per} objects: total RSS"),
            format!(
                "{:.0} MiB ({:.1} MiB each)",
                total / 1024.0,
                total / 1024.0 / agents_n as f64
            ),
            "",
        );
        table.row(
            format!("fleet: requests in one resync period ({resync} s)"),
            format!(
                "{} ({:.1} per agent)",
                by_verb(&events),
                events.len() as f64 / agents_n as f64
            ),
            "",
        );
        // one commit touching every namespace
        for a in 0..agents_n {
            let mut vs = objects[1].1.clone();
            vs["spec"]["http"][1]["route"][0]["weight"] = json!(70);
            vs["spec"]["http"][1]["route"][1]["weight"] = json!(30);
            gs.write(
                format!("namespaces/fleet-{a}/{}", objects[1].0),
                serde_json::to_string_pretty(&vs).unwrap(),
            )
            .unwrap();
        }
        let rev = gs.commit("all 50").unwrap();
        gs.prepare(&rev).unwrap();
        let started = Instant::now();
        if let Some(old) = gs.swap(&rev).unwrap() {
            gs.cleanup(&old).unwrap();
        }
        for agent in &agents {
            wait_status(agent, &cluster, "Synced", Some(&rev));
        }
        table.row(
            format!("fleet: one commit touching all {agents_n} namespaces -> Synced everywhere"),
            format!("{:.0} ms", started.elapsed().as_secs_f64() * 1000.0),
            "",
        );
    }

    // the plugin on 1,000 objects
    if section("plugin") {
        let cluster = cluster();
        let plugin = plugin();
        let n = 1000;
        let ns = "plugin-1000";
        let objects = realistic(n);
        let gs = GitSync::new().unwrap();
        write_objects(&gs, ns, &objects);
        gs.commit_and_publish("1000").unwrap();
        assert!(timed(once_command(&cluster, &gs, ns)).2);
        let repo = gs.source();
        let plugin_cmd = |args: &[&str]| {
            let mut cmd = Command::new(&plugin);
            cmd.arg("--repo")
                .arg(&repo)
                .arg("--kubeconfig")
                .arg(cluster.kubeconfig_path());
            cmd.args(args);
            cmd
        };
        let mut diff = (Vec::new(), Vec::new());
        let mut validate = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (ms, peak, _) = timed(plugin_cmd(&["-n", ns, "diff"]));
            diff.0.push(ms);
            diff.1.push(peak);
            // exit 1 is fine: the analysis may warn (no Services in the repo)
            let (ms, peak, _) = timed(plugin_cmd(&["-A", "validate"]));
            validate.0.push(ms);
            validate.1.push(peak);
        }
        table.row(
            "plugin: `diff -n` on 1,000 objects (in sync)",
            fmt_runs(&diff),
            "",
        );
        table.row(
            format!(
                "plugin: `validate -A` on the repo ({} objects)",
                gs_object_count(&repo)
            ),
            fmt_runs(&validate),
            "",
        );

        // stage and commit of 100 files in a new repo
        let mut stage = (Vec::new(), Vec::new());
        let mut commit = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let work = tempfile::tempdir().unwrap();
            let repo = work.path().join("repo");
            let mut init = Command::new(&plugin);
            init.arg("--repo").arg(&repo).arg("init");
            assert!(timed(init).2);
            let files = create_namespace_folder_for_kubectl(&realistic(100));
            let mut cmd = Command::new(&plugin);
            cmd.arg("--repo").arg(&repo).args(["-n", "team-a", "stage"]);
            for (file, _) in realistic(100) {
                cmd.arg(files.path().join(file));
            }
            let (ms, peak, ok) = timed(cmd);
            assert!(ok, "stage of 100 files");
            stage.0.push(ms);
            stage.1.push(peak);
            let mut cmd = Command::new(&plugin);
            cmd.arg("--repo")
                .arg(&repo)
                .args(["commit", "-m", "100 objects"]);
            let (ms, peak, ok) = timed(cmd);
            assert!(ok, "commit of 100 files");
            commit.0.push(ms);
            commit.1.push(peak);
        }
        table.row("plugin: `stage` of 100 files", fmt_runs(&stage), "");
        table.row("plugin: `commit` of 100 files", fmt_runs(&commit), "");
    }

    // binary sizes
    let size = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1024.0 / 1024.0)
            .unwrap_or(0.0)
    };
    table.row(
        "binaries (release, stripped): sync-agent / kubectl-gitops",
        format!(
            "{:.1} MiB / {:.1} MiB",
            size(std::path::Path::new(env!("CARGO_BIN_EXE_sync-agent"))),
            size(&plugin())
        ),
        "",
    );

    let markdown = table.markdown();
    println!("{markdown}");
    if let Some(out) = std::env::var_os("GITOPS_BENCH_OUT") {
        std::fs::write(out, markdown).unwrap();
    }
}

/// How many manifests the repo holds (files under namespaces/).
fn gs_object_count(repo: &std::path::Path) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            count(&p)
                        } else {
                            usize::from(p.extension().is_some_and(|x| x == "yaml"))
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    count(&repo.join("namespaces"))
}
