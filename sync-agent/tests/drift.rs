//! End-to-end: drift made by someone else with the real kubectl, healed or
//! reported; `spec.suspend`.

// Helpers outside `#[test]` fns panic on failure on purpose: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

fn setup(cluster: &TestCluster, extra: &[&str]) -> (GitSync, Agent, String) {
    synced_agent(cluster, extra)
}

/// `kubectl edit`-style: another field manager takes the weights over.
fn edit_weights(cluster: &TestCluster, v1: u32, v2: u32) {
    kubectl_apply(
        cluster,
        &vs("reviews", v1, v2),
        &[
            "-n",
            "team-a",
            "--server-side",
            "--field-manager=someone",
            "--force-conflicts",
        ],
    );
}

fn weight(cluster: &TestCluster) -> serde_json::Value {
    get(cluster, "team-a", "virtualservices", "reviews").unwrap()["spec"]["http"][0]["route"][0]
        ["weight"]
        .clone()
}

/// An edit by another field manager is detected through the watch (the
/// resync period is an hour) and healed; so is a deleted object.
#[test]
fn drift_by_another_field_manager_is_detected_and_healed() {
    let cluster = cluster();
    let (_gs, agent, _rev) = setup(&cluster, &["--resync", "1h"]);

    let before = cluster.audit().unwrap().len();
    edit_weights(&cluster, 10, 90);
    agent.wait("the weight to be healed", || {
        (weight(&cluster) == 80).then_some(())
    });
    let status = wait_status(&agent, &cluster, "Synced", None);
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("healed 1 drifted object(s)"), "{message}");
    assert_eq!(status["drift"], serde_json::json!([]));
    let events = audit_since(&cluster, before);
    let writes = agent_object_writes(&events, "team-a");
    // Two writes: what `someone` owns is taken over, then Git's object applied.
    assert_eq!(
        summarize(&writes),
        [
            "patch virtualservices/reviews (/apis/networking.istio.io/v1/namespaces/team-a/virtualservices/reviews)",
            "patch virtualservices/reviews (/apis/networking.istio.io/v1/namespaces/team-a/virtualservices/reviews)"
        ]
    );
    // and the agent is the only owner of spec again
    let live: serde_json::Value = serde_json::from_str(&kubectl(
        &cluster,
        &[
            "get",
            "-n",
            "team-a",
            "virtualservice",
            "reviews",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    ))
    .unwrap();
    let owners: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fieldsV1"].get("f:spec").is_some())
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["kubectl-gitops"]);
    // The watch told which object changed: it alone was read, no LIST.
    let reads: Vec<String> = events
        .iter()
        .filter(|e| e.user_agent.starts_with("sync-agent/"))
        .filter(|e| matches!(e.verb.as_str(), "get" | "list") && e.path().contains(".istio.io/"))
        .map(|e| format!("{} {}", e.verb, e.path()))
        .collect();
    assert!(
        !reads.is_empty()
            && reads.iter().all(|r| r
                == "get /apis/networking.istio.io/v1/namespaces/team-a/virtualservices/reviews"),
        "{reads:#?}"
    );
    assert_eq!(agent.metric("gitops_drifted_objects"), Some(0.0));

    // deleted by hand: re-created
    kubectl(
        &cluster,
        &["delete", "-n", "team-a", "destinationrule", "reviews"],
    );
    agent.wait("the DestinationRule to come back", || {
        get(&cluster, "team-a", "destinationrules", "reviews")
    });
}

/// With `--no-self-heal` the same edit is reported in status and metrics and
/// left alone.
#[test]
fn drift_is_only_reported_with_no_self_heal() {
    let cluster = cluster();
    let (_gs, agent, rev) = setup(&cluster, &["--resync", "1h", "--no-self-heal"]);

    let before = cluster.audit().unwrap().len();
    edit_weights(&cluster, 10, 90);
    let status = wait_status(&agent, &cluster, "Drifted", Some(&rev));
    assert_eq!(
        status["drift"],
        serde_json::json!([{
            "group": "networking.istio.io",
            "kind": "VirtualService",
            "name": "reviews",
            "reason": "changed by someone: spec.http[0].route[0].weight"
        }])
    );
    assert_eq!(status["drifted"], 1);
    assert_eq!(status["conditions"][0]["reason"], "Drifted");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("self-heal is off")
    );
    agent.wait("the drift metric", || {
        (agent.metric("gitops_drifted_objects")? == 1.0).then_some(())
    });
    assert_eq!(agent.metric("gitops_phase{phase=\"Drifted\"}"), Some(1.0));
    assert_eq!(agent.metric("gitops_phase{phase=\"Synced\"}"), Some(0.0));
    // left alone, also by later resyncs triggered through the watch
    let version = |c: &TestCluster| {
        get(c, "team-a", "virtualservices", "reviews").unwrap()["metadata"]["resourceVersion"]
            .clone()
    };
    edit_weights(&cluster, 20, 80);
    let edited = version(&cluster);
    // time for the watch event and a pass it wakes; nothing may be written
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(weight(&cluster), 20);
    assert_eq!(gos_status(&cluster, "team-a")["phase"], "Drifted");
    assert_eq!(version(&cluster), edited, "not written");
    assert_eq!(
        summarize(&agent_object_writes(
            &audit_since(&cluster, before),
            "team-a"
        )),
        Vec::<String>::new()
    );

    // back to Git's values: still drift while `someone` owns the routes
    // (DESIGN.md, "Drift": another manager's field is drift whatever its value)
    edit_weights(&cluster, 80, 20);
    let status = agent.wait("the drift to name the fields someone owns", || {
        let s = gos_status(&cluster, "team-a");
        (s["drift"][0]["reason"] == "changed by someone: spec.hosts").then_some(s)
    });
    assert_eq!(status["phase"], "Drifted");
    assert_eq!(status["revision"], rev.as_str());
}

/// `spec.suspend: true` stops applying (a new commit waits), drift is still
/// reported; resuming applies.
#[test]
fn suspend_pauses_applying_but_reports_drift() {
    let cluster = cluster();
    let (gs, agent, rev1) = setup(&cluster, &["--resync", "1h"]);
    kubectl(
        &cluster,
        &[
            "patch",
            "-n",
            "team-a",
            "gitopssync",
            "sync-agent",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    );
    wait_status(&agent, &cluster, "Suspended", Some(&rev1));

    // drift is reported, not healed
    let before = cluster.audit().unwrap().len();
    edit_weights(&cluster, 10, 90);
    let status = agent.wait("drift reported while suspended", || {
        let s = gos_status(&cluster, "team-a");
        (s["drifted"] == 1).then_some(s)
    });
    assert_eq!(status["phase"], "Suspended");
    assert_eq!(status["conditions"][0]["reason"], "Suspended");

    // a new commit is observed, not applied
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 50, 50))
        .unwrap();
    let rev2 = gs.commit_and_publish("50/50").unwrap();
    let status = agent.wait("the new revision to be observed", || {
        let s = gos_status(&cluster, "team-a");
        (s["phase"] == "Suspended" && s["observedRevision"] == rev2.as_str()).then_some(s)
    });
    assert_eq!(status["revision"], rev1.as_str());
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("1 change(s) not applied")
    );
    assert_eq!(weight(&cluster), 10);
    assert_eq!(
        summarize(&agent_object_writes(
            &audit_since(&cluster, before),
            "team-a"
        )),
        Vec::<String>::new()
    );

    // resume: the waiting revision is applied at once
    kubectl(
        &cluster,
        &[
            "patch",
            "-n",
            "team-a",
            "gitopssync",
            "sync-agent",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":false}}"#,
        ],
    );
    wait_status(&agent, &cluster, "Synced", Some(&rev2));
    assert_eq!(weight(&cluster), 50);
}
