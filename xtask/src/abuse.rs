//! `cargo xtask bench abuse`: the release server under the loads and
//! clients that would break it, each measured against its goal
//! (docs/serving.md, "Admission", and benches/README.md, "Under abuse").
//!
//! - overload: single-row requests to a model that costs a few
//!   milliseconds, at its capacity and at four times it;
//! - 1,000-row batches at twice their capacity, with the resident memory
//!   sampled throughout and after;
//! - 250,000 requests to model names nobody serves;
//! - 2,000 connections that never finish their request head.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::server::Server;

#[allow(clippy::print_stdout)]
pub(crate) fn run(root: &Path) -> Result<()> {
    let (lib, release) = crate::bench::server_and_load(root)?;
    let serve = release.join("preflight-serve");
    let load = |url: &str, bundle: &Path, rate: f64, seconds: f64, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "--url".into(),
            url.into(),
            "--bundle".into(),
            bundle.display().to_string(),
            "--rate".into(),
            rate.to_string(),
            "--seconds".into(),
            seconds.to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        crate::bench::load_json(&release, &args)
    };
    let show = |what: &str, f: &Value| {
        println!(
            "{what}: offered {:.0}/s, {} rows: {:.0} ok/s, {} shed, {} other; ok p50 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms; all p99 {:.2} ms",
            f["offered_per_s"].as_f64().unwrap_or_default(),
            f["rows"],
            f["ok_per_s"].as_f64().unwrap_or_default(),
            f["shed"],
            f["other"],
            f["ok_p50_ms"].as_f64().unwrap_or_default(),
            f["ok_p99_ms"].as_f64().unwrap_or_default(),
            f["ok_max_ms"].as_f64().unwrap_or_default(),
            f["all_p99_ms"].as_f64().unwrap_or_default(),
        );
    };

    // Overload: a model of about 4 ms a call (the slower-release defect's
    // version 1: the fixture GBDT and a dense block of 96 MatMuls).
    let heavy = root.join("fixtures/defects/bundles/slower-release/eta-madrid/1");
    let repo = root.join("target/bench-abuse/heavy");
    fresh(&repo)?;
    crate::fleet::copy_bundle(
        &heavy,
        &repo.join("eta-madrid/1"),
        "eta-madrid",
        "eta-madrid",
        1,
    )?;
    let bundle = repo.join("eta-madrid/1");
    {
        let server = Server::start(&serve, &repo, &lib)?;
        server.wait_ready(Duration::from_secs(60))?;
        // Offered far beyond it, what is served is the capacity.
        let probe = load(server.url(), &bundle, 2000.0, 3.0, &[])?;
        let capacity = probe["ok_per_s"].as_f64().unwrap_or(1.0).max(1.0);
        println!("== overload: single-row capacity {capacity:.0}/s (probed at 2,000/s)");
        for times in [1.0, 4.0] {
            let f = load(server.url(), &bundle, capacity * times, 5.0, &[])?;
            show(&format!("{times}x capacity"), &f);
        }
    }

    // 1,000-row batches of the fixture GBDT at twice their capacity.
    let models = root.join("fixtures/models");
    let madrid = models.join("eta-madrid/1");
    {
        let server = Server::start(&serve, &models, &lib)?;
        server.wait_ready(Duration::from_secs(60))?;
        std::thread::sleep(Duration::from_secs(1));
        let idle = resident_mib(server.id())?;
        let probe = load(server.url(), &madrid, 400.0, 3.0, &["--rows", "1000"])?;
        let capacity = probe["ok_per_s"].as_f64().unwrap_or(1.0).max(1.0);
        println!("== 1,000-row batches: capacity {capacity:.0}/s; idle {idle:.0} MiB resident");
        let pid = server.id();
        let sampler = std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            let until = Instant::now() + Duration::from_secs(12);
            while Instant::now() < until {
                peak = peak.max(resident_mib(pid).unwrap_or(0.0));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        });
        let f = load(
            server.url(),
            &madrid,
            capacity * 2.0,
            10.0,
            &["--rows", "1000"],
        )?;
        show("2x capacity", &f);
        let peak = sampler.join().unwrap_or(0.0);
        std::thread::sleep(Duration::from_secs(5));
        let after = resident_mib(server.id())?;
        println!("resident: idle {idle:.0} MiB, peak {peak:.0} MiB, 5 s after {after:.0} MiB");
    }

    // 250,000 requests to model names nobody serves.
    {
        // Every 404 would log a warning: the log's cost is not measured here.
        let server = Server::start_with(&serve, &models, &lib, &["--log", "error"])?;
        server.wait_ready(Duration::from_secs(60))?;
        let before = resident_mib(server.id())?;
        let f = load(server.url(), &madrid, 10_000.0, 25.0, &["--unknown-models"])?;
        let after = resident_mib(server.id())?;
        let metrics = get(server.url(), "/metrics")?;
        println!(
            "== 250,000 unknown model names: {} answered 404 ({} other); resident {before:.0} -> \
             {after:.0} MiB; /metrics {} bytes",
            f["other"],
            f["ok"],
            metrics.len()
        );
    }

    // 2,000 connections that send half a request head.
    {
        let timeout = 10;
        let flag = timeout.to_string();
        let server = Server::start_with(
            &serve,
            &models,
            &lib,
            &["--log", "warn", "--header-timeout-seconds", &flag],
        )?;
        server.wait_ready(Duration::from_secs(60))?;
        let addr = server.url().trim_start_matches("http://").to_owned();
        let started = Instant::now();
        let mut held = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let mut stream = TcpStream::connect(&addr).context("connect")?;
            stream.write_all(b"POST /v2/models/eta-madrid/infer HTTP/1.1\r\nHost: x\r\n")?;
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            held.push(stream);
        }
        let opened = started.elapsed();
        // Meanwhile, the server still answers.
        let live = get(server.url(), "/v2/health/live").is_ok();
        let mut last = Duration::ZERO;
        let mut closed = 0;
        for mut stream in held {
            let mut sink = Vec::new();
            if stream.read_to_end(&mut sink).is_ok() {
                closed += 1;
            }
            last = last.max(started.elapsed());
        }
        println!(
            "== 2,000 partial request heads: opened in {:.2} s, live meanwhile: {live}; {closed} \
             closed by the server, the last {:.1} s after the first opened (header timeout \
             {timeout} s)",
            opened.as_secs_f64(),
            last.as_secs_f64()
        );
    }
    Ok(())
}

fn fresh(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// `GET path` over a plain connection: the body.
pub(crate) fn get(url: &str, path: &str) -> Result<String> {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (_, body) = answer.split_once("\r\n\r\n").context("no body")?;
    Ok(body.to_owned())
}

/// Resident memory of a process, in MiB.
fn resident_mib(pid: u32) -> Result<f64> {
    Ok(crate::bench::resident_kib(pid)? as f64 / 1024.0)
}
