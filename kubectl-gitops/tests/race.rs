//! Two `commit`s racing on one repo: one wins, the other says why it did
//! not, and the repository is never corrupted.

use crate::util::{Dir, sample};

#[test]
fn racing_commits_never_corrupt_the_index() {
    let d = Dir::new();
    d.init();
    let samples = [
        "virtual-service-reviews-80-20.yaml",
        "virtual-service-reviews-90-10.yaml",
        "virtual-service-reviews-50-v3.yaml",
        "virtual-service-reviews-v3.yaml",
        "virtual-service-reviews-v2-v3.yaml",
        "virtual-service-reviews-test-v2.yaml",
    ];
    // The subsets the routes use (commit checks them, as the agent would).
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-all.yaml"))
        .ok();
    d.kg().args(["commit", "-m", "subsets"]).ok();
    for (round, name) in samples.iter().enumerate() {
        d.kg()
            .args(["-n", "team-a", "stage"])
            .arg(sample(name))
            .ok();
        let before: usize = d
            .git(&["rev-list", "--count", "HEAD"])
            .trim()
            .parse()
            .unwrap();
        let children: Vec<_> = (0..2)
            .map(|i| {
                d.kg()
                    .args(["commit", "-m", &format!("round {round}, committer {i}")])
                    .spawn()
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let winners = outputs.iter().filter(|o| o.status.success()).count();
        assert_eq!(winners, 1, "round {round}: {outputs:?}");
        let loser = outputs.iter().find(|o| !o.status.success()).unwrap();
        assert_eq!(loser.status.code(), Some(2));
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(
            err.contains("nothing staged to commit")
                || err.contains("another commit landed")
                || err.contains("another git process"),
            "round {round}: unclear error: {err}"
        );
        let after: usize = d
            .git(&["rev-list", "--count", "HEAD"])
            .trim()
            .parse()
            .unwrap();
        assert_eq!(after, before + 1, "round {round}");
        d.assert_clean();
    }
    assert_eq!(
        d.git(&["log", "--format=%s"]).lines().count(),
        samples.len() + 2
    );
}

#[test]
fn racing_stages_lose_no_update() {
    let d = Dir::new();
    d.init();
    // Four writers of the index at once, each staging another namespace:
    // every change must be in the index afterwards (read-modify-write of
    // the index happens under its lock).
    let namespaces = ["team-a", "team-b", "team-c", "team-d"];
    let children: Vec<_> = namespaces
        .iter()
        .map(|ns| {
            d.kg()
                .args(["-n", ns, "stage"])
                .arg(sample("destination-rule-all.yaml"))
                .spawn()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let staged = d.git(&["diff", "--cached", "--name-only"]);
    assert_eq!(staged.lines().count(), 4 * namespaces.len(), "{staged}");
    d.kg().args(["commit", "-m", "four teams"]).ok();
    assert_eq!(d.trailers("HEAD", "Gitops-Namespace"), namespaces);
    d.assert_clean();
}
