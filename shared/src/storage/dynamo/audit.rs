//! The audit trail: append-only items in the site's audit partition, newest first.

use async_trait::async_trait;

use super::DynamoStore;
use super::client::Condition;
use super::item::{Envelope, encode};
use super::query::QuerySpec;
use crate::clock::Timestamp;
use crate::domain::{AuditRecord, SiteId};
use crate::policy::is_live;
use crate::storage::keys::{self, kind};
use crate::storage::{AuditStore, Page, StoreError};

#[async_trait]
impl AuditStore for DynamoStore {
    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let env = Envelope::new(
            keys::audit_pk(&record.site_id),
            keys::audit_sk(record.at, &record.id),
            kind::AUDIT,
            record.clone(),
        )
        .ttl(record.expires_at);
        // Already recorded (the condition failed): appending the same record again is a no-op.
        self.put_if(encode(&env)?, Condition::not_exists()).await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        site: &SiteId,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let q = QuerySpec::table(keys::audit_pk(site)).backward();
        let mut page: Page<AuditRecord> = self.records_page(&q, cursor, limit).await?;
        page.items.retain(|r| is_live(r.expires_at, now));
        Ok(page)
    }
}
