//! What the retention job needs, in memory: old conversations and IPs, the
//! orphan sweep, checkpoints.

use async_trait::async_trait;

use super::conversations::conversation_position;
use super::{MemoryStore, page_after};
use crate::clock::Timestamp;
use crate::domain::{Session, SessionId, SiteId};
use crate::storage::keys::{self, kind};
use crate::storage::{Orphan, Page, RetentionStore, StoreError};

impl MemoryStore {
    /// A page of a site's sessions that `position` places (as the index the
    /// DynamoDB store queries would: `None` is not in it), in position order.
    async fn site_sessions_page(
        &self,
        query: &str,
        site: &SiteId,
        cursor: Option<&str>,
        limit: u32,
        position: impl Fn(&Session) -> Option<String>,
    ) -> Result<Page<Session>, StoreError> {
        let g = self.turn().await;
        let mut items: Vec<(String, Session)> = g
            .sessions
            .values()
            .filter(|s| s.site_id == *site)
            .filter_map(|s| Some((position(s)?, s.clone())))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        page_after(query, items, cursor, limit, false)
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
        let inactive = |s: &Session| {
            s.last_activity_at
                .is_some_and(|t| t < before)
                .then(|| conversation_position(s))
        };
        self.site_sessions_page(&format!("inactive:{site}"), site, cursor, limit, inactive)
            .await
    }

    async fn sessions_with_ip_before(
        &self,
        site: &SiteId,
        before: Timestamp,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Session>, StoreError> {
        let old_ip = |s: &Session| {
            let ip = s.ip.as_ref()?;
            (ip.recorded_at < before).then(|| keys::ip_gsi3sk(ip.recorded_at, &s.id))
        };
        self.site_sessions_page(&format!("ip:{site}"), site, cursor, limit, old_ip)
            .await
    }

    async fn remove_ip(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.lock().sessions.get_mut(id).and_then(|s| s.ip.take()).is_some())
    }

    async fn scan_orphans(
        &self,
        cursor: Option<&str>,
        limit: u32,
        _now: Timestamp,
    ) -> Result<Page<Orphan>, StoreError> {
        let g = self.turn().await;
        let orphan = |sid: &SessionId, kind: &str, sk: String| {
            let pk = keys::session_pk(sid);
            (
                format!("{pk}|{sk}"),
                Orphan {
                    kind: kind.to_owned(),
                    pk,
                    sk,
                },
            )
        };
        // Same order as a DynamoDB scan is not possible (hash order); key order is as good.
        let mut items: Vec<(String, Orphan)> = g
            .messages
            .keys()
            .filter(|(sid, _)| !g.sessions.contains_key(sid))
            .map(|(sid, seq)| orphan(sid, kind::MESSAGE, keys::msg_sk(*seq)))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        page_after("orphans", items, cursor, limit, false)
    }

    async fn delete_orphans(&self, orphans: &[Orphan]) -> Result<u64, StoreError> {
        let mut g = self.turn().await;
        let mut n = 0;
        for o in orphans {
            let Some(sid) = keys::session_of_pk(&o.pk) else {
                continue; // not a session's item: nothing this sweep deletes
            };
            if g.sessions.contains_key(&sid) {
                continue; // no longer an orphan
            }
            let Some(seq) = keys::msg_seq(&o.sk) else {
                continue;
            };
            let removed = g.messages.remove(&(sid.clone(), seq)).is_some();
            // Its retry index entry goes with it, as DynamoDB's LSI1 entry does.
            g.cmids.retain(|(s, _), v| !(*s == sid && *v == seq));
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
