//! Finding and starting ONNX Runtime, and making sessions: the plumbing
//! that `preflight-serve` and `preflight` share, and nothing else. It knows
//! no bundle, no manifest and no HTTP: how a model's inputs are fed stays
//! with each caller, on purpose (ARCHITECTURE.md).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod scratch;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

/// The file name the library is looked for under, in the folders searched.
pub const LIBRARY: &str = "libonnxruntime.so";

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// Why ONNX Runtime could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrtInitError {
    #[error(
        "the ONNX Runtime library was not found (looked in: {searched}); pass --ort-lib, set \
        ORT_DYLIB_PATH, or run `cargo xtask ort` to fetch it into target/ort/"
    )]
    NotFound { searched: String },
    #[error("{path}: cannot load ONNX Runtime: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("ONNX Runtime is not started: call preflight_ort::init first")]
    NotStarted,
}

/// Why ONNX Runtime cannot make a session of a model (the caller names the
/// model and its file).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error(transparent)]
    NotStarted(#[from] OrtInitError),
    #[error("ONNX Runtime cannot load it: {0}")]
    Load(ort::Error),
    #[error("cannot read back its ONNX Runtime form: {0}")]
    ReadBack(std::io::Error),
    #[error("ONNX Runtime cannot load its own form of it: {0}")]
    LoadOwnForm(ort::Error),
}

/// Where the library is: `explicit`, else `ORT_DYLIB_PATH`, else `ort/`,
/// `target/ort/` or `lib/` beside or above the running executable (so the
/// tests, `cargo run` and an installed `bin/` + `lib/` layout all find it),
/// else the `onnxruntime` Python package of the environment the executable
/// is installed in (`pip install preflight-bundle` puts `preflight` and
/// `preflight-serve` in its `bin/`, and ONNX Runtime's wheel beside).
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, OrtInitError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let mut searched = Vec::new();
    let exe = std::env::current_exe().unwrap_or_default();
    for dir in exe.ancestors().skip(1) {
        for sub in ["ort", "target/ort", "lib"] {
            let candidate = dir.join(sub).join(LIBRARY);
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(candidate.display().to_string());
        }
    }
    if let Some(prefix) = exe.parent().and_then(Path::parent) {
        if let Some(found) = in_python_environment(prefix) {
            return Ok(found);
        }
        searched.push(format!(
            "{}/lib/python3*/site-packages/onnxruntime/capi/",
            prefix.display()
        ));
    }
    Err(OrtInitError::NotFound {
        searched: searched.join(", "),
    })
}

/// The library of the `onnxruntime` Python package installed under
/// `prefix` (a virtual environment, `~/.local`, or a Python installation):
/// `lib/python3.X/site-packages/onnxruntime/capi/libonnxruntime.so.V`, the
/// highest version where several are.
fn in_python_environment(prefix: &Path) -> Option<PathBuf> {
    let names = |dir: &Path| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        found.sort();
        found
    };
    let pythons = names(&prefix.join("lib"));
    let pythons = pythons.iter().filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
    });
    pythons.rev().find_map(|python| {
        let capi = python.join("site-packages/onnxruntime/capi");
        names(&capi).into_iter().rev().find(|lib| {
            lib.is_file()
                && lib
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(LIBRARY))
        })
    })
}

/// Loads the library and creates the process's one ONNX Runtime environment,
/// named `name` in ONNX Runtime's logs. Later calls return it.
pub fn init(library: &Path, name: &str) -> Result<&'static Environment, OrtInitError> {
    if let Some(environment) = ENVIRONMENT.get() {
        return Ok(environment);
    }
    let load = |reason: String| OrtInitError::Load {
        path: library.to_path_buf(),
        reason,
    };
    if !library.is_file() {
        return Err(load(
            "no such file; `cargo xtask ort` fetches the pinned library into target/ort/"
                .to_owned(),
        ));
    }
    // The load error's Display hides the dlopen reason; its Debug keeps it.
    let builder = ort::init_from(library).map_err(|e| load(format!("{e:?}")))?;
    let environment = builder
        .with_name(name)
        .build()
        .map_err(|e| load(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| environment))
}

/// The environment [`init`] made.
pub fn environment() -> Result<&'static Environment, OrtInitError> {
    ENVIRONMENT.get().ok_or(OrtInitError::NotStarted)
}

/// A session on the ONNX file at `path`, with every graph optimisation,
/// `intra_op_threads` threads per operator (1 leaves parallelism to the
/// caller) and one between operators; the error says why ONNX Runtime
/// cannot load it.
pub fn session(path: &Path, intra_op_threads: usize) -> Result<Session, SessionError> {
    let environment = environment()?;
    builder(
        environment,
        intra_op_threads,
        GraphOptimizationLevel::Level3,
    )
    .and_then(|mut b| b.commit_from_file(path))
    .map_err(SessionError::Load)
}

/// [`session`], made from ONNX Runtime's own format rather than from the
/// ONNX file, for a session that lives as long as a served model.
///
/// A session made from an ONNX file keeps the file's graph, every node's
/// attributes included, beside the kernels built from them; one made from
/// ONNX Runtime's format does not. A tree ensemble is almost all attributes:
/// a 200-tree GBDT holds 4.4 MiB from its ONNX file and 0.9 MiB this way
/// (`docs/serving.md`, "Memory"). So the model is first loaded from its ONNX
/// file, saved in ONNX Runtime's format to an anonymous in-memory file, and
/// the session is made from those bytes; the first session is dropped. It
/// takes about one and a half times as long to load, and runs the same
/// kernels on the same values. Where no in-memory file can be made or named
/// (not Linux, or no `/proc`), the session is made from the ONNX file, with a
/// warning.
pub fn lean_session(path: &Path, intra_op_threads: usize) -> Result<Session, SessionError> {
    let environment = environment()?;
    let mut scratch = match scratch::File::new() {
        Ok(file) => file,
        Err(error) => {
            let file = path.display();
            tracing::warn!(%file, %error, "no in-memory file: the session keeps its ONNX graph");
            return session(path, intra_op_threads);
        }
    };
    // Extended, not all: the saved graph then holds no layout chosen for
    // this CPU, and ONNX Runtime does not warn that it might.
    let convert = || -> ort::Result<Session> {
        builder(
            environment,
            intra_op_threads,
            GraphOptimizationLevel::Level2,
        )?
        .with_optimized_model_path(scratch.path())?
        .with_config_entry("session.save_model_format", "ORT")?
        .commit_from_file(path)
    };
    drop(convert().map_err(SessionError::Load)?);
    let bytes = scratch.read().map_err(SessionError::ReadBack)?;
    // Loaded from ONNX Runtime's format, the saved graph is given only the
    // optimisations ONNX Runtime makes at load, up to this level.
    builder(
        environment,
        intra_op_threads,
        GraphOptimizationLevel::Level3,
    )
    .and_then(|mut b| b.commit_from_memory(&bytes))
    .map_err(SessionError::LoadOwnForm)
}

fn builder(
    environment: &Environment,
    intra_op_threads: usize,
    level: GraphOptimizationLevel,
) -> ort::Result<SessionBuilder> {
    Ok(Session::builder(environment)?
        .with_optimization_level(level)?
        .with_intra_threads(intra_op_threads)?
        .with_inter_threads(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_library_wins_and_a_missing_one_is_named() {
        let explicit = Path::new("/nowhere/libonnxruntime.so");
        assert_eq!(find_library(Some(explicit)).ok().as_deref(), Some(explicit));
        let error = init(explicit, "test").err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.starts_with("/nowhere/libonnxruntime.so: cannot load"),
            "{error}"
        );
    }

    #[test]
    fn a_python_environment_gives_its_onnxruntime_package_s_library() {
        let prefix = std::env::temp_dir().join(format!("preflight-ort-{}", std::process::id()));
        let capi = prefix.join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).expect("a fake environment");
        assert_eq!(in_python_environment(&prefix), None, "no library yet");
        for name in [
            "libonnxruntime.so.1.31.0",
            "libonnxruntime.so.1.32.0",
            "other.so",
        ] {
            std::fs::write(capi.join(name), b"").expect("a file");
        }
        let found = in_python_environment(&prefix);
        let _ = std::fs::remove_dir_all(&prefix);
        assert_eq!(found, Some(capi.join("libonnxruntime.so.1.32.0")));
    }
}
