//! The events API Gateway hands to Lambda, built the way API Gateway builds them.
//!
//! Each event is written as the JSON API Gateway sends and then decoded into the
//! `aws_lambda_events` type, exactly as the Lambda runtime decodes it, so the
//! handlers see nothing the real service would not give them (and a field the
//! type cannot read fails here, not in production).

use std::net::IpAddr;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use base64::Engine as _;
use http::HeaderMap;
use serde_json::{Map, Value, json};

/// API Gateway's limit on one WebSocket message (a client splits a longer one into frames).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// API Gateway's limit on a message posted to `@connections`.
pub const MAX_POST_BYTES: usize = 128 * 1024;

/// What every WebSocket event of one connection shares.
#[derive(Debug, Clone)]
pub struct WsContext {
    /// The connection id.
    pub connection_id: String,
    /// The API's domain name (`host:port` here).
    pub domain_name: String,
    /// The stage.
    pub stage: String,
    /// The client's address.
    pub source_ip: IpAddr,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// When the connection was opened, epoch ms.
    pub connected_at: i64,
    /// What the `$connect` authorizer returned (`principalId` and its context),
    /// passed with every later event of the connection as API Gateway does.
    pub authorizer: Map<String, Value>,
}

/// A request id like API Gateway's (16 characters).
pub fn request_id() -> String {
    random_id(15) + "="
}

/// A connection id like API Gateway's. Letters and digits only (plus the trailing
/// `=`): it goes into `@connections/{id}` paths unescaped by some clients.
pub fn connection_id() -> String {
    random_id(15) + "="
}

fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    // An id collision would merge two connections; the OS generator makes it negligible.
    if getrandom::fill(&mut bytes).is_err() {
        bytes.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn headers_json(headers: &HeaderMap, skip: &[&str]) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi = Map::new();
    for name in headers.keys() {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        if values.is_empty() {
            continue;
        }
        single.insert(name.as_str().to_owned(), Value::String(values.join(",")));
        multi.insert(name.as_str().to_owned(), json!(values));
    }
    (Value::Object(single), Value::Object(multi))
}

fn query_json(raw: Option<&str>) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        single.insert(k.to_string(), Value::String(v.to_string()));
        match multi.get_mut(k.as_ref()) {
            Some(Value::Array(vs)) => vs.push(Value::String(v.to_string())),
            _ => {
                multi.insert(k.to_string(), json!([v]));
            }
        }
    }
    (Value::Object(single), Value::Object(multi))
}

fn ws_context(ctx: &WsContext, route_key: &str, event_type: &str, now: i64) -> Value {
    let id = request_id();
    json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": id,
        "requestTime": "",
        "messageDirection": "IN",
        "stage": ctx.stage,
        "connectedAt": ctx.connected_at,
        "requestTimeEpoch": now,
        "identity": { "sourceIp": ctx.source_ip.to_string(), "userAgent": ctx.user_agent },
        "requestId": id,
        "domainName": ctx.domain_name,
        "connectionId": ctx.connection_id,
        "apiId": "local",
        "authorizer": (!ctx.authorizer.is_empty()).then(|| ctx.authorizer.clone()),
    })
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(v)
}

/// `$connect`: the handshake's headers and query string.
pub fn connect(
    ctx: &WsContext,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    now: i64,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let (headers, multi_headers) = headers_json(headers, &[]);
    let (query, multi_query) = query_json(raw_query);
    decode(json!({
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "requestContext": ws_context(ctx, "$connect", "CONNECT", now),
        "isBase64Encoded": false,
    }))
}

/// The `$connect` route's ARN, as API Gateway names it to an authorizer.
pub fn connect_route_arn(ctx: &WsContext) -> String {
    format!("arn:aws:execute-api:local:000000000000:local/{}/$connect", ctx.stage)
}

/// The REQUEST authorizer's event for a handshake: the `$connect` event's
/// headers, query and context, plus `type` and the route's `methodArn`.
pub fn authorizer(
    ctx: &WsContext,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    now: i64,
) -> Result<connect::AuthorizerRequest, serde_json::Error> {
    let (headers, multi_headers) = headers_json(headers, &[]);
    let (query, multi_query) = query_json(raw_query);
    decode(json!({
        "type": "REQUEST",
        "methodArn": connect_route_arn(ctx),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "stageVariables": {},
        "requestContext": ws_context(ctx, "$connect", "CONNECT", now),
    }))
}

/// The route API Gateway picks for a frame with route selection
/// `$request.body.action`: the `action` if a route has that key, else `$default`.
pub fn route_key(frame: &[u8], routes: &[&str]) -> String {
    serde_json::from_slice::<Value>(frame)
        .ok()
        .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned))
        .filter(|a| routes.contains(&a.as_str()))
        .unwrap_or_else(|| "$default".to_owned())
}

/// A text message on `route_key` (binary messages never reach a function: the
/// gateway closes the connection with 1003, as API Gateway does).
pub fn message(
    ctx: &WsContext,
    route_key: &str,
    frame: &str,
    now: i64,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let mut context = ws_context(ctx, route_key, "MESSAGE", now);
    context["messageId"] = Value::String(request_id());
    decode(json!({
        "requestContext": context,
        "body": frame,
        "isBase64Encoded": false,
    }))
}

/// `$disconnect`, with the close code and reason.
pub fn disconnect(
    ctx: &WsContext,
    status: i64,
    reason: &str,
    now: i64,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let mut context = ws_context(ctx, "$disconnect", "DISCONNECT", now);
    context["disconnectStatusCode"] = json!(status);
    context["disconnectReason"] = json!(reason);
    decode(json!({
        "headers": { "Host": ctx.domain_name },
        "multiValueHeaders": { "Host": [ctx.domain_name] },
        "requestContext": context,
        "isBase64Encoded": false,
    }))
}

/// An HTTP API (payload 2.0) request. Like API Gateway, cookies move from the
/// `Cookie` header to `cookies`, and a body that is not UTF-8 is base64-encoded.
pub struct HttpRequestParts<'a> {
    /// `POST`, …
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The query string, without `?`.
    pub raw_query: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
    /// The client's address.
    pub source_ip: IpAddr,
    /// The API's domain name.
    pub domain_name: &'a str,
}

/// The payload-2.0 event for `parts` on the route `route_key` (`POST /v1/sessions`).
pub fn http(
    parts: &HttpRequestParts<'_>,
    route_key: &str,
    now: i64,
) -> Result<ApiGatewayV2httpRequest, serde_json::Error> {
    let (headers, _) = headers_json(parts.headers, &["cookie"]);
    let cookies: Vec<String> = parts
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    let (body, base64) = match std::str::from_utf8(parts.body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(parts.body), true),
    };
    let user_agent = parts.headers.get("user-agent").and_then(|v| v.to_str().ok());
    let id = request_id();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.path,
        "rawQueryString": parts.raw_query.unwrap_or_default(),
        "headers": headers,
        "requestContext": {
            "accountId": "local",
            "apiId": "local",
            "domainName": parts.domain_name,
            "http": {
                "method": parts.method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": parts.source_ip.to_string(),
                "userAgent": user_agent.unwrap_or_default(),
            },
            "requestId": id,
            "routeKey": route_key,
            "stage": "$default",
            "time": "",
            "timeEpoch": now,
        },
        "body": body,
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if let Some(q) = parts.raw_query.filter(|q| !q.is_empty()) {
        event["queryStringParameters"] = query_json(Some(q)).0;
    }
    decode(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> WsContext {
        WsContext {
            connection_id: connection_id(),
            domain_name: "127.0.0.1:8080".into(),
            stage: "local".into(),
            source_ip: "127.0.0.1".parse().unwrap(),
            user_agent: Some("test-agent".into()),
            connected_at: 1_000,
            authorizer: Map::new(),
        }
    }

    #[test]
    fn ids_look_like_api_gateways_and_differ() {
        let a = connection_id();
        assert_eq!(a.len(), 16);
        assert!(a.ends_with('='));
        assert!(chat_core::domain::ConnectionId::parse(&a).is_ok());
        assert_ne!(a, connection_id());
    }

    #[test]
    fn connect_carries_headers_query_and_context() {
        let mut h = HeaderMap::new();
        h.insert("origin", "http://127.0.0.1:8080".parse().unwrap());
        h.insert("sec-websocket-protocol", "eurochat.v1, vt1.x.y".parse().unwrap());
        let e = connect(&ctx(), &h, Some("token=a%2Bb&x=1"), 2_000).unwrap();
        assert_eq!(e.query_string_parameters.first("token"), Some("a+b"));
        let req = chat_core::api::ws::WsRequest::new(&e);
        assert_eq!(req.header("Origin"), Some("http://127.0.0.1:8080"));
        assert_eq!(req.subprotocol_token(), Some("vt1.x.y"));
        assert_eq!(req.source_ip(), Some("127.0.0.1".parse().unwrap()));
        assert_eq!((req.domain_name(), req.stage()), ("127.0.0.1:8080", "local"));
        assert_eq!(e.request_context.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(e.request_context.route_key.as_deref(), Some("$connect"));
    }

    #[test]
    fn routing_follows_the_action_or_falls_back_to_default() {
        let routes = ["sendMessage", "typing"];
        assert_eq!(route_key(br#"{"action":"typing"}"#, &routes), "typing");
        assert_eq!(route_key(br#"{"action":"dance"}"#, &routes), "$default");
        assert_eq!(route_key(br#"{"action":7}"#, &routes), "$default");
        assert_eq!(route_key(b"not json", &routes), "$default");
    }

    #[test]
    fn text_frames_arrive_as_they_are() {
        let e = message(&ctx(), "typing", r#"{"action":"typing"}"#, 3).unwrap();
        assert!(!e.is_base64_encoded);
        assert_eq!(e.body.as_deref(), Some(r#"{"action":"typing"}"#));
        assert!(e.request_context.message_id.is_some());
    }

    #[test]
    fn disconnect_has_the_close_code() {
        let e = disconnect(&ctx(), 1001, "Going away", 4).unwrap();
        assert_eq!(e.request_context.disconnect_status_code, Some(1001));
        assert_eq!(e.request_context.event_type.as_deref(), Some("DISCONNECT"));
    }

    #[test]
    fn http_moves_cookies_and_keeps_the_body() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; eurochat_vt=tok".parse().unwrap());
        h.insert("origin", "http://localhost:8080".parse().unwrap());
        let parts = HttpRequestParts {
            method: "POST",
            path: "/v1/sessions",
            raw_query: None,
            headers: &h,
            body: br#"{"siteId":"demo"}"#,
            source_ip: "::1".parse().unwrap(),
            domain_name: "localhost:8080",
        };
        let e = http(&parts, "POST /v1/sessions", 5).unwrap();
        assert_eq!(e.cookies, Some(vec!["a=1".to_owned(), "eurochat_vt=tok".to_owned()]));
        assert!(e.headers.get("cookie").is_none());
        assert_eq!(e.body.as_deref(), Some(r#"{"siteId":"demo"}"#));
        assert_eq!(e.request_context.http.source_ip.as_deref(), Some("::1"));
        let binary = HttpRequestParts {
            body: &[0xc3, 0x28],
            ..parts
        };
        assert!(http(&binary, "POST /v1/sessions", 5).unwrap().is_base64_encoded);
    }
}
