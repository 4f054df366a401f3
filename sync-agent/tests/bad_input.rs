//! The bad-input corpus (`tests/testdata/bad/`, see `gitops_tests::corpus`)
//! through the agent: its loader gives each case's error, and as a
//! revision published to a running agent, a case changes nothing in the
//! cluster and the status says why.

// Helpers outside `#[test]` fns panic on failure on purpose: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{collections::BTreeMap, fs};

use clap::Parser as _;
use gitops_tests::corpus::{self, Case};
use support::*;
use sync_agent::{Args, Config, load};

/// `case` as a git-sync volume (`root/.worktrees/bad`, `root/repo` linking
/// to it), read by the agent's loader with the case's flags.
fn load_case(case: &Case) -> String {
    let root = tempfile::tempdir().unwrap();
    let tree = root.path().join(".worktrees/bad");
    fs::create_dir_all(&tree).unwrap();
    case.materialize(&tree);
    let target = if case.dangling_link {
        ".worktrees/missing"
    } else {
        ".worktrees/bad"
    };
    std::os::unix::fs::symlink(target, root.path().join("repo")).unwrap();
    let mut argv = vec![
        "sync-agent".to_string(),
        "-n".into(),
        case.namespace.clone(),
        "--repo".into(),
        root.path().to_string_lossy().into_owned(),
        "--link".into(),
        "repo".into(),
    ];
    argv.extend(case.agent_flags.iter().cloned());
    let cfg = match Args::try_parse_from(&argv)
        .map_err(|e| e.to_string())
        .and_then(|args| Config::from_args(args, None).map_err(|e| e.to_string()))
    {
        Ok(cfg) => cfg,
        // the flags themselves refuse it (the mesh root namespace, say)
        Err(e) => return format!("refused at start: {e}"),
    };
    match load::load(&cfg) {
        Ok(loaded) => loaded
            .refusal()
            .unwrap_or_else(|| panic!("{}: the loader accepted it", case.name)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_loader_refuses_every_bad_input_with_its_error() {
    let cases = corpus::cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut tried: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in cases.iter().filter(|c| c.runs("agent") && !c.e2e_only) {
        let error = load_case(case);
        if let Err(e) = case.check("agent loader", &error) {
            failures.push(e);
        }
        *tried.entry(case.family().to_string()).or_default() += 1;
    }
    println!("agent loader: cases tried per family: {tried:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The good revision a case is published over.
const KEEP: [(&str, &str); 2] = [("keep-dr.yaml", "keep"), ("keep-vs.yaml", "keep")];

fn write_good(gs: &GitSync) {
    gs.write(format!("namespaces/team-a/{}", KEEP[0].0), dr("keep"))
        .unwrap();
    gs.write(
        format!("namespaces/team-a/{}", KEEP[1].0),
        vs("keep", 80, 20),
    )
    .unwrap();
}

/// The cases published to a running agent: at least one of each family.
const END_TO_END: &[&str] = &[
    "yaml-alias-bomb",
    "yaml-deep-nesting",
    "yaml-duplicate-key",
    "yaml-random-bytes",
    "yaml-second-document-broken",
    "yaml-utf16",
    "schema-missing-kind",
    "schema-unknown-version",
    "name-upper-case",
    "name-254-characters",
    "policy-other-namespace",
    "policy-cluster-role-binding",
    "policy-secret",
    "policy-envoyfilter",
    "policy-duplicate-across-files",
    "layout-symlink-to-other-team",
    "layout-symlink-to-etc",
    "layout-symlink-loop",
    "layout-namespace-folder-symlink-out",
    "layout-empty-namespace-folder",
    "layout-missing-link-target",
    "limits-max-objects",
];

#[test]
fn a_bad_revision_changes_nothing_in_the_cluster() {
    let cluster = cluster();
    let gs = GitSync::new().unwrap();
    let ns = "team-a";
    write_good(&gs);
    let good = gs.commit_and_publish("good").unwrap();
    let cases: Vec<Case> = corpus::cases()
        .into_iter()
        .filter(|c| END_TO_END.contains(&c.name.as_str()))
        .collect();
    assert_eq!(
        cases.len(),
        END_TO_END.len(),
        "a case named here is missing"
    );
    let families: std::collections::BTreeSet<&str> = cases.iter().map(Case::family).collect();
    assert_eq!(families.len(), 6, "{families:?}");

    let mut agent: Option<(Vec<String>, Agent)> = None;
    let mut tried: BTreeMap<String, usize> = BTreeMap::new();
    for case in &cases {
        // one agent per set of flags, on the good revision first
        if agent
            .as_ref()
            .is_none_or(|(flags, _)| *flags != case.agent_flags)
        {
            if let Some((_, mut old)) = agent.take() {
                old.terminate();
            }
            gs.publish_sha(&good).unwrap();
            let flags: Vec<&str> = case.agent_flags.iter().map(String::as_str).collect();
            let a = Agent::gitsync(&cluster, &gs, ns, &flags);
            wait_status(&a, &cluster, "Synced", Some(&good));
            agent = Some((case.agent_flags.clone(), a));
        }
        let (_, a) = agent.as_ref().unwrap();
        let live_before = live_objects(&cluster, ns);
        let audit_before = cluster.audit().unwrap().len();

        // the revision: the good files and the case's, or the case alone
        // (an emptied folder)
        let folder = gs.source().join("namespaces/team-a");
        if folder.symlink_metadata().is_ok() {
            if folder.is_symlink() {
                fs::remove_file(&folder).unwrap();
            } else {
                fs::remove_dir_all(&folder).unwrap();
            }
        }
        if !case.e2e_only && !case.replaces_folder() {
            write_good(&gs);
        }
        case.materialize(&gs.source());
        let rev = gs.commit(&case.name).unwrap();
        if case.dangling_link {
            gs.swap("0000000000000000000000000000000000000000").unwrap();
        } else {
            gs.publish_sha(&rev).unwrap();
        }
        let status = a.wait(&format!("{}: the refusal", case.name), || {
            let s = gos_status(&cluster, ns);
            // a dangling link has no revision of its own: its message tells
            let seen = if case.dangling_link {
                case.check("agent status", s["message"].as_str().unwrap_or(""))
                    .is_ok()
            } else {
                s["observedRevision"] == rev.as_str()
            };
            (seen && s["phase"] == "Failed").then_some(s)
        });
        let message = status["message"].as_str().unwrap_or("").to_string();
        if let Err(e) = case.check("agent status", &message) {
            panic!("{e}");
        }
        assert_eq!(
            status["revision"],
            good.as_str(),
            "{}: the last good revision",
            case.name
        );
        let writes = agent_object_writes(&audit_since(&cluster, audit_before), ns);
        assert_eq!(
            summarize(&writes),
            Vec::<String>::new(),
            "{}: writes",
            case.name
        );
        assert_eq!(
            live_objects(&cluster, ns),
            live_before,
            "{}: the cluster changed",
            case.name
        );
        *tried.entry(case.family().to_string()).or_default() += 1;
    }
    println!("agent end to end: cases tried per family: {tried:?}");
    // for docs/reliability.md (scripts/reliability.sh)
    let dir = gitops_tests::cluster::repo_root().join("target/reliability");
    fs::create_dir_all(&dir).unwrap();
    let counts: String = tried.iter().map(|(f, n)| format!("{f}: {n}\n")).collect();
    fs::write(dir.join("bad-e2e.txt"), counts).unwrap();

    // the good revision again: Synced, nothing lost
    let (_, a) = agent.as_ref().unwrap();
    let folder = gs.source().join("namespaces/team-a");
    if folder.is_symlink() {
        fs::remove_file(&folder).unwrap();
    } else if folder.exists() {
        fs::remove_dir_all(&folder).unwrap();
    }
    write_good(&gs);
    let fixed = gs.commit_and_publish("good again").unwrap();
    wait_status(a, &cluster, "Synced", Some(&fixed));
    assert_eq!(names(&cluster, ns, "virtualservices"), ["keep"]);
    assert_eq!(names(&cluster, ns, "destinationrules"), ["keep"]);
}

/// Every object of the namespace's two kinds, by name, with its resource version.
fn live_objects(cluster: &gitops_tests::TestCluster, ns: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for resource in ["virtualservices", "destinationrules"] {
        for name in names(cluster, ns, resource) {
            let object = get(cluster, ns, resource, &name).unwrap();
            let rv = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            out.push((format!("{resource}/{name}"), rv));
        }
    }
    out
}
