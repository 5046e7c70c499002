//! Finding a data subject's sessions: by id, by visitor (GSI1), by email
//! lookup key (GSI4). Expired sessions not yet swept are included.

use async_trait::async_trait;

use super::DynamoStore;
use super::query::QuerySpec;
use crate::domain::{Session, SessionId, SiteId, VisitorId};
use crate::storage::keys;
use crate::storage::{StoreError, SubjectStore};

#[async_trait]
impl SubjectStore for DynamoStore {
    async fn session_any(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.session_versioned(id).await?.map(|(s, _)| s))
    }

    async fn sessions_of_visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Vec<Session>, StoreError> {
        // GSI1's sort key is the creation time: already oldest first.
        let q = QuerySpec::index(keys::GSI1, keys::visitor_gsi1pk(site, visitor));
        self.query_records(&q, false).await
    }

    async fn sessions_by_email(&self, site: &SiteId, email_lookup: &str) -> Result<Vec<Session>, StoreError> {
        let q = QuerySpec::index(keys::GSI4, keys::email_gsi4pk(site, email_lookup));
        let mut v: Vec<Session> = self.query_records(&q, false).await?;
        // GSI4 sorts by session id; the trait promises oldest first.
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(v)
    }
}
