//! The gRPC service answers every fixture as REST does, value for value,
//! with typed and with raw contents; health, metadata, ids, the fallback and
//! the metrics go the same way.

mod bad_input;

use preflight_bundle::{Bundle, Record, Repository};
use preflight_grpc::grpc_inference_service_client::GrpcInferenceServiceClient;
use preflight_grpc::model_infer_request::InferRequestedOutputTensor;
use preflight_grpc::{
    InferParameter, ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelReadyRequest,
    ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest, infer_parameter::ParameterChoice,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::{Server, fixtures};

pub(crate) type Client = GrpcInferenceServiceClient<Channel>;

pub(crate) async fn client(server: &Server) -> Client {
    let channel = tonic::transport::Endpoint::new(server.grpc.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the gRPC service");
    GrpcInferenceServiceClient::new(channel)
}

/// A REST request body as the gRPC request that means the same.
pub(crate) fn to_grpc(rest: &Value, model: &str, version: &str, raw: bool) -> ModelInferRequest {
    preflight_grpc::request_from_json(rest, model, version, raw).expect("a fixture's request")
}

/// A gRPC answer as REST's JSON answer writes it, with only what both
/// protocols carry alike.
fn to_rest(response: &ModelInferResponse) -> Value {
    let json = preflight_grpc::response_to_json(response).expect("an answer");
    let (model, version) = (&json["model_name"], &json["model_version"]);
    json!({"model_name": model, "model_version": version, "outputs": json["outputs"]})
}

/// REST's answer with only what both protocols carry alike, FP32 values
/// widened from the f32 they stand for.
fn comparable(rest: &Value) -> Value {
    let outputs: Vec<Value> = (rest["outputs"].as_array().expect("outputs").iter())
        .map(|o| {
            let mut values = Vec::new();
            flat(&o["data"], &mut values);
            let data: Vec<Value> = values
                .into_iter()
                .map(|v| match (v.as_f64(), o["datatype"].as_str()) {
                    (Some(x), Some("FP32")) => json!(f64::from(x as f32)),
                    _ => v.clone(),
                })
                .collect();
            json!({"name": o["name"], "datatype": o["datatype"], "shape": o["shape"], "data": data})
        })
        .collect();
    let (model, version) = (&rest["model_name"], &rest["model_version"]);
    json!({"model_name": model, "model_version": version, "outputs": outputs})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_answers_over_grpc_as_over_rest() {
    let models = fixtures().join("models");
    let server = Server::start(&models).await;
    let mut grpc = client(&server).await;
    let mut checked = 0;
    for model in Repository::scan(&models).expect("scan").models() {
        for version in &model.versions {
            let bundle = Bundle::open(&version.dir).expect("bundle");
            let samples = bundle.samples().expect("samples").expect("present");
            let rows: Vec<&Record> = samples.iter().collect();
            let body = bundle.manifest().infer_request(&rows);
            let (name, number) = (&model.name, version.version.to_string());
            let path = format!("/v2/models/{name}/versions/{number}/infer");
            let (status, rest) = server.post(&path, &body).await;
            assert_eq!(status, 200, "{path}: {rest}");
            for raw in [false, true] {
                let request = to_grpc(&body, name, &number, raw);
                let answer = grpc.model_infer(request).await;
                let answer = answer.unwrap_or_else(|s| panic!("{name} {number} raw {raw}: {s:?}"));
                let answer = answer.into_inner();
                assert_eq!(
                    answer.raw_output_contents.is_empty(),
                    !raw,
                    "answered as asked"
                );
                assert_eq!(
                    to_rest(&answer),
                    comparable(&rest),
                    "{name} version {number}, raw {raw}: gRPC and REST answer alike"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 19,
        "every fixture version was checked, not {checked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_ids_and_fallback_go_as_over_rest() {
    let server = Server::start(&fixtures().join("models")).await;
    let mut grpc = client(&server).await;
    assert!(
        grpc.server_live(ServerLiveRequest {})
            .await
            .expect("live")
            .into_inner()
            .live
    );
    assert!(
        grpc.server_ready(ServerReadyRequest {})
            .await
            .expect("ready")
            .into_inner()
            .ready
    );
    let server_metadata = grpc
        .server_metadata(ServerMetadataRequest {})
        .await
        .expect("metadata");
    let (_, rest) = server.get("/v2").await;
    let extensions: Vec<String> = serde_json::from_value(rest["extensions"].clone()).expect("list");
    assert_eq!(server_metadata.get_ref().extensions, extensions);
    assert_eq!(server_metadata.get_ref().name, "preflight-serve");

    let metadata = grpc
        .model_metadata(ModelMetadataRequest {
            name: "late-madrid".into(),
            version: String::new(),
        })
        .await
        .expect("model metadata")
        .into_inner();
    let (_, rest) = server.get("/v2/models/late-madrid").await;
    let tensors = |list: &[preflight_grpc::model_metadata_response::TensorMetadata]| {
        let list = list
            .iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}));
        Value::Array(list.collect())
    };
    assert_eq!(tensors(&metadata.inputs), rest["inputs"]);
    assert_eq!(tensors(&metadata.outputs), rest["outputs"]);
    assert_eq!(json!(metadata.versions), rest["versions"]);
    assert_eq!(json!(metadata.platform), rest["platform"]);
    let ready = grpc.model_ready(ModelReadyRequest {
        name: "eta-madrid".into(),
        version: "2".into(),
    });
    assert!(ready.await.expect("model ready").into_inner().ready);

    let bundle = Bundle::open(&fixtures().join("models/eta-madrid/1")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let rows: Vec<&Record> = samples.iter().take(3).collect();
    let body = bundle.manifest().infer_request(&rows);
    let counted = "preflight_requests_total{model=\"eta-madrid\",version=\"1\",outcome=\"ok\"}";
    let mut named = to_grpc(&body, "eta-madrid", "1", false);
    named.id = "order-4711".into();
    let answer = grpc.model_infer(named).await.expect("infer").into_inner();
    assert_eq!(answer.id, "order-4711", "an id is echoed");
    assert!(
        answer.parameters.is_empty(),
        "the main model answered: {:?}",
        answer.parameters
    );
    let before = server.metric(counted).await;

    let answer = grpc
        .model_infer(to_grpc(&body, "eta-madrid", "1", false))
        .await;
    let made = answer.expect("infer").into_inner().id;
    assert!(!made.is_empty(), "a request without an id is given one");

    let mut hurried = to_grpc(&body, "eta-madrid", "1", false);
    let zero = ParameterChoice::Int64Param(0);
    hurried.parameters.insert(
        "deadline_ms".into(),
        InferParameter {
            parameter_choice: Some(zero),
        },
    );
    let output = InferRequestedOutputTensor {
        name: "eta_minutes".into(),
        parameters: Default::default(),
    };
    hurried.outputs.push(output);
    let answer = grpc.model_infer(hurried).await.expect("infer").into_inner();
    let parameter = |name: &str| {
        answer
            .parameters
            .get(name)
            .and_then(|p| p.parameter_choice.clone())
    };
    assert_eq!(
        parameter("fallback"),
        Some(ParameterChoice::BoolParam(true))
    );
    assert_eq!(
        parameter("fallback_reason"),
        Some(ParameterChoice::StringParam("deadline".into()))
    );
    let tolerance = bundle
        .manifest()
        .contract
        .parity
        .expect("a parity contract");
    let served = &answer.outputs[0]
        .contents
        .as_ref()
        .expect("typed")
        .fp32_contents;
    for (sample, &served) in samples.iter().zip(served) {
        let expected = sample.fallback_outputs.as_ref().expect("fallback outputs")[0].as_f64();
        let expected = expected.expect("a number");
        assert!(
            tolerance.accepts(f64::from(served), expected),
            "row '{}': the fallback served {served}, evaluated at training {expected}",
            sample.id
        );
    }

    let unversioned = grpc
        .model_infer(to_grpc(&body, "eta-madrid", "", false))
        .await;
    let unversioned = unversioned.expect("infer").into_inner();
    assert_eq!(
        unversioned.model_version, "2",
        "no version: the model's default"
    );

    assert_eq!(
        server.metric(counted).await,
        before + 2,
        "gRPC requests are counted per version"
    );
}

fn flat<'a>(data: &'a Value, out: &mut Vec<&'a Value>) {
    match data {
        Value::Array(items) => items.iter().for_each(|item| flat(item, out)),
        other => out.push(other),
    }
}
