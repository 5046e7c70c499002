//! The storage contract: what every adapter must do, in GIVEN/WHEN/THEN form.
//! [`contract_suite!`](crate::contract_suite) turns each case into a test for
//! one backend; `tests/store_contract_*.rs` run it for memory and DynamoDB.

use std::collections::BTreeSet;
use std::time::Duration;

use chat_core::clock::Timestamp;
use chat_core::domain::*;
use chat_core::policy::{self, RateDecision, RateLimit};
use chat_core::storage::*;

use crate::backends::Backend;
use crate::fixtures::*;

/// Generates one `#[tokio::test]` per contract case for the backend built by `$make`.
#[macro_export]
macro_rules! contract_suite {
    ($make:expr) => {
        $crate::contract_suite_cases!($make);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = $make;
                $crate::contract::$case(&backend).await;
            }
        )*
    };
}

pub use cases::*;

/// The flows. Every `pub async fn` here is a case of [`contract_suite!`](crate::contract_suite),
/// listed once, by the attribute: a flow added here runs on every backend.
#[eurochat_test_macros::suite(contract_suite)]
pub mod cases {
    use super::*;

    async fn seeded<B: Backend>(b: &B, site_id: &str) -> Site {
        let site = site(site_id);
        b.store().put_site(&site).await.expect("put site");
        site
    }

    async fn new_session<B: Backend>(b: &B, site: &Site, now: Timestamp) -> Session {
        let s = session(site, now);
        b.store().create_session(&s).await.expect("create session");
        s
    }

    /// GIVEN sites and an agent WHEN read and listed THEN they round-trip and page in id order.
    pub async fn sites_round_trip_and_page<B: Backend>(b: &B) {
        let st = b.store();
        for id in ["site-c", "site-a", "site-b"] {
            seeded(b, id).await;
        }
        let a = st
            .get_site(&SiteId::parse("site-a").unwrap())
            .await
            .unwrap()
            .expect("site-a");
        assert_eq!(a, site("site-a"));
        assert_eq!(st.get_site(&SiteId::parse("nope").unwrap()).await.unwrap(), None);

        let first = st.list_sites(None, 2).await.unwrap();
        assert_eq!(
            first.items.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["site-a", "site-b"]
        );
        let second = st.list_sites(first.next.as_deref(), 2).await.unwrap();
        assert_eq!(
            second.items.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["site-c"]
        );
        assert_eq!(second.next, None);

        let agent = Agent {
            site_id: a.id.clone(),
            id: AgentId::parse("alice").unwrap(),
            display_name: "Alice".into(),
            role: AgentRole::Admin,
            active: true,
            created_at: T0,
            tokens_valid_after: Some(Timestamp::from_millis(T0.millis() + 1_234)),
        };
        st.put_agent(&agent).await.unwrap();
        assert_eq!(st.get_agent(&a.id, &agent.id).await.unwrap(), Some(agent.clone()));
        // The agent and its site in one read; either may be missing.
        assert_eq!(
            st.agent_and_site(&a.id, &agent.id).await.unwrap(),
            (Some(agent.clone()), Some(a.clone()))
        );
        let nobody = AgentId::parse("nobody").unwrap();
        assert_eq!(
            st.agent_and_site(&a.id, &nobody).await.unwrap(),
            (None, Some(a.clone()))
        );
        assert_eq!(
            st.agent_and_site(&SiteId::parse("nope").unwrap(), &agent.id)
                .await
                .unwrap(),
            (None, None)
        );
        assert_eq!(
            st.get_agent(&SiteId::parse("site-b").unwrap(), &agent.id)
                .await
                .unwrap(),
            None,
            "agents are per site"
        );
    }

    /// GIVEN a new session WHEN created twice THEN the second is refused and the first is intact.
    pub async fn sessions_are_created_once_and_read_back<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let mut s = new_session(b, &site, T0).await;
        assert_eq!(b.store().get_session(&s.id, T0).await.unwrap(), Some(s.clone()));
        let original = s.clone();
        s.user_agent = Some("other".into());
        assert_eq!(b.store().create_session(&s).await, Err(StoreError::AlreadyExists));
        assert_eq!(b.store().get_session(&s.id, T0).await.unwrap(), Some(original));
    }

    /// GIVEN an empty session WHEN 30 minutes pass after its last access THEN it is gone,
    /// before and after the TTL sweeper runs; a touch in time moves the deadline.
    pub async fn empty_session_expires_30_minutes_after_last_access<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        assert_eq!(s.expires_at, at_min(30));
        assert!(b.store().get_session(&s.id, at_min(29)).await.unwrap().is_some());
        assert_eq!(
            b.store().get_session(&s.id, at_min(30)).await.unwrap(),
            None,
            "expired before DynamoDB deletes it"
        );

        let t = new_session(b, &site, T0).await;
        let touched = b
            .store()
            .touch_session(
                &t.id,
                SessionTouch {
                    now: at_min(20),
                    renew_token: false,
                },
            )
            .await
            .unwrap();
        assert_eq!((touched.last_access_at, touched.expires_at), (at_min(20), at_min(50)));
        assert!(b.store().get_session(&t.id, at_min(45)).await.unwrap().is_some());
        assert_eq!(
            b.store()
                .touch_session(
                    &t.id,
                    SessionTouch {
                        now: at_min(50),
                        renew_token: true
                    }
                )
                .await,
            Err(StoreError::NotFound),
            "an expired session cannot be revived"
        );
        b.ttl_sweep(at_min(60)).await;
        assert_eq!(
            b.store().get_session(&t.id, at_min(20)).await.unwrap(),
            None,
            "swept for good, IP and all"
        );
        assert!(
            b.store()
                .sessions_with_ip_before(&site.id, at_min(60), None, 10)
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }

    /// GIVEN a visitor returning after months WHEN their session is touched with renewal
    /// THEN the token lives six months from the return.
    pub async fn returning_visitor_renews_token_for_six_months<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        b.store()
            .append_message(&visitor_msg(&s, "m1", "hello"), at_min(1), None)
            .await
            .unwrap();
        let later = T0.plus(Duration::from_secs(90 * 86_400));
        let renewed = b
            .store()
            .touch_session(
                &s.id,
                SessionTouch {
                    now: later,
                    renew_token: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(renewed.token_expires_at, policy::visitor_token_expiry(later));
        assert_eq!(renewed.last_access_at, later);
        assert_eq!(
            renewed.expires_at,
            at_min(1).plus(policy::days(365)),
            "a touch does not extend a conversation's retention"
        );
    }

    /// GIVEN an empty session WHEN its first message arrives THEN it becomes a conversation
    /// kept for the site's retention after that message.
    pub async fn first_message_turns_session_into_conversation<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        let out = b
            .store()
            .append_message(&visitor_msg(&s, "m1", "hello"), at_min(10), None)
            .await
            .unwrap();
        assert_eq!((out.message.seq, out.duplicate), (1, false));
        let conv = b
            .store()
            .get_session(&s.id, at_min(45))
            .await
            .unwrap()
            .expect("alive past 30 minutes");
        assert!(conv.is_conversation());
        assert_eq!(conv.expires_at, at_min(10).plus(policy::days(365)));
        assert_eq!(conv.last_activity_at, Some(at_min(10)));
        let listed = b
            .store()
            .list_conversations(&site.id, None, None, 10, at_min(45))
            .await
            .unwrap();
        assert_eq!(listed.items.iter().map(|c| &c.id).collect::<Vec<_>>(), [&s.id]);
        b.ttl_sweep(at_min(60)).await;
        assert!(
            b.store().get_session(&s.id, at_min(60)).await.unwrap().is_some(),
            "the sweeper keeps conversations"
        );
    }

    /// GIVEN a stored message WHEN the same author retries its client id THEN one message
    /// is stored and both appends answer with the same sequence.
    pub async fn append_is_idempotent_per_author_and_client_id<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        let first = b
            .store()
            .append_message(&visitor_msg(&s, "c-1", "hello"), at_min(1), None)
            .await
            .unwrap();
        let retry = b
            .store()
            .append_message(&visitor_msg(&s, "c-1", "hello"), at_min(2), None)
            .await
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.message, first.message, "the retry is answered with the original");
        let agent = b
            .store()
            .append_message(&agent_msg(&s, "alice", "c-1", "hi"), at_min(3), None)
            .await
            .unwrap();
        assert_eq!(
            (agent.message.seq, agent.duplicate),
            (2, false),
            "client ids are per author"
        );
        let page = b.store().list_messages(&s.id, 0, 10).await.unwrap();
        assert_eq!(page.messages.len(), 2);
        let session = b.store().get_session(&s.id, at_min(3)).await.unwrap().unwrap();
        assert_eq!(session.last_seq, 2);
    }

    /// GIVEN five messages WHEN history is read after a cursor THEN it pages in sequence
    /// order with no gap and no duplicate.
    pub async fn sequence_is_total_and_history_pages_without_gaps<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        for i in 1..=5u64 {
            let m = if i % 2 == 0 {
                agent_msg(&s, "alice", &format!("a{i}"), "reply")
            } else {
                visitor_msg(&s, &format!("v{i}"), "question")
            };
            assert_eq!(
                b.store().append_message(&m, at_min(i), None).await.unwrap().message.seq,
                i
            );
        }
        let p = b.store().list_messages(&s.id, 2, 2).await.unwrap();
        assert_eq!(
            (p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), p.has_more),
            (vec![3, 4], true)
        );
        let p = b.store().list_messages(&s.id, 4, 2).await.unwrap();
        assert_eq!(
            (p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), p.has_more),
            (vec![5], false)
        );
        let p = b.store().list_messages(&s.id, 5, 2).await.unwrap();
        assert!(p.messages.is_empty() && !p.has_more);
        let all = b.store().list_messages(&s.id, 0, 100).await.unwrap();
        assert_eq!(all.messages[1].author.role, AuthorRole::Agent);
        assert_eq!(all.messages[0].text.as_str(), "question");
    }

    /// GIVEN five senders at once WHEN they append THEN each gets a distinct sequence 1..=5.
    pub async fn concurrent_appends_get_distinct_sequences<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        let msgs: Vec<NewMessage> = (0..5).map(|i| visitor_msg(&s, &format!("c{i}"), "hi")).collect();
        let results = futures_join(msgs.iter().map(|m| b.store().append_message(m, at_min(1), None))).await;
        let seqs: BTreeSet<u64> = results.into_iter().map(|r| r.expect("append").message.seq).collect();
        assert_eq!(seqs, (1..=5).collect());
    }

    async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
        // Polls all futures concurrently on this task (no spawn: the store is borrowed).
        let mut futs: Vec<_> = futs.map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
                if slot.is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => *slot = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter().flatten().collect()
    }

    /// GIVEN a limit of 2 per minute WHEN a third message comes in the same minute THEN it is
    /// refused with a retry time and not stored; a retry of an accepted one still succeeds.
    pub async fn session_message_rate_is_limited_and_retries_are_free<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        let rate = Some(RateLimit {
            limit: 2,
            window: Duration::from_secs(60),
        });
        let t = T0.plus(Duration::from_secs(5));
        b.store()
            .append_message(&visitor_msg(&s, "c1", "one"), t, rate)
            .await
            .unwrap();
        b.store()
            .append_message(&visitor_msg(&s, "c2", "two"), t, rate)
            .await
            .unwrap();
        let refused = b
            .store()
            .append_message(&visitor_msg(&s, "c3", "three"), T0.plus(Duration::from_secs(20)), rate)
            .await;
        assert_eq!(
            refused,
            Err(StoreError::RateLimited {
                retry_after: Duration::from_secs(40)
            })
        );
        let retry = b
            .store()
            .append_message(&visitor_msg(&s, "c2", "two"), T0.plus(Duration::from_secs(21)), rate)
            .await
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!(b.store().list_messages(&s.id, 0, 10).await.unwrap().messages.len(), 2);
        let next_minute = b
            .store()
            .append_message(&visitor_msg(&s, "c3", "three"), T0.plus(Duration::from_secs(61)), rate)
            .await
            .unwrap();
        assert_eq!(next_minute.message.seq, 3);
    }

    /// GIVEN no session, another site's, or an expired one, WHEN a message is appended THEN
    /// NotFound and nothing is stored.
    pub async fn appending_to_missing_or_expired_session_stores_nothing<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let ghost = session(&site, T0);
        assert_eq!(
            b.store()
                .append_message(&visitor_msg(&ghost, "c1", "x"), at_min(1), None)
                .await,
            Err(StoreError::NotFound)
        );
        let s = new_session(b, &site, T0).await;
        let mut foreign = agent_msg(&s, "eve", "c1", "x");
        foreign.site_id = SiteId::parse("other-site").unwrap();
        assert_eq!(
            b.store().append_message(&foreign, at_min(1), None).await,
            Err(StoreError::NotFound),
            "another site's session"
        );
        assert_eq!(
            b.store()
                .append_message(&visitor_msg(&s, "c1", "x"), at_min(31), None)
                .await,
            Err(StoreError::NotFound)
        );
        assert!(b.store().list_messages(&s.id, 0, 10).await.unwrap().messages.is_empty());
        assert!(
            b.store()
                .list_messages(&ghost.id, 0, 10)
                .await
                .unwrap()
                .messages
                .is_empty()
        );
    }

    /// GIVEN a visitor and two agents connected WHEN one agent joins the conversation THEN the
    /// conversation reaches the visitor and that agent, the site reaches both agents, and
    /// disconnects remove exactly their own records.
    pub async fn connections_fan_out_by_conversation_and_site<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let other = seeded(b, "other-site").await;
        let s = new_session(b, &site, T0).await;
        let st = b.store();
        let v = visitor_conn("VISITOR1=", &s, T0);
        let a1 = agent_conn("AGENT1=", &site, "alice", T0);
        let a2 = agent_conn("AGENT2=", &site, "bob", T0);
        let x = agent_conn("OTHER1=", &other, "eve", T0);
        for c in [&v, &a1, &a2, &x] {
            st.put_connection(c).await.unwrap();
        }
        st.put_connection(&v).await.unwrap(); // idempotent
        assert_eq!(st.get_connection(&v.id, at_min(1)).await.unwrap(), Some(v.clone()));
        let ids = |cs: Vec<Connection>| cs.into_iter().map(|c| c.id.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            ids(st.conversation_connections(&s.id, at_min(1)).await.unwrap()),
            BTreeSet::from(["VISITOR1=".to_owned()])
        );
        assert_eq!(
            ids(st.agent_connections(&site.id, at_min(1)).await.unwrap()),
            BTreeSet::from(["AGENT1=".into(), "AGENT2=".into()])
        );

        assert_eq!(st.join_conversation(&a1.id, &s.id, at_min(2)).await.unwrap(), a1);
        assert_eq!(
            ids(st.conversation_connections(&s.id, at_min(2)).await.unwrap()),
            BTreeSet::from(["VISITOR1=".into(), "AGENT1=".into()])
        );
        let ghost = SessionId::generate();
        assert_eq!(
            st.join_conversation(&a1.id, &ghost, at_min(2)).await,
            Err(StoreError::NotFound)
        );

        assert_eq!(st.delete_connection(&v.id).await.unwrap(), Some(v.clone()));
        assert_eq!(
            st.delete_connection(&v.id).await.unwrap(),
            None,
            "a second $disconnect is harmless"
        );
        assert_eq!(st.get_connection(&v.id, at_min(3)).await.unwrap(), None);
        assert_eq!(
            ids(st.conversation_connections(&s.id, at_min(3)).await.unwrap()),
            BTreeSet::from(["AGENT1=".into()])
        );
        st.delete_connection(&a2.id).await.unwrap();
        assert_eq!(
            ids(st.agent_connections(&site.id, at_min(3)).await.unwrap()),
            BTreeSet::from(["AGENT1=".into()])
        );
    }

    /// GIVEN connections whose $disconnect never came WHEN 2 h 10 min pass THEN they are absent.
    pub async fn expired_connections_are_absent<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        b.store()
            .append_message(&visitor_msg(&s, "c1", "keep me"), T0, None)
            .await
            .unwrap();
        let v = visitor_conn("VISITOR1=", &s, T0);
        let a = agent_conn("AGENT1=", &site, "alice", T0);
        b.store().put_connection(&v).await.unwrap();
        b.store().put_connection(&a).await.unwrap();
        let later = T0.plus(policy::CONNECTION_LIFETIME);
        assert_eq!(b.store().get_connection(&v.id, later).await.unwrap(), None);
        assert!(
            b.store()
                .conversation_connections(&s.id, later)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(b.store().agent_connections(&site.id, later).await.unwrap().is_empty());
    }

    /// GIVEN conversations of two sites WHEN an agent lists theirs THEN only their site's live
    /// conversations appear, newest first by when they began, filtered by status, paged.
    pub async fn conversations_list_newest_first_by_site_and_status<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let other = seeded(b, "other-site").await;
        let mut ids = Vec::new();
        for i in 0..3u64 {
            let s = new_session(b, &site, at_min(i)).await;
            b.store()
                .append_message(&visitor_msg(&s, "c1", "hi"), at_min(i + 1), None)
                .await
                .unwrap();
            ids.push(s.id);
        }
        let _empty = new_session(b, &site, T0).await;
        let foreign = new_session(b, &other, T0).await;
        b.store()
            .append_message(&visitor_msg(&foreign, "c1", "hi"), at_min(5), None)
            .await
            .unwrap();
        b.store()
            .set_status(&ids[0], ConversationStatus::Closed, at_min(6))
            .await
            .unwrap();

        let now = at_min(10);
        let p1 = b
            .store()
            .list_conversations(&site.id, None, None, 2, now)
            .await
            .unwrap();
        let p2 = b
            .store()
            .list_conversations(&site.id, None, p1.next.as_deref(), 2, now)
            .await
            .unwrap();
        let listed: Vec<_> = p1.items.iter().chain(&p2.items).map(|s| s.id.clone()).collect();
        assert_eq!(listed, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
        let open = b
            .store()
            .list_conversations(&site.id, Some(ConversationStatus::Open), None, 10, now)
            .await
            .unwrap();
        assert_eq!(
            open.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
            vec![ids[2].clone(), ids[1].clone()]
        );
        let far = at_min(1).plus(policy::days(365));
        let after = b
            .store()
            .list_conversations(&site.id, None, None, 10, far)
            .await
            .unwrap();
        assert_eq!(
            after.items.len(),
            2,
            "the conversation idle for 365 days is gone from the list"
        );
    }

    /// GIVEN a conversation with messages, the visitor's connection and a joined agent WHEN it
    /// is erased THEN nothing of it remains, the agent's own connection survives, and a
    /// second erasure reports zero.
    pub async fn erasing_a_session_removes_everything_in_it<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        let keep = new_session(b, &site, T0).await;
        for i in 0..30 {
            b.store()
                .append_message(&visitor_msg(&s, &format!("c{i}"), "private words"), at_min(1), None)
                .await
                .unwrap();
        }
        b.store()
            .append_message(&visitor_msg(&keep, "c1", "other"), at_min(1), None)
            .await
            .unwrap();
        let v = visitor_conn("VISITOR1=", &s, T0);
        let a = agent_conn("AGENT1=", &site, "alice", T0);
        b.store().put_connection(&v).await.unwrap();
        b.store().put_connection(&a).await.unwrap();
        b.store().join_conversation(&a.id, &s.id, at_min(2)).await.unwrap();

        let counts = b.store().erase_session(&s.id, at_min(2)).await.unwrap();
        assert_eq!(counts.0.get("session"), Some(&1));
        assert_eq!(counts.0.get("message"), Some(&30));
        assert_eq!(
            counts.0.get("clientMsgId"),
            None,
            "no retry records: LSI1 goes with the messages"
        );
        assert_eq!(counts.0.get("membership"), Some(&2));
        assert_eq!(counts.0.get("connection"), Some(&1));

        let now = at_min(3);
        assert_eq!(b.store().get_session(&s.id, now).await.unwrap(), None);
        assert!(
            b.store()
                .list_messages(&s.id, 0, 100)
                .await
                .unwrap()
                .messages
                .is_empty()
        );
        assert_eq!(b.store().get_connection(&v.id, now).await.unwrap(), None);
        assert!(b.store().conversation_connections(&s.id, now).await.unwrap().is_empty());
        assert_eq!(
            b.store().get_connection(&a.id, now).await.unwrap(),
            Some(a.clone()),
            "the agent stays connected"
        );
        assert!(
            b.store()
                .sessions_of_visitor(&site.id, &s.visitor_id)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            b.store().list_messages(&keep.id, 0, 10).await.unwrap().messages.len(),
            1,
            "other sessions untouched"
        );
        assert_eq!(b.store().erase_session(&s.id, at_min(2)).await.unwrap().total(), 0);
    }

    /// GIVEN a visitor with two sessions and another with an email WHEN looked up THEN each
    /// lookup finds exactly the subject's sessions on that site.
    pub async fn subjects_are_found_by_visitor_and_email<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let other = seeded(b, "other-site").await;
        let visitor = VisitorId::generate();
        let s1 = session_of(&site, &visitor, T0);
        let s2 = session_of(&site, &visitor, at_min(5));
        let elsewhere = session_of(&other, &visitor, T0);
        let mut with_email = session(&site, T0);
        with_email.email_lookup = Some("e".repeat(64));
        let mut same_email_other_site = session(&other, T0);
        same_email_other_site.email_lookup = Some("e".repeat(64));
        for s in [&s1, &s2, &elsewhere, &with_email, &same_email_other_site] {
            b.store().create_session(s).await.unwrap();
        }
        let found = b.store().sessions_of_visitor(&site.id, &visitor).await.unwrap();
        assert_eq!(
            found.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
            vec![s1.id.clone(), s2.id.clone()]
        );
        let by_email = b.store().sessions_by_email(&site.id, &"e".repeat(64)).await.unwrap();
        assert_eq!(
            by_email.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
            vec![with_email.id.clone()]
        );
        assert!(
            b.store()
                .sessions_by_email(&site.id, &"f".repeat(64))
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// GIVEN conversations and IPs of different ages WHEN the retention job asks THEN it gets
    /// the ones older than its cutoff, oldest first, and can strip an IP.
    pub async fn retention_queries_find_old_conversations_and_ips<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let mut ids = Vec::new();
        for day in [1u32, 10, 20] {
            let start = T0.plus(policy::days(day));
            let s = new_session(b, &site, start).await;
            b.store()
                .append_message(&visitor_msg(&s, "c1", "hi"), start, None)
                .await
                .unwrap();
            ids.push(s.id);
        }
        let cutoff = T0.plus(policy::days(15));
        let old = b
            .store()
            .conversations_inactive_before(&site.id, cutoff, None, 1)
            .await
            .unwrap();
        assert_eq!(
            old.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
            vec![ids[0].clone()]
        );
        let rest = b
            .store()
            .conversations_inactive_before(&site.id, cutoff, old.next.as_deref(), 10)
            .await
            .unwrap();
        assert_eq!(
            rest.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
            vec![ids[1].clone()]
        );

        let with_ip = b
            .store()
            .sessions_with_ip_before(&site.id, cutoff, None, 10)
            .await
            .unwrap();
        assert_eq!(with_ip.items.len(), 2);
        assert!(b.store().remove_ip(&ids[0]).await.unwrap());
        assert!(!b.store().remove_ip(&ids[0]).await.unwrap(), "already removed");
        let now = T0.plus(policy::days(21));
        assert_eq!(b.store().get_session(&ids[0], now).await.unwrap().unwrap().ip, None);
        let with_ip = b
            .store()
            .sessions_with_ip_before(&site.id, cutoff, None, 10)
            .await
            .unwrap();
        assert_eq!(
            with_ip.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
            vec![ids[1].clone()]
        );
    }

    /// GIVEN a conversation whose session item the TTL sweeper removed WHEN the orphan sweep
    /// runs THEN its messages and retry records are found and deleted, and live ones are not.
    pub async fn orphans_left_by_ttl_are_found_and_deleted<B: Backend>(b: &B) {
        let mut site = site("acme");
        site.retention.conversation_days = 1;
        b.store().put_site(&site).await.unwrap();
        let doomed = new_session(b, &site, T0).await;
        let live = new_session(b, &site, T0.plus(policy::days(1))).await;
        for i in 0..3 {
            b.store()
                .append_message(&visitor_msg(&doomed, &format!("d{i}"), "old"), T0, None)
                .await
                .unwrap();
        }
        b.store()
            .append_message(&visitor_msg(&live, "l1", "new"), T0.plus(policy::days(1)), None)
            .await
            .unwrap();
        let now = T0.plus(policy::days(1)).plus(Duration::from_secs(60));
        b.ttl_sweep(now).await;

        let mut orphans = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = b.store().scan_orphans(cursor.as_deref(), 2, now).await.unwrap();
            orphans.extend(page.items);
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let doomed_pk = format!("SESS#{}", doomed.id);
        assert_eq!(orphans.len(), 3, "3 messages: {orphans:?}");
        assert!(orphans.iter().all(|o| o.pk == doomed_pk));
        assert_eq!(b.store().delete_orphans(&orphans).await.unwrap(), 3);
        assert!(
            b.store()
                .list_messages(&doomed.id, 0, 10)
                .await
                .unwrap()
                .messages
                .is_empty()
        );
        assert_eq!(
            b.store().list_messages(&live.id, 0, 10).await.unwrap().messages.len(),
            1
        );
        let again = b.store().scan_orphans(None, 100, now).await.unwrap();
        assert!(again.items.is_empty());
    }

    /// GIVEN no checkpoint WHEN one is written, read and cleared THEN each step is visible.
    pub async fn checkpoints_round_trip<B: Backend>(b: &B) {
        let st = b.store();
        assert_eq!(st.get_checkpoint("retention").await.unwrap(), None);
        st.put_checkpoint("retention", Some("cursor-1")).await.unwrap();
        st.put_checkpoint("retention", Some("cursor-2")).await.unwrap();
        assert_eq!(
            st.get_checkpoint("retention").await.unwrap().as_deref(),
            Some("cursor-2")
        );
        st.put_checkpoint("retention", None).await.unwrap();
        assert_eq!(st.get_checkpoint("retention").await.unwrap(), None);
    }

    /// GIVEN audit records WHEN one is appended twice THEN it is stored once; listing is newest
    /// first and per site.
    pub async fn audit_is_append_only_and_newest_first<B: Backend>(b: &B) {
        let site = SiteId::parse("acme").unwrap();
        let record = |id: &str, mins: u64| AuditRecord {
            id: id.to_owned(),
            site_id: site.clone(),
            action: AuditAction::GdprErase,
            subject_hash: Some("ab".repeat(32)),
            actor: Actor::Agent {
                agent_id: AgentId::parse("alice").unwrap(),
            },
            counts: [("message".to_owned(), 3u64)].into(),
            at: at_min(mins),
            expires_at: at_min(mins).plus(policy::AUDIT_RETENTION),
        };
        b.store().append_audit(&record("r1", 1)).await.unwrap();
        b.store().append_audit(&record("r2", 2)).await.unwrap();
        b.store().append_audit(&record("r1", 1)).await.unwrap();
        let page = b.store().list_audit(&site, None, 10, at_min(3)).await.unwrap();
        assert_eq!(
            page.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r2", "r1"]
        );
        assert_eq!(page.items[1], record("r1", 1));
        assert!(
            b.store()
                .list_audit(&SiteId::parse("other-site").unwrap(), None, 10, at_min(3))
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }

    /// GIVEN a limit of 2 per minute WHEN 3 requests come within a minute THEN the third
    /// is refused until the first leaves the sliding window (not until a fixed window
    /// ends), other keys are counted apart, and time frees the counter again.
    pub async fn rate_limit_is_a_sliding_window<B: Backend>(b: &B) {
        let limit = RateLimit::new(2, Duration::from_secs(60));
        let st = b.store();
        let t = |s: u64| T0.plus(Duration::from_secs(s));
        assert!(matches!(
            st.hit("iphash", limit, t(10)).await.unwrap(),
            RateDecision::Allowed { count: 1, .. }
        ));
        assert!(matches!(
            st.hit("iphash", limit, t(40)).await.unwrap(),
            RateDecision::Allowed { count: 2, .. }
        ));
        assert_eq!(
            st.hit("iphash", limit, t(45)).await.unwrap(),
            RateDecision::Limited {
                retry_after: Duration::from_secs(25)
            },
            "free again when the request at 10 s leaves the window, at 70 s"
        );
        assert!(matches!(
            st.hit("other", limit, t(45)).await.unwrap(),
            RateDecision::Allowed { count: 1, .. }
        ));
        // At 60 s a fixed window would start afresh; the sliding window still holds two.
        assert!(matches!(
            st.hit("iphash", limit, t(60)).await.unwrap(),
            RateDecision::Limited { .. }
        ));
        assert!(matches!(
            st.hit("iphash", limit, t(70)).await.unwrap(),
            RateDecision::Allowed { count: 2, .. }
        ));
        assert!(matches!(
            st.hit("iphash", limit, t(71)).await.unwrap(),
            RateDecision::Limited { .. }
        ));
        assert!(matches!(
            st.hit("iphash", limit, t(1_000)).await.unwrap(),
            RateDecision::Allowed { count: 1, .. }
        ));
    }

    /// GIVEN a limit of 5 per 10 s WHEN requests come every 250 ms for a minute, densest
    /// around fixed-window boundaries THEN no interval of 10 s ever holds more than 5
    /// admitted ones, and every refusal had 5 in the window before it.
    pub async fn rate_limit_has_no_double_burst_at_a_window_boundary<B: Backend>(b: &B) {
        let limit = RateLimit::new(5, Duration::from_secs(10));
        let st = b.store();
        let mut arrivals: Vec<Timestamp> = Vec::new();
        for k in 1..=5u64 {
            let boundary = T0.plus(Duration::from_secs(10 * k));
            arrivals.extend((1..=6).rev().map(|i| boundary.minus(Duration::from_millis(i * 50))));
            arrivals.extend((0..6).map(|i| boundary.plus(Duration::from_millis(i * 50))));
            arrivals.extend((1..8).map(|i| boundary.plus(Duration::from_millis(1_000 * i))));
        }
        arrivals.sort();
        let mut admitted = Vec::new();
        for t in &arrivals {
            match st.hit("burst", limit, *t).await.unwrap() {
                RateDecision::Allowed { .. } => admitted.push(*t),
                RateDecision::Limited { retry_after } => {
                    let in_window = admitted.iter().filter(|a| **a > t.minus(limit.window)).count();
                    assert_eq!(in_window, 5, "refused with only {in_window} in the window");
                    let oldest = admitted[admitted.len() - 5];
                    assert_eq!(retry_after, t.until(oldest.plus(limit.window)));
                }
            }
        }
        for a in &admitted {
            let n = admitted
                .iter()
                .filter(|t| **t >= *a && **t < a.plus(limit.window))
                .count();
            assert!(n <= 5, "{n} admitted within 10 s from {a:?} on {}", b.name());
        }
        assert!(
            admitted.len() >= 25,
            "the limit still admits its rate: {}",
            admitted.len()
        );
    }

    /// GIVEN a limit of 7 WHEN 40 requests for one key arrive at once, in parallel THEN
    /// exactly 7 are admitted (conditional writes, no lost update), and the refused
    /// ones wait until the window has passed.
    pub async fn concurrent_rate_hits_admit_exactly_the_limit<B: Backend>(b: &B) {
        let limit = RateLimit::new(7, Duration::from_secs(60));
        let st = b.store();
        let now = T0.plus(Duration::from_secs(5));
        let decisions = futures::future::join_all((0..40).map(|_| st.hit("parallel", limit, now))).await;
        let mut counts = Vec::new();
        let mut refused = 0;
        for d in decisions {
            match d.expect("hit") {
                RateDecision::Allowed { count, .. } => counts.push(count),
                RateDecision::Limited { retry_after } => {
                    assert_eq!(retry_after, limit.window);
                    refused += 1;
                }
            }
        }
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=7).collect::<Vec<_>>(),
            "each admitted hit saw its own count"
        );
        assert_eq!(refused, 33);
    }

    /// GIVEN admitted and refused hits WHEN the store is inspected THEN one counter item
    /// exists per key, it expires a window after the last admission, and a key that was
    /// only refused (limit 0) leaves nothing behind.
    pub async fn rate_counter_expires_and_holds_only_the_keyed_hash<B: Backend>(b: &B) {
        let limit = RateLimit::new(3, Duration::from_secs(60));
        let st = b.store();
        let before = b.counts().await.get("rate").copied().unwrap_or(0);
        for s in [0, 1, 2, 3, 4] {
            st.hit("k1", limit, T0.plus(Duration::from_secs(s))).await.unwrap();
        }
        assert!(matches!(
            st.hit("k0", RateLimit::new(0, Duration::from_secs(60)), T0)
                .await
                .unwrap(),
            RateDecision::Limited { .. }
        ));
        assert_eq!(b.counts().await.get("rate").copied().unwrap_or(0), before + 1);
        // The last admission was at 2 s: swept at 62 s, and the key starts afresh.
        b.ttl_sweep(T0.plus(Duration::from_secs(61))).await;
        assert_eq!(b.counts().await.get("rate").copied().unwrap_or(0), before + 1);
        b.ttl_sweep(T0.plus(Duration::from_secs(62))).await;
        assert_eq!(b.counts().await.get("rate").copied().unwrap_or(0), before);
        assert!(matches!(
            st.hit("k1", limit, T0.plus(Duration::from_secs(62))).await.unwrap(),
            RateDecision::Allowed { count: 1, .. }
        ));
    }

    /// GIVEN a cursor from one site's listing WHEN it is used for another site, or is garbage,
    /// THEN the store refuses it instead of reading elsewhere.
    pub async fn foreign_cursors_are_refused<B: Backend>(b: &B) {
        let a = seeded(b, "site-a").await;
        let other = seeded(b, "site-b").await;
        for i in 0..3u64 {
            let s = new_session(b, &a, T0).await;
            b.store()
                .append_message(&visitor_msg(&s, "c1", "hi"), at_min(i + 1), None)
                .await
                .unwrap();
        }
        let page = b
            .store()
            .list_conversations(&a.id, None, None, 1, at_min(5))
            .await
            .unwrap();
        let cursor = page.next.expect("more pages");
        assert_eq!(
            b.store()
                .list_conversations(&other.id, None, Some(&cursor), 1, at_min(5))
                .await,
            Err(StoreError::InvalidCursor)
        );
        for garbage in ["", "!!!", "eyJ4IjoiMSJ9"] {
            assert_eq!(
                b.store()
                    .list_conversations(&a.id, None, Some(garbage), 1, at_min(5))
                    .await,
                Err(StoreError::InvalidCursor),
                "{garbage:?}"
            );
        }
        assert_eq!(
            b.store().list_sites(Some("!!!"), 1).await,
            Err(StoreError::InvalidCursor)
        );
    }

    /// GIVEN a session WHEN the visitor submits a pre-chat form THEN it is stored with its
    /// consent, the email lookup finds the session, and the access extends an empty session.
    pub async fn prechat_is_recorded_and_found_by_email<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        let prechat = PreChat {
            name: Some(PersonName::parse("Ada").unwrap()),
            email: Some(Email::parse("ada@example.org").unwrap()),
            consent: Consent {
                purpose: "support-follow-up".into(),
                policy_version: "v1".into(),
                given_at: at_min(5),
            },
        };
        let updated = b
            .store()
            .set_prechat(&s.id, &prechat, Some("lookup-key"), at_min(5))
            .await
            .unwrap();
        assert_eq!(updated.prechat.as_ref(), Some(&prechat));
        assert_eq!(updated.expires_at, at_min(35));
        let found = b.store().sessions_by_email(&site.id, "lookup-key").await.unwrap();
        assert_eq!(
            found.iter().map(|f| f.id.clone()).collect::<Vec<_>>(),
            vec![s.id.clone()]
        );
        assert_eq!(
            b.store().get_session(&s.id, at_min(6)).await.unwrap().unwrap().prechat,
            Some(prechat.clone())
        );
        assert_eq!(
            b.store().set_prechat(&s.id, &prechat, None, at_min(40)).await,
            Err(StoreError::NotFound)
        );
    }

    /// GIVEN three messages WHEN read markers are set THEN each role's marker only moves
    /// forward and never past the last message.
    pub async fn read_markers_only_move_forward<B: Backend>(b: &B) {
        let site = seeded(b, "acme").await;
        let s = new_session(b, &site, T0).await;
        for i in 0..3 {
            b.store()
                .append_message(&visitor_msg(&s, &format!("c{i}"), "hi"), at_min(1), None)
                .await
                .unwrap();
        }
        let r = b
            .store()
            .mark_read(&s.id, AuthorRole::Agent, 2, at_min(2))
            .await
            .unwrap();
        assert_eq!((r.agent_read_seq, r.visitor_read_seq), (2, 0));
        let r = b
            .store()
            .mark_read(&s.id, AuthorRole::Agent, 1, at_min(2))
            .await
            .unwrap();
        assert_eq!(r.agent_read_seq, 2, "never backwards");
        let r = b
            .store()
            .mark_read(&s.id, AuthorRole::Visitor, 99, at_min(2))
            .await
            .unwrap();
        assert_eq!(r.visitor_read_seq, 3, "never past the last message");
        assert_eq!(
            b.store()
                .get_session(&s.id, at_min(3))
                .await
                .unwrap()
                .unwrap()
                .agent_read_seq,
            2
        );
    }
}
