//! `cargo xtask ort`: fetch the pinned ONNX Runtime shared library.
//!
//! The library comes from the `onnxruntime` wheel on PyPI (the one registry
//! every machine here reaches), checked against its sha256, and is extracted
//! into `target/ort/`, where the server and the tests look for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::exec;

/// The one place the ONNX Runtime version is pinned.
pub(crate) const VERSION: &str = "1.32.0";
/// The wheel of each machine the release is built for: `(arch, platform
/// tag, sha256)`.
const WHEELS: [(&str, &str, &str); 2] = [
    (
        "x86_64",
        "manylinux_2_28_x86_64",
        "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    ),
    (
        "aarch64",
        "manylinux_2_28_aarch64",
        "2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c",
    ),
];

/// The library's path once fetched.
pub(crate) fn library(root: &Path) -> PathBuf {
    root.join("target/ort")
        .join(format!("libonnxruntime.so.{VERSION}"))
}

/// Fetches the library unless it is already in place; returns its path.
pub(crate) fn ensure(root: &Path) -> Result<PathBuf> {
    let lib = library(root);
    if lib.is_file() {
        return Ok(lib);
    }
    let wheel_for = WHEELS
        .iter()
        .find(|(arch, _, _)| cfg!(target_os = "linux") && *arch == std::env::consts::ARCH);
    let Some(&(_, platform, sha256)) = wheel_for else {
        bail!(
            "the pinned ONNX Runtime wheels are for Linux x86_64 and aarch64; on this platform \
                set ORT_DYLIB_PATH to a libonnxruntime {VERSION}"
        );
    };
    let dir = root.join("target/ort");
    let download = dir.join("download");
    std::fs::create_dir_all(&download)
        .with_context(|| format!("creating {}", download.display()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let wheel = download.join(format!("onnxruntime-{VERSION}-cp311-cp311-{platform}.whl"));
    if !wheel.is_file() {
        exec(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                ])
                .args([
                    "--only-binary=:all:",
                    "--python-version",
                    "3.11",
                    "--platform",
                    platform,
                ])
                .arg(format!("onnxruntime=={VERSION}"))
                .arg("--dest")
                .arg(&download),
        )
        .context("downloading the onnxruntime wheel from PyPI with pip")?;
    }
    // Python's standard library checks the hash and unpacks the wheel, so
    // xtask needs no zip or hashing crate.
    let script = r#"
import hashlib, sys, zipfile, os
wheel, expected, dest, version = sys.argv[1:]
digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
if digest != expected:
    sys.exit(f"{wheel}: sha256 {digest}, expected {expected}; delete it and run again")
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
tmp = os.path.join(dest, f".libonnxruntime.so.{version}.part")
with zipfile.ZipFile(wheel) as z, z.open(name) as src, open(tmp, "wb") as out:
    out.write(src.read())
os.replace(tmp, os.path.join(dest, f"libonnxruntime.so.{version}"))
# The unversioned name is what the server looks for; the version lives here only.
link = os.path.join(dest, "libonnxruntime.so")
if os.path.lexists(link):
    os.remove(link)
os.symlink(f"libonnxruntime.so.{version}", link)
"#;
    exec(
        Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&wheel)
            .arg(sha256)
            .arg(&dir)
            .arg(VERSION),
    )?;
    eprintln!("ONNX Runtime {VERSION}: {}", lib.display());
    Ok(lib)
}
