//! The ONNX Runtime backend, through the `ort` crate with a dynamically
//! loaded `libonnxruntime`.
//!
//! `Session::run` takes `&mut self`, so a session runs one batch at a time.
//! Each model version keeps a small pool of sessions: one made at load, more
//! (up to `sessions_per_model`) made on a background thread only when
//! requests to that model overlap. Different models never wait for each other, a hot model can use
//! every core, and a repository of hundreds of cold models costs one session
//! each.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use preflight_bundle::{Bundle, Datatype, Feature};

use crate::backend::{Backend, Predictor};
use crate::batch::Batch;
use crate::protocol::TensorData;

/// The file name the library is looked for under, in the folders searched.
const LIBRARY: &str = "libonnxruntime.so";

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
}

/// Where the library is: `explicit`, else `ORT_DYLIB_PATH`, else `ort/`,
/// `target/ort/` or `lib/` beside or above the running executable (so the
/// tests, `cargo run` and an installed `bin/` + `lib/` layout all find it).
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
    Err(OrtInitError::NotFound {
        searched: searched.join(", "),
    })
}

/// Loads the library and creates the process's one ONNX Runtime environment.
/// Later calls do nothing.
pub fn init_ort(library: &Path) -> Result<(), OrtInitError> {
    if ENVIRONMENT.get().is_some() {
        return Ok(());
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
        .with_name("preflight-serve")
        .build()
        .map_err(|e| load(e.to_string()))?;
    let _ = ENVIRONMENT.set(environment);
    Ok(())
}

/// Session settings.
#[derive(Debug, Clone, Copy)]
pub struct OrtOptions {
    pub sessions_per_model: usize,
    pub intra_op_threads: usize,
}

impl Default for OrtOptions {
    fn default() -> Self {
        Self {
            sessions_per_model: 2,
            intra_op_threads: 1,
        }
    }
}

#[derive(Debug)]
pub struct OrtBackend {
    options: OrtOptions,
}

impl OrtBackend {
    /// A backend; [`init_ort`] must have succeeded first.
    pub fn new(options: OrtOptions) -> Self {
        Self { options }
    }
}

impl Backend for OrtBackend {
    fn load(&self, bundle: &Bundle) -> Result<Arc<dyn Predictor>, String> {
        let path = bundle.model_path();
        let file = bundle.manifest().runtime.model.clone();
        let session = new_session(&path, self.options).map_err(|e| format!("{file}: {e}"))?;
        let binding = Binding::new(&session, bundle).map_err(|e| format!("{file}: {e}"))?;
        let mut slots: Vec<Mutex<Option<Session>>> = (0..self.options.sessions_per_model.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        slots[0] = Mutex::new(Some(session));
        Ok(Arc::new(OrtPredictor {
            path,
            options: self.options,
            slots: Arc::new(slots),
            growing: Arc::new(AtomicBool::new(false)),
            binding,
        }))
    }

    fn platform(&self) -> &'static str {
        "onnxruntime_onnx"
    }
}

fn new_session(path: &Path, options: OrtOptions) -> Result<Session, String> {
    let environment = ENVIRONMENT.get().ok_or("ONNX Runtime is not initialised")?;
    let build = || -> ort::Result<Session> {
        Session::builder(environment)?
            .with_optimization_level(GraphOptimizationLevel::Level3)?
            .with_intra_threads(options.intra_op_threads)?
            .with_inter_threads(1)?
            .commit_from_file(path)
    };
    build().map_err(|e| format!("ONNX Runtime cannot load it: {e}"))
}

/// How manifest inputs and outputs map onto the graph's tensors.
#[derive(Debug)]
enum InputBinding {
    /// One graph input per manifest input, by name (skl2onnx's shape for a
    /// ColumnTransformer), each of rank 1 (`[N]`) or 2 (`[N, 1]`).
    PerColumn(Vec<(String, usize)>),
    /// One graph input `[N, k]` holding the manifest's inputs stacked in order.
    Stacked {
        name: String,
        element: TensorElementType,
    },
}

#[derive(Debug)]
struct Binding {
    inputs: InputBinding,
    /// The graph output of each manifest output, with its element type.
    outputs: Vec<(String, TensorElementType)>,
}

fn element_of(datatype: Datatype) -> Option<TensorElementType> {
    Some(match datatype {
        Datatype::Fp32 => TensorElementType::Float32,
        Datatype::Fp64 => TensorElementType::Float64,
        Datatype::Int64 => TensorElementType::Int64,
        Datatype::Int32 => TensorElementType::Int32,
        Datatype::Bool => TensorElementType::Bool,
        Datatype::Bytes => TensorElementType::String,
        _ => return None,
    })
}

fn tensor_of(value: &ValueType) -> Option<(TensorElementType, usize)> {
    match value {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.len())),
        _ => None,
    }
}

impl Binding {
    /// Checks the graph against the manifest; a mismatch names both sides.
    fn new(session: &Session, bundle: &Bundle) -> Result<Self, String> {
        let manifest = bundle.manifest();
        let graph_inputs: Vec<(String, Option<(TensorElementType, usize)>)> = session
            .inputs()
            .iter()
            .map(|i| (i.name().to_owned(), tensor_of(i.dtype())))
            .collect();
        let names = |list: &[(String, Option<(TensorElementType, usize)>)]| {
            list.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let by_name = manifest
            .inputs
            .iter()
            .all(|f| graph_inputs.iter().any(|(n, _)| n == &f.name));
        let inputs = if by_name {
            if let Some((extra, _)) = graph_inputs
                .iter()
                .find(|(n, _)| manifest.input(n).is_none())
            {
                return Err(format!(
                    "the graph's input '{extra}' is not declared in the manifest's [[inputs]]"
                ));
            }
            let mut columns = Vec::new();
            for feature in &manifest.inputs {
                let (name, tensor) = graph_inputs
                    .iter()
                    .find(|(n, _)| n == &feature.name)
                    .ok_or("unreachable")?;
                let (element, rank) =
                    tensor.ok_or_else(|| format!("the graph's input '{name}' is not a tensor"))?;
                check_type("input", feature, name, element)?;
                if !(rank == 1 || rank == 2) {
                    return Err(format!(
                        "the graph's input '{name}' has rank {rank}; a column is [N] or [N, 1]"
                    ));
                }
                columns.push((name.to_string(), rank));
            }
            InputBinding::PerColumn(columns)
        } else if let [(name, tensor)] = graph_inputs.as_slice() {
            let (element, _) =
                tensor.ok_or_else(|| format!("the graph's input '{name}' is not a tensor"))?;
            if !matches!(
                element,
                TensorElementType::Float32 | TensorElementType::Float64
            ) {
                return Err(format!(
                    "the graph has one input '{name}' of {element:?}; stacking the manifest's \
                        inputs needs a float tensor"
                ));
            }
            if let Some(f) = manifest
                .inputs
                .iter()
                .find(|f| !f.datatype.is_numeric() && f.datatype != Datatype::Bool)
            {
                return Err(format!(
                    "the graph has one input '{name}', but the manifest's input '{}' is {} and \
                        cannot be stacked into it",
                    f.name, f.datatype
                ));
            }
            InputBinding::Stacked {
                name: name.clone(),
                element,
            }
        } else {
            let missing: Vec<&str> = manifest
                .inputs
                .iter()
                .filter(|f| !graph_inputs.iter().any(|(n, _)| n == &f.name))
                .map(|f| f.name.as_str())
                .collect();
            return Err(format!(
                "the manifest's inputs {} are not inputs of the graph (graph inputs: {})",
                missing.join(", "),
                names(&graph_inputs)
            ));
        };

        let graph_outputs: Vec<(String, Option<(TensorElementType, usize)>)> = session
            .outputs()
            .iter()
            .map(|o| (o.name().to_owned(), tensor_of(o.dtype())))
            .collect();
        let mut outputs = Vec::new();
        for feature in &manifest.outputs {
            // A single output matches whatever the exporter named it ("variable").
            let found = graph_outputs.iter().find(|(n, _)| n == &feature.name).or(
                match (manifest.outputs.len(), graph_outputs.as_slice()) {
                    (1, [only]) => Some(only),
                    _ => None,
                },
            );
            let (name, tensor) = found.ok_or_else(|| {
                format!(
                    "the manifest's output '{}' is not an output of the graph (graph outputs: {})",
                    feature.name,
                    names(&graph_outputs)
                )
            })?;
            let (element, _) = tensor.ok_or_else(|| {
                format!(
                    "the graph's output '{name}' is not a \
                tensor (a classifier's probability map is not supported; export with zipmap \
                disabled)"
                )
            })?;
            check_type("output", feature, name, element)?;
            outputs.push((name.clone(), element));
        }
        Ok(Self { inputs, outputs })
    }
}

fn check_type(
    side: &str,
    feature: &Feature,
    graph_name: &str,
    element: TensorElementType,
) -> Result<(), String> {
    if element_of(feature.datatype) == Some(element) {
        Ok(())
    } else {
        Err(format!(
            "the manifest's {side} '{}' is {} but the graph's {side} '{graph_name}' holds \
                {element:?}",
            feature.name, feature.datatype
        ))
    }
}

struct OrtPredictor {
    path: PathBuf,
    options: OrtOptions,
    /// Slot 0 always holds a session; the others are filled on demand.
    slots: Arc<Vec<Mutex<Option<Session>>>>,
    /// Set while a thread is making a new session.
    growing: Arc<AtomicBool>,
    binding: Binding,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a session leaves the session itself intact.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OrtPredictor {
    /// A free session: an idle one, else the first, waiting for it. When
    /// every session is busy and the pool may grow, a new session is made on
    /// another thread: making one takes tens of milliseconds, which must not
    /// land on a request.
    fn session(&self) -> MutexGuard<'_, Option<Session>> {
        for slot in self.slots.iter() {
            if let Ok(guard) = slot.try_lock()
                && guard.is_some()
            {
                return guard;
            }
        }
        let can_grow = self.slots[1..]
            .iter()
            .any(|s| s.try_lock().is_ok_and(|g| g.is_none()));
        if can_grow && !self.growing.swap(true, Ordering::AcqRel) {
            let (slots, growing, path, options) = (
                Arc::clone(&self.slots),
                Arc::clone(&self.growing),
                self.path.clone(),
                self.options,
            );
            std::thread::spawn(move || {
                if let Some(mut empty) = slots[1..].iter().map(|s| lock(s)).find(|g| g.is_none()) {
                    match new_session(&path, options) {
                        Ok(session) => *empty = Some(session),
                        Err(error) => {
                            let path = path.display();
                            tracing::warn!(%path, %error, "could not add a session")
                        }
                    }
                }
                growing.store(false, Ordering::Release);
            });
        }
        lock(&self.slots[0])
    }

    fn inputs(&self, batch: &Batch) -> Result<Vec<(String, DynValue)>, String> {
        let n = batch.rows;
        let e = |e: ort::Error| e.to_string();
        match &self.binding.inputs {
            InputBinding::PerColumn(columns) => columns
                .iter()
                .zip(&batch.columns)
                .map(|((name, rank), column)| {
                    let shape: Vec<usize> = if *rank == 1 { vec![n] } else { vec![n, 1] };
                    let value = match column {
                        TensorData::F32(v) => Tensor::from_array((shape, v.clone()))
                            .map_err(e)?
                            .into_dyn(),
                        TensorData::F64(v) => Tensor::from_array((shape, v.clone()))
                            .map_err(e)?
                            .into_dyn(),
                        TensorData::I64(v) => Tensor::from_array((shape, v.clone()))
                            .map_err(e)?
                            .into_dyn(),
                        TensorData::I32(v) => Tensor::from_array((shape, v.clone()))
                            .map_err(e)?
                            .into_dyn(),
                        TensorData::Bool(v) => Tensor::from_array((shape, v.clone()))
                            .map_err(e)?
                            .into_dyn(),
                        TensorData::Text(v) => Tensor::from_string_array((shape, v.as_slice()))
                            .map_err(e)?
                            .into_dyn(),
                    };
                    Ok((name.clone(), value))
                })
                .collect(),
            InputBinding::Stacked { name, element } => {
                let k = batch.columns.len();
                let mut stacked = vec![0.0_f64; n * k];
                for (j, column) in batch.columns.iter().enumerate() {
                    for i in 0..n {
                        stacked[i * k + j] = match column {
                            TensorData::F32(v) => f64::from(v[i]),
                            TensorData::F64(v) => v[i],
                            TensorData::I64(v) => v[i] as f64,
                            TensorData::I32(v) => f64::from(v[i]),
                            TensorData::Bool(v) => f64::from(u8::from(v[i])),
                            TensorData::Text(_) => f64::NAN,
                        };
                    }
                }
                let value = if *element == TensorElementType::Float32 {
                    Tensor::from_array((
                        [n, k],
                        stacked.into_iter().map(|x| x as f32).collect::<Vec<f32>>(),
                    ))
                    .map_err(e)?
                    .into_dyn()
                } else {
                    Tensor::from_array(([n, k], stacked)).map_err(e)?.into_dyn()
                };
                Ok(vec![(name.clone(), value)])
            }
        }
    }
}

impl Predictor for OrtPredictor {
    fn predict(&self, batch: &Batch) -> Result<Vec<TensorData>, String> {
        let inputs = self.inputs(batch)?;
        let mut guard = self.session();
        let session = guard.as_mut().ok_or("no session")?;
        let outputs = session
            .run(inputs)
            .map_err(|e| e.to_string().trim_end().to_owned())?;
        self.binding
            .outputs
            .iter()
            .map(|(name, element)| {
                let value = outputs
                    .get(name.as_str())
                    .ok_or_else(|| format!("the graph gave no output '{name}'"))?;
                let e = |e: ort::Error| format!("output '{name}': {e}");
                Ok(match element {
                    TensorElementType::Float32 => {
                        TensorData::F32(value.try_extract_tensor::<f32>().map_err(e)?.1.to_vec())
                    }
                    TensorElementType::Float64 => {
                        TensorData::F64(value.try_extract_tensor::<f64>().map_err(e)?.1.to_vec())
                    }
                    TensorElementType::Int64 => {
                        TensorData::I64(value.try_extract_tensor::<i64>().map_err(e)?.1.to_vec())
                    }
                    TensorElementType::Int32 => {
                        TensorData::I32(value.try_extract_tensor::<i32>().map_err(e)?.1.to_vec())
                    }
                    TensorElementType::Bool => {
                        TensorData::Bool(value.try_extract_tensor::<bool>().map_err(e)?.1.to_vec())
                    }
                    TensorElementType::String => {
                        TensorData::Text(value.try_extract_strings().map_err(e)?.1)
                    }
                    other => {
                        return Err(format!(
                            "output '{name}' holds {other:?}, which is not supported"
                        ));
                    }
                })
            })
            .collect()
    }
}
