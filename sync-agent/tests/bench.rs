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
    thread::sleep,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

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
