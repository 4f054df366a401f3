//! The shipped pod without a kubelet (issue 30): `kubectl kustomize
//! manifests/agent` renders it, and its two containers run as the real
//! programs with the args and env exactly as rendered, only the repository
//! URL, the API server's address and the volume paths substituted: the real
//! git-sync (built by scripts/test-cluster.sh from ../shared/testdata/git-sync)
//! from a local bare repository into the volume, and sync-agent, as a user
//! that owns nothing, from that volume into the test API server.

// Helpers outside `#[test]` fns panic on failure on purpose: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::Value;
use support::*;

const NS: &str = "team-a";

/// A container of the rendered Deployment, and the ConfigMap's data.
struct Rendered {
    git_sync: Value,
    agent: Value,
    config: BTreeMap<String, String>,
}

fn render() -> Rendered {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/agent");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs =
        gitops_shared::manifest::parse_str(&text, Path::new("agent"), &Default::default()).unwrap();
    let object = |kind: &str| {
        docs.iter()
            .find(|m| m.kind == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .object
            .clone()
    };
    let deploy = object("Deployment");
    let container = |name: &str| {
        deploy["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let config = object("ConfigMap")["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    Rendered {
        git_sync: container("git-sync"),
        agent: container("sync-agent"),
        config,
    }
}

/// Where the pod's volumes are on this machine, by mount path.
struct Volumes(Vec<(String, PathBuf)>);

impl Volumes {
    fn substitute(&self, text: &str) -> String {
        for (mount, here) in &self.0 {
            if text == mount {
                return here.display().to_string();
            }
            if let Some(rest) = text.strip_prefix(&format!("{mount}/")) {
                return here.join(rest).display().to_string();
            }
            if let Some((flag, value)) = text.split_once('=')
                && (value == mount || value.starts_with(&format!("{mount}/")))
            {
                return format!("{flag}={}", self.substitute(value));
            }
        }
        text.to_string()
    }
}

/// The container's args, volume paths substituted.
fn args(c: &Value, volumes: &Volumes) -> Vec<String> {
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| volumes.substitute(a.as_str().unwrap()))
        .collect()
}

/// The container's env as the kubelet would set it: values, ConfigMap keys
/// (`repo` substituted by `repo_url`) and the pod's namespace and name.
fn env(c: &Value, r: &Rendered, repo_url: &str, volumes: &Volumes) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = if let Some(v) = e["value"].as_str() {
                volumes.substitute(v)
            } else if let Some(key) = e["valueFrom"]["configMapKeyRef"]["key"].as_str() {
                match key {
                    "repo" => repo_url.to_string(),
                    key => r.config[key].clone(),
                }
            } else {
                match e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap() {
                    "metadata.namespace" => NS.to_string(),
                    "metadata.name" => "sync-agent-7d9f-x2x4q".to_string(),
                    other => panic!("an env from {other}"),
                }
            };
            (name, value)
        })
        .collect()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A config repo: a bare remote, and a clone people push from.
struct Remote {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

impl Remote {
    fn new() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("mesh-config.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(
            dir.path(),
            &[
                "clone",
                "-q",
                bare.to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        git(&work, &["checkout", "-q", "-b", "main"]);
        Remote {
            _dir: dir,
            bare,
            work,
        }
    }

    /// Write `files`, commit and push; the new commit.
    fn push(&self, message: &str, files: &[(&str, String)]) -> String {
        for (path, text) in files {
            let path = self.work.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_string()
    }
}

/// The two files of revision `i`: reviews at `i`% to v2, and the
/// DestinationRule's connection pool at `i` connections.
fn revision(i: u32) -> [(&'static str, String); 2] {
    [
        (
            "namespaces/team-a/vs-reviews.yaml",
            vs("reviews", 100 - i, i),
        ),
        (
            "namespaces/team-a/dr-reviews.yaml",
            format!(
                "{}  trafficPolicy:\n    connectionPool:\n      tcp:\n        maxConnections: {}\n",
                dr("reviews"),
                i + 1
            ),
        ),
    ]
}

fn live_revision(cluster: &TestCluster) -> (Value, Value) {
    let vs = get(cluster, NS, "virtualservices", "reviews").unwrap();
    let dr = get(cluster, NS, "destinationrules", "reviews").unwrap();
    (
        vs["spec"]["http"][0]["route"][1]["weight"].clone(),
        dr["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["maxConnections"].clone(),
    )
}

fn git_sync_bin() -> PathBuf {
    let bin = gitops_tests::cluster::cache_dir()
        .unwrap()
        .join("bin/git-sync");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/test-cluster.sh build",
        bin.display()
    );
    bin
}

/// git-sync as rendered.
fn spawn_git_sync(r: &Rendered, remote: &Remote, volumes: &Volumes, log: &Path) -> Child {
    let url = format!("file://{}", remote.bare.display());
    let log = std::fs::File::create(log).unwrap();
    Command::new(git_sync_bin())
        .args(args(&r.git_sync, volumes))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env(&r.git_sync, r, &url, volumes))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawning git-sync")
}

fn effective_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_rendered_pod_syncs_a_remote_through_the_real_git_sync() {
    use std::os::unix::process::CommandExt as _;

    let cluster = cluster();
    let rendered = render();
    let remote = Remote::new();
    let first = remote.push("reviews at 10%", &revision(10));

    // The pod's volumes, here.
    let pod = tempfile::tempdir().unwrap();
    let set_mode = |p: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(pod.path(), 0o755);
    let (git_volume, tmp) = (pod.path().join("git"), pod.path().join("tmp"));
    std::fs::create_dir_all(&git_volume).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    set_mode(&git_volume, 0o755);
    let volumes = Volumes(vec![
        ("/git".into(), git_volume.clone()),
        ("/tmp".into(), tmp.clone()),
    ]);
    let gs_log = pod.path().join("git-sync.log");
    let mut git_sync = spawn_git_sync(&rendered, &remote, &volumes, &gs_log);

    // The agent: its own copy of the kubeconfig (the API server's address),
    // as a user that owns nothing, on the volume git-sync (root) writes.
    let home = tempfile::tempdir().unwrap();
    set_mode(home.path(), 0o755);
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::copy(cluster.kubeconfig_path(), &kubeconfig).unwrap();
    set_mode(&kubeconfig, 0o444);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sync-agent"));
    cmd.args(args(&rendered.agent, &volumes))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env_clear()
        .envs(env(&rendered.agent, &rendered, "", &volumes))
        .stdin(Stdio::null());
    let as_root = effective_uid(std::process::id()) == 0;
    if as_root {
        cmd.uid(65533).gid(65533);
    }
    let agent = Agent::spawn(cmd, NS);
    let wait_synced = |rev: &str| wait_status(&agent, &cluster, "Synced", Some(rev));
    let shown = || std::fs::read_to_string(&gs_log).unwrap_or_default();

    // a commit pushed to the remote reaches Synced
    wait_synced(&first);
    assert_eq!(live_revision(&cluster), (10.into(), 11.into()));
    if as_root {
        assert_ne!(effective_uid(agent.pid()), 0, "the agent runs as root");
    }

    // 20 quick commits: the agent ends on the last, every object of it
    let mut last = first;
    for i in 11..=30 {
        last = remote.push(&format!("reviews at {i}%"), &revision(i));
    }
    let status = agent.wait("the last of 20 quick commits", || {
        let s = gos_status(&cluster, NS);
        (s["revision"] == last.as_str() && s["phase"] == "Synced").then_some(s)
    });
    assert_eq!(live_revision(&cluster), (30.into(), 31.into()), "{status}");
    let published = std::fs::read_link(git_volume.join("current")).unwrap();
    assert!(
        published.to_string_lossy().ends_with(&last),
        "{}",
        published.display()
    );

    // git-sync killed and started again, as the kubelet would: nothing is
    // written, the agent stays at the same revision
    let before = cluster.audit().unwrap().len();
    let _ = git_sync.kill();
    let _ = git_sync.wait();
    git_sync = spawn_git_sync(&rendered, &remote, &volumes, &gs_log);
    // git-sync publishes the same commit again (or leaves it): give it a
    // few of its own periods' worth of polls of the agent
    std::thread::sleep(std::time::Duration::from_secs(5));
    let status = gos_status(&cluster, NS);
    assert_eq!(status["revision"], last.as_str(), "{status}");
    assert_eq!(status["phase"], "Synced", "{status}\n{}", shown());
    assert_eq!(
        summarize(&agent_object_writes(&audit_since(&cluster, before), NS)),
        Vec::<String>::new()
    );
    // and the next commit still arrives
    let next = remote.push("reviews at 40%", &revision(40));
    wait_synced(&next);
    assert_eq!(live_revision(&cluster), (40.into(), 41.into()));

    // A file of the repo that points outside the volume is never read: the
    // revision is refused whole, and what is live stays.
    let outside = tempfile::tempdir().unwrap();
    set_mode(outside.path(), 0o755);
    let secret = outside.path().join("vs-other.yaml");
    std::fs::write(&secret, vs("outside", 50, 50)).unwrap();
    set_mode(&secret, 0o644);
    let link = remote.work.join("namespaces/team-a/vs-outside.yaml");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let escaping = remote.push("a link out of the repo", &[]);
    let status = agent.wait("the escaping revision to be refused", || {
        let s = gos_status(&cluster, NS);
        (s["observedRevision"] == escaping.as_str() && s["phase"] == "Failed").then_some(s)
    });
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("vs-outside.yaml"), "{message}");
    assert_eq!(status["revision"], next.as_str());
    assert!(get(&cluster, NS, "virtualservices", "outside").is_none());
    assert_eq!(live_revision(&cluster), (40.into(), 41.into()));

    // git-sync removed many old trees: nothing about it at the default level
    let log = agent.log();
    assert!(!log.contains("unable to remove watch descriptor"), "{log}");
    assert!(log.contains("applied"), "{log}");

    let _ = git_sync.kill();
    let _ = git_sync.wait();
    // the volume holds git-sync's files, root's: make it removable
    let _ = Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(pod.path())
        .status();
}
