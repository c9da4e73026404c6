//! The Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`,
//! `preflight-grpc`), on its own port beside REST. Each call goes the way
//! of its REST route: inference through `crate::request` (admission,
//! fallback, monitoring, metrics and the log alike), metadata and readiness
//! through `crate::describe`, the repository behind the same token; an error
//! carries REST's message with the code `ApiError::code` gives it.

mod mistakes;
mod tensors;

use tensors::Read;

use std::future::Future;
use std::sync::Arc;

use preflight_grpc::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use preflight_grpc::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, RepositoryModelLoadRequest, RepositoryModelLoadResponse,
    RepositoryModelUnloadRequest, RepositoryModelUnloadResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse, model_metadata_response::TensorMetadata,
};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::decode::Limits;
use crate::describe;
use crate::error::{ApiError, AppResult};
use crate::infer::Prediction;
use crate::model::{Batch, ModelState, Subject};
use crate::request::{Protocol, serve as serve_request};
use crate::served::Served;
use crate::state::AppState;
use crate::v2;

/// Serves the gRPC service on `listener` until `shutdown` resolves and the
/// calls in flight have been answered. A message is at most
/// `max_message_bytes`, as a REST body is.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let service = GrpcInferenceServiceServer::new(Inference { state })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(usize::MAX);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(service, incoming, shutdown)
        .await
}

/// The service, over the server's state.
struct Inference {
    state: Arc<AppState>,
}

/// An empty version is the model's default, as a REST path without one.
fn version(text: &str) -> Option<&str> {
    Some(text).filter(|v| !v.is_empty())
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = describe::server_ready(&self.state).is_ok();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let (served, _) = (self.state.registry).get(&request.name, version(&request.version))?;
        let ready = served.state() == ModelState::Ready;
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let metadata = describe::server();
        Ok(Response::new(ServerMetadataResponse {
            name: metadata.name.to_owned(),
            version: metadata.version.to_owned(),
            extensions: metadata.extensions.iter().map(|&e| e.to_owned()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let metadata = describe::model(&self.state, &request.name, version(&request.version))?;
        let tensors = |tensors: Vec<crate::protocol::TensorMetadata>| {
            let tensors = tensors.into_iter().map(|t| TensorMetadata {
                name: t.name,
                datatype: t.datatype.to_owned(),
                shape: t.shape,
            });
            tensors.collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions,
            platform: metadata.platform.to_owned(),
            inputs: tensors(metadata.inputs),
            outputs: tensors(metadata.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let mut message = request.into_inner();
        let model = std::mem::take(&mut message.model_name);
        let version = std::mem::take(&mut message.model_version);
        let answer = serve_request::<Grpc>(&self.state, &model, self::version(&version), message);
        Ok(Response::new(answer.await?))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        self.authorize(&request)?;
        let model = request.into_inner().model_name;
        let registry = Arc::clone(&self.state.registry);
        let name = model.clone();
        // Loading builds ONNX Runtime sessions: slow, blocking work.
        tokio::task::spawn_blocking(move || registry.load(&name, None))
            .await
            .map_err(|e| ApiError::Internal(format!("model '{model}': loading failed: {e}")))??;
        tracing::info!(
            model,
            version = "all",
            "model loaded through the gRPC repository API"
        );
        Ok(Response::new(RepositoryModelLoadResponse {
            model_name: model,
            is_loaded: true,
        }))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        self.authorize(&request)?;
        let model = request.into_inner().model_name;
        self.state.registry.unload(&model)?;
        tracing::info!(model, "model unloaded through the gRPC repository API");
        Ok(Response::new(RepositoryModelUnloadResponse {
            model_name: model,
            is_unloaded: true,
        }))
    }
}

impl Inference {
    /// The repository token, from the call's `authorization` metadata.
    fn authorize<T>(&self, request: &Request<T>) -> AppResult<()> {
        let authorization = request.metadata().get("authorization");
        let authorization = authorization.and_then(|v| v.to_str().ok());
        self.state.repository.authorize(authorization)
    }
}

/// Inference over gRPC: the v2 request and answer, carried as messages.
struct Grpc;

impl Protocol for Grpc {
    type Input = ModelInferRequest;
    type Request = Read;
    /// The indices of the outputs asked for, in the order asked.
    type Plan = Vec<usize>;
    type Answer = ModelInferResponse;

    async fn read(_: &AppState, served: &Served, message: ModelInferRequest) -> AppResult<Read> {
        tensors::read(message, &served.manifest).map_err(|why| {
            ApiError::BadRequest(format!("{}: {why}", Subject::of(&served.manifest)))
        })
    }

    fn parameters(request: &Read) -> Option<&Map<String, Value>> {
        request.request.parameters.as_ref()
    }

    /// Echoed, or made and returned: the key of `/feedback`.
    fn id(request: &mut Read, make: impl FnOnce() -> String) -> Option<String> {
        Some(request.request.id.get_or_insert_with(make).clone())
    }

    fn decode(served: &Served, request: &Read, limits: Limits) -> AppResult<(Batch, Vec<usize>)> {
        v2::decode(served, &request.request, limits)
    }

    fn answer(
        model: &str,
        served: &Served,
        request: Read,
        selected: Vec<usize>,
        prediction: Prediction,
        rows: usize,
    ) -> AppResult<ModelInferResponse> {
        let id = request.request.id;
        let response = v2::answer(model, served, id, selected, prediction, rows)?;
        Ok(tensors::answer(response, request.raw))
    }
}
