//! Conversation listing, the erasure fence and erasure, in memory.

use async_trait::async_trait;

use super::{MemoryStore, page_after};
use crate::clock::Timestamp;
use crate::domain::{ConversationStatus, Principal, Session, SessionId, SiteId};
use crate::storage::keys::{self, kind};
use crate::storage::{ConversationStore, ErasedCounts, Page, StoreError, cursor};

/// A conversation's place in a site's listing: GSI2's sort key (when it began).
pub(super) fn conversation_position(s: &Session) -> String {
    keys::conversation_gsi2sk(s.created_at, &s.id)
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
        let g = self.turn().await;
        let mut items: Vec<(String, Session)> = g
            .sessions
            .values()
            .filter(|s| s.site_id == *site && s.is_conversation() && s.is_usable(now))
            .filter(|s| status.is_none_or(|st| s.status == st))
            .map(|s| (conversation_position(s), s.clone()))
            .collect();
        items.sort_by(|a, b| b.0.cmp(&a.0));
        page_after(&format!("conversations:{site}"), items, cursor, limit, true)
    }

    async fn fence_session(&self, id: &SessionId, now: Timestamp) -> Result<bool, StoreError> {
        let mut g = self.turn().await;
        let Some(s) = g.sessions.get_mut(id) else {
            return Ok(false);
        };
        s.erasing_since.get_or_insert(now);
        Ok(true)
    }

    async fn erase_session(&self, id: &SessionId, _now: Timestamp) -> Result<ErasedCounts, StoreError> {
        // One lock for the whole erasure: no writer can land in between, which is
        // what the DynamoDB store's fence and re-query achieve there.
        let mut g = self.turn().await;
        let mut counts = ErasedCounts::default();
        let before = g.messages.len();
        g.messages.retain(|(s, _), _| s != id);
        counts.add(kind::MESSAGE, (before - g.messages.len()) as u64);
        // The retry index goes with the messages, as DynamoDB's LSI1 entries do.
        g.cmids.retain(|(s, _), _| s != id);
        let members: Vec<_> = g
            .members
            .iter()
            .filter(|((s, _), _)| s == id)
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        for (k, c) in members {
            g.members.remove(&k);
            counts.add(kind::MEMBERSHIP, 1);
            // A visitor's own connection goes with their session; an agent's stays.
            if matches!(c.principal, Principal::Visitor { .. }) && g.connections.remove(c.id.as_str()).is_some() {
                counts.add(kind::CONNECTION, 1);
            }
        }
        if g.sessions.remove(id).is_some() {
            counts.add(kind::SESSION, 1);
        }
        // A job cursor naming the session would outlive it; the job restarts its pass instead.
        g.checkpoints.retain(|_, v| !cursor::mentions(v, id.as_str()));
        tracing::info!(items = counts.total(), "session erased");
        Ok(counts)
    }
}
