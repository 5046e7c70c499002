//! The event fixtures in `tests/events/`, the files the local loop feeds to
//! `cargo lambda invoke --data-file` (functions/README.md, "The local loop").
//!
//! - Every file is listed here with the function it is for, and every function
//!   crate under `functions/` has at least one.
//! - Each deserializes into its function's event type the way `lambda_runtime`
//!   does it (`serde_json` from the raw bytes), and loses no field on the way:
//!   the `aws_lambda_events` types ignore unknown fields, so a misspelt field
//!   would otherwise be dropped without a word.
//! - Each, sent alone to its function's handler against the in-memory store, is
//!   answered without a server error (what a first `cargo lambda invoke` of it
//!   answers, before the placeholders are replaced).
//! - All of them in order, with the placeholders (session id, visitor token)
//!   replaced by real ones, make a working chat: every answer is a success and
//!   no sender receives an error frame.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayV2httpRequest, ApiGatewayV2httpResponse, ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body;
use chat_core::domain::AgentRole;
use eurochat_tests::backends::{Backend, Memory};
use eurochat_tests::chat::{Chat, SITE, subprotocols};
use serde_json::{Value, json};

/// The function an event is for, by its crate's directory under `functions/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    CreateSession,
    Connect,
    Message,
    Disconnect,
    GdprExport,
    GdprDelete,
    Retention,
    Web,
}

impl Function {
    fn crate_dir(self) -> &'static str {
        match self {
            Self::CreateSession => "create-session",
            Self::Connect => "connect",
            Self::Message => "message",
            Self::Disconnect => "disconnect",
            Self::GdprExport => "gdpr-export",
            Self::GdprDelete => "gdpr-delete",
            Self::Retention => "retention",
            Self::Web => "web",
        }
    }
}

/// A frame from a connection the store does not know: answered with this error frame.
const UNKNOWN_CONNECTION: Option<&str> = Some("unauthorized");

/// Every fixture: its file, its function, and what the handler answers to it
/// alone (status; for `message`, the error code of the frame sent back, if any;
/// for `retention`, 200 for a successful run).
#[rustfmt::skip]
const FIXTURES: &[(&str, Function, u16, Option<&str>)] = &[
    // A new session of the site `acme` from its origin.
    ("http-post-sessions.json", Function::CreateSession, 201, None),
    // A handshake without a token: refused.
    ("ws-connect.json", Function::Connect, 401, None),
    // Visitor frames on connection KwSY9dTAliACEfQ=, agent frames on KwSbXeFsliACF9w=;
    // alone, neither connection is known: an `unauthorized` error frame.
    ("ws-message.json", Function::Message, 200, UNKNOWN_CONNECTION),
    ("ws-message-typing.json", Function::Message, 200, UNKNOWN_CONNECTION),
    ("ws-message-history.json", Function::Message, 200, UNKNOWN_CONNECTION),
    ("ws-message-mark-read.json", Function::Message, 200, UNKNOWN_CONNECTION),
    ("ws-message-list-conversations.json", Function::Message, 200, UNKNOWN_CONNECTION),
    ("ws-message-join.json", Function::Message, 200, UNKNOWN_CONNECTION),
    ("ws-message-agent-reply.json", Function::Message, 200, UNKNOWN_CONNECTION),
    ("ws-message-delete-conversation.json", Function::Message, 200, UNKNOWN_CONNECTION),
    ("ws-disconnect.json", Function::Disconnect, 200, None),
    // Bearer: a placeholder visitor token, refused until replaced.
    ("http-post-gdpr-export.json", Function::GdprExport, 401, None),
    ("http-post-gdpr-erase.json", Function::GdprDelete, 401, None),
    // What the template's schedule sends, and a dry run.
    ("schedule-retention.json", Function::Retention, 200, None),
    ("schedule-retention-dry-run.json", Function::Retention, 200, None),
    // The hosted front end, and a CORS preflight from acme's page.
    ("http-get-widget.json", Function::Web, 200, None),
    ("http-get-console.json", Function::Web, 200, None),
    ("http-options-preflight.json", Function::Web, 204, None),
];

/// The session id in the fixtures that name a conversation (agent frames).
const PLACEHOLDER_SESSION: &str = "ses_0123456789abcdef0123456789abcdef";
/// The visitor token in the fixtures' `Authorization` headers.
const PLACEHOLDER_TOKEN: &str = "vt1.ses_0123456789abcdef0123456789abcdef.REPLACE-with-the-token-from-POST-v1-sessions";
/// The visitor's connection in the visitor fixtures.
const VISITOR_CONN: &str = "KwSY9dTAliACEfQ=";
/// The agent's connection in the agent fixtures.
const AGENT_CONN: &str = "KwSbXeFsliACF9w=";

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(events_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("tests/events")
        .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect()
}

#[test]
fn every_fixture_is_listed_and_every_function_has_one() {
    let listed: BTreeSet<String> = FIXTURES.iter().map(|f| f.0.to_owned()).collect();
    assert_eq!(
        json_files(&events_dir()),
        listed,
        "every file in tests/events/ is listed in FIXTURES, and every listed one exists"
    );
    let functions_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let crates: BTreeSet<String> = std::fs::read_dir(&functions_dir)
        .expect("functions/")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let covered: BTreeSet<String> = FIXTURES.iter().map(|f| f.1.crate_dir().to_owned()).collect();
    let missing: Vec<&String> = crates.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "functions without a fixture in tests/events/ (and without a handler check here): {missing:?}"
    );
    for dir in &covered {
        assert!(
            crates.contains(dir),
            "fixtures for {dir}, which is not under functions/"
        );
    }
}

/// Every field of `original` is in `parsed` (the event re-serialized after
/// deserialization) with the same value. Header names compare case-insensitively
/// (`http::HeaderMap` lowercases them); empty objects and arrays may be left out.
fn lost_fields(original: &Value, parsed: &Value, path: &str, headers: bool, lost: &mut Vec<String>) {
    match (original, parsed) {
        (Value::Object(o), Value::Object(p)) => {
            for (k, v) in o {
                let found = if headers {
                    p.iter().find(|(pk, _)| pk.eq_ignore_ascii_case(k)).map(|(_, pv)| pv)
                } else {
                    p.get(k)
                };
                let path = format!("{path}.{k}");
                match found {
                    Some(pv) => lost_fields(
                        v,
                        pv,
                        &path,
                        matches!(k.as_str(), "headers" | "multiValueHeaders"),
                        lost,
                    ),
                    None if matches!(v, Value::Object(m) if m.is_empty()) => {}
                    None if matches!(v, Value::Array(a) if a.is_empty()) => {}
                    None => lost.push(path),
                }
            }
        }
        (o, p) if o == p => {}
        _ => lost.push(format!("{path} (value changed)")),
    }
}

/// Deserializes a fixture as `lambda_runtime` does with an invocation's body, and
/// checks the event type kept every field (`tests/tests` has no `serde` of its
/// own to name the traits, hence a macro).
macro_rules! check_round_trip {
    ($ty:ty, $name:expr) => {{
        let name: &str = $name;
        let bytes = read(name);
        let event: $ty = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let original: Value = serde_json::from_slice(&bytes).expect("JSON");
        let parsed = serde_json::to_value(&event).expect("serialize");
        let mut lost = Vec::new();
        lost_fields(&original, &parsed, "", false, &mut lost);
        assert!(lost.is_empty(), "{name}: fields the event type drops: {lost:?}");
    }};
}

#[test]
fn fixtures_deserialize_as_lambda_runtime_does_and_lose_no_field() {
    for &(name, function, ..) in FIXTURES {
        match function {
            Function::CreateSession | Function::GdprExport | Function::GdprDelete | Function::Web => {
                check_round_trip!(ApiGatewayV2httpRequest, name);
            }
            Function::Connect | Function::Message | Function::Disconnect => {
                check_round_trip!(ApiGatewayWebsocketProxyRequest, name);
            }
            Function::Retention => {
                let event: Value = serde_json::from_slice(&read(name)).expect("JSON");
                retention::Options::from_event(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}

#[test]
fn the_retention_fixture_is_what_the_schedule_sends() {
    let template: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).expect("template"),
    )
    .expect("template.yaml parses");
    let input = template["Resources"]["RetentionFunction"]["Properties"]["Events"]["Schedule"]["Properties"]["Input"]
        .as_str()
        .expect("the retention schedule has an Input");
    let sent: Value = serde_json::from_str(input).expect("the schedule's Input is JSON");
    let fixture: Value = serde_json::from_slice(&read("schedule-retention.json")).expect("JSON");
    assert_eq!(fixture, sent, "schedule-retention.json is the schedule's Input");
}

fn http_status(r: &ApiGatewayV2httpResponse) -> u16 {
    u16::try_from(r.status_code).unwrap_or(0)
}

fn ws_status(r: &ApiGatewayProxyResponse) -> u16 {
    u16::try_from(r.status_code).unwrap_or(0)
}

fn http_json(r: &ApiGatewayV2httpResponse) -> Value {
    match &r.body {
        Some(Body::Text(t)) => serde_json::from_str(t).expect("JSON body"),
        _ => Value::Null,
    }
}

/// The fixture's text with the placeholders replaced.
fn event_text(name: &str, session: Option<&str>, token: Option<&str>) -> String {
    let mut text = String::from_utf8(read(name)).expect("UTF-8");
    if let Some(t) = token {
        text = text.replace(PLACEHOLDER_TOKEN, t);
    }
    if let Some(s) = session {
        text = text.replace(PLACEHOLDER_SESSION, s);
    }
    text
}

async fn create_session(chat: &Chat<Memory>, text: &str) -> ApiGatewayV2httpResponse {
    let deps = create_session::Deps {
        store: chat.backend.store(),
        clock: &chat.clock,
        config: &chat.config(),
    };
    create_session::handle(serde_json::from_str(text).expect("event"), &deps).await
}

async fn connect(chat: &Chat<Memory>, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let deps = connect::Deps {
        store: chat.backend.store(),
        clock: &chat.clock,
        config: &chat.config(),
    };
    connect::handle(event, &deps).await
}

/// The `web` function as the template configures it (the stack's WebSocket URL).
fn web(text: &str) -> ApiGatewayV2httpResponse {
    let deps = web::Deps {
        ws_url: web::PublicWsUrl::parse("wss://abc123.execute-api.eu-central-1.amazonaws.com/prod").expect("URL"),
    };
    web::handle(&serde_json::from_str(text).expect("event"), &deps)
}

async fn disconnect(chat: &Chat<Memory>, text: &str) -> ApiGatewayProxyResponse {
    disconnect::handle(
        serde_json::from_str(text).expect("event"),
        &disconnect::Deps {
            store: chat.backend.store(),
        },
    )
    .await
}

async fn export(chat: &Chat<Memory>, text: &str) -> ApiGatewayV2httpResponse {
    let deps = gdpr_export::Deps {
        store: chat.backend.store(),
        clock: &chat.clock,
        config: &chat.config(),
        page_bytes: chat_core::gdpr::EXPORT_PAGE_BYTES,
    };
    gdpr_export::handle(serde_json::from_str(text).expect("event"), &deps).await
}

async fn erase(chat: &Chat<Memory>, text: &str) -> ApiGatewayV2httpResponse {
    let deps = gdpr_delete::Deps {
        store: chat.backend.store(),
        gateway: chat.gateway.as_ref(),
        clock: &chat.clock,
        config: &chat.config(),
    };
    gdpr_delete::handle(serde_json::from_str(text).expect("event"), &deps).await
}

/// A message-route event; returns its status and the frames its sender received.
async fn message(chat: &Chat<Memory>, text: &str) -> (u16, Vec<Value>) {
    let event: Value = serde_json::from_str(text).expect("event");
    let conn = event["requestContext"]["connectionId"]
        .as_str()
        .expect("connection id")
        .to_owned();
    let before = chat.frames(&conn).len();
    let status = chat.message_event(event).await;
    (status, chat.frames(&conn).split_off(before))
}

#[tokio::test]
async fn each_fixture_alone_is_answered_without_a_server_error() {
    for &(name, function, expected, frame_error) in FIXTURES {
        let chat = Chat::new(Memory::default()).await;
        let text = String::from_utf8(read(name)).expect("UTF-8");
        let (status, frames) = match function {
            Function::CreateSession => (http_status(&create_session(&chat, &text).await), vec![]),
            Function::Connect => (
                ws_status(&connect(&chat, serde_json::from_str(&text).expect("event")).await),
                vec![],
            ),
            Function::Message => message(&chat, &text).await,
            Function::Disconnect => (ws_status(&disconnect(&chat, &text).await), vec![]),
            Function::GdprExport => (http_status(&export(&chat, &text).await), vec![]),
            Function::GdprDelete => (http_status(&erase(&chat, &text).await), vec![]),
            Function::Retention => {
                let summary = chat.retention(serde_json::from_str(&text).expect("event")).await;
                assert!(summary.complete, "{name}: an empty table is covered in one run");
                (200, vec![])
            }
            Function::Web => (http_status(&web(&text)), vec![]),
        };
        assert!(status < 500, "{name}: {status}");
        assert_eq!(status, expected, "{name}");
        let codes: Vec<&str> = frames
            .iter()
            .filter(|f| f["type"] == "error")
            .filter_map(|f| f["code"].as_str())
            .collect();
        assert_eq!(
            codes,
            frame_error.into_iter().collect::<Vec<_>>(),
            "{name}: error frames"
        );
    }
}

/// Asserts a message fixture succeeded: 200 and no error frame to its sender.
async fn frame_ok(chat: &Chat<Memory>, name: &str, session: &str) -> Vec<Value> {
    let (status, frames) = message(chat, &event_text(name, Some(session), None)).await;
    assert_eq!(status, 200, "{name}");
    assert!(
        frames.iter().all(|f| f["type"] != "error"),
        "{name}: error frame to the sender: {frames:?}"
    );
    frames
}

#[tokio::test]
async fn the_fixtures_in_order_make_a_working_chat() {
    let chat = Chat::new(Memory::default()).await;

    // The page loads the widget, whose first call is preceded by a preflight.
    let widget = web(&event_text("http-get-widget.json", None, None));
    assert_eq!(http_status(&widget), 200);
    match &widget.body {
        Some(Body::Text(js)) => assert!(js.contains("wss://abc123.execute-api.eu-central-1.amazonaws.com/prod")),
        other => panic!("widget.js body: {other:?}"),
    }
    let preflight = web(&event_text("http-options-preflight.json", None, None));
    assert_eq!(http_status(&preflight), 204);
    assert_eq!(
        preflight
            .headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://acme.example")
    );
    assert_eq!(http_status(&web(&event_text("http-get-console.json", None, None))), 200);

    // POST /v1/sessions as the fixture has it: a new session of acme.
    let created = create_session(&chat, &event_text("http-post-sessions.json", None, None)).await;
    assert_eq!(http_status(&created), 201);
    let body = http_json(&created);
    let token = body["token"].as_str().expect("token").to_owned();
    let session = body["sessionId"].as_str().expect("session id").to_owned();

    // $connect with the visitor's token offered as the subprotocol, as the widget does.
    let mut hello: Value = serde_json::from_slice(&read("ws-connect.json")).expect("JSON");
    hello["headers"]["Sec-WebSocket-Protocol"] = json!(subprotocols(&token));
    let r = connect(&chat, serde_json::from_value(hello).expect("event")).await;
    assert_eq!(ws_status(&r), 200, "ws-connect.json with the token");
    assert_eq!(
        chat.connect(AGENT_CONN, &chat.agent_token(SITE, "alice", AgentRole::Admin))
            .await,
        200
    );

    let ack = frame_ok(&chat, "ws-message.json", &session).await;
    assert_eq!(ack.last().expect("ack")["type"], "ack");
    frame_ok(&chat, "ws-message-typing.json", &session).await;
    let list = frame_ok(&chat, "ws-message-list-conversations.json", &session).await;
    assert_eq!(list.last().expect("list")["items"][0]["sessionId"], json!(session));
    let joined = frame_ok(&chat, "ws-message-join.json", &session).await;
    assert_eq!(joined.last().expect("joined")["type"], "joined");
    frame_ok(&chat, "ws-message-agent-reply.json", &session).await;
    let history = frame_ok(&chat, "ws-message-history.json", &session).await;
    assert_eq!(
        history.last().expect("history")["messages"].as_array().map(Vec::len),
        Some(2),
        "the visitor's message and the agent's reply"
    );
    let read_marker = frame_ok(&chat, "ws-message-mark-read.json", &session).await;
    assert_eq!(read_marker.last().expect("read")["type"], "read");

    let exported = export(&chat, &event_text("http-post-gdpr-export.json", None, Some(&token))).await;
    assert_eq!(http_status(&exported), 200, "{}", http_json(&exported));
    assert_eq!(http_json(&exported)["sessions"][0]["messageCount"], 2);

    assert_eq!(
        ws_status(&disconnect(&chat, &event_text("ws-disconnect.json", None, None)).await),
        200
    );
    let deleted = frame_ok(&chat, "ws-message-delete-conversation.json", &session).await;
    assert_eq!(deleted.last().expect("deleted")["type"], "deleted");

    // A second visitor erases themself.
    let created = create_session(&chat, &event_text("http-post-sessions.json", None, None)).await;
    let token = http_json(&created)["token"].as_str().expect("token").to_owned();
    let erased = erase(&chat, &event_text("http-post-gdpr-erase.json", None, Some(&token))).await;
    assert_eq!(http_status(&erased), 200, "{}", http_json(&erased));
    assert!(http_json(&erased)["erased"]["session"].as_u64() >= Some(1));

    for name in ["schedule-retention-dry-run.json", "schedule-retention.json"] {
        let summary = chat.retention(serde_json::from_slice(&read(name)).expect("JSON")).await;
        assert!(summary.complete, "{name}");
    }
    for conn in [VISITOR_CONN, AGENT_CONN] {
        let errors: Vec<Value> = chat.frames(conn).into_iter().filter(|f| f["type"] == "error").collect();
        assert!(errors.is_empty(), "{conn} received error frames: {errors:?}");
    }
}
