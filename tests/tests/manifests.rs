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
    // the application's ServiceAccount is given nothing: the agent reads
    // its own token, git-sync sees an empty folder where a token would be
    let pod = &deploy.object["spec"]["template"]["spec"];
    assert!(pod["serviceAccountName"].is_null(), "{pod}");
    assert!(
        !objects
            .iter()
            .any(|m| m.kind == "RoleBinding" && m.object["subjects"][0]["name"] != "sync-agent")
    );
    let volume = |c: &serde_json::Value| -> serde_json::Value {
        let name =
            mount_at(c, SERVICE_ACCOUNT_PATH).expect("a mount at the token path")["name"].clone();
        volumes(deploy)
            .into_iter()
            .find(|v| v["name"] == name)
            .unwrap()
            .clone()
    };
    let agent = volume(container(deploy, "sync-agent"));
    assert_eq!(agent["secret"]["secretName"], "sync-agent-token", "{agent}");
    let token = objects.iter().find(|m| m.kind == "Secret").unwrap();
    assert_eq!(token.object["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        token.object["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "sync-agent"
    );
    let git_sync = volume(container(deploy, "git-sync"));
    assert!(git_sync["emptyDir"].is_object(), "{git_sync}");
    for name in ["git-sync", "sync-agent"] {
        hardened(container(deploy, name), pod);
    }
    every_empty_dir_has_a_size_limit(deploy);
}

const SERVICE_ACCOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn volumes(deploy: &Manifest) -> Vec<&serde_json::Value> {
    deploy.object["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .collect()
}

fn mount_at<'a>(c: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    c["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"] == path)
}

/// Non-root, no privilege escalation, no capabilities, a read-only root,
/// the RuntimeDefault seccomp profile (the container's or the pod's), and
/// memory requested and limited.
fn hardened(c: &serde_json::Value, pod: &serde_json::Value) {
    let name = &c["name"];
    let sc = &c["securityContext"];
    let either = |field: &str| {
        if sc[field].is_null() {
            pod["securityContext"][field].clone()
        } else {
            sc[field].clone()
        }
    };
    assert_eq!(either("runAsNonRoot"), true, "{name}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{name}"
    );
    assert_eq!(either("seccompProfile")["type"], "RuntimeDefault", "{name}");
    assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
    assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
}

fn every_empty_dir_has_a_size_limit(deploy: &Manifest) {
    for v in volumes(deploy) {
        if v["emptyDir"].is_object() {
            assert!(v["emptyDir"]["sizeLimit"].is_string(), "{v}");
        }
    }
}

/// Issue 30: the shipped pod, as `kubectl kustomize manifests/agent` renders it.
#[test]
fn the_shipped_pod_is_safe_to_deploy() {
    let objects = render("manifests/agent");
    let deploy = objects.iter().find(|m| m.kind == "Deployment").unwrap();
    let pod = &deploy.object["spec"]["template"]["spec"];
    // no token in the pod but the agent's own, projected and rotated
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["serviceAccountName"], "sync-agent");
    let git_sync = container(deploy, "git-sync");
    let agent = container(deploy, "sync-agent");
    assert!(mount_at(git_sync, SERVICE_ACCOUNT_PATH).is_none());
    let token = mount_at(agent, SERVICE_ACCOUNT_PATH).expect("the agent's token");
    let volume = volumes(deploy)
        .into_iter()
        .find(|v| v["name"] == token["name"])
        .unwrap();
    let sources = volume["projected"]["sources"]
        .as_array()
        .expect("projected");
    assert!(
        sources
            .iter()
            .any(|s| s["serviceAccountToken"]["path"] == "token")
    );
    assert!(
        sources
            .iter()
            .any(|s| s["configMap"]["name"] == "kube-root-ca.crt")
    );
    // nothing else of a secret or token reaches git-sync
    for m in git_sync["volumeMounts"].as_array().unwrap() {
        let v = volumes(deploy)
            .into_iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        assert!(v["secret"].is_null() && v["projected"].is_null(), "{v}");
    }
    // git-sync can write its gitconfig: a writable /tmp, HOME there
    let tmp = mount_at(git_sync, "/tmp").expect("a /tmp for git-sync");
    assert_ne!(tmp["readOnly"], true);
    assert!(
        git_sync["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HOME" && e["value"] == "/tmp")
    );
    every_empty_dir_has_a_size_limit(deploy);
    for c in [git_sync, agent] {
        hardened(c, pod);
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 30);
    // the brake is never released by applying the manifests again
    let gos = objects.iter().find(|m| m.kind == "GitOpsSync").unwrap();
    assert!(
        gos.object["spec"].get("suspend").is_none(),
        "{}",
        gos.object
    );
}

/// Every kustomization under manifests/ renders with the real kubectl
/// (components are rendered through the kustomizations that use them).
#[test]
fn every_kustomization_renders() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    let mut found = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains("\nkind: Component") {
                    continue;
                }
                let rel = path
                    .parent()
                    .unwrap()
                    .strip_prefix(root.parent().unwrap())
                    .unwrap();
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    assert!(found.len() >= 3, "{found:?}");
    for dir in &found {
        assert!(!render(dir).is_empty(), "{dir} renders nothing");
    }
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

/// The image: base images pinned by digest, a non-root user in the final
/// distroless stage, and a build context without target/ or .git.
#[test]
fn the_image_is_pinned_and_runs_as_non_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("manifests/Dockerfile")).unwrap();
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "{froms:?}");
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap();
        let digest = image.split_once("@sha256:").map(|(_, d)| d).unwrap_or("");
        assert!(
            digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
            "not pinned by digest: {from}"
        );
    }
    assert!(froms.last().unwrap().contains("distroless"), "{froms:?}");
    let final_stage = &dockerfile[dockerfile.rfind("\nFROM ").unwrap()..];
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the final stage");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    let ignored = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for path in ["target/", ".git/"] {
        assert!(
            ignored.lines().any(|l| l == path),
            "{path} is not in .dockerignore"
        );
    }
}

/// The Git credential components: the Secret reaches git-sync alone, the
/// SSH host key is checked, the token is read from a file.
#[test]
fn git_credentials_reach_git_sync_alone() {
    for (example, secret, env) in [
        (
            "manifests/examples/agent-ssh",
            "sync-agent-git-ssh",
            vec![
                ("GITSYNC_SSH_KEY_FILE", "/etc/git-secret/ssh"),
                ("GITSYNC_SSH_KNOWN_HOSTS", "true"),
                (
                    "GITSYNC_SSH_KNOWN_HOSTS_FILE",
                    "/etc/git-secret/known_hosts",
                ),
            ],
        ),
        (
            "manifests/examples/agent-https",
            "sync-agent-git-https",
            vec![("GITSYNC_PASSWORD_FILE", "/etc/git-secret/token")],
        ),
    ] {
        let objects = render(example);
        let deploy = objects.iter().find(|m| m.kind == "Deployment").unwrap();
        let git_sync = container(deploy, "git-sync");
        let agent = container(deploy, "sync-agent");
        let value = |name: &str| {
            git_sync["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        for (name, want) in env {
            assert_eq!(value(name), Some(want.into()), "{example}: {name}");
        }
        let holds = |c: &serde_json::Value| {
            c["volumeMounts"].as_array().unwrap().iter().any(|m| {
                volumes(deploy)
                    .into_iter()
                    .any(|v| v["name"] == m["name"] && v["secret"]["secretName"] == secret)
            })
        };
        assert!(holds(git_sync), "{example}: git-sync has no {secret}");
        assert!(!holds(agent), "{example}: the agent must not see {secret}");
        // the rest of the pod is as safe as without credentials
        every_empty_dir_has_a_size_limit(deploy);
        assert_eq!(
            deploy.object["spec"]["template"]["spec"]["automountServiceAccountToken"],
            false
        );
    }
}
