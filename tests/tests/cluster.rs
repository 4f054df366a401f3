//! The test cluster is a real Kubernetes API server: the real `kubectl` and
//! kube-rs both work against it, with server-side apply, conflicts, schema
//! validation, the status subresource, printer columns, an audit log and
//! real faults. Needs `scripts/test-cluster.sh build` first.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gitops_tests::cluster::{istio_samples, shared_dir};
use gitops_tests::{FaultProxy, TestCluster};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

/// For polling only: nothing here asserts how long something took.
const PATIENCE: Duration = Duration::from_secs(240);

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("kubectl runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run kubectl and return its stdout; fail the test with its stderr if it failed.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn names_own_namespace(file: &Path) -> bool {
    fs::read_to_string(file)
        .expect("sample is readable")
        .lines()
        .any(|l| l.trim_start().starts_with("namespace:"))
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn destination_rules() -> ApiResource {
    resource(
        "networking.istio.io",
        "v1",
        "DestinationRule",
        "destinationrules",
    )
}

fn gitopssyncs() -> ApiResource {
    resource("kubectl-gitops.io", "v1alpha1", "GitOpsSync", "gitopssyncs")
}

fn reviews_destination_rule() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews"},
        "spec": {
            "host": "reviews",
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    })
}

fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[test]
fn kubectl_applies_conflicts_diffs_and_deletes_istio_samples() {
    let cluster = TestCluster::start().expect("test cluster starts");
    let samples = istio_samples().expect("Istio samples");
    assert!(samples.len() >= 20, "found only {samples:?}");
    let (elsewhere, namespaceless): (Vec<_>, Vec<_>) =
        samples.iter().partition(|f| names_own_namespace(f));

    // Every sample, server-side applied: those without a namespace into
    // team-a, the one that names istio-system into istio-system.
    let mut apply = cluster.kubectl();
    apply.args(["apply", "--server-side", "-n", "team-a"]);
    for file in &namespaceless {
        apply.arg("-f").arg(file);
    }
    let applied = ok(&mut apply);
    assert!(
        applied.contains("virtualservice.networking.istio.io/reviews serverside-applied"),
        "{applied}"
    );
    for file in &elsewhere {
        ok(cluster
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(file));
    }
    let gateways = ok(cluster.kubectl().args(["get", "gw", "-A", "-o", "name"]));
    assert!(gateways.contains("gateway.networking.istio.io/bookinfo-gateway"));
    assert!(gateways.contains("gateway.networking.istio.io/cert-manager-gateway"));

    let vs = ok(cluster.kubectl().args([
        "get",
        "vs",
        "-n",
        "team-a",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]));
    for name in ["bookinfo", "details", "productpage", "ratings", "reviews"] {
        assert!(
            vs.contains(&format!("    name: {name}\n")),
            "{name} in {vs}"
        );
    }
    assert!(vs.contains("manager: kubectl"), "managedFields in {vs}");
    assert!(vs.contains("operation: Apply"), "managedFields in {vs}");

    // A second field manager changing fields that kubectl owns: a conflict.
    let samples_dir = shared_dir().join("testdata").join("istio-samples");
    let reviews_80_20 = samples_dir.join("virtual-service-reviews-80-20.yaml");
    let as_other = |extra: &[&str]| {
        let mut cmd = cluster.kubectl();
        cmd.args([
            "apply",
            "--server-side",
            "--field-manager=other-team",
            "-n",
            "team-a",
            "-f",
        ])
        .arg(&reviews_80_20)
        .args(extra);
        cmd
    };
    let conflict = run(&mut as_other(&[]));
    assert!(!conflict.status.success(), "{}", stdout(&conflict));
    assert!(
        stderr(&conflict).contains("conflict"),
        "{}",
        stderr(&conflict)
    );
    ok(&mut as_other(&["--force-conflicts"]));
    let reviews = ok(cluster.kubectl().args([
        "get",
        "vs",
        "reviews",
        "-n",
        "team-a",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]));
    assert!(reviews.contains("weight: 80"), "{reviews}");
    assert!(reviews.contains("manager: other-team"), "{reviews}");

    // kubectl diff --server-side shows the change and exits 1.
    let reviews_90_10 = samples_dir.join("virtual-service-reviews-90-10.yaml");
    let diff = run(cluster
        .kubectl()
        .args([
            "diff",
            "--server-side",
            "--field-manager=other-team",
            "-n",
            "team-a",
            "-f",
        ])
        .arg(&reviews_90_10));
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    let shown = stdout(&diff);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with('-') && l.contains("weight: 80")),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with('+') && l.contains("weight: 90")),
        "{shown}"
    );
    // ... and changes nothing.
    let reviews = ok(cluster
        .kubectl()
        .args(["get", "vs", "reviews", "-n", "team-a", "-o", "yaml"]));
    assert!(reviews.contains("weight: 80"), "{reviews}");

    ok(cluster
        .kubectl()
        .args(["delete", "vs", "reviews", "-n", "team-a"]));
    let gone = run(cluster
        .kubectl()
        .args(["get", "vs", "reviews", "-n", "team-a"]));
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("NotFound"), "{}", stderr(&gone));

    // The server's schema rejects a string weight.
    let invalid = cluster.dir().join("invalid-vs.yaml");
    fs::write(
        &invalid,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: invalid\n\
         spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      \
         weight: \"fifty\"\n",
    )
    .expect("write invalid VirtualService");
    let rejected = run(cluster
        .kubectl()
        .args(["apply", "--server-side", "-n", "team-a", "-f"])
        .arg(&invalid));
    assert!(!rejected.status.success(), "{}", stdout(&rejected));
    let message = stderr(&rejected);
    assert!(
        message.contains(".spec.http[0].route[0].weight: expected numeric"),
        "{message}"
    );
    // A plain create goes through the OpenAPI schema validation instead.
    let created = run(cluster
        .kubectl()
        .args(["create", "-n", "team-a", "-f"])
        .arg(&invalid));
    assert!(!created.status.success(), "{}", stdout(&created));
    let message = stderr(&created);
    assert!(
        message.contains("spec.http[0].route[0].weight") && message.contains("integer"),
        "{message}"
    );
    let absent = run(cluster
        .kubectl()
        .args(["get", "vs", "invalid", "-n", "team-a"]));
    assert!(stderr(&absent).contains("NotFound"), "{}", stderr(&absent));
}

#[tokio::test]
async fn kube_client_applies_a_destination_rule_and_gitopssync_status_shows_in_kubectl() {
    let cluster = TestCluster::start().expect("test cluster starts");
    let client = cluster.client().await.expect("client");
    let discovery = kube::Discovery::new(client.clone())
        .run()
        .await
        .expect("kube-rs discovery");
    assert!(discovery.has_group("networking.istio.io"));
    assert!(discovery.has_group("kubectl-gitops.io"));
    let aggregated = kube::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("kube-rs aggregated discovery");
    assert!(aggregated.has_group("networking.istio.io"));
    assert!(aggregated.has_group("kubectl-gitops.io"));

    let drs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "team-a", &destination_rules());
    assert!(
        drs.list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    drs.patch(
        "reviews",
        &PatchParams::apply("test").force(),
        &Patch::Apply(reviews_destination_rule()),
    )
    .await
    .expect("server-side apply");
    let dr = drs.get("reviews").await.expect("read back");
    assert_eq!(dr.data["spec"]["host"], "reviews");
    assert_eq!(dr.data["spec"]["subsets"][1]["name"], "v2");
    let managers: Vec<_> = dr
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert_eq!(managers, ["test"]);
    let listed = drs.list(&Default::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    let by_kubectl = ok(cluster
        .kubectl()
        .args(["get", "dr", "-n", "team-a", "-o", "name"]));
    assert_eq!(
        by_kubectl.trim(),
        "destinationrule.networking.istio.io/reviews"
    );

    // A GitOpsSync and its status, written through the status subresource.
    let syncs: Api<DynamicObject> = Api::namespaced_with(client, "team-a", &gitopssyncs());
    let params = PatchParams::apply("sync-agent").force();
    syncs
        .patch(
            "sync-agent",
            &params,
            &Patch::Apply(json!({
                "apiVersion": "kubectl-gitops.io/v1alpha1",
                "kind": "GitOpsSync",
                "metadata": {"name": "sync-agent"},
                "spec": {"suspend": false},
            })),
        )
        .await
        .expect("create GitOpsSync");
    syncs
        .patch_status(
            "sync-agent",
            &params,
            &Patch::Apply(json!({
                "apiVersion": "kubectl-gitops.io/v1alpha1",
                "kind": "GitOpsSync",
                "status": {
                    "revision": "4f1c2ab",
                    "observedRevision": "4f1c2ab",
                    "phase": "Drifted",
                    "syncedAt": "2026-11-29T01:00:00Z",
                    "message": "2 objects differ from Git",
                    "inventory": [{"group": "networking.istio.io", "kind": "DestinationRule", "name": "reviews"}],
                    "drift": [
                        {"group": "networking.istio.io", "kind": "DestinationRule", "name": "reviews", "reason": "changed"},
                        {"group": "networking.istio.io", "kind": "VirtualService", "name": "reviews", "reason": "missing"},
                    ],
                    "drifted": 2,
                    "conditions": [{
                        "type": "Ready", "status": "False", "reason": "Drifted",
                        "message": "2 objects differ from Git",
                        "lastTransitionTime": "2026-11-29T01:00:00Z", "observedGeneration": 1,
                    }],
                },
            })),
        )
        .await
        .expect("patch status");

    let table = ok(cluster.kubectl().args(["get", "gos", "-n", "team-a"]));
    let mut lines = table.lines();
    let header: Vec<_> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "REVISION", "PHASE", "DRIFTED", "LAST", "SYNC", "AGE"
        ],
        "{table}"
    );
    let row: Vec<_> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        row[..4],
        ["sync-agent", "4f1c2ab", "Drifted", "2"],
        "{table}"
    );
    let wide = ok(cluster
        .kubectl()
        .args(["get", "gos", "-n", "team-a", "-o", "wide"]));
    assert!(wide.contains("2 objects differ from Git"), "{wide}");

    // Status is a subresource: a write to the main resource leaves it alone,
    // and an invalid phase is refused.
    syncs
        .patch(
            "sync-agent",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(json!({
                "apiVersion": "kubectl-gitops.io/v1alpha1",
                "kind": "GitOpsSync",
                "metadata": {"name": "sync-agent"},
                "status": {"phase": "Synced"},
            })),
        )
        .await
        .expect("apply to the main resource");
    let sync = syncs.get("sync-agent").await.expect("get");
    assert_eq!(sync.data["status"]["phase"], "Drifted");
    assert_eq!(sync.data["status"]["drift"][1]["reason"], "missing");
    let invalid = syncs
        .patch_status(
            "sync-agent",
            &params,
            &Patch::Apply(json!({
                "apiVersion": "kubectl-gitops.io/v1alpha1",
                "kind": "GitOpsSync",
                "status": {"phase": "Happy"},
            })),
        )
        .await
        .expect_err("phase Happy is not in the enum");
    assert_eq!(api_code(&invalid), Some(422), "{invalid}");
}

#[tokio::test]
async fn audit_log_names_the_paths_of_the_requests_a_test_made() {
    let cluster = TestCluster::start().expect("test cluster starts");
    let client = cluster.client().await.expect("client");
    let drs: Api<DynamicObject> = Api::namespaced_with(client, "audit-probe", &destination_rules());
    let missing = drs.get("nothing-here").await.expect_err("no such object");
    assert_eq!(api_code(&missing), Some(404));
    drs.patch(
        "reviews",
        &PatchParams::apply("test").force(),
        &Patch::Apply(reviews_destination_rule()),
    )
    .await
    .expect("apply");
    ok(cluster
        .kubectl()
        .args(["get", "dr", "reviews", "-n", "audit-probe"]));

    let base = "/apis/networking.istio.io/v1/namespaces/audit-probe/destinationrules";
    let events = cluster
        .wait_for_audit("the test's requests", |events| {
            // kube-rs sends no User-Agent; kubectl does.
            let seen = |verb: &str, path: &str, code: u16, agent: &str| {
                events.iter().any(|e| {
                    e.verb == verb
                        && e.path() == path
                        && e.code == Some(code)
                        && e.username == "gitops-admin"
                        && e.user_agent.starts_with(agent)
                })
            };
            seen("get", &format!("{base}/nothing-here"), 404, "")
                && seen("patch", &format!("{base}/reviews"), 201, "")
                && seen("get", &format!("{base}/reviews"), 200, "kubectl/")
        })
        .expect("audit log");
    let patch = events
        .iter()
        .find(|e| e.verb == "patch" && e.path() == format!("{base}/reviews"))
        .expect("patch event");
    let object = patch.object_ref.as_ref().expect("objectRef");
    assert_eq!(
        (
            object.api_group.as_str(),
            object.resource.as_str(),
            object.namespace.as_str(),
            object.name.as_str()
        ),
        (
            "networking.istio.io",
            "destinationrules",
            "audit-probe",
            "reviews"
        )
    );
    assert!(patch.request_uri.contains("fieldManager=test"), "{patch:?}");
}

/// Poll `get` until `done` accepts its result.
async fn poll_get(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    mut done: impl FnMut(&kube::Result<DynamicObject>) -> bool,
) -> Result<kube::Result<DynamicObject>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = api.get(name).await;
        if done(&got) {
            return Ok(got);
        }
        if Instant::now() > deadline {
            bail!("never saw {what}; last: {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// The fault tests run their steps in a function that returns errors and
// panic on one while the cluster is still alive: a TestCluster dropped
// during a panic keeps its folder (logs, audit.log) for a look.
#[tokio::test]
async fn stopping_etcd_makes_the_server_answer_5xx_and_starting_it_recovers() {
    let mut cluster = TestCluster::start().expect("test cluster starts");
    etcd_outage(&mut cluster).await.expect("etcd outage");
}

async fn etcd_outage(cluster: &mut TestCluster) -> Result<()> {
    let drs: Api<DynamicObject> =
        Api::namespaced_with(cluster.client().await?, "team-a", &destination_rules());
    drs.patch(
        "reviews",
        &PatchParams::apply("test").force(),
        &Patch::Apply(reviews_destination_rule()),
    )
    .await?;

    cluster.stop_etcd()?;
    let failed = poll_get(
        &drs,
        "reviews",
        "a 5xx with etcd stopped",
        |got| matches!(got, Err(e) if api_code(e).is_some_and(|c| c >= 500)),
    )
    .await?;
    let code = failed.err().as_ref().and_then(api_code);
    let path = "/apis/networking.istio.io/v1/namespaces/team-a/destinationrules/reviews";
    cluster.wait_for_audit("the 5xx", |events| {
        events
            .iter()
            .any(|e| e.path() == path && e.code == code && e.verb == "get")
    })?;

    cluster.start_etcd()?;
    let back = poll_get(&drs, "reviews", "the object again", |got| got.is_ok())
        .await?
        .context("get")?;
    assert_eq!(back.data["spec"]["host"], "reviews");
    Ok(())
}

#[tokio::test]
async fn a_stopped_server_refuses_connections_and_a_restarted_one_has_the_data() {
    let mut cluster = TestCluster::start().expect("test cluster starts");
    server_restart(&mut cluster).await.expect("server restart");
}

async fn server_restart(cluster: &mut TestCluster) -> Result<()> {
    let client = cluster.client().await?;
    let drs: Api<DynamicObject> = Api::namespaced_with(client, "team-a", &destination_rules());
    drs.patch(
        "reviews",
        &PatchParams::apply("test").force(),
        &Patch::Apply(reviews_destination_rule()),
    )
    .await?;

    cluster.stop_server()?;
    let refused = drs.get("reviews").await.expect_err("server is stopped");
    assert_eq!(api_code(&refused), None, "not an API answer: {refused}");
    assert!(
        std::net::TcpStream::connect(cluster.server_addr()).is_err(),
        "nothing listens on {}",
        cluster.server_addr()
    );

    cluster.start_server()?;
    let back = poll_get(&drs, "reviews", "the object again", |got| got.is_ok())
        .await?
        .context("get")?;
    assert_eq!(back.data["spec"]["subsets"][0]["name"], "v1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_proxy_delays_cuts_and_refuses_connections() {
    let cluster = TestCluster::start().expect("test cluster starts");
    proxy_faults(&cluster).await.expect("proxy faults");
}

async fn proxy_faults(cluster: &TestCluster) -> Result<()> {
    let proxy = FaultProxy::start(cluster.server_addr()).await?;
    let drs: Api<DynamicObject> = Api::namespaced_with(
        cluster.client_via(&proxy.url()).await?,
        "team-a",
        &destination_rules(),
    );
    drs.patch(
        "reviews",
        &PatchParams::apply("test").force(),
        &Patch::Apply(reviews_destination_rule()),
    )
    .await?;
    assert!(proxy.accepted() >= 1);

    // Latency: a lower bound only, which holds however busy the machine is.
    let latency = Duration::from_millis(300);
    proxy.set_latency(latency);
    let started = Instant::now();
    drs.get("reviews").await?;
    assert!(started.elapsed() >= latency);

    // A request in flight when every connection is cut, with new ones
    // refused, fails without an answer from the server.
    proxy.set_latency(Duration::from_secs(2));
    let accepted = proxy.accepted();
    let fresh = cluster.client_via(&proxy.url()).await?;
    let in_flight = tokio::spawn(async move {
        Api::<DynamicObject>::namespaced_with(fresh, "team-a", &destination_rules())
            .get("reviews")
            .await
    });
    let deadline = Instant::now() + PATIENCE;
    while proxy.accepted() == accepted {
        assert!(
            Instant::now() < deadline,
            "the request never reached the proxy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set_refuse(true);
    proxy.cut();
    let cut = in_flight.await?.expect_err("cut connection");
    assert_eq!(api_code(&cut), None, "not an API answer: {cut}");

    proxy.set_refuse(false);
    proxy.set_latency(Duration::ZERO);
    let back = poll_get(&drs, "reviews", "the object again", |got| got.is_ok())
        .await?
        .context("get")?;
    assert_eq!(back.data["spec"]["host"], "reviews");
    Ok(())
}
