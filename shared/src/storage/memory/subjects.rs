//! Finding a data subject's sessions in memory (live or expired-but-held).

use async_trait::async_trait;

use super::{Inner, MemoryStore};
use crate::domain::{Session, SessionId, SiteId, VisitorId};
use crate::storage::{StoreError, SubjectStore};

/// Every held session matching `pred`, oldest first (ties by id), as the
/// DynamoDB store returns them.
fn sessions_where(g: &Inner, mut pred: impl FnMut(&Session) -> bool) -> Vec<Session> {
    let mut v: Vec<Session> = g.sessions.values().filter(|s| pred(s)).cloned().collect();
    v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    v
}

#[async_trait]
impl SubjectStore for MemoryStore {
    async fn session_any(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.turn().await.sessions.get(id).cloned())
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
