//! The embedded in-memory store: the local gateway's default and the fast half
//! of the contract tests. One mutex over plain maps; the semantics (expiry on
//! read, idempotency, ordering, erasure) match the DynamoDB store, which the
//! shared contract suite checks.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::*;
use crate::domain::ConversationStatus;
use crate::policy::{self, is_live};

#[derive(Default)]
struct Inner {
    sites: BTreeMap<String, Site>,
    agents: BTreeMap<(String, String), Agent>,
    sessions: BTreeMap<String, Session>,
    messages: BTreeMap<(String, u64), Message>,
    /// (session id, retry-record sort key) -> sequence number.
    cmids: BTreeMap<(String, String), u64>,
    connections: BTreeMap<String, Connection>,
    /// (session id, connection id) -> connection: a conversation's recipients.
    members: BTreeMap<(String, String), Connection>,
    /// (site id, connection id) -> connection: a site's online agents.
    agents_online: BTreeMap<(String, String), Connection>,
    audit: BTreeMap<(String, String), AuditRecord>,
    /// key -> (last admission times, newest first; expiry): the sliding-window counter.
    rates: BTreeMap<String, (Vec<Timestamp>, Timestamp)>,
    checkpoints: BTreeMap<String, String>,
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

fn encode_cursor(query: &str, position: &str) -> String {
    B64.encode(format!("{query}\n{position}"))
}

/// Decodes a cursor issued for `query`; anything else is [`StoreError::InvalidCursor`].
fn decode_cursor(query: &str, cursor: Option<&str>) -> Result<Option<String>, StoreError> {
    let Some(c) = cursor else { return Ok(None) };
    let raw = B64.decode(c).map_err(|_| StoreError::InvalidCursor)?;
    let s = String::from_utf8(raw).map_err(|_| StoreError::InvalidCursor)?;
    match s.split_once('\n') {
        Some((q, pos)) if q == query => Ok(Some(pos.to_owned())),
        _ => Err(StoreError::InvalidCursor),
    }
}

/// Pages `items` (already sorted, each with its position key) after `after`.
fn page_after<T>(query: &str, items: Vec<(String, T)>, after: Option<String>, limit: u32, descending: bool) -> Page<T> {
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
        rest.last().map(|(k, _)| encode_cursor(query, k))
    } else {
        None
    };
    Page {
        items: rest.into_iter().map(|(_, v)| v).collect(),
        next,
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
        let before = g.sessions.len()
            + g.connections.len()
            + g.members.len()
            + g.agents_online.len()
            + g.audit.len()
            + g.rates.len();
        g.sessions.retain(|_, s| is_live(s.expires_at, now));
        g.connections.retain(|_, c| is_live(c.expires_at, now));
        g.members.retain(|_, c| is_live(c.expires_at, now));
        g.agents_online.retain(|_, c| is_live(c.expires_at, now));
        g.audit.retain(|_, a| is_live(a.expires_at, now));
        g.rates.retain(|_, (_, exp)| is_live(*exp, now));
        let after = g.sessions.len()
            + g.connections.len()
            + g.members.len()
            + g.agents_online.len()
            + g.audit.len()
            + g.rates.len();
        before - after
    }

    /// How many items of each kind the store holds, named as the DynamoDB store's `kind`s.
    pub fn item_counts(&self) -> BTreeMap<&'static str, usize> {
        let g = self.lock();
        [
            ("site", g.sites.len()),
            ("agent", g.agents.len()),
            ("session", g.sessions.len()),
            ("message", g.messages.len()),
            ("clientMsgId", g.cmids.len()),
            ("connection", g.connections.len()),
            ("membership", g.members.len()),
            ("agentOnline", g.agents_online.len()),
            ("audit", g.audit.len()),
            ("rate", g.rates.len()),
            ("checkpoint", g.checkpoints.len()),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
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
        out.extend(g.cmids.iter().map(|(k, v)| format!("{k:?} {v}")));
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
        let g = self.lock();
        g.sites.len()
            + g.agents.len()
            + g.sessions.len()
            + g.messages.len()
            + g.cmids.len()
            + g.connections.len()
            + g.members.len()
            + g.agents_online.len()
            + g.audit.len()
            + g.rates.len()
            + g.checkpoints.len()
    }
}

/// A session that may be used (live and not fenced for erasure).
fn live_session<'a>(g: &'a Inner, id: &SessionId, now: Timestamp) -> Option<&'a Session> {
    g.sessions.get(id.as_str()).filter(|s| s.is_usable(now))
}

/// A usable session to change, or [`StoreError::NotFound`].
fn live_session_mut<'a>(g: &'a mut Inner, id: &SessionId, now: Timestamp) -> Result<&'a mut Session, StoreError> {
    g.sessions
        .get_mut(id.as_str())
        .filter(|s| s.is_usable(now))
        .ok_or(StoreError::NotFound)
}

/// Whether a connection may be recorded: a visitor's only while their session
/// exists and is not fenced (the DynamoDB store checks the same in its transaction).
fn may_record(g: &Inner, conn: &Connection) -> bool {
    match &conn.principal {
        Principal::Visitor { session_id, .. } => g
            .sessions
            .get(session_id.as_str())
            .is_some_and(|s| s.erasing_since.is_none()),
        Principal::Agent { .. } => true,
    }
}

#[async_trait]
impl SiteStore for MemoryStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        self.turn().await.sites.insert(site.id.to_string(), site.clone());
        Ok(())
    }

    async fn get_site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        Ok(self.turn().await.sites.get(id.as_str()).cloned())
    }

    async fn list_sites(&self, cursor: Option<&str>, limit: u32) -> Result<Page<Site>, StoreError> {
        let after = decode_cursor("sites", cursor)?;
        let items = self
            .turn()
            .await
            .sites
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(page_after("sites", items, after, limit, false))
    }

    async fn put_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        self.turn()
            .await
            .agents
            .insert((agent.site_id.to_string(), agent.id.to_string()), agent.clone());
        Ok(())
    }

    async fn get_agent(&self, site: &SiteId, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        Ok(self
            .turn()
            .await
            .agents
            .get(&(site.to_string(), id.to_string()))
            .cloned())
    }

    async fn agent_and_site(
        &self,
        site: &SiteId,
        agent: &AgentId,
    ) -> Result<(Option<Agent>, Option<Site>), StoreError> {
        // One lock for both, as DynamoDB's one consistent BatchGetItem reads both at once.
        let g = self.lock();
        Ok((
            g.agents.get(&(site.to_string(), agent.to_string())).cloned(),
            g.sites.get(site.as_str()).cloned(),
        ))
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut g = self.turn().await;
        if g.sessions.contains_key(session.id.as_str()) {
            return Err(StoreError::AlreadyExists);
        }
        g.sessions.insert(session.id.to_string(), session.clone());
        Ok(())
    }

    async fn get_session(&self, id: &SessionId, now: Timestamp) -> Result<Option<Session>, StoreError> {
        Ok(live_session(&*self.turn().await, id, now).cloned())
    }

    async fn touch_session(&self, id: &SessionId, touch: SessionTouch) -> Result<Session, StoreError> {
        let mut g = self.turn().await;
        let s = live_session_mut(&mut g, id, touch.now)?;
        apply_touch(s, touch);
        Ok(s.clone())
    }

    async fn set_prechat(
        &self,
        id: &SessionId,
        prechat: &PreChat,
        email_lookup: Option<&str>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        let mut g = self.turn().await;
        let s = live_session_mut(&mut g, id, now)?;
        apply_prechat(s, prechat, email_lookup, now);
        Ok(s.clone())
    }

    async fn mark_read(
        &self,
        id: &SessionId,
        role: AuthorRole,
        seq: u64,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        let mut g = self.turn().await;
        let s = live_session_mut(&mut g, id, now)?;
        apply_read(s, role, seq);
        Ok(s.clone())
    }

    async fn set_status(
        &self,
        id: &SessionId,
        status: ConversationStatus,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        let mut g = self.turn().await;
        let s = live_session_mut(&mut g, id, now)?;
        s.status = status;
        Ok(s.clone())
    }
}

/// The state change of a pre-chat form, shared with the DynamoDB store.
pub(super) fn apply_prechat(s: &mut Session, prechat: &PreChat, email_lookup: Option<&str>, now: Timestamp) {
    s.prechat = Some(prechat.clone());
    s.email_lookup = email_lookup.map(str::to_owned);
    apply_touch(
        s,
        SessionTouch {
            now,
            renew_token: false,
        },
    );
}

/// The state change of a read marker, shared with the DynamoDB store.
pub(super) fn apply_read(s: &mut Session, role: AuthorRole, seq: u64) {
    let seq = seq.min(s.last_seq);
    let marker = match role {
        AuthorRole::Visitor => &mut s.visitor_read_seq,
        AuthorRole::Agent | AuthorRole::System => &mut s.agent_read_seq,
    };
    *marker = (*marker).max(seq);
}

/// The state change of a touch, shared with the DynamoDB store.
pub(super) fn apply_touch(s: &mut Session, touch: SessionTouch) {
    s.last_access_at = s.last_access_at.max(touch.now);
    if touch.renew_token {
        s.token_expires_at = policy::visitor_token_expiry(touch.now);
    }
    s.expires_at = policy::session_expiry(s);
}

/// The state change of an append, shared with the DynamoDB store: the next
/// sequence number, the rate window, and the conversation's new expiry.
pub(super) fn apply_append(s: &mut Session, now: Timestamp, rate: Option<RateLimit>) -> Result<u64, StoreError> {
    if let Some(rate) = rate {
        match rate.check(s.rate_window_start, s.rate_count, now) {
            RateDecision::Limited { retry_after } => {
                return Err(StoreError::RateLimited { retry_after });
            }
            RateDecision::Allowed { window_start, count } => {
                s.rate_window_start = window_start;
                s.rate_count = count;
            }
        }
    }
    s.last_seq += 1;
    s.last_activity_at = Some(now);
    s.last_access_at = s.last_access_at.max(now);
    s.expires_at = policy::session_expiry(s);
    Ok(s.last_seq)
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn append_message(
        &self,
        msg: &NewMessage,
        now: Timestamp,
        rate: Option<RateLimit>,
    ) -> Result<Appended, StoreError> {
        let mut g = self.turn().await;
        let sid = msg.session_id.to_string();
        if live_session(&g, &msg.session_id, now).is_none_or(|s| s.site_id != msg.site_id) {
            return Err(StoreError::NotFound);
        }
        let cmid = (
            sid.clone(),
            keys::cmid_sk(msg.author.role, &msg.author.id, &msg.client_msg_id),
        );
        if let Some(seq) = g.cmids.get(&cmid).copied() {
            let message = g.messages.get(&(sid, seq)).cloned().ok_or(StoreError::Corrupt {
                operation: "append_message",
            })?;
            return Ok(Appended {
                message,
                duplicate: true,
            });
        }
        let session = g.sessions.get_mut(&sid).ok_or(StoreError::NotFound)?;
        let seq = apply_append(session, now, rate)?;
        let message = Message {
            session_id: msg.session_id.clone(),
            seq,
            author: msg.author.clone(),
            text: msg.text.clone(),
            client_msg_id: msg.client_msg_id.clone(),
            created_at: now,
        };
        g.cmids.insert(cmid, seq);
        g.messages.insert((sid, seq), message.clone());
        Ok(Appended {
            message,
            duplicate: false,
        })
    }

    async fn list_messages(&self, session: &SessionId, after: u64, limit: u32) -> Result<MessagePage, StoreError> {
        let g = self.turn().await;
        let limit = clamp_limit(limit) as usize;
        let sid = session.to_string();
        let mut messages: Vec<Message> = g
            .messages
            .range((sid.clone(), after.saturating_add(1))..=(sid, u64::MAX))
            .take(limit + 1)
            .map(|(_, m)| m.clone())
            .collect();
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        Ok(MessagePage { messages, has_more })
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let mut g = self.turn().await;
        if !may_record(&g, conn) {
            return Err(StoreError::NotFound);
        }
        let cid = conn.id.to_string();
        g.connections.insert(cid.clone(), conn.clone());
        match &conn.principal {
            Principal::Visitor { session_id, .. } => {
                g.members.insert((session_id.to_string(), cid), conn.clone());
            }
            Principal::Agent { .. } => {
                g.agents_online.insert((conn.site_id.to_string(), cid), conn.clone());
            }
        }
        Ok(())
    }

    async fn get_connection(&self, id: &ConnectionId, now: Timestamp) -> Result<Option<Connection>, StoreError> {
        Ok(self
            .lock()
            .connections
            .get(id.as_str())
            .filter(|c| is_live(c.expires_at, now))
            .cloned())
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let mut g = self.turn().await;
        let Some(conn) = g.connections.remove(id.as_str()) else {
            return Ok(None);
        };
        match &conn.principal {
            Principal::Visitor { session_id, .. } => {
                g.members.remove(&(session_id.to_string(), id.to_string()));
            }
            Principal::Agent { .. } => {
                g.agents_online.remove(&(conn.site_id.to_string(), id.to_string()));
            }
        }
        Ok(Some(conn))
    }

    async fn join_conversation(
        &self,
        conn: &ConnectionId,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Connection, StoreError> {
        let mut g = self.turn().await;
        let c = g
            .connections
            .get(conn.as_str())
            .filter(|c| is_live(c.expires_at, now))
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if live_session(&g, session, now).is_none() {
            return Err(StoreError::NotFound);
        }
        g.members.insert((session.to_string(), conn.to_string()), c.clone());
        Ok(c)
    }

    async fn conversation_connections(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Vec<Connection>, StoreError> {
        Ok(live_under(&self.turn().await.members, session.as_str(), now))
    }

    async fn agent_connections(&self, site: &SiteId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        Ok(live_under(&self.turn().await.agents_online, site.as_str(), now))
    }
}

/// Live connections keyed under `owner` (a session's recipients, a site's agents).
fn live_under(map: &BTreeMap<(String, String), Connection>, owner: &str, now: Timestamp) -> Vec<Connection> {
    map.range((owner.to_owned(), String::new())..)
        .take_while(|((o, _), _)| o == owner)
        .filter(|(_, c)| is_live(c.expires_at, now))
        .map(|(_, c)| c.clone())
        .collect()
}

fn conv_position(s: &Session) -> String {
    format!("{}#{}", keys::ts(s.last_activity_at.unwrap_or(s.created_at)), s.id)
}

#[async_trait]
impl ConversationStore for MemoryStore {
    async fn list_conversations(
        &self,
        site: &SiteId,
        status: Option<ConversationStatus>,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<Session>, StoreError> {
        let query = format!("conversations:{site}");
        let after = decode_cursor(&query, cursor)?;
        let g = self.turn().await;
        let mut items: Vec<(String, Session)> = g
            .sessions
            .values()
            .filter(|s| s.site_id == *site && s.is_conversation() && s.is_usable(now))
            .filter(|s| status.is_none_or(|st| s.status == st))
            .map(|s| (conv_position(s), s.clone()))
            .collect();
        items.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(page_after(&query, items, after, limit, true))
    }

    async fn fence_session(&self, id: &SessionId, now: Timestamp) -> Result<bool, StoreError> {
        let mut g = self.turn().await;
        let Some(s) = g.sessions.get_mut(id.as_str()) else {
            return Ok(false);
        };
        s.erasing_since.get_or_insert(now);
        Ok(true)
    }

    async fn erase_session(&self, id: &SessionId, _now: Timestamp) -> Result<ErasedCounts, StoreError> {
        // One lock for the whole erasure: no writer can land in between, which is
        // what the DynamoDB store's fence and re-query achieve there.
        let mut g = self.turn().await;
        let sid = id.to_string();
        let mut counts = ErasedCounts::default();
        let msgs: Vec<_> = g
            .messages
            .range((sid.clone(), 0)..=(sid.clone(), u64::MAX))
            .map(|(k, _)| k.clone())
            .collect();
        counts.add("message", msgs.len() as u64);
        for k in msgs {
            g.messages.remove(&k);
        }
        let cmids: Vec<_> = g.cmids.keys().filter(|(s, _)| *s == sid).cloned().collect();
        counts.add("clientMsgId", cmids.len() as u64);
        for k in cmids {
            g.cmids.remove(&k);
        }
        let members: Vec<_> = g
            .members
            .iter()
            .filter(|((s, _), _)| *s == sid)
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        for (k, c) in members {
            g.members.remove(&k);
            counts.add("membership", 1);
            // A visitor's own connection goes with their session; an agent's stays.
            if matches!(c.principal, Principal::Visitor { .. }) && g.connections.remove(c.id.as_str()).is_some() {
                counts.add("connection", 1);
            }
        }
        if g.sessions.remove(&sid).is_some() {
            counts.add("session", 1);
        }
        // A job cursor naming the session would outlive it; the job restarts its pass instead.
        g.checkpoints.retain(|_, v| !checkpoint_mentions(v, &sid));
        tracing::info!(items = counts.total(), "session erased");
        Ok(counts)
    }
}

fn sessions_where(g: &Inner, mut pred: impl FnMut(&Session) -> bool) -> Vec<Session> {
    let mut v: Vec<Session> = g.sessions.values().filter(|s| pred(s)).cloned().collect();
    v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    v
}

#[async_trait]
impl SubjectStore for MemoryStore {
    async fn session_any(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.turn().await.sessions.get(id.as_str()).cloned())
    }

    async fn sessions_of_visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Vec<Session>, StoreError> {
        Ok(sessions_where(&*self.turn().await, |s| {
            s.site_id == *site && s.visitor_id == *visitor
        }))
    }

    async fn sessions_by_email(&self, site: &SiteId, email_lookup: &str) -> Result<Vec<Session>, StoreError> {
        Ok(sessions_where(&*self.turn().await, |s| {
            s.site_id == *site && s.email_lookup.as_deref() == Some(email_lookup)
        }))
    }
}

#[async_trait]
impl RetentionStore for MemoryStore {
    async fn conversations_inactive_before(
        &self,
        site: &SiteId,
        before: Timestamp,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Session>, StoreError> {
        let query = format!("inactive:{site}");
        let after = decode_cursor(&query, cursor)?;
        let g = self.turn().await;
        let mut items: Vec<(String, Session)> = g
            .sessions
            .values()
            .filter(|s| s.site_id == *site && s.last_activity_at.is_some_and(|t| t < before))
            .map(|s| (conv_position(s), s.clone()))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(page_after(&query, items, after, limit, false))
    }

    async fn sessions_with_ip_before(
        &self,
        site: &SiteId,
        before: Timestamp,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Session>, StoreError> {
        let query = format!("ip:{site}");
        let after = decode_cursor(&query, cursor)?;
        let g = self.turn().await;
        let mut items: Vec<(String, Session)> = g
            .sessions
            .values()
            .filter(|s| s.site_id == *site)
            .filter_map(|s| {
                let ip = s.ip.as_ref()?;
                (ip.recorded_at < before).then(|| (format!("{}#{}", keys::ts(ip.recorded_at), s.id), s.clone()))
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(page_after(&query, items, after, limit, false))
    }

    async fn remove_ip(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .sessions
            .get_mut(id.as_str())
            .and_then(|s| s.ip.take())
            .is_some())
    }

    async fn scan_orphans(
        &self,
        cursor: Option<&str>,
        limit: u32,
        _now: Timestamp,
    ) -> Result<Page<Orphan>, StoreError> {
        let after = decode_cursor("orphans", cursor)?;
        let g = self.turn().await;
        // Same order as a DynamoDB scan is not possible (hash order); key order is as good.
        let mut items: Vec<(String, Orphan)> = Vec::new();
        for (sid, seq) in g.messages.keys() {
            let (pk, sk) = (format!("SESS#{sid}"), keys::msg_sk(*seq));
            items.push((
                format!("{pk}|{sk}"),
                Orphan {
                    kind: "message".into(),
                    pk,
                    sk,
                },
            ));
        }
        for (sid, sk) in g.cmids.keys() {
            let pk = format!("SESS#{sid}");
            items.push((
                format!("{pk}|{sk}"),
                Orphan {
                    kind: "clientMsgId".into(),
                    pk,
                    sk: sk.clone(),
                },
            ));
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let items = items
            .into_iter()
            .filter(|(_, o)| !g.sessions.contains_key(o.pk.trim_start_matches("SESS#")))
            .collect();
        Ok(page_after("orphans", items, after, limit, false))
    }

    async fn delete_orphans(&self, orphans: &[Orphan]) -> Result<u64, StoreError> {
        let mut g = self.turn().await;
        let mut n = 0;
        for o in orphans {
            let sid = o.pk.trim_start_matches("SESS#").to_owned();
            if g.sessions.contains_key(&sid) {
                continue; // no longer an orphan
            }
            let removed = match o.sk.strip_prefix(keys::MSG_PREFIX).and_then(|s| s.parse::<u64>().ok()) {
                Some(seq) => g.messages.remove(&(sid, seq)).is_some(),
                None => g.cmids.remove(&(sid, o.sk.clone())).is_some(),
            };
            n += u64::from(removed);
        }
        Ok(n)
    }

    async fn get_checkpoint(&self, job: &str) -> Result<Option<String>, StoreError> {
        Ok(self.turn().await.checkpoints.get(job).cloned())
    }

    async fn put_checkpoint(&self, job: &str, value: Option<&str>) -> Result<(), StoreError> {
        let mut g = self.turn().await;
        match value {
            Some(v) => g.checkpoints.insert(job.to_owned(), v.to_owned()),
            None => g.checkpoints.remove(job),
        };
        Ok(())
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let key = (
            record.site_id.to_string(),
            format!("{}#{}", keys::ts(record.at), record.id),
        );
        self.turn().await.audit.entry(key).or_insert_with(|| record.clone());
        Ok(())
    }

    async fn list_audit(
        &self,
        site: &SiteId,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let query = format!("audit:{site}");
        let after = decode_cursor(&query, cursor)?;
        let g = self.turn().await;
        let mut items: Vec<(String, AuditRecord)> = g
            .audit
            .iter()
            .filter(|((s, _), r)| s == site.as_str() && is_live(r.expires_at, now))
            .map(|((_, k), r)| (k.clone(), r.clone()))
            .collect();
        items.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(page_after(&query, items, after, limit, true))
    }
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn hit(&self, key: &str, limit: RateLimit, now: Timestamp) -> Result<RateDecision, StoreError> {
        let mut g = self.turn().await;
        let entry = g.rates.entry(key.to_owned()).or_insert((Vec::new(), now));
        // An expired counter not yet swept holds only times outside the window anyway.
        let recent: &[Timestamp] = if is_live(entry.1, now) { &entry.0 } else { &[] };
        let decision = limit.admit(recent, now);
        if let RateDecision::Allowed { .. } = decision {
            let mut times = Vec::with_capacity(limit.limit as usize);
            times.push(now);
            times.extend(recent.iter().take((limit.limit as usize).saturating_sub(1)));
            *entry = (times, limit.counter_expiry(now));
        } else if entry.0.is_empty() {
            // Refused without a counter (a zero limit): store nothing.
            g.rates.remove(key);
        }
        Ok(decision)
    }
}
