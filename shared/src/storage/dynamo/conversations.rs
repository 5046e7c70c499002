//! A site's conversations (GSI2), the erasure fence, and erasure: a sweep of
//! the session's partition until a consistent Query finds it empty.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use super::DynamoStore;
use super::client::classify;
use super::item::{attr_str, key, n, record};
use super::query::QuerySpec;
use crate::clock::Timestamp;
use crate::domain::{Connection, ConversationStatus, Principal, Session, SessionId, SiteId};
use crate::storage::keys::{self, kind};
use crate::storage::{ConversationStore, ErasedCounts, Page, RetentionStore, StoreError, cursor};

/// Sweeps of a fenced partition before an erasure gives up (and is retried).
/// After the fence nothing new can land, so the second sweep finds nothing;
/// the extra rounds only absorb transactions that were in flight at the fence.
const MAX_SWEEPS: u32 = 4;

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn list_conversations(
        &self,
        site: &SiteId,
        status: Option<ConversationStatus>,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<Session>, StoreError> {
        let q = QuerySpec::index(keys::GSI2, keys::conversations_gsi2pk(site)).backward();
        let mut page: Page<Session> = self.records_page(&q, cursor, limit).await?;
        // Filtered after the page is read, so the cursor still follows the index.
        page.items
            .retain(|s| s.is_usable(now) && status.is_none_or(|st| s.status == st));
        Ok(page)
    }

    async fn fence_session(&self, id: &SessionId, now: Timestamp) -> Result<bool, StoreError> {
        // Bumping the version also fails every read-modify-write that read the
        // session before the fence (appends, touches, read markers, pre-chat).
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::session_pk(id), keys::SESSION_SK)))
            .update_expression("SET #er = if_not_exists(#er, :now), #ver = #ver + :one")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#er", keys::ERASING)
            .expression_attribute_names("#ver", keys::VERSION)
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_values(":now", n(now.millis()))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                match classify!("UpdateItem", e, UpdateItemError, ConditionalCheckFailedException => StoreError::NotFound)
                {
                    StoreError::NotFound => Ok(false),
                    other => Err(other),
                }
            }
        }
    }

    async fn erase_session(&self, id: &SessionId, now: Timestamp) -> Result<ErasedCounts, StoreError> {
        let pk = keys::session_pk(id);
        let has_session = self.fence_session(id, now).await?;
        let mut counts = ErasedCounts::default();
        let mut clean = false;
        for _ in 0..MAX_SWEEPS {
            let items = self.query_all(&QuerySpec::table(pk.clone()), true).await?;
            let mut deletes = Vec::new();
            for item in items {
                let sk = attr_str(&item, keys::SK).unwrap_or_default().to_owned();
                if sk == keys::SESSION_SK {
                    continue;
                }
                let item_kind = attr_str(&item, keys::KIND).unwrap_or("unknown").to_owned();
                if item_kind == kind::MEMBERSHIP {
                    let conn: Connection = record("Query", item)?;
                    // A visitor's own connection goes with their session; an agent's stays.
                    if matches!(conn.principal, Principal::Visitor { .. }) {
                        let lookup = key(keys::connection_pk(&conn.id), keys::CONNECTION_SK);
                        if self.get(lookup.clone(), true).await?.is_some() {
                            counts.add(kind::CONNECTION, 1);
                        }
                        deletes.push(lookup);
                    }
                }
                counts.add(&item_kind, 1);
                deletes.push(key(pk.clone(), sk));
            }
            if deletes.is_empty() {
                clean = true;
                break;
            }
            self.batch_delete(deletes).await?;
        }
        if !clean {
            // Still fenced: a rerun finishes the job.
            return Err(StoreError::Conflict);
        }
        // Last, so an interrupted erasure still finds this (fenced) session on a rerun.
        if has_session {
            self.delete(key(pk, keys::SESSION_SK)).await?;
            counts.add(kind::SESSION, 1);
        }
        for job in keys::JOBS {
            if self
                .get_checkpoint(job)
                .await?
                .is_some_and(|raw| cursor::mentions(&raw, id.as_str()))
            {
                self.put_checkpoint(job, None).await?;
            }
        }
        tracing::info!(items = counts.total(), "session erased");
        Ok(counts)
    }
}
