//! In-process benchmarks of a fixture GBDT (eta-madrid/1: scikit-learn,
//! 200 trees of depth 6): ONNX Runtime alone, per row and per 1,000-row
//! batch, and the whole request path (decode, validate, infer, encode)
//! through the axum router without a socket.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use preflight_bundle::{Bundle, Record, Value};
use preflight_serving::{
    AppState, Backend, Batch, OrtBackend, OrtOptions, ServeConfig, TensorData, app, find_library,
    init_ort,
};
use tower::ServiceExt;

// The allocator preflight-serve runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let call = |body: &str| {
        let request = Request::post("/v2/models/eta-madrid/versions/1/infer")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        (router.clone(), request)
    };
    let mut group = c.benchmark_group("request path");
    for (name, body, rows) in [
        ("infer/1 row", &one, 1),
        ("infer/1000 rows", &thousand, 1000),
    ] {
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
    }
    group.finish();
}

criterion_group!(benches, runtime, request_path);
criterion_main!(benches);
