//! `cargo xtask fuzz [--seconds N] [--target NAME]`: coverage-guided
//! fuzzing of request decoding and manifest parsing with AFL++, one target
//! after the other; see fuzz/README.md.
//!
//! Installs the pinned cargo-afl (and with it AFL++) when it is missing,
//! builds `fuzz/` with AFL++'s instrumentation, and runs each target from its
//! seed corpus, `fuzz/corpus/<target>/`. An input that crashes or hangs a
//! target is copied into `fuzz/regressions/<target>/`, which the tests of
//! `serving` and `bundle` replay, and the command fails naming it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, exec};

/// The one place the cargo-afl version is pinned; it carries AFL++ 4.40c.
const CARGO_AFL: &str = "0.18.2";

/// Every target, in the order they run: binaries of `fuzz/src/bin/`.
const TARGETS: [&str; 3] = ["infer_v2", "infer_v1", "manifest"];

/// Ten minutes a target unless told otherwise.
const SECONDS: u64 = 600;

/// How long one input may take, in ms, before AFL++ calls it a hang: far
/// above a request's normal cost (under 1 ms), and above the fallback's
/// deadline, so only a real stall counts.
const TIMEOUT_MS: &str = "1000";

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--target infer_v2|infer_v1|manifest]";

/// `cargo xtask fuzz [ARGS]`.
pub(crate) fn run(root: &Path, args: Vec<String>) -> Result<()> {
    let (mut seconds, mut only) = (SECONDS, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().and_then(|v| v.parse().ok());
                seconds = value.context("--seconds needs a whole number")?;
            }
            "--target" => only = Some(args.next().context("--target needs a name")?),
            other => bail!("unknown option '{other}' of fuzz\n\n{USAGE}"),
        }
    }
    let targets: Vec<&str> = match only.as_deref() {
        None => TARGETS.to_vec(),
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => bail!("no fuzz target '{name}'\n\n{USAGE}"),
    };
    ensure_afl(root)?;
    let lib = crate::ort::ensure(root)?;
    let fuzz = root.join("fuzz");
    exec(Command::new(cargo()).current_dir(root).args([
        "afl",
        "build",
        "--release",
        "--locked",
        "--manifest-path",
        "fuzz/Cargo.toml",
    ]))?;
    let mut found = Vec::new();
    for target in targets {
        let findings = fuzz.join("target/findings").join(target);
        // Each run starts from the seed corpus; what it found is kept in
        // fuzz/regressions/ below.
        if findings.exists() {
            std::fs::remove_dir_all(&findings)
                .with_context(|| format!("removing {}", findings.display()))?;
        }
        std::fs::create_dir_all(fuzz.join("target/findings"))?;
        eprintln!("fuzzing {target} for {seconds} s");
        exec(
            Command::new(cargo())
                .current_dir(root)
                .env("ORT_DYLIB_PATH", &lib)
                // No UI on a terminal that is not one, and no refusal over
                // a machine's CPU governor or a core_pattern that pipes
                // crashes elsewhere: a crash is still seen through waitpid.
                .env("AFL_NO_UI", "1")
                .env("AFL_SKIP_CPUFREQ", "1")
                .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1")
                .args(["afl", "fuzz", "-i"])
                .arg(fuzz.join("corpus").join(target))
                .arg("-o")
                .arg(&findings)
                .args(["-V", &seconds.to_string(), "-t", TIMEOUT_MS])
                .arg(fuzz.join("target/release").join(target)),
        )?;
        summary(target, &findings.join("default/fuzzer_stats"));
        found.extend(keep_findings(&fuzz, target, &findings.join("default"))?);
    }
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(|p| format!("  {}", p.display())).collect();
        bail!(
            "AFL++ found {} input(s) that crash or hang a target, copied to:\n{}\nreplay them with \
             `cargo test -p preflight-serving --test it fuzz_corpus` (infer_*) or \
             `cargo test -p preflight-bundle --test it fuzz_corpus` (manifest)",
            found.len(),
            list.join("\n")
        );
    }
    Ok(())
}

/// Installs the pinned cargo-afl unless it is there; installing it builds
/// AFL++ for this toolchain, and `cargo afl config --build` does when that
/// did not happen (a new toolchain, or a build that failed at install).
fn ensure_afl(root: &Path) -> Result<()> {
    let version = || {
        let output = Command::new(cargo())
            .current_dir(root)
            .args(["afl", "--version"])
            .output();
        output.map_or_else(
            |_| String::new(),
            |o| String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    if !version().starts_with(&format!("cargo-afl {CARGO_AFL}")) {
        exec(Command::new(cargo()).current_dir(root).args([
            "install",
            "cargo-afl",
            "--version",
            &format!("={CARGO_AFL}"),
            "--locked",
        ]))?;
    }
    // `cargo afl --version` names AFL++ only once it is built for this rustc.
    if !version().contains("AFL++ version") {
        exec(
            Command::new(cargo())
                .current_dir(root)
                .args(["afl", "config", "--build"]),
        )?;
    }
    Ok(())
}

/// One line of a run's figures, from AFL++'s `fuzzer_stats`.
fn summary(target: &str, stats: &Path) {
    let Ok(text) = std::fs::read_to_string(stats) else {
        eprintln!("{target}: no {}", stats.display());
        return;
    };
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map_or("?", |(_, v)| v.trim())
            .to_owned()
    };
    eprintln!(
        "{target}: {} s, {} execs ({}/s), corpus {}, edges {}/{}, stability {}, crashes {}, \
         hangs {}",
        field("run_time"),
        field("execs_done"),
        field("execs_per_sec"),
        field("corpus_count"),
        field("edges_found"),
        field("total_edges"),
        field("stability"),
        field("saved_crashes"),
        field("saved_hangs"),
    );
}

/// Copies each crash and hang of a run into `fuzz/regressions/<target>/`,
/// named by kind and content (the same input found twice is one file);
/// returns the copies.
fn keep_findings(fuzz: &Path, target: &str, run: &Path) -> Result<Vec<PathBuf>> {
    let regressions = fuzz.join("regressions").join(target);
    let mut kept = Vec::new();
    for (folder, kind) in [("crashes", "crash"), ("hangs", "hang")] {
        let Ok(entries) = std::fs::read_dir(run.join(folder)) else {
            continue;
        };
        let mut inputs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n != "README.txt"))
            .collect();
        inputs.sort();
        for input in inputs {
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            std::fs::create_dir_all(&regressions)?;
            let name = format!("{kind}-{:016x}", fnv1a(&bytes));
            let copy = regressions.join(name);
            std::fs::write(&copy, &bytes).with_context(|| format!("writing {}", copy.display()))?;
            eprintln!("{target}: {} -> {}", input.display(), copy.display());
            kept.push(copy);
        }
    }
    Ok(kept)
}

/// FNV-1a, 64 bits: a name for an input that is the same on every machine.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashes_and_hangs_are_kept_by_content_and_the_readme_is_not() {
        let dir = std::env::temp_dir().join(format!("xtask-fuzz-{}", std::process::id()));
        let (run, fuzz) = (dir.join("run"), dir.join("fuzz"));
        for (folder, file, bytes) in [
            ("crashes", "README.txt", "what AFL++ writes"),
            (
                "crashes",
                "id:000000,sig:06,src:000001,op:havoc",
                "{\"inputs\"",
            ),
            (
                "crashes",
                "id:000001,sig:06,src:000002,op:havoc",
                "{\"inputs\"",
            ),
            ("hangs", "id:000000,src:000003,op:havoc", "[[[[["),
        ] {
            std::fs::create_dir_all(run.join(folder)).expect("mkdir");
            std::fs::write(run.join(folder).join(file), bytes).expect("write");
        }
        let kept = keep_findings(&fuzz, "infer_v2", &run).expect("kept");
        let mut names: Vec<String> = std::fs::read_dir(fuzz.join("regressions/infer_v2"))
            .expect("regressions")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(kept.len(), 3);
        let crash = format!("crash-{:016x}", fnv1a(b"{\"inputs\""));
        assert_eq!(names, [crash, format!("hang-{:016x}", fnv1a(b"[[[[["))]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
