//! Proofs that erasure is complete and resumable: on DynamoDB (moto), read
//! independently of the store code through the raw DynamoDB API; the resume
//! proof also on the in-memory store.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chat_core::clock::Timestamp;
use chat_core::domain::IpPolicy;
use chat_core::domain::{AgentRole, Connection, ConnectionId, ConversationStatus, Session, SessionId, SiteId};
use chat_core::gateway::RecordingGateway;
use chat_core::gdpr;
use chat_core::storage::*;
use eurochat_tests::backends::{Backend, Dynamo};
use eurochat_tests::chat::{Chat, SITE};
use serde_json::json;

/// Every string and number in an attribute value, recursively.
fn texts(v: &AttributeValue, out: &mut Vec<String>) {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => out.push(s.clone()),
        AttributeValue::Ss(l) | AttributeValue::Ns(l) => out.extend(l.iter().cloned()),
        AttributeValue::L(l) => l.iter().for_each(|x| texts(x, out)),
        AttributeValue::M(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            texts(x, out);
        }),
        _ => {}
    }
}

fn all_text(items: &[HashMap<String, AttributeValue>]) -> Vec<String> {
    let mut out = Vec::new();
    for item in items {
        for v in item.values() {
            texts(v, &mut out);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_erasure_an_independent_scan_finds_nothing_of_the_subject() {
    let chat = Chat::new(Dynamo::new().await).await;
    chat.update_site(|s| {
        s.retention.ip_policy = IpPolicy::Full;
    })
    .await;

    // The subject, from their own IP, with a pre-chat form, two tabs and a conversation.
    let mut e: serde_json::Value = serde_json::from_str(include_str!("../events/http-post-sessions.json")).unwrap();
    e["requestContext"]["http"]["sourceIp"] = json!("198.51.100.42");
    e["headers"]["user-agent"] = json!("Mozilla/5.0 ZeldaBrowser/9");
    let consent = json!({"purpose": "support-follow-up", "policyVersion": "2026-01"});
    e["body"] = json!(json!({"siteId": SITE, "prechat": {"name": "Zelda Quartermain", "email": "zelda.q@mail.example", "consent": consent}}).to_string());
    let r = chat.post_session_event(e).await;
    assert_eq!(r.status, 201);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let session_id = r.body["sessionId"].as_str().unwrap().to_owned();
    let visitor_id = r.body["visitorId"].as_str().unwrap().to_owned();
    for conn in ["Z1=", "Z2="] {
        assert_eq!(chat.connect(conn, &token).await, 200);
    }
    let agent = chat.agent_token(SITE, "alice", AgentRole::Admin);
    assert_eq!(chat.connect("A1=", &agent).await, 200);
    chat.send("A1=", json!({"action": "join", "sessionId": session_id}))
        .await;
    let texts_sent = [
        "my parcel code is 4471-XQ",
        "I live at 12 Quarry Lane",
        "call me on +33 6 12 34 56 78",
    ];
    for (i, t) in texts_sent.iter().enumerate() {
        chat.send(
            "Z1=",
            json!({"action": "sendMessage", "clientMsgId": format!("z{i}"), "text": t}),
        )
        .await;
    }
    chat.send("A1=", json!({"action": "sendMessage", "sessionId": session_id, "clientMsgId": "a1", "text": "Noted, Zelda, parcel 4471-XQ"})).await;
    chat.send("Z1=", json!({"action": "markRead", "seq": 4})).await;
    // Someone else, who must survive.
    let other = chat.visitor().await;
    assert_eq!(chat.connect("O1=", &other.token).await, 200);
    chat.send(
        "O1=",
        json!({"action": "sendMessage", "clientMsgId": "o1", "text": "unrelated"}),
    )
    .await;

    let token_hash = chat
        .backend
        .store()
        .session_any(&SessionId::parse(&session_id).unwrap())
        .await
        .unwrap()
        .unwrap()
        .token_hash;
    assert!(
        !all_text(&chat.backend.raw_items().await)
            .iter()
            .any(|t| t.contains(&token)),
        "the token itself is never stored"
    );
    let secrets: Vec<&str> = vec![
        &visitor_id,
        &session_id,
        &token_hash,
        "198.51.100.42",
        "Zelda",
        "Quartermain",
        "zelda.q@mail.example",
        "ZeldaBrowser",
        "4471-XQ",
        "Quarry Lane",
        "+33 6 12 34 56 78",
    ];
    let before = all_text(&chat.backend.raw_items().await);
    for s in &secrets {
        assert!(
            before.iter().any(|t| t.contains(s)),
            "the table held {s:?} before the erasure (the check can fail)"
        );
    }

    let r = chat.erase(Some(&agent), &json!({"visitorId": visitor_id})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let items = chat.backend.raw_items().await;
    let after = all_text(&items);
    for s in &secrets {
        let hits: Vec<&String> = after.iter().filter(|t| t.contains(s)).collect();
        assert!(hits.is_empty(), "{s:?} survives the erasure in {hits:?}");
    }
    assert!(
        after.iter().any(|t| t == "unrelated"),
        "the other visitor's data is still there"
    );
    let audits: Vec<_> = items
        .iter()
        .filter(|i| i.get("kind").and_then(|k| k.as_s().ok()).is_some_and(|k| k == "audit"))
        .collect();
    assert!(
        audits.iter().any(|a| a.get("subjectHash").is_some()),
        "only the audit record's hash remains"
    );
}

/// Fails the Nth erasure of a session once, after the wrapped store has done it, like a
/// Lambda timing out after some deletes went through.
struct FailOnce<'a, S> {
    inner: &'a S,
    fail_at: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl<S: ConversationStore> ConversationStore for FailOnce<'_, S> {
    async fn list_conversations(
        &self,
        site: &SiteId,
        status: Option<ConversationStatus>,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<Session>, StoreError> {
        self.inner.list_conversations(site, status, cursor, limit, now).await
    }
    async fn fence_session(&self, id: &SessionId, now: Timestamp) -> Result<bool, StoreError> {
        self.inner.fence_session(id, now).await
    }
    async fn erase_session(&self, id: &SessionId, now: Timestamp) -> Result<ErasedCounts, StoreError> {
        let left = self.fail_at.load(std::sync::atomic::Ordering::SeqCst);
        self.fail_at
            .store(left.saturating_sub(1), std::sync::atomic::Ordering::SeqCst);
        if left == 1 {
            return Err(StoreError::Throttled {
                operation: "BatchWriteItem",
            });
        }
        self.inner.erase_session(id, now).await
    }
}

#[async_trait]
impl<S: ConnectionStore> ConnectionStore for FailOnce<'_, S> {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        self.inner.put_connection(conn).await
    }
    async fn get_connection(&self, id: &ConnectionId, now: Timestamp) -> Result<Option<Connection>, StoreError> {
        self.inner.get_connection(id, now).await
    }
    async fn delete_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        self.inner.delete_connection(id).await
    }
    async fn join_conversation(
        &self,
        conn: &ConnectionId,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Connection, StoreError> {
        self.inner.join_conversation(conn, session, now).await
    }
    async fn conversation_connections(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Vec<Connection>, StoreError> {
        self.inner.conversation_connections(session, now).await
    }
    async fn agent_connections(&self, site: &SiteId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        self.inner.agent_connections(site, now).await
    }
}

/// Erases a three-session subject with the second session's erasure failing, then reruns.
/// `partial` first removes some of the first session's items behind the store's back, as
/// an earlier run that stopped part-way would have.
async fn interrupted_then_resumed<B: Backend>(chat: &Chat<B>, partial: impl AsyncFnOnce(&Session)) {
    let site = chat.site().await;
    let visitor = chat_core::domain::VisitorId::generate();
    let mut sessions = Vec::new();
    for i in 0..3u64 {
        let s = eurochat_tests::fixtures::session_of(&site, &visitor, chat.now());
        chat.backend.store().create_session(&s).await.unwrap();
        for j in 0..4 {
            let m = eurochat_tests::fixtures::visitor_msg(&s, &format!("m{i}{j}"), "words");
            chat.backend.store().append_message(&m, chat.now(), None).await.unwrap();
        }
        sessions.push(s);
    }
    partial(&sessions[0]).await;
    let store = chat.backend.store();
    let gateway = RecordingGateway::new();
    let flaky = FailOnce {
        inner: store,
        fail_at: std::sync::atomic::AtomicUsize::new(2),
    };
    let first = gdpr::erase_sessions(&flaky, &gateway, &sessions, chat.now()).await;
    assert_eq!(
        first,
        Err(StoreError::Throttled {
            operation: "BatchWriteItem"
        }),
        "a partial erasure is reported as a failure"
    );
    let left = store.sessions_of_visitor(&site.id, &visitor).await.unwrap();
    assert_eq!(left.len(), 2, "the failed sessions are still findable for the rerun");
    for s in &left {
        // Fenced before anything was deleted, and still fenced: nothing can be added meanwhile.
        assert!(s.erasing_since.is_some(), "an interrupted erasure stays fenced");
        assert_eq!(store.get_session(&s.id, chat.now()).await.unwrap(), None);
        let late = eurochat_tests::fixtures::visitor_msg(s, "late", "written between the two runs");
        assert_eq!(
            store.append_message(&late, chat.now(), None).await,
            Err(StoreError::NotFound)
        );
    }

    // The rerun (what the client's retry of POST /v1/gdpr/erase does) finishes the job.
    let rerun = gdpr::erase_sessions(store, &gateway, &left, chat.now()).await.unwrap();
    assert_eq!(rerun.0.get("session"), Some(&2));
    assert!(store.sessions_of_visitor(&site.id, &visitor).await.unwrap().is_empty());
    for s in &sessions {
        assert!(store.list_messages(&s.id, 0, 100).await.unwrap().messages.is_empty());
    }
    let again = gdpr::erase_sessions(store, &gateway, &sessions, chat.now())
        .await
        .unwrap();
    assert_eq!(again.total(), 0, "and a third run reports zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_erasure_is_an_error_and_a_rerun_finishes_it() {
    let chat = Chat::new(Dynamo::new().await).await;
    let store = chat.backend.0.clone();
    interrupted_then_resumed(&chat, async |first: &Session| {
        // Within one session: a previous run deleted some messages, then stopped before the session item.
        for seq in [1u64, 2] {
            store
                .client()
                .delete_item()
                .table_name(store.table())
                .key(keys::PK, AttributeValue::S(keys::session_pk(&first.id)))
                .key(keys::SK, AttributeValue::S(keys::msg_sk(seq)))
                .send()
                .await
                .unwrap();
        }
    })
    .await;
    let leftovers: Vec<String> = chat
        .backend
        .raw_items()
        .await
        .iter()
        .filter_map(|i| i.get("pk").and_then(|p| p.as_s().ok()).cloned())
        .filter(|pk| pk.starts_with("SESS#"))
        .collect();
    assert!(leftovers.is_empty(), "no session partition left at all: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_erasure_is_resumed_on_the_memory_store_too() {
    let chat = Chat::new(eurochat_tests::backends::Memory::default()).await;
    interrupted_then_resumed(&chat, async |_: &Session| {}).await;
    assert_eq!(chat.stored().await.get("session"), None);
}
