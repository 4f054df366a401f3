//! The alerting rules of manifests/monitoring, checked and unit-tested by
//! the real promtool (Debian's, unpacked by scripts/test-cluster.sh build):
//! each alert fires where it must and not where it must not
//! (manifests/monitoring/rules_test.yaml).

use std::{path::Path, process::Command};

fn promtool(args: &[&str]) -> String {
    let bin = gitops_tests::cluster::cache_dir()
        .expect("the cache folder")
        .join("bin/promtool");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/test-cluster.sh build",
        bin.display()
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/monitoring");
    let out = Command::new(&bin)
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alerting_rules_are_valid() {
    let out = promtool(&["check", "rules", "rules.yaml"]);
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
}

#[test]
fn every_alert_fires_where_it_must_and_not_elsewhere() {
    let out = promtool(&["test", "rules", "rules_test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    // every alert of rules.yaml has its test
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/monitoring/rules.yaml"),
    )
    .unwrap();
    let tests = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/monitoring/rules_test.yaml"),
    )
    .unwrap();
    for line in rules.lines() {
        if let Some(alert) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!("alertname: {alert}\n    exp_alerts: []"))
                    && tests.contains(&format!("alertname: {alert}\n    exp_alerts:\n")),
                "{alert} needs a firing and a silent case in rules_test.yaml"
            );
        }
    }
}

/// The scrape config example is a valid Prometheus configuration.
#[test]
fn the_scrape_config_example_is_valid() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/monitoring/scrape.yaml"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, format!("global: {{}}\n{example}")).unwrap();
    let out = promtool(&["check", "config", "--syntax-only", config.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
}
