//! Authorization checked at use (issue 11), as flows through the real handlers:
//! revocation and expiry at the next frame, the agent IP allow-list on every
//! frame and HTTP call, and agent token bounds. Each is a test for both stores
//! via [`auth_suite!`](crate::auth_suite).

use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use chat_core::auth::{MAX_AGENT_TOKEN_LIFETIME, MAX_CLOCK_SKEW};
use chat_core::clock::Timestamp;
use chat_core::domain::{Agent, AgentId, AgentRole, ConnectionId, SessionId, SiteId};
use chat_core::storage::{AuditStore, ConnectionStore, MessageStore, SiteStore};
use serde_json::{Value, json};

use crate::backends::Backend;
use crate::chat::*;

/// Generates one `#[tokio::test]` per authorization flow for the backend built by `$make`.
#[macro_export]
macro_rules! auth_suite {
    ($make:expr) => {
        $crate::auth_suite_cases!($make);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let chat = $crate::chat::Chat::new($make).await;
                $crate::auth_flows::$case(&chat).await;
            }
        )*
    };
}

pub use cases::*;

/// The flows. Every `pub async fn` here is a case of [`auth_suite!`](crate::auth_suite),
/// listed once, by the attribute: a flow added here runs on every backend.
#[eurochat_test_macros::suite(auth_suite)]
pub mod cases {
    use super::*;

    /// The address the fixtures connect from (outside any allow-list set here).
    const OUTSIDE: &str = "203.0.113.77";
    /// An address inside the allow-list `192.0.2.0/24`.
    const INSIDE: &str = "192.0.2.10";
    const ALLOW_LIST: &str = "192.0.2.0/24";

    fn code(frame: &Value) -> &str {
        frame["code"].as_str().unwrap_or_default()
    }

    fn ids(site: &str, agent: &str) -> (SiteId, AgentId) {
        (SiteId::parse(site).unwrap(), AgentId::parse(agent).unwrap())
    }

    /// A token for `alice` (admin of acme) issued `issued` with lifetime `ttl`.
    fn token_at<B: Backend>(c: &Chat<B>, issued: Timestamp, ttl: Duration) -> String {
        let (site, agent) = ids(SITE, "alice");
        c.config().agent_keys.mint(&site, &agent, AgentRole::Admin, issued, ttl)
    }

    async fn alice<B: Backend>(c: &Chat<B>) -> Agent {
        let (site, agent) = ids(SITE, "alice");
        c.backend.store().get_agent(&site, &agent).await.unwrap().unwrap()
    }

    /// Changes alice as `eurochat-admin` does: deactivation and `revoke-tokens` set
    /// `tokensValidAfter` to now; reactivation keeps it.
    async fn change_alice<B: Backend>(c: &Chat<B>, change: impl FnOnce(&mut Agent, Timestamp)) {
        let mut a = alice(c).await;
        change(&mut a, c.now());
        c.backend.store().put_agent(&a).await.unwrap();
    }

    /// A frame from `conn` whose request context carries `ip`.
    async fn frame_from<B: Backend>(c: &Chat<B>, conn: &str, frame: Value, ip: &str) -> Value {
        let mut e: Value = serde_json::from_str(include_str!("../events/ws-message.json")).unwrap();
        e["requestContext"]["connectionId"] = json!(conn);
        e["requestContext"]["identity"]["sourceIp"] = json!(ip);
        e["body"] = json!(frame.to_string());
        c.with_verdict(&mut e);
        let event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(e).unwrap();
        let deps = message::Deps {
            store: c.backend.store(),
            gateways: &c.gateway,
            clock: &c.clock,
            config: &c.config(),
        };
        assert_eq!(message::handle(event, &deps).await.status_code, 200);
        c.last(conn)
    }

    /// An agent connection from `ip`; returns the status.
    async fn connect_from_ip<B: Backend>(c: &Chat<B>, conn: &str, token: &str, ip: &str) -> i64 {
        let protocols = subprotocols(token);
        c.connect_event(
            conn,
            &[],
            &[("Origin", ORIGIN), ("Sec-WebSocket-Protocol", &protocols)],
            ip,
        )
        .await
        .status_code
    }

    /// `POST /v1/gdpr/export` or `/erase` (`erase`) from `ip`, with extra headers.
    async fn gdpr_from<B: Backend>(
        c: &Chat<B>,
        erase: bool,
        bearer: &str,
        body: Value,
        ip: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut e: Value = serde_json::from_str(include_str!("../events/http-post-sessions.json")).unwrap();
        e["body"] = json!(body.to_string());
        e["headers"]["authorization"] = json!(format!("Bearer {bearer}"));
        e["requestContext"]["http"]["sourceIp"] = json!(ip);
        for (k, v) in headers {
            e["headers"][k.to_lowercase()] = json!(v);
        }
        let event: ApiGatewayV2httpRequest = serde_json::from_value(e).unwrap();
        let config = c.config();
        let r = if erase {
            let deps = gdpr_delete::Deps {
                store: c.backend.store(),
                gateway: c.gateway.as_ref(),
                clock: &c.clock,
                config: &config,
            };
            gdpr_delete::handle(event, &deps).await
        } else {
            let deps = gdpr_export::Deps {
                store: c.backend.store(),
                clock: &c.clock,
                config: &config,
                page_bytes: 4 * 1024 * 1024,
            };
            gdpr_export::handle(event, &deps).await
        };
        let body = match r.body {
            Some(Body::Text(t)) => serde_json::from_str(&t).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        (u16::try_from(r.status_code).unwrap_or(0), body)
    }

    /// A visitor with a connection and `n` messages; returns the session id.
    async fn conversation<B: Backend>(c: &Chat<B>, conn: &str, n: usize) -> String {
        let v = c.visitor().await;
        assert_eq!(c.connect(conn, &v.token).await, 200);
        for i in 0..n {
            c.send(
                conn,
                json!({"action": "sendMessage", "clientMsgId": format!("m{i}"), "text": "hello"}),
            )
            .await;
        }
        v.session_id
    }

    async fn message_count<B: Backend>(c: &Chat<B>, session: &str) -> usize {
        let id = SessionId::parse(session).unwrap();
        c.backend
            .store()
            .list_messages(&id, 0, 100)
            .await
            .unwrap()
            .messages
            .len()
    }

    async fn audit_count<B: Backend>(c: &Chat<B>) -> usize {
        let site = SiteId::parse(SITE).unwrap();
        c.backend
            .store()
            .list_audit(&site, None, 100, c.now())
            .await
            .unwrap()
            .items
            .len()
    }

    async fn connection_exists<B: Backend>(c: &Chat<B>, conn: &str) -> bool {
        let id = ConnectionId::parse(conn).unwrap();
        c.backend.store().get_connection(&id, c.now()).await.unwrap().is_some()
    }

    /// Asserts `conn` was refused with `unauthorized`, closed, and its record deleted.
    async fn assert_refused_and_closed<B: Backend>(c: &Chat<B>, conn: &str, reply: &Value) {
        assert_eq!(
            (reply["type"].as_str(), code(reply)),
            (Some("error"), "unauthorized"),
            "{reply}"
        );
        assert!(
            c.gateway.closed().contains(&ConnectionId::parse(conn).unwrap()),
            "the socket is closed"
        );
        assert!(!connection_exists(c, conn).await, "its record is deleted");
    }

    /// GIVEN an agent with an open socket WHEN the agent is deactivated THEN its next frame
    /// is refused `unauthorized`, the socket is closed, and no action succeeds any more
    /// (list, history, send, delete); nothing else stored changes.
    pub async fn deactivated_agent_is_refused_at_the_next_frame_and_disconnected<B: Backend>(c: &Chat<B>) {
        let session = conversation(c, "V1=", 2).await;
        let token = c.agent_token(SITE, "alice", AgentRole::Admin);
        assert_eq!(c.connect("A1=", &token).await, 200);
        let listed = frame_from(c, "A1=", json!({"action": "listConversations"}), OUTSIDE).await;
        assert_eq!(listed["type"], "conversations", "{listed}");

        change_alice(c, |a, now| {
            a.active = false;
            a.tokens_valid_after = Some(now);
        })
        .await;
        let before = c.stored().await;
        let reply = frame_from(c, "A1=", json!({"action": "listConversations"}), OUTSIDE).await;
        assert_refused_and_closed(c, "A1=", &reply).await;

        for frame in [
            json!({"action": "listConversations"}),
            json!({"action": "history", "sessionId": session}),
            json!({"action": "sendMessage", "sessionId": session, "clientMsgId": "a1", "text": "still here?"}),
            json!({"action": "deleteConversation", "sessionId": session}),
        ] {
            let reply = frame_from(c, "A1=", frame.clone(), OUTSIDE).await;
            assert_eq!(code(&reply), "unauthorized", "{frame}");
        }
        let mut after = c.stored().await;
        let mut expected = before.clone();
        // Only the refused connection (lookup item and online-agent item) is gone.
        for kind in ["connection", "agentOnline"] {
            *expected.entry(kind.to_owned()).or_default() -= 1;
        }
        expected.retain(|_, n| *n > 0);
        after.retain(|_, n| *n > 0);
        assert_eq!(after, expected);
        assert_eq!(message_count(c, &session).await, 2, "nothing sent, nothing deleted");
        assert_eq!(audit_count(c).await, 0);
        assert_eq!(c.connect("A2=", &token).await, 401, "and it cannot reconnect");
    }

    /// GIVEN an agent connected with a one-hour token WHEN the hour passes (the connection
    /// itself lives on) THEN its next frame is refused and the socket closed.
    pub async fn expired_token_on_an_open_socket_is_refused<B: Backend>(c: &Chat<B>) {
        let token = token_at(c, c.now(), Duration::from_secs(3600));
        assert_eq!(c.connect("A1=", &token).await, 200);
        c.advance(Duration::from_secs(3599));
        let ok = frame_from(c, "A1=", json!({"action": "listConversations"}), OUTSIDE).await;
        assert_eq!(ok["type"], "conversations");
        c.advance(Duration::from_secs(1));
        assert!(connection_exists(c, "A1=").await, "the connection record is still live");
        let reply = frame_from(c, "A1=", json!({"action": "listConversations"}), OUTSIDE).await;
        assert_refused_and_closed(c, "A1=", &reply).await;
        assert_eq!(c.connect("A2=", &token).await, 401);
    }

    /// GIVEN an agent's token and open socket WHEN its tokens are revoked and the agent is
    /// deactivated and reactivated THEN the old token is refused at connect, on the open
    /// socket and over HTTP; a token minted in the revocation's second is refused too; a
    /// token minted later works everywhere.
    pub async fn revoked_tokens_stay_dead_after_reactivation_everywhere<B: Backend>(c: &Chat<B>) {
        let session = conversation(c, "V1=", 1).await;
        let old = c.agent_token(SITE, "alice", AgentRole::Admin);
        assert_eq!(c.connect("A1=", &old).await, 200);
        c.advance(Duration::from_millis(1500));

        change_alice(c, |a, now| {
            a.active = false;
            a.tokens_valid_after = Some(now);
        })
        .await;
        change_alice(c, |a, _| a.active = true).await;
        assert!(
            alice(c).await.tokens_valid_after.is_some(),
            "reactivation keeps the revocation"
        );
        let same_second = c.agent_token(SITE, "alice", AgentRole::Admin);
        let before = c.stored().await;
        let audits = audit_count(c).await;

        let reply = frame_from(c, "A1=", json!({"action": "listConversations"}), OUTSIDE).await;
        assert_refused_and_closed(c, "A1=", &reply).await;
        assert_eq!(c.connect("A2=", &old).await, 401);
        assert_eq!(
            c.connect("A3=", &same_second).await,
            401,
            "minted in the revocation's second"
        );
        let body = json!({"sessionId": session});
        let (status, r) = gdpr_from(c, false, &old, body.clone(), OUTSIDE, &[]).await;
        assert_eq!((status, r["error"]["code"].as_str()), (401, Some("unauthorized")));
        let (status, _) = gdpr_from(c, true, &old, body.clone(), OUTSIDE, &[]).await;
        assert_eq!(status, 401);
        let mut after = c.stored().await;
        let mut expected = before.clone();
        for kind in ["connection", "agentOnline"] {
            *expected.entry(kind.to_owned()).or_default() -= 1;
        }
        expected.retain(|_, n| *n > 0);
        after.retain(|_, n| *n > 0);
        assert_eq!(after, expected, "refusals store nothing");
        assert_eq!(audit_count(c).await, audits);
        assert_eq!(message_count(c, &session).await, 1);

        c.advance(Duration::from_secs(1));
        let fresh = c.agent_token(SITE, "alice", AgentRole::Admin);
        assert_eq!(c.connect("A4=", &fresh).await, 200);
        let ok = frame_from(c, "A4=", json!({"action": "listConversations"}), OUTSIDE).await;
        assert_eq!(ok["type"], "conversations", "{ok}");
        let (status, r) = gdpr_from(c, false, &fresh, body, OUTSIDE, &[]).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["subject"]["sessionCount"], 1);
    }

    /// GIVEN an agent connected while the site had no allow-list WHEN an allow-list that
    /// excludes its address is set THEN its next frame is refused and the socket closed;
    /// frames from inside the list pass, and each frame's own source address counts.
    pub async fn allow_list_change_after_connect_refuses_the_next_frame<B: Backend>(c: &Chat<B>) {
        let token = c.agent_token(SITE, "alice", AgentRole::Admin);
        assert_eq!(connect_from_ip(c, "A1=", &token, OUTSIDE).await, 200);
        assert_eq!(connect_from_ip(c, "A2=", &token, INSIDE).await, 200);
        c.update_site(|s| s.agent_ip_allowlist = Some(vec![ALLOW_LIST.parse().unwrap()]))
            .await;

        let ok = frame_from(c, "A2=", json!({"action": "listConversations"}), INSIDE).await;
        assert_eq!(ok["type"], "conversations");
        let reply = frame_from(c, "A1=", json!({"action": "listConversations"}), OUTSIDE).await;
        assert_refused_and_closed(c, "A1=", &reply).await;
        // The check uses the frame's source address, not the one the socket opened from.
        let reply = frame_from(c, "A2=", json!({"action": "listConversations"}), OUTSIDE).await;
        assert_refused_and_closed(c, "A2=", &reply).await;
        assert_eq!(connect_from_ip(c, "A3=", &token, OUTSIDE).await, 403);
        assert_eq!(connect_from_ip(c, "A4=", &token, INSIDE).await, 200);
    }

    /// GIVEN a site with an agent IP allow-list WHEN its admin exports or erases from
    /// outside it (even claiming an inside address in X-Forwarded-For) THEN 403 and
    /// nothing is exported, erased or stored; from inside it THEN it works.
    pub async fn gdpr_calls_from_outside_the_allow_list_are_forbidden<B: Backend>(c: &Chat<B>) {
        let session = conversation(c, "V1=", 3).await;
        c.update_site(|s| s.agent_ip_allowlist = Some(vec![ALLOW_LIST.parse().unwrap()]))
            .await;
        let admin = c.agent_token(SITE, "alice", AgentRole::Admin);
        let before = c.stored().await;
        let body = json!({"sessionId": session});
        let spoofed = [("X-Forwarded-For", INSIDE), ("X-Real-IP", INSIDE)];
        for erase in [false, true] {
            for headers in [&[][..], &spoofed[..]] {
                let (status, r) = gdpr_from(c, erase, &admin, body.clone(), OUTSIDE, headers).await;
                assert_eq!((status, r["error"]["code"].as_str()), (403, Some("forbidden")), "{r}");
                assert!(r.get("sessions").is_none() && r.get("erased").is_none(), "{r}");
            }
        }
        assert_eq!(c.stored().await, before, "nothing erased or stored (no audit record)");
        assert_eq!(audit_count(c).await, 0);
        assert_eq!(message_count(c, &session).await, 3);

        let (status, r) = gdpr_from(c, false, &admin, body.clone(), INSIDE, &[]).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["subject"]["sessionCount"], 1);
        let (status, r) = gdpr_from(c, true, &admin, body, INSIDE, &[]).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(message_count(c, &session).await, 0);
    }

    /// GIVEN validly signed agent tokens issued beyond the clock skew in the future, or
    /// with a lifetime over the maximum WHEN used at connect or over HTTP THEN 401, and
    /// nothing is stored.
    pub async fn future_and_long_lived_tokens_are_refused<B: Backend>(c: &Chat<B>) {
        let session = conversation(c, "V1=", 1).await;
        let future = token_at(
            c,
            c.now().plus(MAX_CLOCK_SKEW + Duration::from_secs(2)),
            Duration::from_secs(3600),
        );
        let too_long = token_at(c, c.now(), MAX_AGENT_TOKEN_LIFETIME + Duration::from_secs(1));
        let within_skew = token_at(
            c,
            c.now().plus(MAX_CLOCK_SKEW - Duration::from_secs(1)),
            Duration::from_secs(3600),
        );
        let before = c.stored().await;
        for (i, bad) in [&future, &too_long].into_iter().enumerate() {
            assert_eq!(c.connect(&format!("X{i}="), bad).await, 401, "case {i}");
            let (status, r) = gdpr_from(c, false, bad, json!({"sessionId": session}), OUTSIDE, &[]).await;
            assert_eq!(
                (status, r["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "case {i}"
            );
            let (status, _) = gdpr_from(c, true, bad, json!({"sessionId": session}), OUTSIDE, &[]).await;
            assert_eq!(status, 401, "case {i}");
        }
        assert_eq!(c.stored().await, before);
        assert_eq!(message_count(c, &session).await, 1);
        assert_eq!(
            c.connect("Y1=", &within_skew).await,
            200,
            "a little clock skew is tolerated"
        );
    }

    /// GIVEN a visitor chatting WHEN every agent is deactivated or the allow-list excludes
    /// the visitor's address THEN the visitor's frames are unaffected.
    pub async fn visitor_frames_are_not_rechecked<B: Backend>(c: &Chat<B>) {
        conversation(c, "V1=", 1).await;
        change_alice(c, |a, now| {
            a.active = false;
            a.tokens_valid_after = Some(now);
        })
        .await;
        c.update_site(|s| s.agent_ip_allowlist = Some(vec![ALLOW_LIST.parse().unwrap()]))
            .await;
        let reply = frame_from(
            c,
            "V1=",
            json!({"action": "sendMessage", "clientMsgId": "later", "text": "still fine"}),
            OUTSIDE,
        )
        .await;
        assert_eq!(reply["type"], "ack", "{reply}");
        assert!(c.gateway.closed().is_empty());
    }

    /// GIVEN refusals at every door (an expired token and a revoked agent on a frame, an
    /// address outside the allow-list at connect and over HTTP, a bad token) WHEN they
    /// happen THEN each is a security event with its reason, route, site and agent and a
    /// keyed IP tag, and the log holds neither the address nor the token. Not in
    /// [`auth_suite!`](crate::auth_suite): it captures the thread's log, so it runs in a
    /// test binary of its own (`tests/auth_security_log.rs`) where every test does.
    #[not_in_suite]
    pub async fn refusals_are_security_events_without_ip_or_token<B: Backend>(c: &Chat<B>) {
        use chat_core::telemetry::{CapturedLogs, filter_at, json_subscriber_with};
        let logs = CapturedLogs::new();
        let _guard = tracing::subscriber::set_default(json_subscriber_with(logs.clone(), filter_at("trace")));

        let short = token_at(c, c.now(), Duration::from_secs(60));
        assert_eq!(c.connect("A1=", &short).await, 200);
        let token = c.agent_token(SITE, "alice", AgentRole::Admin);
        assert_eq!(c.connect("A2=", &token).await, 200);
        c.advance(Duration::from_secs(60));
        frame_from(c, "A1=", json!({"action": "listConversations"}), OUTSIDE).await;
        change_alice(c, |a, now| a.tokens_valid_after = Some(now)).await;
        frame_from(c, "A2=", json!({"action": "listConversations"}), OUTSIDE).await;
        c.advance(Duration::from_secs(1));
        c.update_site(|s| s.agent_ip_allowlist = Some(vec![ALLOW_LIST.parse().unwrap()]))
            .await;
        let fresh = c.agent_token(SITE, "alice", AgentRole::Admin);
        assert_eq!(connect_from_ip(c, "A3=", &fresh, OUTSIDE).await, 403);
        gdpr_from(c, false, &fresh, json!({"visitorId": "x"}), OUTSIDE, &[]).await;
        assert_eq!(connect_from_ip(c, "A4=", "at1.e30.c2ln", OUTSIDE).await, 401);
        // Visitors' refused handshakes too: a guessed token, none at all.
        let guessed = format!("vt1.{}.{}", chat_core::domain::SessionId::generate(), "A".repeat(43));
        assert_eq!(connect_from_ip(c, "V1=", &guessed, OUTSIDE).await, 401);
        let bare = c.connect_event("V2=", &[], &[("Origin", ORIGIN)], OUTSIDE).await;
        assert_eq!(bare.status_code, 401);

        let text = logs.text();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["target"] == chat_core::security_log::TARGET)
            .collect();
        let seen: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e["reason"].as_str().unwrap_or(""), e["route"].as_str().unwrap_or("")))
            .collect();
        for expected in [
            ("token_expired", "frame"),
            ("agent_revoked", "frame"),
            ("ip_not_allowed", "connect"),
            ("ip_not_allowed", "gdpr_export"),
            ("token_invalid", "connect"),
            ("unauthorized", "connect"),
            ("no_token", "connect"),
        ] {
            assert!(seen.contains(&expected), "{expected:?} in {seen:?}");
        }
        let tag = c.config().pseudonymizer.ip_tag(OUTSIDE.parse().unwrap());
        for e in events.iter().filter(|e| {
            !matches!(
                e["reason"].as_str(),
                Some("token_invalid" | "unauthorized" | "no_token")
            )
        }) {
            assert_eq!(
                (e["site"].as_str(), e["agent"].as_str()),
                (Some(SITE), Some("alice")),
                "{e}"
            );
            assert_eq!(e["ip_tag"].as_str(), Some(tag.as_str()), "{e}");
        }
        for e in events.iter().filter(|e| e["route"] == "connect") {
            assert_eq!(
                e["ip_tag"].as_str(),
                Some(tag.as_str()),
                "every refused handshake is traceable: {e}"
            );
        }
        for secret in [
            OUTSIDE,
            short.as_str(),
            token.as_str(),
            fresh.as_str(),
            guessed.as_str(),
        ] {
            assert!(!text.contains(secret), "the log holds no address or token");
        }
    }

    /// GIVEN agents listening on open sockets without sending a frame WHEN one is
    /// revoked as `eurochat-admin revoke-tokens` does it (no management endpoint, so
    /// the socket stays open), another's token expires, and then the site gets an
    /// allow-list excluding a third's address THEN a visitor's message reaches none
    /// of them, and their next frames are refused.
    pub async fn revoked_expired_or_disallowed_agents_receive_nothing_more<B: Backend>(c: &Chat<B>) {
        let alice_token = c.agent_token(SITE, "alice", AgentRole::Admin);
        let bob_short = c.config().agent_keys.mint(
            &SiteId::parse(SITE).unwrap(),
            &AgentId::parse("bob").unwrap(),
            AgentRole::Agent,
            c.now(),
            Duration::from_secs(3600),
        );
        assert_eq!(c.connect("ALICE=", &alice_token).await, 200);
        assert_eq!(c.connect("BOB=", &bob_short).await, 200);
        let store = c.backend.store();
        eurochat_admin::revoke_tokens(store, SITE, "alice", c.now())
            .await
            .unwrap();
        assert_eq!(
            eurochat_admin::forget_agent_connections(store, SITE, Some("alice"), c.now())
                .await
                .unwrap(),
            1
        );
        c.advance(Duration::from_secs(3601));
        let fresh = c.agent_token(SITE, "alice", AgentRole::Admin);
        assert_eq!(connect_from_ip(c, "OUT=", &fresh, OUTSIDE).await, 200);
        let v = c.visitor().await;
        assert_eq!(c.connect("V1=", &v.token).await, 200);
        c.send(
            "V1=",
            json!({"action": "sendMessage", "clientMsgId": "c1", "text": "card 4111"}),
        )
        .await;
        assert_eq!(c.frames_of("OUT=", "message").len(), 1, "a live agent still receives");
        for conn in ["ALICE=", "BOB="] {
            assert!(c.frames_of(conn, "message").is_empty(), "{conn} received a message");
        }

        let spec = eurochat_admin::SiteSpec {
            id: SITE.into(),
            agent_ips: Some(vec![ALLOW_LIST.into()]),
            ..Default::default()
        };
        eurochat_admin::put_site(store, &spec, c.now()).await.unwrap();
        c.send(
            "V1=",
            json!({"action": "sendMessage", "clientMsgId": "c2", "text": "card 5500"}),
        )
        .await;
        assert_eq!(
            c.frames_of("OUT=", "message").len(),
            1,
            "an address the new allow-list excludes receives nothing"
        );
        for conn in ["ALICE=", "BOB=", "OUT="] {
            let refused = frame_from(c, conn, json!({"action": "listConversations"}), OUTSIDE).await;
            assert_eq!(code(&refused), "unauthorized", "{conn}: {refused}");
        }
    }

    /// The console the deployment serves (`EUROCHAT_CONSOLE_ORIGINS`, the HTTP API's
    /// origins) is on no site's list: agents may `$connect` from it, visitors may not,
    /// and without the setting it is an origin like any other.
    pub async fn agents_connect_from_the_deployments_console_and_visitors_do_not<B: Backend>(c: &Chat<B>) {
        const CONSOLE: &str = "https://h1a2b3c4d5.execute-api.eu-central-1.amazonaws.com";
        let agent = c.agent_token(SITE, "alice", AgentRole::Admin);
        assert_eq!(
            c.connect_from("c-console-0", &agent, CONSOLE).await,
            403,
            "not configured"
        );
        c.update_config(|cfg| {
            cfg.console_origins = vec![
                chat_core::domain::Origin::parse("https://chat-api.acme.example").unwrap(),
                chat_core::domain::Origin::parse(CONSOLE).unwrap(),
            ]
        });
        assert_eq!(c.connect_from("c-console-1", &agent, CONSOLE).await, 200);
        let v = c.visitor().await;
        assert_eq!(
            c.connect_from("c-console-2", &v.token, CONSOLE).await,
            403,
            "visitors use the site's pages"
        );
        assert_eq!(c.connect_from("c-console-3", &agent, "https://evil.example").await, 403);
    }
}
