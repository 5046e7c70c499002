//! No personal data in logs: a whole flow (site, session with IP and pre-chat
//! data, tokens, connections, messages, retries, rate limits, failures mapped
//! to client errors, lookups, erasure) runs against each store with eurochat's
//! production JSON subscriber at TRACE level, and the captured log is searched
//! for every personal value the flow handled.

use std::time::Duration;

use chat_core::auth::{AgentTokenKeys, PresentedVisitorToken, Pseudonymizer, issue_visitor_token};
use chat_core::domain::IpPolicy;
use chat_core::domain::*;
use chat_core::error::ApiError;
use chat_core::policy::RateLimit;
use chat_core::storage::SiteStore as _;
use chat_core::storage::*;
use chat_core::telemetry::{CapturedLogs, filter_at, json_subscriber_with};
use eurochat_tests::backends::{Backend, Dynamo, Memory};
use eurochat_tests::chat::subprotocols;
use eurochat_tests::fixtures::*;

const TEXT: &str = "my parcel code is 4471-XQ";
const IP: &str = "198.51.100.23";
const EMAIL: &str = "Zelda.Quartermain@Mail.Example";
const NAME: &str = "Zelda Quartermain";

struct Secrets(Vec<String>);

async fn full_flow<B: Backend>(b: &B) -> Secrets {
    let st = b.store();
    let keys = AgentTokenKeys::new(&[3; 32], None);
    let pseudo = Pseudonymizer::new(&[4; 32]);
    let mut site = site("acme");
    site.retention.ip_policy = IpPolicy::Full;
    st.put_site(&site).await.unwrap();
    let agent_id = AgentId::parse("alice").unwrap();

    // A visitor opens a session with IP, user agent and a pre-chat form.
    let mut s = session(&site, T0);
    let token = issue_visitor_token(&s.id);
    s.token_hash = token.hash.clone();
    s.ip = site
        .retention
        .ip_policy
        .apply(IP.parse().unwrap())
        .map(|address| StoredIp {
            address,
            recorded_at: T0,
        });
    let email = Email::parse(EMAIL).unwrap();
    s.email_lookup = Some(pseudo.email_lookup(&site.id, &email));
    s.prechat = Some(PreChat {
        name: Some(PersonName::parse(NAME).unwrap()),
        email: Some(email.clone()),
        consent: Consent {
            purpose: "support-follow-up".into(),
            policy_version: "2026-01".into(),
            given_at: T0,
        },
    });
    st.create_session(&s).await.unwrap();
    tracing::info!(site = %site.id, session = ?s, "session created");
    let presented = PresentedVisitorToken::parse(&token.token).unwrap();
    presented.verify(&s.token_hash, s.token_expires_at, T0).unwrap();
    st.touch_session(
        &s.id,
        SessionTouch {
            now: at_min(1),
            renew_token: true,
        },
    )
    .await
    .unwrap();

    // Visitor and agent connect; the agent joins.
    let v = visitor_conn("VISITOR1=", &s, T0);
    let a = agent_conn("AGENT1=", &site, "alice", T0);
    st.put_connection(&v).await.unwrap();
    st.put_connection(&a).await.unwrap();
    st.join_conversation(&a.id, &s.id, at_min(1)).await.unwrap();
    let agent_token = keys.mint(&site.id, &agent_id, AgentRole::Admin, T0, Duration::from_secs(3600));
    keys.verify(&agent_token, T0).unwrap();

    // Messages, a retry, a rate-limited one, and failures mapped for the client.
    let rate = Some(RateLimit {
        limit: 2,
        window: Duration::from_secs(60),
    });
    let m = visitor_msg(&s, "c1", TEXT);
    tracing::debug!(message = ?m.text, "appending");
    st.append_message(&m, at_min(2), rate).await.unwrap();
    st.append_message(&m, at_min(2), rate).await.unwrap();
    st.append_message(&agent_msg(&s, "alice", "a1", "we will check"), at_min(2), rate)
        .await
        .unwrap();
    let limited = st
        .append_message(&visitor_msg(&s, "c2", TEXT), at_min(2), rate)
        .await
        .unwrap_err();
    // Conversions have no side effect; handlers log each error where they finish.
    ApiError::from(limited).log("message refused");
    ApiError::from(StoreError::Backend {
        operation: "PutItem",
        code: Some("InternalServerError".into()),
    })
    .log("store failure");
    ApiError::from(StoreError::Throttled { operation: "Query" }).log("store throttled");
    ApiError::from(Email::parse("not an email, Zelda").unwrap_err()).log("session refused");
    ApiError::from(keys.verify("at1.garbage.sig", T0).unwrap_err()).log("connection refused");

    // Reads an agent and a GDPR request would make, then the erasure.
    st.list_messages(&s.id, 0, 50).await.unwrap();
    st.list_conversations(&site.id, None, None, 10, at_min(3))
        .await
        .unwrap();
    st.sessions_by_email(&site.id, s.email_lookup.as_deref().unwrap())
        .await
        .unwrap();
    st.sessions_of_visitor(&site.id, &s.visitor_id).await.unwrap();
    st.conversation_connections(&s.id, at_min(3)).await.unwrap();
    st.erase_session(&s.id, at_min(3)).await.unwrap();

    let secret_part = token.token.rsplit('.').next().unwrap().to_owned();
    Secrets(vec![
        TEXT.into(),
        "4471-XQ".into(),
        IP.into(),
        "198.51.100".into(),
        EMAIL.into(),
        EMAIL.to_lowercase(),
        "Quartermain".into(),
        NAME.into(),
        token.token.clone(),
        secret_part,
        token.hash.clone(),
        agent_token.rsplit('.').next().unwrap().to_owned(),
        s.id.to_string(),
        s.visitor_id.to_string(),
    ])
}

fn assert_clean(logs: &CapturedLogs, secrets: &Secrets) {
    let text = logs.text();
    assert!(
        text.contains("session erased"),
        "the capture saw the flow's own log lines:\n{text}"
    );
    assert!(
        text.contains("store failure"),
        "and the internal-error log line:\n{text}"
    );
    for secret in &secrets.0 {
        assert!(
            !text.contains(secret.as_str()),
            "personal value {secret:?} appears in the logs:\n{text}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn memory_flow_logs_nothing_personal() {
    let logs = CapturedLogs::new();
    let _guard = tracing::subscriber::set_default(json_subscriber_with(logs.clone(), filter_at("trace")));
    let secrets = full_flow(&Memory::default()).await;
    assert_clean(&logs, &secrets);
}

#[tokio::test(flavor = "current_thread")]
async fn dynamodb_flow_logs_nothing_personal() {
    let backend = Dynamo::new().await;
    let logs = CapturedLogs::new();
    let _guard = tracing::subscriber::set_default(json_subscriber_with(logs.clone(), filter_at("trace")));
    let secrets = full_flow(&backend).await;
    assert_clean(&logs, &secrets);
}

#[test]
fn the_check_would_catch_a_leak() {
    // Guards the guard: a log line carrying a personal value is caught.
    let logs = CapturedLogs::new();
    tracing::subscriber::with_default(json_subscriber_with(logs.clone(), filter_at("trace")), || {
        tracing::info!("session erased");
        tracing::error!(ip = IP, "store failure");
    });
    let leaked = std::panic::catch_unwind(|| assert_clean(&logs, &Secrets(vec![IP.into()])));
    assert!(leaked.is_err());
}

/// The same proof through the real handlers: session creation with a pre-chat form,
/// connects, messages (also refused ones), history, agent actions, disconnects.
async fn handler_flow<B: Backend>(backend: B) -> (eurochat_tests::chat::Chat<B>, Secrets) {
    use eurochat_tests::chat::{Chat, ORIGIN};
    use serde_json::json;

    let chat = Chat::new(backend).await;
    let mut site = chat
        .backend
        .store()
        .get_site(&SiteId::parse("acme").unwrap())
        .await
        .unwrap()
        .unwrap();
    site.retention.ip_policy = IpPolicy::Full;
    chat.backend.store().put_site(&site).await.unwrap();
    let consent = json!({"purpose": "support-follow-up", "policyVersion": "2026-01"});
    let r = chat
        .post_session(
            &json!({"siteId": "acme", "prechat": {"name": NAME, "email": EMAIL, "consent": consent}}),
            &[("user-agent", "Mozilla/5.0 ZeldaBrowser")],
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let session_id = r.body["sessionId"].as_str().unwrap().to_owned();
    let visitor_id = r.body["visitorId"].as_str().unwrap().to_owned();
    assert_eq!(
        chat.connect_event(
            "V1=",
            &[],
            &[("Origin", ORIGIN), ("Sec-WebSocket-Protocol", &subprotocols(&token))],
            IP
        )
        .await
        .status_code,
        200
    );
    let agent = chat.agent_token("acme", "alice", AgentRole::Admin);
    assert_eq!(chat.connect_from("A1=", &agent, ORIGIN).await, 200);
    chat.send(
        "V1=",
        json!({"action": "sendMessage", "clientMsgId": "c1", "text": TEXT}),
    )
    .await;
    chat.send(
        "V1=",
        json!({"action": "sendMessage", "clientMsgId": "c1", "text": TEXT}),
    )
    .await;
    chat.send(
        "V1=",
        json!({"action": "sendMessage", "clientMsgId": "c2", "text": format!("{TEXT}\u{7}")}),
    )
    .await;
    chat.send(
        "V1=",
        json!({"action": "sendMessage", "clientMsgId": "c3", "text": TEXT.repeat(500)}),
    )
    .await;
    chat.send_raw(
        "V1=",
        &format!("{{\"action\":\"sendMessage\",\"text\":\"{TEXT}\""),
        false,
    )
    .await;
    chat.send("A1=", json!({"action": "join", "sessionId": session_id}))
        .await;
    chat.send("A1=", json!({"action": "sendMessage", "sessionId": session_id, "clientMsgId": "a1", "text": "Dear Zelda Quartermain"})).await;
    chat.send("A1=", json!({"action": "history", "sessionId": session_id}))
        .await;
    chat.send("A1=", json!({"action": "listConversations"})).await;
    chat.send("V1=", json!({"action": "markRead", "seq": 2})).await;
    chat.send("V1=", json!({"action": "typing", "isTyping": true})).await;
    chat.connect_event(
        "X1=",
        &[],
        &[
            ("Origin", "https://evil.example"),
            ("Sec-WebSocket-Protocol", &subprotocols(&token)),
        ],
        IP,
    )
    .await;
    // A token in the URL is refused, and the refusal does not log it either.
    chat.connect_event("X2=", &[("token", &token)], &[("Origin", ORIGIN)], IP)
        .await;
    chat.post_session(&json!({"siteId": "acme", "token": format!("{token}x")}), &[], &[])
        .await;
    // GDPR and retention paths log too.
    chat.export(Some(&agent), &json!({"email": EMAIL}), 4 * 1024 * 1024)
        .await;
    chat.export(Some(&token), &json!({}), 4 * 1024 * 1024).await;
    chat.export(Some(&token), &json!({"visitorId": visitor_id}), 4 * 1024 * 1024)
        .await;
    // Every rate limit refuses at least once: exports per token holder, connects and
    // session creation per IP. Each refusal is a security event with a keyed IP tag.
    for _ in 0..21 {
        chat.export(Some(&token), &json!({}), 4 * 1024 * 1024).await;
    }
    for i in 0..31 {
        chat.send(
            "V1=",
            json!({"action": "sendMessage", "clientMsgId": format!("f{i}"), "text": TEXT}),
        )
        .await;
    }
    for i in 0..21 {
        let garbage = subprotocols("garbage");
        chat.connect_event(
            &format!("R{i}="),
            &[],
            &[("Origin", ORIGIN), ("Sec-WebSocket-Protocol", &garbage)],
            IP,
        )
        .await;
    }
    for _ in 0..11 {
        chat.post_session_from(&json!({"siteId": "acme"}), IP).await;
    }
    chat.retention(json!({"dryRun": true})).await;
    chat.erase(Some(&agent), &json!({"sessionId": session_id})).await;
    chat.retention(json!({})).await;
    chat.disconnect("V1=").await;
    let secrets = Secrets(vec![
        TEXT.into(),
        IP.into(),
        EMAIL.into(),
        EMAIL.to_lowercase(),
        "Quartermain".into(),
        "ZeldaBrowser".into(),
        token.clone(),
        token.rsplit('.').next().unwrap().to_owned(),
        agent.rsplit('.').next().unwrap().to_owned(),
        session_id,
        visitor_id,
    ]);
    (chat, secrets)
}

fn assert_handler_logs_clean(logs: &CapturedLogs, secrets: &Secrets) {
    let text = logs.text();
    for expected in [
        "frame handled",
        "frame refused",
        "connected",
        "connection refused",
        "session response",
        "message delivered",
        "\"reason\":\"rate_limited\",\"route\":\"gdpr_export\"",
        "\"reason\":\"rate_limited\",\"route\":\"connect\"",
        "\"reason\":\"rate_limited\",\"route\":\"create_session\"",
        "\"reason\":\"rate_limited\",\"route\":\"frame\"",
        "\"ip_tag\":\"",
    ] {
        assert!(text.contains(expected), "the capture saw {expected:?}:\n{text}");
    }
    for secret in &secrets.0 {
        assert!(
            !text.contains(secret.as_str()),
            "personal value {secret:?} appears in the logs:\n{text}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn memory_handler_flow_logs_nothing_personal() {
    let logs = CapturedLogs::new();
    let _guard = tracing::subscriber::set_default(json_subscriber_with(logs.clone(), filter_at("trace")));
    let (_chat, secrets) = handler_flow(Memory::default()).await;
    assert_handler_logs_clean(&logs, &secrets);
}

#[tokio::test(flavor = "current_thread")]
async fn dynamodb_handler_flow_logs_nothing_personal() {
    let backend = Dynamo::new().await;
    let logs = CapturedLogs::new();
    let _guard = tracing::subscriber::set_default(json_subscriber_with(logs.clone(), filter_at("trace")));
    let (_chat, secrets) = handler_flow(backend).await;
    assert_handler_logs_clean(&logs, &secrets);
}

/// GIVEN the local gateway logging at TRACE WHEN a visitor from 127.0.0.77 fills the
/// pre-chat form, chats over a real WebSocket, exports and erases themselves THEN the
/// gateway's and the handlers' logs hold none of their values. On a current-thread
/// runtime every task the gateway spawns logs into this test's capture.
#[tokio::test(flavor = "current_thread")]
async fn local_gateway_logs_nothing_personal() {
    use eurochat_tests::wire;
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let logs = CapturedLogs::new();
    let _guard = tracing::subscriber::set_default(json_subscriber_with(logs.clone(), filter_at("trace")));
    let g = local_gateway::start(local_gateway::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let visitor_ip: std::net::IpAddr = "127.0.0.77".parse().unwrap();
    let origin = g.base_url();
    let consent = serde_json::json!({"purpose": "support-follow-up", "policyVersion": "2026-01"});
    let r = wire::post(
        g.addr,
        Some(visitor_ip),
        "/v1/sessions",
        &origin,
        None,
        &serde_json::json!({"siteId": g.site, "prechat": {"name": NAME, "email": EMAIL, "consent": consent}}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let (mut socket, _) = wire::connect(g.addr, Some(visitor_ip), &g.ws_url(), &origin, &token)
        .await
        .unwrap();
    let frame = serde_json::json!({"action": "sendMessage", "clientMsgId": "m-1", "text": TEXT});
    socket.send(Message::text(frame.to_string())).await.unwrap();
    assert_eq!(wire::next_json(&mut socket).await["type"], "ack");
    socket.send(Message::text("{\"action\":\"nope\"}")).await.unwrap();
    assert_eq!(wire::next_json(&mut socket).await["code"], "unknown_action");
    let export = wire::post(
        g.addr,
        Some(visitor_ip),
        "/v1/gdpr/export",
        &origin,
        Some(&token),
        &serde_json::json!({}),
    )
    .await;
    let exported = export.body.to_string();
    assert!(exported.contains(TEXT), "the export holds the text");
    assert!(
        exported.contains("127.0.0.0/24"),
        "the gateway reported the visitor's source IP"
    );
    let erased = wire::post(
        g.addr,
        Some(visitor_ip),
        "/v1/gdpr/erase",
        &origin,
        Some(&token),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(erased.status, 200);
    assert_eq!(wire::close_code(&mut socket).await, Some(1000));
    let agent_token = g.agent_token.clone();
    g.stop().await.unwrap();

    let text = logs.text();
    for expected in [
        "local gateway started",
        "connected",
        "frame refused",
        "session response",
    ] {
        assert!(text.contains(expected), "the capture saw {expected:?}:\n{text}");
    }
    let session_id = r.body["sessionId"].as_str().unwrap();
    let secret = token.rsplit('.').next().unwrap();
    for value in [
        TEXT,
        EMAIL,
        NAME,
        "127.0.0.77",
        "127.0.0.0/24",
        token.as_str(),
        secret,
        session_id,
        &agent_token,
    ] {
        assert!(
            !text.contains(value),
            "personal value {value:?} appears in the logs:\n{text}"
        );
    }
}
