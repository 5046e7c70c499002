//! What the retention job needs beyond TTL: old conversations (GSI2) and IPs
//! (GSI3), removing an IP, the orphan sweep (the only Scan), checkpoints.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::scan::ScanError;

use super::DynamoStore;
use super::client::{MAX_ATTEMPTS, classify};
use super::item::{CheckpointData, Envelope, Item, attr_str, encode, key, record, s};
use super::query::{QuerySpec, next_cursor, start_key};
use crate::clock::Timestamp;
use crate::domain::{Session, SessionId, SiteId};
use crate::storage::keys::{self, Gsi, kind};
use crate::storage::{Orphan, Page, RetentionStore, StoreError, clamp_limit};

impl DynamoStore {
    /// A page of an index partition whose sort keys start with a timestamp, before `before`, oldest first.
    async fn sessions_before(
        &self,
        gsi: Gsi,
        pk: String,
        before: Timestamp,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Session>, StoreError> {
        let q = QuerySpec::index(gsi, pk).sort("#s < :s", keys::ts(before));
        self.records_page(&q, cursor, limit).await
    }

    /// Which of the orphans' session partitions still have a session item.
    async fn existing_sessions(&self, orphans: &[Orphan]) -> Result<BTreeSet<String>, StoreError> {
        let pks: BTreeSet<&str> = orphans.iter().map(|o| o.pk.as_str()).collect();
        let found = self
            .batch_get(pks.iter().map(|pk| key((*pk).to_owned(), keys::SESSION_SK)).collect())
            .await?;
        Ok(found
            .iter()
            .filter_map(|i| attr_str(i, keys::PK).map(str::to_owned))
            .collect())
    }
}

#[async_trait]
impl RetentionStore for DynamoStore {
    async fn conversations_inactive_before(
        &self,
        site: &SiteId,
        before: Timestamp,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Session>, StoreError> {
        // GSI2 is ordered by when a conversation began, which is never after its last
        // activity: every conversation idle since `before` began before it. Those
        // still active are dropped from the page (its cursor still follows the index).
        let mut page = self
            .sessions_before(keys::GSI2, keys::conversations_gsi2pk(site), before, cursor, limit)
            .await?;
        page.items.retain(|s| s.last_activity_at.is_none_or(|t| t < before));
        Ok(page)
    }

    async fn sessions_with_ip_before(
        &self,
        site: &SiteId,
        before: Timestamp,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Session>, StoreError> {
        self.sessions_before(keys::GSI3, keys::ip_gsi3pk(site), before, cursor, limit)
            .await
    }

    async fn remove_ip(&self, id: &SessionId) -> Result<bool, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut session, version)) = self.session_versioned(id).await? else {
                return Ok(false);
            };
            if session.ip.take().is_none() {
                return Ok(false);
            }
            if self.write_session(&session, version).await? {
                return Ok(true);
            }
        }
        Err(StoreError::Conflict)
    }

    async fn scan_orphans(
        &self,
        cursor: Option<&str>,
        limit: u32,
        _now: Timestamp,
    ) -> Result<Page<Orphan>, StoreError> {
        let start = start_key(cursor, &[keys::PK, keys::SK], None)?;
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(#sk, :msg)")
            .projection_expression("#pk, #sk, #kind")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_names("#kind", keys::KIND)
            .expression_attribute_values(":msg", s(keys::MSG_PREFIX))
            .set_exclusive_start_key(start)
            .limit(clamp_limit(limit) as i32)
            .send()
            .await
            .map_err(|e| classify!("Scan", e, ScanError))?;
        let candidates: Vec<Orphan> = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| {
                Some(Orphan {
                    kind: attr_str(i, keys::KIND)?.to_owned(),
                    pk: attr_str(i, keys::PK)?.to_owned(),
                    sk: attr_str(i, keys::SK)?.to_owned(),
                })
            })
            .collect();
        let existing = self.existing_sessions(&candidates).await?;
        let items = candidates.into_iter().filter(|o| !existing.contains(&o.pk)).collect();
        Ok(Page {
            items,
            next: next_cursor(out.last_evaluated_key),
        })
    }

    async fn delete_orphans(&self, orphans: &[Orphan]) -> Result<u64, StoreError> {
        // Re-check: a session may have been created under the same partition since the scan (ids are random, but be exact).
        let existing = self.existing_sessions(orphans).await?;
        let keys_list: Vec<Item> = orphans
            .iter()
            .filter(|o| !existing.contains(&o.pk) && keys::is_session_pk(&o.pk))
            .map(|o| key(o.pk.clone(), o.sk.clone()))
            .collect();
        let n = keys_list.len() as u64;
        self.batch_delete(keys_list).await?;
        Ok(n)
    }

    async fn get_checkpoint(&self, job: &str) -> Result<Option<String>, StoreError> {
        self.get(key(keys::job_pk(job), keys::CHECKPOINT_SK), true)
            .await?
            .map(|i| record::<CheckpointData>("GetItem", i).map(|c| c.value))
            .transpose()
    }

    async fn put_checkpoint(&self, job: &str, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(v) => {
                let env = Envelope::new(
                    keys::job_pk(job),
                    keys::CHECKPOINT_SK,
                    kind::CHECKPOINT,
                    CheckpointData { value: v.to_owned() },
                );
                self.put(encode(&env)?).await
            }
            None => self.delete(key(keys::job_pk(job), keys::CHECKPOINT_SK)).await,
        }
    }
}
