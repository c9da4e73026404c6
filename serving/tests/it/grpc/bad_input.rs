//! Every client mistake over gRPC gets a status that is the client's (never
//! `Internal` or `Unknown`) and REST's message, naming the model, version,
//! input and row; the table's answers are in its snapshot.

use preflight_bundle::{Bundle, Record};
use preflight_grpc::{
    InferParameter, ModelInferRequest, ModelMetadataRequest, ModelReadyRequest,
    RepositoryModelLoadRequest, RepositoryModelUnloadRequest, infer_parameter::ParameterChoice,
};
use preflight_serving::RepositoryAccess;
use tonic::Code;

use super::{Client, client, to_grpc};
use crate::{Server, config, fixtures};

/// A valid two-row request of eta-madrid version 1, typed or raw.
fn valid(raw: bool) -> ModelInferRequest {
    let bundle = Bundle::open(&fixtures().join("models/eta-madrid/1")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let rows: Vec<&Record> = samples.iter().take(2).collect();
    to_grpc(
        &bundle.manifest().infer_request(&rows),
        "eta-madrid",
        "1",
        raw,
    )
}

/// `valid(raw)` changed by `edit`.
fn edited(raw: bool, edit: impl FnOnce(&mut ModelInferRequest)) -> ModelInferRequest {
    let mut request = valid(raw);
    edit(&mut request);
    request
}

/// The input named `name` of a request.
fn input<'a>(
    request: &'a mut ModelInferRequest,
    name: &str,
) -> &'a mut preflight_grpc::model_infer_request::InferInputTensor {
    let found = request.inputs.iter_mut().find(|i| i.name == name);
    found.expect("an input of eta-madrid")
}

fn contents<'a>(
    request: &'a mut ModelInferRequest,
    name: &str,
) -> &'a mut preflight_grpc::InferTensorContents {
    input(request, name)
        .contents
        .as_mut()
        .expect("typed contents")
}

/// The position of input `name` in the request, for its raw contents.
fn position(request: &ModelInferRequest, name: &str) -> usize {
    request
        .inputs
        .iter()
        .position(|i| i.name == name)
        .expect("input")
}

fn inference_cases() -> Vec<(&'static str, ModelInferRequest)> {
    vec![
        (
            "unknown model",
            edited(false, |r| r.model_name = "eta-atlantis".into()),
        ),
        (
            "unknown version",
            edited(false, |r| r.model_version = "9".into()),
        ),
        (
            "missing input",
            edited(false, |r| r.inputs.retain(|i| i.name != "hour")),
        ),
        (
            "unknown input",
            edited(false, |r| input(r, "hour").name = "hours".into()),
        ),
        (
            "input given twice",
            edited(false, |r| {
                let copy = input(r, "hour").clone();
                r.inputs.push(copy);
            }),
        ),
        (
            "datatype not the model's",
            edited(false, |r| {
                let c = contents(r, "hour");
                c.int_contents = c.int64_contents.drain(..).map(|i| i as i32).collect();
                input(r, "hour").datatype = "INT32".into();
            }),
        ),
        (
            "values in another datatype's field",
            edited(false, |r| {
                let c = contents(r, "distance_km");
                c.fp64_contents = c.fp32_contents.drain(..).map(f64::from).collect();
            }),
        ),
        (
            "FP16, which has no typed field",
            edited(false, |r| {
                input(r, "distance_km").datatype = "FP16".into();
            }),
        ),
        (
            "shape not a column",
            edited(false, |r| input(r, "hour").shape = vec![1, 2]),
        ),
        (
            "fewer values than the shape says",
            edited(false, |r| {
                contents(r, "hour").int64_contents.pop();
            }),
        ),
        (
            "rows differ between inputs",
            edited(false, |r| {
                input(r, "rain").shape = vec![1, 1];
                contents(r, "rain").int64_contents.truncate(1);
            }),
        ),
        (
            "NaN in an input that is not nullable",
            edited(false, |r| {
                contents(r, "distance_km").fp32_contents[1] = f32::NAN;
            }),
        ),
        (
            "infinity in FP32",
            edited(false, |r| {
                contents(r, "distance_km").fp32_contents[0] = f32::INFINITY;
            }),
        ),
        (
            "BYTES that are not UTF-8",
            edited(false, |r| {
                contents(r, "vehicle").bytes_contents[1] = vec![0xff, 0xfe];
            }),
        ),
        (
            "a NUL in BYTES",
            edited(false, |r| {
                contents(r, "vehicle").bytes_contents[0] = b"car\0".to_vec();
            }),
        ),
        (
            "unknown output",
            edited(false, |r| {
                r.outputs.push(
                    preflight_grpc::model_infer_request::InferRequestedOutputTensor {
                        name: "eta_hours".into(),
                        parameters: Default::default(),
                    },
                );
            }),
        ),
        (
            "deadline_ms as text",
            edited(false, |r| {
                let text = ParameterChoice::StringParam("soon".into());
                let parameter = InferParameter {
                    parameter_choice: Some(text),
                };
                r.parameters.insert("deadline_ms".into(), parameter);
            }),
        ),
        (
            "no rows",
            edited(false, |r| {
                for i in &mut r.inputs {
                    i.shape = vec![0, 1];
                    i.contents = Some(Default::default());
                }
            }),
        ),
        (
            "raw: fewer raw contents than inputs",
            edited(true, |r| {
                r.raw_input_contents.pop();
            }),
        ),
        (
            "raw: both raw and typed contents",
            edited(true, |r| {
                let c = preflight_grpc::InferTensorContents {
                    int64_contents: vec![1, 2],
                    ..Default::default()
                };
                input(r, "hour").contents = Some(c);
            }),
        ),
        (
            "raw: not a whole number of FP32 values",
            edited(true, |r| {
                let at = position(r, "distance_km");
                r.raw_input_contents[at].pop();
            }),
        ),
        (
            "raw: a BYTES length past the end",
            edited(true, |r| {
                let at = position(r, "vehicle");
                r.raw_input_contents[at][0] = 200;
            }),
        ),
        (
            "raw: a BOOL byte that is not 0 or 1",
            edited(true, |r| {
                let at = position(r, "rain");
                input(r, "rain").datatype = "BOOL".into();
                r.raw_input_contents[at] = vec![0, 2];
            }),
        ),
        (
            "raw: an INT64 column of the wrong length",
            edited(true, |r| {
                let at = position(r, "hour");
                r.raw_input_contents[at].extend([0; 8]);
            }),
        ),
    ]
}

fn line(name: &str, status: &tonic::Status) -> String {
    format!("{name}: {:?}: {}\n", status.code(), status.message())
}

/// The mistakes no client should be served a 5xx for, as gRPC codes.
fn is_clients(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::OutOfRange
    )
}

async fn answer_all(grpc: &mut Client, table: &mut String) {
    for (name, request) in inference_cases() {
        let status = match grpc.model_infer(request).await {
            Ok(answer) => panic!("{name}: answered {:?}", answer.into_inner()),
            Err(status) => status,
        };
        assert!(is_clients(status.code()), "{name}: {status:?}");
        table.push_str(&line(name, &status));
    }
    let huge = edited(false, |r| {
        contents(r, "vehicle").bytes_contents[0] = vec![b'x'; 5 * 1024 * 1024];
    });
    let status = grpc
        .model_infer(huge)
        .await
        .expect_err("over the message limit");
    assert!(
        is_clients(status.code()),
        "a message over the limit: {status:?}"
    );
    table.push_str(&format!("a message over the limit: {:?}\n", status.code()));
    let request = ModelMetadataRequest {
        name: "eta-atlantis".into(),
        version: String::new(),
    };
    let status = grpc
        .model_metadata(request)
        .await
        .expect_err("unknown model");
    table.push_str(&line("metadata of an unknown model", &status));
    let request = ModelReadyRequest {
        name: "eta-madrid".into(),
        version: "x".into(),
    };
    let status = grpc.model_ready(request).await.expect_err("not a version");
    table.push_str(&line("readiness of a version that is no number", &status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_mistakes_get_the_clients_code_and_rests_message() {
    let models = fixtures().join("models");
    let server = Server::with_config(preflight_serving::ServeConfig {
        repository: RepositoryAccess::Token("s3cret".into()),
        ..config(&models)
    })
    .await;
    let mut grpc = client(&server).await;
    let mut table = String::new();
    answer_all(&mut grpc, &mut table).await;

    let load = || RepositoryModelLoadRequest {
        model_name: "eta-madrid".into(),
    };
    let status = grpc
        .repository_model_load(load())
        .await
        .expect_err("no token");
    table.push_str(&line("load without the token", &status));
    let mut wrong = tonic::Request::new(load());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer guess".parse().expect("ascii"));
    let status = grpc
        .repository_model_load(wrong)
        .await
        .expect_err("a wrong token");
    table.push_str(&line("load with a wrong token", &status));
    let mut unknown = tonic::Request::new(RepositoryModelUnloadRequest {
        model_name: "eta-atlantis".into(),
    });
    unknown
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().expect("ascii"));
    let status = grpc
        .repository_model_unload(unknown)
        .await
        .expect_err("unknown model");
    table.push_str(&line("unload of an unknown model", &status));
    let mut right = tonic::Request::new(load());
    right
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().expect("ascii"));
    let loaded = grpc
        .repository_model_load(right)
        .await
        .expect("the token loads");
    assert!(loaded.into_inner().is_loaded);

    insta::assert_snapshot!(table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_over_grpc_is_off_without_a_token() {
    let models = fixtures().join("models");
    let server = Server::with_config(preflight_serving::ServeConfig {
        repository: RepositoryAccess::Off,
        ..config(&models)
    })
    .await;
    let mut grpc = client(&server).await;
    let request = RepositoryModelUnloadRequest {
        model_name: "eta-madrid".into(),
    };
    let status = grpc
        .repository_model_unload(request)
        .await
        .expect_err("off");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("--repository-token"),
        "{status:?}"
    );
    let ready = grpc.model_ready(ModelReadyRequest {
        name: "eta-madrid".into(),
        version: "1".into(),
    });
    assert!(ready.await.expect("still served").into_inner().ready);
}
