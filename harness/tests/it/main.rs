//! The `preflight` binary as CI and release managers use it: exit codes,
//! errors, a URL target started by the test, and the reports it writes.

mod browser;
mod container;
mod grpc;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use preflight_testkit::Listening;

const PREFLIGHT: &str = env!("CARGO_BIN_EXE_preflight");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Runs preflight in a folder of its own: an aborted run writes its reports
/// to the default `target/preflight` there.
fn preflight(args: &[&str]) -> Output {
    let cwd = tempfile::tempdir().expect("a working folder");
    Command::new(PREFLIGHT)
        .current_dir(cwd.path())
        .args(args)
        // On GitHub Actions, summary.md would link the run.
        .env_remove("GITHUB_RUN_ID")
        .output()
        .expect("run preflight")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// preflight-serve, built beside preflight, on `models`; killed when dropped.
fn serve(models: &Path) -> Listening {
    let binary = Path::new(PREFLIGHT).with_file_name("preflight-serve");
    let models = models.display().to_string();
    Listening::spawn(&binary, &["--addr", "127.0.0.1:0", "--models", &models])
        .unwrap_or_else(|e| panic!("{e}; build the workspace first"))
}

#[test]
fn usage_and_bundle_errors_exit_2() {
    let out = preflight(&["verify", "--models", "/nonexistent", "--target", "process"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("/nonexistent"), "{}", stderr(&out));

    let out = preflight(&["verify", "--models", "x", "--target", "carrier-pigeon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "expected url=http://HOST:PORT, grpc://HOST:PORT, process or container=IMAGE"
        ),
        "{}",
        stderr(&out)
    );
    let out = preflight(&["verify", "--models", "x", "--target", "proces"]);
    assert!(
        stderr(&out).contains("did you mean 'process'?"),
        "{}",
        stderr(&out)
    );
    let out = preflight(&["verify", "--models", "x", "--target", "containr=img"]);
    assert!(
        stderr(&out).contains("did you mean 'container'?"),
        "{}",
        stderr(&out)
    );

    // A server that cannot start says why on the spot, not only in its log.
    let tmp = tempfile::tempdir().expect("tmp");
    let models = fixtures().join("models").display().to_string();
    let out_dir = tmp.path().display().to_string();
    let out = preflight(&[
        "verify",
        "--models",
        &models,
        "--target",
        "process",
        "--only",
        "eta-nairobi",
        "--ort-lib",
        "/nonexistent/libonnxruntime.so",
        "--out",
        &out_dir,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("exited at start: error: /nonexistent/libonnxruntime.so: cannot load"),
        "{}",
        stderr(&out)
    );

    let out = preflight(&[
        "verify",
        "--models",
        &models,
        "--target",
        "process",
        "--only",
        "eta-madird",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("matches eta-madird; did you mean eta-madrid?"),
        "{}",
        stderr(&out)
    );

    let out = preflight(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("preflight "));

    let out = preflight(&[
        "verify", "--models", "x", "--target", "process", "--suites", "vibes",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'vibes'")
            && stderr(&out).contains("possible values: unit, parity, property"),
        "{}",
        stderr(&out)
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let bundle = tmp.path().join("eta-broken/1");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    std::fs::write(
        bundle.join("manifest.toml"),
        "[model]\nname = \"eta-broken\"\nversion = 1\n",
    )
    .expect("write");
    let out = preflight(&[
        "verify",
        "--models",
        &tmp.path().display().to_string(),
        "--target",
        "process",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("eta-broken/1/manifest.toml"),
        "{}",
        stderr(&out)
    );

    let out = preflight(&[
        "verify",
        "--models",
        &fixtures().join("models").display().to_string(),
        "--target",
        "process",
        "--only",
        "eta-atlantis",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no model in"), "{}", stderr(&out));
}

#[test]
fn an_endpoint_that_is_dead_or_hangs_exits_3_in_bounded_time() {
    let models = fixtures().join("models").display().to_string();
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = preflight(&[
        "verify",
        "--models",
        &models,
        "--target",
        &format!("url=http://127.0.0.1:{port}"),
        "--ready-timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("was not ready within 1 s"),
        "{}",
        stderr(&out)
    );

    // A listener that accepts and never answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("url=http://{}", hanging.local_addr().expect("addr"));
    let started = std::time::Instant::now();
    let out = preflight(&[
        "verify",
        "--models",
        &models,
        "--target",
        &url,
        "--ready-timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "a hanging endpoint must not hang the run"
    );

    // A server that exits at start: its log is named.
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(PREFLIGHT)
        .args([
            "verify",
            "--models",
            &models,
            "--target",
            "process",
            "--out",
            &tmp.path().display().to_string(),
        ])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("preflight-serve.log"),
        "{}",
        stderr(&out)
    );
    // The aborted run still wrote its reports, carrying why, for CI to show.
    let read = |name: &str| {
        std::fs::read_to_string(tmp.path().join(name))
            .unwrap_or_else(|e| panic!("{name} of an aborted run: {e}"))
    };
    let report: serde_json::Value = serde_json::from_str(&read("report.json")).expect("json");
    assert_eq!(report["verdict"], "failed");
    assert_eq!(report["aborted"]["exit_code"], 3);
    let why = report["aborted"]["error"].as_str().expect("the error");
    assert!(why.contains("preflight-serve.log"), "{why}");
    let junit = read("junit.xml");
    assert!(
        junit.contains("<error message=") && junit.contains("aborted, exit code 3"),
        "{junit}"
    );
    assert!(read("summary.md").starts_with("# Preflight: ❌ aborted"));
    assert!(read("report.html").contains("id=\"aborted\""));
}

#[test]
fn a_url_target_started_by_the_test_passes_and_reports() {
    let models = fixtures().join("models");
    let server = serve(&models);
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("report");
    let out = preflight(&[
        "verify",
        "--models",
        &models.display().to_string(),
        "--target",
        &format!("url={}", server.url),
        "--only",
        "eta-nairobi,eta-bar*",
        // The fallback suite times batches; its verdicts go into no snapshot.
        "--suites",
        "unit,parity,nullable,size,quality",
        "--out",
        &out_dir.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let summary = std::fs::read_to_string(out_dir.join("summary.md")).expect("summary.md");
    insta::assert_snapshot!("summary", summary.replace(&server.url, "<url>"));
    let junit = std::fs::read_to_string(out_dir.join("junit.xml")).expect("junit.xml");
    insta::assert_snapshot!("junit", redact(&junit));
    assert!(
        junit.contains("<property name=\"quality.mae.max\" value=\"4.16\"/>"),
        "the contract's limit is a property: {junit}"
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("report.json")).expect("report.json"),
    )
    .expect("json");
    assert_eq!(report["format"], 1);
    assert_eq!(report["verdict"], "passed");
    let names: Vec<&str> = report["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["eta-barcelona", "eta-nairobi"]);

    // The same release against itself as baseline: every comparison runs, and passes.
    let again = tmp.path().join("again");
    let out = preflight(&[
        "verify",
        "--models",
        &models.display().to_string(),
        "--target",
        &format!("url={}", server.url),
        "--only",
        "eta-nairobi",
        "--suites",
        "size,quality",
        "--baseline",
        &out_dir.join("report.json").display().to_string(),
        "--out",
        &again.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(again.join("report.json")).expect("report"))
            .expect("json");
    let checks: Vec<(String, String)> = report["models"][0]["suites"]
        .as_array()
        .expect("suites")
        .iter()
        .flat_map(|s| {
            s["checks"].as_array().expect("checks").iter().map(|c| {
                (
                    c["name"].as_str().expect("n").to_owned(),
                    c["verdict"].as_str().expect("v").to_owned(),
                )
            })
        })
        .collect();
    assert!(
        checks.contains(&(
            "growth against the baseline".to_owned(),
            "passed".to_owned()
        )),
        "{checks:?}"
    );
    assert!(
        checks.contains(&("against the baseline".to_owned(), "passed".to_owned())),
        "{checks:?}"
    );

    let html = std::fs::read_to_string(again.join("report.html")).expect("report.html");
    assert!(
        html.contains("<h2>Verdicts</h2>") && html.contains("id=\"m-eta-nairobi\""),
        "verdict matrix and drill-down"
    );
    assert!(
        !html.contains("No baseline report"),
        "the baseline section compares"
    );
    let html = std::fs::read_to_string(out_dir.join("report.html")).expect("report.html");
    assert!(
        html.contains("<svg") && html.contains("Parity (batch): values per decade of error"),
        "a parity-error distribution"
    );

    // Diff: the second run dropped a model and every suite but size and quality.
    let out = preflight(&[
        "report",
        "diff",
        &out_dir.join("report.json").display().to_string(),
        &again.join("report.json").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("eta-barcelona") && diff.contains("version 1 → absent"),
        "{diff}"
    );
    let out = preflight(&[
        "report",
        "diff",
        "/nonexistent.json",
        &again.join("report.json").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// `time="1.234"` → `time="<t>"`, so the snapshot does not move with the machine.
/// The XML with the values of the attributes that change from run to run
/// and machine to machine replaced by `<name>`: times, the host, and the
/// properties' values (the snapshot pins their names).
fn redact(xml: &str) -> String {
    let mut out = xml.to_owned();
    for attribute in ["time", "timestamp", "hostname", "value"] {
        let key = format!(" {attribute}=\"");
        let mut redacted = String::new();
        let mut rest = out.as_str();
        while let Some(start) = rest.find(&key) {
            redacted.push_str(&rest[..start + key.len()]);
            rest = &rest[start + key.len()..];
            let end = rest.find('"').unwrap_or(0);
            redacted.push_str(&format!("<{attribute}>"));
            rest = &rest[end..];
        }
        redacted.push_str(rest);
        out = redacted;
    }
    out
}

#[test]
fn the_committed_report_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("report.schema.json");
    let generated = preflight_harness::Report::json_schema();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        // Write the fresh schema so that a local run fixes it; the test still
        // fails, so that a stale file never passes CI.
        std::fs::write(&path, &generated).expect("write report.schema.json");
        panic!(
            "{} was stale and has been regenerated; review and commit it",
            path.display()
        );
    }
}

/// The gate's policy: what it cannot require is a usage error, and a release
/// whose contract nothing reads passes only while no policy requires it.
#[test]
fn the_policy_decides_which_skips_fail_the_release() {
    let models = fixtures().join("models").display().to_string();
    let misspelt = fixtures().join("defects/bundles/contract-misspelt");
    let misspelt = misspelt.display().to_string();
    // Each stops before anything runs, with exit code 2 and what it says.
    for (repository, require, says) in [
        (
            &models,
            "vibes",
            vec!["'vibes' is not something the gate can require"],
        ),
        (
            &models,
            "baseline",
            vec!["--require baseline: give --baseline"],
        ),
        // The contract written under [contracts].
        (
            &misspelt,
            "manifest",
            vec![
                "eta-lisbon/1/manifest.toml:",
                "contracts: unknown key",
                "did you mean 'contract'?",
            ],
        ),
    ] {
        let out = preflight(&[
            "verify",
            "--models",
            repository,
            "--target",
            "process",
            "--require",
            require,
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        for phrase in says {
            assert!(stderr(&out).contains(phrase), "{phrase}: {}", stderr(&out));
        }
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let verify = |require: &[&str], out_dir: &Path| {
        let out_dir = out_dir.display().to_string();
        let mut args = vec![
            "verify",
            "--models",
            &misspelt,
            "--target",
            "process",
            "--suites",
            "unit,quality",
            "--out",
            &out_dir,
        ];
        args.extend(require);
        preflight(&args)
    };
    let lenient = tmp.path().join("lenient");
    let out = verify(&[], &lenient);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = std::fs::read_to_string(lenient.join("summary.md")).expect("summary.md");
    assert!(
        summary.contains("## Skipped")
            && summary
                .contains("`quality` quality (missing), eta-lisbon 1: needs contract.quality")
            && summary.contains("## Warnings")
            && summary.contains("did you mean 'contract'?"),
        "{summary}"
    );
    let html = std::fs::read_to_string(lenient.join("report.html")).expect("report.html");
    assert!(html.contains("id=\"skipped\"") && html.contains("id=\"warnings\""));

    let strict = tmp.path().join("strict");
    let out = verify(&["--require", "quality"], &strict);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary = std::fs::read_to_string(strict.join("summary.md")).expect("summary.md");
    assert!(
        summary.contains("--require quality: the suite judged nothing"),
        "{summary}"
    );

    // The unit suite judged whether the fallback covers the inputs, but not
    // the artifact against the samples, which is what it is for.
    let unit = tmp.path().join("unit");
    let out = verify(&["--require", "unit"], &unit);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary = std::fs::read_to_string(unit.join("summary.md")).expect("summary.md");
    assert!(
        summary.contains("--require unit: the suite did not judge artifact parity"),
        "{summary}"
    );
}

/// A target that is not ready says what it saw: nothing listening, or a
/// server that is not an Open Inference Protocol server.
#[test]
fn an_endpoint_never_ready_says_what_answered() {
    use std::io::{Read, Write};
    // Something that answers every request 404, as a web server would.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0; 4096];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let models = fixtures().join("models").display().to_string();
    let tmp = tempfile::tempdir().expect("tmp");
    let out_dir = tmp.path().display().to_string();
    let not_oip = format!("url=http://{addr}");
    // Port 1 is privileged and nothing listens there.
    for (target, says) in [
        (not_oip.as_str(), "not an Open Inference Protocol server"),
        ("url=http://127.0.0.1:1", "connection refused"),
    ] {
        let out = preflight(&[
            "verify",
            "--models",
            &models,
            "--target",
            target,
            "--ready-timeout",
            "1",
            "--out",
            &out_dir,
        ]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{target}: {}", stderr(&out));
    }
}
