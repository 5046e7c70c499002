//! The one place where errors become what a client sees: an HTTP status with a
//! JSON body, or a WebSocket error frame, both carrying a stable `code`.
//!
//! A client mistake is an honest 4xx. Anything internal becomes `internal`
//! (500) with a generic message; the detail goes to the log, without personal
//! data, and never to the client.

use std::borrow::Cow;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Serialize;

use crate::auth::AuthError;
use crate::domain::ValidationError;
use crate::storage::StoreError;

/// Stable error codes of the HTTP and WebSocket APIs (see docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON, or not a JSON object.
    InvalidJson,
    /// A WebSocket frame names an action that does not exist.
    UnknownAction,
    /// A field is missing, of the wrong type, or has an invalid value.
    InvalidRequest,
    /// A value or frame is larger than allowed.
    PayloadTooLarge,
    /// No valid credentials.
    Unauthorized,
    /// Credentials were valid but have expired.
    TokenExpired,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// The request's Origin is not one of the site's allowed origins.
    OriginNotAllowed,
    /// The target does not exist, or the caller may not know whether it does.
    NotFound,
    /// The path exists but not for this HTTP method.
    MethodNotAllowed,
    /// The request conflicts with the current state (e.g. a concurrent change).
    Conflict,
    /// Too many requests; see `retryAfter`.
    RateLimited,
    /// A dependency is temporarily unavailable; retrying may succeed.
    Unavailable,
    /// Something went wrong on our side.
    Internal,
}

impl ErrorCode {
    /// The HTTP status for this code.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidJson | Self::UnknownAction | Self::InvalidRequest => 400,
            Self::Unauthorized | Self::TokenExpired => 401,
            Self::Forbidden | Self::OriginNotAllowed => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::UnknownAction => "unknown_action",
            Self::InvalidRequest => "invalid_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::Forbidden => "forbidden",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// An error as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable text, safe for clients (no internal detail, no personal data).
    pub message: Cow<'static, str>,
    /// The input field at fault, for `invalid_request` and `payload_too_large`.
    pub field: Option<&'static str>,
    /// Seconds to wait, for `rate_limited` and `unavailable`.
    pub retry_after: Option<u64>,
    /// What failed on our side (an operation and an error code, never item data),
    /// for the log line the handler writes when it finishes; never sent to a client.
    pub cause: Option<String>,
}

impl ApiError {
    /// An error with a code and a client-safe message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            cause: None,
        }
    }

    /// Logs how a request ended in this error, where the handler finishes (the
    /// conversions into an `ApiError` have no side effects): a client mistake at
    /// `info`, a throttled dependency at `warn`, a failure on our side at `error`
    /// with its cause. Never the message's input: codes and statuses only.
    pub fn log(&self, outcome: &'static str) {
        let (status, code) = (self.status(), self.code.as_str());
        match (self.code, &self.cause) {
            (ErrorCode::Internal, cause) => tracing::error!(status, code, cause = cause.as_deref(), outcome),
            (ErrorCode::Unavailable, cause) => tracing::warn!(status, code, cause = cause.as_deref(), outcome),
            _ => tracing::info!(status, code, outcome),
        }
    }

    /// The generic internal error; the caller logs the cause.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// Rate limited, retry after `d` (rounded up to whole seconds, at least 1).
    pub fn rate_limited(d: Duration) -> Self {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(ErrorCode::RateLimited, "too many requests")
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            code: self.code.as_str(),
            message: &self.message,
            field: self.field,
            retry_after: self.retry_after,
        }
    }

    /// The WebSocket error frame. `ref_id` echoes the client's reference for the
    /// request (e.g. its `clientMsgId`) so the widget can match the failure.
    pub fn ws_frame(&self, ref_id: Option<&str>) -> serde_json::Value {
        serde_json::to_value(ErrorFrame {
            kind: "error",
            body: self.body(),
            ref_id,
        })
        .unwrap_or_default()
    }

    /// The JSON body of an HTTP answer or a refused `$connect`: `{"error": {...}}`.
    pub fn body_json(&self) -> String {
        serde_json::to_string(&ErrorEnvelope { error: self.body() }).unwrap_or_default()
    }

    /// The HTTP API (payload v2) response: status, JSON body `{"error": {...}}`,
    /// and `Retry-After` when there is one.
    pub fn http_response(&self) -> ApiGatewayV2httpResponse {
        let mut resp = json_response(self.status(), &ErrorEnvelope { error: self.body() });
        if let Some(secs) = self.retry_after {
            resp.headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

/// The WebSocket `error` frame: the body's fields beside `type` and `ref`.
#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: ErrorBody<'a>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    ref_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

/// A JSON HTTP API response with the given status.
pub fn json_response(status: u16, body: &impl Serialize) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    // Browsers must never guess another type (and so run a JSON answer as script or HTML).
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    let mut resp = ApiGatewayV2httpResponse::default();
    resp.status_code = i64::from(status);
    resp.headers = headers;
    resp.body = Some(Body::Text(
        serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned()),
    ));
    resp
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let code = if e.too_large {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::InvalidRequest
        };
        Self {
            field: Some(e.field),
            ..Self::new(code, e.to_string())
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Expired => Self::new(ErrorCode::TokenExpired, "token expired"),
            // Malformed, invalid and out-of-bounds tokens look the same to a client:
            // no oracle for forgeries.
            AuthError::Malformed | AuthError::Invalid | AuthError::NotYetValid | AuthError::BadLifetime => {
                Self::new(ErrorCode::Unauthorized, "invalid or missing token")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::new(ErrorCode::NotFound, "not found"),
            StoreError::AlreadyExists => Self::new(ErrorCode::Conflict, "already exists"),
            StoreError::Conflict => Self::new(ErrorCode::Conflict, "concurrent change, retry"),
            StoreError::RateLimited { retry_after } => Self::rate_limited(retry_after),
            StoreError::InvalidCursor => Self {
                field: Some("cursor"),
                ..Self::new(ErrorCode::InvalidRequest, "invalid cursor")
            },
            StoreError::Throttled { operation } => Self {
                retry_after: Some(1),
                cause: Some(format!("store throttled: {operation}")),
                ..Self::new(ErrorCode::Unavailable, "temporarily unavailable, retry")
            },
            StoreError::Unavailable { operation } => Self {
                retry_after: Some(1),
                cause: Some(format!("store unavailable: {operation}")),
                ..Self::new(ErrorCode::Unavailable, "temporarily unavailable, retry")
            },
            // StoreError's Display carries operation and error code only, never item data.
            other @ (StoreError::Backend { .. } | StoreError::Corrupt { .. }) => Self {
                cause: Some(other.to_string()),
                ..Self::internal()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_maps_to_400_or_413_with_the_field() {
        let e: ApiError = ValidationError::new("siteId", "bad").into();
        assert_eq!((e.status(), e.field), (400, Some("siteId")));
        let e: ApiError = ValidationError::too_large("text", "too long").into();
        assert_eq!((e.status(), e.code.as_str()), (413, "payload_too_large"));
    }

    #[test]
    fn store_errors_convert_without_logging_and_keep_their_cause_for_the_handler() {
        use crate::telemetry::{CapturedLogs, filter_at, json_subscriber_with};
        let logs = CapturedLogs::new();
        let e = tracing::subscriber::with_default(json_subscriber_with(logs.clone(), filter_at("trace")), || {
            ApiError::from(StoreError::Backend {
                operation: "PutItem",
                code: Some("InternalServerError".into()),
            })
        });
        assert_eq!(logs.text(), "", "a conversion has no side effect");
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.cause.as_deref().is_some_and(|c| c.contains("PutItem")), "{e:?}");
        let body = e.http_response().body;
        let Some(Body::Text(body)) = body else { panic!() };
        assert!(!body.contains("PutItem"), "the cause never reaches a client: {body}");
        tracing::subscriber::with_default(json_subscriber_with(logs.clone(), filter_at("trace")), || {
            e.log("export failed");
        });
        let text = logs.text();
        assert!(
            text.contains("\"level\":\"ERROR\"") && text.contains("PutItem"),
            "{text}"
        );
        let throttled = ApiError::from(StoreError::Throttled { operation: "Query" });
        assert_eq!((throttled.status(), throttled.retry_after), (503, Some(1)));
    }

    #[test]
    fn ws_frame_shape() {
        let f = ApiError::rate_limited(Duration::from_millis(2_500)).ws_frame(Some("c-1"));
        assert_eq!(
            f,
            serde_json::json!({"type":"error","code":"rate_limited","message":"too many requests","retryAfter":3,"ref":"c-1"})
        );
    }

    #[test]
    fn http_response_has_status_json_and_retry_after() {
        let r = ApiError::rate_limited(Duration::from_secs(7)).http_response();
        assert_eq!(r.status_code, 429);
        assert_eq!(r.headers.get(RETRY_AFTER).unwrap(), "7");
        let Some(Body::Text(body)) = r.body else {
            panic!("no body")
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "rate_limited");
    }

    #[test]
    fn every_http_answer_forbids_content_sniffing() {
        let ok = json_response(200, &serde_json::json!({"ok": true}));
        let refused = ApiError::new(ErrorCode::Forbidden, "no").http_response();
        for r in [ok, refused] {
            assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
            assert_eq!(r.headers.get(CONTENT_TYPE).unwrap(), "application/json");
        }
    }

    #[test]
    fn internal_failures_reveal_nothing() {
        let e: ApiError = StoreError::Backend {
            operation: "GetItem",
            code: Some("InternalServerError".into()),
        }
        .into();
        assert_eq!(e.status(), 500);
        assert_eq!(e.message, "internal error");
        assert!(!e.ws_frame(None).to_string().contains("GetItem"));
    }

    #[test]
    fn auth_errors_do_not_distinguish_forgery_from_garbage() {
        assert_eq!(ApiError::from(AuthError::Malformed), ApiError::from(AuthError::Invalid));
        assert_eq!(ApiError::from(AuthError::Expired).code, ErrorCode::TokenExpired);
    }
}
