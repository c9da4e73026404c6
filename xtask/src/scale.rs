//! `cargo xtask bench scale`: what a repository of many models costs
//! `preflight-serve`, with its trees as exported (ONNX-ML opset 3) and in
//! compact form (opset 5, `python/src/preflight_bundle/compact.py`): time to
//! ready, resident memory and the heap gauge at 300 and 1,000 models, and a
//! single-row open-loop latency run against one of them, so that memory is
//! never cut at latency's expense unseen.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::bench::{load_json, serve_copies, server_and_load};
use crate::{exec, python};

const SIZES: [usize; 2] = [300, 1000];
const MODEL: &str = "fixtures/models/eta-madrid/1";

pub(crate) fn run(root: &Path) -> Result<()> {
    let (lib, release) = server_and_load(root)?;
    let compact = compact_copy(root)?;
    let mut rows = Vec::new();
    for (form, bundle) in [
        ("as exported (opset 3)", root.join(MODEL)),
        ("compact (opset 5)", compact),
    ] {
        for n in SIZES {
            eprintln!("== {n} copies of eta-madrid/1, {form}");
            let repo = root.join(format!("target/bench-scale-{n}"));
            let (server, ready, rss) = serve_copies(&release, &lib, &bundle, &repo, n)?;
            let heap = heap_mib(server.url())?;
            let url = server.url().to_owned();
            let figures = load_json(
                &release,
                &[
                    "--url".into(),
                    url,
                    "--rate".into(),
                    "1000".into(),
                    "--seconds".into(),
                    "5".into(),
                    "--bundle".into(),
                    repo.join("eta-copy-000/1").display().to_string(),
                ],
            )?;
            let ms = |key: &str| figures[key].as_f64().unwrap_or(f64::NAN);
            rows.push(format!(
                "| {form} | {n} | {:.2} s | {rss:.0} MiB | {:.2} MiB | {heap:.0} MiB | {:.3} ms \
                 | {:.3} ms |",
                ready.as_secs_f64(),
                rss / n as f64,
                ms("all_p50_ms"),
                ms("all_p99_ms"),
            ));
            drop(server);
            std::fs::remove_dir_all(&repo)?;
        }
    }
    #[allow(clippy::print_stdout)]
    {
        println!(
            "| trees | models | ready | resident | per model | heap gauge | p50 at 1,000/s | p99 |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        for row in rows {
            println!("{row}");
        }
    }
    Ok(())
}

/// eta-madrid/1 with its model rewritten by the Python package's
/// `compact_trees`, its other files hard-linked: `target/bench-compact/…`.
fn compact_copy(root: &Path) -> Result<PathBuf> {
    let python = python::package(root)?;
    let source = root.join(MODEL);
    let dir = root.join("target/bench-compact/eta-madrid/1");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    crate::fleet::copy_bundle(&source, &dir, "eta-madrid", "eta-madrid", 1)?;
    let model = dir.join("model.onnx");
    std::fs::remove_file(&model)?;
    exec(
        Command::new(python)
            .args([
                "-c",
                "import sys, onnx, preflight_bundle as p; \
                 onnx.save(p.compact_trees(onnx.load(sys.argv[1])), sys.argv[2])",
            ])
            .arg(source.join("model.onnx"))
            .arg(&model),
    )?;
    Ok(dir)
}

/// `preflight_process_heap_bytes` from the server's `/metrics`, in MiB.
fn heap_mib(url: &str) -> Result<f64> {
    let text = crate::abuse::get(url, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("preflight_process_heap_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|bytes| bytes / 1024.0 / 1024.0)
        .context("no preflight_process_heap_bytes in /metrics")
}
