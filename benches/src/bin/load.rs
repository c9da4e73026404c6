//! An open-loop load generator for an Open Inference Protocol endpoint.
//!
//! Requests leave at a constant rate whatever the server does, and each is
//! timed from its *intended* send time, so a stalled server shows up in the
//! percentiles instead of slowing the load down (no coordinated omission).
//!
//!   load --url http://127.0.0.1:8080 --bundle fixtures/models/eta-madrid/1 --rate 1000 --seconds 5

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// The endpoint, such as http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// A bundle folder (`<model>/<version>`): its samples are the requests.
    #[arg(long)]
    bundle: PathBuf,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if !(cli.rate > 0.0 && cli.seconds > 0.0) {
        bail!("--rate and --seconds must be positive");
    }
    let version = cli
        .bundle
        .file_name()
        .context("bundle folder")?
        .to_string_lossy()
        .into_owned();
    let model = cli
        .bundle
        .parent()
        .and_then(|p| p.file_name())
        .context("model folder")?
        .to_string_lossy()
        .into_owned();
    let bodies = single_row_requests(&cli.bundle)?;
    let url = format!(
        "{}/v2/models/{model}/versions/{version}/infer",
        cli.url.trim_end_matches('/')
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    let total = (cli.rate * cli.seconds).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / cli.rate);
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let errors = Arc::new(Mutex::new(0_u64));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let intended = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(intended).await;
        let (client, url, body) = (
            client.clone(),
            url.clone(),
            bodies[i as usize % bodies.len()].clone(),
        );
        let (histogram, errors) = (Arc::clone(&histogram), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let ok = match client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            let micros = u64::try_from(intended.elapsed().as_micros()).unwrap_or(u64::MAX);
            if !ok {
                *errors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
            }
            let _ = histogram
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .record(micros.max(1));
        }));
    }
    let sent = Instant::now();
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let h = histogram
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let errors = *errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{model}/{version}: offered {:.0}/s for {:.1} s: {} requests, {} errors, completed \
                {:.0}/s; latency p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms (drained \
                {:.2} s after the last send)",
            cli.rate,
            cli.seconds,
            total,
            errors,
            total as f64 / elapsed,
            ms(0.50),
            ms(0.90),
            ms(0.99),
            h.max() as f64 / 1000.0,
            sent.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// One single-row infer request body per sample of the bundle.
fn single_row_requests(dir: &std::path::Path) -> Result<Vec<String>> {
    let bundle = preflight_bundle::Bundle::open(dir)?;
    let samples = bundle
        .samples()?
        .context("the bundle has no samples.jsonl")?;
    let inputs = &bundle.manifest().inputs;
    Ok(samples
        .iter()
        .map(|sample| {
            let tensors: Vec<Value> = inputs
                .iter()
                .zip(&sample.inputs)
                .map(|(f, v)| {
                    json!({
                        "name": f.name,
                        "datatype": f.datatype.as_str(),
                        "shape": [1, 1],
                        "data": [v.to_json()],
                    })
                })
                .collect();
            json!({ "inputs": tensors }).to_string()
        })
        .collect())
}
