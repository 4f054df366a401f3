//! Helpers of the end-to-end tests: the real `sync-agent` binary as a child
//! process, against a real API server ([`TestCluster`]) fed by a git-sync
//! volume ([`GitSync`]), observed through `kubectl`, the server's audit log
//! and the agent's own HTTP endpoints.
#![allow(dead_code)]
// each test binary uses a different part of it
// Test helpers: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

pub use gitops_tests::{AuditEvent, TestCluster, gitsync::GitSync};
use serde_json::Value;

/// How long anything may take before a test gives up. Generous: the
/// machines are small and busy; tests poll and never assert on time.
pub const WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

/// A fresh cluster, or a clear message on how to get one.
pub fn cluster() -> TestCluster {
    TestCluster::start().unwrap_or_else(|e| {
        panic!("no test cluster ({e:#}); build it once with scripts/test-cluster.sh build")
    })
}

/// The Istio samples folder (`../shared/testdata/istio-samples`).
pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/istio-samples")
}

/// The Bookinfo files of the first revision, as `(sample, file in the
/// namespace folder)`. A consistent set: each object once (several samples
/// define the same `reviews` VirtualService). 12 objects: a Gateway, a
/// ServiceEntry, 5 DestinationRules and 5 VirtualServices.
pub const BOOKINFO: &[(&str, &str)] = &[
    ("bookinfo-gateway.yaml", "bookinfo-gateway.yaml"),
    ("destination-rule-all.yaml", "destination-rule-all.yaml"),
    (
        "egress-rule-google-apis.yaml",
        "egress-rule-google-apis.yaml",
    ),
    (
        "virtual-service-reviews-80-20.yaml",
        "virtual-service-reviews.yaml",
    ),
    (
        "virtual-service-ratings-test-abort.yaml",
        "virtual-service-ratings.yaml",
    ),
    (
        "virtual-service-details-v2.yaml",
        "virtual-service-details.yaml",
    ),
];

pub const BOOKINFO_OBJECTS: usize = 12;

/// Put the Bookinfo set into `namespaces/<ns>/` of the source repo.
pub fn write_bookinfo(gs: &GitSync, ns: &str) {
    for (sample, file) in BOOKINFO {
        gs.copy_in(samples().join(sample), format!("namespaces/{ns}/{file}"))
            .unwrap();
    }
}

/// A git-sync volume with reviews' DestinationRule and an 80/20
/// VirtualService for team-a, published; and its revision.
pub fn reviews_volume() -> (GitSync, String) {
    let gs = GitSync::new().unwrap();
    gs.write("namespaces/team-a/dr-reviews.yaml", dr("reviews"))
        .unwrap();
    gs.write("namespaces/team-a/vs-reviews.yaml", vs("reviews", 80, 20))
        .unwrap();
    let rev = gs.commit_and_publish("reviews 80/20").unwrap();
    (gs, rev)
}

/// [`reviews_volume`] and an agent that has synced it.
pub fn synced_agent(cluster: &TestCluster, extra: &[&str]) -> (GitSync, Agent, String) {
    let (gs, rev) = reviews_volume();
    let agent = Agent::gitsync(cluster, &gs, "team-a", extra);
    wait_status(&agent, cluster, "Synced", Some(&rev));
    (gs, agent, rev)
}

/// A fault proxy in front of `cluster`'s server, the runtime it runs on
/// (keep it alive as long as the proxy), and a kubeconfig through it.
pub fn proxied(
    cluster: &TestCluster,
) -> (tokio::runtime::Runtime, gitops_tests::FaultProxy, PathBuf) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime
        .block_on(gitops_tests::FaultProxy::start(cluster.server_addr()))
        .unwrap();
    let kubeconfig = kubeconfig_via(cluster, &proxy);
    (runtime, proxy, kubeconfig)
}

/// A kubeconfig of `cluster` that reaches its server through `proxy`.
pub fn kubeconfig_via(cluster: &TestCluster, proxy: &gitops_tests::FaultProxy) -> PathBuf {
    let kubeconfig = cluster.dir().join("kubeconfig-via-proxy");
    let text = fs::read_to_string(cluster.kubeconfig_path()).unwrap();
    assert!(text.contains(&cluster.server_url()));
    fs::write(
        &kubeconfig,
        text.replace(&cluster.server_url(), &proxy.url()),
    )
    .unwrap();
    kubeconfig
}

/// A small VirtualService with two weighted routes.
pub fn vs(name: &str, v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts:\n  - {name}\n  http:\n  - route:\n    - destination:\n        host: {name}\n        subset: v1\n      weight: {v1}\n    - destination:\n        host: {name}\n        subset: v2\n      weight: {v2}\n"
    )
}

/// A DestinationRule with subsets v1 and v2.
pub fn dr(name: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\nspec:\n  host: {name}\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n  - name: v2\n    labels:\n      version: v2\n"
    )
}

/// A free loopback port (free a moment ago).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The agent binary as a child process; killed when dropped.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    pub port: u16,
    pub namespace: String,
    logs: tempfile::TempDir,
}

impl Agent {
    /// `sync-agent --kubeconfig <cluster> --listen 127.0.0.1:<free> <args>`.
    pub fn start(cluster: &TestCluster, namespace: &str, args: &[&str]) -> Agent {
        Self::start_with(&cluster.kubeconfig_path(), namespace, args)
    }

    /// [`Agent::start`] with another kubeconfig (through a proxy, say).
    pub fn start_with(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Agent {
        Self::start_with_env(kubeconfig, namespace, args, &[])
    }

    /// [`Agent::start_with`] with environment variables (`POD_NAME`, say).
    pub fn start_with_env(
        kubeconfig: &Path,
        namespace: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let mut cmd = command_with(kubeconfig, namespace, args);
        cmd.envs(env.iter().copied());
        Agent::spawn(cmd, namespace)
    }

    /// Run `cmd` (from [`command_with`]) with `--listen 127.0.0.1:<free>`.
    pub fn spawn(mut cmd: Command, namespace: &str) -> Agent {
        let port = free_port();
        let logs = tempfile::Builder::new().prefix("agent-").tempdir().unwrap();
        let stderr = fs::File::create(logs.path().join("stderr")).unwrap();
        let stdout = fs::File::create(logs.path().join("stdout")).unwrap();
        let child = cmd
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawning sync-agent");
        Agent {
            child: Some(child),
            port,
            namespace: namespace.to_string(),
            logs,
        }
    }

    /// An agent on a git-sync volume: `--repo <root> --link repo -n <ns>`.
    pub fn gitsync(cluster: &TestCluster, gs: &GitSync, ns: &str, extra: &[&str]) -> Agent {
        Agent::gitsync_via(&cluster.kubeconfig_path(), gs, ns, extra, &[])
    }

    /// [`Agent::gitsync`] with another kubeconfig (through a proxy, say) and
    /// environment variables.
    pub fn gitsync_via(
        kubeconfig: &Path,
        gs: &GitSync,
        ns: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let root = gs.root();
        let mut args = vec!["--repo", root.to_str().unwrap(), "--link", gs.link_name()];
        args.extend_from_slice(extra);
        Agent::start_with_env(kubeconfig, ns, &args, env)
    }

    /// SIGKILL: no chance to finish or release anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// stderr so far (the logs).
    pub fn log(&self) -> String {
        fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    /// `GET path` on the agent's HTTP port: `(status, body)`, `None` when
    /// it does not answer (yet).
    pub fn http(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// The `/metrics` text (waits until the server answers).
    pub fn metrics(&self) -> String {
        self.wait("/metrics to answer", || {
            self.http("/metrics").map(|(_, b)| b)
        })
    }

    /// One sample's value from `/metrics`, e.g. `gitops_sync_total{result="success"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.http("/metrics")?.1;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Passes that ended well, a sync or a resync that found nothing to do
    /// (`gitops_sync_total` of `success` and `unchanged`).
    pub fn passes(&self) -> Option<f64> {
        Some(
            self.metric("gitops_sync_total{result=\"success\"}")?
                + self.metric("gitops_sync_total{result=\"unchanged\"}")?,
        )
    }

    /// Resident memory of the agent process, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("agent already stopped");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the agent did not exit on SIGTERM; log:\n{}", self.log());
            }
            sleep(POLL);
        }
    }

    /// Poll `f` until it gives a value; panic with the agent's log after
    /// [`WAIT`], or at once if the agent has exited.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if self.has_exited() {
                panic!(
                    "the agent exited while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; agent log:\n{}", self.log());
            }
            sleep(POLL);
        }
    }

    /// Whether the process has exited (a zombie not yet waited for, or gone).
    fn has_exited(&self) -> bool {
        if self.child.is_none() {
            return false; // stopped on purpose
        }
        match fs::read_to_string(format!("/proc/{}/stat", self.pid())) {
            // the state is the first field after the `(comm)`
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z"),
            Err(_) => true,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- agent {} log ---\n{}", self.namespace, self.log());
        }
    }
}

/// The agent command line with the cluster's kubeconfig and debug logs.
pub fn agent_command(cluster: &TestCluster, namespace: &str, args: &[&str]) -> Command {
    command_with(&cluster.kubeconfig_path(), namespace, args)
}

/// The agent command line with `kubeconfig` and debug logs.
pub fn command_with(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sync-agent"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--namespace")
        .arg(namespace)
        .args(args)
        .env("RUST_LOG", "info,sync_agent=debug")
        .env_remove("KUBECONFIG")
        .env_remove("POD_NAMESPACE")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("GITOPS_") && k != "GITOPS_CACHE_DIR" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Run the agent to completion (`--once`, `--dry-run`).
pub fn run_agent(cluster: &TestCluster, namespace: &str, args: &[&str]) -> Output {
    agent_command(cluster, namespace, args)
        .arg("--listen=off")
        .output()
        .expect("running sync-agent")
}

/// `kubectl ... -o json` (or any kubectl) that must succeed; stdout.
pub fn kubectl(cluster: &TestCluster, args: &[&str]) -> String {
    let out = cluster.kubectl().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply -f -` of `yaml` with extra flags; must succeed.
pub fn kubectl_apply(cluster: &TestCluster, yaml: &str, args: &[&str]) {
    let mut child = cluster
        .kubectl()
        .arg("apply")
        .args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One object as JSON, `None` when it does not exist.
pub fn get(cluster: &TestCluster, ns: &str, resource: &str, name: &str) -> Option<Value> {
    let out = cluster
        .kubectl()
        .args([
            "get",
            "-n",
            ns,
            resource,
            name,
            "-o",
            "json",
            "--ignore-not-found",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl get {resource} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&out.stdout).unwrap())
    }
}

/// The names of every object of `resource` in `ns`, sorted.
pub fn names(cluster: &TestCluster, ns: &str, resource: &str) -> Vec<String> {
    let text = kubectl(cluster, &["get", "-n", ns, resource, "-o", "json"]);
    let list: Value = serde_json::from_str(&text).unwrap();
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The agent's `GitOpsSync` status (`Null` until there is one).
pub fn gos_status(cluster: &TestCluster, ns: &str) -> Value {
    get(cluster, ns, "gitopssyncs", "sync-agent")
        .map(|o| o["status"].clone())
        .unwrap_or(Value::Null)
}

/// Wait until the status shows `phase` at `revision` (when given).
pub fn wait_status(
    agent: &Agent,
    cluster: &TestCluster,
    phase: &str,
    revision: Option<&str>,
) -> Value {
    agent.wait(&format!("GitOpsSync phase {phase} at {revision:?}"), || {
        let s = gos_status(cluster, &agent.namespace);
        let rev_ok = revision.is_none_or(|r| s["revision"] == r);
        (s["phase"] == phase && rev_ok).then_some(s)
    })
}

/// Requests that changed objects (create, update, patch, delete) in `ns`,
/// other than the agent's own GitOpsSync, made by `sync-agent`.
pub fn agent_object_writes(events: &[AuditEvent], ns: &str) -> Vec<AuditEvent> {
    events
        .iter()
        .filter(|e| e.user_agent.starts_with("sync-agent/"))
        .filter(|e| is_write(e))
        .filter(|e| {
            e.object_ref
                .as_ref()
                .is_some_and(|o| o.namespace == ns && o.resource != "gitopssyncs")
        })
        .cloned()
        .collect()
}

/// Status writes of the agent in `ns`.
pub fn agent_status_writes(events: &[AuditEvent], ns: &str) -> Vec<AuditEvent> {
    events
        .iter()
        .filter(|e| e.user_agent.starts_with("sync-agent/") && is_write(e))
        .filter(|e| {
            e.object_ref
                .as_ref()
                .is_some_and(|o| o.namespace == ns && o.resource == "gitopssyncs")
        })
        .cloned()
        .collect()
}

pub fn is_write(e: &AuditEvent) -> bool {
    matches!(
        e.verb.as_str(),
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// Audit events from index `since` on.
pub fn audit_since(cluster: &TestCluster, since: usize) -> Vec<AuditEvent> {
    let mut all = cluster.audit().unwrap();
    let since = since.min(all.len());
    all.split_off(since)
}

/// `(verb, resource/name)` of events, for readable assertions.
pub fn summarize(events: &[AuditEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let o = e.object_ref.clone().unwrap_or_default();
            format!("{} {}/{} ({})", e.verb, o.resource, o.name, e.path())
        })
        .collect()
}
