//! GDPR: who may ask, whose data it is, and the export and erasure themselves.
//! Shared by the `gdpr-export` and `gdpr-delete` functions (and the retention job's
//! erasures), so every path applies the same rules.
//!
//! Who may ask: a site admin (agent token with the admin role, agent still
//! active and still admin, token not revoked, request from the site's agent IP
//! allow-list: [`crate::api::agent_auth::authenticate_agent`]) for any visitor
//! of their own site, found by visitor id, session id or pre-chat email; and
//! the visitor themself with their own session token. Deleting one
//! conversation is open to any agent of the site.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::frames::MessageView;
use crate::api::json::{self, Object};
use crate::auth::{AuthError, PresentedVisitorToken};
use crate::clock::Timestamp;
use crate::config::Config;
use crate::domain::*;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::ConnectionGateway;
use crate::policy::{self, AUDIT_RETENTION, EMPTY_SESSION_IDLE, VISITOR_TOKEN_LIFETIME};
use crate::storage::{
    ConnectionStore, ConversationStore, ErasedCounts, MessageStore, SiteStore, StoreError, SubjectStore,
};

/// How an export's sessions were found, as the document states per session.
///
/// A pre-chat email is typed by whoever fills in the form, never verified: a
/// lookup by email may match a stranger who typed the same address. Every
/// session found that way says so (`"foundBy": "unverifiedEmail"`), and the
/// document carries [`UNVERIFIED_EMAIL_NOTE`], so nobody mistakes the match
/// for proof of identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FoundBy {
    /// The visitor's own session token (self-service).
    OwnSessionToken,
    /// A visitor id an admin named.
    VisitorId,
    /// A session id an admin named (with every session of its visitor).
    SessionId,
    /// A pre-chat email an admin named: typed by someone, not verified.
    UnverifiedEmail,
}

impl FoundBy {
    /// How sessions resolved from `subject` were found.
    pub fn of(subject: &SubjectRef) -> Self {
        match subject {
            SubjectRef::Myself => Self::OwnSessionToken,
            SubjectRef::Visitor(_) => Self::VisitorId,
            SubjectRef::Session(_) => Self::SessionId,
            SubjectRef::Email(_) => Self::UnverifiedEmail,
        }
    }
}

/// The export's top-level `note` when its sessions were found by email.
pub const UNVERIFIED_EMAIL_NOTE: &str = "These sessions were found by a pre-chat email address, which visitors type \
    and nobody verifies: some may belong to someone else who typed the same address. Check each session before \
    handing this export over or erasing anything (see docs/gdpr.md, 'Requests by email').";

/// The export document's schema identifier (see docs/gdpr.md).
pub const EXPORT_SCHEMA: &str = "eurochat.gdpr-export/1";

/// An export response stays under this many bytes (API Gateway and Lambda allow 6 MB).
pub const EXPORT_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Requester {
    /// An agent of `site`.
    Agent {
        /// Their site.
        site: SiteId,
        /// The agent.
        agent: AgentId,
        /// Their current role.
        role: AgentRole,
    },
    /// The data subject, holding a live session of `site`.
    Subject {
        /// The session's site.
        site: SiteId,
        /// The session the token opened.
        session: Box<Session>,
    },
}

impl Requester {
    /// The site the requester belongs to.
    pub fn site(&self) -> &SiteId {
        match self {
            Self::Agent { site, .. } | Self::Subject { site, .. } => site,
        }
    }

    /// The audit trail's actor.
    pub fn actor(&self) -> Actor {
        match self {
            Self::Agent { agent, .. } => Actor::Agent {
                agent_id: agent.clone(),
            },
            Self::Subject { .. } => Actor::Subject,
        }
    }
}

/// Authenticates a bearer token: an agent token (checked as at `$connect`,
/// including the site's agent IP allow-list against `source_ip`, the address
/// from API Gateway's request context, never a header), or a visitor's session
/// token. `route` names the endpoint in security logs.
pub async fn authenticate(
    store: &(impl SiteStore + SubjectStore),
    config: &Config,
    bearer: Option<&str>,
    source_ip: Option<std::net::IpAddr>,
    route: &'static str,
    now: Timestamp,
) -> Result<Requester, ApiError> {
    let token = bearer.ok_or(AuthError::Invalid)?;
    if token.starts_with("at1.") {
        let ok = crate::api::agent_auth::authenticate_agent(store, config, token, source_ip, route, now).await?;
        Ok(Requester::Agent {
            site: ok.site.id,
            agent: ok.agent.id,
            role: ok.role,
        })
    } else {
        let presented = PresentedVisitorToken::parse(token)?;
        // A session fenced by an interrupted erasure still opens GDPR requests, so
        // its visitor can retry "Delete my data" (and see what is left) themself;
        // every chat path treats it as gone. An expired session opens nothing.
        let session = store
            .session_any(presented.session_id())
            .await?
            .filter(|s| crate::policy::is_live(s.expires_at, now))
            .ok_or(AuthError::Invalid)?;
        presented.verify(&session.token_hash, session.token_expires_at, now)?;
        Ok(Requester::Subject {
            site: session.site_id.clone(),
            session: Box::new(session),
        })
    }
}

/// How a request names its data subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectRef {
    /// The requester themself (visitor self-service).
    Myself,
    /// A visitor id.
    Visitor(VisitorId),
    /// One of the visitor's sessions.
    Session(SessionId),
    /// The email of a pre-chat form.
    Email(Email),
}

/// Reads the subject from a request body: at most one of `visitorId`, `sessionId`, `email`.
pub fn subject_ref(body: &Object) -> Result<SubjectRef, ApiError> {
    let visitor = json::opt_str(body, "visitorId")?;
    let session = json::opt_str(body, "sessionId")?;
    let email = json::opt_str(body, "email")?;
    match (visitor, session, email) {
        (None, None, None) => Ok(SubjectRef::Myself),
        (Some(v), None, None) => Ok(SubjectRef::Visitor(VisitorId::parse(v)?)),
        (None, Some(s), None) => Ok(SubjectRef::Session(SessionId::parse(s)?)),
        (None, None, Some(e)) => Ok(SubjectRef::Email(Email::parse(e)?)),
        _ => Err(ValidationError::new("subject", "give one of visitorId, sessionId or email").into()),
    }
}

/// Checks that `requester` may act on `subject` in `site_hint` (the body's `siteId`, if
/// any). Visitors may only name themselves; agents must be admins of that site.
pub fn check_access(requester: &Requester, subject: &SubjectRef, site_hint: Option<&str>) -> Result<(), ApiError> {
    if let Some(site) = site_hint
        && site != requester.site().as_str()
    {
        return Err(ApiError::new(ErrorCode::Forbidden, "not allowed for this site"));
    }
    match (requester, subject) {
        (Requester::Subject { .. }, SubjectRef::Myself) => Ok(()),
        (Requester::Subject { .. }, _) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "visitors may only ask for their own data",
        )),
        (
            Requester::Agent {
                role: AgentRole::Admin, ..
            },
            SubjectRef::Myself,
        ) => Err(ValidationError::new("subject", "give one of visitorId, sessionId or email").into()),
        (
            Requester::Agent {
                role: AgentRole::Admin, ..
            },
            _,
        ) => Ok(()),
        (Requester::Agent { .. }, _) => Err(ApiError::new(ErrorCode::Forbidden, "site admins only")),
    }
}

/// A data subject's sessions on one site (possibly none: an unknown subject and a
/// subject of another site look the same).
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// The visitor ids found.
    pub visitor_ids: BTreeSet<VisitorId>,
    /// Their sessions, oldest first.
    pub sessions: Vec<Session>,
}

/// Finds the subject's sessions on the requester's site.
pub async fn resolve(
    store: &impl SubjectStore,
    config: &Config,
    requester: &Requester,
    subject: &SubjectRef,
) -> Result<Subject, StoreError> {
    let site = requester.site();
    let mut visitors: BTreeSet<VisitorId> = BTreeSet::new();
    // Sessions already read consistently by id. The index behind
    // `sessions_of_visitor` is eventually consistent on DynamoDB, so a session
    // created a moment ago could be missing from it: these are added anyway.
    let mut known: Vec<Session> = Vec::new();
    match subject {
        SubjectRef::Myself => {
            if let Requester::Subject { session, .. } = requester {
                visitors.insert(session.visitor_id.clone());
                known.push((**session).clone());
            }
        }
        SubjectRef::Visitor(v) => {
            visitors.insert(v.clone());
        }
        SubjectRef::Session(id) => {
            if let Some(s) = store.session_any(id).await?.filter(|s| s.site_id == *site) {
                visitors.insert(s.visitor_id.clone());
                known.push(s);
            }
        }
        SubjectRef::Email(e) => {
            let lookup = config.pseudonymizer.email_lookup(site, e);
            for s in store.sessions_by_email(site, &lookup).await? {
                visitors.insert(s.visitor_id);
            }
        }
    }
    let mut sessions = known;
    for v in &visitors {
        sessions.extend(store.sessions_of_visitor(site, v).await?);
    }
    sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    sessions.dedup_by(|a, b| a.id == b.id);
    let visitor_ids = if sessions.is_empty() { BTreeSet::new() } else { visitors };
    Ok(Subject { visitor_ids, sessions })
}

/// Erases sessions: first fences every one of them (from then on no writer can
/// add to them: messages, read markers, pre-chat forms, joins and reconnects
/// are refused as `not_found`), then closes their visitors' live connections,
/// then sweeps each partition until it is empty. Fails, never half-reports, if
/// any step fails; the sessions stay fenced and a rerun finishes the job,
/// counting only what it removed.
pub async fn erase_sessions(
    store: &(impl ConnectionStore + ConversationStore),
    gateway: &dyn ConnectionGateway,
    sessions: &[Session],
    now: Timestamp,
) -> Result<ErasedCounts, StoreError> {
    for s in sessions {
        store.fence_session(&s.id, now).await?;
    }
    let mut counts = ErasedCounts::default();
    for s in sessions {
        for c in store.conversation_connections(&s.id, now).await? {
            if matches!(c.principal, Principal::Visitor { .. })
                && let Err(e) = gateway.close(&c.id).await
            {
                tracing::warn!(error = %e, "could not close an erased visitor's connection");
            }
        }
        counts.merge(store.erase_session(&s.id, now).await?);
    }
    Ok(counts)
}

/// The conversation an agent names for deletion (WebSocket `deleteConversation`
/// and HTTP `scope: "conversation"` alike): a session of the agent's site that
/// is still held, live or expired-but-not-yet-removed or already fenced, so
/// both paths erase the same data. `None` if nothing of it is held on that site.
pub async fn held_conversation(
    store: &impl SubjectStore,
    site: &SiteId,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    Ok(store.session_any(id).await?.filter(|s| s.site_id == *site))
}

/// A time-ordered unique id for an audit record.
pub fn audit_id(now: Timestamp) -> String {
    let r: [u8; 8] = crate::random::random_bytes();
    format!(
        "{}-{}",
        crate::storage::keys::ts(now),
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// The audit record of a GDPR action on `subject` (no personal data: a keyed hash).
pub fn audit_record(
    config: &Config,
    requester: &Requester,
    action: AuditAction,
    subject: &Subject,
    counts: BTreeMap<String, u64>,
    now: Timestamp,
) -> AuditRecord {
    let site = requester.site().clone();
    let ids: Vec<&str> = subject.visitor_ids.iter().map(VisitorId::as_str).collect();
    AuditRecord {
        id: audit_id(now),
        subject_hash: (!ids.is_empty()).then(|| config.pseudonymizer.subject(&site, &ids.join(","))),
        site_id: site,
        action,
        actor: requester.actor(),
        counts,
        at: now,
        expires_at: now.plus(AUDIT_RETENTION),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kept {
    until: String,
    rule: &'static str,
}

fn kept(until: Timestamp, rule: &'static str) -> Kept {
    Kept {
        until: until.to_rfc3339(),
        rule,
    }
}

/// Where an export page resumes: a session of the subject and the last message sent.
fn encode_cursor(session: &SessionId, after: u64) -> String {
    B64.encode(json!({ "s": session.as_str(), "a": after }).to_string())
}

/// An export cursor's position (a session id and the last message sent), or
/// `invalid_request` (`field: "cursor"`) if it is not one eurochat could have
/// issued. Checked before a request counts against the export limit, so a
/// malformed cursor is refused without changing anything stored.
pub fn parse_cursor(cursor: &str) -> Result<(String, u64), ApiError> {
    let bad = || ApiError {
        field: Some("cursor"),
        ..ApiError::new(ErrorCode::InvalidRequest, "invalid cursor")
    };
    let raw = B64.decode(cursor).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let (Some(s), Some(a)) = (v["s"].as_str(), v["a"].as_u64()) else {
        return Err(bad());
    };
    SessionId::parse(s).map_err(|_| bad())?;
    Ok((s.to_owned(), a))
}

fn decode_cursor(cursor: &str, subject: &Subject) -> Result<(usize, u64), ApiError> {
    let (s, a) = parse_cursor(cursor)?;
    // A cursor only works for the subject it was issued for.
    let index = subject
        .sessions
        .iter()
        .position(|x| x.id.as_str() == s)
        .ok_or(ApiError {
            field: Some("cursor"),
            ..ApiError::new(ErrorCode::InvalidRequest, "invalid cursor")
        })?;
    Ok((index, a))
}

/// One page of a subject's export (see docs/gdpr.md for the schema). Pages end
/// under [`EXPORT_PAGE_BYTES`]; `next` continues.
///
/// `site` must be the site as the deployment runs it ([`Site::within`] its
/// limit): every `kept.until` follows the retention in force now, the shorter of
/// the session's own and the site's current one. `found_by` is stated on every
/// session, with a note when it is an unverified email.
pub async fn export_page(
    store: &(impl MessageStore + ConnectionStore),
    site: &Site,
    subject: &Subject,
    found_by: FoundBy,
    cursor: Option<&str>,
    now: Timestamp,
    page_bytes: usize,
) -> Result<Value, ApiError> {
    let (mut index, mut after) = match cursor {
        Some(c) => decode_cursor(c, subject)?,
        None => (0, 0),
    };
    let mut budget = page_bytes;
    let mut sessions_out = Vec::new();
    let mut next = None;
    'sessions: while index < subject.sessions.len() {
        let s = &subject.sessions[index];
        let mut entry = serde_json::Map::new();
        entry.insert("sessionId".into(), s.id.as_str().into());
        entry.insert("foundBy".into(), json!(found_by));
        if after == 0 {
            let details = session_details(s, site, now, &store.conversation_connections(&s.id, now).await?);
            let size = Value::Object(details.clone()).to_string().len();
            // Many sessions must not overflow a page either: stop at a session boundary.
            if size > budget && !sessions_out.is_empty() {
                next = Some(encode_cursor(&s.id, 0));
                break 'sessions;
            }
            budget = budget.saturating_sub(size);
            entry.extend(details);
        }
        let mut messages = Vec::new();
        loop {
            let page = store.list_messages(&s.id, after, 100).await?;
            for m in &page.messages {
                let view = MessageView::from(m);
                // The retry record of a message holds (author, clientMsgId, seq): all of it is here.
                let v = json!({"seq": view.seq, "role": view.role, "authorId": view.author_id, "text": view.text,
                    "clientMsgId": m.client_msg_id.as_str(), "createdAt": m.created_at.to_rfc3339()});
                let size = v.to_string().len() + 1;
                if size > budget && !(messages.is_empty() && sessions_out.is_empty()) {
                    // Nothing of this session's messages fits: leave the whole session (details
                    // included) to the next page, so its details appear exactly once.
                    if !(messages.is_empty() && after == 0) {
                        entry.insert("messages".into(), Value::Array(messages));
                        entry.insert("messagesComplete".into(), false.into());
                        sessions_out.push(Value::Object(entry));
                    }
                    next = Some(encode_cursor(&s.id, after));
                    break 'sessions;
                }
                budget = budget.saturating_sub(size);
                after = m.seq;
                messages.push(v);
            }
            if !page.has_more {
                break;
            }
        }
        entry.insert("messages".into(), Value::Array(messages));
        entry.insert("messagesComplete".into(), true.into());
        sessions_out.push(Value::Object(entry));
        index += 1;
        after = 0;
    }
    Ok(json!({
        "schema": EXPORT_SCHEMA,
        "generatedAt": now.to_rfc3339(),
        "site": { "id": site.id, "name": site.name },
        "subject": { "visitorIds": subject.visitor_ids, "sessionCount": subject.sessions.len(), "foundBy": found_by },
        "note": (found_by == FoundBy::UnverifiedEmail).then_some(UNVERIFIED_EMAIL_NOTE),
        "retention": {
            "emptySession": format!("deleted {} minutes after the last access", EMPTY_SESSION_IDLE.as_secs() / 60),
            "conversation": format!("deleted {} days after the last message (or earlier by an agent); a conversation started under a shorter retention keeps that one", site.retention.conversation_days),
            "ipAddress": format!("stored as '{}', deleted {} days after it was recorded, or with its session",
                serde_json::to_value(site.retention.ip_policy).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                site.retention.ip_retention_days),
            "visitorToken": format!("valid {} days after it was issued or last renewed; only a hash is stored", VISITOR_TOKEN_LIFETIME.as_secs() / 86_400),
            "messages": "kept with their conversation",
            "retryRecords": "one per message (its author, clientMsgId and sequence number, all shown with the message), kept with their conversation",
            "connections": format!("a record per open chat connection (when it opened), deleted when it closes, at the latest {} minutes after it opened", policy::CONNECTION_LIFETIME.as_secs() / 60),
            "messageRateWindow": "the start of the current one-minute window and the messages sent in it, kept with the session",
            "preChatForm": "kept with its session",
            "auditRecords": format!("GDPR actions are recorded for {} years without personal data (a keyed hash of your visitor id)", AUDIT_RETENTION.as_secs() / (365 * 86_400)),
        },
        "sessions": sessions_out,
        "next": next,
    }))
}

/// When a session stops being kept under the retention in force now: the
/// shorter of its own retention and `site`'s current one (capped by the
/// deployment), counted from its last message. An empty session's 30 minutes
/// do not depend on the site.
fn effective_expiry(s: &Session, site: &Site) -> Timestamp {
    match s.last_activity_at {
        Some(last) if s.is_conversation() => s
            .expires_at
            .min(last.plus(policy::days(site.retention.conversation_days))),
        _ => s.expires_at,
    }
}

fn session_details(
    s: &Session,
    site: &Site,
    now: Timestamp,
    connections: &[Connection],
) -> serde_json::Map<String, Value> {
    let until = effective_expiry(s, site);
    let mut m = serde_json::Map::new();
    m.insert("visitorId".into(), s.visitor_id.as_str().into());
    m.insert("createdAt".into(), s.created_at.to_rfc3339().into());
    m.insert("lastAccessAt".into(), s.last_access_at.to_rfc3339().into());
    m.insert(
        "lastMessageAt".into(),
        s.last_activity_at.map(Timestamp::to_rfc3339).into(),
    );
    m.insert("status".into(), json!(s.status));
    m.insert("messageCount".into(), s.last_seq.into());
    let rule = if s.is_conversation() {
        "conversation: the site's current retention after the last message (the shorter, if the conversation started under a shorter one)"
    } else {
        "empty session: 30 minutes after the last access"
    };
    m.insert("kept".into(), json!(kept(until, rule)));
    // Data past its expiry is still listed until it is physically removed, and says so.
    m.insert("pendingDeletion".into(), (!policy::is_live(until, now)).into());
    m.insert(
        "visitorToken".into(),
        json!({ "expiresAt": s.token_expires_at.to_rfc3339(), "stored": "SHA-256 hash only", "kept": kept(until, "with the session") }),
    );
    let ip = s.ip.as_ref().map(|ip| {
        let ip_until = ip.recorded_at.plus(policy::days(site.retention.ip_retention_days)).min(until);
        json!({ "address": ip.address, "recordedAt": ip.recorded_at.to_rfc3339(), "kept": kept(ip_until, "site IP retention, or with the session") })
    });
    m.insert("technical".into(), json!({ "ip": ip, "userAgent": s.user_agent }));
    let prechat = s.prechat.as_ref().map(|p| {
        json!({
            "name": p.name.as_ref().map(PersonName::as_str),
            "email": p.email.as_ref().map(Email::as_str),
            "consent": { "purpose": p.consent.purpose, "policyVersion": p.consent.policy_version, "givenAt": p.consent.given_at.to_rfc3339() },
            "kept": kept(until, "with the session"),
        })
    });
    m.insert("preChatForm".into(), prechat.unwrap_or(Value::Null));
    m.insert(
        "readMarkers".into(),
        json!({ "visitor": s.visitor_read_seq, "agents": s.agent_read_seq }),
    );
    // The rate limiter's state is stored on the session: a window start and a count.
    let never_limited = s.rate_count == 0 && s.rate_window_start == Timestamp::default();
    m.insert(
        "messageRateWindow".into(),
        if never_limited {
            Value::Null
        } else {
            json!({ "windowStart": s.rate_window_start.to_rfc3339(), "messagesInWindow": s.rate_count, "kept": kept(until, "with the session") })
        },
    );
    // The visitor's own live connections; agents' connections are the agents' data.
    let connections: Vec<Value> = connections
        .iter()
        .filter(|c| matches!(&c.principal, Principal::Visitor { session_id, .. } if *session_id == s.id))
        .map(|c| {
            json!({
                "connectionId": c.id.as_str(),
                "connectedAt": c.connected_at.to_rfc3339(),
                "kept": kept(c.expires_at.min(until), "until the connection closes, at the latest 2 hours 10 minutes after it opened"),
            })
        })
        .collect();
    m.insert("connections".into(), connections.into());
    m
}
