//! One real Kubernetes API server per test.
//!
//! [`TestCluster::start`] gives a test its own etcd and API server (the
//! `k8s.io/apiextensions-apiserver` build of `scripts/test-cluster.sh build`)
//! on free loopback ports, with fresh certificates and the Istio and
//! `GitOpsSync` CRDs installed. The script prepares the folder (certs,
//! kubeconfig, audit policy, one argv file per process) and installs the
//! CRDs; this module starts the two processes itself so that it owns them:
//! it can stop and restart each for fault tests, and kills both when the
//! [`TestCluster`] is dropped, a panicking test included.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize;

/// How long a start or restart may take before it is called failed. Generous:
/// a start takes about a second, but CI's two cores may be busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);
/// Tries at a start, each on new ports: a free port picked here may be taken
/// by someone else before etcd or the server binds it.
const START_ATTEMPTS: usize = 3;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The `shared/` folder beside the repository (test data: Istio's CRDs and samples).
pub fn shared_dir() -> PathBuf {
    repo_root().join("..").join("shared")
}

/// The Istio samples in `shared/testdata/istio-samples`, sorted.
pub fn istio_samples() -> Result<Vec<PathBuf>> {
    let dir = shared_dir().join("testdata").join("istio-samples");
    let mut files = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The cache of `scripts/test-cluster.sh build`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("GITOPS_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("neither GITOPS_CACHE_DIR nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("kubectl-gitops"))
}

/// The API server and etcd binaries: `$GITOPS_TEST_APISERVER` and
/// `$GITOPS_TEST_ETCD`, or the current build in the cache.
pub fn binaries() -> Result<(PathBuf, PathBuf)> {
    let cache_bin = cache_dir()?.join("bin");
    let find = |var: &str, name: &str| -> Result<PathBuf> {
        let path = std::env::var_os(var).map_or_else(|| cache_bin.join(name), PathBuf::from);
        if path.is_file() {
            Ok(path)
        } else {
            Err(anyhow!(
                "no {name} at {} (from ${var} or the build cache): run scripts/test-cluster.sh build",
                path.display()
            ))
        }
    };
    Ok((
        find("GITOPS_TEST_APISERVER", "test-apiserver")?,
        find("GITOPS_TEST_ETCD", "etcd")?,
    ))
}

/// One request as the server's audit log recorded it (level Metadata, stage
/// ResponseComplete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// The path and query, e.g. `/apis/networking.istio.io/v1/namespaces/team-a/virtualservices?limit=500`.
    pub request_uri: String,
    pub username: String,
    pub user_agent: String,
    pub object_ref: Option<AuditObjectRef>,
    /// The HTTP status code of the response.
    pub code: Option<u16>,
    /// `ResponseComplete`, or `Panic` (`ResponseStarted` for watches).
    pub stage: String,
    /// When the server received the request, in microseconds since the
    /// epoch (0 when the log has no time).
    pub received_us: i64,
}

impl AuditEvent {
    /// The request's path, without the query.
    pub fn path(&self) -> &str {
        self.request_uri.split('?').next().unwrap_or_default()
    }
}

/// The object a request was about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditObjectRef {
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub api_group: String,
    pub api_version: String,
    pub subresource: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuditEvent {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    verb: String,
    #[serde(rename = "requestURI", default)]
    request_uri: String,
    #[serde(default)]
    user: RawUser,
    #[serde(default)]
    user_agent: String,
    object_ref: Option<AuditObjectRef>,
    response_status: Option<RawStatus>,
    #[serde(default)]
    request_received_timestamp: String,
}

#[derive(Deserialize, Default)]
struct RawUser {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
struct RawStatus {
    code: Option<u16>,
}

impl From<RawAuditEvent> for AuditEvent {
    fn from(raw: RawAuditEvent) -> Self {
        AuditEvent {
            verb: raw.verb,
            request_uri: raw.request_uri,
            username: raw.user.username,
            user_agent: raw.user_agent,
            object_ref: raw.object_ref,
            code: raw.response_status.and_then(|s| s.code),
            stage: raw.stage,
            received_us: raw
                .request_received_timestamp
                .parse::<k8s_openapi::jiff::Timestamp>()
                .map(|t| t.as_microsecond())
                .unwrap_or(0),
        }
    }
}

/// A running test cluster: etcd and the API server, in a temporary folder
/// that holds the certificates, `kubeconfig`, `audit.log` and both logs.
#[derive(Debug)]
pub struct TestCluster {
    dir: tempfile::TempDir,
    server_port: u16,
    etcd_port: u16,
    etcd_argv: Vec<String>,
    server_argv: Vec<String>,
    etcd: Option<Child>,
    server: Option<Child>,
    kubectl_calls: AtomicUsize,
    crds_installed: bool,
}

impl TestCluster {
    /// Start etcd and the API server on free loopback ports and install the
    /// CRDs; returns when `kubectl` sees every CRD Established.
    pub fn start() -> Result<TestCluster> {
        let (apiserver, etcd) = binaries()?;
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            match Self::try_start(&apiserver, &etcd) {
                Ok(cluster) => return Ok(cluster),
                Err(error) => {
                    eprintln!("test cluster: start attempt {attempt} failed: {error:#}");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no start attempt was made")))
    }

    fn try_start(apiserver: &Path, etcd: &Path) -> Result<TestCluster> {
        let dir = tempfile::Builder::new()
            .prefix("gitops-cluster-")
            .tempdir()
            .context("creating the test cluster's folder")?;
        let ports = free_ports::<3>()?;
        let [etcd_port, peer_port, server_port] = ports;
        run_script(
            Command::new("bash")
                .arg(script())
                .arg("prepare")
                .arg(dir.path())
                .env("GITOPS_TEST_APISERVER", apiserver)
                .env("GITOPS_TEST_ETCD", etcd)
                .env("GITOPS_ETCD_PORT", etcd_port.to_string())
                .env("GITOPS_ETCD_PEER_PORT", peer_port.to_string())
                .env("GITOPS_SERVER_PORT", server_port.to_string()),
        )
        .context("scripts/test-cluster.sh prepare")?;
        let mut cluster = TestCluster {
            etcd_argv: read_argv(&dir.path().join("etcd.args"))?,
            server_argv: read_argv(&dir.path().join("apiserver.args"))?,
            dir,
            server_port,
            etcd_port,
            etcd: None,
            server: None,
            kubectl_calls: AtomicUsize::new(0),
            crds_installed: false,
        };
        cluster.start_etcd()?;
        cluster.start_server()?;
        run_script(
            Command::new("bash")
                .arg(script())
                .arg("install-crds")
                .arg(cluster.dir()),
        )
        .context("installing the CRDs (scripts/test-cluster.sh install-crds)")?;
        cluster.crds_installed = true;
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// The folder holding `kubeconfig`, the certificates, `audit.log`,
    /// `etcd.log` and `apiserver.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir().join("kubeconfig")
    }

    /// `https://127.0.0.1:<port>`
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.server_port)
    }

    pub fn server_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.server_port))
    }

    /// The client configuration of the kubeconfig (namespace `default`).
    pub async fn config(&self) -> Result<kube::Config> {
        let path = self.kubeconfig_path();
        let kubeconfig =
            Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading {}", path.display()))
    }

    /// A client for this cluster, built from its kubeconfig.
    pub async fn client(&self) -> Result<kube::Client> {
        kube::Client::try_from(self.config().await?).context("building a kube client")
    }

    /// A client that reaches the server through `url` (a
    /// [`FaultProxy`](crate::proxy::FaultProxy) on loopback, say) with the
    /// cluster's certificates.
    pub async fn client_via(&self, url: &str) -> Result<kube::Client> {
        let mut config = self.config().await?;
        config.cluster_url = url.parse().with_context(|| format!("parsing URL {url}"))?;
        kube::Client::try_from(config).context("building a kube client")
    }

    /// The real `kubectl` with `--kubeconfig` and a fresh `--cache-dir` of
    /// its own (a stale discovery cache makes kubectl skip discovery).
    pub fn kubectl(&self) -> Command {
        let n = self.kubectl_calls.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .arg("--cache-dir")
            .arg(self.dir().join("kubectl-cache").join(n.to_string()))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// Every request the server has logged so far, oldest first. An event is
    /// written as its response completes, so a test that looks for its own
    /// requests polls (see [`TestCluster::wait_for_audit`]).
    pub fn audit(&self) -> Result<Vec<AuditEvent>> {
        let path = self.dir().join("audit.log");
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        let mut events = Vec::new();
        let mut lines = BufReader::new(file).lines().peekable();
        while let Some(line) = lines.next() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            match serde_json::from_str::<RawAuditEvent>(&line) {
                Ok(raw) => events.push(raw.into()),
                // The server may be writing the last line right now.
                Err(_) if lines.peek().is_none() => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: bad line {line}", path.display()));
                }
            }
        }
        Ok(events)
    }

    /// Poll the audit log until `pred` holds for the events, up to two minutes.
    pub fn wait_for_audit(
        &self,
        what: &str,
        mut pred: impl FnMut(&[AuditEvent]) -> bool,
    ) -> Result<Vec<AuditEvent>> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let events = self.audit()?;
            if pred(&events) {
                return Ok(events);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} never showed {what} ({} events)",
                    self.dir().join("audit.log").display(),
                    events.len()
                );
            }
            sleep(POLL);
        }
    }

    /// Stop etcd (SIGTERM, then SIGKILL); its data stays.
    pub fn stop_etcd(&mut self) -> Result<()> {
        stop(self.etcd.take(), "etcd")
    }

    /// Start etcd again, on the same port with the same data, and wait until
    /// it accepts connections and, when the API server runs, until that
    /// serves from etcd again (its etcd client reconnects with a backoff of
    /// its own, so for a while after etcd listens the server still answers
    /// "context deadline exceeded").
    pub fn start_etcd(&mut self) -> Result<()> {
        if self.etcd.is_some() {
            bail!("etcd is already running");
        }
        self.etcd = Some(spawn(&self.etcd_argv, &self.dir().join("etcd.log"))?);
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.etcd_port));
        while TcpStream::connect_timeout(&addr, POLL).is_err() {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("etcd did not listen on {addr} within {READY_TIMEOUT:?}");
            }
            sleep(POLL);
        }
        if self.server.is_some() {
            self.wait_ready()?;
        }
        Ok(())
    }

    /// Stop the API server (SIGTERM, then SIGKILL): connections are refused.
    pub fn stop_server(&mut self) -> Result<()> {
        stop(self.server.take(), "the API server")
    }

    /// Start the API server again, on the same port with the same
    /// certificates, and wait until it serves custom resources again (see
    /// [`TestCluster::wait_ready`]).
    pub fn start_server(&mut self) -> Result<()> {
        if self.server.is_some() {
            bail!("the API server is already running");
        }
        self.server = Some(spawn(&self.server_argv, &self.dir().join("apiserver.log"))?);
        self.wait_ready()
    }

    /// Wait until `/livez` answers ok and, once the CRDs are installed, until
    /// custom resources are served: right after a start the server answers
    /// 503 or 404 for them until its CRD informer has synced. (`/readyz`
    /// never turns ok: informers for the missing core API never sync.)
    pub fn wait_ready(&mut self) -> Result<()> {
        self.wait_for_raw("/livez")?;
        if self.crds_installed {
            self.wait_for_raw("/apis/kubectl-gitops.io/v1alpha1/gitopssyncs?limit=1")?;
        }
        Ok(())
    }

    fn wait_for_raw(&mut self, path: &str) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            let ok = self
                .kubectl()
                .args(["get", "--request-timeout=20s"])
                .arg(format!("--raw={path}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("running kubectl")?;
            if ok.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "GET {path} did not succeed within {READY_TIMEOUT:?}; log: {}",
                    self.dir().join("apiserver.log").display()
                );
            }
            sleep(POLL);
        }
    }

    /// An error naming the log of a started process that has exited.
    fn check_alive(&mut self) -> Result<()> {
        for (child, name, log) in [
            (&mut self.etcd, "etcd", "etcd.log"),
            (&mut self.server, "the API server", "apiserver.log"),
        ] {
            if let Some(process) = child
                && let Some(status) = process.try_wait().context("waiting for a child")?
            {
                *child = None;
                let log = self.dir.path().join(log);
                bail!(
                    "{name} exited ({status}); end of {}:\n{}",
                    log.display(),
                    tail(&log, 20)
                );
            }
        }
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for mut child in [self.server.take(), self.etcd.take()].into_iter().flatten() {
            // Errors only mean the process has already exited.
            let _ = child.kill();
            let _ = child.wait();
        }
        // Every request of the agent and the plugin in this test: in the
        // agent's namespace, or discovery (crate::scope).
        let mut violations = Vec::new();
        if !std::thread::panicking() {
            match self.audit() {
                Ok(events) => {
                    let report = crate::scope::check(&events);
                    report.record();
                    // what the agents needed, for the Role (rbac-check)
                    crate::rbac::record(&crate::rbac::used(&events));
                    violations = report.violations;
                }
                Err(e) => violations.push(format!("the audit log is unreadable: {e:#}")),
            }
        }
        if std::thread::panicking()
            || !violations.is_empty()
            || std::env::var_os("GITOPS_KEEP_CLUSTER").is_some()
        {
            self.dir.disable_cleanup(true);
            eprintln!(
                "test cluster: kept {} (logs, audit.log, kubeconfig)",
                self.dir().display()
            );
        }
        assert!(
            violations.is_empty(),
            "requests outside their namespace (other than discovery), from {}/audit.log:\n{}",
            self.dir().display(),
            violations.join("\n")
        );
    }
}

fn script() -> PathBuf {
    repo_root().join("scripts").join("test-cluster.sh")
}

fn run_script(cmd: &mut Command) -> Result<()> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .context("running bash scripts/test-cluster.sh")?;
    if output.status.success() {
        Ok(())
    } else {
        bail!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    }
}

/// N distinct loopback ports that were free a moment ago.
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
        *port = listener.local_addr()?.port();
        listeners.push(listener);
    }
    Ok(ports)
}

fn read_argv(path: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let argv: Vec<String> = text.lines().map(str::to_owned).collect();
    if argv.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(argv)
}

fn spawn(argv: &[String], log: &Path) -> Result<Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| anyhow!("empty command line"))?;
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {program}"))
}

fn stop(child: Option<Child>, name: &str) -> Result<()> {
    let Some(mut child) = child else {
        bail!("{name} is not running");
    };
    // std's Child::kill is SIGKILL; ask politely first.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            child.kill().with_context(|| format!("killing {name}"))?;
            child.wait()?;
            return Ok(());
        }
        sleep(POLL);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
