//! The GitHub workflows and the repository's action, checked offline: valid
//! YAML, the shape each is relied on for, and every `run:` script valid
//! bash.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(relative: &str) -> Yaml {
    let path = root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .remove(0)
}

fn steps(job: &Yaml) -> Vec<Yaml> {
    job["steps"].as_vec().cloned().unwrap_or_default()
}

/// The `run:` scripts of `steps`.
fn runs(steps: &[Yaml]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect()
}

/// The first step that uses `action`.
fn uses(steps: &[Yaml], action: &str) -> Option<Yaml> {
    steps
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(action)))
        .cloned()
}

/// Every `run:` script of `file`'s `steps` parses as bash, its `${{ }}`
/// expressions standing for a word.
fn scripts_parse(file: &str, steps: &[Yaml]) {
    for script in runs(steps) {
        let mut plain = String::new();
        let mut rest = script.as_str();
        while let Some(start) = rest.find("${{") {
            plain.push_str(&rest[..start]);
            plain.push_str("EXPRESSION");
            let end = rest[start..]
                .find("}}")
                .map_or(rest.len(), |e| start + e + 2);
            rest = &rest[end..];
        }
        plain.push_str(rest);
        let output = std::process::Command::new("bash")
            .args(["-n", "-c", &plain])
            .output()
            .expect("bash");
        assert!(
            output.status.success(),
            "{file}: a run script is not valid bash:\n{script}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_workflow_runs_the_tests_and_the_sharded_gate_through_the_action() {
    let w = load(".github/workflows/verify.yml");
    let on = &w["on"];
    for trigger in ["pull_request", "push", "schedule"] {
        assert!(!on[trigger].is_badvalue(), "the workflow runs on {trigger}");
    }
    assert!(
        on["schedule"][0]["cron"].as_str().is_some(),
        "a weekly re-verification"
    );
    let jobs = &w["jobs"];
    for job in ["test", "verify", "gate"] {
        scripts_parse("verify.yml", &steps(&jobs[job]));
    }
    // The style gate, then the tests: what .ci/run runs.
    let test = runs(&steps(&jobs["test"]));
    let xtask: Vec<&String> = test
        .iter()
        .filter(|r| r.starts_with("cargo xtask"))
        .collect();
    assert_eq!(xtask, ["cargo xtask ci", "cargo xtask test"]);

    // The gate runs as a matrix of shards, each on the real container,
    // through the repository's own action.
    let verify = steps(&jobs["verify"]);
    let shards = jobs["verify"]["strategy"]["matrix"]["shard"]
        .as_vec()
        .expect("jobs.verify.strategy.matrix.shard");
    let count = w["env"]["SHARDS"].as_i64().expect("env.SHARDS");
    assert_eq!(shards.len() as i64, count, "one matrix entry per shard");
    // The last release is taken from git at the baseline report's commit,
    // which a shallow clone does not have.
    let checkout = uses(&verify, "actions/checkout").expect("each shard checks out");
    assert_eq!(checkout["with"]["fetch-depth"].as_i64(), Some(0));
    assert!(runs(&verify).iter().any(|r| r == "cargo xtask image"));
    let gate = uses(&verify, "./").expect("each shard runs the action");
    let with = &gate["with"];
    assert_eq!(with["shard"].as_str(), Some("${{ matrix.shard }}"));
    assert_eq!(with["shards"].as_str(), Some("${{ env.SHARDS }}"));
    assert!(
        with["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("container="))
    );
    assert_eq!(with["require"].as_str(), Some("strict"));
    assert_eq!(
        with["baseline"].as_str(),
        Some("fixtures/baseline/report.json")
    );

    // The merge job gates, whatever the shards did, and keeps the reports.
    assert_eq!(jobs["gate"]["needs"].as_str(), Some("verify"));
    assert_eq!(jobs["gate"]["if"].as_str(), Some("always()"));
    let merge = steps(&jobs["gate"]);
    let action = uses(&merge, "./").expect("the merge runs the action");
    assert_eq!(action["with"]["step"].as_str(), Some("merge"));
    let upload = uses(&merge, "actions/upload-artifact").expect("the reports are uploaded");
    assert_eq!(upload["with"]["path"].as_str(), Some("target/preflight/"));
    assert_eq!(upload["if"].as_str(), Some("always()"));
}

#[test]
fn the_action_verifies_a_shard_merges_publishes_and_gates() {
    let action = load("action.yml");
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    let steps = steps(&action["runs"]);
    scripts_parse("action.yml", &steps);
    // Every input is read, and nothing reads an input not declared.
    let text = std::fs::read_to_string(root().join("action.yml")).expect("action.yml");
    let declared: Vec<String> = action["inputs"]
        .as_hash()
        .expect("inputs")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    for input in &declared {
        assert!(
            text.contains(&format!("inputs.{input}")),
            "the input '{input}' is never read"
        );
    }
    for (at, _) in text.match_indices("inputs.") {
        let name: String = text[at + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        assert!(declared.contains(&name), "inputs.{name} is not declared");
    }
    for input in ["models", "baseline", "require", "shards"] {
        assert!(declared.iter().any(|d| d == input), "an input '{input}'");
    }
    let scripts = runs(&steps).join("\n");
    assert!(scripts.contains("preflight \"$@\""), "it runs preflight");
    assert!(scripts.contains("report merge"), "it merges");
    assert!(
        scripts.contains("GITHUB_STEP_SUMMARY"),
        "it writes the step summary"
    );
    assert!(
        uses(&steps, "mikepenz/action-junit-report").is_some(),
        "it publishes JUnit"
    );
    let kept = uses(&steps, "actions/upload-artifact").expect("a shard keeps its report");
    assert!(
        kept["if"]
            .as_str()
            .is_some_and(|c| c.starts_with("always()"))
    );
    assert!(
        uses(&steps, "actions/download-artifact").is_some(),
        "the merge fetches them"
    );
    let gate = steps.last().expect("a last step");
    assert_eq!(gate["id"].as_str(), Some("gate"));
    assert_eq!(
        gate["if"].as_str(),
        Some("always()"),
        "the gate always decides"
    );
}

#[test]
fn a_tag_releases_binaries_wheels_and_the_image_for_both_machines_with_checksums() {
    let w = load(".github/workflows/release.yml");
    assert!(
        w["on"]["push"]["tags"][0]
            .as_str()
            .is_some_and(|t| t.starts_with('v')),
        "a version tag releases"
    );
    let jobs = &w["jobs"];
    let arches: Vec<&str> = jobs["build"]["strategy"]["matrix"]["include"]
        .as_vec()
        .expect("the build matrix")
        .iter()
        .filter_map(|m| m["arch"].as_str())
        .collect();
    assert_eq!(arches, ["x86_64", "aarch64"]);
    let build = steps(&jobs["build"]);
    scripts_parse("release.yml", &build);
    let scripts = runs(&build).join("\n");
    for part in [
        "--bin preflight ",
        "--bin preflight-serve",
        "cargo xtask wheel",
        "cargo xtask image",
        "docker save",
        "docker push",
    ] {
        assert!(scripts.contains(part), "the build runs `{part}`");
    }
    let publish = steps(&jobs["publish"]);
    scripts_parse("release.yml", &publish);
    let scripts = runs(&publish).join("\n");
    assert!(scripts.contains("sha256sum") && scripts.contains("SHA256SUMS"));
    assert!(scripts.contains("gh release create"));
    assert_eq!(
        jobs["publish"]["permissions"]["contents"].as_str(),
        Some("write")
    );
}
