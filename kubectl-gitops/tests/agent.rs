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
    gitsync: GitSync,
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
            gitsync,
            _follower: follower,
            agent,
            log,
        }
    }

    /// Stop the agent cleanly (SIGTERM: it lets go of its lease) and start
    /// another with `extra` flags.
    fn restart_agent(&mut self, extra: &[&str]) {
        if self.agent.try_wait().unwrap().is_none() {
            let pid = self.agent.id().to_string();
            let status = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap();
            assert!(status.success(), "kill -TERM {pid}");
            self.agent.wait().unwrap();
        }
        let mut flags = vec!["--resync", "1s"];
        flags.extend_from_slice(extra);
        self.agent = spawn_agent(&self.cluster, &self.gitsync, NS, &self.log, &flags);
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

    /// The agent's writes to Istio objects since audit event `before`.
    fn agent_writes_since(&self, before: usize) -> Vec<String> {
        self.cluster.audit().unwrap()[before..]
            .iter()
            .filter(|e| e.user_agent.starts_with("sync-agent/"))
            .filter(|e| e.request_uri.contains(".istio.io/"))
            .filter(|e| !matches!(e.verb.as_str(), "get" | "list" | "watch"))
            .map(|e| format!("{} {}", e.verb, e.request_uri))
            .collect()
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

const VS_REVIEWS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: team-a\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: 80\n    - destination:\n        host: reviews\n        subset: v2\n      weight: 20\n";
const DR_TWO_SUBSETS: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: team-a\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n  - name: v2\n    labels:\n      version: v2\n";

/// One way people change a live object by hand, and what drift must say of it.
struct HandEdit {
    how: &'static str,
    resource: &'static str,
    /// The agent's `status.drift[].reason`, naming the manager and the field.
    reason: &'static str,
    /// What `kubectl gitops diff` must show of the change.
    shows: &'static str,
    edit: fn(&Team),
}

/// The real `kubectl edit`, driven through `KUBE_EDITOR` by a small script
/// that adds a fault to the first HTTP route, as a person would type it.
fn kubectl_edit_fault(team: &Team) {
    let script = team.dir.tmp("editor.py");
    std::fs::write(
        &script,
        "import json, sys\n\
         path = sys.argv[-1]\n\
         with open(path) as f:\n    obj = json.load(f)\n\
         obj['spec']['http'][0]['fault'] = {'abort': {'httpStatus': 503, 'percentage': {'value': 100}}}\n\
         with open(path, 'w') as f:\n    json.dump(obj, f)\n",
    )
    .unwrap();
    let out = team
        .cluster
        .kubectl()
        .args(["edit", "-n", NS, "virtualservice", "reviews", "-o", "json"])
        .env("KUBE_EDITOR", format!("python3 {}", script.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl edit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hand_edits() -> Vec<HandEdit> {
    vec![
        HandEdit {
            how: "kubectl edit",
            resource: "virtualservices",
            reason: "changed by kubectl-edit: spec.http[0].fault",
            shows: "httpStatus: 503",
            edit: kubectl_edit_fault,
        },
        HandEdit {
            // the command of the report (issue 29), what `kubectl edit` sends
            how: "kubectl patch --type json",
            resource: "virtualservices",
            reason: "changed by kubectl-edit: spec.http[0].fault",
            shows: "httpStatus: 503",
            edit: |team| {
                team.kubectl(
                    &[
                        "patch", "vs", "reviews", "-n", NS, "--type", "json",
                        "--field-manager", "kubectl-edit", "-p",
                        r#"[{"op":"add","path":"/spec/http/0/fault","value":{"abort":{"httpStatus":503,"percentage":{"value":100}}}}]"#,
                    ],
                    None,
                );
            },
        },
        HandEdit {
            how: "kubectl patch --type merge",
            resource: "destinationrules",
            reason: "changed by kubectl-patch: spec.trafficPolicy",
            shows: "maxConnections: 7",
            edit: |team| {
                team.kubectl(
                    &[
                        "patch", "destinationrule", "reviews", "-n", NS, "--type=merge", "-p",
                        r#"{"spec":{"trafficPolicy":{"connectionPool":{"tcp":{"maxConnections":7}}}}}"#,
                    ],
                    None,
                );
            },
        },
        HandEdit {
            how: "kubectl apply (client side)",
            resource: "virtualservices",
            reason: "changed by kubectl-client-side-apply: spec.http[0].route[0].weight",
            shows: "weight: 50",
            edit: |team| {
                let edited = VS_REVIEWS
                    .replace("weight: 80", "weight: 50")
                    .replace("weight: 20", "weight: 50");
                team.kubectl(&["apply", "-f", "-"], Some(&edited));
            },
        },
        HandEdit {
            how: "kubectl apply --server-side --field-manager other-tool",
            resource: "virtualservices",
            reason: "changed by other-tool: spec.http[0].route[0].weight",
            shows: "weight: 30",
            edit: |team| {
                let edited = VS_REVIEWS
                    .replace("weight: 80", "weight: 30")
                    .replace("weight: 20", "weight: 70");
                team.kubectl(
                    &[
                        "apply",
                        "--server-side",
                        "--field-manager",
                        "other-tool",
                        "--force-conflicts",
                        "-f",
                        "-",
                    ],
                    Some(&edited),
                );
            },
        },
        HandEdit {
            how: "kubectl label",
            resource: "virtualservices",
            reason: "changed by kubectl-label: metadata.labels.owner",
            shows: "owner: me",
            edit: |team| {
                team.kubectl(
                    &["label", "-n", NS, "virtualservice", "reviews", "owner=me"],
                    None,
                );
            },
        },
    ]
}

/// What Git's objects are live: spec, labels and annotations.
fn intent(object: &Value) -> Value {
    serde_json::json!({
        "spec": object["spec"],
        "labels": object["metadata"]["labels"],
        "annotations": object["metadata"]["annotations"],
    })
}

/// Managers other than the agent's that own a field of spec, a label or an
/// annotation of `object`.
fn other_owners(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subresource"].as_str().unwrap_or_default().is_empty())
        .filter(|e| e["manager"] != "kubectl-gitops")
        .filter(|e| {
            let f = &e["fieldsV1"];
            f.get("f:spec").is_some()
                || f["f:metadata"].get("f:labels").is_some()
                || f["f:metadata"].get("f:annotations").is_some()
        })
        .map(|e| e["manager"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Issue 29: every way a person changes a synced object by hand is drift,
/// named with the manager and the field, in the agent's status and metrics
/// and in `kubectl gitops diff`; with `--no-self-heal` nothing is written;
/// healed, the live object equals Git's again, the agent the only owner of
/// what Git says, and `diff` exits 0.
#[test]
fn every_hand_edit_is_drift_named_with_its_manager_and_healed_back_to_git() {
    let cluster = TestCluster::start().expect("the test cluster");
    let dir = Dir::new();
    dir.init();
    let mut team = Team::with(cluster, dir, &["--no-self-heal"]);
    let (vs, dr) = (team.dir.tmp("vs.yaml"), team.dir.tmp("dr.yaml"));
    std::fs::write(&vs, VS_REVIEWS).unwrap();
    std::fs::write(&dr, DR_TWO_SUBSETS).unwrap();
    team.kg().arg("stage").arg(&vs).arg(&dr).ok();
    team.dir.kg().args(["commit", "-m", "reviews"]).ok();
    team.wait_synced();
    team.kg().arg("diff").expect(0);
    let git = |team: &Team, resource: &str| intent(&team.live(resource, "reviews"));
    let synced = [
        ("virtualservices", git(&team, "virtualservices")),
        ("destinationrules", git(&team, "destinationrules")),
    ];

    for case in hand_edits() {
        let how = case.how;
        let before = team.cluster.audit().unwrap().len();
        let version = team.live(case.resource, "reviews")["metadata"]["resourceVersion"].clone();
        (case.edit)(&team);
        let mut status = Value::Null;
        team.wait(&format!("{how}: the agent to report the drift"), || {
            status = team.live("gitopssyncs", "sync-agent")["status"].clone();
            status["phase"] == "Drifted"
        });
        assert_eq!(
            status["drift"].as_array().unwrap().len(),
            1,
            "{how}: {status}"
        );
        assert_eq!(status["drift"][0]["reason"], case.reason, "{how}: {status}");
        let diff = team.kg().arg("diff").expect(1);
        assert!(
            diff.stdout.contains(case.reason) && diff.stdout.contains(case.shows),
            "{how}: {}",
            diff.stdout
        );
        // --no-self-heal: not one write to the object
        assert_eq!(
            team.agent_writes_since(before),
            Vec::<String>::new(),
            "{how}"
        );
        assert_ne!(
            team.live(case.resource, "reviews")["metadata"]["resourceVersion"],
            version
        );

        // healed by an agent that may: equal to Git's, the agent the only
        // owner, in sync for diff
        team.restart_agent(&[]);
        team.wait(&format!("{how}: the heal"), || {
            let status = team.live("gitopssyncs", "sync-agent")["status"].clone();
            status["phase"] == "Synced"
                && status["drift"] == serde_json::json!([])
                && synced
                    .iter()
                    .all(|(resource, want)| git(&team, resource) == *want)
        });
        for (resource, _) in &synced {
            let live = team.live(resource, "reviews");
            assert_eq!(other_owners(&live), Vec::<String>::new(), "{how}: {live}");
        }
        team.kg().arg("diff").expect(0);
        team.restart_agent(&["--no-self-heal"]);
    }
}

/// Issue 29: a value the server fills in from the CRD's schema default is
/// not drift, also inside an atomic list, and nothing is written again.
#[test]
fn a_default_the_crd_fills_in_is_not_drift() {
    let cluster = TestCluster::start().expect("the test cluster");
    // Give spec.http[].timeout a default in every version of the CRD.
    let crd: Value = serde_json::from_str(&kubectl_ok(
        &cluster,
        &[
            "get",
            "crd",
            "virtualservices.networking.istio.io",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let patch: Vec<Value> = (0..crd["spec"]["versions"].as_array().unwrap().len())
        .map(|i| {
            serde_json::json!({"op": "add", "value": "5s", "path": format!(
                "/spec/versions/{i}/schema/openAPIV3Schema/properties/spec/properties/http/items/properties/timeout/default")})
        })
        .collect();
    kubectl_ok(
        &cluster,
        &[
            "patch",
            "crd",
            "virtualservices.networking.istio.io",
            "--type=json",
            "-p",
            &serde_json::to_string(&patch).unwrap(),
        ],
    );
    let deadline = Instant::now() + WAIT;
    while !kubectl_ok(
        &cluster,
        &["get", "--raw", "/openapi/v3/apis/networking.istio.io/v1"],
    )
    .contains(r#""default":"5s""#)
    {
        assert!(
            Instant::now() < deadline,
            "the default never reached the OpenAPI"
        );
        sleep(Duration::from_millis(200));
    }

    let dir = Dir::new();
    dir.init();
    let team = Team::new(cluster, dir);
    let (vs, dr) = (team.dir.tmp("vs.yaml"), team.dir.tmp("dr.yaml"));
    std::fs::write(&vs, VS_REVIEWS).unwrap();
    std::fs::write(&dr, DR_TWO_SUBSETS).unwrap();
    team.kg().arg("stage").arg(&vs).arg(&dr).ok();
    team.dir.kg().args(["commit", "-m", "reviews"]).ok();
    team.wait_synced();
    let before = team.cluster.audit().unwrap().len();
    // the server filled it in
    assert_eq!(
        team.live("virtualservices", "reviews")["spec"]["http"][0]["timeout"],
        "5s"
    );
    // several resyncs (1 s) later: still in sync, nothing written again
    sleep(Duration::from_secs(4));
    let status = team.live("gitopssyncs", "sync-agent")["status"].clone();
    assert_eq!(status["phase"], "Synced", "{status}");
    assert_eq!(status["drift"], serde_json::json!([]), "{status}");
    assert_eq!(team.agent_writes_since(before), Vec::<String>::new());
    team.kg().arg("diff").expect(0);
}

/// Issue 31: a refused revision says its cause on the first line, which is
/// all `kubectl gitops status` and `kubectl get gos -o wide` show.
#[test]
fn a_refused_revision_shows_its_cause_on_the_first_line() {
    let cluster = TestCluster::start().expect("the test cluster");
    let dir = Dir::new();
    dir.init();
    let team = Team::new(cluster, dir);
    let dr = team.dir.tmp("dr.yaml");
    std::fs::write(&dr, DR_PLAIN).unwrap();
    team.kg().arg("stage").arg(&dr).ok();
    team.dir.kg().args(["commit", "-m", "reviews"]).ok();
    team.wait_synced();
    // two bad files, committed past commit's own check
    for name in ["a-broken.yaml", "b-broken.yaml"] {
        std::fs::write(
            team.dir.path(&format!("namespaces/team-a/{name}")),
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: other\n  namespace: team-b\nspec:\n  host: other\n",
        )
        .unwrap();
    }
    team.dir.git(&["add", "."]);
    team.dir
        .kg()
        .args(["commit", "-m", "broken", "--no-verify"])
        .ok();
    team.wait("the revision to be refused", || {
        team.live("gitopssyncs", "sync-agent")["status"]["phase"] == "Failed"
    });
    let status = team.kg().arg("status").expect(1).stdout;
    assert!(
        status.contains("refused, nothing applied or pruned: namespaces/team-a/a-broken.yaml: document 1, line 5")
            // the other file's, and the name both use twice
            && status.contains("(and 2 more)"),
        "{status}"
    );
    let wide = team.kubectl(&["get", "gos", "-n", NS, "-o", "wide"], None);
    assert!(wide.contains("a-broken.yaml: document 1, line 5"), "{wide}");
}

/// Issue 31: a stopped agent does not look healthy. Stopped cleanly
/// (SIGTERM), or killed so that its heartbeat goes silent, `status` says it
/// is not running and exits 1.
#[test]
fn status_says_when_the_agent_is_not_running() {
    let cluster = TestCluster::start().expect("the test cluster");
    let dir = Dir::new();
    dir.init();
    let mut team = Team::with(cluster, dir, &["--lease-duration", "1s"]);
    let dr = team.dir.tmp("dr.yaml");
    std::fs::write(&dr, DR_PLAIN).unwrap();
    team.kg().arg("stage").arg(&dr).ok();
    team.dir.kg().args(["commit", "-m", "reviews"]).ok();
    team.wait_synced();
    team.wait("the first heartbeat", || {
        team.kg().arg("status").run().code == 0
    });
    let json: Value = serde_json::from_str(&team.kg().args(["status", "-o", "json"]).ok()).unwrap();
    assert_eq!(json[0]["running"], true, "{json}");

    // SIGTERM: the agent lets go of its lease and says when
    let pid = team.agent.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    team.agent.wait().unwrap();
    let run = team.kg().arg("status").expect(1);
    assert!(
        run.stdout.contains("Synced (not running)")
            && run.stdout.contains("agent not running: it stopped at"),
        "{}",
        run.stdout
    );

    // killed: no release, the heartbeat goes silent past its lease
    team.restart_agent(&["--lease-duration", "1s"]);
    team.wait("the new agent's heartbeat", || {
        team.kg().arg("status").run().code == 0
    });
    let _ = team.agent.kill();
    let _ = team.agent.wait();
    team.wait("the heartbeat to go silent", || {
        let run = team.kg().arg("status").run();
        run.code == 1 && run.stdout.contains("agent not running: no heartbeat since")
    });
    let run = team.kg().args(["status", "--wait=1s"]).expect(1);
    assert!(run.stderr.contains("agent not running"), "{}", run.stderr);
}
