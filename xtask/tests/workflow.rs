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
fn the_workflow_runs_the_tests_and_the_sharded_gate_and_keeps_the_reports() {
    let w = workflow();
    let on = &w["on"];
    for trigger in ["pull_request", "push", "schedule"] {
        assert!(!on[trigger].is_badvalue(), "the workflow runs on {trigger}");
    }
    assert!(
        on["schedule"][0]["cron"].as_str().is_some(),
        "a weekly re-verification"
    );
    let jobs = &w["jobs"];
    let runs_of = |job: &str| -> Vec<String> {
        jobs[job]["steps"]
            .as_vec()
            .unwrap_or_else(|| panic!("jobs.{job}.steps"))
            .iter()
            .filter_map(|s| s["run"].as_str().map(str::to_owned))
            .collect()
    };
    // The style gate, then the tests: what .ci/run runs.
    assert_eq!(
        runs_of("test")
            .iter()
            .filter(|r| r.starts_with("cargo xtask"))
            .collect::<Vec<_>>(),
        ["cargo xtask ci", "cargo xtask test"]
    );

    // The gate runs as a matrix of shards, each on the real container.
    let shards = jobs["verify"]["strategy"]["matrix"]["shard"]
        .as_vec()
        .expect("jobs.verify.strategy.matrix.shard");
    let count = w["env"]["SHARDS"].as_i64().expect("env.SHARDS");
    assert_eq!(shards.len() as i64, count, "one matrix entry per shard");
    assert!(
        runs_of("verify")
            .iter()
            .any(|r| r.contains("cargo xtask verify --shard") && r.contains("matrix.shard")),
        "{:?}",
        runs_of("verify")
    );
    let steps = |job: &str| jobs[job]["steps"].as_vec().cloned().unwrap_or_default();
    let uses = |job: &str, action: &str| {
        steps(job)
            .into_iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(action)))
    };
    // The last release is taken from git at the baseline report's commit,
    // which a shallow clone does not have.
    let checkout = uses("verify", "actions/checkout").expect("each shard checks out");
    assert_eq!(checkout["with"]["fetch-depth"].as_i64(), Some(0));
    let kept = uses("verify", "actions/upload-artifact").expect("each shard keeps its report");
    assert_eq!(
        kept["if"].as_str(),
        Some("always()"),
        "a failing shard still keeps its report"
    );

    // The merge job gates, whatever the shards did, and publishes.
    assert_eq!(jobs["gate"]["needs"].as_str(), Some("verify"));
    assert_eq!(jobs["gate"]["if"].as_str(), Some("always()"));
    let gate = runs_of("gate");
    assert!(gate.iter().any(|r| r.contains("report merge")), "{gate:?}");
    assert!(
        gate.iter()
            .any(|r| r.contains("summary.md") && r.contains("GITHUB_STEP_SUMMARY")),
        "{gate:?}"
    );
    let upload = uses("gate", "actions/upload-artifact").expect("the reports are uploaded");
    assert_eq!(upload["with"]["path"].as_str(), Some("target/preflight/"));
    assert_eq!(
        upload["if"].as_str(),
        Some("always()"),
        "a failing gate still keeps its reports"
    );
    let junit = uses("gate", "mikepenz/action-junit-report").expect("junit.xml is published");
    assert_eq!(
        junit["with"]["report_paths"].as_str(),
        Some("target/preflight/junit.xml")
    );
}
