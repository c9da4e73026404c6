//! `cargo xtask wheel`: the `preflight-bundle` wheel with the `preflight`
//! and `preflight-serve` binaries in it, so that one `pip install` brings
//! the package that writes bundles and the commands that verify them.
//!
//! setuptools builds the package as it always has (`pip wheel python/`);
//! the two binaries are then added as the wheel's `.data/scripts/`, which
//! pip installs into the environment's `bin/`, and the wheel is tagged for
//! this platform (docs/install.md). That is what maturin's `bin` bindings
//! do for the binaries of one crate; Preflight's two live in two crates
//! that never link each other, beside a Python package.
//!
//! ONNX Runtime is not in the wheel: the package requires the `onnxruntime`
//! wheel, and both binaries find its library in the environment they are
//! installed in (`preflight_ort::find_library`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{build_debug, cargo, exec, pip_install};

/// The two binaries the wheel carries, each `(package, binary)`.
const BINARIES: [(&str, &str); 2] = [
    ("preflight-harness", "preflight"),
    ("preflight-serving", "preflight-serve"),
];

/// The binaries added to a pure wheel, its tag made this platform's, and
/// its RECORD rewritten; prints the new wheel's path.
const ADD_BINARIES: &str = r#"
import base64, hashlib, os, platform, re, sys, zipfile
pure, out_dir, *binaries = sys.argv[1:]
with zipfile.ZipFile(pure) as z:
    entries = {n: z.read(n) for n in z.namelist()}
dist_info = next(n.split("/")[0] for n in entries if n.endswith(".dist-info/WHEEL"))
base = dist_info[: -len(".dist-info")]
libc, version = platform.libc_ver()
if libc != "glibc":
    sys.exit(f"binaries built against {libc or 'an unknown C library'}: only glibc is tagged")
major, minor = version.split(".")[:2]
tag = f"py3-none-manylinux_{major}_{minor}_{platform.machine()}"
wheel = entries[f"{dist_info}/WHEEL"].decode()
wheel = wheel.replace("Root-Is-Purelib: true", "Root-Is-Purelib: false")
wheel = re.sub(r"^Tag: .*$", f"Tag: {tag}", wheel, flags=re.M)
entries[f"{dist_info}/WHEEL"] = wheel.encode()
scripts = {f"{base}.data/scripts/{os.path.basename(b)}": b for b in binaries}
for name, path in scripts.items():
    entries[name] = open(path, "rb").read()
record_name = f"{dist_info}/RECORD"
rows = []
for name, data in entries.items():
    if name != record_name:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(data)}")
rows.append(f"{record_name},,")
entries[record_name] = ("\n".join(rows) + "\n").encode()
out = os.path.join(out_dir, f"{base}-{tag}.whl")
part = out + ".part"
with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
    for name, data in entries.items():
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        # A regular file's type and mode: pip makes a script executable by both.
        info.external_attr = (0o100755 if name in scripts else 0o100644) << 16
        z.writestr(info, data)
os.replace(part, out)
print(out)
"#;

/// Builds the wheel into `target/wheels/` from the binaries of `profile`
/// (`release`, or `dev` for the tests, which have built them already);
/// returns its path.
pub(crate) fn build(root: &Path, profile: &str) -> Result<PathBuf> {
    let bin_dir = if profile == "dev" {
        build_debug(root)?
    } else {
        let mut command = Command::new(cargo());
        command
            .current_dir(root)
            .args(["build", "--locked", "--profile", profile]);
        for (package, binary) in BINARIES {
            command.args(["--package", package, "--bin", binary]);
        }
        exec(&mut command)?;
        root.join("target").join(profile)
    };
    let out = root.join("target/wheels");
    let pure = root.join("target/wheels/pure");
    let _ = std::fs::remove_dir_all(&pure);
    std::fs::create_dir_all(&pure).with_context(|| format!("creating {}", pure.display()))?;
    // setuptools' build folder would carry a module removed since into the wheel.
    let _ = std::fs::remove_dir_all(root.join("python/build"));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    exec(
        Command::new(&python)
            .current_dir(root)
            .args([
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-deps", "--wheel-dir"])
            .arg(&pure)
            .arg("./python"),
    )?;
    let pure_wheel = std::fs::read_dir(&pure)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip wheel wrote no wheel")?;
    let output = Command::new(&python)
        .arg("-c")
        .arg(ADD_BINARIES)
        .arg(&pure_wheel)
        .arg(&out)
        .args(BINARIES.map(|(_, binary)| bin_dir.join(binary)))
        .output()
        .context("running python3")?;
    if !output.status.success() {
        bail!(
            "adding the binaries to {}: {}",
            pure_wheel.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wheel = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    eprintln!("{}", wheel.display());
    Ok(wheel)
}

/// What a data scientist does: the wheel installed into a fresh virtual
/// environment, and `preflight verify` run from it on the fixtures with
/// the process target, finding `preflight-serve` beside itself and ONNX
/// Runtime in the environment (nothing set for either).
pub(crate) fn check(root: &Path) -> Result<()> {
    let wheel = build(root, "dev")?;
    let venv = root.join("target/wheel-venv");
    let _ = std::fs::remove_dir_all(&venv);
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    exec(Command::new(system_python).arg("-m").arg("venv").arg(&venv))?;
    pip_install(&venv.join("bin/python"), &[wheel.as_os_str()])?;
    let out = root.join("target/wheel-check");
    let _ = std::fs::remove_dir_all(&out);
    exec(
        Command::new(venv.join("bin/preflight"))
            .current_dir(root)
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("PREFLIGHT_SERVE")
            .args([
                "verify",
                "--models",
                "fixtures/models",
                "--target",
                "process",
            ])
            .arg("--out")
            .arg(&out),
    )
    .context("`preflight verify` from the installed wheel")?;
    exec(Command::new(venv.join("bin/python")).args(["-c", "import preflight_bundle"]))
}
