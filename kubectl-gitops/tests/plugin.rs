//! `kubectl gitops ...`: the real kubectl finds the binary on PATH and runs
//! it as a plugin.

use crate::util::{Dir, bin, sample};

fn path_with_binary() -> std::ffi::OsString {
    let dir = bin().parent().unwrap().to_path_buf();
    let mut paths = vec![dir];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

#[test]
fn runs_as_a_kubectl_plugin() {
    let d = Dir::new();
    let path = path_with_binary();
    let kubectl = |args: &[&str]| d.program("kubectl").args(args).env("PATH", &path);

    let plugins = kubectl(&["plugin", "list", "--name-only"]).run();
    assert!(
        plugins.stdout.lines().any(|l| l == "kubectl-gitops"),
        "kubectl does not list the plugin: {plugins:?}"
    );
    let version = kubectl(&["gitops", "version"]).ok();
    assert_eq!(
        version,
        format!("kubectl-gitops {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = kubectl(&["gitops", "--help"]).ok();
    assert!(
        help.contains("Usage: kubectl gitops [OPTIONS] <COMMAND>"),
        "{help}"
    );

    kubectl(&["gitops", "init"]).ok();
    kubectl(&[
        "gitops",
        "-n",
        "team-a",
        "stage",
        sample("destination-rule-reviews.yaml").to_str().unwrap(),
    ])
    .ok();
    let out = kubectl(&["gitops", "commit", "-m", "via kubectl"]).ok();
    assert!(out.contains("via kubectl"), "{out}");
    assert_eq!(
        d.trailers("HEAD", "Gitops-Object"),
        ["DestinationRule/reviews"]
    );
    // Exit codes come through kubectl unchanged.
    let run = kubectl(&["gitops", "-n", "team-a", "commit", "-m", "nothing"]).expect(2);
    assert!(
        run.stderr.contains("error: nothing staged to commit"),
        "{}",
        run.stderr
    );
    d.write(
        "namespaces/team-a/bad.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
    );
    kubectl(&["gitops", "-n", "team-a", "validate"]).expect(1);
}

#[test]
fn completion_scripts_name_the_binary() {
    let d = Dir::new();
    let bash = d.kg().args(["completion", "bash"]).ok();
    assert!(bash.contains("kubectl-gitops"), "{bash}");
    assert!(bash.contains("stage") && bash.contains("--all-namespaces"));
    let zsh = d.kg().args(["completion", "zsh"]).ok();
    assert!(zsh.starts_with("#compdef kubectl-gitops"), "{zsh}");
    let json = d.kg().args(["version", "-o", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}
