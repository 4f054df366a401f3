//! A real Prometheus per test: Debian's `prometheus` package, fetched and
//! unpacked by `scripts/test-cluster.sh build` (never installed, which would
//! start a system service), started on a free loopback port with a
//! generated config that scrapes the given targets every second, and killed
//! when dropped. Facts and pitfalls: `../shared/recipes/prometheus.md`.

use std::{
    fs,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::cluster::cache_dir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The `prometheus` binary: `$GITOPS_TEST_PROMETHEUS`, or the build cache's.
pub fn binary() -> Result<PathBuf> {
    let path = match std::env::var_os("GITOPS_TEST_PROMETHEUS") {
        Some(p) => PathBuf::from(p),
        None => cache_dir()?.join("bin").join("prometheus"),
    };
    if !path.is_file() {
        bail!(
            "no prometheus at {}: run scripts/test-cluster.sh build",
            path.display()
        );
    }
    Ok(path)
}

/// One running Prometheus.
#[derive(Debug)]
pub struct TestPrometheus {
    dir: tempfile::TempDir,
    port: u16,
    targets: Vec<SocketAddr>,
    child: Option<Child>,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TestPrometheus {
    /// Start one that scrapes `targets` (`/metrics`, every second).
    pub fn start(targets: &[SocketAddr]) -> Result<TestPrometheus> {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .context("creating the Prometheus folder")?;
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: mesh\n  static_configs:\n  - targets: [{list}]\n"
            ),
        )?;
        let mut this = TestPrometheus {
            dir,
            port: free_port()?,
            targets: targets.to_vec(),
            child: None,
        };
        this.restart()?;
        Ok(this)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn targets(&self) -> &[SocketAddr] {
        &self.targets
    }

    /// Start it again (same port, same data) after [`TestPrometheus::stop`].
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = fs::File::create(self.dir.path().join("prometheus.log"))?;
        let child = Command::new(binary()?)
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.ready() {
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                bail!(
                    "prometheus exited with {status}: {}",
                    self.log().unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                bail!("prometheus not ready within {READY_TIMEOUT:?}");
            }
            sleep(Duration::from_millis(100));
        }
        // Ready is not scraping yet: Prometheus applies its targets a few
        // seconds after start. Wait until each target was scraped once.
        let want = self.targets.len();
        while self.targets_up()? < want {
            if Instant::now() >= deadline {
                bail!("prometheus has not scraped its {want} target(s) within {READY_TIMEOUT:?}");
            }
            sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// How many targets the last scrape found up.
    fn targets_up(&self) -> Result<usize> {
        let body = self.get("/api/v1/query?query=count(up%3D%3D1)")?;
        let json: serde_json::Value = match body.split_once("\r\n\r\n") {
            Some((_, json)) => serde_json::from_str(json).unwrap_or_default(),
            None => serde_json::Value::Null,
        };
        Ok(json["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// A plain HTTP/1.0 GET on loopback: the whole answer, headers included.
    fn get(&self, path: &str) -> Result<String> {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// Kill it: queries are then refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What it logged.
    pub fn log(&self) -> Result<String> {
        Ok(fs::read_to_string(self.dir.path().join("prometheus.log"))?)
    }

    fn ready(&self) -> bool {
        self.get("/-/ready")
            .is_ok_and(|a| a.starts_with("HTTP/1.0 200") || a.starts_with("HTTP/1.1 200"))
    }
}

impl Drop for TestPrometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
