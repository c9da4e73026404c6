//! `cargo xtask fixtures`: regenerate the committed fixtures from the pinned
//! Python pipeline in `fixtures/generate/`.
//!
//! The pipeline writes into a staging folder under `target/`; the committed
//! folders are replaced only after it has succeeded, so a failed run leaves
//! them as they were.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::{exec, python_env};

pub(crate) fn run(root: &Path) -> Result<()> {
    let generate = root.join("fixtures/generate");
    let python = python_env(root, "fixtures-venv", &generate.join("requirements.txt"))?;

    let staging = root.join("target/fixtures-staging");
    remove_if_present(&staging)?;
    exec(
        Command::new(&python)
            .arg("generate.py")
            .arg(&staging)
            // Belt and braces for determinism: anything still ordered by a set.
            .env("PYTHONHASHSEED", "0")
            .current_dir(&generate),
    )?;

    replace(&staging.join("models"), &root.join("fixtures/models"))?;
    replace(
        &staging.join("defects"),
        &root.join("fixtures/defects/bundles"),
    )?;
    replace(&staging.join("peers"), &root.join("fixtures/peers"))?;
    fs::rename(
        staging.join("measured.json"),
        generate.join("measured.json"),
    )
    .context("moving measured.json into fixtures/generate")?;
    eprintln!("fixtures regenerated; `git status fixtures` shows what changed");
    Ok(())
}

/// Puts `new` where `old` is, keeping `old` until `new` is in place.
fn replace(new: &Path, old: &Path) -> Result<()> {
    let parked = old.with_extension("replaced");
    remove_if_present(&parked)?;
    if old.exists() {
        fs::rename(old, &parked).with_context(|| format!("moving {} aside", old.display()))?;
    }
    fs::rename(new, old)
        .with_context(|| format!("moving {} to {}", new.display(), old.display()))?;
    remove_if_present(&parked)
}

fn remove_if_present(path: &Path) -> Result<()> {
    if path.exists() {
        fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}
