//! The one mapping from errors to HTTP answers of the REST API. Every error, whether the
//! domain's or a request that could not be read, becomes
//! `{"error": {"code": "...", "message": "..."}}` with the matching status; internal details
//! are logged, never sent.

use std::fmt;

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::deploy::Error;

/// Seconds a client is asked to wait before retrying when the database is unavailable.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// What kind of failure an answer reports: the `code` of the body, and its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 404: the thing does not exist for the caller's tenant, or the route does not exist.
    NotFound,
    /// 405: the route exists, with other methods.
    MethodNotAllowed,
    /// 409: the deployment is not in a state that allows this.
    InvalidState,
    /// 400: the request is wrong; the message names the part.
    InvalidRequest,
    /// 422: an env name the instance does not accept; the message names it.
    InvalidEnv,
    /// 422: the configuration file was refused; the message names its problems.
    InvalidConfig,
    /// 409: a uniqueness rule would be broken.
    Conflict,
    /// 409: another's lock holds the instance.
    Locked,
    /// 409: a freeze window is in force.
    Frozen,
    /// 409: the commit has not reached the environment it is promoted from.
    PromotionOrder,
    /// 403: an approval that does not count (the requester's own).
    NotApproved,
    /// 401: no token, a malformed header or an unknown token.
    Unauthenticated,
    /// 403: the caller is known but may not do this.
    Forbidden,
    /// 413: the body is larger than the API accepts.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 503: the database cannot be reached now; retry later.
    Unavailable,
    /// 500: a bug or a corrupt row; the details are in the server log.
    Internal,
}

impl ErrorCode {
    /// The HTTP status of an answer with this code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::InvalidState
            | ErrorCode::Conflict
            | ErrorCode::Locked
            | ErrorCode::Frozen
            | ErrorCode::PromotionOrder => StatusCode::CONFLICT,
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidEnv | ErrorCode::InvalidConfig => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::NotApproved => StatusCode::FORBIDDEN,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` field of the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidEnv => "invalid_env",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Locked => "locked",
            ErrorCode::Frozen => "frozen",
            ErrorCode::PromotionOrder => "promotion_order",
            ErrorCode::NotApproved => "not_approved",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// One of `not_found`, `method_not_allowed`, `invalid_state`, `invalid_request`,
    /// `invalid_env`, `conflict`, `unauthenticated`, `forbidden`, `payload_too_large`,
    /// `unsupported_media_type`, `unavailable`, `internal`.
    #[schema(example = "not_found")]
    pub code: String,
    /// Names the thing (the field, the parameter, the id) and what to do.
    #[schema(example = "deployment dep_01h455vb4pex5vsknk084sn02q was not found")]
    pub message: String,
}

/// An error answer of the REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// Methods the route accepts (the `Allow` header of a 405).
    allow: Option<String>,
}

impl ApiError {
    /// An answer with this code and message (the message is shown to the caller).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            allow: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 422 `invalid_env`.
    pub fn invalid_env(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidEnv, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 401 `unauthenticated` (answered with `WWW-Authenticate: Bearer`).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 405 `method_not_allowed`, with the methods the route accepts in `Allow`.
    pub fn method_not_allowed(message: impl Into<String>, allow: &[String]) -> Self {
        Self {
            allow: Some(allow.join(", ")),
            ..Self::new(ErrorCode::MethodNotAllowed, message)
        }
    }

    /// 500 `internal`: `detail` goes to the log under a reference that the caller sees,
    /// never to the caller.
    pub fn internal(detail: &str) -> Self {
        let reference = uuid::Uuid::now_v7().simple().to_string();
        tracing::error!(reference = %reference, detail = %detail, "internal error answering an API request");
        Self::new(
            ErrorCode::Internal,
            format!(
                "internal error: the details are in the server log under reference {reference}"
            ),
        )
    }

    /// 503 `unavailable`: `detail` goes to the log, the caller is told to retry.
    pub fn unavailable(detail: &str) -> Self {
        tracing::warn!(detail = %detail, "API request failed: a dependency is unavailable");
        Self::new(
            ErrorCode::Unavailable,
            format!(
                "the database is unavailable right now; try again in {RETRY_AFTER_SECONDS} seconds"
            ),
        )
    }

    /// The code of this answer.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The body sent to the caller.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_string(),
                message: self.message.clone(),
            },
        }
    }

    /// A request body that could not be read as the expected JSON; the message names the
    /// field when serde knows it (`env.LOG_LEVEL: invalid type: …`).
    pub fn from_json(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if !inner.is_data() {
            return Self::invalid_request(format!("the request body is not valid JSON: {inner}"));
        }
        if path == "." || path.is_empty() {
            Self::invalid_request(format!("the request body is invalid: {inner}"))
        } else {
            Self::invalid_request(format!(
                "the request body is invalid: field `{path}`: {inner}"
            ))
        }
    }

    /// A request body that could not be read at all.
    pub fn from_payload(err: &actix_web::Error, limit: usize) -> Self {
        match err.as_error::<PayloadError>() {
            Some(PayloadError::Overflow) => too_large(limit),
            Some(other) => {
                Self::invalid_request(format!("the request body could not be read: {other}"))
            }
            None => Self::invalid_request(format!("the request body could not be read: {err}")),
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than the {limit} bytes the API accepts"),
    )
}

/// 415 for a body that is not declared as JSON.
pub fn not_json() -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedMediaType,
        "the request body must be JSON: send Content-Type: application/json",
    )
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::NotFound { .. } => Self::not_found(err.to_string()),
            Error::InvalidState(e) => Self::new(ErrorCode::InvalidState, e.to_string()),
            Error::InvalidRequest(message) => Self::invalid_request(message),
            Error::Conflict(message) => Self::new(ErrorCode::Conflict, message),
            Error::Locked(message) => Self::new(ErrorCode::Locked, message),
            Error::Frozen(message) => Self::new(ErrorCode::Frozen, message),
            Error::PromotionOrder(message) => Self::new(ErrorCode::PromotionOrder, message),
            Error::NotApproved(message) => Self::new(ErrorCode::NotApproved, message),
            Error::Forbidden(message) => Self::new(ErrorCode::Forbidden, message),
            Error::Unavailable(detail) => Self::unavailable(&detail),
            Error::Internal(detail) => Self::internal(&detail),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self.code {
            ErrorCode::Unauthenticated => {
                response.insert_header((header::WWW_AUTHENTICATE, r#"Bearer realm="deploybot""#));
            }
            ErrorCode::Unavailable => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS));
            }
            ErrorCode::MethodNotAllowed => {
                if let Some(allow) = self
                    .allow
                    .as_deref()
                    .and_then(|a| HeaderValue::from_str(a).ok())
                {
                    response.insert_header((header::ALLOW, allow));
                }
            }
            _ => {}
        }
        response.json(self.body())
    }
}

/// `web::Json` errors as API errors: 413, 415 or 400 with serde's message.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let api = match &err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => too_large(limit),
                JsonPayloadError::ContentType => not_json(),
                JsonPayloadError::Deserialize(e) if e.is_data() => {
                    ApiError::invalid_request(format!("the request body is invalid: {e}"))
                }
                JsonPayloadError::Deserialize(e) => {
                    ApiError::invalid_request(format!("the request body is not valid JSON: {e}"))
                }
                JsonPayloadError::Payload(PayloadError::Overflow) => too_large(limit),
                other => ApiError::invalid_request(format!(
                    "the request body could not be read: {other}"
                )),
            };
            api.into()
        })
}

/// `web::Path` errors as 400 naming the path.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, req: &HttpRequest| {
        let detail = match &err {
            PathError::Deserialize(e) => e.to_string(),
            other => other.to_string(),
        };
        ApiError::invalid_request(format!("the path {} is invalid: {detail}", req.path())).into()
    })
}

/// `web::Query` errors as 400 with serde's message, which names the parameter.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let detail = match &err {
            QueryPayloadError::Deserialize(e) => e.to_string(),
            other => other.to_string(),
        };
        ApiError::invalid_request(format!("the query string is invalid: {detail}")).into()
    })
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;
    use actix_web::http::header::HeaderMap;

    use super::*;
    use crate::deploy::{DeployState, InvalidTransition};

    fn answer(err: ApiError) -> (StatusCode, HeaderMap, ErrorBody) {
        let response = err.error_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().try_into_bytes().unwrap();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        (status, headers, body)
    }

    #[test]
    fn domain_errors_map_to_their_status_and_code() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (Error::not_found("deployment", "dep_x"), 404, "not_found"),
            (
                Error::InvalidState(InvalidTransition {
                    from: DeployState::Succeeded,
                    to: DeployState::Cancelled,
                }),
                409,
                "invalid_state",
            ),
            (
                Error::InvalidRequest("image is empty".into()),
                400,
                "invalid_request",
            ),
            (Error::Conflict("already exists".into()), 409, "conflict"),
            (
                Error::Unavailable("pool timed out".into()),
                503,
                "unavailable",
            ),
            (Error::Internal("row 7 is corrupt".into()), 500, "internal"),
        ];
        for (err, status, code) in cases {
            let (got_status, _, body) = answer(err.into());
            assert_eq!(got_status.as_u16(), status, "{code}");
            assert_eq!(body.error.code, code);
            assert!(!body.error.message.is_empty());
        }
    }

    #[test]
    fn internal_and_unavailable_hide_details_and_unavailable_asks_to_retry() {
        let (_, _, body) = answer(Error::Internal("password=hunter2 row 7".into()).into());
        assert!(
            !body.error.message.contains("hunter2"),
            "{}",
            body.error.message
        );
        assert!(
            body.error.message.contains("reference"),
            "{}",
            body.error.message
        );

        let (_, response, body) = answer(Error::Unavailable("host db.internal:5432".into()).into());
        assert!(!body.error.message.contains("db.internal"));
        assert_eq!(response.get(header::RETRY_AFTER).unwrap(), "5");
    }

    #[test]
    fn unauthenticated_asks_for_a_bearer_token() {
        let (status, response, _) = answer(ApiError::unauthenticated("send a token"));
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let challenge = response.get(header::WWW_AUTHENTICATE).unwrap();
        assert!(challenge.to_str().unwrap().starts_with("Bearer"));
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            image: String,
            #[serde(default)]
            env: std::collections::BTreeMap<String, String>,
        }
        let read = |text: &str| {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize::<_, Body>(&mut de)
                .map_err(ApiError::from_json)
                .unwrap_err()
        };
        assert!(read(r#"{"image": 5}"#).message().contains("field `image`"));
        assert!(
            read(r#"{"image": "x", "env": {"A": 1}}"#)
                .message()
                .contains("`env.A`")
        );
        assert!(
            read(r#"{"imagee": "x"}"#)
                .message()
                .contains("unknown field `imagee`")
        );
        assert!(read(r#"{"image": "#).message().contains("not valid JSON"));
        assert!(read("{}").message().contains("missing field `image`"));
    }
}
