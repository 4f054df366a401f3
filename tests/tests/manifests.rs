//! The deploy manifests render with the real `kubectl kustomize` and wire the
//! agent the way its flags expect.

use std::{path::Path, process::Command};

use gitops_shared::manifest::{LoadOptions, Manifest, parse_str};

fn render(dir: &str) -> Vec<Manifest> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(root.join(dir))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    parse_str(&text, Path::new(dir), &LoadOptions::default()).expect("rendered YAML parses")
}

fn container<'a>(m: &'a Manifest, name: &str) -> &'a serde_json::Value {
    m.object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args(c: &serde_json::Value) -> Vec<&str> {
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

#[test]
fn agent_kustomization_renders_a_pod_with_git_sync_and_the_agent_on_one_volume() {
    let objects = render("manifests/agent");
    let kinds: Vec<&str> = objects.iter().map(|m| m.kind.as_str()).collect();
    for kind in [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "GitOpsSync",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let deploy = objects.iter().find(|m| m.kind == "Deployment").unwrap();
    let git_sync = container(deploy, "git-sync");
    let agent = container(deploy, "sync-agent");
    assert!(args(git_sync).contains(&"--root=/git"));
    assert!(args(git_sync).contains(&"--link=current"));
    assert_eq!(args(agent), ["--repo=/git", "--link=current"]);
    assert_eq!(
        agent["volumeMounts"][0]["readOnly"], true,
        "the agent only reads Git"
    );
    assert_eq!(
        git_sync["volumeMounts"][0]["mountPath"],
        agent["volumeMounts"][0]["mountPath"]
    );
    // the Role grants the Istio kinds and our status object, nothing core
    let role = objects.iter().find(|m| m.kind == "Role").unwrap();
    let groups: Vec<&str> = role.object["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_str().unwrap())
        })
        .collect();
    assert!(!groups.contains(&""), "no core API: {groups:?}");
    assert!(groups.contains(&"kubectl-gitops.io"));
    for kind in gitops_shared::KINDS.iter().filter(|k| !k.dangerous) {
        let granted = role.object["rules"].as_array().unwrap().iter().any(|r| {
            r["apiGroups"][0] == kind.group
                && r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p == kind.plural)
        });
        assert!(granted, "Role does not grant {}", kind.plural);
    }
}

#[test]
fn sidecar_component_adds_both_containers_to_a_labelled_deployment() {
    let objects = render("manifests/examples/sidecar-app");
    let deploy = objects.iter().find(|m| m.kind == "Deployment").unwrap();
    container(deploy, "pause");
    assert!(args(container(deploy, "git-sync")).contains(&"--link=current"));
    assert!(args(container(deploy, "sync-agent")).contains(&"--repo=/git"));
}

#[test]
fn example_config_repo_is_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples/config-repo");
    let config = gitops_shared::RepoConfig::load(&repo).unwrap();
    let policy = gitops_shared::Policy::new("team-a");
    let set = gitops_shared::layout::load_namespace(
        &repo,
        &config.path,
        &policy,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(set.manifests.len(), 2);
    let findings = gitops_shared::analyze::analyze_namespace(&set);
    assert!(findings.is_empty(), "{findings:?}");
}
