//! A temporary world per test: a repo folder, a HOME with a git identity,
//! and the real binary run in it (the `Dir` helper of ripgrep's tests).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-gitops"))
}

/// The `sync-agent` binary of this workspace, built if needed.
pub fn agent_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let path = bin().with_file_name("sync-agent");
            let cargo = option_env!("CARGO").unwrap_or("cargo");
            // A no-op when nextest or `cargo test --workspace` built it already.
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "sync-agent", "--bin", "sync-agent"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status();
            assert!(
                path.is_file(),
                "no sync-agent at {} (cargo build: {status:?})",
                path.display()
            );
            path
        })
        .clone()
}

/// The real `sync-agent` for `namespace` on a git-sync volume, logging to
/// `log`, `extra` flags after the defaults (no HTTP server).
pub fn spawn_agent(
    cluster: &gitops_tests::TestCluster,
    gitsync: &gitops_tests::gitsync::GitSync,
    namespace: &str,
    log: &Path,
    extra: &[&str],
) -> std::process::Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(agent_bin())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(["--namespace", namespace, "--link", gitsync.link_name()])
        .arg("--repo")
        .arg(gitsync.root())
        .arg("--listen=off")
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("spawning sync-agent")
}

/// A Bookinfo sample of `../shared/testdata/istio-samples`.
pub fn sample(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/istio-samples")
        .join(name);
    assert!(path.is_file(), "no sample {}", path.display());
    path
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One command about to run.
#[derive(Debug)]
pub struct TestCommand {
    cmd: Command,
    stdin: Option<String>,
    shown: String,
}

impl TestCommand {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for a in args {
            self.shown.push(' ');
            self.shown.push_str(&a.as_ref().to_string_lossy());
            self.cmd.arg(a);
        }
        self
    }

    pub fn arg(self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.args([arg])
    }

    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning")
    }

    pub fn run(mut self) -> Run {
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning{}: {e}", self.shown));
        if let Some(text) = &self.stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run, expect exit 0, return stdout.
    pub fn ok(self) -> String {
        self.expect(0).stdout
    }

    /// Run and expect this exit code.
    pub fn expect(self, code: i32) -> Run {
        let shown = self.shown.clone();
        let run = self.run();
        assert_eq!(
            run.code, code,
            "`{shown}` exited {}, not {code}\n--- stdout\n{}\n--- stderr\n{}",
            run.code, run.stdout, run.stderr
        );
        run
    }
}

/// A temporary folder holding the repo, a HOME and anything else a test needs.
#[derive(Debug)]
pub struct Dir {
    tmp: tempfile::TempDir,
    /// The repo (empty until `init`).
    pub repo: PathBuf,
    home: PathBuf,
}

impl Dir {
    pub fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n",
        )
        .unwrap();
        Dir { tmp, repo, home }
    }

    /// A path in the temporary folder (outside the repo).
    pub fn tmp(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn isolate(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("KUBECONFIG", self.tmp("no-kubeconfig"))
            .env_remove("RUST_LOG")
            .env_remove("GITOPS_REPO")
            .env_remove("GITOPS_PATH")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE");
        for var in ["NAME", "EMAIL", "DATE"] {
            cmd.env_remove(format!("GIT_AUTHOR_{var}"))
                .env_remove(format!("GIT_COMMITTER_{var}"));
        }
    }

    /// `kubectl-gitops` in the repo.
    pub fn kg(&self) -> TestCommand {
        self.kg_in(&self.repo)
    }

    /// `kubectl-gitops` in another folder.
    pub fn kg_in(&self, dir: &Path) -> TestCommand {
        let mut cmd = Command::new(bin());
        cmd.current_dir(dir);
        self.isolate(&mut cmd);
        TestCommand {
            cmd,
            stdin: None,
            shown: "kubectl-gitops".into(),
        }
    }

    /// Any program, isolated the same way, in the repo.
    pub fn program(&self, program: &str) -> TestCommand {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.repo);
        self.isolate(&mut cmd);
        TestCommand {
            cmd,
            stdin: None,
            shown: program.into(),
        }
    }

    /// Real git in `dir`; panics on failure; stdout.
    pub fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        cmd.current_dir(dir).args(args);
        self.isolate(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Real git in the repo.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.repo, args)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.repo.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    /// `init` in the repo, checked.
    pub fn init(&self) -> &Self {
        self.kg().arg("init").ok();
        self
    }

    /// The repo's state that must not change when a command fails: the
    /// index file's bytes and `git status`.
    pub fn snapshot(&self) -> (Vec<u8>, String) {
        (
            std::fs::read(self.repo.join(".git/index")).unwrap_or_default(),
            self.git(&["status", "--porcelain", "--untracked-files=all"]),
        )
    }

    /// Assert git sees a healthy repo with a clean working tree.
    pub fn assert_clean(&self) {
        self.git(&["fsck", "--strict", "--no-progress"]);
        let status = self.git(&["status", "--porcelain", "--untracked-files=all"]);
        assert_eq!(status, "", "the working tree is not clean");
    }

    /// Trailer values of a commit, by key, parsed by real git.
    pub fn trailers(&self, rev: &str, key: &str) -> Vec<String> {
        self.git(&[
            "log",
            "-1",
            &format!("--format=%(trailers:key={key},valueonly)"),
            rev,
        ])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
    }
}
