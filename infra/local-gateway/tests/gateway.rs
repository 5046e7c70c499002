//! The local gateway as a client sees it, on the in-memory store and on moto's
//! DynamoDB: API Gateway's WebSocket semantics, the `@connections` endpoint
//! through the real management client, the HTTP routes, and shutdown.

use std::time::Duration;

use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use eurochat_tests::wire::{self, Socket, close_code, next_json};
use futures::SinkExt;
use local_gateway::{Options, Running, start};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

async fn gateway(dynamodb: bool) -> Running {
    let dynamodb_endpoint = dynamodb.then(|| eurochat_tests::moto::moto().endpoint().to_owned());
    start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        dynamodb_endpoint,
        table: eurochat_tests::moto::unique_table("gateway"),
        ..Options::default()
    })
    .await
    .expect("gateway starts")
}

async fn post(g: &Running, path: &str, origin: &str, bearer: Option<&str>, body: &Value) -> (u16, String, Value) {
    let r = wire::post(g.addr, None, path, origin, bearer, body).await;
    (r.status, r.head, r.body)
}

async fn session(g: &Running) -> String {
    let (status, head, body) = post(g, "/v1/sessions", &g.base_url(), None, &json!({"siteId": g.site})).await;
    assert_eq!(status, 201, "{body}");
    assert!(!head.contains("set-cookie"), "eurochat sets no cookie");
    body["token"].as_str().unwrap().to_owned()
}

async fn ws(g: &Running, token: &str, origin: &str) -> Result<(Socket, Option<String>), u16> {
    wire::connect(g.addr, None, &g.ws_url(), origin, token).await
}

async fn management(g: &Running) -> aws_sdk_apigatewaymanagement::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-central-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("t", "t", None, None, "test"))
        .load()
        .await;
    let conf = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
        .endpoint_url(g.management_endpoint())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(conf)
}

/// GIVEN a gateway WHEN clients connect with bad and good credentials THEN `$connect`'s answer
/// decides the handshake, frames are routed by `action`, the functions answer through
/// `@connections`, and an oversized frame closes the connection with 1009.
async fn websocket_semantics(dynamodb: bool) {
    let g = gateway(dynamodb).await;
    let token = session(&g).await;
    assert_eq!(
        ws(&g, "vt1.nonsense", &g.base_url()).await.err(),
        Some(401),
        "bad token"
    );
    assert_eq!(
        ws(&g, &token, "https://elsewhere.example").await.err(),
        Some(403),
        "foreign origin"
    );
    let (mut visitor, proto) = ws(&g, &token, &g.base_url()).await.expect("visitor connects");
    assert_eq!(
        proto.as_deref(),
        Some("eurochat.v1"),
        "subprotocol selected, token not echoed"
    );
    let (mut agent, _) = ws(&g, &g.agent_token, &g.base_url()).await.expect("agent connects");

    let frame = json!({"action": "sendMessage", "clientMsgId": "m-1", "text": "hello from the gateway test"});
    visitor.send(Message::text(frame.to_string())).await.unwrap();
    let ack = next_json(&mut visitor).await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(1)),
        "{ack}"
    );
    let got = next_json(&mut agent).await;
    assert_eq!(got["message"]["text"], "hello from the gateway test", "{got}");

    visitor
        .send(Message::text(json!({"action": "dance"}).to_string()))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut visitor).await["code"],
        "unknown_action",
        "$default route"
    );
    visitor.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_json(&mut visitor).await["code"], "invalid_json");

    // A 40 KB message split into two 20 KB frames passes API Gateway's frame limit and
    // reaches the function, which refuses it; the connection stays open.
    let long = json!({"action": "sendMessage", "clientMsgId": "m-3", "text": "y".repeat(40 * 1024)}).to_string();
    let (head, tail) = long.as_bytes().split_at(long.len() / 2);
    visitor
        .send(Message::Frame(Frame::message(
            head.to_vec(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
    visitor
        .send(Message::Frame(Frame::message(
            tail.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
    let refused = next_json(&mut visitor).await;
    assert_eq!(refused["code"], "payload_too_large", "{refused}");

    let big = json!({"action": "sendMessage", "clientMsgId": "m-2", "text": "x".repeat(33 * 1024)});
    visitor.send(Message::text(big.to_string())).await.unwrap();
    assert_eq!(
        close_code(&mut visitor).await,
        Some(1009),
        "frames over 32 KB close the connection"
    );

    agent.close(None).await.unwrap();
    g.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_semantics_in_memory() {
    websocket_semantics(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_semantics_on_moto() {
    websocket_semantics(true).await;
}

/// GIVEN a connected visitor WHEN the real management client posts, gets and deletes
/// THEN the frame arrives, the connection is described, it is closed (running
/// `$disconnect`), and afterwards every call answers `GoneException`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_endpoint_speaks_the_management_api() {
    use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
    use aws_sdk_apigatewaymanagement::primitives::Blob;
    let g = gateway(false).await;
    let token = session(&g).await;
    let (mut visitor, _) = ws(&g, &token, &g.base_url()).await.unwrap();
    let ids = g.connection_ids();
    assert_eq!(ids.len(), 1);
    let id = &ids[0];
    let client = management(&g).await;
    client
        .post_to_connection()
        .connection_id(id)
        .data(Blob::new(br#"{"type":"hello"}"#.to_vec()))
        .send()
        .await
        .expect("post");
    assert_eq!(next_json(&mut visitor).await["type"], "hello");
    let info = client.get_connection().connection_id(id).send().await.expect("get");
    assert_eq!(info.identity().and_then(|i| i.source_ip()), Some("127.0.0.1"));
    assert!(info.connected_at().is_some() && info.last_active_at().is_some());
    client
        .delete_connection()
        .connection_id(id)
        .send()
        .await
        .expect("delete");
    assert_eq!(close_code(&mut visitor).await, Some(1000));
    let gone = client
        .post_to_connection()
        .connection_id(id)
        .data(Blob::new(b"{}".to_vec()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(gone, PostToConnectionError::GoneException(_)), "{gone:?}");
    let gone = client
        .delete_connection()
        .connection_id(id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(gone, DeleteConnectionError::GoneException(_)), "{gone:?}");
    assert!(g.connection_ids().is_empty());
    g.stop().await.unwrap();
}

/// GIVEN connected clients WHEN the gateway stops THEN each gets close 1001 and it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_connection() {
    let g = gateway(false).await;
    let token = session(&g).await;
    let (mut visitor, _) = ws(&g, &token, &g.base_url()).await.unwrap();
    let (mut agent, _) = ws(&g, &g.agent_token, &g.base_url()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), g.stop())
        .await
        .expect("stops within 10 s")
        .unwrap();
    assert_eq!(close_code(&mut visitor).await, Some(1001));
    assert_eq!(close_code(&mut agent).await, Some(1001));
}

/// GIVEN a visitor WHEN they erase themselves over HTTP THEN their live connection is closed
/// through `DELETE @connections` and their token no longer connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_closes_the_connection_through_the_gateway() {
    let g = gateway(false).await;
    let token = session(&g).await;
    let (mut visitor, _) = ws(&g, &token, &g.base_url()).await.unwrap();
    let frame = json!({"action": "sendMessage", "clientMsgId": "m-1", "text": "erase me"});
    visitor.send(Message::text(frame.to_string())).await.unwrap();
    assert_eq!(next_json(&mut visitor).await["type"], "ack");
    let (status, _, body) = post(&g, "/v1/gdpr/erase", &g.base_url(), Some(&token), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["total"].as_u64().unwrap() >= 3, "{body}");
    assert_eq!(close_code(&mut visitor).await, Some(1000), "closed by the erasure");
    assert_eq!(ws(&g, &token, &g.base_url()).await.err(), Some(401));
    g.stop().await.unwrap();
}

/// GIVEN the HTTP API WHEN called from an allowed and a foreign origin THEN CORS headers are
/// given to the allowed origin only, preflights answer, and function errors keep their status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_answer_with_the_functions_status_and_cors() {
    let g = gateway(false).await;
    let (status, head, body) = post(&g, "/v1/sessions", &g.base_url(), None, &json!({"siteId": g.site})).await;
    assert_eq!(status, 201, "{body}");
    assert!(head.contains(&format!("access-control-allow-origin: {}", g.base_url())));
    let (status, head, body) = post(
        &g,
        "/v1/sessions",
        "https://evil.example",
        None,
        &json!({"siteId": g.site}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    assert!(!head.contains("access-control-allow-origin"));
    let (status, _, body) = post(&g, "/v1/gdpr/export", &g.base_url(), None, &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (status, _, body) = post(
        &g,
        "/v1/gdpr/export",
        &g.base_url(),
        Some(&g.agent_token),
        &json!({"visitorId": "vis_00000000000000000000000000000000"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["schema"], "eurochat.gdpr-export/1");
    g.stop().await.unwrap();
}

/// The value of header `name` in a lower-cased head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")))
}

/// GIVEN the gateway WHEN the pages, scripts and API are fetched THEN every page and asset
/// carries a CSP without inline code, nosniff and no-referrer; the console also refuses
/// framing; every API answer (success, function error, preflight, unknown route) carries
/// nosniff; no answer sets a cookie or allows credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_api_answers_carry_security_headers() {
    let g = gateway(false).await;
    for path in ["/", "/demo", "/console"] {
        let (status, head, body) = wire::request(g.addr, "GET", path, None).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&head, "content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let csp = header(&head, "content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(
            csp.contains("script-src 'self'") && csp.contains("style-src 'self'"),
            "{path}: {csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(header(&head, "referrer-policy"), Some("no-referrer"), "{path}");
        let framing = csp.contains("frame-ancestors 'none'");
        assert_eq!(framing, path == "/console", "{path}: {csp}");
        assert_eq!(
            header(&head, "x-frame-options"),
            (path == "/console").then_some("deny"),
            "{path}"
        );
        assert!(!body.contains("{{"), "{path}: template filled in");
        assert!(!body.contains(&g.agent_token), "{path}: no token in a page");
    }
    for (path, kind) in [
        ("/widget.js", "text/javascript"),
        ("/console.js", "text/javascript"),
        ("/eurochat.css", "text/css"),
    ] {
        let (status, head, _) = wire::request(g.addr, "GET", path, None).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&head, "content-type").is_some_and(|t| t.starts_with(kind)),
            "{path}"
        );
        assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(header(&head, "referrer-policy"), Some("no-referrer"), "{path}");
        assert!(header(&head, "content-security-policy").is_some(), "{path}");
    }
    let origin = g.base_url();
    let (status, head, _) = post(&g, "/v1/sessions", &origin, None, &json!({"siteId": g.site})).await;
    assert_eq!(status, 201);
    let (refused, refused_head, _) = post(&g, "/v1/gdpr/export", &origin, None, &json!({})).await;
    assert_eq!(refused, 401);
    let (_, preflight, _) = wire::request(g.addr, "OPTIONS", "/v1/sessions", Some(&origin)).await;
    let (missing, missing_head, _) = wire::request(g.addr, "GET", "/no-such-route", None).await;
    assert_eq!(missing, 404);
    for (what, head) in [
        ("created", &head),
        ("refused", &refused_head),
        ("preflight", &preflight),
        ("unknown route", &missing_head),
    ] {
        assert_eq!(
            header(head, "x-content-type-options"),
            Some("nosniff"),
            "{what}: {head}"
        );
        assert!(!head.contains("set-cookie"), "{what}: no cookie");
        assert!(
            !head.contains("access-control-allow-credentials"),
            "{what}: no credentials"
        );
    }
    g.stop().await.unwrap();
}

/// GIVEN a visitor's token WHEN it is put in the WebSocket URL (even alongside the
/// subprotocol) THEN the handshake is refused with 400; offered as the subprotocol alone it
/// connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_is_refused() {
    let g = gateway(false).await;
    let token = session(&g).await;
    let in_url = format!("{}?token={token}", g.ws_url());
    assert_eq!(
        wire::connect(g.addr, None, &in_url, &g.base_url(), &token).await.err(),
        Some(400)
    );
    let (mut visitor, _) = ws(&g, &token, &g.base_url()).await.expect("subprotocol connects");
    visitor.close(None).await.unwrap();
    g.stop().await.unwrap();
}

/// GIVEN a gateway with a short retention period WHEN time passes THEN the retention job
/// (and the in-memory TTL sweep) runs on every tick, as the EventBridge schedule does.
#[tokio::test(flavor = "current_thread")]
async fn retention_runs_on_its_timer() {
    use chat_core::telemetry::{CapturedLogs, filter_at, json_subscriber_with};
    let logs = CapturedLogs::new();
    let _guard = tracing::subscriber::set_default(json_subscriber_with(logs.clone(), filter_at("info")));
    let g = start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        retention_every: Duration::from_millis(200),
        ..Options::default()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    g.stop().await.unwrap();
    let runs = logs.text().matches("retention run finished").count();
    assert!(
        runs >= 2,
        "{runs} runs in 900 ms with a 200 ms period:\n{}",
        logs.text()
    );
}

/// GIVEN a gateway started without any `EUROCHAT_*` limit set WHEN one client (127.0.0.1)
/// creates sessions and connects past Lambda's defaults (10 sessions, 20 connects a minute)
/// THEN the gateway refuses exactly as Lambda does: 429 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_applies_lambdas_default_limits_end_to_end() {
    let g = gateway(false).await;
    let origin = g.base_url();
    let token = session(&g).await;
    for _ in 1..10 {
        session(&g).await;
    }
    let (status, head, body) = post(&g, "/v1/sessions", &origin, None, &json!({"siteId": g.site})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert!(head.contains("retry-after: "), "{head}");
    let mut open = Vec::new();
    for i in 0..20 {
        open.push(
            ws(&g, &token, &origin)
                .await
                .unwrap_or_else(|s| panic!("connect {i}: {s}")),
        );
    }
    assert_eq!(ws(&g, &token, &origin).await.err(), Some(429));
    drop(open);
    g.stop().await.expect("stop");
}
