//! `rbac-check`: the shipped Role (`manifests/rbac`, rendered with the real
//! `kubectl kustomize`) against the permissions the agents of every
//! end-to-end test used, as their audit logs show (`gitops_tests::rbac`).
//! scripts/test.sh runs it after the tests; exit 1 when the Role grants less
//! or more than that, 2 when there is nothing to judge.

use std::process::{Command, ExitCode};

use gitops_tests::{cluster::repo_root, rbac};

fn main() -> ExitCode {
    let used = match rbac::recorded() {
        Ok(used) if !used.is_empty() => used,
        Ok(_) | Err(_) => {
            eprintln!(
                "rbac-check: error: no agent permissions recorded in target/reliability/agent-permissions.log: run the end-to-end tests first"
            );
            return ExitCode::from(2);
        }
    };
    let rendered = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo_root().join("manifests/rbac"))
        .output();
    let text = match rendered {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            eprintln!(
                "rbac-check: error: kubectl kustomize manifests/rbac: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("rbac-check: error: running kubectl: {e}");
            return ExitCode::from(2);
        }
    };
    let docs = match gitops_shared::manifest::parse_str(
        &text,
        std::path::Path::new("manifests/rbac"),
        &Default::default(),
    ) {
        Ok(docs) => docs,
        Err(e) => {
            eprintln!("rbac-check: error: the rendered manifests do not parse: {e:?}");
            return ExitCode::from(2);
        }
    };
    let Some(role) = docs.iter().find(|d| d.kind == "Role").map(|d| &d.object) else {
        eprintln!("rbac-check: error: manifests/rbac renders no Role");
        return ExitCode::from(2);
    };
    println!("agents of the end-to-end tests used:");
    for p in &used {
        println!("  {p}");
    }
    let problems = rbac::check(role, &used);
    if problems.is_empty() {
        println!("rbac-check: the Role of manifests/rbac grants exactly these");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("rbac-check: {p}");
        }
        println!("rbac-check: the Role of manifests/rbac does not match what the agents used");
        ExitCode::FAILURE
    }
}
