//! Property tests of the parser of untrusted input this function owns: client
//! frames. For any body (bytes, base64 or not, and JSON shapes built from the
//! real actions and field names with values of any type), the handler never
//! panics, answers the sender with exactly one frame, and a refusal carries a
//! documented error code and leaves the store as it was. The sender is an agent
//! (every action is open to it, so every payload reaches validation) of a site
//! with no conversation, so no frame can succeed in storing anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use base64::Engine as _;
use chat_core::api::client_frames::{self, ClientFrame};
use chat_core::api::json::parse_object;
use chat_core::clock::{ManualClock, Timestamp};
use chat_core::config::{Config, vars};
use chat_core::domain::RetentionPolicy;
use chat_core::domain::*;
use chat_core::gateway::RecordingGateway;
use chat_core::storage::{ConnectionStore, MemoryStore, SiteStore};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Every code a frame may be refused with (docs/protocol.md, "Errors").
const CODES: [&str; 9] = [
    "invalid_json",
    "unknown_action",
    "invalid_request",
    "payload_too_large",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "rate_limited",
];

/// Every answer type a frame may get.
const ANSWERS: [&str; 8] = [
    "hello",
    "ack",
    "history",
    "read",
    "conversations",
    "joined",
    "deleted",
    "error",
];

const T0: Timestamp = Timestamp::from_millis(1_795_400_000_000);

struct World {
    store: MemoryStore,
    gateway: Arc<RecordingGateway>,
    clock: ManualClock,
    config: Config,
}

async fn world() -> World {
    let store = MemoryStore::new();
    let site = SiteId::parse("acme").unwrap();
    store
        .put_site(&Site {
            id: site.clone(),
            name: "Acme".into(),
            allowed_origins: vec![],
            retention: RetentionPolicy::default(),
            agent_ip_allowlist: None,
            created_at: T0,
            updated_at: T0,
        })
        .await
        .unwrap();
    let agent = AgentId::parse("alice").unwrap();
    store
        .put_agent(&Agent {
            site_id: site.clone(),
            id: agent.clone(),
            display_name: "Alice".into(),
            role: AgentRole::Admin,
            active: true,
            created_at: T0,
            tokens_valid_after: None,
        })
        .await
        .unwrap();
    let conn = |id: &str, principal: Principal| Connection {
        id: ConnectionId::parse(id).unwrap(),
        site_id: site.clone(),
        principal,
        connected_at: T0,
        expires_at: T0.plus(Duration::from_secs(7200)),
    };
    store
        .put_connection(&conn(
            "A1=",
            Principal::Agent {
                agent_id: agent,
                role: AgentRole::Admin,
                token_exp: T0.epoch_seconds() + 3600,
                token_iat: T0.epoch_seconds() - 10,
            },
        ))
        .await
        .unwrap();
    let config = Config::from_lookup(|k| match k {
        vars::REGION => Some("eu-central-1".into()),
        vars::TABLE_NAME => Some("unused".into()),
        vars::AGENT_TOKEN_SECRET => Some("agent-token-secret-for-tests-only!".into()),
        vars::PSEUDONYM_KEY => Some("pseudonym-key-for-tests-only-xxxx".into()),
        _ => None,
    })
    .unwrap();
    World {
        store,
        gateway: Arc::new(RecordingGateway::new()),
        clock: ManualClock::at(T0),
        config,
    }
}

fn event(conn: &str, body: String, base64: bool) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(json!({
        "requestContext": {
            "routeKey": "$default",
            "messageId": "m",
            "eventType": "MESSAGE",
            "extendedRequestId": "r",
            "requestTime": "23/Nov/2026:02:24:30 +0000",
            "messageDirection": "IN",
            "connectedAt": 1_795_400_000_000_i64,
            "requestTimeEpoch": 1_795_400_000_000_i64,
            "connectionId": conn,
            "domainName": "abc123.execute-api.eu-central-1.amazonaws.com",
            "stage": "prod",
            "apiId": "abc123",
            "requestId": "r",
            "identity": {"sourceIp": "203.0.113.7"},
        },
        "body": body,
        "isBase64Encoded": base64,
    }))
    .unwrap()
}

fn counts(w: &World) -> BTreeMap<&'static str, usize> {
    w.store.item_counts()
}

/// Sends `body` from `conn` and checks the answer.
fn check(rt: &tokio::runtime::Runtime, w: &World, conn: &str, body: String, base64: bool) -> Result<(), TestCaseError> {
    let before = counts(w);
    let sent_before = w.gateway.frames_to(&ConnectionId::parse(conn).unwrap()).len();
    let deps = message::Deps {
        store: &w.store,
        gateways: &w.gateway,
        clock: &w.clock,
        config: &w.config,
    };
    let r = rt.block_on(message::handle(event(conn, body, base64), &deps));
    prop_assert_eq!(r.status_code, 200);
    let frames = w.gateway.frames_to(&ConnectionId::parse(conn).unwrap());
    let answers = &frames[sent_before..];
    // `typing` alone has no answer when it succeeds; it cannot here (no session exists).
    prop_assert_eq!(answers.len(), 1, "one answer: {:?}", answers);
    let a = &answers[0];
    let kind = a["type"].as_str().unwrap_or_default();
    prop_assert!(ANSWERS.contains(&kind), "answer type {}", a);
    if kind == "error" {
        let code = a["code"].as_str().unwrap_or_default();
        prop_assert!(CODES.contains(&code), "code {}", a);
        prop_assert_eq!(counts(w), before, "a refusal stores nothing");
    }
    Ok(())
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "ses_[0-9a-f]{32}".prop_map(Value::from),
        "[A-Za-z0-9._:-]{1,70}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 11] = [
    "sessionId",
    "clientMsgId",
    "text",
    "isTyping",
    "after",
    "limit",
    "seq",
    "status",
    "cursor",
    "ref",
    "action",
];

/// Objects shaped like frames: a real or made-up action, real field names, any values.
fn frame_shaped() -> impl Strategy<Value = Value> {
    let action = prop_oneof![
        prop::sample::select(client_frames::ACTIONS).prop_map(Value::from),
        any_json(),
    ];
    let fields = prop::collection::btree_map(prop::sample::select(&FIELDS[..]), any_json(), 0..6);
    (action, fields).prop_map(|(action, fields)| {
        let mut o: serde_json::Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        o.insert("action".into(), action);
        Value::Object(o)
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Reading a frame and validating its payload never panics, and every refusal is
    /// a stable code (with a field when it is `invalid_request` about a field).
    #[test]
    fn the_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), shaped in frame_shaped()) {
        for body in [bytes, shaped.to_string().into_bytes()] {
            let Ok(o) = parse_object(&body, 32 * 1024) else { continue };
            match client_frames::read(o) {
                Err(u) => prop_assert!(CODES.contains(&u.error.code.as_str())),
                Ok(i) => {
                    let refused = match i.frame {
                        ClientFrame::Hello(_) => None,
                        ClientFrame::SendMessage(f) => client_frames::SendMessage::try_from((f, 4096)).err(),
                        ClientFrame::Typing(f) => client_frames::Typing::try_from(f).err(),
                        ClientFrame::History(f) => client_frames::History::try_from(f).err(),
                        ClientFrame::MarkRead(f) => client_frames::MarkRead::try_from(f).err(),
                        ClientFrame::ListConversations(f) => client_frames::ListConversations::try_from(f).err(),
                        ClientFrame::Join(f) | ClientFrame::DeleteConversation(f) => {
                            client_frames::ConversationTarget::try_from(f).err()
                        }
                    };
                    if let Some(e) = refused {
                        prop_assert!(!e.field.is_empty() && !e.reason.is_empty());
                    }
                }
            }
        }
    }

    /// Raw bytes, as text or base64, from an agent and from an unknown connection.
    #[test]
    fn any_bytes_get_one_answer_and_refusals_store_nothing(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        base64 in any::<bool>(),
    ) {
        let rt = runtime();
        let w = rt.block_on(world());
        let body = if base64 {
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        for conn in ["A1=", "NOBODY="] {
            check(&rt, &w, conn, body.clone(), base64)?;
        }
    }

    /// JSON shaped like frames, from an agent (who may use every action, so every
    /// payload is validated) and from an unknown connection.
    #[test]
    fn any_frame_shape_gets_one_answer_and_refusals_store_nothing(frame in frame_shaped()) {
        let rt = runtime();
        let w = rt.block_on(world());
        for conn in ["A1=", "NOBODY="] {
            check(&rt, &w, conn, frame.to_string(), false)?;
        }
    }
}
