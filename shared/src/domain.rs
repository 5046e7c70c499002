//! The chat's domain model: validated identifiers and values, and the records
//! every function works with.
//!
//! Everything that arrives from outside (a widget, an agent console, a CLI) is
//! turned into one of these types through `parse` before it reaches business
//! logic or storage, so a malformed value is a typed [`ValidationError`] at the
//! edge and never a panic or a half-written item further in.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::policy::RetentionPolicy;

/// Why a value from outside was refused. `field` names the input, never its value,
/// so the error can be shown to clients and logged without leaking personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    /// The input that was refused (e.g. `siteId`, `text`).
    pub field: &'static str,
    /// What is wrong with it, in words safe to show a client.
    pub reason: &'static str,
    /// Whether the value was refused for its size (maps to 413 / `payload_too_large`).
    pub too_large: bool,
}

impl ValidationError {
    /// A refusal for the named field.
    pub const fn new(field: &'static str, reason: &'static str) -> Self {
        Self {
            field,
            reason,
            too_large: false,
        }
    }

    /// A refusal because the value exceeds a size limit.
    pub const fn too_large(field: &'static str, reason: &'static str) -> Self {
        Self {
            field,
            reason,
            too_large: true,
        }
    }
}

fn random_hex_id(prefix: &str) -> String {
    let bytes: [u8; 16] = crate::random::random_bytes();
    let mut s = String::with_capacity(prefix.len() + 32);
    s.push_str(prefix);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn is_prefixed_hex_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The validated value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Deserialising re-validates: stored or transported values are not trusted more
        // than request input.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// A site (tenant): the website the widget runs on. Chosen by the operator:
    /// 3 to 64 characters of lowercase ASCII letters, digits and inner hyphens.
    SiteId
);

impl SiteId {
    /// Validates a site id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (3..=64).contains(&s.len())
            && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "siteId",
                "must be 3-64 characters of a-z, 0-9 and inner '-'",
            ))
        }
    }
}

string_newtype!(
    /// A visitor's chat session: `ses_` and 128 random bits in hex.
    SessionId
);

impl SessionId {
    /// Validates a session id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if is_prefixed_hex_id(s, "ses_") {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new("sessionId", "is not a session id"))
        }
    }

    /// A fresh id from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(random_hex_id("ses_"))
    }
}

string_newtype!(
    /// An anonymous visitor: `vis_` and 128 random bits in hex, bound to no identity.
    VisitorId
);

impl VisitorId {
    /// Validates a visitor id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if is_prefixed_hex_id(s, "vis_") {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new("visitorId", "is not a visitor id"))
        }
    }

    /// A fresh id from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(random_hex_id("vis_"))
    }
}

string_newtype!(
    /// A site's agent: 1 to 64 characters of lowercase ASCII letters, digits, '-', '_' and '.'.
    AgentId
);

impl AgentId {
    /// Validates an agent id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "agentId",
                "must be 1-64 characters of a-z, 0-9, '-', '_', '.'",
            ))
        }
    }
}

string_newtype!(
    /// An API Gateway WebSocket connection id (opaque, base64-like, e.g. `L0SM9cOFvHcCIhw=`).
    ConnectionId
);

impl ConnectionId {
    /// Validates a connection id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new("connectionId", "is not a connection id"))
        }
    }
}

string_newtype!(
    /// The id a client gives a message so a retry is recognised: 1 to 64
    /// characters of ASCII letters, digits, '-', '_', '.', ':'.
    ClientMsgId
);

impl ClientMsgId {
    /// Validates a client message id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "clientMsgId",
                "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'",
            ))
        }
    }
}

/// Default limit on a message's text, in bytes of UTF-8.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4096;

/// A chat message's text: not blank, no control characters but line breaks
/// and tabs, at most a configured number of UTF-8 bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageText(String);

impl MessageText {
    /// Validates message text against `max_bytes`.
    pub fn parse(s: &str, max_bytes: usize) -> Result<Self, ValidationError> {
        if s.len() > max_bytes {
            return Err(ValidationError::too_large(
                "text",
                "is longer than the message size limit",
            ));
        }
        if s.trim().is_empty() {
            return Err(ValidationError::new("text", "must not be empty"));
        }
        if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(ValidationError::new("text", "must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Message text is personal data: a stray `{:?}` in a log line must not print it.
impl fmt::Debug for MessageText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageText(<{} bytes>)", self.0.len())
    }
}

/// An email address given in a pre-chat form. Only the shape is checked
/// (one '@', a dotted domain, no spaces, at most 254 bytes); the domain part
/// is lower-cased so lookups by email are case-insensitive there.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Validates and normalises an email address.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        const BAD: ValidationError = ValidationError::new("email", "is not an email address");
        let s = s.trim();
        if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(BAD);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(BAD)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(BAD);
        }
        let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
        if !labels_ok {
            return Err(BAD);
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used for lookups: the whole address lower-cased.
    pub fn lookup_form(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A person's name from a pre-chat form: 1 to 100 characters, no control characters.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    /// Validates a name.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let t = s.trim();
        if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "must be 1-100 characters without control characters",
            ));
        }
        Ok(Self(t.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for PersonName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

string_newtype!(
    /// A web origin the widget may run on, normalised to `scheme://host[:port]`
    /// (https, or http for localhost only).
    Origin
);

impl Origin {
    /// Validates and normalises an origin.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        const BAD: ValidationError =
            ValidationError::new("origin", "must be https://host[:port] (http only for localhost)");
        let url = url::Url::parse(s.trim()).map_err(|_| BAD)?;
        let host = url.host_str().ok_or(BAD)?;
        let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && local);
        let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
        if !scheme_ok || !bare || !url.username().is_empty() || url.password().is_some() {
            return Err(BAD);
        }
        // `ascii_serialization` drops default ports and lower-cases the host,
        // so "https://Example.com:443" and "https://example.com" compare equal.
        Ok(Self(url.origin().ascii_serialization()))
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorRole {
    /// The site's visitor.
    Visitor,
    /// One of the site's agents.
    Agent,
    /// eurochat itself (e.g. "an agent joined").
    System,
}

/// An agent's permissions on their site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentRole {
    /// Chats with visitors.
    Agent,
    /// Also manages the site's data: GDPR export and erasure, conversation deletion.
    Admin,
}

/// A site (tenant) and its privacy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// The site's id.
    pub id: SiteId,
    /// A label for agents and operators (not personal data).
    pub name: String,
    /// Origins the widget may be embedded on; requests from others are refused.
    pub allowed_origins: Vec<Origin>,
    /// How long data is kept and how IPs are stored.
    pub retention: RetentionPolicy,
    /// When set, agents may connect only from these networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ip_allowlist: Option<Vec<ipnet::IpNet>>,
    /// When the site was created.
    pub created_at: Timestamp,
    /// When its settings last changed.
    pub updated_at: Timestamp,
}

impl Site {
    /// The site as this deployment runs it: its retention capped by the
    /// deployment's limit (see [`RetentionPolicy::within`]). Every function that
    /// stores, reports or sweeps by the site's policy applies this to the site it
    /// loads, so the three agree.
    pub fn within(mut self, limit: &RetentionPolicy) -> Self {
        self.retention = self.retention.within(limit);
        self
    }

    /// Whether `origin` may host this site's widget.
    pub fn allows_origin(&self, origin: &Origin) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }

    /// Whether an agent at `ip` may connect. Without an allow-list every address may.
    pub fn allows_agent_ip(&self, ip: std::net::IpAddr) -> bool {
        match &self.agent_ip_allowlist {
            None => true,
            Some(nets) => nets.iter().any(|n| n.contains(&ip)),
        }
    }
}

/// One of a site's agents. Tokens are minted for an active agent; deactivating
/// the agent, or revoking its tokens, refuses every token already issued, at the
/// next connect, frame or HTTP call (see [`Agent::accepts_token_issued_at`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// The site the agent works for.
    pub site_id: SiteId,
    /// The agent's id.
    pub id: AgentId,
    /// Name shown to visitors in the chat.
    pub display_name: String,
    /// Permissions.
    pub role: AgentRole,
    /// Whether the agent may still connect.
    pub active: bool,
    /// When the agent was created.
    pub created_at: Timestamp,
    /// Tokens issued at or before this instant are refused everywhere. Set by
    /// deactivation and by `eurochat-admin revoke-tokens`; reactivation keeps it,
    /// so old tokens stay dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_valid_after: Option<Timestamp>,
}

impl Agent {
    /// Whether a token with this `iat` (epoch seconds) survives the agent's
    /// revocations. `iat` has whole seconds, rounded up when minted, and
    /// revocations have milliseconds: a token is accepted only if its `iat` is
    /// after the revocation instant rounded up to the whole second. So a token
    /// minted before the revocation, or within the same second, is refused.
    pub fn accepts_token_issued_at(&self, iat: i64) -> bool {
        self.tokens_valid_after.is_none_or(|t| iat > t.epoch_seconds())
    }
}

/// The IP address of a session as the site's policy allowed it to be stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredIp {
    /// The address, possibly truncated to a network (e.g. `203.0.113.0/24`).
    pub address: String,
    /// When it was recorded; IP retention counts from here.
    pub recorded_at: Timestamp,
}

impl fmt::Debug for StoredIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredIp")
            .field("address", &"<redacted>")
            .field("recorded_at", &self.recorded_at)
            .finish()
    }
}

/// The visitor's consent given with a pre-chat form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// What the data is for, as shown to the visitor (e.g. `support-follow-up`).
    pub purpose: String,
    /// The version of the site's privacy policy the visitor saw.
    pub policy_version: String,
    /// When consent was given.
    pub given_at: Timestamp,
}

/// Optional fields a visitor gives before chatting, always with consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreChat {
    /// The visitor's name, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    /// The visitor's email, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// The consent record under which they were given.
    pub consent: Consent,
}

/// Whether agents still treat a conversation as open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    /// Waiting for or in conversation with agents.
    Open,
    /// Closed by an agent; still kept for the site's retention.
    Closed,
}

/// A visitor's chat session. With no message it is temporary (30 minutes after
/// last access); its first message makes it a conversation kept for the site's
/// retention after its last activity.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// The site it belongs to.
    pub site_id: SiteId,
    /// The anonymous visitor who owns it.
    pub visitor_id: VisitorId,
    /// SHA-256 of the visitor token (hex); the token itself is never stored.
    pub token_hash: String,
    /// When the visitor token stops being accepted (sliding, renewed on return).
    pub token_expires_at: Timestamp,
    /// When the session was created.
    pub created_at: Timestamp,
    /// When the visitor last used it (session creation, resume, connect, any frame).
    pub last_access_at: Timestamp,
    /// When the last message was sent; `None` while the session has no message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_at: Option<Timestamp>,
    /// Sequence number of the last message (0: no message yet).
    pub last_seq: u64,
    /// Conversation retention in days, copied from the site when the session was
    /// created so a message can be stored without reading the site.
    pub retention_days: u32,
    /// Open or closed for agents.
    pub status: ConversationStatus,
    /// The IP as the site's policy allowed it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<StoredIp>,
    /// The browser's user agent string, if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Pre-chat form fields, if the visitor gave any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prechat: Option<PreChat>,
    /// Keyed hash of the pre-chat email, so admins can find the session by email
    /// without a readable email in an index key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_lookup: Option<String>,
    /// Highest sequence the visitor has read.
    #[serde(default)]
    pub visitor_read_seq: u64,
    /// Highest sequence an agent has read.
    #[serde(default)]
    pub agent_read_seq: u64,
    /// Start of the current message rate-limit window.
    #[serde(default)]
    pub rate_window_start: Timestamp,
    /// Messages sent in the current rate-limit window.
    #[serde(default)]
    pub rate_count: u32,
    /// When the session stops existing unless used again (the TTL).
    pub expires_at: Timestamp,
    /// Set by the first step of an erasure (the fence): from then on every write
    /// path and every read for use treats the session as absent, so nothing can
    /// be added to it while its items are being deleted. Only the erasure itself
    /// and GDPR lookups (which must find it again to finish the job) still see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasing_since: Option<Timestamp>,
}

impl Session {
    /// A new empty session of `site`, created at `now`, whose visitor token hashes to
    /// `token_hash`. It expires 30 minutes from now unless used; technical data and a
    /// pre-chat form are added by the caller as the site's policy allows.
    pub fn start(id: SessionId, site: &Site, visitor_id: VisitorId, token_hash: String, now: Timestamp) -> Self {
        let mut s = Self {
            id,
            site_id: site.id.clone(),
            visitor_id,
            token_hash,
            token_expires_at: crate::policy::visitor_token_expiry(now),
            created_at: now,
            last_access_at: now,
            last_activity_at: None,
            last_seq: 0,
            retention_days: site.retention.conversation_days,
            status: ConversationStatus::Open,
            ip: None,
            user_agent: None,
            prechat: None,
            email_lookup: None,
            visitor_read_seq: 0,
            agent_read_seq: 0,
            rate_window_start: Timestamp::default(),
            rate_count: 0,
            expires_at: now,
            erasing_since: None,
        };
        s.expires_at = crate::policy::session_expiry(&s);
        s
    }

    /// Whether the session has at least one message (and so is a conversation).
    pub fn is_conversation(&self) -> bool {
        self.last_seq > 0
    }

    /// Whether the session may be used at `now`: not expired and not being erased.
    /// Every read that serves or changes a session checks this, so an expired or
    /// fenced session looks exactly like a missing one.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        crate::policy::is_live(self.expires_at, now) && self.erasing_since.is_none()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only non-personal fields: a debug print of a session must be safe to log.
        f.debug_struct("Session")
            .field("site_id", &self.site_id)
            .field("last_seq", &self.last_seq)
            .field("status", &self.status)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Author {
    /// Visitor, agent or system.
    pub role: AuthorRole,
    /// The visitor id, agent id, or `system`.
    pub id: String,
}

/// A stored chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The conversation it belongs to.
    pub session_id: SessionId,
    /// Its place in the conversation's one total order, from 1.
    pub seq: u64,
    /// Who wrote it.
    pub author: Author,
    /// The text.
    pub text: MessageText,
    /// The sender's id for it, used to recognise retries.
    pub client_msg_id: ClientMsgId,
    /// When the server stored it.
    pub created_at: Timestamp,
}

/// Who is behind a WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Principal {
    /// A visitor connected to their own session.
    #[serde(rename_all = "camelCase")]
    Visitor {
        /// The visitor's session.
        session_id: SessionId,
        /// The visitor.
        visitor_id: VisitorId,
    },
    /// An agent of the site.
    #[serde(rename_all = "camelCase")]
    Agent {
        /// The agent.
        agent_id: AgentId,
        /// The agent's role when the connection was opened.
        role: AgentRole,
        /// The token's expiry (epoch seconds), checked on every frame without
        /// verifying the token again. 0 on items stored before it was recorded:
        /// such a connection counts as expired and is asked to reconnect.
        #[serde(default)]
        token_exp: i64,
        /// The token's issue time (epoch seconds), checked on every frame against
        /// [`Agent::tokens_valid_after`].
        #[serde(default)]
        token_iat: i64,
    },
}

/// An open WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// API Gateway's connection id.
    pub id: ConnectionId,
    /// The site it belongs to.
    pub site_id: SiteId,
    /// Who is connected.
    pub principal: Principal,
    /// When it was opened.
    pub connected_at: Timestamp,
    /// When it is considered gone even if `$disconnect` never arrived (the TTL).
    pub expires_at: Timestamp,
}

/// What an audit record documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// A GDPR export (Art. 15/20).
    GdprExport,
    /// A GDPR erasure (Art. 17).
    GdprErase,
    /// An agent deleted one conversation.
    ConversationDelete,
    /// The scheduled retention job ran.
    RetentionRun,
}

/// Who asked for an audited action. Agent ids are staff identifiers, kept for
/// accountability; visitors appear only as "the subject themself".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Actor {
    /// A site agent or admin.
    #[serde(rename_all = "camelCase")]
    Agent {
        /// The agent.
        agent_id: AgentId,
    },
    /// The data subject, with their own session token.
    Subject,
    /// The scheduled retention job.
    System,
}

/// A record of a GDPR or retention action. Holds no personal data: the subject
/// appears only as a keyed hash, so the record survives the erasure it documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Unique id (time-ordered within a site).
    pub id: String,
    /// The site concerned.
    pub site_id: SiteId,
    /// What was done.
    pub action: AuditAction,
    /// Keyed hash of the subject's id (see [`crate::auth::Pseudonymizer`]), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_hash: Option<String>,
    /// Who asked.
    pub actor: Actor,
    /// What was affected, by kind of item.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// When.
    pub at: Timestamp,
    /// Until when the record itself is kept.
    pub expires_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_id_accepts_slugs_and_refuses_the_rest() {
        assert!(SiteId::parse("acme-shop").is_ok());
        for bad in ["", "ab", "-abc", "abc-", "ABC", "a b c", "äbc", &"a".repeat(65)] {
            assert!(SiteId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn generated_ids_parse_back_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str()), Ok(a));
        assert!(VisitorId::parse(VisitorId::generate().as_str()).is_ok());
        assert!(
            SessionId::parse(VisitorId::generate().as_str()).is_err(),
            "a visitor id is not a session id"
        );
        assert!(SessionId::parse("ses_XYZ").is_err());
    }

    #[test]
    fn message_text_limits() {
        assert!(MessageText::parse("hello\nworld\t!", 4096).is_ok());
        assert_eq!(MessageText::parse("   ", 4096).unwrap_err().field, "text");
        assert!(MessageText::parse("bell\u{7}", 4096).is_err());
        let err = MessageText::parse(&"é".repeat(2049), 4096).unwrap_err();
        assert!(err.too_large, "4098 bytes of UTF-8 exceed 4096");
        assert!(MessageText::parse(&"é".repeat(2048), 4096).is_ok());
    }

    #[test]
    fn debug_output_hides_personal_data() {
        let t = MessageText::parse("my secret text", 100).unwrap();
        let e = Email::parse("Jane.Doe@Example.COM").unwrap();
        let n = PersonName::parse("Jane Doe").unwrap();
        let shown = format!("{t:?} {e:?} {n:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("Jane") && !shown.contains("xample"),
            "{shown}"
        );
    }

    #[test]
    fn email_normalises_domain_only() {
        let e = Email::parse(" Jane.Doe@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Jane.Doe@example.com");
        assert_eq!(e.lookup_form(), "jane.doe@example.com");
        for bad in ["", "a", "a@b", "@b.c", "a b@c.d", "a@b..c", "a@.b"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn origin_normalises_and_refuses_insecure_or_pathy_values() {
        assert_eq!(
            Origin::parse("https://Shop.Example:443").unwrap().as_str(),
            "https://shop.example"
        );
        assert_eq!(
            Origin::parse("http://localhost:8080").unwrap().as_str(),
            "http://localhost:8080"
        );
        for bad in [
            "http://shop.example",
            "https://shop.example/path",
            "ftp://x.y",
            "not a url",
            "null",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deserialising_revalidates() {
        assert!(serde_json::from_str::<SiteId>("\"BAD SITE\"").is_err());
        assert!(serde_json::from_str::<ClientMsgId>("\"ok-1\"").is_ok());
    }
}
