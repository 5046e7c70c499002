//! Storage: one small trait per capability, each implemented by the DynamoDB
//! single-table store ([`DynamoStore`]) and the embedded in-memory store
//! ([`MemoryStore`]). Operations take only the trait they need.
//!
//! Shared rules of both adapters (checked by one contract suite in `tests/`):
//! - Items past their expiry are absent on every read, whether or not DynamoDB's
//!   TTL sweeper has removed them yet.
//! - Writes a client or Lambda may retry are idempotent (message append by
//!   `clientMsgId`, connection put, erasure).
//! - No operation here scans the table except [`RetentionStore::scan_orphans`],
//!   which only the scheduled retention job calls.
//!
//! - What a write changes on a session is a method of [`Session`] (touch,
//!   pre-chat, read marker, append): both adapters load, call it, and store.
//!
//! Layout: this module holds the traits and their argument and result types;
//! [`keys`] every key string (the key design of `docs/data-model.md` in code);
//! `cursor` the one pagination-cursor encoding; [`schema`] the table's
//! definition; `dynamo/` and `memory/` one module per trait over a small core
//! each (DynamoDB: SDK calls, item envelope, queries; memory: the maps, paging).

use std::collections::BTreeMap;
use std::net::IpAddr;

use async_trait::async_trait;

use crate::auth::access::{AuthenticatedAgent, Refusal, TokenFacts, check};
use crate::clock::Timestamp;
pub use crate::domain::SessionTouch;
use crate::domain::{
    Agent, AgentId, AuditRecord, Author, AuthorRole, ClientMsgId, Connection, ConnectionId, ConversationStatus,
    Message, MessageText, PreChat, Session, SessionChange, SessionId, Site, SiteId, VisitorId,
};
use crate::policy::{RateDecision, RateLimit};

pub mod cursor;
mod dynamo;
mod error;
pub mod keys;
mod memory;
pub mod schema;

pub use dynamo::DynamoStore;
pub use error::StoreError;
pub use memory::MemoryStore;

/// One page of a listing; pass `next` back to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Opaque cursor for the next page, `None` on the last.
    pub next: Option<String>,
}

/// A message to append to a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The site the sender belongs to; a session of another site is [`StoreError::NotFound`].
    pub site_id: SiteId,
    /// The conversation.
    pub session_id: SessionId,
    /// Who wrote it.
    pub author: Author,
    /// The text.
    pub text: MessageText,
    /// The sender's id for it; a second append with the same author and id is a retry.
    pub client_msg_id: ClientMsgId,
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored message (the original one for a retry).
    pub message: Message,
    /// Whether this append was a retry of an already stored message.
    pub duplicate: bool,
    /// The agent the [`AgentGate`] let through, as read with the session (its
    /// display name and current role), or `None` without a gate.
    pub agent: Option<AuthenticatedAgent>,
}

/// An agent's authorization, re-checked by [`MessageStore::append_gated`] with
/// the agent and site items read in the same consistent request as the session
/// (so an agent's message costs no extra round trip for its revocation check).
#[derive(Debug, Clone)]
pub struct AgentGate {
    /// The agent's site (the connection's).
    pub site: SiteId,
    /// The agent.
    pub agent: AgentId,
    /// What its token said at `$connect`.
    pub token: TokenFacts,
    /// This frame's source address, for the site's allow-list.
    pub ip: Option<IpAddr>,
}

impl AgentGate {
    /// The check, on what the store read (see [`crate::auth::access::check`]).
    pub fn admit(
        &self,
        agent: Option<Agent>,
        site: Option<Site>,
        now: Timestamp,
    ) -> Result<AuthenticatedAgent, Refusal> {
        check(agent, site, self.token, self.ip, now)
    }
}

/// A page of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    /// Messages in sequence order.
    pub messages: Vec<Message>,
    /// Whether more messages follow the last one returned.
    pub has_more: bool,
}

/// What an erasure removed, by kind of item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasedCounts(pub BTreeMap<String, u64>);

impl ErasedCounts {
    /// Adds `n` items of `kind`.
    pub fn add(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.0.entry(kind.to_owned()).or_default() += n;
        }
    }

    /// Total items removed.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The counts with every kind an erasure can remove present, zeros included,
    /// so an answer's shape does not depend on what happened to be stored.
    pub fn with_zeros(&self) -> BTreeMap<String, u64> {
        let mut all: BTreeMap<String, u64> = keys::kind::ERASABLE.iter().map(|k| ((*k).to_owned(), 0)).collect();
        all.extend(self.0.iter().map(|(k, n)| (k.clone(), *n)));
        all
    }

    /// Adds another erasure's counts to this one.
    pub fn merge(&mut self, other: ErasedCounts) {
        for (k, n) in other.0 {
            self.add(&k, n);
        }
    }
}

/// An item the orphan sweep found without the item it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The item's kind (`message`, `clientMsgId`, `member`, `connection`).
    pub kind: String,
    /// Its partition key.
    pub pk: String,
    /// Its sort key.
    pub sk: String,
}

/// Sites and their agents.
#[async_trait]
pub trait SiteStore: Send + Sync {
    /// Creates or replaces a site.
    async fn put_site(&self, site: &Site) -> Result<(), StoreError>;
    /// Reads a site.
    async fn get_site(&self, id: &SiteId) -> Result<Option<Site>, StoreError>;
    /// Lists all sites, in id order (retention job, admin tool).
    async fn list_sites(&self, cursor: Option<&str>, limit: u32) -> Result<Page<Site>, StoreError>;
    /// Creates or replaces an agent.
    async fn put_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    /// Reads an agent.
    async fn get_agent(&self, site: &SiteId, id: &AgentId) -> Result<Option<Agent>, StoreError>;
    /// Reads an agent and its site together, consistently: one BatchGetItem. What
    /// authenticating an agent needs (active, revocations, IP allow-list) on every
    /// connect, frame and HTTP call, at the cost of one request.
    async fn agent_and_site(&self, site: &SiteId, agent: &AgentId)
    -> Result<(Option<Agent>, Option<Site>), StoreError>;
}

/// Visitor sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session; [`StoreError::AlreadyExists`] if the id is taken.
    async fn create_session(&self, session: &Session) -> Result<(), StoreError>;
    /// Reads a live session.
    async fn get_session(&self, id: &SessionId, now: Timestamp) -> Result<Option<Session>, StoreError>;
    /// Applies `change` ([`Session::apply`]) to a live session, with the store's
    /// own guard against a concurrent writer, and returns the session as stored.
    /// [`StoreError::NotFound`] if absent, expired or being erased.
    async fn change_session(
        &self,
        id: &SessionId,
        now: Timestamp,
        change: &SessionChange<'_>,
    ) -> Result<Session, StoreError>;

    /// Records an access: updates last access, renews the token if asked, and
    /// recomputes the expiry. [`StoreError::NotFound`] if absent or expired.
    async fn touch_session(&self, id: &SessionId, touch: SessionTouch) -> Result<Session, StoreError> {
        self.change_session(id, touch.now, &SessionChange::Touch(touch)).await
    }
    /// Records the visitor's pre-chat form (name, email, consent) and the email's
    /// lookup key; replaces an earlier form. Counts as an access.
    async fn set_prechat(
        &self,
        id: &SessionId,
        prechat: &PreChat,
        email_lookup: Option<&str>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        let change = SessionChange::PreChat {
            prechat,
            email_lookup,
            now,
        };
        self.change_session(id, now, &change).await
    }
    /// Records that `role` has read up to `seq` (never moves backwards, never past the last message).
    async fn mark_read(
        &self,
        id: &SessionId,
        role: AuthorRole,
        seq: u64,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        self.change_session(id, now, &SessionChange::Read { role, seq }).await
    }
    /// Opens or closes a conversation for agents.
    async fn set_status(
        &self,
        id: &SessionId,
        status: ConversationStatus,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        self.change_session(id, now, &SessionChange::Status(status)).await
    }
}

/// Conversation messages.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Appends a message with the next sequence number, idempotently by
    /// (author, `clientMsgId`), counting it against `rate` if given. Turns an
    /// empty session into a conversation and extends its expiry to the
    /// retention period. Retries never count against the rate.
    async fn append_message(
        &self,
        msg: &NewMessage,
        now: Timestamp,
        rate: Option<RateLimit>,
    ) -> Result<Appended, StoreError> {
        // Without a gate nothing can be refused.
        self.append_gated(msg, now, rate, None)
            .await?
            .map_err(|_| StoreError::NotFound)
    }
    /// [`Self::append_message`], first reading the `gate`'s agent and site with
    /// the session (one consistent request, beside the retry lookup) and writing only
    /// if the gate admits them: `Ok(Err(refusal))` stores nothing.
    async fn append_gated(
        &self,
        msg: &NewMessage,
        now: Timestamp,
        rate: Option<RateLimit>,
        gate: Option<&AgentGate>,
    ) -> Result<Result<Appended, Refusal>, StoreError>;
    /// Messages with a sequence number above `after`, oldest first, at most `limit`.
    async fn list_messages(&self, session: &SessionId, after: u64, limit: u32) -> Result<MessagePage, StoreError>;
}

/// WebSocket connections.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Records a connection (idempotent): its lookup item, and its membership in
    /// the visitor's conversation or the site's online agents.
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError>;
    /// Reads a live connection.
    async fn get_connection(&self, id: &ConnectionId, now: Timestamp) -> Result<Option<Connection>, StoreError>;
    /// Removes a connection and all its memberships; returns what was removed (idempotent).
    async fn delete_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError>;
    /// Adds an agent's connection to a conversation's recipients.
    async fn join_conversation(
        &self,
        conn: &ConnectionId,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Connection, StoreError>;
    /// Live connections of a conversation (its visitor's, and agents who joined):
    /// one Query on the conversation's partition.
    async fn conversation_connections(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Live agent connections of a site: one Query on the site's partition.
    async fn agent_connections(&self, site: &SiteId, now: Timestamp) -> Result<Vec<Connection>, StoreError>;
    /// The live connections a fan-out delivers to: the conversation's members
    /// and, with `site`, that site's online agents (possibly both lists holding one
    /// connection). Read for delivery only: DynamoDB answers it with two
    /// concurrent, eventually consistent Queries (half the read units of
    /// consistent ones; `docs/data-model.md` says what the lag can cost).
    async fn fan_out_targets(
        &self,
        session: &SessionId,
        site: Option<&SiteId>,
        now: Timestamp,
    ) -> Result<Vec<Connection>, StoreError> {
        let members = self.conversation_connections(session, now).await?;
        let agents = match site {
            Some(site) => self.agent_connections(site, now).await?,
            None => Vec::new(),
        };
        Ok(members.into_iter().chain(agents).collect())
    }
}

/// Listing and deleting a site's conversations.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// A site's live conversations, most recently active first, optionally by status.
    async fn list_conversations(
        &self,
        site: &SiteId,
        status: Option<ConversationStatus>,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<Session>, StoreError>;
    /// The first step of an erasure: marks the session as being erased (one
    /// conditional write, idempotent). From then on every write path refuses it
    /// as [`StoreError::NotFound`] and reads for use treat it as absent, so no
    /// writer can add an item behind the sweep. `false` if there is no session item.
    async fn fence_session(&self, id: &SessionId, now: Timestamp) -> Result<bool, StoreError>;
    /// Erases a session and everything in it: fences it (if not yet), then
    /// deletes messages, connection memberships and the
    /// visitor's connection lookups, re-reading the partition until it is
    /// empty; the session item goes last, so an interrupted erasure stays
    /// fenced and a rerun finishes it. A retention checkpoint that names the
    /// session is reset. Counts are what this call removed; erasing an absent
    /// session returns zero counts.
    async fn erase_session(&self, id: &SessionId, now: Timestamp) -> Result<ErasedCounts, StoreError>;
}

/// Finding a data subject's sessions (GDPR). These reads include sessions past
/// their expiry that DynamoDB has not removed yet: data still held is exported
/// and erased.
#[async_trait]
pub trait SubjectStore: Send + Sync {
    /// A session as stored, live or expired-but-not-yet-removed.
    async fn session_any(&self, id: &SessionId) -> Result<Option<Session>, StoreError>;
    /// Every session of a visitor on a site, live or not yet swept, oldest first.
    async fn sessions_of_visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Vec<Session>, StoreError>;
    /// Every session whose pre-chat email has this lookup key (see
    /// [`crate::auth::Pseudonymizer::email_lookup`]).
    async fn sessions_by_email(&self, site: &SiteId, email_lookup: &str) -> Result<Vec<Session>, StoreError>;
}

/// What the scheduled retention job needs beyond TTL.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// A site's conversations whose last activity is before `before`, oldest first
    /// (including expired ones DynamoDB has not removed yet).
    async fn conversations_inactive_before(
        &self,
        site: &SiteId,
        before: Timestamp,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Session>, StoreError>;
    /// A site's sessions holding an IP recorded before `before`, oldest first.
    async fn sessions_with_ip_before(
        &self,
        site: &SiteId,
        before: Timestamp,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Session>, StoreError>;
    /// Removes a session's stored IP; `false` if it had none or is gone.
    async fn remove_ip(&self, id: &SessionId) -> Result<bool, StoreError>;
    /// One bounded page of the orphan sweep: items of a session (messages,
    /// memberships) whose session item is gone, and connection
    /// lookups whose connection has expired. The only Scan in eurochat.
    async fn scan_orphans(&self, cursor: Option<&str>, limit: u32, now: Timestamp) -> Result<Page<Orphan>, StoreError>;
    /// Deletes orphans found by [`RetentionStore::scan_orphans`].
    async fn delete_orphans(&self, orphans: &[Orphan]) -> Result<u64, StoreError>;
    /// Reads a job checkpoint.
    async fn get_checkpoint(&self, job: &str) -> Result<Option<String>, StoreError>;
    /// Writes (or with `None`, clears) a job checkpoint.
    async fn put_checkpoint(&self, job: &str, value: Option<&str>) -> Result<(), StoreError>;
}

/// The audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends a record (idempotent by id).
    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError>;
    /// A site's live records, newest first.
    async fn list_audit(
        &self,
        site: &SiteId,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<AuditRecord>, StoreError>;
}

/// Sliding-window counters for rate limits not tied to a session (per-IP
/// connects and session creation, per-token exports): at most `limit.limit`
/// admitted in any interval of `limit.window` ([`RateLimit::admit`]).
///
/// A counter is one item per key holding the last `limit` admission times; it
/// expires `window` after the last admission. A hit is one conditional write
/// (DynamoDB: one UpdateItem, admitted or refused), exact under concurrency.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts one request for `key` (a keyed hash, never a readable identifier)
    /// against `limit` at `now`. A refusal stores nothing and says when to retry.
    async fn hit(&self, key: &str, limit: RateLimit, now: Timestamp) -> Result<RateDecision, StoreError>;
}

/// Everything at once, for wiring (the local gateway, tests). Operations should
/// still ask for the one capability they use.
pub trait Store:
    SiteStore
    + SessionStore
    + MessageStore
    + ConnectionStore
    + ConversationStore
    + SubjectStore
    + RetentionStore
    + AuditStore
    + RateLimitStore
{
}

impl<T> Store for T where
    T: SiteStore
        + SessionStore
        + MessageStore
        + ConnectionStore
        + ConversationStore
        + SubjectStore
        + RetentionStore
        + AuditStore
        + RateLimitStore
{
}

/// Largest page any listing returns, whatever the caller asks.
pub const MAX_PAGE: u32 = 100;

/// A caller's page size within 1..=[`MAX_PAGE`].
pub(crate) fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, MAX_PAGE)
}
