//! Errors of the API, and the one place they become status codes: HTTP's
//! for REST, gRPC's for the gRPC service.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::model::Outcome;

/// A handler's result.
pub(crate) type AppResult<T> = Result<T, ApiError>;

/// What went wrong with a request, from the client's point of view.
///
/// Every message names the model, version, input and row where they apply,
/// so a client can fix the request without reading the server's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed or does not fit the model: the client's fault.
    #[error("{0}")]
    BadRequest(String),
    /// No such model, version or route.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A protected endpoint was called without the right bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// The client took too long to send its request.
    #[error("{0}")]
    Timeout(String),
    /// The route is turned off on this server.
    #[error("{0}")]
    Forbidden(String),
    /// The request would leave the server worse off than it is: a reload
    /// whose versions load worse than those serving.
    #[error("{0}")]
    Conflict(String),
    /// The model exists but cannot answer now (still loading, or failed with no fallback).
    #[error("{0}")]
    Unavailable(String),
    /// The server is at one of its admission limits: try again shortly.
    #[error("{0}")]
    Overloaded(String),
    /// A fault of the server or the model, never of the request.
    #[error("{0}")]
    Internal(String),
    /// A readiness probe's answer when the model or server cannot answer:
    /// the message, and what the probe's body says beside it.
    #[error("{message}")]
    NotReady {
        message: String,
        details: serde_json::Map<String, serde_json::Value>,
    },
}

impl ApiError {
    /// The status code of each kind: the only mapping in the server.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) | ApiError::Overloaded(_) | ApiError::NotReady { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code of each kind, as `status` is for REST: the one
    /// mapping for the gRPC service.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            ApiError::BadRequest(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::MethodNotAllowed(_) => Code::Unimplemented,
            ApiError::PayloadTooLarge(_) => Code::ResourceExhausted,
            ApiError::Unauthorized(_) => Code::Unauthenticated,
            ApiError::Forbidden(_) => Code::PermissionDenied,
            ApiError::Timeout(_) => Code::DeadlineExceeded,
            ApiError::Conflict(_) => Code::FailedPrecondition,
            ApiError::Unavailable(_) | ApiError::Overloaded(_) | ApiError::NotReady { .. } => {
                Code::Unavailable
            }
            ApiError::Internal(_) => Code::Internal,
        }
    }

    /// The outcome of a request that ended with this error, for logs and metrics.
    pub fn outcome(&self) -> Outcome {
        match self {
            ApiError::BadRequest(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::Conflict(_)
            | ApiError::Timeout(_) => Outcome::BadRequest,
            ApiError::NotFound(_) | ApiError::MethodNotAllowed(_) => Outcome::NotFound,
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) => Outcome::Unauthorized,
            ApiError::Unavailable(_) | ApiError::NotReady { .. } => Outcome::Unavailable,
            ApiError::Overloaded(_) => Outcome::Shed,
            ApiError::Internal(_) => Outcome::Error,
        }
    }
}

impl From<ApiError> for tonic::Status {
    /// The code and the same message as over REST; a shed request says,
    /// as `Retry-After` does, to try again in a second.
    fn from(error: ApiError) -> Self {
        let shed = matches!(error, ApiError::Overloaded(_));
        let mut status = tonic::Status::new(error.code(), error.to_string());
        if shed {
            let pushback = tonic::metadata::MetadataValue::from_static("1000");
            status
                .metadata_mut()
                .insert("grpc-retry-pushback-ms", pushback);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = (self.status(), self.to_string());
        let shed = matches!(self, ApiError::Overloaded(_));
        let mut body = match self {
            ApiError::NotReady { details, .. } => details,
            _ => serde_json::Map::new(),
        };
        body.insert("error".to_owned(), message.into());
        let mut response = (status, Json(body)).into_response();
        if shed {
            // Whole seconds are all `Retry-After` can say.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
