//! Against the real test API server (`gitops_tests::TestCluster`): `import`
//! of objects made with the real kubectl, `diff` before and after the
//! agent's apply (simulated with `kubectl apply --server-side` of exactly
//! what the shared crate says the agent applies), `status` of a
//! `GitOpsSync` written through its status subresource, and `suspend`.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use gitops_shared::{
    Policy,
    layout::load_namespace,
    manifest::{LoadOptions, load_file},
    normalize::desired_object,
};
use gitops_tests::TestCluster;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::util::{Dir, bin, sample};

fn start() -> TestCluster {
    TestCluster::start().expect("starting the test cluster (scripts/test-cluster.sh build)")
}

/// Run the real kubectl against the cluster; stdout.
fn kubectl(cluster: &TestCluster, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd: Command = cluster.kubectl();
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running kubectl");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Do what the sync agent does for `ns`: server-side apply, as its field
/// manager, exactly the objects `gitops_shared` says it applies.
fn agent_apply(cluster: &TestCluster, d: &Dir, ns: &str) {
    let set = load_namespace(
        &d.repo,
        "namespaces",
        &Policy::new(ns),
        &LoadOptions::default(),
    )
    .expect("the namespace folder loads");
    let items: Vec<Value> = set
        .manifests
        .iter()
        .map(|m| {
            desired_object(
                &m.object,
                ns,
                "sync-agent",
                &m.source.file.to_string_lossy(),
            )
            .0
        })
        .collect();
    // YAML documents: kubectl takes a JSON stream only as a v1 List, which
    // this API server (custom resources only) does not serve.
    let docs: Vec<String> = items
        .iter()
        .map(|o| serde_saphyr::to_string(o).unwrap())
        .collect();
    kubectl(
        cluster,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kubectl-gitops",
            "-f",
            "-",
        ],
        Some(&docs.join("---\n")),
    );
}

fn yaml_file(path: &Path) -> Value {
    load_file(path, &LoadOptions::default()).unwrap()[0]
        .object
        .clone()
}

#[test]
fn import_adopts_live_objects_and_diff_follows_the_agent() {
    let cluster = start();
    let kc = cluster.kubeconfig_path();
    let d = Dir::new();
    d.init();
    let kg = || d.kg().arg("--kubeconfig").arg(&kc);

    // Objects made by hand with the real kubectl (client-side apply, which
    // leaves its last-applied annotation behind).
    let dr_all = sample("destination-rule-all.yaml");
    let vs_80 = sample("virtual-service-reviews-80-20.yaml");
    kubectl(
        &cluster,
        &[
            "apply",
            "-n",
            "team-a",
            "-f",
            dr_all.to_str().unwrap(),
            "-f",
            vs_80.to_str().unwrap(),
        ],
        None,
    );

    // import one, then everything.
    let out = kg().args(["-n", "team-a", "import", "vs/reviews"]).ok();
    assert_eq!(
        out,
        "VirtualService/reviews -> namespaces/team-a/virtualservice-reviews.yaml (created)\n"
    );
    assert_eq!(
        d.read("namespaces/team-a/virtualservice-reviews.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: team-a\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: 80\n    - destination:\n        host: reviews\n        subset: v2\n      weight: 20\n"
    );
    let out = kg().args(["-n", "team-a", "import", "--all"]).ok();
    assert!(
        out.contains(
            "VirtualService/reviews -> namespaces/team-a/virtualservice-reviews.yaml (unchanged)"
        ),
        "{out}"
    );
    assert_eq!(out.matches("(created)").count(), 4, "{out}");
    for name in ["productpage", "reviews", "ratings", "details"] {
        let object = yaml_file(&d.path(&format!("namespaces/team-a/destinationrule-{name}.yaml")));
        let meta = object["metadata"].as_object().unwrap();
        let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
        assert_eq!(keys, ["name", "namespace"], "{name}: {object}");
        assert!(object.get("status").is_none());
        let original = load_file(&dr_all, &LoadOptions::default())
            .unwrap()
            .into_iter()
            .find(|m| m.name == name)
            .unwrap();
        assert_eq!(object["spec"], original.object["spec"], "{name}");
    }
    assert_eq!(
        d.git(&["diff", "--cached", "--name-only"]).lines().count(),
        5
    );
    let err = kg()
        .args(["-n", "team-a", "import", "vs/ratings"])
        .expect(2)
        .stderr;
    assert!(
        err.contains("VirtualService/ratings not found in namespace \"team-a\""),
        "{err}"
    );
    kg().args(["-n", "team-a", "commit", "-m", "adopt team-a"])
        .ok();

    // Live but never applied by the agent: not in sync (no ownership labels).
    let run = kg().args(["-n", "team-a", "diff"]).expect(1);
    assert!(
        run.stdout
            .contains("+    app.kubernetes.io/managed-by: kubectl-gitops"),
        "{}",
        run.stdout
    );

    // Once the agent applied the folder: in sync, nothing printed.
    agent_apply(&cluster, &d, "team-a");
    let run = kg().args(["-n", "team-a", "diff"]).expect(0);
    assert_eq!(run.stdout, "");

    // A changed weight in Git: exit 1 and a unified diff of the weights.
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-reviews-90-10.yaml"))
        .ok();
    let run = kg().args(["-n", "team-a", "diff"]).expect(1);
    let expected = "# team-a: VirtualService/reviews: update (changed in Git)\n\
        --- live/team-a/VirtualService/reviews\n\
        +++ git/team-a/VirtualService/reviews\n";
    assert!(run.stdout.starts_with(expected), "{}", run.stdout);
    assert!(
        run.stdout.contains("\n-      weight: 80\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("\n+      weight: 90\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("\n-      weight: 20\n+      weight: 10\n"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    let json: Value = serde_json::from_str(
        &kg()
            .args(["-n", "team-a", "diff", "-o", "json"])
            .expect(1)
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["namespace"], "team-a");
    assert_eq!(json[0]["inSync"], false);
    assert_eq!(json[0]["changes"].as_array().unwrap().len(), 1);
    assert_eq!(json[0]["changes"][0]["kind"], "VirtualService");
    assert_eq!(json[0]["changes"][0]["action"], "update");
    assert_eq!(json[0]["changes"][0]["drift"], false);
    // The committed revision is still what is live.
    kg().args(["-n", "team-a", "diff", "HEAD"]).expect(0);

    // Committed and applied: in sync again.
    kg().args(["-n", "team-a", "commit", "-m", "reviews 90/10"])
        .ok();
    agent_apply(&cluster, &d, "team-a");
    kg().args(["-n", "team-a", "diff"]).expect(0);
    kg().args(["-n", "team-a", "diff", "HEAD~1"]).expect(1);

    // Someone edits the live object: drift.
    kubectl(
        &cluster,
        &[
            "patch",
            "-n",
            "team-a",
            "virtualservice",
            "reviews",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/http/0/route/0/weight","value":0}]"#,
        ],
        None,
    );
    let run = kg().args(["-n", "team-a", "diff"]).expect(1);
    assert!(
        run.stdout.starts_with("# team-a: VirtualService/reviews: update (changed by kubectl-patch: spec.http[0].route[0].weight), drifted\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("-      weight: 0\n+      weight: 90\n"),
        "{}",
        run.stdout
    );

    // An object the agent owns that is no longer in Git: it would be pruned.
    kubectl(
        &cluster,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: old\n  namespace: team-a\n  labels:\n    app.kubernetes.io/managed-by: kubectl-gitops\n    kubectl-gitops.io/owner: team-a\nspec:\n  host: old\n",
        ),
    );
    let json: Value = serde_json::from_str(
        &kg()
            .args(["-n", "team-a", "diff", "-o", "json"])
            .expect(1)
            .stdout,
    )
    .unwrap();
    let actions: Vec<(String, String)> = json[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().into(),
                format!(
                    "{}/{}",
                    c["kind"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                ),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("update".into(), "VirtualService/reviews".into()),
            ("prune".into(), "DestinationRule/old".into())
        ]
    );
    // one label per difference: the prune is a prune, not also "drifted"
    let table = kg().args(["-n", "team-a", "diff"]).expect(1).stdout;
    assert!(
        table.contains("# team-a: DestinationRule/old: prune (no longer in Git)\n"),
        "{table}"
    );

    // Healed and pruned by the agent: in sync, through `kubectl gitops` as a
    // plugin, with the namespace from the kubeconfig context as kubectl does.
    kubectl(
        &cluster,
        &["delete", "-n", "team-a", "destinationrule", "old"],
        None,
    );
    agent_apply(&cluster, &d, "team-a");
    let kc_team_a = d.tmp("kubeconfig-team-a");
    std::fs::copy(&kc, &kc_team_a).unwrap();
    kubectl(
        &cluster,
        &[
            "config",
            "set-context",
            "--current",
            "--namespace=team-a",
            "--kubeconfig",
            kc_team_a.to_str().unwrap(),
        ],
        None,
    );
    let path = std::env::join_paths(
        std::iter::once(bin().parent().unwrap().to_path_buf()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();
    let run = d
        .program("kubectl")
        .args(["gitops", "diff", "--kubeconfig"])
        .arg(&kc_team_a)
        .env("PATH", &path)
        .expect(0);
    assert_eq!(run.stdout, "");
    // -A: every namespace folder.
    kg().args(["-A", "diff"]).expect(0);
}

fn gitopssync() -> ApiResource {
    ApiResource {
        group: "kubectl-gitops.io".into(),
        version: "v1alpha1".into(),
        api_version: "kubectl-gitops.io/v1alpha1".into(),
        kind: "GitOpsSync".into(),
        plural: "gitopssyncs".into(),
    }
}

/// Write the agent's status through the status subresource, as the agent does.
/// An agent's `GitOpsSync` in `ns`, made with the real kubectl.
fn create_gitopssync(cluster: &TestCluster, ns: &str) {
    let object = format!(
        "apiVersion: kubectl-gitops.io/v1alpha1\nkind: GitOpsSync\nmetadata:\n  name: sync-agent\n  namespace: {ns}\nspec: {{}}\n"
    );
    kubectl(cluster, &["apply", "-f", "-"], Some(&object));
}

fn report(cluster: &TestCluster, ns: &str, status: Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = cluster.client().await.unwrap();
        let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &gitopssync());
        api.patch_status(
            "sync-agent",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .expect("patching the status");
    });
}

/// A kubectl-style table as cells (columns are three spaces apart at least).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            line.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn status_shows_the_agent_and_how_far_behind_it_is() {
    let cluster = start();
    let kc = cluster.kubeconfig_path();
    let d = Dir::new();
    d.init();
    let kg = || d.kg().arg("--kubeconfig").arg(&kc);

    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-reviews.yaml"))
        .arg(sample("virtual-service-reviews-80-20.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "reviews 80/20"]).ok();
    let applied = d.git(&["rev-parse", "HEAD"]).trim().to_string();

    // No agent anywhere yet: said so, with how to deploy one.
    let run = kg().args(["-A", "status"]).ok();
    assert!(run.contains("team-a"), "{run}");
    let run = kg().args(["-A", "status"]).expect(0);
    assert!(
        run.stderr.contains("no GitOpsSync found in any namespace")
            && run.stderr.contains("kubectl kustomize manifests/agent"),
        "{}",
        run.stderr
    );

    create_gitopssync(&cluster, "team-a");
    report(
        &cluster,
        "team-a",
        json!({
            "revision": applied,
            "observedRevision": applied,
            "phase": "Synced",
            "syncedAt": "2026-01-01T00:00:00Z",
            "message": "applied 2 objects",
            "inventory": [
                {"group": "networking.istio.io", "kind": "DestinationRule", "name": "reviews"},
                {"group": "networking.istio.io", "kind": "VirtualService", "name": "reviews"}
            ],
            "drift": [],
            "drifted": 0
        }),
    );

    let out = kg().args(["-n", "team-a", "status"]).ok();
    let rows = table(&out);
    assert_eq!(
        rows[0],
        [
            "NAMESPACE",
            "REVISION",
            "STATE",
            "PHASE",
            "LAST SYNC",
            "DRIFT",
            "MESSAGE"
        ]
    );
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(
        rows[1][..4],
        ["team-a", &applied[..12], "in sync", "Synced"],
        "{out}"
    );
    assert!(rows[1][4].ends_with(" ago"), "{out}");
    assert_eq!(rows[1][5..], ["0", "applied 2 objects"], "{out}");
    // -o wide, as kubectl users type it: more columns
    let out = kg().args(["-n", "team-a", "status", "-o", "wide"]).ok();
    let rows = table(&out);
    assert_eq!(
        rows[0],
        [
            "NAMESPACE",
            "NAME",
            "REVISION",
            "HEAD",
            "STATE",
            "PHASE",
            "LAST SYNC",
            "DRIFT",
            "RUNNING",
            "MESSAGE"
        ]
    );
    assert_eq!(
        rows[1][..4],
        ["team-a", "sync-agent", &applied[..12], &applied[..12]],
        "{out}"
    );
    // (no lease was ever held here: not known to run or not)
    assert_eq!(rows[1][8], "-", "{out}");
    // and elsewhere it is the table
    let out = d.kg().args(["-n", "team-a", "validate", "-o", "wide"]).ok();
    assert!(out.starts_with("no findings"), "{out}");

    // A new commit for team-a: behind by 1. One for team-b only: still 1.
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-reviews-90-10.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "reviews 90/10"]).ok();
    let head = d.git(&["rev-parse", "HEAD"]).trim().to_string();
    d.kg()
        .args(["-n", "team-b", "stage"])
        .arg(sample("destination-rule-reviews.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "team-b"]).ok();
    let out = kg().args(["-n", "team-a", "status"]).ok();
    assert_eq!(table(&out)[1][2], "behind by 1 commit", "{out}");
    let json: Value =
        serde_json::from_str(&kg().args(["-n", "team-a", "status", "-o", "json"]).ok()).unwrap();
    assert_eq!(json[0]["behind"], 1);
    assert_eq!(json[0]["head"], head.as_str());
    assert_eq!(json[0]["revision"], applied.as_str());
    assert_eq!(json[0]["phase"], "Synced");
    assert_eq!(json[0]["syncedAt"], "2026-01-01T00:00:00Z");
    // the GitOpsSync's own names: drift is the list, drifted the count
    assert_eq!(json[0]["drift"], json!([]));
    assert_eq!(json[0]["drifted"], 0);

    // The agent reports drift: exit 1.
    report(
        &cluster,
        "team-a",
        json!({
            "phase": "Drifted",
            "drift": [{"group": "networking.istio.io", "kind": "VirtualService", "name": "reviews",
                       "reason": "spec.http[0].route[0].weight: Git has 80, live has 0"}],
            "drifted": 1,
            "message": "1 object drifted"
        }),
    );
    let run = kg().args(["-n", "team-a", "status"]).expect(1);
    let rows = table(&run.stdout);
    assert_eq!(rows[1][3], "Drifted", "{}", run.stdout);
    assert_eq!(rows[1][5..], ["1", "1 object drifted"], "{}", run.stdout);
    let json: Value = serde_json::from_str(
        &kg()
            .args(["-n", "team-a", "status", "-o", "json"])
            .expect(1)
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["drifted"], 1);
    assert_eq!(json[0]["drift"][0]["name"], "reviews");

    // The fleet: team-a's agent, and team-b's folder that nobody syncs.
    let run = kg().args(["-A", "status"]).expect(1);
    let rows = table(&run.stdout);
    assert_eq!(rows.len(), 3, "{}", run.stdout);
    assert_eq!(
        rows[1][..3],
        ["team-a", &applied[..12], "behind by 1 commit"],
        "{}",
        run.stdout
    );
    assert_eq!(
        rows[2],
        ["team-b", "-", "no agent", "-", "never", "0"],
        "{}",
        run.stdout
    );

    // The brake: suspend, then resume, through spec.suspend.
    let out = kg().args(["-n", "team-a", "suspend"]).ok();
    assert!(out.starts_with("suspended team-a/sync-agent"), "{out}");
    let get = |field: &str| {
        kubectl(
            &cluster,
            &[
                "get",
                "gitopssync",
                "sync-agent",
                "-n",
                "team-a",
                "-o",
                &format!("jsonpath={{{field}}}"),
            ],
            None,
        )
    };
    assert_eq!(get(".spec.suspend"), "true");
    assert_eq!(
        get(".status.phase"),
        "Drifted",
        "the status is the agent's, untouched"
    );
    let out = kg().args(["-n", "team-a", "status"]).expect(1).stdout;
    assert_eq!(table(&out)[1][3], "Drifted (suspended)", "{out}");
    kg().args(["-n", "team-a", "resume"]).ok();
    assert_eq!(get(".spec.suspend"), "false");

    // No agent in a namespace: a clear error.
    let err = kg().args(["-n", "team-c", "status"]).expect(2).stderr;
    assert!(
        err.contains("no GitOpsSync \"sync-agent\" in namespace \"team-c\""),
        "{err}"
    );
    let err = kg().args(["-n", "team-c", "suspend"]).expect(2).stderr;
    assert!(
        err.contains("no GitOpsSync \"sync-agent\" in namespace \"team-c\""),
        "{err}"
    );
}

/// A Failed agent is trouble (exit 1); `status --wait` waits for the agent
/// to apply HEAD and gives up after its timeout.
#[test]
fn status_exits_1_on_failed_and_waits_for_head() {
    let cluster = start();
    let kc = cluster.kubeconfig_path();
    let d = Dir::new();
    d.init();
    let kg = || d.kg().arg("--kubeconfig").arg(&kc).args(["-n", "team-a"]);
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-reviews.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "reviews"]).ok();
    let head = d.git(&["rev-parse", "HEAD"]).trim().to_string();
    create_gitopssync(&cluster, "team-a");
    report(
        &cluster,
        "team-a",
        json!({
            "revision": head,
            "observedRevision": head,
            "phase": "Failed",
            "message": "revision refused: namespaces/team-a/x.yaml: document 1, line 3: bad",
            "drift": [],
            "drifted": 0
        }),
    );
    let run = kg().arg("status").expect(1);
    assert!(run.stdout.contains("Failed"), "{}", run.stdout);

    // Failed at HEAD: --wait gives up after its timeout, with exit 1.
    let run = kg().args(["status", "--wait=1s"]).expect(1);
    assert_eq!(
        run.stderr,
        "error: gave up waiting after 1s: team-a: phase Failed (revision refused: namespaces/team-a/x.yaml: document 1, line 3: bad)\n",
    );

    // The agent catches up while `status --wait` waits: exit 0.
    let waiting = kg().args(["status", "--wait=60s"]).spawn();
    std::thread::sleep(std::time::Duration::from_secs(1));
    report(
        &cluster,
        "team-a",
        json!({"revision": head, "observedRevision": head, "phase": "Synced",
               "message": "in sync", "drift": [], "drifted": 0}),
    );
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("in sync"));
}
