//! `deploy/`: the alert rules and the Grafana dashboard, checked against
//! the real Prometheus of Debian's `prometheus` package (`cargo xtask test`
//! installs it): `promtool` checks the rules and runs their unit tests, and a
//! Prometheus scraping a real server sees the drift alert go pending when
//! one input drifts, and answers every query of the dashboard.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use preflight_bundle::Value as Cell;
use serde_json::{Value, json};

use crate::monitor::{MODEL, VERSION, infer, request, samples};
use crate::{Server, fixtures};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn tool(name: &str) -> Command {
    let found = Command::new("which").arg(name).output();
    if !found.is_ok_and(|o| o.status.success()) {
        panic!("no {name} on PATH: `apt-get install prometheus` (`cargo xtask test` does)");
    }
    Command::new(name)
}

#[test]
fn the_alert_rules_are_valid_and_their_unit_tests_pass() {
    let dir = deploy().join("prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = tool("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A Prometheus on a free port, scraping `target` every second with the
/// alert rules loaded; killed when dropped.
struct Prometheus {
    url: String,
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let data = tempfile::tempdir().expect("a data folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let rules = deploy().join("prometheus/alerts.yml");
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: preflight\n    static_configs:\n      \
                 - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .expect("write prometheus.yml");
        let log = std::fs::File::create(data.path().join("prometheus.log")).expect("a log");
        let child = tool("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _data: data,
        }
    }

    async fn get(&self, client: &reqwest::Client, path: &str, query: &[(&str, &str)]) -> Value {
        let response = client
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await;
        match response {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Waits, a minute at most, for `found` to pick something out of the
    /// alerts Prometheus holds.
    async fn alert(&self, client: &reqwest::Client, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let alerts = self.get(client, "/api/v1/alerts", &[]).await;
            if let Some(alert) = alerts["data"]["alerts"]
                .as_array()
                .and_then(|all| all.iter().find(|a| found(a)))
            {
                return alert.clone();
            }
            if Instant::now() > deadline {
                panic!("no such alert within 60 s; the last answer: {alerts}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Every metric name a PromQL text uses.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("preflight_") || w.starts_with("process_"))
        // `preflight_contract_*` in a comment is no name.
        .filter(|w| !w.ends_with('_'))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The family a sample name belongs to, as `# TYPE` names it.
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_one_input_drift_and_every_panel_has_its_metrics() {
    let server = Server::start(&fixtures().join("models")).await;
    let target = server.url.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target);
    let client = reqwest::Client::new();

    // 600 rows with every distance tripled: past the 500 rows the rule needs.
    let (bundle, samples) = samples();
    let distance = bundle
        .manifest()
        .input("distance_km")
        .expect("distance_km")
        .0;
    let tripled = |row: &mut Vec<Cell>| {
        if let Cell::Float(x) = row[distance] {
            row[distance] = Cell::Float(x * 3.0);
        }
    };
    for chunk in samples
        .iter()
        .cycle()
        .take(600)
        .collect::<Vec<_>>()
        .chunks(50)
    {
        let rows: Vec<_> = chunk.iter().map(|r| (*r).clone()).collect();
        infer(&server, &request(&bundle, &rows, &tripled)).await;
    }
    // Feedback, for the live error's series.
    let mut body = request(&bundle, &samples[..1], &|_| {});
    body["id"] = json!("deploy-1");
    infer(&server, &body).await;
    let feedback = format!("/v2/models/{MODEL}/feedback");
    let (status, _) = server
        .post(&feedback, &json!({"id": "deploy-1", "target": 30.0}))
        .await;
    assert_eq!(status, 200);

    let alert = prometheus
        .alert(&client, |a| {
            a["labels"]["alertname"] == "PreflightInputDrift" && a["labels"]["model"] == MODEL
        })
        .await;
    assert_eq!(alert["labels"]["input"], "distance_km", "{alert}");
    assert_eq!(alert["labels"]["version"], VERSION.to_string());
    assert!(
        matches!(alert["state"].as_str(), Some("pending" | "firing")),
        "{alert}"
    );
    // No other input of the model drifts.
    let alerts = prometheus.get(&client, "/api/v1/alerts", &[]).await;
    let drifting: Vec<&Value> = alerts["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "PreflightInputDrift")
        .map(|a| &a["labels"]["input"])
        .collect();
    assert_eq!(drifting, vec!["distance_km"], "{alerts}");

    // Every metric the rules and the dashboard use is one the server writes.
    let exposition = server.text("/metrics").await;
    let written: Vec<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let rules = std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).expect("rules");
    let dashboard =
        std::fs::read_to_string(deploy().join("grafana/preflight.json")).expect("the dashboard");
    for name in metric_names(&rules).iter().chain(&metric_names(&dashboard)) {
        assert!(
            written.contains(&family(name)),
            "{name} is used by deploy/ and not written on /metrics"
        );
    }

    // Every query of the dashboard is one Prometheus takes.
    let dashboard: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("an expr");
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$model", ".*")
                .replace("$version", ".*");
            let answer = prometheus
                .get(&client, "/api/v1/query", &[("query", &expr)])
                .await;
            assert_eq!(answer["status"], "success", "{expr}: {answer}");
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
}
