//! The handlers of untrusted input, fed generated input (proptest): HTTP bodies,
//! headers (Origin, Authorization, User-Agent), cookies, query strings, and the
//! WebSocket handshake's subprotocol and Origin. For any input the answer is
//! never a server error, a refusal carries one of the documented error codes,
//! and a refusal stores nothing (every item kind, rate counters included).
//!
//! Inputs mix noise with near-misses: JSON objects with the real field names and
//! values of the wrong type or shape, tokens with the real prefixes, origins
//! close to the site's own. The memory store keeps the cases fast; the same
//! handlers run on DynamoDB in every flow suite.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use eurochat_tests::backends::{Backend, Memory};
use eurochat_tests::chat::{Chat, HttpReply, ORIGIN, SITE};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

/// Every error code docs/protocol.md documents.
const CODES: &[&str] = &[
    "invalid_json",
    "unknown_action",
    "invalid_request",
    "payload_too_large",
    "unauthorized",
    "token_expired",
    "forbidden",
    "origin_not_allowed",
    "not_found",
    "method_not_allowed",
    "conflict",
    "rate_limited",
];

const HTTP_EVENT: &str = include_str!("../events/http-post-sessions.json");

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 192,
        failure_persistence: None,
        ..Config::default()
    })
}

/// JSON values of every shape, with eurochat's field names among the keys.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        Just(json!(SITE)),
        Just(json!("vt1.ses_0123456789abcdef0123456789abcdef.AAAA")),
        Just(json!("at1.e30.sig")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("siteId".to_owned()),
                    Just("token".to_owned()),
                    Just("prechat".to_owned()),
                    Just("name".to_owned()),
                    Just("email".to_owned()),
                    Just("consent".to_owned()),
                    Just("purpose".to_owned()),
                    Just("policyVersion".to_owned()),
                    Just("visitorId".to_owned()),
                    Just("sessionId".to_owned()),
                    Just("cursor".to_owned()),
                    Just("scope".to_owned()),
                    ".{0,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body: JSON, almost-JSON, or any bytes as text.
fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => json_value().prop_map(|v| v.to_string()),
        1 => ".{0,200}",
        1 => json_value().prop_map(|v| {
            let s = v.to_string();
            s.chars().take(s.chars().count() / 2).collect()
        }),
    ]
}

fn origin() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(ORIGIN.to_owned())),
        Just(Some("null".to_owned())),
        Just(Some(format!("{ORIGIN}/"))),
        Just(Some(ORIGIN.replace("https", "http"))),
        // Header values are visible ASCII: anything else never reaches a function
        // (API Gateway refuses it, and no HeaderMap can hold it).
        "[ -~]{0,40}".prop_map(Some),
    ]
}

fn bearer() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "[ -~]{0,60}".prop_map(Some),
        "(Bearer|bearer|Basic) (vt1|at1)\\.[A-Za-z0-9_.-]{0,80}".prop_map(Some),
    ]
}

fn http_event(body: &str, origin: Option<&str>, auth: Option<&str>, cookies: &[String], ua: &str) -> Value {
    let mut e: Value = serde_json::from_str(HTTP_EVENT).expect("fixture");
    // Generated user agents double as the source address field: any text may arrive there.
    if ua.len().is_multiple_of(3) {
        e["requestContext"]["http"]["sourceIp"] = json!(ua.chars().take(45).collect::<String>());
    }
    e["body"] = json!(body);
    let headers = e["headers"].as_object_mut().expect("headers");
    headers.remove("origin");
    if let Some(o) = origin {
        headers.insert("origin".into(), json!(o));
    }
    if let Some(a) = auth {
        headers.insert("authorization".into(), json!(a));
    }
    headers.insert("user-agent".into(), json!(ua));
    e["cookies"] = json!(cookies);
    e
}

/// Every stored item as text (rate counters included), sorted: a refusal must leave it as it was.
async fn everything(chat: &Chat<Memory>) -> Vec<String> {
    let mut items = chat.backend.raw_texts().await;
    items.sort();
    items
}

fn check(reply: &HttpReply, before: &[String], after: &[String]) -> Result<(), TestCaseError> {
    prop_assert!(reply.status < 500, "a server error: {} {}", reply.status, reply.body);
    if reply.status >= 400 {
        let code = reply.body["error"]["code"].as_str().unwrap_or_default();
        prop_assert!(CODES.contains(&code), "undocumented code {code:?}: {}", reply.body);
        prop_assert_eq!(before, after, "a refusal stored something");
    }
    Ok(())
}

#[test]
fn session_requests_never_fail_on_our_side_and_refusals_store_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chat = rt.block_on(Chat::new(Memory::default()));
    let input = (
        body(),
        origin(),
        prop::collection::vec("[ -~]{0,30}", 0..3),
        "[ -~]{0,600}",
    );
    runner()
        .run(&input, |(body, origin, cookies, ua)| {
            rt.block_on(async {
                let before = everything(&chat).await;
                let reply = chat
                    .post_session_event(http_event(&body, origin.as_deref(), None, &cookies, &ua))
                    .await;
                let after = everything(&chat).await;
                check(&reply, &before, &after)?;
                prop_assert!(reply.cookies.is_empty(), "eurochat sets no cookie");
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn gdpr_requests_never_fail_on_our_side_and_refusals_store_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chat = rt.block_on(Chat::new(Memory::default()));
    // Real tokens too, so generated bodies reach the subject, scope and cursor parsing.
    let visitor = rt.block_on(chat.visitor());
    let admin = chat.agent_token(SITE, "alice", chat_core::domain::AgentRole::Admin);
    let auth = prop_oneof![
        bearer(),
        Just(Some(format!("Bearer {}", visitor.token))),
        Just(Some(format!("Bearer {admin}"))),
    ];
    let input = (
        body(),
        origin(),
        auth,
        any::<bool>(),
        prop::collection::vec("[ -~]{0,30}", 0..2),
    );
    runner()
        .run(&input, |(body, origin, auth, export, cookies)| {
            rt.block_on(async {
                let before = everything(&chat).await;
                let event: ApiGatewayV2httpRequest =
                    serde_json::from_value(http_event(&body, origin.as_deref(), auth.as_deref(), &cookies, "ua"))
                        .expect("an HTTP API event");
                let reply = if export {
                    chat.export_event(event).await
                } else {
                    chat.erase_event(event).await
                };
                let after = everything(&chat).await;
                check(&reply, &before, &after)
            })
        })
        .unwrap();
}

#[test]
fn handshakes_never_fail_on_our_side_and_refusals_store_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chat = rt.block_on(Chat::new(Memory::default()));
    let input = (
        prop_oneof![
            Just(None),
            "[ -~]{0,60}".prop_map(Some),
            "eurochat\\.v1, ?(vt1|at1)\\.[A-Za-z0-9_.-]{0,80}".prop_map(Some),
        ],
        origin(),
        prop::collection::vec(("[a-z]{1,6}", "[ -~]{0,20}"), 0..3),
        // The request context's connection id and source address, as any text now and then.
        prop_oneof![3 => Just(None), 1 => "[ -~]{0,30}".prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => "[ -~]{0,45}".prop_map(Some)],
    );
    let counter = std::sync::atomic::AtomicU32::new(0);
    runner()
        .run(&input, |(protocol, origin, query, conn_id, source_ip)| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(async {
                let before = everything(&chat).await;
                let mut headers: Vec<(&str, &str)> = Vec::new();
                if let Some(p) = &protocol {
                    headers.push(("Sec-WebSocket-Protocol", p));
                }
                if let Some(o) = &origin {
                    headers.push(("Origin", o));
                }
                let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let r = chat
                    // A new address each time, so the per-IP limit never hides the parser.
                    .connect_event(
                        &conn_id.unwrap_or_else(|| format!("c-prop-{n}")),
                        &query,
                        &headers,
                        &source_ip.unwrap_or_else(|| format!("198.18.{}.{}", n / 250, n % 250)),
                    )
                    .await;
                let after = everything(&chat).await;
                prop_assert!(r.status_code < 500, "a server error: {}", r.status_code);
                if r.status_code >= 400 {
                    // A refused handshake may count against the per-IP limit, by design
                    // (docs/protocol.md, "Abuse limits"); nothing else may change.
                    let strip = |items: Vec<String>| -> Vec<String> {
                        // Rate counters are the (keyed IP, admission times) entries.
                        items.into_iter().filter(|i| !i.contains(" ([Timestamp(")).collect()
                    };
                    prop_assert_eq!(strip(before), strip(after), "a refused handshake stored something");
                }
                Ok(())
            })
        })
        .unwrap();
}

/// Frames on open sockets, a visitor's and an agent's, with generated bodies:
/// actions with payloads of every shape, cursors shaped like eurochat's
/// (`lc1.<tag>.<base64>`) and not, any text, any base64. A refused frame gets an
/// `error` frame with a documented code and changes nothing stored.
#[test]
fn frames_on_open_sockets_are_answered_and_refusals_store_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chat = rt.block_on(Chat::new(Memory::default()));
    let visitor = rt.block_on(chat.visitor());
    let admin = chat.agent_token(SITE, "alice", chat_core::domain::AgentRole::Admin);
    assert_eq!(rt.block_on(chat.connect("c-visitor", &visitor.token)), 200);
    assert_eq!(rt.block_on(chat.connect("c-agent", &admin)), 200);
    let action = prop_oneof![
        Just("sendMessage".to_owned()),
        Just("typing".to_owned()),
        Just("history".to_owned()),
        Just("markRead".to_owned()),
        Just("listConversations".to_owned()),
        Just("join".to_owned()),
        Just("deleteConversation".to_owned()),
        Just("hello".to_owned()),
        "[a-zA-Z]{0,12}",
    ];
    let cursor = prop_oneof!["lc1\\.[oc]\\.[A-Za-z0-9_-]{0,60}", "[A-Za-z0-9_.-]{0,60}",];
    let frame = prop_oneof![
        (action, json_value(), cursor, any::<bool>()).prop_map(|(action, payload, cursor, with_cursor)| {
            let mut f = match payload {
                Value::Object(m) => m,
                other => [("text".to_owned(), other)].into_iter().collect(),
            };
            f.insert("action".into(), json!(action));
            if with_cursor {
                f.insert("cursor".into(), json!(cursor));
            }
            (Value::Object(f).to_string(), false)
        }),
        body().prop_map(|b| (b, false)),
        ".{0,80}".prop_map(|b| (
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b),
            true
        )),
    ];
    let input = (frame, any::<bool>());
    runner()
        .run(&input, |((body, base64), from_agent)| {
            rt.block_on(async {
                let conn = if from_agent { "c-agent" } else { "c-visitor" };
                let sent = chat.frames(conn).len();
                let before = everything(&chat).await;
                let status = chat.send_raw(conn, &body, base64).await;
                let after = everything(&chat).await;
                prop_assert!(status < 500, "a server error: {status}");
                let answers: Vec<Value> = chat.frames(conn).into_iter().skip(sent).collect();
                if let Some(error) = answers.iter().find(|f| f["type"] == "error") {
                    let code = error["code"].as_str().unwrap_or_default();
                    prop_assert!(CODES.contains(&code), "undocumented code {code:?}: {error}");
                    prop_assert_eq!(&before, &after, "a refused frame stored something: {}", body);
                }
                Ok(())
            })
        })
        .unwrap();
}
