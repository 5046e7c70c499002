//! The HTTP API (payload format 2.0) side: a view of the request.
//!
//! eurochat sets and reads no cookie: the widget keeps its token in
//! `localStorage` and sends it in the body or as a bearer token (see
//! `docs/protocol.md`, "No cookie").

use std::net::IpAddr;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine as _;

use super::{MAX_HTTP_BODY_BYTES, header, json};
use crate::domain::Origin;
use crate::error::ApiError;

/// What the functions read from an HTTP API request.
pub struct HttpRequest<'a> {
    event: &'a ApiGatewayV2httpRequest,
}

impl<'a> HttpRequest<'a> {
    /// A view of `event`.
    pub fn new(event: &'a ApiGatewayV2httpRequest) -> Self {
        Self { event }
    }

    /// A header by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        header(&self.event.headers, name)
    }

    /// The client's IP as API Gateway saw it.
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.event
            .request_context
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
    }

    /// A bearer token from `Authorization`.
    pub fn bearer(&self) -> Option<&'a str> {
        // The scheme name is case-insensitive (RFC 9110 §11.1): `bearer` works too.
        self.header("authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
    }

    /// The `Origin` header, if any, parsed (a present but malformed one is an `Err`).
    pub fn origin(&self) -> Option<Result<Origin, crate::domain::ValidationError>> {
        self.header("origin").map(Origin::from_header)
    }

    /// Whether `origin` is the API's own (the console it serves): `https://` and the
    /// request's `domainName` (an execute-api or custom domain), or `http://` on the
    /// local gateway's loopback address.
    pub fn is_own_origin(&self, origin: &Origin) -> bool {
        let domain = self.event.request_context.domain_name.as_deref().unwrap_or_default();
        let loopback = domain.starts_with("127.0.0.1:") || domain.starts_with("localhost:");
        !domain.is_empty()
            && match origin.as_str().split_once("://") {
                Some(("https", host)) => host == domain,
                Some(("http", host)) => loopback && host == domain,
                _ => false,
            }
    }

    /// A query string parameter.
    pub fn query(&self, name: &str) -> Option<&'a str> {
        self.event.query_string_parameters.first(name)
    }

    /// A path parameter.
    pub fn path_param(&self, name: &str) -> Option<&'a str> {
        self.event.path_parameters.get(name).map(String::as_str)
    }

    /// The body as a JSON object (an absent body is an empty object).
    pub fn json_body(&self) -> Result<json::Object, ApiError> {
        let Some(body) = self.event.body.as_deref() else {
            return Ok(json::Object::new());
        };
        if self.event.is_base64_encoded {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|_| ApiError::new(crate::error::ErrorCode::InvalidJson, "body is not valid base64"))?;
            json::parse_object(&bytes, MAX_HTTP_BODY_BYTES)
        } else {
            json::parse_object(body.as_bytes(), MAX_HTTP_BODY_BYTES)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> ApiGatewayV2httpRequest {
        let mut e = ApiGatewayV2httpRequest::default();
        e.headers.insert(
            "authorization",
            http::HeaderValue::from_str(value).expect("header value"),
        );
        e
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_passes() {
        for (value, expected) in [
            ("Bearer at1.x.y", Some("at1.x.y")),
            ("bearer at1.x.y", Some("at1.x.y")),
            ("BEARER  at1.x.y ", Some("at1.x.y")),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearer", None),
            ("at1.x.y", None),
        ] {
            let e = with_authorization(value);
            assert_eq!(HttpRequest::new(&e).bearer(), expected, "{value:?}");
        }
    }
}
