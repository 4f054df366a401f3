//! `push` to a local bare remote: plain, after another clone pushed first
//! (fetch, rebase, retry), and with a true conflict (clean failure).

use std::path::{Path, PathBuf};

use crate::util::{Dir, sample};

/// A bare remote with the initialized repo pushed to it, and a second clone.
fn remote_and_clone(d: &Dir) -> (PathBuf, PathBuf) {
    let bare = d.tmp("remote.git");
    d.git_in(
        &d.tmp(""),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    d.init();
    d.git(&["remote", "add", "origin", bare.to_str().unwrap()]);
    let out = d.kg().arg("push").ok();
    assert!(out.contains("pushed main to origin main"), "{out}");
    let other = d.tmp("other");
    d.git_in(
        &d.tmp(""),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    (bare, other)
}

fn rev(d: &Dir, dir: &Path, rev: &str) -> String {
    d.git_in(dir, &["rev-parse", rev]).trim().to_string()
}

#[test]
fn push_to_a_bare_remote() {
    let d = Dir::new();
    let (bare, _) = remote_and_clone(&d);
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-all.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "subsets"]).ok();
    let out = d.kg().arg("push").ok();
    assert!(out.starts_with("pushed main to origin main ("), "{out}");
    assert_eq!(rev(&d, &bare, "main"), rev(&d, &d.repo, "HEAD"));
    // The branch now tracks what it was pushed to, as `git push -u` does:
    // the `git pull --rebase` that a rejected push suggests just works.
    assert_eq!(
        d.git(&["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"])
            .trim(),
        "origin/main"
    );
    d.git(&["pull", "-q", "--rebase"]);
    // Nothing new: said so, not "pushed".
    let out = d.kg().arg("push").ok();
    assert!(
        out.starts_with("main is up to date with origin main (") && !out.contains("pushed"),
        "{out}"
    );
    // Unknown remote: a clear error.
    let err = d
        .kg()
        .args(["push", "--remote", "upstream"])
        .expect(2)
        .stderr;
    assert!(err.contains("no remote \"upstream\""), "{err}");
}

#[test]
fn push_rebases_when_another_clone_pushed_first() {
    let d = Dir::new();
    let (bare, other) = remote_and_clone(&d);

    // The other clone changes team-b and pushes first.
    d.kg_in(&other)
        .args(["-n", "team-b", "stage"])
        .arg(sample("destination-rule-reviews.yaml"))
        .ok();
    d.kg_in(&other)
        .args(["commit", "-m", "team-b reviews"])
        .ok();
    d.kg_in(&other).arg("push").ok();
    let theirs = rev(&d, &other, "HEAD");

    // We change team-a, two commits, and push: rejected, rebased, pushed.
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-all.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "team-a subsets"]).ok();
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-all-v1.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "team-a routes"]).ok();
    let out = d.kg().arg("push").ok();
    assert!(out.contains("rebased onto them 1 time(s)"), "{out}");

    let ours = rev(&d, &d.repo, "HEAD");
    assert_eq!(rev(&d, &bare, "main"), ours);
    // Linear history: our two commits on top of theirs, trailers kept.
    assert_eq!(rev(&d, &d.repo, "HEAD~2"), theirs);
    assert_eq!(
        d.git(&["log", "--format=%s", "-3"]),
        "team-a routes\nteam-a subsets\nteam-b reviews\n"
    );
    assert_eq!(d.trailers("HEAD~1", "Gitops-Namespace"), ["team-a"]);
    // Their file is in our working tree now, and nothing is left over.
    assert!(
        d.path("namespaces/team-b/destinationrule-reviews.yaml")
            .is_file()
    );
    d.assert_clean();
    assert_eq!(
        d.git(&["rev-parse", "refs/remotes/origin/main"]).trim(),
        ours
    );
}

#[test]
fn push_with_a_true_conflict_fails_cleanly() {
    let d = Dir::new();
    let (bare, other) = remote_and_clone(&d);
    // A shared starting point: reviews on v1, in both clones.
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-all.yaml"))
        .arg(sample("virtual-service-all-v1.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "all v1"]).ok();
    d.kg().arg("push").ok();
    d.git_in(&other, &["pull", "-q", "--ff-only"]);

    // They send 50% to v3 and push; we send 20% to v2.
    d.kg_in(&other)
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-reviews-50-v3.yaml"))
        .ok();
    d.kg_in(&other)
        .args(["commit", "-m", "reviews 50% v3"])
        .ok();
    d.kg_in(&other).arg("push").ok();
    let theirs = rev(&d, &other, "HEAD");
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-reviews-80-20.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "reviews 20% v2"]).ok();
    let ours = rev(&d, &d.repo, "HEAD");
    let before = std::fs::read(d.path("namespaces/team-a/virtualservice-reviews.yaml")).unwrap();

    let err = d.kg().arg("push").expect(2).stderr;
    assert!(
        err.starts_with("error: push rejected: your commit"),
        "{err}"
    );
    assert!(err.contains("(\"reviews 20% v2\") conflicts with the remote's changes to namespaces/team-a/virtualservice-reviews.yaml"), "{err}");
    assert!(err.contains("git pull --rebase"), "{err}");

    // Nothing moved: our branch, our files, the remote; no rebase in progress.
    assert_eq!(rev(&d, &d.repo, "HEAD"), ours);
    assert_eq!(rev(&d, &bare, "main"), theirs);
    assert_eq!(
        std::fs::read(d.path("namespaces/team-a/virtualservice-reviews.yaml")).unwrap(),
        before
    );
    assert!(!d.path(".git/rebase-merge").exists() && !d.path(".git/rebase-apply").exists());
    assert!(!d.path(".git/index.lock").exists());
    d.assert_clean();
}

#[test]
fn canary_moves_push_and_rebase_onto_a_remote_that_moved_on() {
    let d = Dir::new();
    let (bare, other) = remote_and_clone(&d);
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-all.yaml"))
        .arg(sample("virtual-service-all-v1.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "bookinfo"]).ok();
    d.kg().arg("push").ok();
    // Someone else pushes an unrelated change first.
    d.git_in(&other, &["pull", "-q"]);
    std::fs::write(other.join("README"), "hello\n").unwrap();
    d.git_in(&other, &["add", "README"]);
    d.git_in(&other, &["commit", "-q", "-m", "readme"]);
    d.git_in(&other, &["push", "-q"]);

    let out = d
        .kg()
        .args([
            "-n", "team-a", "canary", "start", "reviews", "--stable", "v1",
        ])
        .args(["--canary", "v2", "--push"])
        .ok();
    assert!(out.contains("rebased onto them 1 time(s)"), "{out}");
    assert!(out.contains("pushed main to origin main"), "{out}");
    assert_eq!(rev(&d, &bare, "main"), rev(&d, &d.repo, "HEAD"));
    let subject = d.git_in(&bare, &["log", "-1", "--format=%s", "main"]);
    assert_eq!(
        subject.trim(),
        "canary reviews: start v1 -> v2, step 1/4: 10% to v2"
    );
    assert_eq!(d.trailers("HEAD", "Gitops-Canary-Step"), ["1/4"]);
    assert_eq!(
        d.trailers("HEAD", "Gitops-Object"),
        ["VirtualService/reviews"]
    );
    d.kg()
        .args(["-n", "team-a", "canary", "step", "reviews", "--push"])
        .ok();
    assert_eq!(rev(&d, &bare, "main"), rev(&d, &d.repo, "HEAD"));
    assert_eq!(d.trailers("HEAD", "Gitops-Canary-Weight"), ["25"]);
    d.assert_clean();
}

/// A real `git daemon` serving `served` on a free loopback port (receive-pack
/// on, so pushes run the server's hooks).
fn git_daemon(served: &Path) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = std::process::Command::new("git");
    cmd.args([
        "daemon",
        "--reuseaddr",
        "--listen=127.0.0.1",
        "--export-all",
        "--enable=receive-pack",
    ])
    .arg(format!("--port={port}"))
    .arg(format!("--base-path={}", served.display()))
    .arg(served)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let daemon = cmd.spawn().expect("git daemon");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "git daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (daemon, port)
}

/// A push the server refuses for another reason than "you are behind" (a
/// protected branch, a hook that declined) fails at once with the server's
/// reason: no fetch-and-rebase retries, no "the remote is busy". The remote
/// is a real `git daemon` on loopback, so the server's hooks run.
#[test]
fn a_push_declined_by_a_hook_fails_at_once_with_the_reason() {
    let d = Dir::new();
    d.init();
    let served = d.tmp("served");
    std::fs::create_dir_all(&served).unwrap();
    let bare = served.join("config.git");
    d.git_in(
        &d.tmp(""),
        &[
            "clone",
            "-q",
            "--bare",
            d.repo.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'main is protected: open a pull request' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let (mut daemon, port) = git_daemon(&served);
    d.git(&[
        "remote",
        "add",
        "origin",
        &format!("git://127.0.0.1:{port}/config.git"),
    ]);
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-all.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "subsets"]).ok();
    let head = rev(&d, &d.repo, "HEAD");

    let run = d.kg().arg("push").expect(2);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(run.stderr.contains("refused the push"), "{}", run.stderr);
    assert!(run.stderr.contains("declined"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("busy") && !run.stderr.contains("rebase"),
        "{}",
        run.stderr
    );
    assert_eq!(rev(&d, &d.repo, "HEAD"), head, "the local branch moved");
    d.assert_clean();
}

/// An HTTP remote that asks for credentials on every request (401).
fn http_remote_that_refuses() -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"config\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    port
}

#[test]
fn a_token_in_the_remote_url_never_reaches_the_output() {
    let d = Dir::new();
    d.init();
    let port = http_remote_that_refuses();
    for (secret, url) in [
        (
            "s3cr3t-pass",
            format!("http://alice:s3cr3t-pass@127.0.0.1:{port}/config.git"),
        ),
        (
            "ghp_T0KEN",
            format!("http://ghp_T0KEN@127.0.0.1:{port}/config.git"),
        ),
    ] {
        let _ = std::process::Command::new("git")
            .arg("-C")
            .arg(&d.repo)
            .args(["remote", "remove", "origin"])
            .output();
        d.git(&["remote", "add", "origin", &url]);
        // none of this user's helpers: the URL's own credentials are all
        d.git(&["config", "credential.helper", ""]);
        let run = d.kg().args(["-vvv", "push"]).expect(2);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains(secret), "{secret} shown:\n{all}");
        assert!(all.contains("origin"), "{all}");
        let status = d.kg().args(["-vvv", "status"]).run();
        let all = format!("{}{}", status.stdout, status.stderr);
        assert!(!all.contains(secret), "{secret} shown by status:\n{all}");
    }
}

/// Three clones push at the same moment: each push lands (the losers
/// fetch, rebase and push again), and the remote holds all three commits,
/// in a line, none lost.
#[test]
fn pushes_from_three_clones_at_once_all_land() {
    let d = Dir::new();
    let (bare, other) = remote_and_clone(&d);
    let third = d.tmp("third");
    d.git_in(
        &d.tmp(""),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            third.to_str().unwrap(),
        ],
    );
    let clones = [
        (d.repo.clone(), "team-a", vec!["destination-rule-all.yaml"]),
        (other, "team-b", vec!["destination-rule-reviews.yaml"]),
        (
            third,
            "team-c",
            vec!["destination-rule-all.yaml", "virtual-service-all-v1.yaml"],
        ),
    ];
    for (dir, ns, files) in &clones {
        d.kg_in(dir)
            .args(["-n", ns, "stage"])
            .args(files.iter().map(|f| sample(f)))
            .ok();
        d.kg_in(dir)
            .args(["commit", "-m", &format!("{ns} change")])
            .ok();
    }
    let barrier = std::sync::Barrier::new(clones.len());
    let outputs: Vec<String> = std::thread::scope(|s| {
        let pushes: Vec<_> = clones
            .iter()
            .map(|(dir, _, _)| {
                let barrier = &barrier;
                let d = &d;
                s.spawn(move || {
                    barrier.wait();
                    d.kg_in(dir).args(["push", "--retries", "10"]).ok()
                })
            })
            .collect();
        pushes.into_iter().map(|p| p.join().unwrap()).collect()
    });
    assert!(
        outputs
            .iter()
            .all(|o| o.contains("pushed main to origin main")),
        "{outputs:?}"
    );
    let log = d.git_in(&bare, &["log", "--format=%s", "main"]);
    for (_, ns, _) in &clones {
        assert!(log.contains(&format!("{ns} change")), "{ns} lost:\n{log}");
    }
    let merges = d.git_in(&bare, &["log", "--merges", "--format=%H", "main"]);
    assert!(merges.trim().is_empty(), "not linear:\n{merges}");
}
