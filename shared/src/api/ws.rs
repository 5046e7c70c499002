//! The WebSocket API side: a view of a route event and the route responses.

use std::net::IpAddr;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use base64::Engine as _;

use super::verdict::Verdict;
use super::{MAX_FRAME_BYTES, header, json};
use crate::domain::ConnectionId;
use crate::error::{ApiError, ErrorCode};

/// The subprotocol a widget may offer with its token: `Sec-WebSocket-Protocol: eurochat.v1, <token>`.
pub const SUBPROTOCOL: &str = "eurochat.v1";

/// What the functions read from a WebSocket route event.
pub struct WsRequest<'a> {
    event: &'a ApiGatewayWebsocketProxyRequest,
}

impl<'a> WsRequest<'a> {
    /// A view of `event`.
    pub fn new(event: &'a ApiGatewayWebsocketProxyRequest) -> Self {
        Self { event }
    }

    /// The connection id API Gateway assigned.
    pub fn connection_id(&self) -> Result<ConnectionId, ApiError> {
        self.event
            .request_context
            .connection_id
            .as_deref()
            .and_then(|c| ConnectionId::parse(c).ok())
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "missing connection id"))
    }

    /// The API's domain name (for the management endpoint).
    pub fn domain_name(&self) -> &'a str {
        self.event.request_context.domain_name.as_deref().unwrap_or_default()
    }

    /// The API's stage (for the management endpoint).
    pub fn stage(&self) -> &'a str {
        self.event.request_context.stage.as_deref().unwrap_or_default()
    }

    /// The client's IP as API Gateway saw it.
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.event
            .request_context
            .identity
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
    }

    /// A header by name (case-insensitive; `$connect` only).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        header(&self.event.headers, name)
    }

    /// A query string parameter (`$connect` only).
    pub fn query(&self, name: &str) -> Option<&'a str> {
        self.event.query_string_parameters.first(name)
    }

    /// The token offered as the second `Sec-WebSocket-Protocol` entry after [`SUBPROTOCOL`].
    pub fn subprotocol_token(&self) -> Option<&'a str> {
        let offered = self.header("sec-websocket-protocol")?;
        let mut parts = offered.split(',').map(str::trim);
        (parts.next() == Some(SUBPROTOCOL))
            .then(|| parts.next())
            .flatten()
            .filter(|t| !t.is_empty())
    }

    /// The frame as a JSON object: UTF-8 text, at most 32 KB, an object.
    pub fn frame(&self) -> Result<json::Object, ApiError> {
        let body = self.event.body.as_deref().unwrap_or_default();
        if self.event.is_base64_encoded {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "frame is not valid base64"))?;
            json::parse_object(&bytes, MAX_FRAME_BYTES)
        } else {
            json::parse_object(body.as_bytes(), MAX_FRAME_BYTES)
        }
    }

    /// The `$connect` authorizer's verdict for this connection, if an authorizer
    /// gave one (every route event of the connection carries it).
    pub fn verdict(&self) -> Option<Verdict> {
        Verdict::from_context(&self.event.request_context.authorizer.fields)
    }

    /// API Gateway's request id, for correlating logs.
    pub fn request_id(&self) -> &'a str {
        self.event.request_context.request_id.as_deref().unwrap_or_default()
    }
}

/// A route response with a status and no body.
pub fn status(code: u16) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = i64::from(code);
    r
}

/// `$connect` refused: API Gateway rejects the handshake with this status. The body
/// (the error's JSON) is visible to non-browser clients only.
pub fn reject(err: &ApiError) -> ApiGatewayProxyResponse {
    // The same body as an HTTP error answer.
    reject_verdict(err.status(), &err.body_json(), err.retry_after)
}

/// `$connect` refused by the authorizer's verdict: the same answer as [`reject`]
/// of the error the authorizer decided.
pub fn reject_verdict(status_code: u16, body: &str, retry_after: Option<u64>) -> ApiGatewayProxyResponse {
    let mut r = status(status_code);
    r.headers.insert(
        ::http::header::X_CONTENT_TYPE_OPTIONS,
        ::http::HeaderValue::from_static("nosniff"),
    );
    if let Some(secs) = retry_after {
        r.headers
            .insert(::http::header::RETRY_AFTER, ::http::HeaderValue::from(secs));
    }
    r.body = Some(Body::Text(body.to_owned()));
    r
}
