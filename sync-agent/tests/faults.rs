//! End-to-end: storage outages, bursts of revisions, worktrees deleted
//! under the agent's feet.

// Helpers outside `#[test]` fns panic on failure on purpose: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Instant;

use support::*;

/// etcd stops during a sync: the agent retries, does not crash, does not
/// mark the revision synced, and converges once etcd is back.
#[test]
fn etcd_outage_during_a_sync_is_retried_until_it_converges() {
    let mut cluster = cluster();
    let gs = GitSync::new().unwrap();
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 80, 20))
        .unwrap();
    let rev1 = gs.commit_and_publish("80/20").unwrap();
    let mut agent = Agent::gitsync(&cluster, &gs, "team-a", &["--resync", "5s"]);
    wait_status(&agent, &cluster, "Synced", Some(&rev1));

    cluster.stop_etcd().unwrap();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 50, 50))
        .unwrap();
    gs.write("namespaces/team-a/dr-ratings.yaml", dr("ratings"))
        .unwrap();
    let rev2 = gs.commit_and_publish("50/50 and ratings").unwrap();

    // the sync of rev2 fails (the server answers 5xx or not at all) and is retried
    agent.wait("a failed sync while etcd is down", || {
        let failed = agent.metric("gitops_sync_total{result=\"error\"}")?
            + agent.metric("gitops_sync_total{result=\"apply_failed\"}")?;
        (failed >= 2.0).then_some(())
    });
    assert!(agent.is_running(), "the agent survives the outage");
    let metrics = agent.metrics();
    assert!(
        metrics.contains(&format!("gitops_revision_info{{revision=\"{rev1}\"}} 1")),
        "rev2 is not marked synced:\n{metrics}"
    );
    assert!(!metrics.contains(&rev2), "{metrics}");
    assert!(agent.log().contains("sync failed"));

    cluster.start_etcd().unwrap();
    let status = wait_status(&agent, &cluster, "Synced", Some(&rev2));
    assert_eq!(status["inventory"].as_array().unwrap().len(), 3);
    let reviews = get(&cluster, "team-a", "virtualservices", "reviews").unwrap();
    assert_eq!(reviews["spec"]["http"][0]["route"][0]["weight"], 50);
    assert!(get(&cluster, "team-a", "destinationrules", "ratings").is_some());
    assert!(agent.is_running());
    assert!(agent.terminate().success());
}

/// A burst of 20 revisions published within a second ends on the last one.
#[test]
fn a_burst_of_20_revisions_ends_on_the_last() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 100, 0))
        .unwrap();
    let rev0 = gs.commit_and_publish("start").unwrap();
    let agent = Agent::gitsync(&cluster, &gs, "team-a", &[]);
    wait_status(&agent, &cluster, "Synced", Some(&rev0));

    // 20 commits checked out ahead (git-sync's fetch + worktree add), so
    // that publishing them (swap the link, delete the old worktree) is fast
    let mut revs = Vec::new();
    for i in 1..=20 {
        gs.write(
            "namespaces/team-a/vs-reviews.yaml",
            vs("reviews", 100 - i, i),
        )
        .unwrap();
        let rev = gs.commit(&format!("step {i}")).unwrap();
        gs.prepare(&rev).unwrap();
        revs.push(rev);
    }
    let before = cluster.audit().unwrap().len();
    let started = Instant::now();
    for rev in &revs {
        if let Some(old) = gs.swap(rev).unwrap() {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
    let burst = started.elapsed();
    let last = revs.last().unwrap();
    let status = wait_status(&agent, &cluster, "Synced", Some(last));
    assert_eq!(status["observedRevision"], last.as_str());
    let reviews = get(&cluster, "team-a", "virtualservices", "reviews").unwrap();
    assert_eq!(reviews["spec"]["http"][0]["route"][1]["weight"], 20);
    let patches = agent_object_writes(&audit_since(&cluster, before), "team-a").len();
    eprintln!(
        "MEASURE burst: 20 revisions published in {} ms, {patches} object write(s) by the agent",
        burst.as_millis()
    );
    assert!(patches >= 1);
    assert_eq!(
        agent.metric("gitops_sync_total{result=\"invalid\"}"),
        Some(0.0)
    );
}

/// git-sync deletes the old worktree right after each swap, while the agent
/// may be reading it: revisions alternate quickly between two sets of 12
/// objects with the same names, so a partial read would show up as a prune
/// (a delete) or a Failed revision. Neither may happen. (The deterministic
/// version of this race, with a hook between the reads, is the unit test
/// `load::tests::old_worktree_deleted_mid_read_gives_no_partial_revision`.)
#[test]
fn worktrees_deleted_while_read_never_cause_a_partial_apply() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    let write_set = |weight: u32| {
        for i in 0..12 {
            gs.write(
                format!("namespaces/team-a/vs-{i:02}.yaml"),
                vs(&format!("svc-{i:02}"), weight, 100 - weight),
            )
            .unwrap();
        }
    };
    write_set(10);
    let a = gs.commit("set a").unwrap();
    write_set(90);
    let b = gs.commit("set b").unwrap();
    gs.publish_sha(&a).unwrap();
    let agent = Agent::gitsync(&cluster, &gs, "team-a", &[]);
    wait_status(&agent, &cluster, "Synced", Some(&a));

    let before = cluster.audit().unwrap().len();
    for round in 0..15 {
        let rev = if round % 2 == 0 { &b } else { &a };
        gs.publish_sha(rev).unwrap(); // worktree add, swap, delete the old one
    }
    // rounds 0, 2, ..., 14 publish b: it is the last
    wait_status(&agent, &cluster, "Synced", Some(&b));
    let events = audit_since(&cluster, before);
    let deletes: Vec<_> = agent_object_writes(&events, "team-a")
        .into_iter()
        .filter(|e| e.verb == "delete")
        .collect();
    assert_eq!(
        summarize(&deletes),
        Vec::<String>::new(),
        "a partial read pruned objects"
    );
    assert_eq!(
        agent.metric("gitops_sync_total{result=\"invalid\"}"),
        Some(0.0)
    );
    assert_eq!(
        agent.metric("gitops_sync_total{result=\"refused\"}"),
        Some(0.0)
    );
    assert_eq!(names(&cluster, "team-a", "virtualservices").len(), 12);
    for i in 0..12 {
        let v = get(
            &cluster,
            "team-a",
            "virtualservices",
            &format!("svc-{i:02}"),
        )
        .unwrap();
        assert_eq!(v["spec"]["http"][0]["route"][0]["weight"], 90);
    }
}

/// SIGTERM in the middle of an apply (the API server made slow by a proxy
/// in between): the agent finishes the apply, reports it, and exits 0.
#[test]
fn sigterm_during_an_apply_finishes_it_and_exits_0() {
    let cluster = cluster();
    let (_runtime, proxy, kubeconfig) = proxied(&cluster);

    let gs = GitSync::new().unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("svc-{i}")).collect();
    for name in &names {
        gs.write(format!("namespaces/team-a/{name}.yaml"), vs(name, 100, 0))
            .unwrap();
    }
    let rev1 = gs.commit_and_publish("six").unwrap();
    let root = gs.root();
    let mut agent = Agent::start_with(
        &kubeconfig,
        "team-a",
        &[
            "--repo",
            root.to_str().unwrap(),
            "--link",
            gs.link_name(),
            "--concurrency",
            "1",
        ],
    );
    wait_status(&agent, &cluster, "Synced", Some(&rev1));

    proxy.set_latency(std::time::Duration::from_millis(300));
    for name in &names {
        gs.write(format!("namespaces/team-a/{name}.yaml"), vs(name, 50, 50))
            .unwrap();
    }
    let before = cluster.audit().unwrap().len();
    let rev2 = gs.commit_and_publish("six updates").unwrap();
    cluster
        .wait_for_audit("the first update of the apply", |events| {
            !agent_object_writes(&events[before.min(events.len())..], "team-a").is_empty()
        })
        .unwrap();
    let at_signal = agent_object_writes(&audit_since(&cluster, before), "team-a").len();
    let status = agent.terminate();
    assert!(status.success(), "{status:?}; log:\n{}", agent.log());
    eprintln!("MEASURE SIGTERM arrived after {at_signal} of 6 updates");
    for name in &names {
        let v = get(&cluster, "team-a", "virtualservices", name).unwrap();
        assert_eq!(v["spec"]["http"][0]["route"][0]["weight"], 50, "{name}");
    }
    let status = gos_status(&cluster, "team-a");
    assert_eq!(status["revision"], rev2.as_str(), "{status:#}");
    assert_eq!(status["phase"], "Synced");
    drop(proxy);
}

/// SIGKILL in the middle of an apply: no chance to finish or to write the
/// status. The status never claims the half-applied revision; an agent
/// started again converges on it, prunes nothing Git holds, and its status
/// tells the truth.
#[test]
fn sigkill_during_an_apply_then_a_restart_converges_and_the_status_is_true() {
    let cluster = cluster();
    let (_runtime, proxy, kubeconfig) = proxied(&cluster);
    let gs = GitSync::new().unwrap();
    gs.write("namespaces/team-a/dr-seed.yaml", dr("seed"))
        .unwrap();
    let rev1 = gs.commit_and_publish("seed").unwrap();
    let args = ["--concurrency", "2"];
    let mut agent = Agent::gitsync_via(&kubeconfig, &gs, "team-a", &args, &[]);
    wait_status(&agent, &cluster, "Synced", Some(&rev1));

    let n = 40;
    for i in 0..n {
        let name = format!("svc-{i}");
        gs.write(format!("namespaces/team-a/{name}.yaml"), vs(&name, 90, 10))
            .unwrap();
    }
    proxy.set_latency(std::time::Duration::from_millis(100));
    let before = cluster.audit().unwrap().len();
    let rev2 = gs.commit_and_publish("forty").unwrap();
    cluster
        .wait_for_audit("a few creates of the apply", |events| {
            agent_object_writes(&events[before.min(events.len())..], "team-a").len() >= 4
        })
        .unwrap();
    agent.kill();
    let at_kill = agent_object_writes(&audit_since(&cluster, before), "team-a").len();
    proxy.set_latency(std::time::Duration::ZERO);
    let status = gos_status(&cluster, "team-a");
    assert_ne!(
        status["revision"],
        rev2.as_str(),
        "claims what it did not finish: {status:#}"
    );
    let live = names(&cluster, "team-a", "virtualservices").len();
    assert!(
        live < n,
        "the apply was over before the kill ({live} of {n})"
    );
    eprintln!("MEASURE SIGKILL after {at_kill} writes, {live} of {n} objects created");

    let again = Agent::gitsync_via(&kubeconfig, &gs, "team-a", &args, &[]);
    let status = wait_status(&again, &cluster, "Synced", Some(&rev2));
    assert_eq!(
        status["inventory"].as_array().unwrap().len(),
        n + 1,
        "{status:#}"
    );
    assert_eq!(names(&cluster, "team-a", "virtualservices").len(), n);
    assert!(get(&cluster, "team-a", "destinationrules", "seed").is_some());
    let deletes: Vec<_> = agent_object_writes(&audit_since(&cluster, before), "team-a")
        .into_iter()
        .filter(|e| e.verb == "delete")
        .collect();
    assert!(deletes.is_empty(), "{:?}", summarize(&deletes));
    drop(proxy);
}
