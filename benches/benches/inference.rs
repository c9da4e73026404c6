//! In-process benchmarks of a fixture GBDT (eta-madrid/1: scikit-learn,
//! 200 trees of depth 6): ONNX Runtime alone, per row and per 1,000-row
//! batch, and the whole request path (decode, validate, infer, encode)
//! through the axum router without a socket, before and after the version's
//! overlapping requests are gathered.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use preflight_bundle::{Bundle, Record, Value};
use preflight_serving::{
    AppState, Backend, Batch, OrtBackend, OrtOptions, ServeConfig, TensorData, app, find_library,
    init_ort,
};
use tower::ServiceExt;

// preflight-serve's allocator for Rust's blocks. Its count, and its
// replacement of ONNX Runtime's `malloc`, are the binary's own
// (serving/src/malloc.rs): here ONNX Runtime allocates from glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PATH: &str = "/v2/models/eta-madrid/versions/1/infer";

fn bundle() -> (Bundle, Vec<Record>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/eta-madrid/1");
    let bundle = Bundle::open(&dir).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    (bundle, samples)
}

/// A batch of the given rows, in the columns the server would decode.
fn batch(bundle: &Bundle, rows: &[&Record]) -> Batch {
    let columns = bundle
        .manifest()
        .inputs
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let values = rows.iter().map(|r| &r.inputs[i]);
            match f.datatype {
                preflight_bundle::Datatype::Int64 => TensorData::I64(
                    values
                        .map(|v| if let Value::Int(x) = v { *x } else { 0 })
                        .collect(),
                ),
                preflight_bundle::Datatype::Bytes => TensorData::Text(
                    values
                        .map(|v| v.as_str().unwrap_or_default().to_owned())
                        .collect(),
                ),
                _ => TensorData::F32(
                    values
                        .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
                        .collect(),
                ),
            }
        })
        .collect();
    Batch {
        rows: rows.len(),
        columns,
    }
}

/// `body` posted to eta-madrid/1's inference route.
fn post(body: &str) -> Request<Body> {
    Request::post(PATH)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

fn request(bundle: &Bundle, rows: &[&Record]) -> String {
    bundle.manifest().infer_request(rows).to_string()
}

fn runtime(c: &mut Criterion) {
    init_ort(&find_library(None).expect("library")).expect("init");
    let (bundle, samples) = bundle();
    let predictor = OrtBackend::new(OrtOptions {
        sessions_per_model: 1,
        intra_op_threads: 1,
    })
    .load(&bundle)
    .expect("load");
    let one = batch(&bundle, &[&samples[0]]);
    let thousand_rows: Vec<&Record> = samples.iter().cycle().take(1000).collect();
    let thousand = batch(&bundle, &thousand_rows);

    let mut group = c.benchmark_group("onnxruntime");
    group.throughput(Throughput::Elements(1));
    group.bench_function("gbdt/1 row", |b| {
        b.iter(|| black_box(predictor.predict(black_box(&one), None).expect("predict")))
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("gbdt/1000 rows", |b| {
        b.iter(|| {
            black_box(
                predictor
                    .predict(black_box(&thousand), None)
                    .expect("predict"),
            )
        })
    });
    group.finish();
}

fn request_path(c: &mut Criterion) {
    init_ort(&find_library(None).expect("library")).expect("init");
    let (bundle, samples) = bundle();
    let models = bundle
        .dir()
        .parent()
        .and_then(Path::parent)
        .expect("repository")
        .to_path_buf();
    let config = ServeConfig::new(models);
    let backend = Arc::new(OrtBackend::new(OrtOptions {
        sessions_per_model: 1,
        intra_op_threads: 1,
    }));
    let state = Arc::new(AppState::new(&config, backend));
    state.load().expect("load");
    let router = app(state);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");

    let one = request(&bundle, &[&samples[0]]);
    let thousand_rows: Vec<&Record> = samples.iter().cycle().take(1000).collect();
    let thousand = request(&bundle, &thousand_rows);
    let call = |body: &str| (router.clone(), post(body));
    let mut group = c.benchmark_group("request path");
    let mut infer = |name: &str, body: &str, rows: u64| {
        group.throughput(Throughput::Elements(rows));
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_batched(
                || call(body),
                |(router, request)| async move {
                    let response = router.oneshot(request).await.expect("response");
                    assert!(response.status().is_success());
                    black_box(
                        axum::body::to_bytes(response.into_body(), usize::MAX)
                            .await
                            .expect("body"),
                    )
                },
                BatchSize::SmallInput,
            )
        });
    };
    infer("infer/1 row", &one, 1);
    infer("infer/1000 rows", &thousand, 1000);
    // A lone request to a version whose overlapping requests are gathered
    // (docs/serving.md, "Gathered runs") queues, finds no run, and runs.
    gather(&router, &one);
    infer("infer/1 row, gathered version", &one, 1);
    group.finish();
}

/// Sends overlapping requests to eta-madrid/1 from two threads until its
/// requests are gathered.
fn gather(router: &Router, body: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let runs = r#"preflight_model_gathered_runs_total{model="eta-madrid",version="1"} "#;
    runtime.block_on(async {
        for _ in 0..1_000 {
            let calls: Vec<_> = (0..16)
                .map(|_| tokio::spawn(router.clone().oneshot(post(body))))
                .collect();
            for call in calls {
                let _ = call.await.expect("task");
            }
            let metrics = Request::get("/metrics").body(Body::empty()).expect("GET");
            let response = router.clone().oneshot(metrics).await.expect("metrics");
            let text = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let text = String::from_utf8_lossy(&text);
            let gathered = text
                .lines()
                .find_map(|l| l.strip_prefix(runs))
                .is_some_and(|n| n.trim() != "0");
            if gathered {
                return;
            }
        }
        panic!("eta-madrid/1's overlapping requests were never gathered");
    });
}

criterion_group!(benches, runtime, request_path);
criterion_main!(benches);
