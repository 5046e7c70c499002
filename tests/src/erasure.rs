//! Erasure is a fence, then a sweep: proofs on both stores.
//!
//! - Store level: a fenced session refuses every write path and is invisible to
//!   every read for use, yet GDPR lookups still find it so a rerun can finish;
//!   an erasure resets a job checkpoint that names the session.
//! - Through the real handlers: writers and reconnecting clients hammer a
//!   conversation while it is erased (self-service, admin, `deleteConversation`,
//!   HTTP `scope: conversation`), many trials; after each, a raw read of every
//!   stored item finds no trace of the subject.
//!
//! [`erasure_suite!`](crate::erasure_suite) turns each case into a test for one backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chat_core::domain::*;
use chat_core::storage::*;
use serde_json::{Value, json};

use crate::backends::Backend;
use crate::chat::{Chat, ORIGIN, SITE};
use crate::fixtures::*;

/// Generates one `#[tokio::test]` per erasure case for the backend built by `$make`.
#[macro_export]
macro_rules! erasure_suite {
    ($make:expr) => {
        $crate::erasure_suite_cases!($make);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let backend = $make;
                $crate::erasure::$case(backend).await;
            }
        )*
    };
}

pub use cases::*;

/// The flows. Every `pub async fn` here is a case of [`erasure_suite!`](crate::erasure_suite),
/// listed once, by the attribute: a flow added here runs on every backend.
#[eurochat_test_macros::suite(erasure_suite)]
pub mod cases {
    use super::*;

    /// GIVEN a conversation with a visitor connection and a joined agent WHEN it is
    /// fenced THEN every write path answers `NotFound`, reads for use see nothing,
    /// GDPR lookups still find it, and the erasure then removes everything.
    pub async fn fenced_session_refuses_every_write<B: Backend>(b: B) {
        let st = b.store();
        let site = site("acme");
        st.put_site(&site).await.unwrap();
        let s = session(&site, T0);
        st.create_session(&s).await.unwrap();
        st.append_message(&visitor_msg(&s, "c1", "before the fence"), at_min(1), None)
            .await
            .unwrap();
        let v = visitor_conn("VISITOR1=", &s, T0);
        let a = agent_conn("AGENT1=", &site, "alice", T0);
        st.put_connection(&v).await.unwrap();
        st.put_connection(&a).await.unwrap();
        st.join_conversation(&a.id, &s.id, at_min(1)).await.unwrap();

        assert!(st.fence_session(&s.id, at_min(2)).await.unwrap());
        assert!(
            st.fence_session(&s.id, at_min(3)).await.unwrap(),
            "fencing again is harmless"
        );
        let now = at_min(3);
        let prechat = PreChat {
            name: Some(PersonName::parse("Late Writer").unwrap()),
            email: None,
            consent: Consent {
                purpose: "support".into(),
                policy_version: "1".into(),
                given_at: now,
            },
        };
        let touch = SessionTouch { now, renew_token: true };
        assert_eq!(st.get_session(&s.id, now).await.unwrap(), None);
        assert_eq!(
            st.append_message(&visitor_msg(&s, "c2", "after the fence"), now, None)
                .await,
            Err(StoreError::NotFound)
        );
        assert_eq!(
            st.append_message(&agent_msg(&s, "alice", "a1", "agent after the fence"), now, None)
                .await,
            Err(StoreError::NotFound)
        );
        assert_eq!(st.touch_session(&s.id, touch).await, Err(StoreError::NotFound));
        assert_eq!(
            st.set_prechat(&s.id, &prechat, None, now).await,
            Err(StoreError::NotFound)
        );
        assert_eq!(
            st.mark_read(&s.id, AuthorRole::Visitor, 1, now).await,
            Err(StoreError::NotFound)
        );
        assert_eq!(
            st.set_status(&s.id, ConversationStatus::Closed, now).await,
            Err(StoreError::NotFound)
        );
        assert_eq!(
            st.put_connection(&visitor_conn("VISITOR2=", &s, now)).await,
            Err(StoreError::NotFound),
            "a reconnect cannot land behind the sweep"
        );
        let b2 = agent_conn("AGENT2=", &site, "bob", now);
        st.put_connection(&b2).await.unwrap();
        assert_eq!(
            st.join_conversation(&b2.id, &s.id, now).await,
            Err(StoreError::NotFound)
        );
        assert!(
            st.list_conversations(&site.id, None, None, 10, now)
                .await
                .unwrap()
                .items
                .is_empty(),
            "agents no longer see it"
        );
        let found = st
            .session_any(&s.id)
            .await
            .unwrap()
            .expect("GDPR lookups still find it");
        assert_eq!(found.erasing_since, Some(at_min(2)), "the first fence's time stays");
        assert_eq!(
            st.sessions_of_visitor(&site.id, &s.visitor_id).await.unwrap().len(),
            1,
            "a rerun by visitor finds it"
        );

        let counts = st.erase_session(&s.id, now).await.unwrap();
        assert_eq!(counts.0.get("session"), Some(&1));
        assert_eq!(counts.0.get("message"), Some(&1));
        assert_eq!(counts.0.get("membership"), Some(&2));
        assert_eq!(counts.0.get("connection"), Some(&1));
        let left: Vec<String> = b
            .raw_texts()
            .await
            .into_iter()
            .filter(|t| t.contains(s.id.as_str()) || t.contains(s.visitor_id.as_str()))
            .collect();
        assert!(left.is_empty(), "{} left: {left:?}", b.name());
        assert_eq!(st.erase_session(&s.id, now).await.unwrap().total(), 0);
        assert!(!st.fence_session(&s.id, now).await.unwrap(), "nothing left to fence");
    }

    /// GIVEN a retention checkpoint whose cursor names a session WHEN that session is
    /// erased THEN the checkpoint is reset (the job restarts its pass), and a
    /// checkpoint naming another session is kept.
    pub async fn erasure_resets_a_checkpoint_naming_the_session<B: Backend>(b: B) {
        let st = b.store();
        let site = site("acme");
        st.put_site(&site).await.unwrap();
        let s = session(&site, T0);
        let other = session(&site, T0);
        for x in [&s, &other] {
            st.create_session(x).await.unwrap();
            st.append_message(&visitor_msg(x, "c1", "hello"), at_min(1), None)
                .await
                .unwrap();
        }
        // The store's own cursors are opaque (base64); the check must see through them.
        let cursor_naming = |id: &SessionId| {
            use base64::Engine as _;
            let lek = json!({"pk": keys::session_pk(id), "sk": keys::msg_sk(1)}).to_string();
            json!({"phase": "orphans", "cursor": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(lek)})
                .to_string()
        };
        st.put_checkpoint(keys::RETENTION_JOB, Some(&cursor_naming(&other.id)))
            .await
            .unwrap();
        st.erase_session(&s.id, at_min(2)).await.unwrap();
        assert_eq!(
            st.get_checkpoint(keys::RETENTION_JOB).await.unwrap(),
            Some(cursor_naming(&other.id)),
            "a checkpoint naming someone else stays"
        );
        st.put_checkpoint(keys::RETENTION_JOB, Some(&cursor_naming(&s.id)))
            .await
            .unwrap();
        st.erase_session(&s.id, at_min(2)).await.unwrap();
        assert_eq!(st.get_checkpoint(keys::RETENTION_JOB).await.unwrap(), None);
        assert!(
            !b.raw_texts().await.iter().any(|t| t.contains(s.id.as_str())),
            "no item names the erased session"
        );
    }

    /// How the erasure is asked for in a trial.
    #[derive(Debug, Clone, Copy)]
    enum Eraser {
        /// The visitor, with their own token.
        SelfService,
        /// A site admin, by visitor id.
        AdminByVisitor,
        /// An agent over the WebSocket (`deleteConversation`).
        DeleteConversation,
        /// An agent over HTTP (`scope: conversation`).
        HttpConversation,
    }

    const ERASERS: [Eraser; 4] = [
        Eraser::SelfService,
        Eraser::AdminByVisitor,
        Eraser::DeleteConversation,
        Eraser::HttpConversation,
    ];

    /// What the writers of all trials saw: stored before the fence, refused after.
    #[derive(Default)]
    struct Seen {
        acked: AtomicUsize,
        refused: AtomicUsize,
    }

    /// `$connect` with the token as a subprotocol (as the widget does), from its own address.
    async fn reconnect<B: Backend>(chat: &Chat<B>, conn: &str, token: &str, ip: &str) -> u16 {
        let protocol = format!("eurochat.v1, {token}");
        let r = chat
            .connect_event(
                conn,
                &[],
                &[("Origin", ORIGIN), ("Sec-WebSocket-Protocol", &protocol)],
                ip,
            )
            .await;
        u16::try_from(r.status_code).unwrap_or(0)
    }

    /// Sends a frame and records whether it was stored (`ack`) or refused (`not_found`,
    /// `unauthorized`) from the last frame the sender got.
    async fn send_counted<B: Backend>(chat: &Chat<B>, seen: &Seen, conn: &str, frame: Value) {
        let before = chat.frames(conn).len();
        chat.send(conn, frame).await;
        let frames = chat.frames(conn);
        for f in frames.iter().skip(before) {
            match (f["type"].as_str(), f["code"].as_str()) {
                (Some("ack"), _) => {
                    seen.acked.fetch_add(1, Ordering::Relaxed);
                }
                (Some("error"), Some("not_found" | "unauthorized")) => {
                    seen.refused.fetch_add(1, Ordering::Relaxed);
                }
                // Three writers on one conversation can exhaust the optimistic retries under
                // load: the client is told to retry, nothing is stored. Not a refusal by the fence.
                (Some("error"), Some("conflict")) => {}
                (Some("error"), code) => panic!("unexpected error frame {code:?}: {f}"),
                _ => {}
            }
        }
    }

    /// GIVEN a visitor who keeps sending, reconnecting, marking read and re-sending
    /// the pre-chat form, and an agent who keeps joining and replying WHEN their
    /// conversation is erased in the middle (each way of asking, in turn) THEN the
    /// erasure answers with counts, every later write is refused, and a raw read of
    /// the store finds none of the subject's ids or values, in every trial.
    pub async fn erasure_races_writers_and_leaves_nothing<B: Backend + 'static>(b: B) {
        // moto serves one request at a time, so fewer trials there; each still races.
        let trials = if b.name() == "memory" { 120 } else { 12 };
        let chat = Arc::new(Chat::new(b).await);
        let seen = Arc::new(Seen::default());
        let admin = chat.agent_token(SITE, "alice", AgentRole::Admin);
        let agent = chat.agent_token(SITE, "bob", AgentRole::Agent);
        for t in 0..trials {
            // Per-IP limits count per window; each trial starts in a fresh one.
            chat.advance(std::time::Duration::from_secs(120));
            let eraser = ERASERS[t % ERASERS.len()];
            let secret = format!("trial{t}secret");
            let email = format!("zed{t}@mail.example");
            let consent = json!({"purpose": "support-follow-up", "policyVersion": "2026-01"});
            let prechat = json!({"name": format!("Zed Trial{t}"), "email": email, "consent": consent});
            let r = chat
                .post_session(
                    &json!({"siteId": SITE, "prechat": prechat}),
                    &[("origin", ORIGIN), ("user-agent", "RaceBrowser/1")],
                    &[],
                )
                .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            let token = r.body["token"].as_str().unwrap().to_owned();
            let sid = r.body["sessionId"].as_str().unwrap().to_owned();
            let vid = r.body["visitorId"].as_str().unwrap().to_owned();
            let token_hash = chat.stored_session(&sid).await.unwrap().token_hash;
            let (vconn, aconn) = (format!("V{t}s="), format!("A{t}s="));
            assert_eq!(reconnect(&chat, &vconn, &token, "198.51.100.1").await, 200);
            assert_eq!(reconnect(&chat, &aconn, &agent, "198.51.100.2").await, 200);
            chat.send(&aconn, json!({"action": "join", "sessionId": sid})).await;
            let stop = Arc::new(AtomicUsize::new(0));

            let mut writers = Vec::new();
            // The visitor sending.
            writers.push(tokio::spawn({
                let (chat, seen, vconn, secret) = (chat.clone(), seen.clone(), vconn.clone(), secret.clone());
                async move {
                    for i in 0..16 {
                        let f = json!({"action": "sendMessage", "clientMsgId": format!("v{i}"), "text": format!("{secret} v{i}")});
                        send_counted(&chat, &seen, &vconn, f).await;
                    }
                }
            }));
            // The widget reconnecting (a new connection each time) and sending from it.
            writers.push(tokio::spawn({
                let (chat, seen, token, secret) = (chat.clone(), seen.clone(), token.clone(), secret.clone());
                async move {
                    for i in 0..8 {
                        let conn = format!("R{t}n{i}=");
                        if reconnect(&chat, &conn, &token, &format!("198.51.100.{}", 10 + i)).await == 200 {
                            let f = json!({"action": "sendMessage", "clientMsgId": format!("r{i}"), "text": format!("{secret} r{i}")});
                            send_counted(&chat, &seen, &conn, f).await;
                            if i % 2 == 0 {
                                chat.disconnect(&conn).await;
                            }
                        } else {
                            seen.refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
            // The visitor marking read, typing and re-sending the pre-chat form.
            writers.push(tokio::spawn({
                let (chat, vconn, token, prechat) = (chat.clone(), vconn.clone(), token.clone(), prechat.clone());
                async move {
                    for i in 0..8 {
                        chat.send(&vconn, json!({"action": "markRead", "seq": i})).await;
                        chat.send(&vconn, json!({"action": "typing", "isTyping": true})).await;
                        let body = json!({"siteId": SITE, "token": token, "prechat": prechat});
                        let r = chat.post_session(&body, &[("origin", ORIGIN)], &[]).await;
                        assert!(
                            matches!(r.status, 200 | 401),
                            "pre-chat on resume: {} {:?}",
                            r.status,
                            r.body
                        );
                    }
                }
            }));
            // The agent joining and replying.
            writers.push(tokio::spawn({
                let (chat, seen, aconn, sid, secret) = (chat.clone(), seen.clone(), aconn.clone(), sid.clone(), secret.clone());
                async move {
                    for i in 0..12 {
                        chat.send(&aconn, json!({"action": "join", "sessionId": sid})).await;
                        let f = json!({"action": "sendMessage", "sessionId": sid, "clientMsgId": format!("a{i}"), "text": format!("{secret} a{i}")});
                        send_counted(&chat, &seen, &aconn, f).await;
                        chat.send(&aconn, json!({"action": "markRead", "sessionId": sid, "seq": i})).await;
                    }
                }
            }));

            // Erase once some of the writes have landed, while the rest are still coming.
            let acked_at_start = seen.acked.load(Ordering::Relaxed);
            for _ in 0..2_000 {
                if seen.acked.load(Ordering::Relaxed) >= acked_at_start + 3 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let total = match eraser {
                Eraser::SelfService => {
                    let r = chat.erase(Some(&token), &json!({})).await;
                    assert_eq!(r.status, 200, "{eraser:?}: {:?}", r.body);
                    r.body["total"].as_u64().unwrap()
                }
                Eraser::AdminByVisitor => {
                    let r = chat.erase(Some(&admin), &json!({"visitorId": vid})).await;
                    assert_eq!(r.status, 200, "{eraser:?}: {:?}", r.body);
                    r.body["total"].as_u64().unwrap()
                }
                Eraser::HttpConversation => {
                    let r = chat
                        .erase(Some(&agent), &json!({"scope": "conversation", "sessionId": sid}))
                        .await;
                    assert_eq!(r.status, 200, "{eraser:?}: {:?}", r.body);
                    r.body["total"].as_u64().unwrap()
                }
                Eraser::DeleteConversation => {
                    let eraser_conn = format!("D{t}s=");
                    assert_eq!(reconnect(&chat, &eraser_conn, &admin, "198.51.100.3").await, 200);
                    chat.send(&eraser_conn, json!({"action": "deleteConversation", "sessionId": sid}))
                        .await;
                    // The eraser also receives the site's messages, which may arrive after the answer.
                    let deleted = chat.frames_of(&eraser_conn, "deleted");
                    assert_eq!(deleted.len(), 1, "{eraser:?}: {:?}", chat.frames(&eraser_conn));
                    deleted[0]["items"].as_u64().unwrap()
                }
            };
            assert!(total > 0, "{eraser:?} erased something");
            stop.store(1, Ordering::Relaxed);
            for w in writers {
                w.await.expect("writer");
            }

            let needles = [
                sid.as_str(),
                vid.as_str(),
                token_hash.as_str(),
                secret.as_str(),
                email.as_str(),
                "Trial",
                "RaceBrowser",
            ];
            let residue: Vec<String> = chat
                .backend
                .raw_texts()
                .await
                .into_iter()
                .filter(|text| needles.iter().any(|n| text.contains(n)))
                .collect();
            assert!(
                residue.is_empty(),
                "{} trial {t} ({eraser:?}): {} items left behind: {residue:?}",
                chat.backend.name(),
                residue.len()
            );
            // A second erasure finds nothing, and says so.
            let again = chat.erase(Some(&admin), &json!({"visitorId": vid})).await;
            assert_eq!((again.status, again.body["total"].as_u64()), (200, Some(0)));
            chat.disconnect(&aconn).await;
        }
        let (acked, refused) = (seen.acked.load(Ordering::Relaxed), seen.refused.load(Ordering::Relaxed));
        assert!(
            acked >= 3 * trials && refused > trials,
            "the trials raced: {acked} writes stored before erasures, {refused} refused after"
        );
    }

    /// GIVEN a visitor whose empty session expired 30 minutes after their last access
    /// while their socket and a joined agent's stayed open WHEN the visitor types THEN
    /// nothing reaches the agent and the visitor gets `not_found`.
    pub async fn typing_from_an_expired_conversation_is_not_relayed<B: Backend>(b: B) {
        let chat = Chat::new(b).await;
        let v = chat.visitor().await;
        assert_eq!(reconnect(&chat, "V1=", &v.token, "198.51.100.1").await, 200);
        let agent = chat.agent_token(SITE, "alice", AgentRole::Admin);
        assert_eq!(reconnect(&chat, "A1=", &agent, "198.51.100.2").await, 200);
        chat.send("A1=", json!({"action": "join", "sessionId": v.session_id}))
            .await;
        chat.send("V1=", json!({"action": "typing", "isTyping": true})).await;
        assert_eq!(
            chat.frames_of("A1=", "typing").len(),
            1,
            "a live conversation relays typing"
        );

        chat.advance(std::time::Duration::from_secs(31 * 60));
        chat.send("V1=", json!({"action": "typing", "isTyping": true})).await;
        assert_eq!(
            chat.frames_of("A1=", "typing").len(),
            1,
            "nothing more reached the agent"
        );
        assert_eq!(chat.last("V1=")["code"], "not_found");
        chat.send(
            "A1=",
            json!({"action": "typing", "sessionId": v.session_id, "isTyping": true}),
        )
        .await;
        assert_eq!(chat.last("A1=")["code"], "not_found", "nor from the agent");
    }

    /// GIVEN two conversations past their retention that DynamoDB's TTL sweeper has not
    /// removed yet WHEN an agent deletes one over the WebSocket and the other over HTTP
    /// THEN both are erased and reported with their counts; asked again, the
    /// WebSocket answers `not_found` and HTTP an erasure of zero items.
    pub async fn an_expired_conversation_is_deleted_alike_over_websocket_and_http<B: Backend>(b: B) {
        let chat = Chat::new(b).await;
        let (ws, http) = (chat.visitor().await, chat.visitor().await);
        for (conn, v) in [("V1=", &ws), ("V2=", &http)] {
            assert_eq!(reconnect(&chat, conn, &v.token, "198.51.100.1").await, 200);
            chat.send(
                conn,
                json!({"action": "sendMessage", "clientMsgId": "c1", "text": "old words"}),
            )
            .await;
            assert_eq!(chat.last(conn)["type"], "ack");
        }
        chat.advance(std::time::Duration::from_secs(366 * 24 * 3600));
        let agent = chat.agent_token(SITE, "bob", AgentRole::Agent);
        assert_eq!(reconnect(&chat, "A1=", &agent, "198.51.100.2").await, 200);
        let held = |v: &crate::chat::Visitor| SessionId::parse(&v.session_id).unwrap();
        assert!(chat.backend.store().session_any(&held(&ws)).await.unwrap().is_some());

        chat.send(
            "A1=",
            json!({"action": "deleteConversation", "sessionId": ws.session_id}),
        )
        .await;
        let deleted = chat.last("A1=");
        assert_eq!(deleted["type"], "deleted", "{deleted}");
        let r = chat
            .erase(
                Some(&agent),
                &json!({"scope": "conversation", "sessionId": http.session_id}),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            deleted["items"].as_u64(),
            r.body["total"].as_u64(),
            "the same conversation shape erases the same number of items either way"
        );
        for v in [&ws, &http] {
            assert_eq!(chat.backend.store().session_any(&held(v)).await.unwrap(), None);
        }

        chat.send(
            "A1=",
            json!({"action": "deleteConversation", "sessionId": ws.session_id}),
        )
        .await;
        assert_eq!(chat.last("A1=")["code"], "not_found");
        let r = chat
            .erase(
                Some(&agent),
                &json!({"scope": "conversation", "sessionId": http.session_id}),
            )
            .await;
        assert_eq!((r.status, r.body["total"].as_u64()), (200, Some(0)));
    }

    /// GIVEN a visitor's erasure interrupted after its fence (a Lambda timeout) WHEN
    /// the visitor retries "Delete my data" with their own token THEN the retry is
    /// accepted and finishes the job, while every chat path already refuses the token.
    pub async fn a_visitor_retries_their_own_interrupted_erasure<B: Backend>(b: B) {
        let chat = Chat::new(b).await;
        let v = chat.visitor().await;
        assert_eq!(reconnect(&chat, "V1=", &v.token, "198.51.100.1").await, 200);
        chat.send(
            "V1=",
            json!({"action": "sendMessage", "clientMsgId": "c1", "text": "erase me"}),
        )
        .await;
        let sid = SessionId::parse(&v.session_id).unwrap();
        assert!(chat.backend.store().fence_session(&sid, chat.now()).await.unwrap());
        assert_eq!(
            reconnect(&chat, "V2=", &v.token, "198.51.100.1").await,
            401,
            "the fenced session opens no chat"
        );
        let export = chat.export(Some(&v.token), &json!({}), 4 << 20).await;
        assert_eq!(export.status, 200, "what is left can still be seen: {:?}", export.body);
        let retry = chat.erase(Some(&v.token), &json!({})).await;
        assert_eq!(retry.status, 200, "{:?}", retry.body);
        assert!(retry.body["total"].as_u64().unwrap() >= 3, "{:?}", retry.body);
        assert_eq!(chat.backend.store().session_any(&sid).await.unwrap(), None);
        assert!(!chat.backend.raw_texts().await.iter().any(|t| t.contains(&v.session_id)));
        assert_eq!(
            chat.erase(Some(&v.token), &json!({})).await.status,
            401,
            "then the token is dead"
        );
    }
}
