//! The plugin and the real `sync-agent` together on the real test API
//! server: what one writes to Git, the other applies, and both read the
//! cluster the same way.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use gitops_tests::{
    TestCluster,
    gitsync::{Follower, GitSync},
};
use serde_json::Value;

use crate::util::{Dir, TestCommand, spawn_agent};

const NS: &str = "team-a";
const WAIT: Duration = Duration::from_secs(120);

/// A config repo followed by git-sync, and an agent for team-a.
struct Team {
    dir: Dir,
    cluster: TestCluster,
    _gitsync: GitSync,
    _follower: Follower,
    agent: Child,
    log: PathBuf,
}

impl Drop for Team {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Team {
    fn new(cluster: TestCluster, dir: Dir) -> Team {
        Self::with(cluster, dir, &[])
    }

    fn with(cluster: TestCluster, dir: Dir, extra: &[&str]) -> Team {
        let gitsync = GitSync::new().unwrap();
        let follower = gitsync.follow(&dir.repo);
        let log = dir.tmp("agent.log");
        let mut flags = vec!["--resync", "1s"];
        flags.extend_from_slice(extra);
        let agent = spawn_agent(&cluster, &gitsync, NS, &log, &flags);
        Team {
            dir,
            cluster,
            _gitsync: gitsync,
            _follower: follower,
            agent,
            log,
        }
    }

    fn kg(&self) -> TestCommand {
        self.dir
            .kg()
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path())
            .args(["-n", NS])
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = self.cluster.kubectl();
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn live(&self, resource: &str, name: &str) -> Value {
        serde_json::from_str(&self.kubectl(
            &[
                "get",
                "-n",
                NS,
                resource,
                name,
                "-o",
                "json",
                "--show-managed-fields",
            ],
            None,
        ))
        .unwrap()
    }

    /// Until the agent reports HEAD applied and Synced.
    fn wait_synced(&self) {
        let head = self.dir.git(&["rev-parse", "HEAD"]).trim().to_string();
        self.wait("the agent to apply HEAD", || {
            let gos = self.live("gitopssyncs", "sync-agent");
            gos["status"]["revision"] == head.as_str() && gos["status"]["phase"] == "Synced"
        });
    }

    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            sleep(Duration::from_millis(200));
        }
    }
}

const DR_WITH_POOL: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: team-a\nspec:\n  host: reviews\n  trafficPolicy:\n    connectionPool:\n      tcp:\n        maxConnections: 100\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n";
const DR_PLAIN: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n";

/// Defect 8 of the review: an object made with client-side `kubectl apply`,
/// adopted with `kubectl gitops import`: a field then deleted in Git is
/// removed live (the agent takes kubectl's field managers over), and a field
/// someone adds with `kubectl patch` is drift, healed.
#[test]
fn fields_kubectl_owned_are_taken_over_and_removed_when_git_drops_them() {
    let cluster = TestCluster::start().expect("the test cluster");
    let dir = Dir::new();
    dir.init();
    let team = Team::new(cluster, dir);
    team.kubectl(&["apply", "-f", "-"], Some(DR_WITH_POOL));
    team.kg().args(["import", "destinationrule/reviews"]).ok();
    team.dir.kg().args(["commit", "-m", "adopt reviews"]).ok();
    team.wait_synced();
    team.kg().arg("diff").expect(0);

    // Git drops the connection pool: gone live too, and diff agrees.
    let file = team.dir.tmp("dr.yaml");
    std::fs::write(&file, DR_PLAIN).unwrap();
    team.kg().arg("stage").arg(&file).ok();
    team.dir
        .kg()
        .args(["commit", "-m", "no connection pool"])
        .ok();
    team.wait_synced();
    team.wait("the connection pool to be removed live", || {
        team.live("destinationrules", "reviews")["spec"]["trafficPolicy"].is_null()
    });
    team.kg().arg("diff").expect(0);
    let managers: Vec<String> =
        team.live("destinationrules", "reviews")["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["manager"].as_str().unwrap_or_default().to_string())
            .collect();
    assert!(
        !managers.iter().any(|m| m.starts_with("kubectl-client")),
        "{managers:?}"
    );

    // A field added by hand to the owned object is drift, and healed.
    team.kubectl(
        &[
            "patch",
            "-n",
            NS,
            "destinationrule",
            "reviews",
            "--type=merge",
            "-p",
            r#"{"spec":{"exportTo":["."]}}"#,
        ],
        None,
    );
    team.wait("the hand-added exportTo to be removed", || {
        team.live("destinationrules", "reviews")["spec"]["exportTo"].is_null()
    });
    let log = std::fs::read_to_string(&team.log).unwrap();
    assert!(log.contains("healed 1 drifted object(s)"), "{log}");
    team.kg().arg("diff").expect(0);
}

/// Right after the agent synced, `diff` finds nothing; after an edit by
/// hand, the agent (with `--no-self-heal`) and `diff` report the same field,
/// and `status` exits 1.
#[test]
fn diff_and_the_agent_agree_about_drift() {
    let cluster = TestCluster::start().expect("the test cluster");
    let dir = Dir::new();
    dir.init();
    let team = Team::with(cluster, dir, &["--no-self-heal"]);
    let file = team.dir.tmp("dr.yaml");
    std::fs::write(&file, DR_WITH_POOL).unwrap();
    team.kg().arg("stage").arg(&file).ok();
    team.dir.kg().args(["commit", "-m", "reviews"]).ok();
    team.wait_synced();
    team.kg().arg("diff").expect(0);
    team.kg().arg("status").expect(0);

    team.kubectl(
        &[
            "patch",
            "-n",
            NS,
            "destinationrule",
            "reviews",
            "--type=merge",
            "-p",
            r#"{"spec":{"trafficPolicy":{"connectionPool":{"tcp":{"maxConnections":7}}}}}"#,
        ],
        None,
    );
    let mut reason = String::new();
    team.wait("the agent to report the drift", || {
        let gos = team.live("gitopssyncs", "sync-agent");
        reason = gos["status"]["drift"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        gos["status"]["phase"] == "Drifted"
    });
    assert_eq!(
        reason,
        "changed by kubectl-patch: spec.trafficPolicy.connectionPool.tcp.maxConnections"
    );
    let diff = team.kg().arg("diff").expect(1);
    assert!(
        diff.stdout.contains("maxConnections: 100") && diff.stdout.contains("maxConnections: 7"),
        "{}",
        diff.stdout
    );
    team.kg().arg("status").expect(1);
}

/// Run kubectl on `cluster`; its stdout, or a panic with its stderr.
fn kubectl_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let out = cluster.kubectl().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Stop serving networking `v1` of `plurals`' CRDs, as Istio before 1.22
/// ships them (v1beta1 and v1alpha3 only), and wait until discovery says so.
fn stop_serving_networking_v1(cluster: &TestCluster, plurals: &[&str]) {
    for plural in plurals {
        let crd = format!("{plural}.networking.istio.io");
        let def = kubectl_ok(cluster, &["get", "crd", &crd, "-o", "json"]);
        let def: Value = serde_json::from_str(&def).unwrap();
        let index = def["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .position(|v| v["name"] == "v1")
            .expect("the CRD has v1");
        let patch =
            format!(r#"[{{"op":"replace","path":"/spec/versions/{index}/served","value":false}}]"#);
        kubectl_ok(
            cluster,
            &["patch", "crd", &crd, "--type=json", "-p", &patch],
        );
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let out = cluster
            .kubectl()
            .args(["get", "--raw", "/apis/networking.istio.io/v1"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if !plurals
            .iter()
            .any(|p| text.contains(&format!("\"name\":\"{p}\"")))
        {
            return;
        }
        assert!(Instant::now() < deadline, "v1 still served: {text}");
        sleep(Duration::from_millis(200));
    }
}

/// A mesh whose CRDs do not serve networking `v1` (Istio before 1.22): the
/// agent and `diff` read the served versions from discovery and speak
/// v1beta1, though the manifests in Git say v1.
#[test]
fn a_mesh_that_does_not_serve_networking_v1_is_synced_in_v1beta1() {
    let cluster = TestCluster::start().expect("the test cluster");
    stop_serving_networking_v1(&cluster, &["destinationrules", "virtualservices"]);
    let dir = Dir::new();
    dir.init();
    let team = Team::with(cluster, dir, &[]);
    let file = team.dir.tmp("dr.yaml");
    std::fs::write(&file, DR_WITH_POOL).unwrap();
    team.kg().arg("stage").arg(&file).ok();
    team.dir.kg().args(["commit", "-m", "reviews"]).ok();
    team.wait_synced();
    let live = team.live("destinationrules.v1beta1.networking.istio.io", "reviews");
    assert_eq!(live["apiVersion"], "networking.istio.io/v1beta1");
    assert_eq!(
        live["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["maxConnections"],
        100
    );
    team.kg().arg("diff").expect(0);
    team.kg().arg("status").expect(0);
    let events = team.cluster.audit().unwrap();
    let agent: Vec<_> = events
        .iter()
        .filter(|e| e.user_agent.starts_with("sync-agent/"))
        .filter(|e| e.request_uri.contains("/destinationrules"))
        .collect();
    assert!(
        agent.iter().any(|e| e.verb == "patch"
            && e.request_uri
                .starts_with("/apis/networking.istio.io/v1beta1/")),
        "the agent applied at v1beta1"
    );
    assert!(
        !agent
            .iter()
            .any(|e| e.request_uri.starts_with("/apis/networking.istio.io/v1/")),
        "nothing asked for the v1 that is not served"
    );
}
