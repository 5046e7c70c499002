//! GDPR export and erasure, and the retention job (issue 4), as flows through the
//! real handlers; each is a test for both stores via [`gdpr_suite!`](crate::gdpr_suite).

use std::time::Duration;

use chat_core::domain::{AgentRole, SessionId, SiteId};
use chat_core::policy;
use chat_core::storage::{AuditStore, MessageStore, RetentionStore, SessionStore, SubjectStore};
use serde_json::{Value, json};

use crate::backends::Backend;
use crate::chat::*;

/// Generates one `#[tokio::test]` per GDPR flow for the backend built by `$make`.
#[macro_export]
macro_rules! gdpr_suite {
    ($make:expr) => {
        $crate::gdpr_suite_cases!($make);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let chat = $crate::chat::Chat::new($make).await;
                $crate::gdpr_flows::$case(&chat).await;
            }
        )*
    };
}

pub use cases::*;

/// The flows. Every `pub async fn` here is a case of [`gdpr_suite!`](crate::gdpr_suite),
/// listed once, by the attribute: a flow added here runs on every backend.
#[eurochat_test_macros::suite(gdpr_suite)]
pub mod cases {
    use super::*;

    const PAGE: usize = 4 * 1024 * 1024;

    fn admin<B: Backend>(c: &Chat<B>) -> String {
        c.agent_token(SITE, "alice", AgentRole::Admin)
    }

    /// A visitor who chatted, with a pre-chat form; returns the visitor.
    async fn chatty_visitor<B: Backend>(c: &Chat<B>, conn: &str, email: &str, messages: usize) -> Visitor {
        let consent = json!({"purpose": "support-follow-up", "policyVersion": "2026-01"});
        let r = c
            .post_session(
                &json!({"siteId": SITE, "prechat": {"name": "Grace Hopper", "email": email, "consent": consent}}),
                &[],
                &[],
            )
            .await;
        assert_eq!(r.status, 201);
        let v = Visitor {
            token: r.body["token"].as_str().unwrap().to_owned(),
            session_id: r.body["sessionId"].as_str().unwrap().to_owned(),
            visitor_id: r.body["visitorId"].as_str().unwrap().to_owned(),
        };
        assert_eq!(c.connect(conn, &v.token).await, 200);
        for i in 0..messages {
            c.send(conn, json!({"action": "sendMessage", "clientMsgId": format!("m{i}"), "text": format!("private note {i} of {email}")})).await;
        }
        v
    }

    /// GIVEN nobody by that id WHEN an admin exports THEN an empty, well-formed document.
    pub async fn export_of_an_empty_subject<B: Backend>(c: &Chat<B>) {
        let r = c
            .export(
                Some(&admin(c)),
                &json!({"visitorId": chat_core::domain::VisitorId::generate().to_string()}),
                PAGE,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["schema"], "eurochat.gdpr-export/1");
        assert_eq!(r.body["sessions"], json!([]));
        assert_eq!(r.body["subject"]["sessionCount"], 0);
        assert_eq!(r.body["next"], Value::Null);
    }

    /// GIVEN a visitor with a form, IP, user agent and messages WHEN exported THEN every one of
    /// them is in the document, each with how long it is kept and until when.
    pub async fn export_holds_everything_with_its_retention<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "grace@example.org", 3).await;
        let r = c
            .export(Some(&admin(c)), &json!({"visitorId": v.visitor_id}), PAGE)
            .await;
        assert_eq!(r.status, 200);
        let s = &r.body["sessions"][0];
        assert_eq!(s["sessionId"], v.session_id.as_str());
        assert_eq!(s["preChatForm"]["name"], "Grace Hopper");
        assert_eq!(s["preChatForm"]["email"], "grace@example.org");
        assert_eq!(s["preChatForm"]["consent"]["purpose"], "support-follow-up");
        assert_eq!(s["technical"]["ip"]["address"], "203.0.113.0/24");
        assert!(s["technical"]["ip"]["kept"]["until"].is_string());
        assert!(s["technical"]["userAgent"].as_str().unwrap().starts_with("Mozilla"));
        assert!(s["kept"]["until"].is_string() && s["kept"]["rule"].as_str().unwrap().contains("conversation"));
        assert_eq!(s["messages"].as_array().unwrap().len(), 3);
        assert_eq!(s["messages"][2]["text"], "private note 2 of grace@example.org");
        assert_eq!(s["messagesComplete"], true);
        for kind in [
            "emptySession",
            "conversation",
            "ipAddress",
            "visitorToken",
            "messages",
            "preChatForm",
            "auditRecords",
        ] {
            assert!(r.body["retention"][kind].is_string(), "retention of {kind}");
        }
        let audit = c.audit_trail().await;
        assert_eq!(audit.items.len(), 1, "the export is audited");
        assert!(!serde_json::to_string(&audit.items[0]).unwrap().contains(&v.visitor_id));
    }

    /// GIVEN a subject with thousands of messages WHEN exported in small pages THEN following
    /// `next` yields every message once, in order, and each page stays within its size.
    ///
    /// moto's cost per request grows with the data it holds, so seeding thousands of messages
    /// through its API is quadratic (minutes); the DynamoDB run uses 300 messages and smaller
    /// pages, which exercises the same paging code over several pages.
    pub async fn export_of_a_large_subject_pages_without_loss<B: Backend>(c: &Chat<B>) {
        let (count, page_bytes) = if c.backend.name() == "memory" {
            (5000u64, 64 * 1024)
        } else {
            (300, 12 * 1024)
        };
        // Tiny pages make this subject need more pages than one holder may fetch in an
        // hour by default (20; 4 MB pages in production); the limit itself is tested apart.
        c.update_config(|config| config.export_rate.limit = chat_core::policy::MAX_SLIDING_LIMIT);
        let v = c.visitor().await;
        let sid = SessionId::parse(&v.session_id).unwrap();
        let session = c.backend.store().get_session(&sid, c.now()).await.unwrap().unwrap();
        for i in 0..count {
            let text = format!("message {i}: {}", "lorem ipsum ".repeat(8));
            c.backend
                .store()
                .append_message(
                    &crate::fixtures::visitor_msg(&session, &format!("m{i}"), &text),
                    c.now(),
                    None,
                )
                .await
                .unwrap();
        }
        let second = c.visitor().await;
        let token = admin(c);
        let (mut seqs, mut pages, mut cursor) = (Vec::new(), 0, Value::Null);
        loop {
            let body = json!({"sessionId": v.session_id, "cursor": cursor});
            let r = c.export(Some(&token), &body, page_bytes).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            assert!(r.body.to_string().len() < page_bytes + 4096, "page within its budget");
            pages += 1;
            for s in r.body["sessions"].as_array().unwrap() {
                if s["sessionId"] == v.session_id.as_str() {
                    seqs.extend(
                        s["messages"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|m| m["seq"].as_u64().unwrap()),
                    );
                }
            }
            cursor = r.body["next"].clone();
            if cursor.is_null() {
                break;
            }
        }
        assert!(pages >= 3, "{pages} pages");
        assert_eq!(seqs, (1..=count).collect::<Vec<_>>());
        let other = c
            .export(
                Some(&token),
                &json!({"visitorId": second.visitor_id, "cursor": "eyJzIjoic2VzX3giLCJhIjoxfQ"}),
                PAGE,
            )
            .await;
        assert_eq!(
            (other.status, other.body["error"]["field"].as_str()),
            (400, Some("cursor")),
            "a cursor only works for its subject"
        );
    }

    /// GIVEN a visitor WHEN an admin names them by visitor id, session id or email THEN the
    /// same subject is found.
    pub async fn admins_find_subjects_by_visitor_session_or_email<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "Ada@Example.org", 1).await;
        let _other = chatty_visitor(c, "V2=", "someone@example.org", 1).await;
        let token = admin(c);
        for body in [
            json!({"visitorId": v.visitor_id}),
            json!({"sessionId": v.session_id}),
            json!({"email": "ada@example.org"}),
        ] {
            let r = c.export(Some(&token), &body, PAGE).await;
            assert_eq!(r.status, 200);
            let ids: Vec<&str> = r.body["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["sessionId"].as_str().unwrap())
                .collect();
            assert_eq!(ids, vec![v.session_id.as_str()], "{body}");
        }
        let r = c
            .export(
                Some(&token),
                &json!({"visitorId": v.visitor_id, "email": "ada@example.org"}),
                PAGE,
            )
            .await;
        assert_eq!((r.status, r.body["error"]["field"].as_str()), (400, Some("subject")));
    }

    /// GIVEN a visitor with two conversations and a live connection WHEN an admin erases them
    /// THEN every item is gone, the connection is closed, an export is empty, and others stay.
    pub async fn erasure_removes_everything_and_closes_connections<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "erase.me@example.org", 4).await;
        // A second session of the same visitor (e.g. an older one).
        let v_id = chat_core::domain::VisitorId::parse(&v.visitor_id).unwrap();
        let site = c.site().await;
        let older = crate::fixtures::session_of(&site, &v_id, c.now());
        c.backend.store().create_session(&older).await.unwrap();
        c.backend
            .store()
            .append_message(&crate::fixtures::visitor_msg(&older, "o1", "old words"), c.now(), None)
            .await
            .unwrap();
        let keep = chatty_visitor(c, "K1=", "keep@example.org", 2).await;
        let r = c
            .erase(Some(&admin(c)), &json!({"email": "erase.me@example.org"}))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["erased"]["session"], 2);
        assert_eq!(r.body["erased"]["message"], 5);
        assert!(
            c.gateway
                .closed()
                .contains(&chat_core::domain::ConnectionId::parse("V1=").unwrap())
        );
        let after = c
            .export(Some(&admin(c)), &json!({"visitorId": v.visitor_id}), PAGE)
            .await;
        assert_eq!(after.body["sessions"], json!([]), "export after erase is empty");
        assert!(
            c.backend
                .store()
                .sessions_by_email(
                    &site.id,
                    &c.config().pseudonymizer.email_lookup(
                        &site.id,
                        &chat_core::domain::Email::parse("erase.me@example.org").unwrap()
                    )
                )
                .await
                .unwrap()
                .is_empty()
        );
        let (stored, sent) = (c.stored().await, c.gateway.sent().len());
        c.send(
            "V1=",
            json!({"action": "sendMessage", "clientMsgId": "x", "text": "still here?"}),
        )
        .await;
        assert_eq!(
            (c.stored().await, c.gateway.sent().len()),
            (stored, sent),
            "nothing more flows"
        );
        let kept = c
            .export(Some(&admin(c)), &json!({"visitorId": keep.visitor_id}), PAGE)
            .await;
        assert_eq!(kept.body["sessions"][0]["messages"].as_array().unwrap().len(), 2);
        let audit = c.backend.store().list_audit(&site.id, None, 10, c.now()).await.unwrap();
        let erase = audit
            .items
            .iter()
            .find(|a| a.action == chat_core::domain::AuditAction::GdprErase)
            .expect("erasure audited");
        assert_eq!(erase.counts.get("session"), Some(&2));
        assert_eq!(erase.subject_hash.as_ref().map(String::len), Some(64));
    }

    /// GIVEN an erased subject WHEN the erasure runs again THEN it succeeds and reports zero.
    pub async fn erasing_twice_reports_zero<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "twice@example.org", 2).await;
        let token = admin(c);
        assert!(
            c.erase(Some(&token), &json!({"visitorId": v.visitor_id})).await.body["total"]
                .as_u64()
                .unwrap()
                > 0
        );
        let again = c.erase(Some(&token), &json!({"visitorId": v.visitor_id})).await;
        assert_eq!((again.status, again.body["total"].as_u64()), (200, Some(0)));
    }

    /// GIVEN a visitor with their token WHEN they export and then erase themselves THEN they get
    /// their own data, then it is gone and their token with it.
    pub async fn visitors_export_and_erase_themselves<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "self@example.org", 2).await;
        let mine = c.export(Some(&v.token), &json!({}), PAGE).await;
        assert_eq!(mine.status, 200);
        assert_eq!(mine.body["sessions"][0]["sessionId"], v.session_id.as_str());
        let erased = c.erase(Some(&v.token), &json!({})).await;
        assert_eq!(erased.status, 200);
        assert_eq!(erased.body["erased"]["message"], 2);
        let again = c.export(Some(&v.token), &json!({}), PAGE).await;
        assert_eq!(again.status, 401, "the token went with the session");
    }

    /// GIVEN the default of 20 export requests per hour WHEN a visitor asks a 21st time THEN
    /// 429 with `Retry-After` and nothing stored (no audit record); other holders (another
    /// visitor, an admin) have their own budget, bad requests do not count, and the budget
    /// comes back as the hour slides.
    pub async fn exports_are_limited_per_token_holder<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "limited@example.org", 1).await;
        let other = c.visitor().await;
        let before = c.backend.counts().await;
        let bad = c.export(Some(&v.token), &json!({"visitorId": 5}), PAGE).await;
        assert_eq!(bad.status, 400);
        for _ in 0..25 {
            let malformed = c.export(Some(&v.token), &json!({"cursor": "not-a-cursor"}), PAGE).await;
            assert_eq!(
                (malformed.status, malformed.body["error"]["field"].as_str()),
                (400, Some("cursor"))
            );
        }
        assert_eq!(
            c.backend.counts().await,
            before,
            "bad input (malformed cursors included) stores nothing, not even a counter"
        );
        for i in 0..20 {
            let r = c.export(Some(&v.token), &json!({}), PAGE).await;
            assert_eq!(r.status, 200, "export {i}: {:?}", r.body);
            c.advance(Duration::from_secs(60));
        }
        let audits = c.stored().await.get("audit").copied();
        let r = c.export(Some(&v.token), &json!({}), PAGE).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (429, Some("rate_limited"))
        );
        assert_eq!(
            r.retry_after.as_deref(),
            Some("2400"),
            "the first request leaves the hour in 40 min"
        );
        assert_eq!(
            c.stored().await.get("audit").copied(),
            audits,
            "a refused export is not audited"
        );
        assert_eq!(c.export(Some(&other.token), &json!({}), PAGE).await.status, 200);
        let alice = admin(c);
        let subject = json!({"visitorId": v.visitor_id});
        assert_eq!(c.export(Some(&alice), &subject, PAGE).await.status, 200);
        c.advance(Duration::from_secs(2400));
        assert_eq!(c.export(Some(&v.token), &json!({}), PAGE).await.status, 200);
        assert_eq!(c.export(Some(&v.token), &json!({}), PAGE).await.status, 429);
    }

    /// GIVEN data on acme WHEN asked without a token, with garbage, by a visitor for someone
    /// else, by a non-admin agent, or by globex's admin THEN a clear error or an empty answer,
    /// nothing revealed and nothing changed.
    pub async fn unauthorized_and_cross_site_requests_reveal_nothing<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "victim@example.org", 2).await;
        let other = c.visitor().await;
        let before = c.stored().await;
        let subject = json!({"visitorId": v.visitor_id});
        let bob = c.agent_token(SITE, "bob", AgentRole::Agent);
        let eve = c.agent_token(OTHER_SITE, "eve", AgentRole::Admin);
        for (bearer, body, status, code) in [
            (None, subject.clone(), 401, "unauthorized"),
            (Some("garbage"), subject.clone(), 401, "unauthorized"),
            (Some(other.token.as_str()), subject.clone(), 403, "forbidden"),
            (Some(bob.as_str()), subject.clone(), 403, "forbidden"),
            (
                Some(eve.as_str()),
                json!({"visitorId": v.visitor_id, "siteId": SITE}),
                403,
                "forbidden",
            ),
        ] {
            for r in [c.export(bearer, &body, PAGE).await, c.erase(bearer, &body).await] {
                assert_eq!(
                    (r.status, r.body["error"]["code"].as_str()),
                    (status, Some(code)),
                    "{bearer:?} {body}"
                );
            }
        }
        // Globex's admin naming acme's visitor, session or email finds nothing there.
        for body in [
            subject.clone(),
            json!({"sessionId": v.session_id}),
            json!({"email": "victim@example.org"}),
        ] {
            let r = c.export(Some(&eve), &body, PAGE).await;
            assert_eq!((r.status, &r.body["sessions"]), (200, &json!([])), "{body}");
            let r = c.erase(Some(&eve), &body).await;
            assert_eq!((r.status, r.body["total"].as_u64()), (200, Some(0)), "{body}");
        }
        let mut after = c.stored().await;
        after.remove("audit");
        let mut before = before;
        before.remove("audit");
        assert_eq!(after, before, "nothing of acme changed");
    }

    /// GIVEN two conversations WHEN a (non-admin) agent deletes one over HTTP THEN only that one
    /// is gone; a visitor may not use this scope.
    pub async fn agents_delete_one_conversation_over_http<B: Backend>(c: &Chat<B>) {
        let a = chatty_visitor(c, "VA=", "a@example.org", 2).await;
        let b = chatty_visitor(c, "VB=", "b@example.org", 2).await;
        let bob = c.agent_token(SITE, "bob", AgentRole::Agent);
        let r = c
            .erase(
                Some(&a.token),
                &json!({"scope": "conversation", "sessionId": a.session_id}),
            )
            .await;
        assert_eq!(r.status, 403);
        let r = c
            .erase(Some(&bob), &json!({"scope": "conversation", "sessionId": a.session_id}))
            .await;
        assert_eq!((r.status, r.body["erased"]["session"].as_u64()), (200, Some(1)));
        assert!(c.stored_session(&a.session_id).await.is_none());
        assert!(c.stored_session(&b.session_id).await.is_some());
        let r = c.erase(Some(&bob), &json!({"scope": "everything"})).await;
        assert_eq!((r.status, r.body["error"]["field"].as_str()), (400, Some("scope")));
    }

    /// GIVEN IPs older than the site's 30-day IP retention WHEN the job runs dry THEN it reports
    /// them and changes nothing; WHEN it runs for real THEN they are removed.
    pub async fn retention_dry_run_changes_nothing_then_real_run_does<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "ip@example.org", 1).await;
        let sid = SessionId::parse(&v.session_id).unwrap();
        c.advance(policy::days(31));
        let before = c.stored().await;
        let dry = c.retention(json!({"detail": {"dryRun": true}})).await;
        assert_eq!(
            (dry.dry_run, dry.ips_removed, dry.conversations_erased, dry.complete),
            (true, 1, 0, true)
        );
        assert_eq!(c.stored().await, before);
        assert!(
            c.backend.store().session_any(&sid).await.unwrap().unwrap().ip.is_some(),
            "dry run kept the IP"
        );
        let real = c.retention(json!({})).await;
        assert_eq!((real.dry_run, real.ips_removed, real.complete), (false, 1, true));
        let s = c.backend.store().session_any(&sid).await.unwrap().unwrap();
        assert!(s.ip.is_none() && s.user_agent.is_some(), "only the IP went");
        assert_eq!(c.retention(json!({})).await.ips_removed, 0, "nothing left to do");
    }

    /// GIVEN a conversation idle 20 days under a 365-day retention WHEN the site shortens
    /// retention to 10 days THEN the next run erases it, though its TTL is months away.
    pub async fn retention_enforces_a_shortened_policy<B: Backend>(c: &Chat<B>) {
        let old = chatty_visitor(c, "V1=", "old@example.org", 2).await;
        c.advance(policy::days(20));
        let fresh = chatty_visitor(c, "V2=", "fresh@example.org", 1).await;
        assert_eq!(c.retention(json!({})).await.conversations_erased, 0);
        c.update_site(|s| {
            s.retention.conversation_days = 10;
        })
        .await;
        let run = c.retention(json!({})).await;
        assert_eq!(run.conversations_erased, 1);
        assert!(run.items_erased >= 5, "session and messages: {run:?}");
        assert!(c.stored_session(&old.session_id).await.is_none());
        assert!(c.stored_session(&fresh.session_id).await.is_some());
    }

    /// GIVEN a site that keeps full IPs for 30 days and conversations for 365 days WHEN the
    /// deployment's limit is 10 days, truncated IPs kept 1 day THEN new sessions store the
    /// truncated IP, the export states the limited policy, the job removes the IP after a day
    /// and the conversation after 10, and the site's own settings are untouched.
    pub async fn deployment_limit_caps_every_site<B: Backend>(c: &Chat<B>) {
        c.update_site(|s| {
            s.retention.ip_policy = chat_core::domain::IpPolicy::Full;
        })
        .await;
        let early = chatty_visitor(c, "V0=", "early@example.org", 1).await;
        c.set_policy_limit(chat_core::domain::RetentionPolicy {
            conversation_days: 10,
            ip_policy: chat_core::domain::IpPolicy::Truncated,
            ip_retention_days: 1,
        });
        let v = chatty_visitor(c, "V1=", "capped@example.org", 1).await;
        let ip = |sid: &str| {
            let sid = sid.to_owned();
            async move {
                let s = c.stored_session(&sid).await.expect("session exists");
                s.ip.map(|i| i.address)
            }
        };
        assert_eq!(
            ip(&v.session_id).await.as_deref(),
            Some("203.0.113.0/24"),
            "limit truncates"
        );
        assert_eq!(
            ip(&early.session_id).await.as_deref(),
            Some("203.0.113.77"),
            "stored before the limit"
        );
        let doc = c
            .export(Some(&admin(c)), &json!({"visitorId": v.visitor_id}), PAGE)
            .await;
        assert_eq!(doc.status, 200);
        let stated = doc.body["retention"].to_string();
        for part in [
            "deleted 10 days after the last message",
            "stored as 'truncated', deleted 1 days",
        ] {
            assert!(stated.contains(part), "{stated} lacks {part}");
        }

        c.advance(policy::days(2));
        let run = c.retention(json!({})).await;
        assert_eq!((run.ips_removed, run.conversations_erased), (2, 0), "{run:?}");
        assert_eq!(
            ip(&early.session_id).await,
            None,
            "the limit also applies to data stored before it"
        );

        c.advance(policy::days(9));
        let run = c.retention(json!({})).await;
        assert_eq!(run.conversations_erased, 2, "{run:?}");
        assert!(c.stored_session(&v.session_id).await.is_none());
        assert!(c.stored_session(&early.session_id).await.is_none());
        let site = c.site().await;
        assert_eq!(
            (site.retention.conversation_days, site.retention.ip_policy),
            (365, chat_core::domain::IpPolicy::Full),
            "the site's own settings are kept; the deployment caps them"
        );
    }

    /// GIVEN a conversation whose session item the TTL sweeper removed WHEN the job runs THEN
    /// its leftover messages and retry records are deleted.
    pub async fn retention_removes_orphans_left_by_ttl<B: Backend>(c: &Chat<B>) {
        c.update_site(|s| {
            s.retention.conversation_days = 1;
        })
        .await;
        let v = chatty_visitor(c, "V1=", "orphan@example.org", 3).await;
        c.advance(policy::days(2));
        c.backend.ttl_sweep(c.now()).await;
        assert_eq!(c.stored().await.get("session"), None);
        assert_eq!(c.stored().await.get("message"), Some(&3), "TTL does not cascade");
        let run = c.retention(json!({})).await;
        assert_eq!(run.orphans_deleted, 3, "3 messages (their LSI1 entries go with them)");
        assert_eq!(c.stored().await.get("message"), None);
        let _ = v;
    }

    /// GIVEN more work than one run's budget WHEN runs repeat THEN each stops at its budget with
    /// a checkpoint, the next continues, and the last completes and clears the checkpoint.
    pub async fn retention_work_is_bounded_and_resumes_from_its_checkpoint<B: Backend>(c: &Chat<B>) {
        for i in 0..5 {
            chatty_visitor(c, &format!("V{i}="), &format!("v{i}@example.org"), 1).await;
        }
        c.advance(policy::days(31));
        let mut total = 0;
        let mut runs = 0;
        loop {
            let run = c.retention(json!({"budget": 2})).await;
            runs += 1;
            assert!(run.budget_used <= 2, "{run:?}");
            total += run.ips_removed;
            if run.complete {
                break;
            }
            assert!(
                c.backend
                    .store()
                    .get_checkpoint(retention::JOB)
                    .await
                    .unwrap()
                    .is_some(),
                "paused with a checkpoint"
            );
            // The orphan scan reads every item, the audit records these runs write included.
            assert!(runs < 40, "runs make progress");
        }
        assert_eq!(total, 5);
        assert!(runs >= 3, "the work took several bounded runs: {runs}");
        assert_eq!(
            c.backend.store().get_checkpoint(retention::JOB).await.unwrap(),
            None,
            "a complete run clears it"
        );
    }

    /// GIVEN a schedule input with a bad option WHEN the job runs THEN it fails with a message.
    pub async fn bad_retention_input_fails_loudly<B: Backend>(c: &Chat<B>) {
        for bad in [
            json!({"dryRun": "yes"}),
            json!({"budget": 0}),
            json!({"detail": {"budget": "many"}}),
        ] {
            let err = retention::handle(
                bad.clone(),
                &retention::Deps {
                    store: c.backend.store(),
                    clock: &c.clock,
                    limit: &c.config().policy_limit,
                },
            )
            .await
            .unwrap_err();
            assert!(err.to_string().starts_with("invalid job input"), "{bad}: {err}");
        }
        let _ = Duration::ZERO;
    }

    /// GIVEN a visitor with forty sessions WHEN exported in small pages THEN each session's
    /// details and message appear exactly once, and every page stays within its size.
    pub async fn export_of_many_sessions_pages_at_session_boundaries<B: Backend>(c: &Chat<B>) {
        let site = c.site().await;
        let visitor = chat_core::domain::VisitorId::generate();
        for i in 0..40 {
            let s = crate::fixtures::session_of(&site, &visitor, c.now());
            c.backend.store().create_session(&s).await.unwrap();
            c.backend
                .store()
                .append_message(
                    &crate::fixtures::visitor_msg(&s, "m", &format!("hello {i}")),
                    c.now(),
                    None,
                )
                .await
                .unwrap();
        }
        let token = admin(c);
        let (mut details, mut messages, mut pages, mut cursor) = (Vec::new(), 0, 0, Value::Null);
        loop {
            let r = c
                .export(
                    Some(&token),
                    &json!({"visitorId": visitor.to_string(), "cursor": cursor}),
                    4096,
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            assert!(r.body.to_string().len() < 4096 + 3000, "page within its budget");
            pages += 1;
            for s in r.body["sessions"].as_array().unwrap() {
                if s.get("visitorId").is_some() {
                    details.push(s["sessionId"].as_str().unwrap().to_owned());
                }
                messages += s["messages"].as_array().unwrap().len();
            }
            cursor = r.body["next"].clone();
            if cursor.is_null() {
                break;
            }
        }
        let unique: std::collections::BTreeSet<_> = details.iter().collect();
        assert_eq!((details.len(), unique.len(), messages), (40, 40, 40));
        assert!(pages > 4, "{pages} pages");
    }

    /// GIVEN a conversation created under the site's 365 days WHEN the site shortens its
    /// retention to 10 days THEN the export's `kept.until` (session, IP, form, token) follows 10
    /// days from the last message, not the 365 copied into the session; WHEN the deployment caps
    /// it to 5 THEN 5; WHEN that moment has passed before the job ran THEN `pendingDeletion`.
    pub async fn export_follows_the_effective_retention_after_a_site_shortens_it<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "short@example.org", 1).await;
        let last = c.now();
        let token = admin(c);
        let until = |doc: &Value| doc["sessions"][0]["kept"]["until"].as_str().unwrap().to_owned();
        let doc = c.export(Some(&token), &json!({"visitorId": v.visitor_id}), PAGE).await;
        assert_eq!(until(&doc.body), last.plus(policy::days(365)).to_rfc3339());
        c.update_site(|s| {
            s.retention.conversation_days = 10;
        })
        .await;
        let stored = c.stored_session(&v.session_id).await.unwrap();
        assert_eq!(
            stored.retention_days, 365,
            "the session still holds what it was created with"
        );
        let doc = c.export(Some(&token), &json!({"visitorId": v.visitor_id}), PAGE).await;
        let s = &doc.body["sessions"][0];
        let ten = last.plus(policy::days(10)).to_rfc3339();
        assert_eq!(until(&doc.body), ten, "{s}");
        assert_eq!(s["preChatForm"]["kept"]["until"], ten.as_str());
        assert_eq!(s["visitorToken"]["kept"]["until"], ten.as_str());
        assert!(
            s["technical"]["ip"]["kept"]["until"].as_str().unwrap() <= ten.as_str(),
            "the IP goes with the session at the latest"
        );
        assert!(
            doc.body["retention"]["conversation"]
                .as_str()
                .unwrap()
                .contains("10 days")
        );
        c.set_policy_limit(chat_core::domain::RetentionPolicy {
            conversation_days: 5,
            ..chat_core::domain::RetentionPolicy::UNLIMITED
        });
        let doc = c.export(Some(&token), &json!({"visitorId": v.visitor_id}), PAGE).await;
        assert_eq!(until(&doc.body), last.plus(policy::days(5)).to_rfc3339());
        assert_eq!(doc.body["sessions"][0]["pendingDeletion"], false);
        c.advance(policy::days(6));
        let doc = c
            .export(Some(&admin(c)), &json!({"visitorId": v.visitor_id}), PAGE)
            .await;
        assert_eq!(
            doc.body["sessions"][0]["pendingDeletion"], true,
            "past its effective retention, awaiting the job"
        );
    }

    /// GIVEN a connected visitor who sent three messages and an agent who joined WHEN exported
    /// THEN the visitor's connection (when it opened, until when it is kept), every message's
    /// `clientMsgId` (the retry records) and the rate window are in it, and the agent's
    /// connection is not; WHEN the visitor disconnects THEN no connection is listed.
    pub async fn export_lists_connections_client_msg_ids_and_the_rate_window<B: Backend>(c: &Chat<B>) {
        let opened = c.now();
        let v = chatty_visitor(c, "V1=", "conn@example.org", 3).await;
        assert_eq!(c.connect("A1=", &admin(c)).await, 200);
        c.send("A1=", json!({"action": "join", "sessionId": v.session_id}))
            .await;
        let doc = c
            .export(Some(&admin(c)), &json!({"visitorId": v.visitor_id}), PAGE)
            .await;
        let s = &doc.body["sessions"][0];
        let conns = s["connections"].as_array().unwrap();
        assert_eq!(conns.len(), 1, "the visitor's own connection only: {s}");
        assert_eq!(conns[0]["connectionId"], "V1=");
        assert_eq!(conns[0]["connectedAt"], opened.to_rfc3339().as_str());
        assert_eq!(
            conns[0]["kept"]["until"],
            policy::connection_expiry(opened).to_rfc3339().as_str()
        );
        let ids: Vec<&str> = s["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["clientMsgId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["m0", "m1", "m2"]);
        assert_eq!(s["messageRateWindow"]["messagesInWindow"], 3);
        assert_eq!(
            s["messageRateWindow"]["windowStart"],
            c.config().message_rate.window_start(c.now()).to_rfc3339().as_str()
        );
        for kind in ["retryRecords", "connections", "messageRateWindow"] {
            assert!(doc.body["retention"][kind].is_string(), "retention of {kind}");
        }
        c.disconnect("V1=").await;
        let doc = c
            .export(Some(&admin(c)), &json!({"visitorId": v.visitor_id}), PAGE)
            .await;
        assert_eq!(doc.body["sessions"][0]["connections"], json!([]));
        let quiet = c.visitor().await;
        let doc = c.export(Some(&quiet.token), &json!({}), PAGE).await;
        assert_eq!(doc.body["sessions"][0]["messageRateWindow"], Value::Null, "never used");
    }

    /// GIVEN an IP past its retention and a conversation past a shortened retention WHEN the job
    /// runs THEN each site it visited gets one `retention-run` record by the system with its
    /// counts and nothing personal; a dry run writes none.
    pub async fn retention_runs_are_audited_with_counts_only<B: Backend>(c: &Chat<B>) {
        let v = chatty_visitor(c, "V1=", "audited@example.org", 2).await;
        c.advance(policy::days(31));
        let site = SiteId::parse(SITE).unwrap();
        let other = SiteId::parse(OTHER_SITE).unwrap();
        let runs = |site: SiteId| async move {
            c.backend
                .store()
                .list_audit(&site, None, 50, c.now())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|a| a.action == chat_core::domain::AuditAction::RetentionRun)
                .collect::<Vec<_>>()
        };
        c.retention(json!({"dryRun": true})).await;
        assert!(
            runs(site.clone()).await.is_empty(),
            "a dry run changes nothing, not even the trail"
        );
        let summary = c.retention(json!({})).await;
        assert_eq!(summary.ips_removed, 1);
        let records = runs(site.clone()).await;
        assert_eq!(records.len(), 1, "{records:?}");
        let r = &records[0];
        assert_eq!(r.actor, chat_core::domain::Actor::System);
        assert_eq!(r.subject_hash, None);
        assert_eq!(r.at, c.now());
        assert_eq!(
            r.counts,
            [
                ("conversationsErased".to_owned(), 0),
                ("ipsRemoved".to_owned(), 1),
                ("itemsErased".to_owned(), 0)
            ]
            .into()
        );
        assert_eq!(
            runs(other.clone()).await.len(),
            1,
            "every visited site, even with nothing done"
        );
        c.update_site(|s| {
            s.retention.conversation_days = 10;
        })
        .await;
        c.retention(json!({})).await;
        let records = runs(site).await;
        assert_eq!(records.len(), 2);
        let latest = records.iter().find(|a| a.counts.get("conversationsErased") == Some(&1));
        let latest = latest.expect("the erasure run is audited");
        assert!(latest.counts["itemsErased"] >= 5, "{latest:?}");
        let text = serde_json::to_string(&records).unwrap();
        for personal in [&v.visitor_id, &v.session_id, "203.0.113", "audited@example.org"] {
            assert!(!text.contains(personal), "a retention record holds {personal}: {text}");
        }
    }

    /// GIVEN two visitors who typed the same pre-chat email (one a stranger to the requester)
    /// WHEN an admin exports by that email THEN both sessions are there, each marked
    /// `foundBy: unverifiedEmail`, with a top-level note and the audit record saying so; WHEN by
    /// visitor id or by the visitor themself THEN marked as such, without a note.
    pub async fn exports_by_email_mark_every_session_unverified<B: Backend>(c: &Chat<B>) {
        let requester = chatty_visitor(c, "V1=", "same@example.org", 1).await;
        let stranger = chatty_visitor(c, "V2=", "Same@Example.org", 1).await;
        let token = admin(c);
        let doc = c
            .export(Some(&token), &json!({"email": "same@example.org"}), PAGE)
            .await;
        assert_eq!(doc.status, 200, "{:?}", doc.body);
        let sessions = doc.body["sessions"].as_array().unwrap();
        let ids: std::collections::BTreeSet<&str> = sessions.iter().map(|s| s["sessionId"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [requester.session_id.as_str(), stranger.session_id.as_str()].into(),
            "a typed email matches whoever typed it"
        );
        for s in sessions {
            assert_eq!(s["foundBy"], "unverifiedEmail", "{s}");
        }
        assert_eq!(doc.body["subject"]["foundBy"], "unverifiedEmail");
        let note = doc.body["note"].as_str().expect("a note");
        assert!(note.contains("verifies") && note.contains("someone else"), "{note}");
        let audit = c.audit_trail().await;
        assert_eq!(audit.items[0].counts.get("unverifiedEmailLookup"), Some(&1));

        let by_id = c
            .export(Some(&token), &json!({"visitorId": requester.visitor_id}), PAGE)
            .await;
        assert_eq!(by_id.body["sessions"][0]["foundBy"], "visitorId");
        assert_eq!(by_id.body["subject"]["foundBy"], "visitorId");
        assert_eq!(by_id.body["note"], Value::Null);
        let by_session = c
            .export(Some(&token), &json!({"sessionId": requester.session_id}), PAGE)
            .await;
        assert_eq!(by_session.body["sessions"][0]["foundBy"], "sessionId");
        let own = c.export(Some(&requester.token), &json!({}), PAGE).await;
        assert_eq!(own.body["sessions"][0]["foundBy"], "ownSessionToken");
        assert_eq!(own.body["note"], Value::Null);
        let nobody = c
            .export(Some(&token), &json!({"email": "nobody@example.org"}), PAGE)
            .await;
        assert_eq!(
            (
                nobody.body["sessions"].clone(),
                nobody.body["subject"]["foundBy"].clone()
            ),
            (json!([]), json!("unverifiedEmail"))
        );
    }

    /// CORS is per site (docs/protocol.md, "CORS"): a page of an origin the token's site
    /// lists, the API's own origin (the console) and a request without `Origin` may use
    /// the GDPR routes; any other browser origin is refused before anything is read,
    /// counted or erased, and cannot read the refusal. A site's new origin works at once.
    pub async fn browser_requests_follow_the_sites_own_origins<B: Backend>(c: &Chat<B>) {
        // Sessions: the site's origin may read the answer; another origin gets a refusal it cannot read.
        let r = c
            .post_session(&json!({ "siteId": SITE }), &[("origin", ORIGIN)], &[])
            .await;
        assert_eq!((r.status, r.allow_origin.as_deref()), (201, Some(ORIGIN)), "{}", r.body);
        let r = c
            .post_session(&json!({ "siteId": SITE }), &[("origin", OTHER_ORIGIN)], &[])
            .await;
        assert_eq!(
            (r.status, code(&r), r.allow_origin.as_deref()),
            (403, Some("origin_not_allowed"), None)
        );
        let v = chatty_visitor(c, "c-cors", "cors@example.com", 2).await;
        let before = c.stored().await;
        let trail = c.audit_trail().await.items.len();
        const OWN: &str = "https://h1a2b3c4d5.execute-api.eu-central-1.amazonaws.com";
        let me = json!({});
        for foreign in [
            OTHER_ORIGIN,
            "https://evil.example",
            "null",
            "https://acme.example.evil.example",
        ] {
            // More refusals than the export limit: none of them counts.
            for _ in 0..25 {
                let r = c.export_from(Some(foreign), Some(&v.token), &me, PAGE).await;
                assert_eq!((r.status, code(&r)), (403, Some("origin_not_allowed")), "{foreign}");
                assert_eq!(r.allow_origin, None, "{foreign}: the page cannot read the refusal");
            }
            let r = c.erase_from(Some(foreign), Some(&v.token), &me).await;
            assert_eq!((r.status, code(&r)), (403, Some("origin_not_allowed")), "{foreign}");
            let r = c
                .erase_from(Some(foreign), Some(&admin(c)), &json!({ "visitorId": v.visitor_id }))
                .await;
            assert_eq!((r.status, code(&r)), (403, Some("origin_not_allowed")), "{foreign}");
        }
        assert_eq!(c.stored().await, before, "refused requests change nothing");
        assert_eq!(c.audit_trail().await.items.len(), trail, "and audit nothing");

        // The site's page, the console's own origin, and a plain HTTP client.
        let r = c.export_from(Some(ORIGIN), Some(&v.token), &me, PAGE).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.allow_origin.as_deref(), Some(ORIGIN));
        let r = c
            .export_from(Some(OWN), Some(&admin(c)), &json!({ "visitorId": v.visitor_id }), PAGE)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.allow_origin.as_deref(), Some(OWN));
        let r = c.export(Some(&v.token), &me, PAGE).await;
        assert_eq!((r.status, r.allow_origin), (200, None));

        // A new origin for the site needs no redeploy: the next request may use it.
        let added = "https://shop.acme.example";
        let r = c.export_from(Some(added), Some(&v.token), &me, PAGE).await;
        assert_eq!(r.status, 403);
        c.update_site(|s| s.allowed_origins.push(chat_core::domain::Origin::parse(added).unwrap()))
            .await;
        let r = c.erase_from(Some(added), Some(&v.token), &me).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.allow_origin.as_deref(), Some(added));
        assert!(c.stored_session(&v.session_id).await.is_none(), "erased");
    }

    fn code(r: &HttpReply) -> Option<&str> {
        r.body["error"]["code"].as_str()
    }
}
