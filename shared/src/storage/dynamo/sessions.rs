//! Sessions: read-modify-write of the session item under optimistic
//! concurrency (a conditional put on the version read). What a write changes
//! is one of [`Session`]'s methods, so this store and the in-memory one agree.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem};

use super::DynamoStore;
use super::client::{Condition, MAX_ATTEMPTS, Transacted, backoff, build_error};
use super::item::{decode, encode, key, session_envelope};
use crate::clock::Timestamp;
use crate::domain::{Session, SessionChange, SessionId};
use crate::storage::keys;
use crate::storage::{SessionStore, StoreError};

impl DynamoStore {
    /// A session with the version it was read at, whether live or not.
    pub(super) async fn session_versioned(&self, id: &SessionId) -> Result<Option<(Session, u64)>, StoreError> {
        match self.get(key(keys::session_pk(id), keys::SESSION_SK), true).await? {
            None => Ok(None),
            Some(item) => {
                let env = decode::<Session>("GetItem", item)?;
                Ok(Some((env.data, env.version)))
            }
        }
    }

    /// Writes a session if its version is still `version`; `false` if it moved on.
    pub(super) async fn write_session(&self, session: &Session, version: u64) -> Result<bool, StoreError> {
        let item = encode(&session_envelope(session, version + 1))?;
        self.put_if(item, Condition::version_is(version)).await
    }

    /// Read-modify-write of a usable session under optimistic concurrency.
    async fn update_session(
        &self,
        id: &SessionId,
        now: Timestamp,
        mut change: impl FnMut(&mut Session),
    ) -> Result<Session, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut session, version)) = self.session_versioned(id).await? else {
                return Err(StoreError::NotFound);
            };
            if !session.is_usable(now) {
                return Err(StoreError::NotFound);
            }
            change(&mut session);
            if self.write_session(&session, version).await? {
                return Ok(session);
            }
        }
        Err(StoreError::Conflict)
    }

    /// A transaction step that writes nothing but requires the session item to
    /// exist and not be fenced for erasure: every write into a session's
    /// partition that is not already conditioned on the session's version
    /// carries it, so nothing lands behind an erasure's sweep.
    fn session_usable_check(&self, session: &SessionId) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(keys::session_pk(session), keys::SESSION_SK)))
            .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#er)")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#er", keys::ERASING)
            .build()
            .map_err(|_| build_error("TransactWriteItems"))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Writes `ops` plus the session check, retrying transaction conflicts;
    /// [`StoreError::NotFound`] if the session is gone or fenced.
    pub(super) async fn write_into_session(
        &self,
        session: &SessionId,
        ops: Vec<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let check_at = ops.len();
        for attempt in 0..MAX_ATTEMPTS {
            let mut all = ops.clone();
            all.push(self.session_usable_check(session)?);
            match self.transact_outcome(all).await? {
                Transacted::Done => return Ok(()),
                Transacted::Cancelled { failed } if failed.contains(&check_at) => return Err(StoreError::NotFound),
                // A concurrent transaction on the session item (an append): try again.
                Transacted::Cancelled { .. } => backoff(attempt + 1).await,
            }
        }
        Err(StoreError::Conflict)
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let item = encode(&session_envelope(session, 1))?;
        if self.put_if(item, Condition::not_exists()).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn get_session(&self, id: &SessionId, now: Timestamp) -> Result<Option<Session>, StoreError> {
        Ok(self
            .session_versioned(id)
            .await?
            .map(|(s, _)| s)
            .filter(|s| s.is_usable(now)))
    }

    async fn change_session(
        &self,
        id: &SessionId,
        now: Timestamp,
        change: &SessionChange<'_>,
    ) -> Result<Session, StoreError> {
        self.update_session(id, now, |s| s.apply(change)).await
    }
}
