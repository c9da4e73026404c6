//! report.html as a release manager sees it: rendered by headless Chromium
//! (Debian's `chromium`) at a laptop's width and a phone's, and read back
//! from the laid-out DOM. A passing release and a failing one, both compared
//! with the committed baseline. Screenshots go to `target/browser/` for
//! people to look at.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{fixtures, preflight, stderr};

/// Phone and laptop: width and height of the first screen.
const SCREENS: [(u32, u32); 2] = [(390, 844), (1400, 900)];

const PROBE: &str = include_str!("browser_probe.js");

fn chromium() -> PathBuf {
    // Debian's package, or the Chrome that CI runners carry.
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("which").arg(name).output();
        if let Ok(out) = found
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("no chromium on PATH: `apt-get install chromium` (`cargo xtask test` does)");
}

/// Runs headless Chromium with `args` on `page`, killed after a minute;
/// what it printed on stdout and stderr. Both go to files: a dumped DOM is
/// larger than a pipe holds.
fn headless(args: &[String], page: &Path) -> (String, String) {
    let profile = tempfile::tempdir().expect("a profile folder");
    let (stdout, stderr) = (profile.path().join("stdout"), profile.path().join("stderr"));
    let file = |path: &Path| std::fs::File::create(path).expect("an output file");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg("--no-first-run")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::from(file(&stdout)))
        .stderr(Stdio::from(file(&stderr)))
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for chromium").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish with {} in 60 s", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    };
    (read(&stdout), read(&stderr))
}

/// What the page shows at `width`×`height`, read by the probe. The report
/// is laid out in an iframe of exactly that size (`srcdoc`, so that the
/// probe inside may write to the page around it): a headless window has a
/// minimum width above a phone's.
fn probe(report: &Path, (width, height): (u32, u32)) -> Value {
    let html = std::fs::read_to_string(report).expect("report.html");
    // Errors are caught from the first line on; the probe reads the page last.
    let catch = "<script>window.__preflightErrors=[];\
        addEventListener('error',e=>__preflightErrors.push(String(e.message)));\
        const __e=console.error;console.error=(...a)=>{__preflightErrors.push(a.join(' '));\
        __e(...a)};</script>";
    let probed = html
        .replacen("<head>", &format!("<head>{catch}"), 1)
        .replacen("</body>", &format!("<script>{PROBE}</script></body>"), 1);
    let host = format!(
        "<!doctype html><html><body style=\"margin:0\"><iframe width=\"{width}\" \
        height=\"{height}\" style=\"border:0;display:block\" srcdoc=\"{}\"></iframe>\
        </body></html>",
        probed.replace('&', "&amp;").replace('"', "&quot;")
    );
    let page = report.with_file_name(format!("probe-{width}.html"));
    std::fs::write(&page, host).expect("write the probed page");
    let (dom, log) = headless(
        &[
            format!("--window-size={},{}", width + 200, height + 200),
            "--virtual-time-budget=2000".to_owned(),
            "--dump-dom".to_owned(),
        ],
        &page,
    );
    let start = dom
        .rfind("<pre id=\"preflight-probe\">")
        .unwrap_or_else(|| panic!("no probe in the DOM at {width} px; chromium said:\n{log}"));
    let json = &dom[start + "<pre id=\"preflight-probe\">".len()..];
    let json = &json[..json.find("</pre>").expect("the probe's end")];
    let json = json
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("probe at {width} px: {e}: {json}"))
}

fn screenshot(report: &Path, name: &str, (width, height): (u32, u32)) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser");
    std::fs::create_dir_all(&dir).expect("target/browser");
    let shot = dir.join(format!("{name}-{width}.png"));
    headless(
        &[
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", shot.display()),
        ],
        report,
    );
    assert!(shot.is_file(), "no screenshot {}", shot.display());
}

/// `preflight verify` on `models` with `--target process` against the
/// committed baseline; its report folder.
fn verify(models: &Path, suites: &str, out: &Path) -> Value {
    let baseline = fixtures().join("baseline/report.json");
    let run = preflight(&[
        "verify",
        "--models",
        &models.display().to_string(),
        "--target",
        "process",
        "--suites",
        suites,
        "--baseline",
        &baseline.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    let code = run.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "exit {code:?}: {}",
        stderr(&run)
    );
    let json = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    serde_json::from_str(&json).expect("report.json parses")
}

/// Every check that failed, as `model version`, suite and check.
fn failed_checks(report: &Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for model in report["models"].as_array().into_iter().flatten() {
        let who = format!(
            "{} {}",
            model["name"].as_str().unwrap_or(""),
            model["version"]
        );
        for suite in model["suites"].as_array().into_iter().flatten() {
            for check in suite["checks"].as_array().into_iter().flatten() {
                if check["verdict"] == "failed" {
                    found.push((
                        who.clone(),
                        suite["suite"].as_str().unwrap_or("").to_owned(),
                        check["name"].as_str().unwrap_or("").to_owned(),
                    ));
                }
            }
        }
    }
    found
}

/// What every page must be at every width: no error, no script of its
/// own, no external asset, no horizontal scroll, and the verdict and the
/// baseline on the first screen.
fn sound(page: &Value, width: u32) {
    assert_eq!(
        page["errors"],
        serde_json::json!([]),
        "console errors at {width} px"
    );
    // The two scripts are the test's own: the error catcher and the probe.
    assert_eq!(page["scripts"], 2, "report.html has a script of its own");
    assert_eq!(page["external"], 0, "report.html loads an external asset");
    let scroll = page["scroll_width"].as_f64().unwrap_or(f64::MAX);
    assert!(
        scroll <= f64::from(width),
        "{scroll} px wide at {width} px: it scrolls sideways"
    );
    assert_eq!(page["verdict_on_first_screen"], true, "{page}");
    assert_eq!(page["baseline_on_first_screen"], true, "{page}");
    assert!(
        page["baseline"]
            .as_str()
            .is_some_and(|b| b.contains("baseline/report.json")),
        "the baseline is not named: {page}"
    );
}

/// Every change above 5% that "What changed" shows is one the run judged:
/// its comparison with the last release is a check that passed or failed,
/// not one skipped for want of a like-for-like figure.
fn no_unjudged_change(page: &Value, report: &Value) {
    let rows = page["change_rows"].as_array().expect("change rows");
    assert!(!rows.is_empty(), "no figures against the baseline");
    for row in rows {
        let cell = |i: usize| row[i].as_str().unwrap_or("").to_owned();
        let (model, figure, change) = (cell(0), cell(1), cell(4));
        let Some(percent) = change.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) else {
            continue;
        };
        if percent.abs() <= 5.0 {
            continue;
        }
        let (suite, check) = match figure.as_str() {
            "p50" | "p99" => ("latency", format!("{figure} against the last release")),
            "artifact" => ("size", "growth against the baseline".to_owned()),
            "memory" => ("size", "memory growth against the baseline".to_owned()),
            metric => ("quality", format!("{metric} against the baseline")),
        };
        let checks: Vec<&Value> = report["models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["name"] == model.as_str())
            .flat_map(|m| m["suites"].as_array().into_iter().flatten())
            .filter(|s| s["suite"] == suite)
            .flat_map(|s| s["checks"].as_array().into_iter().flatten())
            .filter(|c| {
                c["name"] == check.as_str()
                    || (suite == "quality" && c["name"] == "against the baseline")
            })
            .collect();
        assert!(
            !checks.is_empty() && checks.iter().all(|c| c["verdict"] != "skipped"),
            "{model} {figure} shows {change} but was not judged: {checks:?}"
        );
    }
}

#[test]
fn report_html_shows_a_release_manager_the_verdict_and_every_failure_first() {
    let dir = tempfile::tempdir().expect("a temporary folder");

    // A failing release: a category swapped in the export.
    let failing_out = dir.path().join("failing");
    let failing = verify(
        &fixtures().join("defects/bundles/category-swapped"),
        "unit,parity,quality,latency,size",
        &failing_out,
    );
    assert_eq!(failing["verdict"], "failed");
    let failures = failed_checks(&failing);
    assert!(failures.len() >= 3, "{failures:?}");
    let html = failing_out.join("report.html");
    for screen in SCREENS {
        let page = probe(&html, screen);
        sound(&page, screen.0);
        assert_eq!(page["verdict"], "Release FAILED");
        let shown: Vec<&str> = page["failures"]
            .as_array()
            .expect("a failures box")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            shown.len(),
            failures.len(),
            "{shown:#?}\nagainst {failures:#?}"
        );
        for ((who, suite, check), line) in failures.iter().zip(&shown) {
            let lead = format!("{who} · {suite} · {check}");
            assert!(
                line.starts_with(&lead),
                "{line:?} does not start with {lead:?}"
            );
        }
        assert_eq!(
            page["failures_on_first_screen"], true,
            "a failure is below the first screen at {screen:?}"
        );
        assert!(
            page["changes"].as_u64() > Some(0),
            "no figures against the baseline"
        );

        let charts = page["charts"].as_array().expect("charts");
        let chart = |caption: &str| {
            charts
                .iter()
                .find(|c| {
                    c["caption"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(caption))
                })
                .unwrap_or_else(|| panic!("no {caption:?} chart in {charts:#?}"))
        };
        for chart in charts {
            assert!(chart["x_ticks"].as_u64() >= Some(2), "{chart}");
            assert!(chart["y_ticks"].as_u64() >= Some(2) || chart["bars"].as_u64() <= Some(2));
            assert!(
                chart["width"].as_f64() <= Some(f64::from(screen.0)),
                "{chart}"
            );
        }
        let latency = chart("Latency");
        let limits = latency["limits"].to_string();
        assert!(
            limits.contains("p99 budget") && limits.contains("p50 budget"),
            "{latency}"
        );
        let parity = chart("Parity");
        assert!(
            parity["limits"].to_string().contains("tolerance"),
            "{parity}"
        );
        assert!(
            parity["bad_bars"].as_u64() > Some(0),
            "no outlier in red: {parity}"
        );
        let quality = chart("quality mae");
        assert!(quality["limits"].to_string().contains("max"), "{quality}");
        screenshot(&html, "failing", screen);
    }

    // A passing release: no failures box, the same soundness.
    let passing_out = dir.path().join("passing");
    // Latency and memory measured otherwise than the baseline's (a process
    // against the baseline's container): neither may show as a change.
    let passing = verify(
        &fixtures().join("models"),
        "unit,parity,nullable,quality,size,latency",
        &passing_out,
    );
    assert_eq!(
        failed_checks(&passing),
        Vec::new(),
        "the clean fixtures fail"
    );
    let html = passing_out.join("report.html");
    for screen in SCREENS {
        let page = probe(&html, screen);
        sound(&page, screen.0);
        assert_eq!(page["verdict"], "Release PASSED");
        assert_eq!(page["failures"], serde_json::json!([]));
        no_unjudged_change(&page, &passing);
        screenshot(&html, "passing", screen);
    }
}
