//! End-to-end: the real `sync-agent` against a real API server, fed by a
//! git-sync v4 volume built from real commits.

// Helpers outside `#[test]` fns panic on failure on purpose: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Instant;

use support::*;

/// The first Bookinfo revision applies; one weight change writes exactly one
/// object; a resync with no change writes nothing.
#[test]
fn bookinfo_applies_then_one_weight_change_writes_one_object() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    let ns = "bookinfo";
    let mut agent = Agent::gitsync(&cluster, &gs, ns, &["--resync", "1s"]);

    // nothing published yet: not ready
    let (code, _) = agent.wait("the HTTP server", || agent.http("/readyz"));
    assert_eq!(code, 503);

    write_bookinfo(&gs, ns);
    let rev1 = gs.commit("bookinfo").unwrap();
    gs.prepare(&rev1).unwrap();
    let swapped = Instant::now();
    gs.swap(&rev1).unwrap();
    let status = wait_status(&agent, &cluster, "Synced", Some(&rev1));
    let latency = swapped.elapsed();
    eprintln!(
        "MEASURE bookinfo link swap -> Synced: {} ms",
        latency.as_millis()
    );

    assert_eq!(status["observedRevision"], rev1.as_str());
    assert!(status["syncedAt"].as_str().unwrap().ends_with('Z'));
    let inventory = status["inventory"].as_array().unwrap();
    assert_eq!(inventory.len(), BOOKINFO_OBJECTS, "{status:#}");
    let keys: Vec<String> = inventory
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["kind"].as_str().unwrap(),
                i["name"].as_str().unwrap()
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "inventory is sorted");
    assert!(
        keys.contains(&"VirtualService/reviews".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"Gateway/bookinfo-gateway".to_string()),
        "{keys:?}"
    );
    assert_eq!(status["drift"], serde_json::json!([]));
    assert_eq!(status["drifted"], 0);
    let ready = &status["conditions"][0];
    assert_eq!(ready["type"], "Ready");
    assert_eq!(ready["status"], "True");

    assert_eq!(
        names(&cluster, ns, "virtualservices"),
        [
            "bookinfo",
            "details",
            "ratings",
            "reviews",
            "rewrite-port-for-googleapis"
        ]
    );
    let reviews = get(&cluster, ns, "virtualservices", "reviews").unwrap();
    let labels = &reviews["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kubectl-gitops");
    assert_eq!(labels["kubectl-gitops.io/owner"], ns);
    let annotations = &reviews["metadata"]["annotations"];
    assert!(
        annotations["kubectl-gitops.io/hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        annotations["kubectl-gitops.io/source"],
        "namespaces/bookinfo/virtual-service-reviews.yaml"
    );
    let with_fields: serde_json::Value = serde_json::from_str(&kubectl(
        &cluster,
        &[
            "get",
            "-n",
            ns,
            "virtualservices",
            "reviews",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    ))
    .unwrap();
    let managers: Vec<&str> = with_fields["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["kubectl-gitops"]);

    // ready, and every metric of DESIGN.md
    assert_eq!(agent.http("/readyz").unwrap().0, 200);
    assert_eq!(agent.http("/healthz").unwrap().0, 200);
    let metrics = agent.metrics();
    for name in [
        "gitops_sync_total{result=\"success\"}",
        "gitops_sync_duration_seconds_bucket",
        "gitops_sync_duration_seconds_count",
        "gitops_objects{state=\"managed\"} 12",
        "gitops_drifted_objects 0",
        "gitops_last_sync_timestamp_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(
        metrics.contains(&format!("gitops_revision_info{{revision=\"{rev1}\"}} 1")),
        "{metrics}"
    );

    // a commit that changes one weight writes exactly one object
    let before = cluster.audit().unwrap().len();
    gs.copy_in(
        samples().join("virtual-service-reviews-90-10.yaml"),
        format!("namespaces/{ns}/virtual-service-reviews.yaml"),
    )
    .unwrap();
    let rev2 = gs.commit_and_publish("reviews 90/10").unwrap();
    wait_status(&agent, &cluster, "Synced", Some(&rev2));
    let events = cluster
        .wait_for_audit("the status write of the new revision", |events| {
            !agent_status_writes(&events[before.min(events.len())..], ns).is_empty()
        })
        .unwrap();
    let writes = agent_object_writes(&events[before..], ns);
    assert_eq!(
        summarize(&writes),
        [format!(
            "patch virtualservices/reviews (/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/reviews)"
        )]
    );
    let reviews = get(&cluster, ns, "virtualservices", "reviews").unwrap();
    assert_eq!(reviews["spec"]["http"][0]["route"][0]["weight"], 90);

    // resyncs with no change write nothing: not the objects, not the status.
    // The pass after the apply still reads what it wrote, once, to trust
    // it (a busy machine can put that pass after Synced): let it pass first.
    let settled = agent.passes().unwrap();
    agent.wait("the pass after the apply", || {
        (agent.passes()? >= settled + 1.0).then_some(())
    });
    let before = cluster.audit().unwrap().len();
    let syncs = agent.passes().unwrap();
    let applied = agent.metric("gitops_sync_total{result=\"success\"}");
    agent.wait("three more resyncs", || {
        (agent.passes()? >= syncs + 3.0).then_some(())
    });
    // counted as resyncs that found nothing to do, not as syncs
    assert_eq!(
        agent.metric("gitops_sync_total{result=\"success\"}"),
        applied
    );
    let events = audit_since(&cluster, before);
    assert_eq!(
        summarize(&agent_object_writes(&events, ns)),
        Vec::<String>::new()
    );
    assert_eq!(
        summarize(&agent_status_writes(&events, ns)),
        Vec::<String>::new()
    );
    // nor do they read the objects: the drift watches' index tells that
    // nothing changed (at most one full LIST of the 4 kinds in use, which
    // comes every 10 resync periods)
    let reads = |events: &[AuditEvent], verb: &str| {
        events
            .iter()
            .filter(|e| e.user_agent.starts_with("sync-agent/") && e.verb == verb)
            .filter(|e| e.path().contains(".istio.io/"))
            .count()
    };
    assert_eq!(reads(&events, "get"), 0, "{:#?}", summarize(&events));
    assert!(reads(&events, "list") <= 4, "{:#?}", summarize(&events));
    // ... and within 10 resync periods there is a full LIST after all
    agent.wait("a full LIST", || {
        (reads(&audit_since(&cluster, before), "list") >= 4).then_some(())
    });

    eprintln!("MEASURE idle RSS after sync: {} KiB", agent.rss_kib());
    assert!(agent.terminate().success(), "SIGTERM exits 0");
}

/// A file removed from Git is pruned (also by a restarted agent, from the
/// inventory in its status); objects created by someone else never are.
#[test]
fn removed_file_is_pruned_but_objects_of_others_never_are() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    let ns = "team-a";
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 80, 20))
        .unwrap();
    gs.write("namespaces/team-a/vs-ratings.yaml", vs("ratings", 100, 0))
        .unwrap();
    let rev1 = gs.commit_and_publish("three objects").unwrap();
    let mut agent = Agent::gitsync(&cluster, &gs, ns, &[]);
    wait_status(&agent, &cluster, "Synced", Some(&rev1));

    // someone else's objects in the namespace, made with the real kubectl
    kubectl_apply(
        &cluster,
        &format!("{}---\n{}", vs("hand-made", 50, 50), dr("hand-made")),
        &["-n", ns],
    );
    assert_eq!(
        names(&cluster, ns, "virtualservices"),
        ["hand-made", "ratings", "reviews"]
    );

    let before = cluster.audit().unwrap().len();
    gs.remove("namespaces/team-a/vs-ratings.yaml").unwrap();
    let rev2 = gs.commit_and_publish("drop ratings").unwrap();
    let status = wait_status(&agent, &cluster, "Synced", Some(&rev2));
    assert_eq!(
        names(&cluster, ns, "virtualservices"),
        ["hand-made", "reviews"]
    );
    assert_eq!(
        names(&cluster, ns, "destinationrules"),
        ["hand-made", "reviews"]
    );
    assert_eq!(
        status["inventory"].as_array().unwrap().len(),
        2,
        "{status:#}"
    );
    let writes = agent_object_writes(&audit_since(&cluster, before), ns);
    assert_eq!(
        summarize(&writes),
        [format!(
            "delete virtualservices/ratings (/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/ratings)"
        )]
    );

    // a restarted agent knows what it owns from its status: a file removed
    // while it was down is pruned, the hand-made objects stay
    assert!(agent.terminate().success());
    gs.remove("namespaces/team-a/vs-reviews.yaml").unwrap();
    let rev3 = gs.commit_and_publish("drop reviews VS").unwrap();
    let agent = Agent::gitsync(&cluster, &gs, ns, &[]);
    wait_status(&agent, &cluster, "Synced", Some(&rev3));
    assert_eq!(names(&cluster, ns, "virtualservices"), ["hand-made"]);
    assert_eq!(
        names(&cluster, ns, "destinationrules"),
        ["hand-made", "reviews"]
    );
}

/// A revision with one broken document changes nothing in the cluster and
/// is reported as Failed naming file and line; the next, fixed commit recovers.
#[test]
fn broken_document_changes_nothing_and_the_fix_recovers() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    let ns = "team-a";
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 80, 20))
        .unwrap();
    let rev1 = gs.commit_and_publish("good").unwrap();
    let agent = Agent::gitsync(&cluster, &gs, ns, &[]);
    wait_status(&agent, &cluster, "Synced", Some(&rev1));

    // a valid weight change and, in another file, a broken second document
    let before = cluster.audit().unwrap().len();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 50, 50))
        .unwrap();
    gs.write(
        "namespaces/team-a/more.yaml",
        format!("{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: [oops\n", dr("ratings")),
    )
    .unwrap();
    let rev2 = gs.commit_and_publish("broken").unwrap();
    let status = agent.wait("Failed at the broken revision", || {
        let s = gos_status(&cluster, ns);
        (s["phase"] == "Failed" && s["observedRevision"] == rev2.as_str()).then_some(s)
    });
    assert_eq!(status["revision"], rev1.as_str(), "still the last good one");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("namespaces/team-a/more.yaml: document 2, line 18: invalid YAML"),
        "{message}"
    );
    assert!(message.contains("nothing applied or pruned"), "{message}");
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][0]["reason"], "InvalidRevision");
    // nothing changed: not the weight, not the valid new object
    let reviews = get(&cluster, ns, "virtualservices", "reviews").unwrap();
    assert_eq!(reviews["spec"]["http"][0]["route"][0]["weight"], 80);
    assert_eq!(names(&cluster, ns, "destinationrules"), ["reviews"]);
    assert_eq!(
        summarize(&agent_object_writes(&audit_since(&cluster, before), ns)),
        Vec::<String>::new()
    );
    assert!(
        agent
            .metric("gitops_sync_total{result=\"invalid\"}")
            .unwrap()
            >= 1.0,
        "{}",
        agent.metrics()
    );
    assert!(
        agent
            .metrics()
            .contains(&format!("gitops_revision_info{{revision=\"{rev1}\"}} 1"))
    );

    // the fix in the next commit recovers
    gs.write(
        "namespaces/team-a/more.yaml",
        format!("{}---\n{}", dr("ratings"), dr("details")),
    )
    .unwrap();
    let rev3 = gs.commit_and_publish("fixed").unwrap();
    let status = wait_status(&agent, &cluster, "Synced", Some(&rev3));
    assert_eq!(status["conditions"][0]["status"], "True");
    let reviews = get(&cluster, ns, "virtualservices", "reviews").unwrap();
    assert_eq!(reviews["spec"]["http"][0]["route"][0]["weight"], 50);
    assert_eq!(
        names(&cluster, ns, "destinationrules"),
        ["details", "ratings", "reviews"]
    );
}

/// An object for another namespace is refused; two agents on one repo each
/// touch only their own namespace (the audit log, by path).
#[test]
fn other_namespace_is_refused_and_two_agents_keep_to_their_own() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    for ns in ["team-a", "team-b"] {
        gs.write(format!("namespaces/{ns}/dr-reviews.yaml"), dr("reviews"))
            .unwrap();
        gs.write(
            format!("namespaces/{ns}/vs-reviews.yaml"),
            vs("reviews", 80, 20),
        )
        .unwrap();
    }
    let rev1 = gs.commit_and_publish("two teams").unwrap();
    let a = Agent::gitsync(&cluster, &gs, "team-a", &["--resync", "2s"]);
    let b = Agent::gitsync(&cluster, &gs, "team-b", &["--resync", "2s"]);
    wait_status(&a, &cluster, "Synced", Some(&rev1));
    wait_status(&b, &cluster, "Synced", Some(&rev1));

    // team-a's folder tries to write into team-b
    let b_before = get(&cluster, "team-b", "virtualservices", "reviews").unwrap();
    gs.write(
        "namespaces/team-a/sneaky.yaml",
        vs("reviews", 0, 100).replace(
            "  name: reviews\n",
            "  name: reviews\n  namespace: team-b\n",
        ),
    )
    .unwrap();
    let rev2 = gs.commit_and_publish("sneaky").unwrap();
    let status = a.wait("team-a to refuse the revision", || {
        let s = gos_status(&cluster, "team-a");
        (s["phase"] == "Failed" && s["observedRevision"] == rev2.as_str()).then_some(s)
    });
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains(
            "namespaces/team-a/sneaky.yaml: document 1, line 5: namespace \"team-b\" is not \"team-a\""
        ),
        "{message}"
    );
    // team-b's agent sees the new commit, which changes nothing of team-b's
    wait_status(&b, &cluster, "Synced", Some(&rev2));
    let b_after = get(&cluster, "team-b", "virtualservices", "reviews").unwrap();
    assert_eq!(
        b_after["metadata"]["resourceVersion"],
        b_before["metadata"]["resourceVersion"]
    );

    // every request each agent made, by path, stays in its namespace
    let events = cluster.audit().unwrap();
    for (ns, other) in [("team-a", "team-b"), ("team-b", "team-a")] {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.user_agent.contains(&format!("({ns})")))
            .collect();
        assert!(mine.len() > 5, "{ns} made requests");
        for e in mine.iter().filter(|e| !is_discovery(e)) {
            assert!(
                e.path().contains(&format!("/namespaces/{ns}/")),
                "{ns}'s agent requested {} {}",
                e.verb,
                e.request_uri
            );
            assert!(!e.request_uri.contains(other));
        }
        assert!(
            mine.iter()
                .any(|e| is_write(e) && e.path().contains("/virtualservices/"))
        );
    }
}

/// Emptying the namespace folder is refused without `.allow-empty`, and
/// prunes everything with it.
#[test]
fn emptying_a_namespace_needs_allow_empty() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    let ns = "team-a";
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 80, 20))
        .unwrap();
    gs.write("namespaces/team-b/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    let rev1 = gs.commit_and_publish("one team").unwrap();
    let agent = Agent::gitsync(&cluster, &gs, ns, &[]);
    wait_status(&agent, &cluster, "Synced", Some(&rev1));

    // every file removed: in Git the folder is gone
    let before = cluster.audit().unwrap().len();
    gs.remove("namespaces/team-a").unwrap();
    let rev2 = gs.commit_and_publish("empty team-a").unwrap();
    let status = agent.wait("the refusal", || {
        let s = gos_status(&cluster, ns);
        (s["phase"] == "Failed" && s["observedRevision"] == rev2.as_str()).then_some(s)
    });
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("refusing to prune all 2 objects"),
        "{message}"
    );
    assert!(message.contains(".allow-empty"), "{message}");
    assert_eq!(status["conditions"][0]["reason"], "PruneRefused");
    assert_eq!(status["revision"], rev1.as_str());
    assert_eq!(status["inventory"].as_array().unwrap().len(), 2);
    assert_eq!(names(&cluster, ns, "virtualservices"), ["reviews"]);
    assert_eq!(
        summarize(&agent_object_writes(&audit_since(&cluster, before), ns)),
        Vec::<String>::new()
    );

    // with the marker, everything goes
    gs.write("namespaces/team-a/.allow-empty", "").unwrap();
    let rev3 = gs.commit_and_publish("allow empty").unwrap();
    let status = wait_status(&agent, &cluster, "Synced", Some(&rev3));
    assert_eq!(status["inventory"], serde_json::json!([]));
    // pruned, and said so: not "healed"
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("2 pruned") && !message.contains("healed"),
        "{message}"
    );
    assert_eq!(names(&cluster, ns, "virtualservices"), Vec::<String>::new());
    assert_eq!(
        names(&cluster, ns, "destinationrules"),
        Vec::<String>::new()
    );
    let deletes: Vec<_> = agent_object_writes(&audit_since(&cluster, before), ns)
        .into_iter()
        .filter(|e| e.verb == "delete")
        .collect();
    // VirtualService before DestinationRule (make-before-break, reversed)
    assert_eq!(
        summarize(&deletes),
        [
            format!(
                "delete virtualservices/reviews (/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/reviews)"
            ),
            format!(
                "delete destinationrules/reviews (/apis/networking.istio.io/v1/namespaces/{ns}/destinationrules/reviews)"
            ),
        ]
    );
}

/// A read of the API server's discovery of the Istio groups (which
/// versions are served): the one request an agent makes outside its
/// namespace, and it names no object.
fn is_discovery(e: &AuditEvent) -> bool {
    let istio = [
        "networking.istio.io",
        "security.istio.io",
        "telemetry.istio.io",
        "extensions.istio.io",
    ];
    let segments: Vec<&str> = e.path().trim_start_matches('/').split('/').collect();
    e.verb == "get"
        && e.object_ref.is_none()
        && match segments.as_slice() {
            ["api"] | ["apis"] => true,
            ["apis", group] | ["apis", group, _] => istio.contains(group),
            // the kinds' schemas, for drift: the index, then a group version
            ["openapi", "v3"] => true,
            ["openapi", "v3", "apis", group, _] => istio.contains(group),
            _ => false,
        }
}

/// The agent runs as a user that owns nothing of the volume, with every
/// folder and file of it read-only (a `readOnly: true` mount, as the shipped
/// manifests give it), and syncs two revisions without changing a byte of it.
#[test]
fn the_agent_runs_as_non_root_on_a_read_only_checkout() {
    use std::os::unix::process::CommandExt as _;

    let cluster = cluster();
    let (gs, rev1) = reviews_volume();
    // The volume's parent is the test's private temporary folder.
    let parent = gs.root().parent().unwrap().to_path_buf();
    fs_perm(&parent, 0o755);
    read_only(&gs.root());
    let before = snapshot(&gs.root());

    // Its own copy of the kubeconfig, readable by the agent's user.
    let home = tempfile::tempdir().unwrap();
    fs_perm(home.path(), 0o755);
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::copy(cluster.kubeconfig_path(), &kubeconfig).unwrap();
    fs_perm(&kubeconfig, 0o444);

    let root = gs.root();
    let args = [
        "--repo",
        root.to_str().unwrap(),
        "--link",
        gs.link_name(),
        "--resync",
        "1s",
    ];
    let mut cmd = command_with(&kubeconfig, "team-a", &args);
    cmd.env("HOME", home.path());
    if effective_uid("self") == 0 {
        // nobody's ids on Debian; owns nothing here
        cmd.uid(65533).gid(65533);
    }
    let agent = Agent::spawn(cmd, "team-a");
    wait_status(&agent, &cluster, "Synced", Some(&rev1));
    assert_ne!(
        effective_uid(&agent.pid().to_string()),
        0,
        "the agent runs as root"
    );
    assert_eq!(snapshot(&gs.root()), before, "the agent changed the volume");

    // git-sync (root here) publishes the next revision, read-only before
    // the link points at it.
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 50, 50))
        .unwrap();
    let rev2 = gs.commit("reviews 50/50").unwrap();
    set_modes(&gs.root(), 0o755, 0o644); // git-sync as any user
    gs.prepare(&rev2).unwrap();
    read_only(&gs.root());
    let old = gs.swap(&rev2).unwrap().unwrap();
    gs.cleanup(&old).unwrap();
    let before = snapshot(&gs.root());
    let status = wait_status(&agent, &cluster, "Synced", Some(&rev2));
    assert_eq!(status["inventory"].as_array().unwrap().len(), 2);
    let live = get(&cluster, "team-a", "virtualservices", "reviews").unwrap();
    assert_eq!(live["spec"]["http"][0]["route"][0]["weight"], 50);
    assert_eq!(snapshot(&gs.root()), before, "the agent changed the volume");
    assert!(
        !agent.log().contains("Permission denied"),
        "{}",
        agent.log()
    );
    set_modes(&gs.root(), 0o755, 0o644); // so the test can remove it
}

fn fs_perm(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Folders 0555, files 0444.
fn read_only(dir: &std::path::Path) {
    set_modes(dir, 0o555, 0o444);
}

/// `dir` and the folders in it to `dirs`, its files to `files`; symlinks
/// are left alone (their mode means nothing). A folder is opened for
/// writing before its entries are changed, and closed after.
fn set_modes(dir: &std::path::Path, dirs: u32, files: u32) {
    fs_perm(dir, dirs | 0o700);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            set_modes(&entry.path(), dirs, files);
        } else if kind.is_file() {
            fs_perm(&entry.path(), files);
        }
    }
    fs_perm(dir, dirs);
}

/// Every path of `dir` with its size, modification time, mode and, for a
/// symlink, its target.
fn snapshot(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = std::fs::symlink_metadata(&d).unwrap();
        let target = match meta.is_symlink() {
            true => format!(" -> {}", std::fs::read_link(&d).unwrap().display()),
            false => String::new(),
        };
        out.push(format!(
            "{} {} {}.{} {:o}{target}",
            d.display(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.mode()
        ));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&d).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// The effective user id of a process (`self` or a pid), from /proc.
fn effective_uid(pid: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}
