//! `stage` and `rm`: validation before any write, normalization, and edits
//! that leave hand-written files alone except for the one document changed.

use crate::util::{Dir, sample};

const DEPLOYMENT: &str =
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: reviews-v2\nspec:\n  replicas: 1\n";
const OTHER_NAMESPACE: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: ratings\n  namespace: team-b\nspec:\n  host: ratings\n";
const BROKEN: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews\n  http: []\n";

#[test]
fn invalid_input_fails_with_file_and_line_and_changes_nothing() {
    let d = Dir::new();
    d.init();
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("destination-rule-reviews.yaml"))
        .ok();
    let deployment = d.tmp("deployment.yaml");
    std::fs::write(&deployment, DEPLOYMENT).unwrap();
    let other = d.tmp("other-namespace.yaml");
    std::fs::write(&other, OTHER_NAMESPACE).unwrap();
    let broken = d.tmp("broken.yaml");
    std::fs::write(&broken, BROKEN).unwrap();

    let cases = [
        (
            &deployment,
            "deployment.yaml: document 1, line 2: Deployment (apps/v1) is not an Istio config kind",
        ),
        (
            &other,
            "other-namespace.yaml: document 1, line 5: namespace \"team-b\" is not \"team-a\"",
        ),
        (&broken, "broken.yaml: document 1, line 7: invalid YAML"),
    ];
    for (bad, expected) in cases {
        let before = d.snapshot();
        // A valid file beside the bad one is not staged either.
        let err = d
            .kg()
            .args(["-n", "team-a", "stage"])
            .arg(sample("virtual-service-reviews-80-20.yaml"))
            .arg(bad)
            .expect(2)
            .stderr;
        assert!(err.starts_with("error: nothing was staged:\n"), "{err}");
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
        assert_eq!(d.snapshot(), before, "the index or working tree changed");
        assert!(
            !d.path("namespaces/team-a/virtualservice-reviews.yaml")
                .exists()
        );
    }

    // All three at once: every problem is reported.
    let err = d
        .kg()
        .args(["-n", "team-a", "stage"])
        .args([&deployment, &other, &broken])
        .expect(2)
        .stderr;
    assert_eq!(err.lines().count(), 4, "{err}");

    // stdin is named <stdin>.
    let err = d
        .kg()
        .args(["-n", "team-a", "stage", "-"])
        .stdin(DEPLOYMENT)
        .expect(2)
        .stderr;
    assert!(
        err.contains("<stdin>: document 1, line 2: Deployment"),
        "{err}"
    );

    // The mesh root namespace and dangerous kinds are refused too.
    let err = d
        .kg()
        .args(["-n", "istio-system", "stage"])
        .arg(sample("destination-rule-reviews.yaml"))
        .expect(2)
        .stderr;
    assert!(err.contains("mesh root namespace"), "{err}");
    let ef = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: lua\nspec: {}\n";
    let err = d
        .kg()
        .args(["-n", "team-a", "stage", "-"])
        .stdin(ef)
        .expect(2)
        .stderr;
    assert!(err.contains("--allow-kind EnvoyFilter"), "{err}");
    d.kg()
        .args(["-n", "team-a", "stage", "--allow-kind", "EnvoyFilter", "-"])
        .stdin(ef)
        .ok();
}

#[test]
fn stage_normalizes_and_takes_the_namespace_from_the_kubeconfig_context() {
    let d = Dir::new();
    d.init();
    let kubeconfig = d.tmp("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: dev\n  context:\n    cluster: c\n    user: u\n    namespace: team-dev\n- name: prod\n  context:\n    cluster: c\n    user: u\n    namespace: team-prod\ncurrent-context: dev\nusers:\n- name: u\n  user: {}\n",
    )
    .unwrap();
    let live = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  uid: 3b0a\n  resourceVersion: \"812\"\n  generation: 4\n  creationTimestamp: \"2026-11-29T00:00:00Z\"\n  managedFields: [{manager: kubectl}]\n  labels:\n    app.kubernetes.io/managed-by: kubectl-gitops\n    kubectl-gitops.io/owner: team-dev\n    app: reviews\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: \"{}\"\n    kubectl-gitops.io/hash: sha256:00\nspec:\n  host: reviews\nstatus:\n  conditions: []\n";
    d.kg()
        .arg("stage")
        .arg("-")
        .env("KUBECONFIG", &kubeconfig)
        .stdin(live)
        .ok();
    assert_eq!(
        d.read("namespaces/team-dev/destinationrule-reviews.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: team-dev\n  labels:\n    app: reviews\nspec:\n  host: reviews\n"
    );
    // --context and --kubeconfig as in kubectl.
    d.kg()
        .args(["stage", "--context", "prod", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg(sample("destination-rule-reviews.yaml"))
        .ok();
    assert!(
        d.path("namespaces/team-prod/destinationrule-reviews.yaml")
            .is_file()
    );
    let err = d
        .kg()
        .args(["stage", "--context", "nope", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg(sample("destination-rule-reviews.yaml"))
        .expect(2)
        .stderr;
    assert!(err.contains("context \"nope\" not found"), "{err}");
}

const HAND_WRITTEN: &str = "# Reviews: owned by the team-a on-call.
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews   # keep in sync with the VS below
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
# 80/20 since the v2 launch
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20
";

#[test]
fn identical_objects_leave_hand_written_files_untouched() {
    let d = Dir::new();
    d.init();
    d.write("namespaces/team-a/reviews.yaml", HAND_WRITTEN);
    d.git(&["add", "."]);
    d.git(&["commit", "-q", "-m", "hand-written"]);

    // The sample says the same as the hand-written VS, in another layout.
    let out = d
        .kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-reviews-80-20.yaml"))
        .ok();
    assert_eq!(
        out,
        "VirtualService/reviews -> namespaces/team-a/reviews.yaml (unchanged)\n"
    );
    assert_eq!(d.read("namespaces/team-a/reviews.yaml"), HAND_WRITTEN);
    d.assert_clean();

    // A real change rewrites that one document; the DestinationRule, its
    // comments and the comment above the VS stay byte for byte.
    let out = d
        .kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-reviews-90-10.yaml"))
        .ok();
    assert_eq!(
        out,
        "VirtualService/reviews -> namespaces/team-a/reviews.yaml (updated)\n"
    );
    let text = d.read("namespaces/team-a/reviews.yaml");
    let (dr, vs) = text.split_once("---\n").unwrap();
    assert_eq!(dr, HAND_WRITTEN.split_once("---\n").unwrap().0);
    assert!(vs.starts_with("# 80/20 since the v2 launch\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"), "{vs}");
    assert!(
        vs.contains("weight: 90") && vs.contains("weight: 10"),
        "{vs}"
    );
    assert_eq!(
        d.git(&["diff", "--cached", "--name-only"]),
        "namespaces/team-a/reviews.yaml\n"
    );
    // No second definition appeared.
    assert!(
        !d.path("namespaces/team-a/virtualservice-reviews.yaml")
            .exists()
    );
    d.kg().args(["-n", "team-a", "validate"]).ok();
}

#[test]
fn rm_stages_deletions_and_cuts_one_document_out_of_a_multi_document_file() {
    let d = Dir::new();
    d.init();
    d.write("namespaces/team-a/reviews.yaml", HAND_WRITTEN);
    d.git(&["add", "."]);
    d.git(&["commit", "-q", "-m", "hand-written"]);
    d.kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-details-v2.yaml"))
        .ok();
    // The sample routes to a subset no DestinationRule here defines (IST0101,
    // which commit refuses): this test is about rm, so past the check.
    d.kg()
        .args(["-n", "team-a", "commit", "-m", "details v2", "--no-verify"])
        .ok();

    let out = d
        .kg()
        .args(["-n", "team-a", "rm", "vs/reviews", "virtualservice/details"])
        .ok();
    assert!(
        out.contains("removed VirtualService/reviews from namespaces/team-a/reviews.yaml"),
        "{out}"
    );
    assert!(
        out.contains(
            "removed VirtualService/details (deleted namespaces/team-a/virtualservice-details.yaml)"
        ),
        "{out}"
    );
    assert_eq!(
        d.read("namespaces/team-a/reviews.yaml"),
        HAND_WRITTEN.split_once("---\n").unwrap().0,
        "only the VirtualService's document is gone"
    );
    assert_eq!(
        d.git(&["diff", "--cached", "--name-status"]),
        "M\tnamespaces/team-a/reviews.yaml\nD\tnamespaces/team-a/virtualservice-details.yaml\n"
    );
    d.kg()
        .args(["-n", "team-a", "commit", "-m", "drop routes"])
        .ok();
    assert_eq!(
        d.trailers("HEAD", "Gitops-Object"),
        ["VirtualService/details", "VirtualService/reviews"]
    );
    d.assert_clean();

    // Removing the last object of a hand-written file removes the file.
    d.kg().args(["-n", "team-a", "rm", "dr/reviews"]).ok();
    assert!(!d.path("namespaces/team-a/reviews.yaml").exists());
    let err = d
        .kg()
        .args(["-n", "team-a", "rm", "vs/nope"])
        .expect(2)
        .stderr;
    assert!(
        err.contains("not defined in namespaces/team-a: VirtualService/nope"),
        "{err}"
    );
    let err = d
        .kg()
        .args(["-n", "team-a", "rm", "deployment/x"])
        .expect(2)
        .stderr;
    assert!(err.contains("not an Istio config kind"), "{err}");
    // a near miss is named
    let err = d
        .kg()
        .args(["-n", "team-a", "rm", "virtualservce/reviews"])
        .expect(2)
        .stderr;
    assert!(err.contains("did you mean VirtualService?"), "{err}");
}

/// A namespace folder that is a symlink out of the repo is never read
/// (validate) nor written through (stage): `namespaces/team-a ->
/// ../elsewhere` names the folder in the error.
#[test]
fn a_namespace_folder_linked_out_of_the_repo_is_refused() {
    let d = Dir::new();
    d.init();
    let elsewhere = d.tmp("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(
        sample("destination-rule-reviews.yaml"),
        elsewhere.join("dr.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&elsewhere, d.path("namespaces/team-a")).unwrap();
    let before = std::fs::read_dir(&elsewhere).unwrap().count();

    let run = d.kg().args(["-n", "team-a", "validate"]).expect(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("namespaces/team-a") && out.contains("symlink leading out of the repository"),
        "{out}"
    );
    let run = d
        .kg()
        .args(["-n", "team-a", "stage"])
        .arg(sample("virtual-service-reviews-80-20.yaml"))
        .expect(2);
    assert!(
        run.stderr.contains("symlink leading out of the repository"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        before,
        "written through the link"
    );
}
