//! End-to-end: `--once`, `--dry-run`, plain-folder mode, JSON logs.

// Helpers outside `#[test]` fns panic on failure on purpose: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

fn repo_args(gs: &GitSync) -> Vec<String> {
    vec![
        "--repo".into(),
        gs.root().display().to_string(),
        "--link".into(),
        gs.link_name().into(),
    ]
}

fn args<'a>(base: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

/// `--once` exits 0 after a good sync and 1 on a broken revision (or when
/// there is no revision yet); `--dry-run` prints the plan and writes nothing.
#[test]
fn once_exits_0_or_1_and_dry_run_writes_nothing() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    let base = repo_args(&gs);

    // no revision published yet
    let out = run_agent(&cluster, "team-a", &args(&base, &["--once"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no revision"));

    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 80, 20))
        .unwrap();
    let rev1 = gs.commit_and_publish("good").unwrap();
    let out = run_agent(
        &cluster,
        "team-a",
        &args(&base, &["--once", "--log-format", "json"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // every log line is one JSON object with fields
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(stderr.contains("\"namespace\":\"team-a\""), "{stderr}");
    let status = gos_status(&cluster, "team-a");
    assert_eq!(status["phase"], "Synced");
    assert_eq!(status["revision"], rev1.as_str());

    // a dry run of a change: the plan on stdout, no request that writes
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 50, 50))
        .unwrap();
    gs.remove("namespaces/team-a/dr-reviews.yaml").unwrap();
    gs.write("namespaces/team-a/dr-ratings.yaml", dr("ratings"))
        .unwrap();
    let rev2 = gs.commit_and_publish("change").unwrap();
    let before = cluster.audit().unwrap().len();
    let out = run_agent(&cluster, "team-a", &args(&base, &["--once", "--dry-run"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("plan for namespace team-a at revision {rev2}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("create    DestinationRule.networking.istio.io/ratings (namespaces/team-a/dr-ratings.yaml): new in Git"),
        "{stdout}"
    );
    assert!(
        stdout.contains("update    VirtualService.networking.istio.io/reviews (namespaces/team-a/vs-reviews.yaml): changed in Git"),
        "{stdout}"
    );
    assert!(
        stdout.contains("prune     DestinationRule.networking.istio.io/reviews: no longer in Git"),
        "{stdout}"
    );
    let events = cluster
        .wait_for_audit("the dry run's reads", |events| {
            events[before.min(events.len())..]
                .iter()
                .any(|e| e.user_agent.starts_with("sync-agent/") && e.verb == "list")
        })
        .unwrap();
    let writes: Vec<_> = events[before..]
        .iter()
        .filter(|e| e.user_agent.starts_with("sync-agent/") && is_write(e))
        .cloned()
        .collect();
    assert_eq!(summarize(&writes), Vec::<String>::new(), "--dry-run wrote");
    assert_eq!(gos_status(&cluster, "team-a")["revision"], rev1.as_str());
    assert!(get(&cluster, "team-a", "destinationrules", "ratings").is_none());

    // --once on a broken revision: exit 1, Failed
    gs.write(
        "namespaces/team-a/bad.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
    )
    .unwrap();
    let rev3 = gs.commit_and_publish("bad").unwrap();
    let out = run_agent(&cluster, "team-a", &args(&base, &["--once"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = gos_status(&cluster, "team-a");
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["observedRevision"], rev3.as_str());
    assert_eq!(status["revision"], rev1.as_str());
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("namespaces/team-a/bad.yaml: document 1, line 2: Deployment"),
        "{status:#}"
    );
}

/// Without `--link`, `--repo` is a plain checkout: its HEAD commit is the
/// revision, `-dirty` when the namespace folder has local changes.
#[test]
fn plain_checkout_mode_uses_head_and_dirty() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 80, 20))
        .unwrap();
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    let head = gs.commit("plain").unwrap();
    let source = gs.source();
    let agent = Agent::start(&cluster, "team-a", &["--repo", source.to_str().unwrap()]);
    wait_status(&agent, &cluster, "Synced", Some(&head));

    // an edit in the work tree is picked up by the recursive watch
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 60, 40))
        .unwrap();
    let dirty = format!("{head}-dirty");
    wait_status(&agent, &cluster, "Synced", Some(&dirty));
    let reviews = get(&cluster, "team-a", "virtualservices", "reviews").unwrap();
    assert_eq!(reviews["spec"]["http"][0]["route"][0]["weight"], 60);

    // and committing it makes the revision clean again
    let head2 = gs.commit("60/40").unwrap();
    wait_status(&agent, &cluster, "Synced", Some(&head2));

    // reading the work tree (git status) does not wake the agent up again
    let settled = agent.passes().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let later = agent.passes().unwrap();
    assert!(
        later - settled <= 2.0,
        "the agent keeps waking itself: {settled} -> {later}"
    );
}

/// `--strict` also refuses a revision with an Error finding of `kubectl
/// gitops validate` (here IST0101: a route to a subset no DestinationRule
/// defines): nothing applied, `Failed` names the code, file and line. The same
/// revision applies without `--strict`.
#[test]
fn strict_refuses_a_revision_with_validate_errors() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    let base = repo_args(&gs);
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.write(
        "namespaces/team-a/vs-reviews.yaml",
        vs("reviews", 80, 20).replace("subset: v2", "subset: v3"),
    )
    .unwrap();
    let rev = gs
        .commit_and_publish("route to an undefined subset")
        .unwrap();

    let out = run_agent(&cluster, "team-a", &args(&base, &["--once", "--strict"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = gos_status(&cluster, "team-a");
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(status["observedRevision"], rev.as_str());
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("IST0101"), "{message}");
    assert!(
        message.contains("namespaces/team-a/vs-reviews.yaml"),
        "{message}"
    );
    assert!(get(&cluster, "team-a", "destinationrules", "reviews").is_none());
    assert!(get(&cluster, "team-a", "virtualservices", "reviews").is_none());

    let out = run_agent(&cluster, "team-a", &args(&base, &["--once"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(gos_status(&cluster, "team-a")["revision"], rev.as_str());
    assert!(get(&cluster, "team-a", "virtualservices", "reviews").is_some());
}
