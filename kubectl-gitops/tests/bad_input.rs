//! The bad-input corpus (`tests/testdata/bad/`, see `gitops_tests::corpus`)
//! through the plugin: `validate` of a repo holding a case, and `stage` of
//! its files into a clean repo, each give the case's error, never a panic,
//! and `stage` writes nothing.

use std::collections::BTreeMap;

use gitops_tests::corpus;

use crate::util::Dir;

#[test]
fn validate_and_stage_refuse_every_bad_input_with_its_error() {
    let cases = corpus::cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut tried: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in cases.iter().filter(|c| !c.e2e_only) {
        if case.runs("validate") {
            let d = Dir::new();
            d.init();
            case.materialize(&d.repo);
            let run = d.kg().args(["-n", &case.namespace, "validate"]).run();
            let output = format!("{}{}", run.stdout, run.stderr);
            if run.code == 0 || output.contains("panicked") {
                failures.push(format!(
                    "{}: validate exited {}:\n{output}",
                    case.name, run.code
                ));
            } else if let Err(e) = case.check("validate", &output) {
                failures.push(e);
            }
            *tried.entry(("validate", case.family().into())).or_default() += 1;
        }
        if case.runs("stage") {
            let d = Dir::new();
            d.init();
            let input = d.tmp("case");
            std::fs::create_dir_all(&input).unwrap();
            case.materialize(&input);
            let files = case.stage_inputs(&input);
            assert!(!files.is_empty(), "{}: nothing to stage", case.name);
            let before = d.snapshot();
            let run = d
                .kg()
                .args(["-n", &case.namespace, "stage"])
                .args(&files)
                .run();
            let output = format!("{}{}", run.stdout, run.stderr);
            if run.code != 2 || !run.stderr.starts_with("error: nothing was staged:") {
                failures.push(format!(
                    "{}: stage exited {}:\n{output}",
                    case.name, run.code
                ));
            } else if let Err(e) = case.check("stage", &output) {
                failures.push(e);
            }
            if d.snapshot() != before {
                failures.push(format!("{}: stage changed the repo", case.name));
            }
            *tried.entry(("stage", case.family().into())).or_default() += 1;
        }
    }
    println!("plugin: cases tried per tool and family: {tried:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
