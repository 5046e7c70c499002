//! The GDPR export document (schema `eurochat.gdpr-export/1`, docs/gdpr.md),
//! built from typed records.
//!
//! Every stored record is taken apart field by field, without `..`: a field
//! added to `Session`, `PreChat`, `Consent`, `StoredIp`, `Connection` or
//! `Message` does not compile until this module decides whether it is exported
//! (and how) or why not. Pages end under [`EXPORT_PAGE_BYTES`], at a session or
//! message boundary; `next` continues.

use serde::Serialize;

use super::{Subject, SubjectRef};
use crate::clock::Timestamp;
use crate::domain::*;
use crate::error::{ApiError, ErrorCode};
use crate::policy::{self, AUDIT_RETENTION, EMPTY_SESSION_IDLE, VISITOR_TOKEN_LIFETIME};
use crate::storage::{ConnectionStore, MessageStore};

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

/// One page of an export.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportPage {
    schema: &'static str,
    generated_at: String,
    site: SiteRef,
    subject: SubjectSummary,
    note: Option<&'static str>,
    retention: RetentionStatement,
    sessions: Vec<SessionEntry>,
    next: Option<String>,
}

impl ExportPage {
    /// Whether another page follows (its cursor is `next`).
    pub fn has_next(&self) -> bool {
        self.next.is_some()
    }

    /// The cursor of the next page, if any.
    pub fn next(&self) -> Option<&str> {
        self.next.as_deref()
    }
}

#[derive(Debug, Serialize)]
struct SiteRef {
    id: SiteId,
    name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SubjectSummary {
    visitor_ids: Vec<VisitorId>,
    session_count: usize,
    found_by: FoundBy,
}

/// What is kept, for how long: the document states every rule it applies.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RetentionStatement {
    empty_session: String,
    conversation: String,
    ip_address: String,
    visitor_token: String,
    messages: &'static str,
    retry_records: &'static str,
    connections: String,
    message_rate_window: &'static str,
    pre_chat_form: &'static str,
    audit_records: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionEntry {
    session_id: SessionId,
    found_by: FoundBy,
    /// Absent on a page that continues the session's messages.
    #[serde(flatten)]
    details: Option<SessionDetails>,
    messages: Vec<MessageExport>,
    messages_complete: bool,
}

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionDetails {
    visitor_id: VisitorId,
    created_at: String,
    last_access_at: String,
    last_message_at: Option<String>,
    status: ConversationStatus,
    message_count: u64,
    kept: Kept,
    /// Data past its expiry is still listed until it is physically removed, and says so.
    pending_deletion: bool,
    visitor_token: TokenExport,
    technical: Technical,
    pre_chat_form: Option<PreChatExport>,
    read_markers: ReadMarkers,
    message_rate_window: Option<RateWindow>,
    connections: Vec<ConnectionExport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenExport {
    expires_at: String,
    stored: &'static str,
    kept: Kept,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Technical {
    ip: Option<IpExport>,
    user_agent: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IpExport {
    address: String,
    recorded_at: String,
    kept: Kept,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PreChatExport {
    name: Option<String>,
    email: Option<String>,
    consent: ConsentExport,
    kept: Kept,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsentExport {
    purpose: String,
    policy_version: String,
    given_at: String,
}

#[derive(Debug, Serialize)]
struct ReadMarkers {
    visitor: u64,
    agents: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RateWindow {
    window_start: String,
    messages_in_window: u32,
    kept: Kept,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionExport {
    connection_id: ConnectionId,
    connected_at: String,
    kept: Kept,
}

/// A message as exported, with its author and clientMsgId (its LSI1 key holds nothing else).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageExport {
    seq: u64,
    role: AuthorRole,
    author_id: String,
    text: String,
    client_msg_id: ClientMsgId,
    created_at: String,
}

impl From<&Message> for MessageExport {
    fn from(m: &Message) -> Self {
        let Message {
            // The session is the entry the message is listed under.
            session_id: _,
            seq,
            author: Author { role, id },
            text,
            client_msg_id,
            created_at,
        } = m;
        Self {
            seq: *seq,
            role: *role,
            author_id: id.clone(),
            text: text.as_str().to_owned(),
            client_msg_id: client_msg_id.clone(),
            created_at: created_at.to_rfc3339(),
        }
    }
}

/// Where an export page resumes: a session of the subject and the last message sent.
#[derive(serde::Serialize, serde::Deserialize)]
struct ExportPosition {
    s: String,
    a: u64,
}

fn encode_cursor(session: &SessionId, after: u64) -> String {
    let position = ExportPosition {
        s: session.as_str().to_owned(),
        a: after,
    };
    crate::storage::cursor::encode(&position).unwrap_or_default()
}

/// An export cursor's position (a session id and the last message sent), or
/// `invalid_request` (`field: "cursor"`) if it is not one eurochat could have
/// issued. Checked before a request counts against the export limit, so a
/// malformed cursor is refused without changing anything stored.
pub fn parse_cursor(cursor: &str) -> Result<(String, u64), ApiError> {
    let ExportPosition { s, a } = crate::storage::cursor::decode(cursor).map_err(|_| bad_cursor())?;
    SessionId::parse(&s).map_err(|_| bad_cursor())?;
    Ok((s, a))
}

fn bad_cursor() -> ApiError {
    ApiError {
        field: Some("cursor"),
        ..ApiError::new(ErrorCode::InvalidRequest, "invalid cursor")
    }
}

fn decode_cursor(cursor: &str, subject: &Subject) -> Result<(usize, u64), ApiError> {
    let (s, a) = parse_cursor(cursor)?;
    // A cursor only works for the subject it was issued for.
    let index = subject
        .sessions
        .iter()
        .position(|x| x.id.as_str() == s)
        .ok_or_else(bad_cursor)?;
    Ok((index, a))
}

fn json_len(v: &impl Serialize) -> usize {
    serde_json::to_string(v).map_or(0, |s| s.len())
}

/// One page of a subject's export (see docs/gdpr.md for the schema). Pages end
/// under `page_bytes`; `next` continues.
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
) -> Result<ExportPage, ApiError> {
    let (mut index, mut after) = match cursor {
        Some(c) => decode_cursor(c, subject)?,
        None => (0, 0),
    };
    let mut budget = page_bytes;
    let mut sessions_out: Vec<SessionEntry> = Vec::new();
    let mut next = None;
    'sessions: while index < subject.sessions.len() {
        let s = &subject.sessions[index];
        let mut entry = SessionEntry {
            session_id: s.id.clone(),
            found_by,
            details: None,
            messages: Vec::new(),
            messages_complete: false,
        };
        if after == 0 {
            let details = session_details(s, site, now, &store.conversation_connections(&s.id, now).await?);
            let size = json_len(&details);
            // Many sessions must not overflow a page either: stop at a session boundary.
            if size > budget && !sessions_out.is_empty() {
                next = Some(encode_cursor(&s.id, 0));
                break 'sessions;
            }
            budget = budget.saturating_sub(size);
            entry.details = Some(details);
        }
        loop {
            let page = store.list_messages(&s.id, after, 100).await?;
            for m in &page.messages {
                let v = MessageExport::from(m);
                let size = json_len(&v) + 1;
                if size > budget && !(entry.messages.is_empty() && sessions_out.is_empty()) {
                    // Nothing of this session's messages fits: leave the whole session (details
                    // included) to the next page, so its details appear exactly once.
                    if !(entry.messages.is_empty() && after == 0) {
                        sessions_out.push(entry);
                    }
                    next = Some(encode_cursor(&s.id, after));
                    break 'sessions;
                }
                budget = budget.saturating_sub(size);
                after = m.seq;
                entry.messages.push(v);
            }
            if !page.has_more {
                break;
            }
        }
        entry.messages_complete = true;
        sessions_out.push(entry);
        index += 1;
        after = 0;
    }
    Ok(ExportPage {
        schema: EXPORT_SCHEMA,
        generated_at: now.to_rfc3339(),
        site: SiteRef {
            id: site.id.clone(),
            name: site.name.clone(),
        },
        subject: SubjectSummary {
            visitor_ids: subject.visitor_ids.iter().cloned().collect(),
            session_count: subject.sessions.len(),
            found_by,
        },
        note: (found_by == FoundBy::UnverifiedEmail).then_some(UNVERIFIED_EMAIL_NOTE),
        retention: retention_statement(site),
        sessions: sessions_out,
        next,
    })
}

fn retention_statement(site: &Site) -> RetentionStatement {
    let ip_policy = serde_json::to_value(site.retention.ip_policy)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    RetentionStatement {
        empty_session: format!(
            "deleted {} minutes after the last access",
            EMPTY_SESSION_IDLE.as_secs() / 60
        ),
        conversation: format!(
            "deleted {} days after the last message (or earlier by an agent); a conversation started under a shorter retention keeps that one",
            site.retention.conversation_days
        ),
        ip_address: format!(
            "stored as '{ip_policy}', deleted {} days after it was recorded, or with its session",
            site.retention.ip_retention_days
        ),
        visitor_token: format!(
            "valid {} days after it was issued or last renewed; only a hash is stored",
            VISITOR_TOKEN_LIFETIME.as_secs() / 86_400
        ),
        messages: "kept with their conversation",
        retry_records: "no separate record: each message's author and clientMsgId (shown with the message) also index it, so a resent message is recognised; kept with their conversation",
        connections: format!(
            "a record per open chat connection (when it opened), deleted when it closes, at the latest {} minutes after it opened",
            policy::CONNECTION_LIFETIME.as_secs() / 60
        ),
        message_rate_window: "the start of the current one-minute window and the messages sent in it, kept with the session",
        pre_chat_form: "kept with its session",
        audit_records: format!(
            "GDPR actions are recorded for {} years without personal data (a keyed hash of your visitor id)",
            AUDIT_RETENTION.as_secs() / (365 * 86_400)
        ),
    }
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

fn session_details(s: &Session, site: &Site, now: Timestamp, connections: &[Connection]) -> SessionDetails {
    let until = effective_expiry(s, site);
    let Session {
        // Stated by the entry and the document.
        id: _,
        site_id: _,
        visitor_id,
        // Only a hash is stored; the document says so (`visitorToken.stored`). The
        // hash itself is no data about the person, and handing it out helps nobody.
        token_hash: _,
        token_expires_at,
        created_at,
        last_access_at,
        last_activity_at,
        last_seq,
        // Applied through `kept` (the effective retention, see `effective_expiry`).
        retention_days: _,
        status,
        ip,
        user_agent,
        prechat,
        // A keyed hash of the pre-chat email (exported above), kept so an admin can
        // find the session by email; it reveals nothing the email does not.
        email_lookup: _,
        visitor_read_seq,
        agent_read_seq,
        rate_window_start,
        rate_count,
        // Applied through `kept` and `pendingDeletion`.
        expires_at: _,
        // A session being erased is only ever exported to finish that erasure:
        // its data is listed as held until the sweep removes it.
        erasing_since: _,
    } = s;
    let rule = if s.is_conversation() {
        "conversation: the site's current retention after the last message (the shorter, if the conversation started under a shorter one)"
    } else {
        "empty session: 30 minutes after the last access"
    };
    let ip = ip.as_ref().map(|StoredIp { address, recorded_at }| IpExport {
        address: address.clone(),
        recorded_at: recorded_at.to_rfc3339(),
        kept: kept(
            recorded_at
                .plus(policy::days(site.retention.ip_retention_days))
                .min(until),
            "site IP retention, or with the session",
        ),
    });
    let pre_chat_form = prechat.as_ref().map(|PreChat { name, email, consent }| {
        let Consent {
            purpose,
            policy_version,
            given_at,
        } = consent;
        PreChatExport {
            name: name.as_ref().map(|n| n.as_str().to_owned()),
            email: email.as_ref().map(|e| e.as_str().to_owned()),
            consent: ConsentExport {
                purpose: purpose.clone(),
                policy_version: policy_version.clone(),
                given_at: given_at.to_rfc3339(),
            },
            kept: kept(until, "with the session"),
        }
    });
    // The rate limiter's state is stored on the session: a window start and a count.
    let never_limited = *rate_count == 0 && *rate_window_start == Timestamp::default();
    let message_rate_window = (!never_limited).then(|| RateWindow {
        window_start: rate_window_start.to_rfc3339(),
        messages_in_window: *rate_count,
        kept: kept(until, "with the session"),
    });
    // The visitor's own live connections; agents' connections are the agents' data.
    let connections = connections
        .iter()
        .filter(|c| matches!(&c.principal, Principal::Visitor { session_id, .. } if *session_id == s.id))
        .map(|c| {
            let Connection {
                id,
                // The session's own site and visitor, stated above.
                site_id: _,
                principal: _,
                connected_at,
                expires_at,
            } = c;
            ConnectionExport {
                connection_id: id.clone(),
                connected_at: connected_at.to_rfc3339(),
                kept: kept(
                    (*expires_at).min(until),
                    "until the connection closes, at the latest 2 hours 10 minutes after it opened",
                ),
            }
        })
        .collect();
    SessionDetails {
        visitor_id: visitor_id.clone(),
        created_at: created_at.to_rfc3339(),
        last_access_at: last_access_at.to_rfc3339(),
        last_message_at: last_activity_at.map(Timestamp::to_rfc3339),
        status: *status,
        message_count: *last_seq,
        kept: kept(until, rule),
        pending_deletion: !policy::is_live(until, now),
        visitor_token: TokenExport {
            expires_at: token_expires_at.to_rfc3339(),
            stored: "SHA-256 hash only",
            kept: kept(until, "with the session"),
        },
        technical: Technical {
            ip,
            user_agent: user_agent.clone(),
        },
        pre_chat_form,
        read_markers: ReadMarkers {
            visitor: *visitor_read_seq,
            agents: *agent_read_seq,
        },
        message_rate_window,
        connections,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    proptest! {
        /// A cursor is untrusted input: any string is either one eurochat issued or
        /// `invalid_request` on the field `cursor`, never a panic.
        #[test]
        fn any_cursor_parses_or_is_refused_on_its_field(cursor in prop_oneof![
            ".{0,80}",
            "[A-Za-z0-9_-]{0,80}",
            ("ses_[0-9a-f]{32}", any::<u64>()).prop_map(|(s, a)| B64.encode(json!({"s": s, "a": a}).to_string())),
            (".{0,40}", any::<i64>()).prop_map(|(s, a)| B64.encode(json!({"s": s, "a": a}).to_string())),
        ]) {
            match parse_cursor(&cursor) {
                Ok((s, _)) => prop_assert!(SessionId::parse(&s).is_ok()),
                Err(e) => {
                    prop_assert_eq!(e.code, ErrorCode::InvalidRequest);
                    prop_assert_eq!(e.field, Some("cursor"));
                }
            }
        }

        /// What eurochat issues, it takes back.
        #[test]
        fn issued_cursors_round_trip(after in any::<u64>()) {
            let id = SessionId::generate();
            prop_assert_eq!(parse_cursor(&encode_cursor(&id, after)).unwrap(), (id.as_str().to_owned(), after));
        }
    }
}
