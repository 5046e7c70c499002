//! The embedded in-memory store: the local gateway's default and the fast half
//! of the contract tests. One mutex over plain maps; the semantics (expiry on
//! read, idempotency, ordering, erasure) match the DynamoDB store, which the
//! shared contract suite checks.
//!
//! This module holds the maps and what every capability shares (the lock,
//! usable-session lookups, paging); each capability's trait is implemented in
//! its own module, as in the DynamoDB store.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::{Page, StoreError, clamp_limit, cursor};
use crate::clock::Timestamp;
use crate::domain::{Agent, AuditRecord, Connection, Message, Session, SessionId, Site};
use crate::policy::is_live;
use crate::storage::keys::kind;

mod audit;
mod connections;
mod conversations;
mod messages;
mod rate;
mod retention;
mod sessions;
mod sites;
mod subjects;

/// The maps, one per item kind. Keys mirror the DynamoDB keys' parts, so
/// both stores order listings the same way.
#[derive(Default)]
struct Inner {
    sites: BTreeMap<String, Site>,
    agents: BTreeMap<(String, String), Agent>,
    sessions: BTreeMap<SessionId, Session>,
    messages: BTreeMap<(SessionId, u64), Message>,
    /// (session, author and `clientMsgId`) -> sequence number: the retry index
    /// (DynamoDB's LSI1), not items of its own.
    cmids: BTreeMap<(SessionId, String), u64>,
    connections: BTreeMap<String, Connection>,
    /// (session, connection id) -> connection: a conversation's recipients.
    members: BTreeMap<(SessionId, String), Connection>,
    /// (site id, connection id) -> connection: a site's online agents.
    agents_online: BTreeMap<(String, String), Connection>,
    /// (site id, audit sort key) -> record.
    audit: BTreeMap<(String, String), AuditRecord>,
    /// key -> (last admission times, newest first; expiry): the sliding-window counter.
    rates: BTreeMap<String, (Vec<Timestamp>, Timestamp)>,
    checkpoints: BTreeMap<String, String>,
}

impl Inner {
    /// A session that may be used (live and not fenced for erasure).
    fn usable_session(&self, id: &SessionId, now: Timestamp) -> Option<&Session> {
        self.sessions.get(id).filter(|s| s.is_usable(now))
    }

    /// A usable session to change, or [`StoreError::NotFound`].
    fn usable_session_mut(&mut self, id: &SessionId, now: Timestamp) -> Result<&mut Session, StoreError> {
        self.sessions
            .get_mut(id)
            .filter(|s| s.is_usable(now))
            .ok_or(StoreError::NotFound)
    }

    /// Item counts by kind, named as the DynamoDB store's `kind` attribute.
    fn counts(&self) -> [(&'static str, usize); 10] {
        [
            (kind::SITE, self.sites.len()),
            (kind::AGENT, self.agents.len()),
            (kind::SESSION, self.sessions.len()),
            (kind::MESSAGE, self.messages.len()),
            (kind::CONNECTION, self.connections.len()),
            (kind::MEMBERSHIP, self.members.len()),
            (kind::AGENT_ONLINE, self.agents_online.len()),
            (kind::AUDIT, self.audit.len()),
            (kind::RATE, self.rates.len()),
            (kind::CHECKPOINT, self.checkpoints.len()),
        ]
    }
}

/// The in-memory store. Cheap to create; clones are not shared (wrap in `Arc`).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock, taken after yielding to the scheduler: every operation is a
    /// suspension point, as a request to DynamoDB is, so concurrent handlers
    /// interleave between two calls of one flow here exactly where they can in
    /// production (race tests rely on it).
    async fn turn(&self) -> MutexGuard<'_, Inner> {
        tokio::task::yield_now().await;
        self.lock()
    }

    /// Does what DynamoDB's TTL sweeper does: deletes every item with a TTL at
    /// or before `now`, one item at a time, with no cascade. Messages of a swept
    /// session stay behind as orphans, exactly as in DynamoDB, for the retention
    /// job to find. Returns how many items were removed.
    pub fn purge_expired(&self, now: Timestamp) -> usize {
        let mut g = self.lock();
        let before = g.counts().iter().map(|(_, n)| n).sum::<usize>();
        g.sessions.retain(|_, s| is_live(s.expires_at, now));
        g.connections.retain(|_, c| is_live(c.expires_at, now));
        g.members.retain(|_, c| is_live(c.expires_at, now));
        g.agents_online.retain(|_, c| is_live(c.expires_at, now));
        g.audit.retain(|_, a| is_live(a.expires_at, now));
        g.rates.retain(|_, (_, exp)| is_live(*exp, now));
        before - g.counts().iter().map(|(_, n)| n).sum::<usize>()
    }

    /// How many items of each kind the store holds, named as the DynamoDB store's `kind`s.
    pub fn item_counts(&self) -> BTreeMap<&'static str, usize> {
        self.lock().counts().into_iter().filter(|(_, n)| *n > 0).collect()
    }

    /// Every stored record as text (its key and its JSON), for tests that must
    /// prove no trace of a subject is left anywhere, as a raw table scan does on
    /// DynamoDB. Not for logging: it holds personal data.
    pub fn raw_texts(&self) -> Vec<String> {
        fn json<T: serde::Serialize>(v: &T) -> String {
            serde_json::to_string(v).unwrap_or_default()
        }
        let g = self.lock();
        let mut out = Vec::new();
        out.extend(g.sites.iter().map(|(k, v)| format!("{k} {}", json(v))));
        out.extend(g.agents.iter().map(|(k, v)| format!("{k:?} {}", json(v))));
        out.extend(g.sessions.iter().map(|(k, v)| format!("{k} {}", json(v))));
        out.extend(g.messages.iter().map(|(k, v)| format!("{k:?} {}", json(v))));
        out.extend(g.connections.iter().map(|(k, v)| format!("{k} {}", json(v))));
        out.extend(g.members.iter().map(|(k, v)| format!("{k:?} {}", json(v))));
        out.extend(g.agents_online.iter().map(|(k, v)| format!("{k:?} {}", json(v))));
        out.extend(g.audit.iter().map(|(k, v)| format!("{k:?} {}", json(v))));
        out.extend(g.rates.iter().map(|(k, v)| format!("{k:?} {v:?}")));
        out.extend(g.checkpoints.iter().map(|(k, v)| format!("{k} {v}")));
        out
    }

    /// How many items of every kind the store holds (for tests and the local gateway's status line).
    pub fn item_count(&self) -> usize {
        self.lock().counts().iter().map(|(_, n)| n).sum()
    }
}

/// Where a page ended: the listing it belongs to and the last position
/// returned. Naming the listing lets a cursor offered to another one (another
/// site's conversations, say) be refused, as the DynamoDB store's partition
/// check does.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    query: String,
    after: String,
}

/// Decodes a cursor issued for `query`; anything else is [`StoreError::InvalidCursor`].
fn decode_cursor(query: &str, cursor: Option<&str>) -> Result<Option<String>, StoreError> {
    let Some(c) = cursor else { return Ok(None) };
    let pos: Position = cursor::decode(c)?;
    if pos.query == query {
        Ok(Some(pos.after))
    } else {
        Err(StoreError::InvalidCursor)
    }
}

/// Pages `items` (already sorted, each with its position key) after the
/// cursor's position, descending or ascending as sorted.
fn page_after<T>(
    query: &str,
    items: Vec<(String, T)>,
    cursor: Option<&str>,
    limit: u32,
    descending: bool,
) -> Result<Page<T>, StoreError> {
    let after = decode_cursor(query, cursor)?;
    let limit = clamp_limit(limit) as usize;
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(k, _)| match &after {
            None => true,
            Some(a) if descending => k < a,
            Some(a) => k > a,
        })
        .collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next = if more {
        rest.last().and_then(|(k, _)| {
            cursor::encode(&Position {
                query: query.to_owned(),
                after: k.clone(),
            })
        })
    } else {
        None
    };
    Ok(Page {
        items: rest.into_iter().map(|(_, v)| v).collect(),
        next,
    })
}
