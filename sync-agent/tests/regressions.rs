//! End-to-end regressions of defects a review found (issue "One cluster core
//! for both programs, and an agent that never deletes or escapes by
//! mistake"), each through the real binary on the real test API server.

// Helpers outside `#[test]` fns panic on failure on purpose: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    thread::sleep,
    time::{Duration, Instant},
};

use support::*;

fn setup(cluster: &TestCluster, extra: &[&str]) -> (GitSync, Agent, String) {
    synced_agent(cluster, extra)
}

/// Defect 1: moving a file in Git changes the source annotation only. It is
/// an update, never drift, even with `--no-self-heal`.
#[test]
fn a_renamed_file_is_an_update_never_drift() {
    let cluster = cluster();
    let (gs, agent, _) = setup(&cluster, &["--no-self-heal", "--resync", "1s"]);
    let text = gs.read("namespaces/team-a/dr-reviews.yaml").unwrap();
    gs.remove("namespaces/team-a/dr-reviews.yaml").unwrap();
    gs.write("namespaces/team-a/rules/reviews.yaml", text)
        .unwrap();
    let rev = gs.commit_and_publish("move the DestinationRule").unwrap();
    wait_status(&agent, &cluster, "Synced", Some(&rev));
    agent.wait("the source annotation to follow the file", || {
        let dr = get(&cluster, "team-a", "destinationrules", "reviews")?;
        (dr["metadata"]["annotations"]["kubectl-gitops.io/source"]
            == "namespaces/team-a/rules/reviews.yaml")
            .then_some(())
    });
    // Several resyncs later: still in sync, nothing drifted.
    sleep(Duration::from_secs(3));
    let status = gos_status(&cluster, "team-a");
    assert_eq!(status["phase"], "Synced", "{status}");
    assert_eq!(status["drift"], serde_json::json!([]), "{status}");
    assert_eq!(agent.metric("gitops_drifted_objects"), Some(0.0));
}

/// Defect 4: started while suspended, or with `--dry-run`, the agent still
/// becomes ready (a Deployment with the brake on must become Available).
#[test]
fn an_agent_started_suspended_or_in_dry_run_is_ready() {
    let cluster = cluster();
    kubectl_apply(
        &cluster,
        "apiVersion: kubectl-gitops.io/v1alpha1\nkind: GitOpsSync\nmetadata:\n  name: sync-agent\nspec:\n  suspend: true\n",
        &["-n", "team-a"],
    );
    let gs = GitSync::new().unwrap();
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.commit_and_publish("reviews").unwrap();
    let suspended = Agent::gitsync(&cluster, &gs, "team-a", &[]);
    wait_status(&suspended, &cluster, "Suspended", None);
    suspended.wait("/readyz 200 while suspended", || {
        (suspended.http("/readyz")?.0 == 200).then_some(())
    });
    assert!(get(&cluster, "team-a", "destinationrules", "reviews").is_none());

    let dry = Agent::gitsync(&cluster, &gs, "team-b", &["--dry-run"]);
    dry.wait("/readyz 200 in --dry-run", || {
        (dry.http("/readyz")?.0 == 200).then_some(())
    });
    assert!(get(&cluster, "team-b", "destinationrules", "reviews").is_none());
}

/// Defect 9: a status that does not parse (here: a phase this version does
/// not know, as another version of the agent could write) has an unknown
/// inventory. The agent says so and touches nothing; it never prunes on an
/// empty inventory it made up.
#[test]
fn a_status_that_does_not_parse_stops_the_agent_before_any_prune() {
    let cluster = cluster();
    let (gs, mut agent, _) = setup(&cluster, &["--resync", "1s"]);
    agent.terminate();
    let before = gos_status(&cluster, "team-a");
    assert_eq!(before["inventory"].as_array().unwrap().len(), 2);

    // A later CRD allows more phases, and a later agent wrote one.
    kubectl(
        &cluster,
        &[
            "patch",
            "crd",
            "gitopssyncs.kubectl-gitops.io",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/phase/enum"}]"#,
        ],
    );
    kubectl(
        &cluster,
        &[
            "patch",
            "-n",
            "team-a",
            "gitopssync",
            "sync-agent",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Degraded"}}"#,
        ],
    );
    // The VirtualService leaves Git.
    gs.remove("namespaces/team-a/vs-reviews.yaml").unwrap();
    gs.commit_and_publish("drop the VirtualService").unwrap();

    let agent = Agent::gitsync(&cluster, &gs, "team-a", &["--resync", "1s"]);
    agent.wait("the refusal in the log", || {
        agent.log().contains("does not parse").then_some(())
    });
    agent.wait("the refusal in the metrics", || {
        (agent.metric("gitops_sync_total{result=\"status_unreadable\"}")? >= 2.0).then_some(())
    });
    assert!(
        get(&cluster, "team-a", "virtualservices", "reviews").is_some(),
        "pruned on an unreadable status"
    );
    let after = gos_status(&cluster, "team-a");
    assert_eq!(
        after["inventory"], before["inventory"],
        "the inventory was overwritten"
    );
    assert_eq!(after["phase"], "Degraded");
    assert_eq!(agent.http("/readyz").map(|r| r.0), Some(503));
}

/// Defect 5: a namespace folder that is itself a symlink out of the
/// checkout is refused with the folder named; nothing is applied.
#[test]
fn a_namespace_folder_linked_out_of_the_repo_is_refused() {
    let cluster = cluster();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("vs.yaml"), vs("reviews", 50, 50)).unwrap();
    let gs = GitSync::new().unwrap();
    gs.write("namespaces/team-b/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    std::fs::create_dir_all(gs.source().join("namespaces")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), gs.source().join("namespaces/team-a")).unwrap();
    let rev = gs.commit_and_publish("team-a is a link").unwrap();
    let agent = Agent::gitsync(&cluster, &gs, "team-a", &[]);
    let status = agent.wait("the refusal", || {
        let s = gos_status(&cluster, "team-a");
        (s["phase"] == "Failed" && s["observedRevision"] == rev.as_str()).then_some(s)
    });
    let message = status["message"].as_str().unwrap();
    assert!(
        message
            .contains("namespaces/team-a: the folder is a symlink leading out of the repository"),
        "{message}"
    );
    assert!(names(&cluster, "team-a", "virtualservices").is_empty());
}

/// Defect 6: a revision above `--max-objects` or `--max-bytes` is refused
/// whole, with the limit named, and the last good state stays.
#[test]
fn a_revision_above_the_limits_is_refused_whole() {
    let cluster = cluster();
    let (gs, agent, good) = setup(&cluster, &["--max-objects", "3", "--max-bytes", "4Ki"]);
    for name in ["ratings", "details"] {
        gs.write(format!("namespaces/team-a/dr-{name}.yaml"), dr(name))
            .unwrap();
    }
    let rev = gs.commit_and_publish("four objects").unwrap();
    let status = agent.wait("the refusal above --max-objects", || {
        let s = gos_status(&cluster, "team-a");
        (s["phase"] == "Failed" && s["observedRevision"] == rev.as_str()).then_some(s)
    });
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("namespaces/team-a: the namespace folder holds 4 objects, more than the limit of 3 (--max-objects)"),
        "{message}"
    );
    assert_eq!(status["revision"], good.as_str());
    assert!(get(&cluster, "team-a", "destinationrules", "ratings").is_none());

    // Back to three objects, but one file of 5 KiB: above --max-bytes.
    gs.remove("namespaces/team-a/dr-details.yaml").unwrap();
    gs.remove("namespaces/team-a/dr-ratings.yaml").unwrap();
    let padded = format!("{}# {}\n", dr("reviews"), "x".repeat(5 * 1024));
    gs.write("namespaces/team-a/dr-reviews.yaml", padded)
        .unwrap();
    let rev = gs.commit_and_publish("a large file").unwrap();
    let status = agent.wait("the refusal above --max-bytes", || {
        let s = gos_status(&cluster, "team-a");
        (s["phase"] == "Failed" && s["observedRevision"] == rev.as_str()).then_some(s)
    });
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("bytes, more than the limit of 4096 (--max-bytes)"),
        "{message}"
    );
    assert_eq!(names(&cluster, "team-a", "destinationrules"), ["reviews"]);
}

/// Defect 2: a prune refused by its UID precondition (someone deleted and
/// re-created the object between the plan and the delete) leaves the
/// object alone for good: it is no longer in the inventory, so no later
/// pass deletes the re-created object. A proxy slows the agent's requests
/// so the re-creation lands inside that window.
#[test]
fn a_prune_refused_as_re_created_leaves_the_object_alone_for_good() {
    let cluster = cluster();
    let (_runtime, proxy, kubeconfig) = proxied(&cluster);

    let gs = GitSync::new().unwrap();
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.write("namespaces/team-a/dr-ratings.yaml", dr("ratings"))
        .unwrap();
    let rev = gs.commit_and_publish("two").unwrap();
    let agent = Agent::gitsync_via(&kubeconfig, &gs, "team-a", &["--resync", "1s"], &[]);
    wait_status(&agent, &cluster, "Synced", Some(&rev));

    proxy.set_latency(Duration::from_secs(2));
    gs.remove("namespaces/team-a/dr-ratings.yaml").unwrap();
    let before = cluster.audit().unwrap().len();
    gs.commit_and_publish("ratings leaves Git").unwrap();
    // The agent has read ratings (a LIST of the DestinationRules, or a GET
    // when its watch tells what changed): its delete is on its way.
    cluster
        .wait_for_audit("the agent's read after the commit", |events| {
            events[before.min(events.len())..].iter().any(|e| {
                e.user_agent.starts_with("sync-agent")
                    && ((e.verb == "list"
                        && e.path().ends_with("/namespaces/team-a/destinationrules"))
                        || (e.verb == "get"
                            && e.path()
                                .ends_with("/namespaces/team-a/destinationrules/ratings")))
            })
        })
        .unwrap();
    kubectl(
        &cluster,
        &["delete", "-n", "team-a", "destinationrule", "ratings"],
    );
    kubectl_apply(
        &cluster,
        &dr("ratings"),
        &["-n", "team-a", "--server-side", "--field-manager=someone"],
    );
    agent.wait("the prune to be refused as re-created", || {
        agent
            .log()
            .contains("re-created by someone else")
            .then_some(())
    });
    proxy.set_latency(Duration::ZERO);

    // Several passes later the re-created object is still there.
    let passes = agent.passes().unwrap_or(0.0);
    agent.wait("three more passes", || {
        (agent.passes()? >= passes + 3.0).then_some(())
    });
    let ratings = get(&cluster, "team-a", "destinationrules", "ratings");
    assert!(ratings.is_some(), "the re-created object was pruned");
    let inventory = gos_status(&cluster, "team-a")["inventory"].clone();
    assert_eq!(
        inventory,
        serde_json::json!([{"group": "networking.istio.io", "kind": "DestinationRule", "name": "reviews"}])
    );
    drop(proxy);
}

/// Defect 10: when the drift watch or the control watch fails (here: their
/// CRDs are removed), the agent warns once, counts the errors in
/// `gitops_watch_errors_total`, and keeps running on the resync tick.
#[test]
fn failing_watches_warn_and_are_counted() {
    let cluster = cluster();
    let (_gs, agent, _) = setup(&cluster, &["--resync", "1s"]);
    for crd in [
        "virtualservices.networking.istio.io",
        "gitopssyncs.kubectl-gitops.io",
    ] {
        kubectl(&cluster, &["delete", "crd", crd]);
    }
    agent.wait("both watches to count errors", || {
        let drift =
            agent.metric("gitops_watch_errors_total{watch=\"drift\",kind=\"VirtualService\"}")?;
        let control =
            agent.metric("gitops_watch_errors_total{watch=\"control\",kind=\"GitOpsSync\"}")?;
        (drift >= 1.0 && control >= 1.0).then_some(())
    });
    let log = agent.log();
    assert!(
        log.contains("WARN")
            && log.contains(
                "API watch failed; until it recovers, changes are seen on the resync tick only"
            ),
        "{log}"
    );
    // Warned once per watch, not once per retry.
    assert_eq!(log.matches("API watch failed").count(), 2, "{log}");
}

/// Defect 7, first half: two agents in one namespace (two `--name`s, two
/// repos) each prune only what carries their own agent label; an object
/// applied before the label existed belongs to `sync-agent`, and neither
/// of them touches it.
#[test]
fn two_agents_in_one_namespace_never_prune_each_other() {
    let cluster = cluster();
    let traffic = GitSync::new().unwrap();
    traffic
        .write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 80, 20))
        .unwrap();
    let rev_t = traffic.commit_and_publish("traffic").unwrap();
    let security = GitSync::new().unwrap();
    security
        .write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    let rev_s = security.commit_and_publish("security").unwrap();
    // Applied by an agent from before the agent label.
    kubectl_apply(
        &cluster,
        &dr("legacy").replace(
            "  name: legacy\n",
            "  name: legacy\n  labels:\n    app.kubernetes.io/managed-by: kubectl-gitops\n    kubectl-gitops.io/owner: team-a\n",
        ),
        &["-n", "team-a", "--server-side", "--field-manager=kubectl-gitops"],
    );

    let a = Agent::gitsync(
        &cluster,
        &traffic,
        "team-a",
        &["--name", "traffic", "--resync", "1s"],
    );
    let b = Agent::gitsync(
        &cluster,
        &security,
        "team-a",
        &["--name", "security", "--resync", "1s"],
    );
    for (agent, name, rev) in [(&a, "traffic", &rev_t), (&b, "security", &rev_s)] {
        agent.wait(&format!("{name} to sync"), || {
            let s = get(&cluster, "team-a", "gitopssyncs", name)?["status"].clone();
            (s["phase"] == "Synced" && s["revision"] == rev.as_str()).then_some(())
        });
    }
    // Several passes of both later, everything is still there.
    let passes = |agent: &Agent| agent.passes().unwrap_or(0.0);
    let (pa, pb) = (passes(&a), passes(&b));
    a.wait("three more passes of each", || {
        (passes(&a) >= pa + 3.0 && passes(&b) >= pb + 3.0).then_some(())
    });
    assert_eq!(names(&cluster, "team-a", "virtualservices"), ["reviews"]);
    assert_eq!(
        names(&cluster, "team-a", "destinationrules"),
        ["legacy", "reviews"]
    );
    let vs = get(&cluster, "team-a", "virtualservices", "reviews").unwrap();
    assert_eq!(
        vs["metadata"]["labels"]["kubectl-gitops.io/agent"],
        "traffic"
    );
    let dr = get(&cluster, "team-a", "destinationrules", "reviews").unwrap();
    assert_eq!(
        dr["metadata"]["labels"]["kubectl-gitops.io/agent"],
        "security"
    );

    // traffic's file leaves Git: traffic prunes its own object only.
    traffic.remove("namespaces/team-a/vs-reviews.yaml").unwrap();
    traffic.write("namespaces/team-a/.allow-empty", "").unwrap();
    let rev = traffic.commit_and_publish("no routes").unwrap();
    a.wait("traffic to prune its VirtualService", || {
        let s = get(&cluster, "team-a", "gitopssyncs", "traffic")?["status"].clone();
        (s["revision"] == rev.as_str() && names(&cluster, "team-a", "virtualservices").is_empty())
            .then_some(())
    });
    assert_eq!(
        names(&cluster, "team-a", "destinationrules"),
        ["legacy", "reviews"]
    );
}

/// The lease lives on the GitOpsSync, which changes under it (the agent's
/// own status writes, a label added by hand): a renewal refused by the
/// resourceVersion is read again, and the only agent never stands by
/// because of a write of its own or of a person's. Through a proxy with
/// latency, so every renewal overlaps the writes below (before the fix, a
/// 409 made it stand by at once).
#[test]
fn writes_to_the_gitopssync_never_make_the_only_agent_stand_by() {
    let cluster = cluster();
    let (_runtime, proxy, kubeconfig) = proxied(&cluster);
    let gs = GitSync::new().unwrap();
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    let rev = gs.commit_and_publish("reviews").unwrap();
    let agent = Agent::gitsync_via(
        &kubeconfig,
        &gs,
        "team-a",
        &["--resync", "1s", "--lease-duration", "3s"],
        &[("POD_NAME", "only-replica")],
    );
    wait_status(&agent, &cluster, "Synced", Some(&rev));
    proxy.set_latency(Duration::from_millis(700));
    let until = Instant::now() + Duration::from_secs(12);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        kubectl(
            &cluster,
            &[
                "label",
                "--overwrite",
                "-n",
                "team-a",
                "gitopssync",
                "sync-agent",
                &format!("touched={n}"),
            ],
        );
        sleep(Duration::from_millis(150));
    }
    proxy.set_latency(Duration::ZERO);
    let log = agent.log();
    assert!(
        !log.contains("standing by"),
        "the only agent stood by after {n} writes:\n{log}"
    );
    let holder =
        get(&cluster, "team-a", "gitopssyncs", "sync-agent").unwrap()["metadata"]["annotations"]
            [sync_agent::lease::ANNOTATION_HOLDER]
            .clone();
    assert_eq!(holder, "only-replica");
    drop(proxy);
}

/// Defect 7, second half: two replicas of one agent (same name, same repo)
/// elect one writer through the GitOpsSync; the other stays ready and
/// writes nothing. Killed, the writer is replaced within its lease.
#[test]
fn two_replicas_of_one_agent_have_one_writer() {
    let cluster = cluster();
    let (gs, rev1) = reviews_volume();
    let root = gs.root();
    let args = [
        "--repo",
        root.to_str().unwrap(),
        "--link",
        gs.link_name(),
        "--resync",
        "1s",
        "--lease-duration",
        "2s",
    ];
    let kc = cluster.kubeconfig_path();
    let mut replicas = vec![
        (
            "replica-a",
            Agent::start_with_env(&kc, "team-a", &args, &[("POD_NAME", "replica-a")]),
        ),
        (
            "replica-b",
            Agent::start_with_env(&kc, "team-a", &args, &[("POD_NAME", "replica-b")]),
        ),
    ];
    wait_status(&replicas[0].1, &cluster, "Synced", Some(&rev1));
    let holder = |cluster: &TestCluster| {
        get(cluster, "team-a", "gitopssyncs", "sync-agent").unwrap()["metadata"]["annotations"]
            ["kubectl-gitops.io/holder"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let writer = holder(&cluster);
    assert!(
        writer == "replica-a" || writer == "replica-b",
        "holder {writer:?}"
    );
    let standby = if writer == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };
    for (name, agent) in &replicas {
        agent.wait(&format!("{name} to be ready"), || {
            (agent.http("/readyz")?.0 == 200).then_some(())
        });
    }

    let gs_rev2 = {
        gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 50, 50))
            .unwrap();
        gs.commit_and_publish("50/50").unwrap()
    };
    wait_status(&replicas[0].1, &cluster, "Synced", Some(&gs_rev2));
    // Every write of objects and status so far came from the writer.
    let events = cluster.audit().unwrap();
    let writes_by = |who: &str| {
        events
            .iter()
            .filter(|e| is_write(e) && e.user_agent.ends_with(who))
            .filter(|e| {
                !e.path().contains("/gitopssyncs/sync-agent") || e.path().ends_with("/status")
            })
            .count()
    };
    assert!(
        writes_by(&writer) >= 3,
        "the writer wrote {}",
        writes_by(&writer)
    );
    assert_eq!(writes_by(standby), 0, "the stand-by wrote");

    // The writer dies without a word: the other takes over and applies.
    let index = replicas.iter().position(|(n, _)| *n == writer).unwrap();
    replicas[index].1.kill();
    let (_, survivor) = &replicas[1 - index];
    survivor.wait("the stand-by to take the lease", || {
        (holder(&cluster) == standby).then_some(())
    });
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 10, 90))
        .unwrap();
    let rev3 = gs.commit_and_publish("10/90").unwrap();
    wait_status(survivor, &cluster, "Synced", Some(&rev3));
    let reviews = get(&cluster, "team-a", "virtualservices", "reviews").unwrap();
    assert_eq!(reviews["spec"]["http"][0]["route"][0]["weight"], 10);
}
