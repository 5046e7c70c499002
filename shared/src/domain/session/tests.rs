//! The session's rules, one test per behaviour, without a store.

use super::*;
use crate::domain::RetentionPolicy;
use crate::domain::{Consent, Email, PersonName};
use crate::policy::{EMPTY_SESSION_IDLE, VISITOR_TOKEN_LIFETIME};

const MIN: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

fn t(secs: i64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// A fresh session of a site keeping conversations 7 days, started at `t(0)`.
fn fresh() -> Session {
    let site = Site {
        id: SiteId::parse("acme").unwrap(),
        name: "acme".into(),
        allowed_origins: vec![],
        retention: RetentionPolicy {
            conversation_days: 7,
            ..RetentionPolicy::default()
        },
        agent_ip_allowlist: None,
        created_at: t(0),
        updated_at: t(0),
    };
    Session::start(SessionId::generate(), &site, VisitorId::generate(), "hash".into(), t(0))
}

fn at(now: Timestamp) -> SessionTouch {
    SessionTouch {
        now,
        renew_token: false,
    }
}

#[test]
fn a_new_session_is_empty_open_and_lives_30_minutes() {
    let s = fresh();
    assert!(!s.is_conversation());
    assert_eq!(s.status, ConversationStatus::Open);
    assert_eq!(s.retention_days, 7, "copied from the site");
    assert_eq!(s.expires_at, t(0).plus(EMPTY_SESSION_IDLE));
    assert_eq!(s.token_expires_at, t(0).plus(VISITOR_TOKEN_LIFETIME));
    assert!(s.is_usable(t(0)));
    assert!(!s.is_usable(s.expires_at), "gone at its expiry instant");
}

#[test]
fn expiry_follows_last_access_until_the_first_message_then_last_activity() {
    let mut s = fresh();
    s.last_access_at = t(1_000);
    assert_eq!(s.expiry(), t(1_000 + 1_800));
    s.last_seq = 3;
    s.last_activity_at = Some(t(1_000));
    s.last_access_at = t(9_999_999);
    assert_eq!(s.expiry(), t(1_000 + 7 * 86_400));
}

#[test]
fn a_fenced_session_is_not_usable() {
    let mut s = fresh();
    s.erasing_since = Some(t(1));
    assert!(!s.is_usable(t(1)));
}

#[test]
fn touch_extends_an_empty_session_and_renews_the_token_only_when_asked() {
    let mut s = fresh();
    let later = t(0).plus(20 * MIN);
    s.touch(at(later));
    assert_eq!(s.last_access_at, later);
    assert_eq!(s.expires_at, later.plus(EMPTY_SESSION_IDLE));
    assert_eq!(s.token_expires_at, t(0).plus(VISITOR_TOKEN_LIFETIME), "not renewed");
    s.touch(SessionTouch {
        now: later,
        renew_token: true,
    });
    assert_eq!(s.token_expires_at, later.plus(VISITOR_TOKEN_LIFETIME));
}

#[test]
fn touch_never_moves_last_access_backwards() {
    let mut s = fresh();
    s.touch(at(t(600)));
    s.touch(at(t(300)));
    assert_eq!(s.last_access_at, t(600));
    assert_eq!(s.expires_at, t(600).plus(EMPTY_SESSION_IDLE));
}

#[test]
fn touch_does_not_shorten_a_conversation() {
    let mut s = fresh();
    s.append(t(60), None).unwrap();
    s.touch(at(t(120)));
    assert_eq!(
        s.expires_at,
        t(60).plus(7 * DAY),
        "retention counts from the last message"
    );
}

fn prechat(email: Option<&str>) -> PreChat {
    PreChat {
        name: Some(PersonName::parse("Jane").unwrap()),
        email: email.map(|e| Email::parse(e).unwrap()),
        consent: Consent {
            purpose: "support-follow-up".into(),
            policy_version: "1".into(),
            given_at: t(5),
        },
    }
}

#[test]
fn record_prechat_replaces_the_form_and_its_lookup_and_counts_as_access() {
    let mut s = fresh();
    s.record_prechat(&prechat(Some("jane@example.com")), Some("hmac1"), t(5));
    assert_eq!(s.email_lookup.as_deref(), Some("hmac1"));
    assert_eq!(s.last_access_at, t(5));
    assert_eq!(s.expires_at, t(5).plus(EMPTY_SESSION_IDLE));
    let token = s.token_expires_at;
    s.record_prechat(&prechat(None), None, t(9));
    assert_eq!(s.prechat, Some(prechat(None)));
    assert_eq!(s.email_lookup, None, "the old address no longer finds the session");
    assert_eq!(s.token_expires_at, token, "a form does not renew the token");
}

#[test]
fn append_numbers_messages_and_makes_a_conversation() {
    let mut s = fresh();
    assert_eq!(s.append(t(60), None), Ok(1));
    assert_eq!(s.append(t(30), None), Ok(2), "a late clock still gets the next number");
    assert!(s.is_conversation());
    assert_eq!(s.last_activity_at, Some(t(30)));
    assert_eq!(s.last_access_at, t(60), "last access never moves back");
    assert_eq!(s.expires_at, t(30).plus(7 * DAY));
}

#[test]
fn append_counts_the_rate_window_and_a_refusal_changes_nothing() {
    let mut s = fresh();
    let rate = Some(RateLimit::new(2, MIN));
    let start = t(120); // a window boundary
    assert_eq!(s.append(start, rate), Ok(1));
    assert_eq!((s.rate_window_start, s.rate_count), (start, 1));
    assert_eq!(s.append(start.plus(Duration::from_secs(1)), rate), Ok(2));
    let before = s.clone();
    assert_eq!(
        s.append(start.plus(Duration::from_secs(15)), rate),
        Err(MessageRateExceeded {
            retry_after: Duration::from_secs(45)
        })
    );
    assert_eq!(s, before, "a refused message is not counted and gets no number");
    assert_eq!(s.append(start.plus(MIN), rate), Ok(3), "the next window starts afresh");
    assert_eq!((s.rate_window_start, s.rate_count), (start.plus(MIN), 1));
}

#[test]
fn read_markers_never_go_backwards_nor_past_the_last_message() {
    let mut s = fresh();
    for i in 0..3 {
        s.append(t(i), None).unwrap();
    }
    s.mark_read(AuthorRole::Visitor, 2);
    s.mark_read(AuthorRole::Visitor, 1);
    assert_eq!(s.visitor_read_seq, 2);
    s.mark_read(AuthorRole::Agent, 99);
    assert_eq!(s.agent_read_seq, 3, "clamped to the last message");
    s.mark_read(AuthorRole::System, 1);
    assert_eq!(s.agent_read_seq, 3, "system counts as the agents' side");
    assert_eq!(s.visitor_read_seq, 2, "the sides are independent");
}

#[test]
fn debug_output_hides_personal_fields() {
    let mut s = fresh();
    s.record_prechat(&prechat(Some("jane@example.com")), Some("hmac1"), t(5));
    s.user_agent = Some("SecretBrowser".into());
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("Jane") && !shown.contains("Secret") && !shown.contains("hash"),
        "{shown}"
    );
}

#[test]
fn apply_is_the_same_as_the_methods_both_stores_used_to_call() {
    let mut by_apply = fresh();
    by_apply.append(by_apply.created_at, None).unwrap();
    by_apply.append(by_apply.created_at, None).unwrap();
    let mut by_method = by_apply.clone();
    let now = by_apply.created_at.plus(std::time::Duration::from_secs(60));
    let touch = SessionTouch { now, renew_token: true };
    by_apply.apply(&SessionChange::Touch(touch));
    by_method.touch(touch);
    by_apply.apply(&SessionChange::Read {
        role: AuthorRole::Visitor,
        seq: 3,
    });
    by_method.mark_read(AuthorRole::Visitor, 3);
    by_apply.apply(&SessionChange::Status(ConversationStatus::Closed));
    by_method.status = ConversationStatus::Closed;
    assert_eq!(by_apply, by_method);
}
