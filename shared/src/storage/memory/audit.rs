//! The audit trail in memory.

use async_trait::async_trait;

use super::{MemoryStore, page_after};
use crate::clock::Timestamp;
use crate::domain::{AuditRecord, SiteId};
use crate::policy::is_live;
use crate::storage::{AuditStore, Page, StoreError, keys};

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let key = (record.site_id.to_string(), keys::audit_sk(record.at, &record.id));
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
        let g = self.turn().await;
        let mut items: Vec<(String, AuditRecord)> = g
            .audit
            .iter()
            .filter(|((s, _), r)| s == site.as_str() && is_live(r.expires_at, now))
            .map(|((_, k), r)| (k.clone(), r.clone()))
            .collect();
        items.sort_by(|a, b| b.0.cmp(&a.0));
        page_after(&format!("audit:{site}"), items, cursor, limit, true)
    }
}
