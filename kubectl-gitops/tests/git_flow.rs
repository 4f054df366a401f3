//! The everyday flow in a temporary repo: init, stage the Bookinfo samples,
//! commit with trailers, log, revert.

use crate::util::{Dir, sample};

#[test]
fn init_creates_and_commits_the_scaffolding_once() {
    let d = Dir::new();
    let out = d.kg().arg("init").ok();
    assert!(out.contains("base folder namespaces/"), "{out}");
    assert_eq!(d.read(".gitops/config.yaml"), "path: namespaces\n");
    assert!(d.path("namespaces/.gitkeep").is_file());
    assert_eq!(d.git(&["rev-list", "--count", "HEAD"]).trim(), "1");
    assert_eq!(
        d.git(&["show", "--name-only", "--format=", "HEAD"]),
        ".gitops/config.yaml\nnamespaces/.gitkeep\n"
    );
    d.assert_clean();
    // Again: nothing changes.
    let out = d.kg().arg("init").ok();
    assert!(out.contains("nothing to commit"), "{out}");
    assert_eq!(d.git(&["rev-list", "--count", "HEAD"]).trim(), "1");

    // Another base folder, in a repo created for it.
    let other = d.tmp("envs-repo");
    d.kg_in(&d.tmp(""))
        .args(["init", "--repo"])
        .arg(&other)
        .args(["--path", "envs/prod/namespaces"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(other.join(".gitops/config.yaml")).unwrap(),
        "path: envs/prod/namespaces\n"
    );
    assert!(other.join("envs/prod/namespaces/.gitkeep").is_file());
}

#[test]
fn bookinfo_stage_commit_log_and_revert() {
    let d = Dir::new();
    d.init();

    // Stage a consistent set of samples: the DestinationRules, every route on
    // v1, and the ingress gateway with its own VirtualService.
    let out = d
        .kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-all.yaml"))
        .arg(sample("virtual-service-all-v1.yaml"))
        .arg(sample("bookinfo-gateway.yaml"))
        .ok();
    assert!(
        out.contains(
            "VirtualService/reviews -> namespaces/team-a/virtualservice-reviews.yaml (created)"
        ),
        "{out}"
    );
    let staged = d.git(&["diff", "--cached", "--name-only"]);
    assert_eq!(
        staged,
        "namespaces/team-a/destinationrule-details.yaml\n\
         namespaces/team-a/destinationrule-productpage.yaml\n\
         namespaces/team-a/destinationrule-ratings.yaml\n\
         namespaces/team-a/destinationrule-reviews.yaml\n\
         namespaces/team-a/gateway-bookinfo-gateway.yaml\n\
         namespaces/team-a/virtualservice-bookinfo.yaml\n\
         namespaces/team-a/virtualservice-details.yaml\n\
         namespaces/team-a/virtualservice-productpage.yaml\n\
         namespaces/team-a/virtualservice-ratings.yaml\n\
         namespaces/team-a/virtualservice-reviews.yaml\n"
    );
    // Normalized, in the usual key order, with the namespace set.
    assert_eq!(
        d.read("namespaces/team-a/virtualservice-reviews.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: team-a\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n"
    );

    let out = d
        .kg()
        .args([
            "-n",
            "team-a",
            "commit",
            "-m",
            "Bookinfo: all traffic to v1",
        ])
        .ok();
    assert!(out.contains("Gitops-Namespace: team-a"), "{out}");
    d.assert_clean();
    assert_eq!(d.trailers("HEAD", "Gitops-Namespace"), ["team-a"]);
    let objects = d.trailers("HEAD", "Gitops-Object");
    assert_eq!(objects.len(), 10, "{objects:?}");
    assert!(objects.contains(&"VirtualService/reviews".to_string()));
    assert!(objects.contains(&"Gateway/bookinfo-gateway".to_string()));
    let v1 = d.git(&["rev-parse", "HEAD"]).trim().to_string();

    // Shift traffic: the samples staged one after the other.
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-reviews-80-20.yaml"))
        .ok();
    d.kg()
        .args(["-n", "team-a", "commit", "-m", "reviews: 20% to v2"])
        .ok();
    assert_eq!(
        d.trailers("HEAD", "Gitops-Object"),
        ["VirtualService/reviews"]
    );
    let shift = d.git(&["rev-parse", "HEAD"]).trim().to_string();

    // A later commit touching two namespaces: team-a's ratings and team-b.
    d.kg()
        .args(["-n", "team-b", "stage"])
        .arg(sample("destination-rule-reviews.yaml"))
        .ok();
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-ratings-test-delay.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "ratings delay test"]).ok();
    assert_eq!(d.trailers("HEAD", "Gitops-Namespace"), ["team-a", "team-b"]);
    assert_eq!(
        d.trailers("HEAD", "Gitops-Object"),
        ["VirtualService/ratings", "DestinationRule/reviews"],
        "per namespace, in the order of the namespaces"
    );

    // log: the namespace folder's history, newest first, with trailers.
    let log = d.kg().args(["-n", "team-a", "log"]).ok();
    let subjects: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("    ") && !l.trim().starts_with("Gitops-"))
        .map(str::trim)
        .collect();
    assert_eq!(
        subjects,
        [
            "ratings delay test",
            "reviews: 20% to v2",
            "Bookinfo: all traffic to v1"
        ]
    );
    assert!(
        log.contains("    Gitops-Object: VirtualService/reviews\n"),
        "{log}"
    );
    assert!(log.contains(&format!("commit {shift}\n")), "{log}");
    assert!(
        log.contains("Author: Test User <test@example.com>"),
        "{log}"
    );
    // team-b's folder has one commit; the init commit is in neither.
    let json = d.kg().args(["-n", "team-b", "log", "-o", "json"]).ok();
    let entries: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(entries[0]["subject"], "ratings delay test");
    assert_eq!(
        entries[0]["namespaces"],
        serde_json::json!(["team-a", "team-b"])
    );
    let oneline = d
        .kg()
        .args(["-n", "team-a", "log", "--oneline", "--max-count", "2"])
        .ok();
    assert_eq!(oneline.lines().count(), 2, "{oneline}");
    assert!(
        oneline.contains("reviews: 20% to v2 [VirtualService/reviews]"),
        "{oneline}"
    );

    // revert the traffic shift: only reviews goes back, the later ratings
    // change stays. No -n: the commit's Gitops-Namespace trailer says where.
    let out = d.kg().args(["revert", &shift]).ok();
    assert!(out.contains("Revert \"reviews: 20% to v2\""), "{out}");
    d.assert_clean();
    assert_eq!(
        d.git(&[
            "show",
            &format!("{v1}:namespaces/team-a/virtualservice-reviews.yaml")
        ]),
        d.read("namespaces/team-a/virtualservice-reviews.yaml")
    );
    assert!(
        d.read("namespaces/team-a/virtualservice-ratings.yaml")
            .contains("fixedDelay")
    );
    assert_eq!(
        d.trailers("HEAD", "Gitops-Object"),
        ["VirtualService/reviews"]
    );
    let body = d.git(&["log", "-1", "--format=%B"]);
    assert!(
        body.contains(&format!(
            "This reverts commit {shift} in namespaces/team-a/."
        )),
        "{body}"
    );

    // revert confined to one namespace: team-a's part of the two-namespace
    // commit goes, team-b's stays. Without -n, which one is asked for.
    let err = d.kg().args(["revert", "HEAD~1"]).expect(2).stderr;
    assert!(
        err.contains("changed 2 namespaces (team-a, team-b); name the one to revert with -n"),
        "{err}"
    );
    d.kg().args(["-n", "team-a", "revert", "HEAD~1"]).ok();
    d.assert_clean();
    assert!(
        !d.read("namespaces/team-a/virtualservice-ratings.yaml")
            .contains("fixedDelay")
    );
    assert!(
        d.path("namespaces/team-b/destinationrule-reviews.yaml")
            .is_file()
    );
    assert_eq!(d.trailers("HEAD", "Gitops-Namespace"), ["team-a"]);

    // Reverting again finds nothing left to undo.
    let err = d
        .kg()
        .args(["-n", "team-a", "revert", "HEAD~2"])
        .expect(2)
        .stderr;
    assert!(err.contains("nothing to revert"), "{err}");
    let err = d
        .kg()
        .args(["-n", "team-b", "revert", &shift])
        .expect(2)
        .stderr;
    assert!(
        err.contains("changed nothing in namespaces/team-b"),
        "{err}"
    );
}

#[test]
fn commit_refuses_changes_staged_outside_the_base_folder() {
    let d = Dir::new();
    d.init();
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-reviews.yaml"))
        .ok();
    d.write("README.md", "# config\n");
    d.git(&["add", "README.md"]);
    let head = d.git(&["rev-parse", "HEAD"]);
    let err = d.kg().args(["commit", "-m", "both"]).expect(2).stderr;
    assert!(
        err.starts_with("error: refusing to commit: changes outside the base folder namespaces/ are staged (README.md)"),
        "{err}"
    );
    assert_eq!(d.git(&["rev-parse", "HEAD"]), head, "nothing was committed");
    assert_eq!(
        d.git(&["diff", "--cached", "--name-only"]),
        "README.md\nnamespaces/team-a/destinationrule-reviews.yaml\n",
        "both stay staged"
    );
    // Once README.md is unstaged, the commit goes through.
    d.git(&["restore", "--staged", "README.md"]);
    d.kg().args(["commit", "-m", "reviews subsets"]).ok();
    assert_eq!(d.git(&["status", "--porcelain"]), "?? README.md\n");

    // Nothing staged at all is an error, not an empty commit.
    let err = d.kg().args(["commit", "-m", "empty"]).expect(2).stderr;
    assert!(err.contains("nothing staged to commit"), "{err}");
}

#[test]
fn commit_refuses_a_folder_the_agent_would_reject() {
    let d = Dir::new();
    d.init();
    d.write(
        "namespaces/team-a/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: reviews\n",
    );
    d.git(&["add", "namespaces/team-a/deploy.yaml"]);
    let err = d.kg().args(["commit", "-m", "sneak"]).expect(2).stderr;
    assert!(
        err.contains("the sync agent would reject this revision"),
        "{err}"
    );
    assert!(
        err.contains("namespaces/team-a/deploy.yaml: document 1, line 2: Deployment (apps/v1) is not an Istio config kind"),
        "{err}"
    );
    assert_eq!(d.git(&["rev-list", "--count", "HEAD"]).trim(), "1");
    // --no-verify is the explicit way past it.
    d.kg().args(["commit", "-m", "sneak", "--no-verify"]).ok();
}

#[test]
fn validate_reports_findings_with_file_and_line() {
    let d = Dir::new();
    d.init();
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-all.yaml"))
        .ok();
    let out = d.kg().args(["-n", "team-a", "validate"]).ok();
    assert_eq!(out, "no findings in team-a\n");
    assert_eq!(
        d.kg().args(["-n", "team-a", "validate", "-o", "json"]).ok(),
        "[]\n"
    );

    d.write(
        "namespaces/team-a/hand.yaml",
        "# hand-written\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: x\n  namespace: team-b\nspec: {}\n",
    );
    d.write("namespaces/team-b/bad.yaml", "apiVersion: v1\nkind: [\n");
    let run = d.kg().args(["-A", "validate", "-o", "json"]).expect(1);
    let findings: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let findings = findings.as_array().unwrap();
    assert_eq!(findings.len(), 2, "{}", run.stdout);
    assert_eq!(findings[0]["code"], "GITOPS002");
    assert_eq!(findings[0]["level"], "Error");
    assert_eq!(findings[0]["namespace"], "team-a");
    assert_eq!(findings[0]["file"], "namespaces/team-a/hand.yaml");
    assert_eq!(findings[0]["line"], 6);
    assert_eq!(findings[1]["code"], "GITOPS001");
    assert_eq!(findings[1]["file"], "namespaces/team-b/bad.yaml");
    let table = d.kg().args(["-n", "team-a", "validate"]).expect(1).stdout;
    assert!(
        table.starts_with("Error [GITOPS002] namespaces/team-a/hand.yaml:6: document 1: namespace \"team-b\" is not \"team-a\""),
        "{table}"
    );

    // --files: a file outside the folders keeps its own namespace (or default).
    let outside = d.tmp("ef.yaml");
    std::fs::write(
        &outside,
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: lua\nspec: {}\n",
    )
    .unwrap();
    let run = d
        .kg()
        .args(["-n", "team-c", "validate", "--files"])
        .arg(&outside)
        .expect(1);
    assert!(
        run.stdout.contains("--allow-kind EnvoyFilter"),
        "{}",
        run.stdout
    );
    d.kg()
        .args([
            "-n",
            "team-c",
            "validate",
            "--allow-kind",
            "EnvoyFilter",
            "--files",
        ])
        .arg(&outside)
        .ok();
}

#[test]
fn validate_analyzes_across_namespace_folders_with_istio_codes() {
    let d = Dir::new();
    d.init();
    // team-b owns the DestinationRule; team-a's VirtualService routes to it.
    d.write(
        "namespaces/team-b/destinationrule-reviews.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n",
    );
    let vs = |subset: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews.team-b.svc.cluster.local]\n  http:\n  - route:\n    - destination:\n        host: reviews.team-b.svc.cluster.local\n        subset: {subset}\n"
        )
    };
    d.write("namespaces/team-a/virtualservice-reviews.yaml", &vs("v2"));
    let run = d
        .kg()
        .args(["-n", "team-a", "validate", "-o", "json"])
        .expect(1);
    let findings: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let codes: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    // the missing subset (read from team-b's folder) and the foreign host
    assert_eq!(codes, ["GITOPS006", "IST0101"], "{}", run.stdout);
    assert_eq!(
        findings[1]["file"],
        "namespaces/team-a/virtualservice-reviews.yaml"
    );
    assert_eq!(findings[1]["line"], 1);
    assert_eq!(findings[1]["kind"], "VirtualService");
    // fixed: only the warning is left, which fails only with --fail-on warning
    d.write("namespaces/team-a/virtualservice-reviews.yaml", &vs("v1"));
    let table = d.kg().args(["-n", "team-a", "validate"]).ok();
    assert!(table.contains("Warning [GITOPS004]"), "{table}");
    assert!(table.contains("Warning [GITOPS006]"), "{table}");
    d.kg()
        .args(["-n", "team-a", "validate", "--fail-on", "warning"])
        .expect(1);
    // team-b alone is clean
    assert_eq!(
        d.kg().args(["-n", "team-b", "validate"]).ok(),
        "no findings in team-b\n"
    );
}

#[test]
fn validate_files_of_the_bookinfo_samples_gives_no_error() {
    let d = Dir::new();
    let samples = sample("bookinfo-gateway.yaml")
        .parent()
        .unwrap()
        .to_path_buf();
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&samples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("certmanager-gateway.yaml")) // cert-manager's, for istio-system
        .collect();
    let run = d
        .kg()
        .args(["validate", "-o", "json", "--files"])
        .args(&files)
        .ok();
    let findings: serde_json::Value = serde_json::from_str(&run).unwrap();
    let findings = findings.as_array().unwrap();
    assert!(findings.iter().all(|f| f["level"] != "Error"), "{run}");
    assert!(findings.iter().any(|f| f["code"] == "IST0129"), "{run}");
    // the whole folder: the cert-manager Gateway in the mesh root is refused
    let run = d.kg().args(["validate", "--files"]).arg(&samples).expect(1);
    assert!(run.stdout.contains("Error [GITOPS002]"), "{}", run.stdout);
    assert!(run.stdout.contains("mesh root namespace"), "{}", run.stdout);
}

/// The hand-written file of issue 29: a DestinationRule and a VirtualService
/// in compact flow style, one file. Every move edits it in place: the result
/// loads, the DestinationRule's text and the comment stay as written.
#[test]
fn canary_moves_edit_a_hand_written_flow_style_file() {
    const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";
    const VS: &str = "---\n# the reviews service: all traffic to v1 for now\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - name: primary\n    route:\n    - destination: {host: reviews, subset: v1}\n";
    let d = Dir::new();
    d.init();
    let file = "namespaces/team-a/reviews.yaml";
    std::fs::create_dir_all(d.path("namespaces/team-a")).unwrap();
    std::fs::write(d.path(file), format!("{DR}{VS}")).unwrap();
    d.git(&["add", file]);
    d.kg().args(["commit", "-m", "reviews, by hand"]).ok();

    let canary = |args: &[&str]| {
        d.kg().args(["-n", "team-a", "canary"]).args(args).ok();
        let text = d.read(file);
        assert!(text.starts_with(DR), "{text}");
        assert!(
            text.contains("# the reviews service: all traffic to v1 for now\n"),
            "{text}"
        );
        d.kg().args(["-n", "team-a", "validate"]).ok();
        d.assert_clean();
        text
    };
    let started = canary(&[
        "start",
        "reviews",
        "--stable",
        "v1",
        "--canary",
        "v2",
        "--steps",
        "10,50,100",
    ]);
    assert!(
        started.contains("- destination: {host: reviews, subset: v1}\n      weight: 90\n    - destination: {host: reviews, subset: v2}\n      weight: 10\n"),
        "{started}"
    );
    assert!(
        started.contains("metadata: {name: reviews, annotations: {kubectl-gitops.io/canary: '"),
        "{started}"
    );
    let stepped = canary(&["step", "reviews"]);
    assert!(stepped.contains("weight: 50\n"), "{stepped}");
    let promoted = canary(&["promote", "reviews"]);
    assert!(
        promoted.contains(
            "    route:\n    - destination: {host: reviews, subset: v2}\n      weight: 100\n"
        ),
        "{promoted}"
    );
    assert_eq!(d.trailers("HEAD", "Gitops-Canary-Weight"), ["100"]);
}

/// `commit` checks what it commits as the agent will: an Error of the
/// offline analysis (a route to a subset just removed: IST0101), or a
/// namespace left without objects and without `.allow-empty`, is refused
/// with exit 1 and nothing committed; `--no-verify` skips the checks.
#[test]
fn commit_refuses_what_the_agent_would_refuse() {
    let d = Dir::new();
    d.init();
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-reviews-80-20.yaml"))
        .arg(sample("destination-rule-reviews.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "reviews"]).ok();
    let head = d.git(&["rev-parse", "HEAD"]);

    // the DestinationRule that defines the subsets goes: the routes dangle
    d.kg().args(["-n", "team-a", "rm", "dr/reviews"]).ok();
    let run = d.kg().args(["commit", "-m", "no dr"]).expect(1);
    assert!(
        run.stderr
            .contains("refusing to commit: the offline analysis finds")
            && run.stderr.contains("[IST0101]"),
        "{}",
        run.stderr
    );
    assert_eq!(d.git(&["rev-parse", "HEAD"]), head, "nothing committed");
    d.kg()
        .args(["commit", "-m", "no dr, on purpose", "--no-verify"])
        .ok();
    assert_ne!(d.git(&["rev-parse", "HEAD"]), head);

    // the last object goes: the agent would refuse to prune everything
    let head = d.git(&["rev-parse", "HEAD"]);
    d.kg().args(["-n", "team-a", "rm", "vs/reviews"]).ok();
    let run = d.kg().args(["commit", "-m", "empty"]).expect(1);
    assert!(
        run.stderr.contains(
            "refusing to commit: namespaces/team-a/ would hold no objects, and its sync agent refuses to prune every object"
        ) && run.stderr.contains("touch namespaces/team-a/.allow-empty"),
        "{}",
        run.stderr
    );
    assert_eq!(d.git(&["rev-parse", "HEAD"]), head, "nothing committed");
    std::fs::create_dir_all(d.path("namespaces/team-a")).unwrap();
    std::fs::write(d.path("namespaces/team-a/.allow-empty"), "").unwrap();
    d.git(&["add", "namespaces/team-a/.allow-empty"]);
    d.kg().args(["commit", "-m", "empty, on purpose"]).ok();
    assert_ne!(d.git(&["rev-parse", "HEAD"]), head);
}

/// A revision that does not exist is named in plain words, without
/// libgit2's error classes.
#[test]
fn an_unknown_revision_is_said_plainly() {
    let d = Dir::new();
    d.init();
    for args in [
        vec!["-n", "team-a", "diff", "nosuchrev"],
        vec!["revert", "nosuchrev"],
    ] {
        let err = d.kg().args(&args).expect(2).stderr;
        assert_eq!(
            err,
            "error: unknown revision \"nosuchrev\": not a commit, branch or tag of this repository\n",
            "{args:?}"
        );
    }
}

/// `log -o json | head -3`: a reader that goes away is a quiet exit 0, as
/// ripgrep does, in every output format.
#[test]
fn a_closed_pipe_is_a_quiet_success() {
    let d = Dir::new();
    d.init();
    // enough history that the output outgrows a pipe's buffer
    std::fs::create_dir_all(d.path("namespaces/team-a")).unwrap();
    for i in 0..250 {
        std::fs::write(d.path("namespaces/team-a/notes.txt"), format!("{i}\n")).unwrap();
        d.git(&["add", "."]);
        d.git(&[
            "commit",
            "-q",
            "-m",
            &format!("change {i}\n\nGitops-Namespace: team-a\nGitops-Object: VirtualService/r{i}"),
        ]);
    }
    for format in ["json", "yaml", "table"] {
        let mut child = d.kg().args(["-n", "team-a", "log", "-o", format]).spawn();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "-o {format}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "-o {format}");
    }
}

/// A kubeconfig that cannot be read is said once: its path, its cause.
#[test]
fn a_missing_kubeconfig_is_said_once() {
    let d = Dir::new();
    d.init();
    let missing = d.tmp("no-such-kubeconfig");
    let err = d
        .kg()
        .arg("--kubeconfig")
        .arg(&missing)
        .args(["-n", "team-a", "status"])
        .expect(2)
        .stderr;
    assert_eq!(
        err,
        format!(
            "error: cannot read kubeconfig {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );
}

/// `allowKinds` in `.gitops/config.yaml` allows a mesh-wide kind for every
/// command of every teammate, as `--allow-kind` does for one; a kind that
/// is not Istio's there is an error naming the file.
#[test]
fn allow_kinds_of_the_repo_config_apply_to_every_command() {
    const ENVOY_FILTER: &str = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: lua\nspec:\n  configPatches: []\n";
    let d = Dir::new();
    d.init();
    let file = d.tmp("envoyfilter.yaml");
    std::fs::write(&file, ENVOY_FILTER).unwrap();
    let err = d
        .kg()
        .args(["-n", "team-a", "stage"])
        .arg(&file)
        .expect(2)
        .stderr;
    assert!(err.contains("--allow-kind EnvoyFilter"), "{err}");

    d.write(
        ".gitops/config.yaml",
        "path: namespaces\nallowKinds: [EnvoyFilter]\n",
    );
    d.kg().args(["-n", "team-a", "stage"]).arg(&file).ok();
    d.kg().args(["-n", "team-a", "validate"]).ok();
    d.kg().args(["commit", "-m", "lua filter"]).ok();

    d.write(
        ".gitops/config.yaml",
        "path: namespaces\nallowKinds:\n- EnvoyFiltr\n",
    );
    let err = d.kg().args(["-n", "team-a", "validate"]).expect(2).stderr;
    assert!(
        err.contains(".gitops/config.yaml")
            && err.contains("allowKinds: EnvoyFiltr is not an Istio config kind"),
        "{err}"
    );
}
