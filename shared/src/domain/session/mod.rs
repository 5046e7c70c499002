//! A visitor's session and the rules of its life: when it expires, when the
//! visitor token is renewed, the message rate window, read markers. Both
//! stores load a session, call one of these methods and write the result, so
//! the in-memory store and DynamoDB change a session identically.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AuthorRole, PreChat, SessionId, Site, SiteId, VisitorId};
use crate::clock::Timestamp;
use crate::policy::{self, RateDecision, RateLimit};

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

/// What a visitor's return or activity changes on their session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTouch {
    /// The access time.
    pub now: Timestamp,
    /// Also renew the visitor token's six-month lifetime (the visitor came back).
    pub renew_token: bool,
}

/// A change to a live session, as the stores write it ([`Session::apply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange<'a> {
    /// An access ([`Session::touch`]).
    Touch(SessionTouch),
    /// A pre-chat form and its email's lookup key ([`Session::record_prechat`]).
    PreChat {
        /// The form.
        prechat: &'a PreChat,
        /// The email's keyed lookup hash, if it has an email.
        email_lookup: Option<&'a str>,
        /// When.
        now: Timestamp,
    },
    /// A read marker ([`Session::mark_read`]).
    Read {
        /// Whose marker.
        role: AuthorRole,
        /// Read up to here.
        seq: u64,
    },
    /// Open or closed for agents.
    Status(ConversationStatus),
}

/// The session's message rate refused an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message rate exceeded")]
pub struct MessageRateExceeded {
    /// Time until the window resets.
    pub retry_after: Duration,
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
            token_expires_at: policy::visitor_token_expiry(now),
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
        s.expires_at = s.expiry();
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
        policy::is_live(self.expires_at, now) && self.erasing_since.is_none()
    }

    /// When the session expires given its state: 30 minutes after last access while
    /// it has no message; the retention period after its last message once it does.
    /// Every change below ends by storing this in `expires_at` (the item's TTL).
    pub fn expiry(&self) -> Timestamp {
        match self.last_activity_at {
            Some(last) if self.is_conversation() => last.plus(policy::days(self.retention_days)),
            _ => self.last_access_at.plus(policy::EMPTY_SESSION_IDLE),
        }
    }

    /// Records an access: last access never moves back (a late, concurrent
    /// request must not shorten the session), the token is renewed if asked,
    /// and the expiry follows.
    pub fn touch(&mut self, touch: SessionTouch) {
        self.last_access_at = self.last_access_at.max(touch.now);
        if touch.renew_token {
            self.token_expires_at = policy::visitor_token_expiry(touch.now);
        }
        self.expires_at = self.expiry();
    }

    /// Records a pre-chat form and its email's lookup key, replacing an earlier
    /// form (a new form without email removes the old lookup key, so the
    /// session is no longer found by the old address). Counts as an access.
    pub fn record_prechat(&mut self, prechat: &PreChat, email_lookup: Option<&str>, now: Timestamp) {
        self.prechat = Some(prechat.clone());
        self.email_lookup = email_lookup.map(str::to_owned);
        self.touch(SessionTouch {
            now,
            renew_token: false,
        });
    }

    /// Records that `role` has read up to `seq`. A marker never moves backwards
    /// (read receipts arrive out of order) and never past the last message (a
    /// client cannot claim to have read what does not exist). System messages
    /// count as the agents' side.
    pub fn mark_read(&mut self, role: AuthorRole, seq: u64) {
        let seq = seq.min(self.last_seq);
        let marker = match role {
            AuthorRole::Visitor => &mut self.visitor_read_seq,
            AuthorRole::Agent | AuthorRole::System => &mut self.agent_read_seq,
        };
        *marker = (*marker).max(seq);
    }

    /// Applies one of the changes a store writes with a conditional update
    /// (both stores call this, so they cannot drift apart).
    pub fn apply(&mut self, change: &SessionChange<'_>) {
        match *change {
            SessionChange::Touch(touch) => self.touch(touch),
            SessionChange::PreChat {
                prechat,
                email_lookup,
                now,
            } => self.record_prechat(prechat, email_lookup, now),
            SessionChange::Read { role, seq } => self.mark_read(role, seq),
            SessionChange::Status(status) => self.status = status,
        }
    }

    /// Counts one message against `rate` (a fixed window whose two fields live
    /// on the session, so the count is written with the message), takes the
    /// next sequence number and moves the expiry to the retention period after
    /// this message. Returns the new message's sequence number; a refusal
    /// changes nothing.
    pub fn append(&mut self, now: Timestamp, rate: Option<RateLimit>) -> Result<u64, MessageRateExceeded> {
        if let Some(rate) = rate {
            match rate.check(self.rate_window_start, self.rate_count, now) {
                RateDecision::Limited { retry_after } => return Err(MessageRateExceeded { retry_after }),
                RateDecision::Allowed { window_start, count } => {
                    self.rate_window_start = window_start;
                    self.rate_count = count;
                }
            }
        }
        self.last_seq += 1;
        self.last_activity_at = Some(now);
        self.last_access_at = self.last_access_at.max(now);
        self.expires_at = self.expiry();
        Ok(self.last_seq)
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

#[cfg(test)]
mod tests;
