//! The GitHub workflow stays valid YAML and keeps running the gate.

use yaml_rust2::{Yaml, YamlLoader};

fn workflow() -> Yaml {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.github/workflows/verify.yml");
    let text = std::fs::read_to_string(&path).expect("verify.yml");
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .remove(0)
}

#[test]
fn the_workflow_runs_the_tests_and_the_gate_and_keeps_the_reports() {
    let w = workflow();
    let on = &w["on"];
    for trigger in ["pull_request", "push", "schedule"] {
        assert!(!on[trigger].is_badvalue(), "the workflow runs on {trigger}");
    }
    assert!(
        on["schedule"][0]["cron"].as_str().is_some(),
        "a weekly re-verification"
    );
    let steps = w["jobs"]["verify"]["steps"]
        .as_vec()
        .expect("jobs.verify.steps");
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(runs.contains(&"cargo xtask test"), "{runs:?}");
    assert!(runs.contains(&"cargo xtask verify"), "{runs:?}");
    assert!(
        runs.iter()
            .any(|r| r.contains("summary.md") && r.contains("GITHUB_STEP_SUMMARY")),
        "{runs:?}"
    );
    let uses = |action: &str| {
        steps
            .iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(action)))
            .cloned()
    };
    let upload = uses("actions/upload-artifact").expect("the reports are uploaded");
    assert_eq!(upload["with"]["path"].as_str(), Some("target/preflight/"));
    assert_eq!(
        upload["if"].as_str(),
        Some("always()"),
        "a failing gate still keeps its reports"
    );
    let junit = uses("mikepenz/action-junit-report").expect("junit.xml is published");
    assert_eq!(
        junit["with"]["report_paths"].as_str(),
        Some("target/preflight/junit.xml")
    );
}
