//! The chat's rules (issue 3), as flows through the real handlers. Each is a
//! test for both stores via [`chat_suite!`](crate::chat_suite).

use std::time::Duration;

use base64::Engine as _;
use chat_core::domain::IpPolicy;
use chat_core::domain::{AgentId, AgentRole, ConnectionId, SessionId, SiteId};
use chat_core::policy;
use chat_core::storage::{ConnectionStore, SessionStore, SiteStore};
use serde_json::{Value, json};

use crate::backends::Backend;
use crate::chat::*;

/// Generates one `#[tokio::test]` per chat flow for the backend built by `$make`.
#[macro_export]
macro_rules! chat_suite {
    ($make:expr) => {
        $crate::chat_suite_cases!($make);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let chat = $crate::chat::Chat::new($make).await;
                $crate::chat_flows::$case(&chat).await;
            }
        )*
    };
}

pub use cases::*;

/// The flows. Every `pub async fn` here is a case of [`chat_suite!`](crate::chat_suite),
/// listed once, by the attribute: a flow added here runs on every backend.
#[eurochat_test_macros::suite(chat_suite)]
pub mod cases {
    use super::*;

    /// Name/value pairs (query parameters or headers) of a test case.
    type Headers<'a> = Vec<(&'a str, &'a str)>;

    fn code(frame: &Value) -> &str {
        frame["code"].as_str().unwrap_or_default()
    }

    async fn agent_online<B: Backend>(c: &Chat<B>, conn: &str, agent: &str) {
        let role = if agent == "bob" {
            AgentRole::Agent
        } else {
            AgentRole::Admin
        };
        let site = if agent == "eve" { OTHER_SITE } else { SITE };
        let origin = if agent == "eve" { OTHER_ORIGIN } else { ORIGIN };
        let token = c.agent_token(site, agent, role);
        assert_eq!(
            c.connect_from(conn, &token, origin).await,
            200,
            "agent {agent} connects"
        );
    }

    async fn visitor_online<B: Backend>(c: &Chat<B>, conn: &str) -> Visitor {
        let v = c.visitor().await;
        assert_eq!(c.connect(conn, &v.token).await, 200);
        v
    }

    async fn say<B: Backend>(c: &Chat<B>, conn: &str, id: &str, text: &str) -> Value {
        c.send(conn, json!({"action": "sendMessage", "clientMsgId": id, "text": text}))
            .await;
        c.last(conn)
    }

    /// GIVEN a visitor and an agent WHEN they chat through the four functions THEN messages
    /// are stored, acknowledged with their sequence and delivered both ways, and history has both.
    pub async fn visitor_and_agent_chat_through_every_function<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        agent_online(c, "A1=", "alice").await;
        let ack = say(c, "V1=", "c-1", "Hello, is my order shipped?").await;
        assert_eq!(
            (ack["type"].as_str(), ack["seq"].as_u64(), ack["ref"].as_str()),
            (Some("ack"), Some(1), Some("c-1"))
        );
        let got = c.frames_of("A1=", "message");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["message"]["text"], "Hello, is my order shipped?");
        assert_eq!(got[0]["message"]["sessionId"], v.session_id.as_str());

        c.send("A1=", json!({"action": "join", "sessionId": v.session_id}))
            .await;
        assert_eq!(c.last("A1=")["type"], "joined");
        c.send(
            "A1=",
            json!({"action": "sendMessage", "sessionId": v.session_id, "clientMsgId": "a-1", "text": "Yes, today."}),
        )
        .await;
        assert_eq!(c.last("A1=")["seq"], 2);
        let to_visitor = c.frames_of("V1=", "message");
        assert_eq!(
            (
                to_visitor[0]["message"]["role"].as_str(),
                to_visitor[0]["message"]["text"].as_str()
            ),
            (Some("agent"), Some("Yes, today."))
        );

        c.send("V1=", json!({"action": "history"})).await;
        let h = c.last("V1=");
        assert_eq!(h["type"], "history");
        assert_eq!(
            h["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(h["hasMore"], false);
    }

    /// GIVEN a site with the default IP policy WHEN a session is created THEN the response has
    /// the 6-month token in its body, sets no cookie, and the IP is stored as /24.
    pub async fn new_session_sets_no_cookie_and_stores_ip_per_policy<B: Backend>(c: &Chat<B>) {
        let r = c.post_session(&json!({"siteId": SITE}), &[], &[]).await;
        assert_eq!(r.status, 201);
        let token = r.body["token"].as_str().unwrap();
        assert_eq!(r.body["resumed"], false);
        assert_eq!(
            r.body["tokenExpiresAt"].as_i64(),
            Some(policy::visitor_token_expiry(c.now()).millis())
        );
        assert!(r.cookies.is_empty(), "no cookie: {:?}", r.cookies);
        let sid = SessionId::parse(r.body["sessionId"].as_str().unwrap()).unwrap();
        let s = c.backend.store().get_session(&sid, c.now()).await.unwrap().unwrap();
        assert_eq!(s.ip.as_ref().map(|i| i.address.as_str()), Some("203.0.113.0/24"));
        assert!(s.user_agent.as_deref().unwrap().starts_with("Mozilla/5.0"));
        assert_ne!(s.token_hash, token, "only the hash is stored");

        for (policy, expected) in [(IpPolicy::Full, Some("203.0.113.77")), (IpPolicy::None, None)] {
            c.update_site(|s| {
                s.retention.ip_policy = policy;
            })
            .await;
            let r = c.post_session(&json!({"siteId": SITE}), &[], &[]).await;
            let sid = SessionId::parse(r.body["sessionId"].as_str().unwrap()).unwrap();
            let s = c.backend.store().get_session(&sid, c.now()).await.unwrap().unwrap();
            assert_eq!(s.ip.as_ref().map(|i| i.address.as_str()), expected, "{policy:?}");
        }
    }

    /// GIVEN a visitor who chatted WHEN they return after 90 days with their token THEN they get
    /// the same session, and the token lives six months from the return.
    pub async fn returning_visitor_resumes_and_renews_the_token<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        say(c, "V1=", "c-1", "hi").await;
        c.advance(Duration::from_secs(90 * 86_400));
        let r = c
            .post_session(&json!({"siteId": SITE, "token": v.token}), &[], &[])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(
            (r.body["sessionId"].as_str(), r.body["resumed"].as_bool()),
            (Some(v.session_id.as_str()), Some(true))
        );
        assert_eq!(r.body["lastSeq"], 1);
        assert_eq!(
            r.body["tokenExpiresAt"].as_i64(),
            Some(policy::visitor_token_expiry(c.now()).millis())
        );
        // The old cookie resumes nothing any more: without a token in the body, a new session.
        let by_cookie = c
            .post_session(&json!({"siteId": SITE}), &[], &[&format!("eurochat_vt={}", v.token)])
            .await;
        assert_eq!(by_cookie.status, 201);
        assert_ne!(by_cookie.body["sessionId"].as_str(), Some(v.session_id.as_str()));
    }

    /// GIVEN a (legacy) cookie of a destroyed session WHEN the widget asks for a session THEN it
    /// gets a new one, as for any cookie; a bad token in the body is refused (401) and nothing is
    /// stored.
    pub async fn stale_cookie_starts_afresh_but_a_bad_body_token_is_refused<B: Backend>(c: &Chat<B>) {
        let v = c.visitor().await;
        c.advance(Duration::from_secs(31 * 60));
        let r = c
            .post_session(&json!({"siteId": SITE}), &[], &[&format!("eurochat_vt={}", v.token)])
            .await;
        assert_eq!(r.status, 201);
        assert_ne!(r.body["sessionId"].as_str(), Some(v.session_id.as_str()));
        let before = c.stored().await;
        for bad in [v.token.as_str(), "vt1.garbage", ""] {
            let r = c.post_session(&json!({"siteId": SITE, "token": bad}), &[], &[]).await;
            assert_eq!(r.status, 401, "{bad:?}: {:?}", r.body);
            assert_eq!(r.body["error"]["code"], "unauthorized");
        }
        let fresh = c.visitor().await;
        let before_other = c.stored().await;
        let r = c
            .post_session(
                &json!({"siteId": OTHER_SITE, "token": fresh.token}),
                &[("origin", OTHER_ORIGIN)],
                &[],
            )
            .await;
        assert_eq!(r.status, 401, "a token of another site's session is just invalid");
        assert_eq!(c.stored().await, before_other);
        assert_eq!(
            before.get("session").map(|n| n + 1),
            c.stored().await.get("session").copied()
        );
    }

    /// GIVEN a pre-chat form WHEN it comes without consent or with a bad email THEN 400 and
    /// nothing stored; with consent THEN name, email and consent are stored, also on resume.
    pub async fn prechat_needs_consent_and_is_stored<B: Backend>(c: &Chat<B>) {
        let before = c.stored().await;
        let r = c
            .post_session(
                &json!({"siteId": SITE, "prechat": {"name": "Ada", "email": "ada@example.org"}}),
                &[],
                &[],
            )
            .await;
        assert_eq!((r.status, r.body["error"]["field"].as_str()), (400, Some("consent")));
        let r = c
            .post_session(&json!({"siteId": SITE, "prechat": {"email": "not-an-email", "consent": {"purpose": "p", "policyVersion": "v1"}}}), &[], &[])
            .await;
        assert_eq!((r.status, r.body["error"]["field"].as_str()), (400, Some("email")));
        assert_eq!(c.stored().await, before);

        let consent = json!({"purpose": "support-follow-up", "policyVersion": "2026-01"});
        let r = c
            .post_session(
                &json!({"siteId": SITE, "prechat": {"name": "Ada", "email": "Ada@Example.org", "consent": consent}}),
                &[],
                &[],
            )
            .await;
        assert_eq!(r.status, 201);
        let sid = SessionId::parse(r.body["sessionId"].as_str().unwrap()).unwrap();
        let s = c.backend.store().get_session(&sid, c.now()).await.unwrap().unwrap();
        let p = s.prechat.unwrap();
        assert_eq!(
            (p.name.unwrap().as_str(), p.email.unwrap().as_str()),
            ("Ada", "Ada@example.org")
        );
        assert_eq!(
            (p.consent.purpose.as_str(), p.consent.given_at),
            ("support-follow-up", c.now())
        );

        // A form sent later attaches to the resumed session.
        let v = c.visitor().await;
        let r = c
            .post_session(
                &json!({"siteId": SITE, "token": v.token, "prechat": {"name": "Bo", "consent": consent}}),
                &[],
                &[],
            )
            .await;
        assert_eq!(r.status, 200);
        let s = c
            .backend
            .store()
            .get_session(&SessionId::parse(&v.session_id).unwrap(), c.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.prechat.unwrap().name.unwrap().as_str(), "Bo");
    }

    /// GIVEN a session with no message WHEN 30 minutes pass after its last access THEN the token
    /// no longer connects or resumes, and the session with its IP is gone.
    pub async fn empty_session_is_destroyed_30_minutes_after_last_access<B: Backend>(c: &Chat<B>) {
        let v = c.visitor().await;
        c.advance(Duration::from_secs(20 * 60));
        assert_eq!(c.connect("V1=", &v.token).await, 200, "connecting is an access");
        c.advance(Duration::from_secs(29 * 60));
        assert!(
            c.backend
                .store()
                .get_session(&SessionId::parse(&v.session_id).unwrap(), c.now())
                .await
                .unwrap()
                .is_some()
        );
        c.advance(Duration::from_secs(60));
        assert_eq!(c.connect("V2=", &v.token).await, 401);
        let r = c
            .post_session(&json!({"siteId": SITE, "token": v.token}), &[], &[])
            .await;
        assert_eq!(r.status, 401);
        say(c, "V1=", "c-1", "still there?").await;
        assert_eq!(code(&c.last("V1=")), "not_found", "an expired session takes no message");
        c.backend.ttl_sweep(c.now()).await;
        assert_eq!(
            c.stored().await.get("session"),
            None,
            "session, IP and technical data destroyed"
        );
    }

    /// GIVEN a session WHEN its first message is sent THEN it outlives 30 minutes and lives for
    /// the site's retention after its last message.
    pub async fn first_message_keeps_the_conversation_for_the_retention_period<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        c.advance(Duration::from_secs(10 * 60));
        say(c, "V1=", "c-1", "hello").await;
        let sent_at = c.now();
        c.advance(Duration::from_secs(3 * 3600));
        c.backend.ttl_sweep(c.now()).await;
        assert_eq!(
            c.connect("V2=", &v.token).await,
            200,
            "a conversation survives the 30 minutes"
        );
        let s = c
            .backend
            .store()
            .get_session(&SessionId::parse(&v.session_id).unwrap(), c.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.expires_at, sent_at.plus(policy::days(365)));
    }

    /// GIVEN two visitors WHEN one names the other's session THEN not_found, the same as for a
    /// session that does not exist, and nothing is revealed or stored.
    pub async fn visitors_see_only_their_own_session<B: Backend>(c: &Chat<B>) {
        let _a = visitor_online(c, "VA=").await;
        let b = visitor_online(c, "VB=").await;
        c.send(
            "VB=",
            json!({"action": "sendMessage", "clientMsgId": "b1", "text": "secret of B"}),
        )
        .await;
        let before = c.stored().await;
        let ghost = SessionId::generate().to_string();
        for target in [b.session_id.as_str(), ghost.as_str()] {
            c.send("VA=", json!({"action": "history", "sessionId": target})).await;
            let f = c.last("VA=");
            assert_eq!((f["type"].as_str(), code(&f)), (Some("error"), "not_found"));
            assert_eq!(
                f["message"], "conversation not found",
                "same answer whether it exists or not"
            );
            c.send(
                "VA=",
                json!({"action": "sendMessage", "sessionId": target, "clientMsgId": "x", "text": "intrusion"}),
            )
            .await;
            assert_eq!(code(&c.last("VA=")), "not_found");
        }
        assert!(c.frames("VA=").iter().all(|f| !f.to_string().contains("secret of B")));
        assert_eq!(c.stored().await, before);
        c.send("VA=", json!({"action": "listConversations"})).await;
        assert_eq!(code(&c.last("VA=")), "forbidden");
    }

    /// GIVEN agents of two sites WHEN one reaches for the other site's conversation THEN
    /// not_found (as for a missing one); lists show only their own site.
    pub async fn agents_see_only_their_own_site<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        say(c, "V1=", "c1", "acme question").await;
        agent_online(c, "E1=", "eve").await;
        assert!(
            c.frames_of("E1=", "message").is_empty(),
            "globex's agent got nothing of acme"
        );
        let before = c.stored().await;
        for frame in [
            json!({"action": "join", "sessionId": v.session_id}),
            json!({"action": "history", "sessionId": v.session_id}),
            json!({"action": "sendMessage", "sessionId": v.session_id, "clientMsgId": "e1", "text": "hi"}),
            json!({"action": "markRead", "sessionId": v.session_id, "seq": 1}),
            json!({"action": "typing", "sessionId": v.session_id, "isTyping": true}),
            json!({"action": "join", "sessionId": SessionId::generate().to_string()}),
        ] {
            c.send("E1=", frame.clone()).await;
            assert_eq!(code(&c.last("E1=")), "not_found", "{frame}");
        }
        assert_eq!(c.stored().await, before);
        c.send("E1=", json!({"action": "listConversations"})).await;
        assert_eq!(c.last("E1=")["items"], json!([]));
        agent_online(c, "A1=", "alice").await;
        c.send("A1=", json!({"action": "listConversations"})).await;
        let items = c.last("A1=")["items"].clone();
        assert_eq!(items.as_array().unwrap().len(), 1);
        assert_eq!(items[0]["sessionId"], v.session_id.as_str());
        // An acme agent token from globex's page is refused.
        assert_eq!(
            c.connect_from("A2=", &c.agent_token(SITE, "alice", AgentRole::Admin), OTHER_ORIGIN)
                .await,
            403
        );
        // A visitor token used from another site's page is refused.
        assert_eq!(c.connect_from("V2=", &v.token, OTHER_ORIGIN).await, 403);
    }

    /// GIVEN a message WHEN the client retries it, or Lambda re-invokes the same event, THEN one
    /// message is stored and every ack carries the same sequence.
    pub async fn same_client_msg_id_stores_once_and_acks_the_same_sequence<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        let first = say(c, "V1=", "c-1", "once").await;
        let again = say(c, "V1=", "c-1", "once").await;
        assert_eq!(
            (first["seq"].as_u64(), first["duplicate"].as_bool()),
            (Some(1), Some(false))
        );
        assert_eq!(
            (again["seq"].as_u64(), again["duplicate"].as_bool()),
            (Some(1), Some(true))
        );
        assert_eq!(c.stored().await.get("message"), Some(&1));
        let next = say(c, "V1=", "c-2", "twice").await;
        assert_eq!(next["seq"], 2);
        let _ = v;
    }

    /// GIVEN seven messages WHEN a reconnecting widget pages history after its last seen seq THEN
    /// it gets everything after, in order, with no gap and no duplicate.
    pub async fn history_pages_resume_without_gap_or_duplicate<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        agent_online(c, "A1=", "alice").await;
        for i in 1..=7 {
            if i % 3 == 0 {
                c.send("A1=", json!({"action": "sendMessage", "sessionId": v.session_id, "clientMsgId": format!("a{i}"), "text": format!("m{i}")})).await;
            } else {
                say(c, "V1=", &format!("v{i}"), &format!("m{i}")).await;
            }
        }
        let mut seen: Vec<u64> = Vec::new();
        let mut after = 2; // the widget had seen 1 and 2 before reconnecting
        assert_eq!(c.connect("V2=", &v.token).await, 200);
        loop {
            c.send("V2=", json!({"action": "history", "after": after, "limit": 2}))
                .await;
            let h = c.last("V2=");
            let seqs: Vec<u64> = h["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_u64().unwrap())
                .collect();
            seen.extend(seqs.iter().copied());
            if h["hasMore"] == false {
                break;
            }
            after = *seqs.last().unwrap();
        }
        assert_eq!(seen, vec![3, 4, 5, 6, 7]);
        c.send("V2=", json!({"action": "history", "limit": 101})).await;
        assert_eq!(code(&c.last("V2=")), "invalid_request");
    }

    /// GIVEN two conversations, two acme agents and a globex agent WHEN a visitor writes THEN the
    /// message reaches the visitor's other tab and acme's agents, and nobody else.
    pub async fn fan_out_reaches_only_the_conversation_and_site_agents<B: Backend>(c: &Chat<B>) {
        let a = visitor_online(c, "VA1=").await;
        assert_eq!(c.connect("VA2=", &a.token).await, 200, "a second tab");
        visitor_online(c, "VB=").await;
        agent_online(c, "A1=", "alice").await;
        agent_online(c, "A2=", "bob").await;
        agent_online(c, "E1=", "eve").await;
        say(c, "VA1=", "c1", "to my conversation only").await;
        for conn in ["VA2=", "A1=", "A2="] {
            assert_eq!(c.frames_of(conn, "message").len(), 1, "{conn}");
        }
        for conn in ["VB=", "E1="] {
            assert!(c.frames_of(conn, "message").is_empty(), "{conn}");
        }
        assert!(
            c.frames_of("VA1=", "message").is_empty(),
            "the sender gets an ack, not a copy"
        );
    }

    /// GIVEN an agent whose connection is gone and one whose delivery fails WHEN a visitor writes
    /// THEN the gone connection is deleted, the failing one kept, and the rest still receive.
    pub async fn gone_connections_are_deleted_and_others_still_receive<B: Backend>(c: &Chat<B>) {
        visitor_online(c, "V1=").await;
        agent_online(c, "A1=", "alice").await;
        agent_online(c, "A2=", "bob").await;
        agent_online(c, "A3=", "alice").await;
        c.gateway.mark_gone(&ConnectionId::parse("A2=").unwrap());
        c.gateway.mark_failing(&ConnectionId::parse("A3=").unwrap());
        let ack = say(c, "V1=", "c1", "hello").await;
        assert_eq!(ack["type"], "ack", "the send succeeds");
        assert_eq!(c.frames_of("A1=", "message").len(), 1);
        let now = c.now();
        let st = c.backend.store();
        assert!(
            st.get_connection(&ConnectionId::parse("A2=").unwrap(), now)
                .await
                .unwrap()
                .is_none(),
            "gone: deleted"
        );
        assert!(
            st.get_connection(&ConnectionId::parse("A3=").unwrap(), now)
                .await
                .unwrap()
                .is_some(),
            "failing: kept"
        );
        assert!(
            st.get_connection(&ConnectionId::parse("V1=").unwrap(), now)
                .await
                .unwrap()
                .is_some(),
            "sender kept"
        );
    }

    /// GIVEN a visitor and a joined agent WHEN either types or reads THEN the other side is told.
    pub async fn typing_and_read_markers_reach_the_conversation<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        agent_online(c, "A1=", "alice").await;
        agent_online(c, "A2=", "bob").await;
        say(c, "V1=", "c1", "hi").await;
        c.send("A1=", json!({"action": "join", "sessionId": v.session_id}))
            .await;
        c.send("V1=", json!({"action": "typing", "isTyping": true})).await;
        assert_eq!(c.frames_of("A1=", "typing")[0]["isTyping"], true);
        assert!(
            c.frames_of("A2=", "typing").is_empty(),
            "typing goes to joined agents only"
        );
        c.send(
            "A1=",
            json!({"action": "typing", "sessionId": v.session_id, "isTyping": true}),
        )
        .await;
        assert_eq!(c.frames_of("V1=", "typing")[0]["role"], "agent");
        c.send(
            "A1=",
            json!({"action": "markRead", "sessionId": v.session_id, "seq": 1}),
        )
        .await;
        let read = c.frames_of("V1=", "read");
        assert_eq!(
            (read[0]["role"].as_str(), read[0]["seq"].as_u64()),
            (Some("agent"), Some(1))
        );
        c.send("V1=", json!({"action": "history"})).await;
        assert_eq!(c.last("V1=")["agentReadSeq"], 1, "read state survives a reload");
    }

    /// GIVEN the default limits WHEN a text over 4 KB, or the 31st message in a minute, arrives
    /// THEN an error frame with a stable code (and retryAfter) and nothing stored.
    pub async fn message_size_and_rate_limits_answer_with_stable_codes<B: Backend>(c: &Chat<B>) {
        visitor_online(c, "V1=").await;
        let f = say(c, "V1=", "big", &"x".repeat(4097)).await;
        assert_eq!(
            (code(&f), f["field"].as_str(), f["ref"].as_str()),
            ("payload_too_large", Some("text"), Some("big"))
        );
        assert_eq!(
            say(c, "V1=", "max", &"é".repeat(2048)).await["type"],
            "ack",
            "4096 bytes exactly is fine"
        );
        for i in 1..30 {
            assert_eq!(
                say(c, "V1=", &format!("c{i}"), "spam?").await["type"],
                "ack",
                "message {i}"
            );
        }
        let f = say(c, "V1=", "c31", "one too many").await;
        assert_eq!(code(&f), "rate_limited");
        agent_online(c, "A1=", "alice").await;
        let sid = c.frames_of("V1=", "ack")[0]["sessionId"].clone();
        c.send(
            "A1=",
            json!({"action": "sendMessage", "sessionId": sid, "clientMsgId": "a1", "text": "an agent can still answer"}),
        )
        .await;
        assert_eq!(
            c.last("A1=")["type"],
            "ack",
            "the visitor's limit does not silence the agent"
        );
        assert!(f["retryAfter"].as_u64().is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(c.stored().await.get("message"), Some(&31));
        c.advance(Duration::from_secs(60));
        assert_eq!(say(c, "V1=", "c31", "later").await["type"], "ack");
    }

    /// GIVEN 20 connection attempts from one IP in a minute WHEN a 21st comes THEN 429 with
    /// `Retry-After`, nothing stored but the counter; the window slides (still refused half
    /// a minute later), another IP is counted apart, and a minute after the burst it passes.
    pub async fn per_ip_connection_rate_is_limited<B: Backend>(c: &Chat<B>) {
        let v = c.visitor().await;
        for i in 0..20 {
            assert_eq!(c.connect(&format!("C{i}="), &v.token).await, 200);
        }
        let before = c.stored().await;
        let offered = subprotocols(&v.token);
        let headers = [("Origin", ORIGIN), ("Sec-WebSocket-Protocol", offered.as_str())];
        let r = c.connect_event("C20=", &[], &headers, "203.0.113.77").await;
        assert_eq!(r.status_code, 429);
        assert_eq!(r.headers.get("retry-after").and_then(|h| h.to_str().ok()), Some("60"));
        let body: Value = match &r.body {
            Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(t).expect("JSON"),
            _ => Value::Null,
        };
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(c.stored().await, before, "a refused connect stores nothing");
        let other_ip = c.connect_event("C21=", &[], &headers, "198.51.100.1").await;
        assert_eq!(other_ip.status_code, 200);
        c.advance(Duration::from_secs(30));
        let r = c.connect_event("C22=", &[], &headers, "203.0.113.77").await;
        assert_eq!(r.status_code, 429, "no fresh window at a minute boundary");
        assert_eq!(r.headers.get("retry-after").and_then(|h| h.to_str().ok()), Some("30"));
        c.advance(Duration::from_secs(30));
        assert_eq!(c.connect("C23=", &v.token).await, 200);
    }

    /// GIVEN 20 connects from addresses spread over one IPv6 /64 WHEN another address of that
    /// /64 connects THEN 429 (one host owns the /64), while the neighbouring /64 is counted apart.
    pub async fn ipv6_connects_are_limited_per_64<B: Backend>(c: &Chat<B>) {
        let v = c.visitor().await;
        let connect = |conn: String, ip: String| {
            let token = v.token.clone();
            async move {
                let offered = subprotocols(&token);
                let headers = [("Origin", ORIGIN), ("Sec-WebSocket-Protocol", offered.as_str())];
                c.connect_event(&conn, &[], &headers, &ip).await.status_code
            }
        };
        for i in 0..20 {
            assert_eq!(connect(format!("S{i}="), format!("2001:db8:1:2::{i:x}")).await, 200);
        }
        assert_eq!(connect("S20=".into(), "2001:db8:1:2:ffff::1".into()).await, 429);
        assert_eq!(connect("S21=".into(), "2001:db8:1:3::1".into()).await, 200);
    }

    /// GIVEN 10 sessions created from one IP WHEN an 11th is asked for THEN 429 with
    /// `Retry-After` and no session stored; bad input and resumes do not count, another IP
    /// and (a minute later) the same IP may create again.
    pub async fn session_creation_is_limited_per_ip<B: Backend>(c: &Chat<B>) {
        let ip = "192.0.2.10";
        let ok = json!({ "siteId": SITE });
        // Refused requests store nothing, not even a counter.
        let before = c.backend.counts().await;
        assert_eq!(
            c.post_session_from(&json!({ "siteId": "no such site!" }), ip)
                .await
                .status,
            400
        );
        assert_eq!(
            c.post_session_from(&json!({ "siteId": "nosuchsite" }), ip).await.status,
            403
        );
        assert_eq!(c.backend.counts().await, before);
        let mut first = None;
        for i in 0..10 {
            let r = c.post_session_from(&ok, ip).await;
            assert_eq!(r.status, 201, "session {i}: {:?}", r.body);
            first.get_or_insert(r.body["token"].as_str().unwrap_or_default().to_owned());
            c.advance(Duration::from_secs(1));
        }
        let sessions = c.stored().await.get("session").copied();
        let r = c.post_session_from(&ok, ip).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (429, Some("rate_limited"))
        );
        assert_eq!(
            r.retry_after.as_deref(),
            Some("50"),
            "the first creation leaves the window at 60 s"
        );
        assert_eq!(c.stored().await.get("session").copied(), sessions, "nothing stored");
        // Resuming creates nothing and is not limited.
        let token = first.unwrap_or_default();
        let resumed = c
            .post_session_from(&json!({ "siteId": SITE, "token": token }), ip)
            .await;
        assert_eq!(resumed.status, 200, "{:?}", resumed.body);
        assert_eq!(c.post_session_from(&ok, "192.0.2.11").await.status, 201);
        c.advance(Duration::from_secs(50));
        assert_eq!(c.post_session_from(&ok, ip).await.status, 201);
        assert_eq!(c.post_session_from(&ok, ip).await.status, 429);
    }

    /// GIVEN a connected visitor WHEN frames are malformed in every way THEN each gets an error
    /// frame with its code, nothing is stored, and nothing panics.
    pub async fn bad_frames_get_error_frames_and_change_nothing<B: Backend>(c: &Chat<B>) {
        visitor_online(c, "V1=").await;
        agent_online(c, "A1=", "alice").await;
        say(c, "V1=", "ok", "a good one").await;
        let before = c.stored().await;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let cases: Vec<(&str, String, bool, &str)> = vec![
            ("V1=", "{not json".into(), false, "invalid_json"),
            ("V1=", "[1,2]".into(), false, "invalid_json"),
            ("V1=", "".into(), false, "invalid_json"),
            ("V1=", b64(&[0xff, 0xfe, 0x00]), true, "invalid_json"),
            ("V1=", json!({"action": "fly"}).to_string(), false, "unknown_action"),
            (
                "V1=",
                json!({"text": "no action"}).to_string(),
                false,
                "invalid_request",
            ),
            ("V1=", json!({"action": 5}).to_string(), false, "invalid_request"),
            (
                "V1=",
                json!({"action": "sendMessage", "text": "no id"}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "V1=",
                json!({"action": "sendMessage", "clientMsgId": "x"}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "V1=",
                json!({"action": "sendMessage", "clientMsgId": "x", "text": 5}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "V1=",
                json!({"action": "sendMessage", "clientMsgId": "bad id!", "text": "t"}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "V1=",
                json!({"action": "sendMessage", "clientMsgId": "x", "text": "   "}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "V1=",
                json!({"action": "sendMessage", "clientMsgId": "x", "text": "bell\u{7}"}).to_string(),
                false,
                "invalid_request",
            ),
            ("V1=", json!({"action": "typing"}).to_string(), false, "invalid_request"),
            (
                "V1=",
                json!({"action": "history", "after": -1}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "V1=",
                json!({"action": "markRead", "seq": "1"}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "V1=",
                json!({"action": "join", "sessionId": "x"}).to_string(),
                false,
                "forbidden",
            ),
            (
                "V1=",
                format!(
                    "{{\"action\":\"sendMessage\",\"clientMsgId\":\"x\",\"text\":\"{}\"}}",
                    "y".repeat(33 * 1024)
                ),
                false,
                "payload_too_large",
            ),
            (
                "A1=",
                json!({"action": "sendMessage", "clientMsgId": "x", "text": "no session"}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "A1=",
                json!({"action": "history", "sessionId": "ses_nothex"}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "A1=",
                json!({"action": "listConversations", "status": "lost"}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "A1=",
                json!({"action": "listConversations", "cursor": "forged"}).to_string(),
                false,
                "invalid_request",
            ),
            (
                "NOBODY=",
                json!({"action": "sendMessage", "clientMsgId": "x", "text": "t"}).to_string(),
                false,
                "unauthorized",
            ),
        ];
        for (conn, body, base64, expected) in cases {
            assert_eq!(c.send_raw(conn, &body, base64).await, 200);
            let f = c.last(conn);
            assert_eq!(
                (f["type"].as_str(), code(&f)),
                (Some("error"), expected),
                "{}",
                &body[..body.len().min(80)]
            );
        }
        assert_eq!(c.stored().await, before);
    }

    /// GIVEN a valid visitor token WHEN $connect comes without a token, with garbage, with an
    /// expired agent token, from no or a foreign origin THEN 401/403 and no connection stored.
    pub async fn bad_connects_are_rejected_and_store_nothing<B: Backend>(c: &Chat<B>) {
        let v = c.visitor().await;
        let expired = c.config().agent_keys.mint(
            &SiteId::parse(SITE).unwrap(),
            &AgentId::parse("alice").unwrap(),
            AgentRole::Admin,
            c.now().minus(Duration::from_secs(7200)),
            Duration::from_secs(3600),
        );
        let before = c.stored().await;
        let (garbage, forged, expired_p, valid, other) = (
            subprotocols("garbage"),
            subprotocols("at1.e30.c2ln"),
            subprotocols(&expired),
            subprotocols(&v.token),
            format!("other.v1, {}", v.token),
        );
        const P: &str = "Sec-WebSocket-Protocol";
        let cases: Vec<(Headers, i64)> = vec![
            (vec![("Origin", ORIGIN)], 401),
            (vec![("Origin", ORIGIN), (P, &garbage)], 401),
            (vec![("Origin", ORIGIN), (P, &forged)], 401),
            (vec![("Origin", ORIGIN), (P, &expired_p)], 401),
            (vec![("Origin", ORIGIN), (P, "eurochat.v1")], 401),
            (vec![("Origin", ORIGIN), (P, &other)], 401),
            (vec![(P, &valid)], 403),
            (vec![("Origin", "https://evil.example"), (P, &valid)], 403),
            (vec![("Origin", "null"), (P, &valid)], 403),
        ];
        for (i, (headers, status)) in cases.into_iter().enumerate() {
            let mut e_headers = headers.clone();
            if !headers.iter().any(|(k, _)| *k == "Origin") {
                // The fixture carries an Origin; drop it for the "no origin" case.
                e_headers.push(("Origin", ""));
            }
            let r = c
                .connect_event(&format!("X{i}="), &[], &e_headers, "203.0.113.77")
                .await;
            assert_eq!(r.status_code, status, "case {i}");
        }
        let r = c
            .connect_event("X9=", &[], &[("Origin", ORIGIN), (P, &expired_p)], "203.0.113.77")
            .await;
        let Some(aws_lambda_events::encodings::Body::Text(body)) = r.body else {
            panic!("no body")
        };
        assert!(body.contains("token_expired"), "{body}");
        assert_eq!(
            c.stored().await,
            before,
            "no connection, session or anything else stored"
        );
    }

    /// GIVEN a valid site WHEN session requests are malformed or come from the wrong place THEN
    /// clear errors and nothing stored; an unknown site answers like a foreign origin.
    pub async fn bad_session_requests_are_refused_and_store_nothing<B: Backend>(c: &Chat<B>) {
        let before = c.stored().await;
        let cases: Vec<(Value, Headers, u16, &str)> = vec![
            (json!({}), vec![], 400, "invalid_request"),
            (json!({"siteId": 5}), vec![], 400, "invalid_request"),
            (json!({"siteId": "NOT A SITE"}), vec![], 400, "invalid_request"),
            (json!({"siteId": SITE, "prechat": "x"}), vec![], 400, "invalid_request"),
            (json!({"siteId": SITE, "token": 7}), vec![], 400, "invalid_request"),
            (json!({"siteId": "no-such-site"}), vec![], 403, "origin_not_allowed"),
            (
                json!({"siteId": SITE}),
                vec![("origin", "https://evil.example")],
                403,
                "origin_not_allowed",
            ),
            (json!({"siteId": SITE}), vec![("origin", "")], 403, "origin_not_allowed"),
            (
                json!({"siteId": SITE}),
                vec![("origin", OTHER_ORIGIN)],
                403,
                "origin_not_allowed",
            ),
        ];
        for (body, headers, status, expected) in cases {
            let r = c.post_session(&body, &headers, &[]).await;
            assert_eq!(
                (r.status, r.body["error"]["code"].as_str()),
                (status, Some(expected)),
                "{body}"
            );
        }
        for raw in ["{oops", "[]", "\"str\""] {
            let mut e: Value = serde_json::from_str(include_str!("../events/http-post-sessions.json")).unwrap();
            e["body"] = json!(raw);
            let r = c.post_session_event(e).await;
            assert_eq!(
                (r.status, r.body["error"]["code"].as_str()),
                (400, Some("invalid_json")),
                "{raw}"
            );
        }
        let mut e: Value = serde_json::from_str(include_str!("../events/http-post-sessions.json")).unwrap();
        e["body"] = json!(format!("{{\"siteId\":\"acme\",\"pad\":\"{}\"}}", "x".repeat(17 * 1024)));
        assert_eq!(c.post_session_event(e).await.status, 413);
        assert_eq!(c.stored().await, before);
    }

    /// GIVEN a visitor token WHEN offered as `Sec-WebSocket-Protocol: eurochat.v1, <token>` THEN
    /// $connect accepts it (selecting `eurochat.v1`, never echoing the token); WHEN sent as a
    /// cookie THEN 401; WHEN in the URL (`?token=`), even with a good subprotocol, THEN 400
    /// naming `token`; a refused handshake stores nothing.
    pub async fn tokens_are_accepted_from_the_subprotocol_only<B: Backend>(c: &Chat<B>) {
        let v = c.visitor().await;
        let proto = subprotocols(&v.token);
        let r = c
            .connect_event(
                "P1=",
                &[],
                &[("Origin", ORIGIN), ("Sec-WebSocket-Protocol", &proto)],
                "203.0.113.77",
            )
            .await;
        assert_eq!(r.status_code, 200);
        assert_eq!(r.headers.get("sec-websocket-protocol").unwrap(), "eurochat.v1");
        let before = c.stored().await;
        let cookie = format!("other=1; eurochat_vt={}", v.token);
        let r = c
            .connect_event("P2=", &[], &[("Origin", ORIGIN), ("Cookie", &cookie)], "203.0.113.77")
            .await;
        assert_eq!(r.status_code, 401, "a cookie is no credential");
        for (i, headers) in [
            vec![("Origin", ORIGIN)],
            vec![("Origin", ORIGIN), ("Sec-WebSocket-Protocol", proto.as_str())],
        ]
        .into_iter()
        .enumerate()
        {
            let r = c
                .connect_event(&format!("Q{i}="), &[("token", &v.token)], &headers, "203.0.113.77")
                .await;
            assert_eq!(r.status_code, 400, "a token in the URL is refused (case {i})");
            let Some(aws_lambda_events::encodings::Body::Text(body)) = r.body else {
                panic!("no body")
            };
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                (body["error"]["code"].as_str(), body["error"]["field"].as_str()),
                (Some("invalid_request"), Some("token"))
            );
            assert!(!body.to_string().contains(&v.token), "the token is not echoed");
        }
        assert_eq!(c.stored().await, before, "no connection recorded");
    }

    /// GIVEN a site with an agent IP allow-list WHEN an agent connects from outside it THEN 403;
    /// from inside it THEN 200. Visitors are not subject to it.
    pub async fn agent_ip_allow_list_is_enforced<B: Backend>(c: &Chat<B>) {
        c.update_site(|s| {
            s.agent_ip_allowlist = Some(vec!["192.0.2.0/24".parse().unwrap()]);
        })
        .await;
        let token = c.agent_token(SITE, "alice", AgentRole::Admin);
        let offered = subprotocols(&token);
        let headers = [("Origin", ORIGIN), ("Sec-WebSocket-Protocol", offered.as_str())];
        let outside = c.connect_event("A1=", &[], &headers, "203.0.113.77").await;
        assert_eq!(outside.status_code, 403);
        let inside = c.connect_event("A2=", &[], &headers, "192.0.2.10").await;
        assert_eq!(inside.status_code, 200);
        let v = c.visitor().await;
        assert_eq!(c.connect("V1=", &v.token).await, 200);
    }

    /// GIVEN an agent's valid token WHEN the agent is deactivated THEN the token stops working;
    /// WHEN an admin is demoted THEN their old admin token connects as an agent.
    pub async fn deactivated_agents_and_demoted_roles_take_effect_at_once<B: Backend>(c: &Chat<B>) {
        let token = c.agent_token(SITE, "bob", AgentRole::Agent);
        let site = SiteId::parse(SITE).unwrap();
        let mut bob = c
            .backend
            .store()
            .get_agent(&site, &AgentId::parse("bob").unwrap())
            .await
            .unwrap()
            .unwrap();
        bob.active = false;
        c.backend.store().put_agent(&bob).await.unwrap();
        assert_eq!(c.connect("B1=", &token).await, 401);

        let admin_token = c.agent_token(SITE, "alice", AgentRole::Admin);
        let mut alice = c
            .backend
            .store()
            .get_agent(&site, &AgentId::parse("alice").unwrap())
            .await
            .unwrap()
            .unwrap();
        alice.role = AgentRole::Agent;
        c.backend.store().put_agent(&alice).await.unwrap();
        assert_eq!(c.connect("A1=", &admin_token).await, 200);
        let conn = c
            .backend
            .store()
            .get_connection(&ConnectionId::parse("A1=").unwrap(), c.now())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                conn.principal,
                chat_core::domain::Principal::Agent { ref agent_id, role: AgentRole::Agent, .. } if *agent_id == alice.id
            ),
            "{:?}",
            conn.principal
        );
    }

    /// GIVEN a connection WHEN $disconnect arrives (twice) THEN it is gone and both answer 200.
    pub async fn disconnect_removes_the_connection_idempotently<B: Backend>(c: &Chat<B>) {
        visitor_online(c, "V1=").await;
        assert_eq!(c.disconnect("V1=").await, 200);
        assert_eq!(c.disconnect("V1=").await, 200);
        assert!(
            c.backend
                .store()
                .get_connection(&ConnectionId::parse("V1=").unwrap(), c.now())
                .await
                .unwrap()
                .is_none()
        );
        say(c, "V1=", "c1", "after disconnect").await;
        assert_eq!(code(&c.last("V1=")), "unauthorized");
    }

    /// GIVEN a frame through API `abc123`, stage `prod` WHEN the function answers THEN it asked
    /// for the management client of exactly that domain and stage.
    pub async fn management_client_follows_the_request_domain_and_stage<B: Backend>(c: &Chat<B>) {
        visitor_online(c, "V1=").await;
        say(c, "V1=", "c1", "hi").await;
        assert_eq!(c.gateway.endpoints(), vec![(DOMAIN.to_owned(), "prod".to_owned())]);
    }

    /// GIVEN a conversation with a connected visitor WHEN an agent of the site deletes it THEN
    /// everything in it is erased, the visitor's connection is closed, an audit record without
    /// personal data is kept, and nobody else (visitor, other site) may do it.
    pub async fn agents_delete_conversations_and_close_the_visitor<B: Backend>(c: &Chat<B>) {
        use chat_core::storage::MessageStore;
        let v = visitor_online(c, "V1=").await;
        let keep = visitor_online(c, "V2=").await;
        for i in 0..3 {
            say(c, "V1=", &format!("c{i}"), "please delete me later").await;
        }
        say(c, "V2=", "k", "keep me").await;
        agent_online(c, "A1=", "bob").await;
        agent_online(c, "E1=", "eve").await;
        c.send("A1=", json!({"action": "join", "sessionId": v.session_id}))
            .await;

        c.send(
            "V1=",
            json!({"action": "deleteConversation", "sessionId": v.session_id}),
        )
        .await;
        assert_eq!(code(&c.last("V1=")), "forbidden");
        c.send(
            "E1=",
            json!({"action": "deleteConversation", "sessionId": v.session_id}),
        )
        .await;
        assert_eq!(code(&c.last("E1=")), "not_found");

        c.send(
            "A1=",
            json!({"action": "deleteConversation", "sessionId": v.session_id}),
        )
        .await;
        let done = c.last("A1=");
        assert_eq!(done["type"], "deleted");
        assert!(
            done["items"].as_u64().unwrap() >= 6,
            "session, 3 messages, the visitor's membership and connection: {done}"
        );
        assert_eq!(c.gateway.closed(), vec![ConnectionId::parse("V1=").unwrap()]);
        let sid = SessionId::parse(&v.session_id).unwrap();
        assert!(c.backend.store().get_session(&sid, c.now()).await.unwrap().is_none());
        assert!(
            c.backend
                .store()
                .list_messages(&sid, 0, 10)
                .await
                .unwrap()
                .messages
                .is_empty()
        );
        assert_eq!(
            c.connect("V3=", &v.token).await,
            401,
            "the token died with the conversation"
        );
        let kept = SessionId::parse(&keep.session_id).unwrap();
        assert_eq!(
            c.backend
                .store()
                .list_messages(&kept, 0, 10)
                .await
                .unwrap()
                .messages
                .len(),
            1
        );

        let audit = c.audit_trail().await;
        assert_eq!(audit.items.len(), 1);
        let record = serde_json::to_string(&audit.items[0]).unwrap();
        for personal in [
            v.session_id.as_str(),
            v.visitor_id.as_str(),
            v.token.as_str(),
            "please delete me",
        ] {
            assert!(!record.contains(personal), "audit record holds {personal}: {record}");
        }
        assert!(record.contains("conversation-delete") && record.contains("bob"));
    }

    /// GIVEN a visitor and an agent WHEN each frame carries a `ref` THEN its answer (`hello`,
    /// `ack`, `history`, `read`, `conversations`, `joined`, `deleted`) and every error (a bad
    /// field, an unknown action, a refused permission) echo it; fan-out to others carries none.
    pub async fn every_answer_and_error_echoes_the_frames_ref<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        agent_online(c, "A1=", "alice").await;
        let sid = v.session_id.as_str();
        let answers: Vec<(&str, Value, &str)> = vec![
            ("V1=", json!({"action": "hello", "ref": "r1"}), "hello"),
            (
                "V1=",
                json!({"action": "sendMessage", "ref": "r2", "clientMsgId": "c-1", "text": "hi"}),
                "ack",
            ),
            ("V1=", json!({"action": "history", "ref": "r3"}), "history"),
            (
                "A1=",
                json!({"action": "markRead", "ref": "r4", "sessionId": sid, "seq": 1}),
                "read",
            ),
            (
                "A1=",
                json!({"action": "listConversations", "ref": "r5"}),
                "conversations",
            ),
            (
                "A1=",
                json!({"action": "join", "ref": "r6", "sessionId": sid}),
                "joined",
            ),
            ("V1=", json!({"action": "history", "ref": "r7", "limit": 0}), "error"),
            ("V1=", json!({"action": "fly", "ref": "r8"}), "error"),
            ("V1=", json!({"action": "join", "ref": "r9", "sessionId": sid}), "error"),
            ("V1=", json!({"action": "typing", "ref": "r10"}), "error"),
            (
                "A1=",
                json!({"action": "deleteConversation", "ref": "r11", "sessionId": sid}),
                "deleted",
            ),
        ];
        for (conn, frame, kind) in answers {
            c.send(conn, frame.clone()).await;
            let f = c.last(conn);
            assert_eq!(
                (f["type"].as_str(), f["ref"].as_str()),
                (Some(kind), frame["ref"].as_str()),
                "{frame} answered {f}"
            );
        }
        assert!(
            c.frames("A1=")
                .iter()
                .any(|f| f["type"] == "message" && f.get("ref").is_none()),
            "fan-out carries no ref"
        );
        let to_visitor = c.frames_of("V1=", "read");
        assert_eq!(to_visitor.len(), 1, "the agent's read reached the visitor");
        assert!(to_visitor[0].get("ref").is_none(), "{}", to_visitor[0]);
    }

    /// GIVEN any connection WHEN it sends `hello` THEN it learns the protocol version, the
    /// actions and the deployment's limits, and nothing is stored.
    pub async fn hello_states_the_protocol_version_and_limits<B: Backend>(c: &Chat<B>) {
        visitor_online(c, "V1=").await;
        let before = c.stored().await;
        c.send("V1=", json!({"action": "hello"})).await;
        let h = c.last("V1=");
        assert_eq!(h["type"], "hello");
        assert_eq!(h["protocol"], chat_core::api::frames::PROTOCOL_VERSION);
        assert_eq!(h["protocol"], "1.1");
        assert_eq!(
            h["actions"],
            json!(message::ACTIONS),
            "every action the function serves"
        );
        assert_eq!(
            h["limits"],
            json!({
                "maxFrameBytes": 32768,
                "maxTextBytes": 4096,
                "visitorMessagesPerMinute": 30,
                "historyPage": {"default": 50, "max": 100},
                "conversationsPage": {"default": 20, "max": 50},
            })
        );
        assert!(h.get("ref").is_none(), "no ref asked, none echoed");
        assert_eq!(c.stored().await, before);
    }

    /// GIVEN a visitor WHEN it sends a message THEN the ack carries the message as stored (text,
    /// author, role, time), the same the others receive, also for a retry.
    pub async fn the_ack_carries_the_stored_message<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        agent_online(c, "A1=", "alice").await;
        let ack = say(c, "V1=", "c-1", "  Hello there  ").await;
        let m = &ack["message"];
        assert_eq!(
            (
                m["text"].as_str(),
                m["role"].as_str(),
                m["authorId"].as_str(),
                m["seq"].as_u64(),
                m["sessionId"].as_str(),
                m["clientMsgId"].as_str(),
            ),
            (
                c.frames_of("A1=", "message")[0]["message"]["text"].as_str(),
                Some("visitor"),
                Some(v.visitor_id.as_str()),
                Some(1),
                Some(v.session_id.as_str()),
                Some("c-1"),
            ),
            "{ack}"
        );
        assert_eq!(m["createdAt"], ack["createdAt"]);
        assert_eq!(m["createdAt"].as_i64(), Some(c.now().millis()));
        assert_eq!(&c.frames_of("A1=", "message")[0]["message"], m, "what the others see");
        assert!(m.get("authorName").is_none(), "visitors have no display name");
        let again = say(c, "V1=", "c-1", "  Hello there  ").await;
        assert_eq!((again["duplicate"].as_bool(), &again["message"]), (Some(true), m));
    }

    /// GIVEN an agent with a display name WHEN it writes THEN the visitor's `message` and the
    /// agent's `ack` carry `authorName`; a renamed agent's next message carries the new name.
    pub async fn agent_messages_carry_the_display_name<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        agent_online(c, "A1=", "alice").await;
        let send = |id: &'static str| json!({"action": "sendMessage", "sessionId": v.session_id, "clientMsgId": id, "text": "Hello, I am here"});
        c.send("A1=", send("a-1")).await;
        assert_eq!(c.last("A1=")["message"]["authorName"], "alice");
        assert_eq!(c.frames_of("V1=", "message")[0]["message"]["authorName"], "alice");

        let site = SiteId::parse(SITE).unwrap();
        let mut alice = c
            .backend
            .store()
            .get_agent(&site, &AgentId::parse("alice").unwrap())
            .await
            .unwrap()
            .unwrap();
        alice.display_name = "Alice from Support".into();
        c.backend.store().put_agent(&alice).await.unwrap();
        c.send("A1=", send("a-2")).await;
        assert_eq!(
            c.frames_of("V1=", "message")[1]["message"]["authorName"],
            "Alice from Support"
        );
    }

    /// GIVEN a conversation with one message WHEN a reader marks more than there is, then less
    /// THEN the sender's `read` answer is the marker as stored: never past the last message,
    /// never back.
    pub async fn mark_read_answers_the_sender_with_the_stored_marker<B: Backend>(c: &Chat<B>) {
        let v = visitor_online(c, "V1=").await;
        agent_online(c, "A1=", "alice").await;
        say(c, "V1=", "c-1", "one").await;
        say(c, "V1=", "c-2", "two").await;
        for (asked, stored) in [(99, 2), (1, 2)] {
            c.send(
                "A1=",
                json!({"action": "markRead", "sessionId": v.session_id, "seq": asked, "ref": format!("m{asked}")}),
            )
            .await;
            let r = c.last("A1=");
            assert_eq!(
                (r["type"].as_str(), r["role"].as_str(), r["seq"].as_u64()),
                (Some("read"), Some("agent"), Some(stored)),
                "asked {asked}: {r}"
            );
        }
        c.send("V1=", json!({"action": "markRead", "seq": 2})).await;
        assert_eq!(
            (c.last("V1=")["role"].as_str(), c.last("V1=")["seq"].as_u64()),
            (Some("visitor"), Some(2))
        );
        assert_eq!(
            c.frames_of("A1=", "read").last().unwrap()["role"],
            "visitor",
            "the agents are told"
        );
    }

    /// GIVEN three conversations WHEN an agent pages them one by one THEN `next` is a cursor
    /// until the last page, where it is `null` (present); a cursor reused for another query
    /// (another status, no status, another site's agent, a forged one) is `invalid_request`
    /// naming `cursor`, and nothing is stored.
    pub async fn conversation_cursors_are_bound_to_their_query<B: Backend>(c: &Chat<B>) {
        for i in 0..3 {
            let conn = format!("V{i}=");
            visitor_online(c, &conn).await;
            say(c, &conn, "c-1", "hello").await;
            c.advance(Duration::from_secs(1));
        }
        agent_online(c, "A1=", "alice").await;
        agent_online(c, "E1=", "eve").await;
        let before = c.stored().await;
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut first_cursor = None;
        loop {
            let mut frame = json!({"action": "listConversations", "status": "open", "limit": 1});
            if let Some(cur) = &cursor {
                frame["cursor"] = json!(cur);
            }
            c.send("A1=", frame).await;
            let page = c.last("A1=");
            assert_eq!(page["type"], "conversations", "{page}");
            assert!(
                page.as_object().unwrap().contains_key("next"),
                "next is always present: {page}"
            );
            seen.extend(page["items"].as_array().unwrap().iter().map(|i| i["sessionId"].clone()));
            match page["next"].as_str() {
                Some(n) => {
                    first_cursor.get_or_insert(n.to_owned());
                    cursor = Some(n.to_owned());
                }
                None => {
                    assert!(page["next"].is_null());
                    break;
                }
            }
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        let used = first_cursor.unwrap();
        for (conn, frame) in [
            (
                "A1=",
                json!({"action": "listConversations", "status": "closed", "cursor": used}),
            ),
            ("A1=", json!({"action": "listConversations", "cursor": used})),
            (
                "E1=",
                json!({"action": "listConversations", "status": "open", "cursor": used}),
            ),
            (
                "A1=",
                json!({"action": "listConversations", "status": "open", "cursor": "eyJza2lwIjoxfQ"}),
            ),
        ] {
            c.send(conn, frame.clone()).await;
            let f = c.last(conn);
            assert_eq!(
                (code(&f), f["field"].as_str()),
                ("invalid_request", Some("cursor")),
                "{frame}: {f}"
            );
        }
        assert_eq!(c.stored().await, before);
    }

    /// GIVEN a connected visitor WHEN a frame's `ref` is not a string of the `clientMsgId`
    /// alphabet THEN `invalid_request` naming `ref` (not echoed), and nothing is stored.
    pub async fn refs_are_checked_and_never_stored<B: Backend>(c: &Chat<B>) {
        visitor_online(c, "V1=").await;
        let before = c.stored().await;
        for bad in [
            json!(5),
            json!(""),
            json!("has space"),
            json!("x".repeat(65)),
            json!({"a": 1}),
        ] {
            c.send(
                "V1=",
                json!({"action": "sendMessage", "clientMsgId": "c-1", "text": "hi", "ref": bad}),
            )
            .await;
            let f = c.last("V1=");
            assert_eq!(
                (code(&f), f["field"].as_str()),
                ("invalid_request", Some("ref")),
                "{bad}"
            );
            assert!(f.get("ref").is_none(), "a bad ref is not echoed: {f}");
        }
        assert_eq!(c.stored().await, before);
    }
}
