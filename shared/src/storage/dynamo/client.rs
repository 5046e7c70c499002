//! The calls this store makes to DynamoDB, with their error mapping and
//! retries: single-item reads and writes, conditional puts, batches of 25/100
//! with backoff on unprocessed items, and transactions that report which step's
//! condition failed. Capability modules build items and keys; they never talk
//! to the SDK's error types except through [`classify!`].

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, DeleteRequest, KeysAndAttributes, Put, TransactWriteItem, WriteRequest};

use super::DynamoStore;
use super::item::{Item, n};
use crate::storage::StoreError;
use crate::storage::keys;

/// Attempts for optimistic-concurrency loops and batch retries before reporting a conflict.
pub(super) const MAX_ATTEMPTS: u32 = 6;

/// BatchWriteItem calls one erasure keeps in flight: 10,000 messages are 400
/// batches, 50 sequential waves, about half a second at 10 ms per batch, well
/// inside the function's timeout; few enough not to burst a fresh on-demand
/// table's partitions into throttling.
pub(super) const PARALLEL_BATCHES: usize = 8;
/// BatchWriteItem's limit.
const BATCH_WRITE: usize = 25;
/// BatchGetItem's limit.
const BATCH_GET: usize = 100;

/// A failed call's error, with the service's code only (safe to log).
pub(crate) fn backend_error(operation: &'static str, e: &impl ProvideErrorMetadata) -> StoreError {
    StoreError::Backend {
        operation,
        code: e.code().map(str::to_owned),
    }
}

/// A request the SDK's builder refused (a missing required field: a bug here).
pub(super) fn build_error(operation: &'static str) -> StoreError {
    StoreError::Backend {
        operation,
        code: Some("BuildError".into()),
    }
}

/// Maps an operation's service error: throttling to [`StoreError::Throttled`],
/// the listed conditional variant (if any) to the given error, anything else to
/// [`StoreError::Backend`].
macro_rules! classify {
    ($op:literal, $err:expr, $ty:ident $(, $cond:ident => $mapped:expr)?) => {
        match $err.into_service_error() {
            $($ty::$cond(_) => $mapped,)?
            $ty::ProvisionedThroughputExceededException(_) | $ty::RequestLimitExceeded(_) | $ty::ThrottlingException(_) => {
                StoreError::Throttled { operation: $op }
            }
            // DynamoDB's own failure, still there after the SDK's retries: transient.
            $ty::InternalServerError(_) => StoreError::Unavailable { operation: $op },
            other => $crate::storage::dynamo::client::backend_error($op, &other),
        }
    };
}
pub(super) use classify;

/// Sleeps before retry `attempt` (exponential with a small cap).
pub(super) async fn backoff(attempt: u32) {
    let ms = 25u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A write's condition: expression, names and values.
#[derive(Clone)]
pub(super) struct Condition {
    expr: &'static str,
    names: HashMap<String, String>,
    values: Item,
}

impl Condition {
    /// The item does not exist yet.
    pub fn not_exists() -> Self {
        Self {
            expr: "attribute_not_exists(#pk)",
            names: HashMap::from([("#pk".to_owned(), keys::PK.to_owned())]),
            values: HashMap::new(),
        }
    }

    /// The session item still has the version it was read at.
    pub fn version_is(v: u64) -> Self {
        Self {
            expr: "#ver = :ver",
            names: HashMap::from([("#ver".to_owned(), keys::VERSION.to_owned())]),
            values: HashMap::from([(":ver".to_owned(), n(v))]),
        }
    }

    fn values(&self) -> Option<Item> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// How a transaction ended.
pub(super) enum Transacted {
    Done,
    /// Cancelled; `failed` holds the indexes of the steps whose condition failed
    /// (empty when it was cancelled by a concurrent transaction).
    Cancelled {
        failed: Vec<usize>,
    },
}

impl DynamoStore {
    pub(super) async fn get(&self, key_item: Item, consistent: bool) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_item))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| classify!("GetItem", e, GetItemError))?;
        Ok(out.item)
    }

    pub(super) async fn put(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify!("PutItem", e, PutItemError))?;
        Ok(())
    }

    /// One conditional PutItem; `false` if the condition failed.
    pub(super) async fn put_if(&self, item: Item, cond: Condition) -> Result<bool, StoreError> {
        let values = cond.values();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(cond.expr)
            .set_expression_attribute_names(Some(cond.names))
            .set_expression_attribute_values(values)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                match classify!("PutItem", e, PutItemError, ConditionalCheckFailedException => StoreError::Conflict) {
                    StoreError::Conflict => Ok(false),
                    other => Err(other),
                }
            }
        }
    }

    pub(super) async fn delete(&self, key_item: Item) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_item))
            .send()
            .await
            .map_err(|e| classify!("DeleteItem", e, DeleteItemError))?;
        Ok(())
    }

    /// Reads several items by key, consistently, retrying unprocessed keys.
    pub(super) async fn batch_get(&self, keys_list: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys_list.chunks(BATCH_GET) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(|_| build_error("BatchGetItem"))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(|e| classify!("BatchGetItem", e, BatchGetItemError))?;
                if let Some(mut r) = out.responses {
                    found.extend(r.remove(&self.table).unwrap_or_default());
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(StoreError::Throttled {
                            operation: "BatchGetItem",
                        });
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(found)
    }

    /// Deletes items by key in batches of 25, [`PARALLEL_BATCHES`] batches in
    /// flight at once, each retrying its `UnprocessedItems` with backoff; fails
    /// (never silently succeeds) if some remain. Deletes are idempotent, so a
    /// failed call can be repeated whole.
    pub(super) async fn batch_delete(&self, keys_list: Vec<Item>) -> Result<(), StoreError> {
        let batches: Vec<&[Item]> = keys_list.chunks(BATCH_WRITE).collect();
        for wave in batches.chunks(PARALLEL_BATCHES) {
            let done = futures::future::join_all(wave.iter().map(|batch| self.delete_batch(batch))).await;
            done.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
        Ok(())
    }

    /// One BatchWriteItem of at most 25 deletes, until nothing is left unprocessed.
    async fn delete_batch(&self, batch: &[Item]) -> Result<(), StoreError> {
        let mut pending: Vec<WriteRequest> = batch
            .iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k.clone()))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(|_| build_error("BatchWriteItem"))
            })
            .collect::<Result<_, _>>()?;
        let mut attempt = 0;
        while !pending.is_empty() {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(|e| classify!("BatchWriteItem", e, BatchWriteItemError))?;
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                tracing::warn!(
                    remaining = pending.len(),
                    attempt,
                    "BatchWriteItem left unprocessed items, retrying"
                );
                if attempt >= MAX_ATTEMPTS {
                    return Err(StoreError::Throttled {
                        operation: "BatchWriteItem",
                    });
                }
                backoff(attempt).await;
            }
        }
        Ok(())
    }

    /// Runs a transaction; `false` if it was cancelled.
    pub(super) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        Ok(matches!(self.transact_outcome(items).await?, Transacted::Done))
    }

    /// Runs a transaction and says why it was cancelled, if it was.
    pub(super) async fn transact_outcome(&self, items: Vec<TransactWriteItem>) -> Result<Transacted, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(e) = result else { return Ok(Transacted::Done) };
        match e.into_service_error() {
            // A condition failed or a concurrent transaction touched the items:
            // the caller re-reads and decides.
            TransactWriteItemsError::TransactionCanceledException(c) => {
                let failed = c
                    .cancellation_reasons()
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                    .map(|(i, _)| i)
                    .collect();
                Ok(Transacted::Cancelled { failed })
            }
            TransactWriteItemsError::TransactionInProgressException(_) => {
                Ok(Transacted::Cancelled { failed: Vec::new() })
            }
            TransactWriteItemsError::ProvisionedThroughputExceededException(_)
            | TransactWriteItemsError::RequestLimitExceeded(_)
            | TransactWriteItemsError::ThrottlingException(_) => Err(StoreError::Throttled {
                operation: "TransactWriteItems",
            }),
            other => Err(backend_error("TransactWriteItems", &other)),
        }
    }

    /// A transaction step that puts `item`, under `condition` if given.
    pub(super) fn put_op(&self, item: Item, condition: Option<Condition>) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some(cond) = condition {
            let values = cond.values();
            put = put
                .condition_expression(cond.expr)
                .set_expression_attribute_names(Some(cond.names))
                .set_expression_attribute_values(values);
        }
        let put = put.build().map_err(|_| build_error("TransactWriteItems"))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A transaction step that deletes the item at `key_item`.
    pub(super) fn delete_op(&self, key_item: Item) -> Result<TransactWriteItem, StoreError> {
        let del = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key_item))
            .build()
            .map_err(|_| build_error("TransactWriteItems"))?;
        Ok(TransactWriteItem::builder().delete(del).build())
    }
}
