//! Canary releases end to end, with real parts only: the real
//! `kubectl-gitops` commits each move to a config repo; a git-sync follower
//! publishes each commit into a volume; the real `sync-agent` applies it to
//! the real test API server; a mesh-traffic simulator watches the live
//! VirtualService and splits synthetic traffic by its weights; a real
//! Prometheus scrapes the simulator and evaluates the PromQL of
//! `canary run`.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Child,
    thread::sleep,
    time::{Duration, Instant},
};

use gitops_tests::{
    TestCluster, gitsync::Follower, gitsync::GitSync, mesh::MeshSim, prometheus::TestPrometheus,
};

use crate::util::{Dir, Run, TestCommand, bin, sample, spawn_agent};

const WAIT: Duration = Duration::from_secs(120);
const NS: &str = "team-a";

/// A team's world: cluster, config repo, git-sync, agent, mesh, Prometheus.
struct World {
    dir: Dir,
    cluster: TestCluster,
    _gitsync: GitSync,
    _follower: Follower,
    agent: Child,
    agent_log: PathBuf,
    sim: MeshSim,
    prometheus: TestPrometheus,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ---\n{}",
                std::fs::read_to_string(&self.agent_log).unwrap_or_default()
            );
            eprintln!(
                "--- git log ---\n{}",
                self.dir.git(&["log", "--format=%h %s"])
            );
        }
    }
}

impl World {
    /// Bookinfo's reviews (all traffic on v1) and its DestinationRule,
    /// committed with the plugin and applied by the agent.
    fn new() -> World {
        Self::build(false)
    }

    /// [`World::new`] with a bare remote that the branch tracks (pushed
    /// with `kubectl gitops push`, upstream set as `git push -u` does) and
    /// git-sync following the remote, not the working repo: the usual case.
    fn with_remote() -> World {
        Self::build(true)
    }

    fn remote(&self) -> PathBuf {
        self.dir.tmp("remote.git")
    }

    /// The commit the remote's main points at.
    fn remote_main(&self) -> String {
        self.dir
            .git_in(&self.remote(), &["rev-parse", "main"])
            .trim()
            .to_string()
    }

    fn head(&self) -> String {
        self.dir.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    fn build(remote: bool) -> World {
        let cluster =
            TestCluster::start().expect("the test cluster (scripts/test-cluster.sh build)");
        let dir = Dir::new();
        dir.init();
        dir.kg()
            .args(["stage", "-n", NS])
            .arg(sample("virtual-service-all-v1.yaml"))
            .arg(sample("destination-rule-all.yaml"))
            .ok();
        dir.kg()
            .args(["commit", "-m", "bookinfo: all traffic on v1"])
            .ok();

        let followed = if remote {
            let bare = dir.tmp("remote.git");
            dir.git_in(
                &dir.tmp(""),
                &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
            );
            dir.git(&["remote", "add", "origin", bare.to_str().unwrap()]);
            dir.kg().arg("push").ok();
            dir.git(&["branch", "-q", "--set-upstream-to=origin/main"]);
            bare
        } else {
            dir.repo.clone()
        };
        let gitsync = GitSync::new().unwrap();
        let follower = gitsync.follow(&followed);
        let agent_log = dir.tmp("agent.log");

        let config = runtime().block_on(cluster.config()).unwrap();
        let sim = MeshSim::start(config, NS, "reviews", 0, "reviews", 100.0).unwrap();
        let prometheus = TestPrometheus::start(&[sim.addr()]).unwrap();
        // Spawned last, and owned by the World at once: a failed set-up
        // above leaves no agent behind.
        let agent = spawn_agent(&cluster, &gitsync, NS, &agent_log, &["--resync", "5s"]);
        let world = World {
            dir,
            cluster,
            _gitsync: gitsync,
            _follower: follower,
            agent,
            agent_log,
            sim,
            prometheus,
        };
        world.wait_live(&[("v1", 100)]);
        world
    }

    fn kg(&self) -> TestCommand {
        self.dir
            .kg()
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path())
            .args(["-n", NS])
    }

    /// `canary run reviews` with short intervals.
    fn run(&self, extra: &[&str]) -> TestCommand {
        self.kg()
            .args([
                "canary",
                "run",
                "reviews",
                "--interval",
                "4s",
                "--apply-timeout",
                "90s",
            ])
            .arg("--prometheus")
            .arg(self.prometheus.url())
            .args(extra)
    }

    /// Wait until the simulator sends traffic by exactly these weights.
    fn wait_live(&self, want: &[(&str, u64)]) {
        let want: BTreeMap<String, u64> = want.iter().map(|(s, w)| (s.to_string(), *w)).collect();
        let deadline = Instant::now() + WAIT;
        while self.sim.weights() != want {
            assert!(
                Instant::now() < deadline,
                "live weights {:?}, expected {want:?}",
                self.sim.weights()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// Subjects of the namespace folder's history, oldest first.
    fn subjects(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .dir
            .git(&["log", "--format=%s", "--", &format!("namespaces/{NS}")])
            .lines()
            .map(str::to_string)
            .collect();
        s.reverse();
        s
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn lines_with<'a>(run: &'a Run, needle: &str) -> Vec<&'a str> {
    run.stdout.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn healthy_release_walks_every_step_to_promotion() {
    let w = World::new();
    w.kg()
        .args([
            "canary", "start", "reviews", "--stable", "v1", "--canary", "v2", "--steps", "20,50",
        ])
        .ok();
    // An extra check of the user's own, with the placeholders filled in.
    let rps = "rps=sum(rate(istio_requests_total{reporter=\"destination\",{{ selector }}}[{{ interval }}])):1:";
    let run = w.run(&["--query", rps]).expect(0);

    // One commit per step, each applied before it was judged.
    assert_eq!(
        w.subjects()[1..],
        [
            "canary reviews: start v1 -> v2, step 1/2: 20% to v2",
            "canary reviews: step 2/2, 50% to v2",
            "canary reviews: promote v2, 100% to v2",
        ]
    );
    for step in ["step 1/2", "step 2/2"] {
        let lines: Vec<&str> = run.stdout.lines().filter(|l| l.contains(step)).collect();
        let applied = lines.iter().position(|l| l.contains(": applied ("));
        let checked = lines.iter().position(|l| l.contains(": check over "));
        assert!(
            matches!((applied, checked), (Some(a), Some(c)) if a < c),
            "{step} was not applied before its check:\n{}",
            run.stdout
        );
    }
    // The simulator's watch saw each step live, in order.
    let history = w.sim.history();
    let at = |v1: u64, v2: u64| {
        history
            .iter()
            .position(|h| h.get("v1") == Some(&v1) && h.get("v2") == Some(&v2))
            .unwrap_or_else(|| panic!("never live: v1={v1} v2={v2} in {history:?}"))
    };
    assert!(at(80, 20) < at(50, 50));
    w.wait_live(&[("v2", 100)]);

    // Zero 5xx is a 100% success rate, not "no data".
    assert_eq!(w.sim.requests("v2").1, 0);
    assert!(w.sim.requests("v2").0 > 0);
    assert_eq!(
        lines_with(&run, "success-rate=100 (>= 99) ok").len(),
        2,
        "{}",
        run.stdout
    );

    // The trailers tell the story to git itself.
    assert_eq!(w.dir.trailers("HEAD", "Gitops-Canary"), ["reviews"]);
    assert_eq!(w.dir.trailers("HEAD", "Gitops-Canary-Weight"), ["100"]);
    let checks = w.dir.trailers("HEAD", "Gitops-Canary-Check");
    assert_eq!(checks.len(), 3, "{checks:?}");
    assert!(
        checks[0].starts_with("success-rate=100 (>= 99) ok"),
        "{checks:?}"
    );
    assert!(checks[1].starts_with("p99-ms="), "{checks:?}");
    assert!(
        checks[2].starts_with("rps=") && checks[2].ends_with("(>= 1) ok"),
        "{checks:?}"
    );
    assert_eq!(w.dir.trailers("HEAD~1", "Gitops-Canary-Step"), ["2/2"]);
    w.dir.assert_clean();

    // `canary status` agrees with the cluster.
    let status = w
        .kg()
        .args(["canary", "status", "reviews", "-o", "json"])
        .ok();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["release"]["phase"], "Promoted");
    assert_eq!(status["applied"], true);
    assert_eq!(
        status["liveWeights"],
        serde_json::json!([{"subset": "v2", "weight": 100}])
    );
    assert_eq!(
        status["gitWeights"],
        serde_json::json!([{"subset": "v2", "weight": 100}])
    );

    // A second run of a finished release changes nothing.
    let again = w.run(&[]).expect(0);
    assert!(again.stdout.contains("is promoted"), "{}", again.stdout);
    assert_eq!(w.subjects().len(), 4);
    eprintln!(
        "--- release history ---\n{}",
        w.dir.git(&["log", "--format=%h %s%n%(trailers:key=Gitops-Canary-Step,key=Gitops-Canary-Weight,key=Gitops-Canary-Check)", "--", "namespaces/team-a"])
    );
}

/// With the branch tracking the remote the agents read, `run` pushes every
/// move without `--push`: the rollback reaches the cluster.
#[test]
fn failing_canary_is_rolled_back_after_the_threshold() {
    let w = World::with_remote();
    w.sim.set_error_rate("v2", 0.3);
    let start = w
        .kg()
        .args([
            "canary", "start", "reviews", "--stable", "v1", "--canary", "v2",
        ])
        .ok();
    assert!(start.contains("committed, not pushed"), "{start}");
    let run = w.run(&["--threshold", "2"]).expect(1);
    assert_eq!(w.remote_main(), w.head(), "the rollback was pushed");
    assert!(
        run.stdout
            .contains("reviews: rolled back to v1 after 2 failed checks"),
        "{}",
        run.stdout
    );
    let failed = lines_with(&run, "success-rate=");
    assert_eq!(failed.len(), 2, "{}", run.stdout);
    assert!(
        failed.iter().all(|l| l.contains("failed: outside >= 99")),
        "{}",
        run.stdout
    );

    let subjects = w.subjects();
    assert_eq!(
        subjects.last().map(String::as_str),
        Some("canary reviews: roll back to v1 at step 1/4, 0% to v2")
    );
    let checks = w.dir.trailers("HEAD", "Gitops-Canary-Check");
    assert!(checks[0].contains("failed"), "{checks:?}");
    assert_eq!(w.dir.trailers("HEAD", "Gitops-Canary-Weight"), ["0"]);
    // The cluster ends at 100% stable.
    w.wait_live(&[("v1", 100)]);
    assert!(!subjects.iter().any(|s| s.contains("promote")));
}

/// A rollback the remote refuses is not reported as done: exit 2, "NOT
/// live" first, the commit kept; once the remote takes pushes again, `run`
/// again pushes it and waits for the agent. Before any of it, a Prometheus
/// that cannot be reached stops `run` before its first move.
#[test]
fn a_rollback_that_cannot_be_pushed_is_not_live_and_run_again_finishes_it() {
    let w = World::with_remote();
    w.kg()
        .args([
            "canary", "start", "reviews", "--stable", "v1", "--canary", "v2", "--push",
        ])
        .ok();
    w.wait_live(&[("v1", 90), ("v2", 10)]);
    let started = w.head();
    assert_eq!(w.remote_main(), started);

    // Prometheus cannot be reached: nothing is committed, nothing pushed.
    let run = w
        .kg()
        .args(["canary", "run", "reviews", "--interval", "1s"])
        .args(["--prometheus", "http://127.0.0.1:1"])
        .expect(2);
    assert!(
        run.stderr.contains("is unreachable") && run.stderr.contains("nothing was committed"),
        "{}",
        run.stderr
    );
    assert_eq!(w.head(), started);
    assert_eq!(w.remote_main(), started);

    // The remote refuses every push (a pre-receive hook).
    let hook = w.remote().join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'pushes are frozen' >&2\nexit 1\n").unwrap();
    std::process::Command::new("chmod")
        .args(["+x", hook.to_str().unwrap()])
        .status()
        .unwrap();
    w.sim.set_error_rate("v2", 0.3);
    let run = w.run(&["--threshold", "1"]).expect(2);
    assert!(
        run.stderr
            .starts_with("error: the rollback of reviews to v1 is NOT live: it was committed, but the push failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("pushes are frozen"), "{}", run.stderr);
    assert!(!run.stdout.contains("rolled back to"), "{}", run.stdout);
    let kept = w.head();
    assert_ne!(kept, started);
    assert!(w.subjects().last().unwrap().contains("roll back to v1"));
    assert_eq!(w.remote_main(), started);
    w.wait_live(&[("v1", 90), ("v2", 10)]);

    // The remote takes pushes again: run again finishes the rollback.
    std::fs::remove_file(&hook).unwrap();
    let run = w.run(&[]).expect(1);
    assert!(
        run.stdout.contains("was rolled back (100% to v1), live"),
        "{}",
        run.stdout
    );
    assert_eq!(w.head(), kept, "no second rollback commit");
    assert_eq!(w.remote_main(), kept);
    w.wait_live(&[("v1", 100)]);
}

#[test]
fn prometheus_stopped_mid_release_fails_checks_and_never_promotes() {
    let mut w = World::new();
    w.kg()
        .args([
            "canary",
            "start",
            "reviews",
            "--stable",
            "v1",
            "--canary",
            "v2",
            "--steps",
            "10,20,30,40",
        ])
        .ok();
    let child = w.run(&["--threshold", "2"]).spawn();
    // Once the first step was judged healthy and the second committed, stop Prometheus.
    wait_for(|| w.subjects().iter().any(|s| s.contains("step 2/4")));
    w.prometheus.stop();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("is unreachable"), "{stdout}");
    let subjects = w.subjects();
    assert!(
        !subjects.iter().any(|s| s.contains("promote")),
        "{subjects:?}"
    );
    assert!(
        subjects.last().unwrap().contains("roll back to v1"),
        "{subjects:?}"
    );
    w.wait_live(&[("v1", 100)]);
}

#[test]
fn killed_run_resumes_at_the_step_git_records() {
    let w = World::new();
    w.kg()
        .args([
            "canary", "start", "reviews", "--stable", "v1", "--canary", "v2", "--steps", "10,30,60",
        ])
        .ok();
    let mut child = w.run(&[]).spawn();
    wait_for(|| w.subjects().iter().any(|s| s.contains("step 2/3")));
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    w.dir.assert_clean();

    // Nothing outside Git: a new run picks up step 2 and finishes.
    let run = w.run(&[]).expect(0);
    assert!(!run.stdout.contains("step 1/3"), "{}", run.stdout);
    assert!(
        run.stdout.contains("step 2/3 (30% to v2): applied"),
        "{}",
        run.stdout
    );
    assert_eq!(
        w.subjects()[1..],
        [
            "canary reviews: start v1 -> v2, step 1/3: 10% to v2",
            "canary reviews: step 2/3, 30% to v2",
            "canary reviews: step 3/3, 60% to v2",
            "canary reviews: promote v2, 100% to v2",
        ]
    );
    w.wait_live(&[("v2", 100)]);
}

#[test]
fn start_refuses_what_it_cannot_release() {
    let w = World::new();
    let before = w.subjects();
    let refuse = |args: &[&str], why: &str| {
        let run = w.kg().args(["canary", "start"]).args(args).expect(2);
        assert!(run.stderr.contains(why), "{args:?}: {}", run.stderr);
    };
    refuse(
        &["nope", "--stable", "v1", "--canary", "v2"],
        "no VirtualService \"nope\"",
    );
    refuse(
        &["reviews", "--stable", "v1", "--canary", "v9"],
        "no DestinationRule",
    );
    refuse(
        &[
            "reviews", "--stable", "v1", "--canary", "v2", "--steps", "50,20",
        ],
        "must increase",
    );
    refuse(
        &[
            "reviews", "--stable", "v1", "--canary", "v2", "--steps", "0,20",
        ],
        "within 1..100",
    );
    refuse(
        &["reviews", "--stable", "v3", "--canary", "v2"],
        "no traffic to subset \"v3\"",
    );

    // Uncommitted changes to the file.
    let file = "namespaces/team-a/virtualservice-reviews.yaml";
    let text = w.dir.read(file);
    w.dir.write(file, &format!("{text}# a local edit\n"));
    refuse(
        &["reviews", "--stable", "v1", "--canary", "v2"],
        "uncommitted changes",
    );
    w.dir.write(file, &text);

    // A release already running.
    w.kg()
        .args([
            "canary", "start", "reviews", "--stable", "v1", "--canary", "v2",
        ])
        .ok();
    refuse(
        &["reviews", "--stable", "v1", "--canary", "v3"],
        "already running",
    );
    assert_eq!(w.subjects().len(), before.len() + 1);

    // Manual moves, one commit each; step refuses past the last step.
    w.kg().args(["canary", "step", "reviews"]).ok();
    w.kg().args(["canary", "abort", "reviews"]).ok();
    let run = w.kg().args(["canary", "step", "reviews"]).expect(2);
    assert!(run.stderr.contains("is over"), "{}", run.stderr);
    assert_eq!(w.subjects().len(), before.len() + 3);
    w.wait_live(&[("v1", 100)]);
}

#[test]
fn apply_timeout_leaves_the_release_where_git_has_it() {
    let mut w = World::new();
    let _ = w.agent.kill();
    let _ = w.agent.wait();
    w.kg()
        .args([
            "canary", "start", "reviews", "--stable", "v1", "--canary", "v2",
        ])
        .ok();
    let run = w
        .kg()
        .args([
            "canary",
            "run",
            "reviews",
            "--interval",
            "1s",
            "--apply-timeout",
            "3s",
        ])
        .arg("--prometheus")
        .arg(w.prometheus.url())
        .expect(2);
    assert!(run.stderr.contains("did not apply"), "{}", run.stderr);
    assert!(
        run.stderr.contains("stays where Git has it"),
        "{}",
        run.stderr
    );
    assert_eq!(w.subjects().len(), 2, "nothing committed beyond the start");

    // On a terminal the same wait is a live line saying what it waits for.
    let command = format!(
        "{} --kubeconfig {} -n {NS} canary run reviews --interval 1s --apply-timeout 3s --prometheus {}",
        bin().display(),
        w.cluster.kubeconfig_path().display(),
        w.prometheus.url()
    );
    let tty = w
        .dir
        .program("script")
        .args(["-qec", &command, "/dev/null"])
        .expect(2);
    assert!(
        tty.stdout
            .contains("waiting for team-a/sync-agent to apply"),
        "{}",
        tty.stdout
    );
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        sleep(Duration::from_millis(200));
    }
}
