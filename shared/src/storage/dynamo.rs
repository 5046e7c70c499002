//! The DynamoDB single-table store.
//!
//! Every item is an [`Envelope`]: keys, kind, optional TTL and GSI keys, and the
//! domain record flattened beside them, (de)serialised with `serde_dynamo`.
//! Session items carry a `version` for optimistic concurrency: every write of a
//! session is conditional on the version it read, so concurrent senders never
//! lose a sequence number or a rate-limit count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::operation::scan::ScanError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, KeysAndAttributes, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, WriteRequest,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_dynamo::aws_sdk_dynamodb_1 as sd;

use super::memory::{apply_append, apply_prechat, apply_read, apply_touch};
use super::*;
use crate::domain::ConversationStatus;
use crate::policy::is_live;

type Item = HashMap<String, AttributeValue>;

/// Attempts for optimistic-concurrency loops before reporting a conflict.
const MAX_ATTEMPTS: u32 = 6;
/// BatchWriteItem's limit.
const BATCH_WRITE: usize = 25;
/// BatchGetItem's limit.
const BATCH_GET: usize = 100;
/// Sweeps of a fenced partition before an erasure gives up (and is retried).
/// After the fence nothing new can land, so the second sweep finds nothing;
/// the extra rounds only absorb transactions that were in flight at the fence.
const MAX_SWEEPS: u32 = 4;

/// How a transaction ended.
enum Transacted {
    Done,
    /// Cancelled; `failed` holds the indexes of the steps whose condition failed
    /// (empty when it was cancelled by a concurrent transaction).
    Cancelled {
        failed: Vec<usize>,
    },
}

pub(crate) fn backend_error(operation: &'static str, e: &impl ProvideErrorMetadata) -> StoreError {
    StoreError::Backend {
        operation,
        code: e.code().map(str::to_owned),
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
            other => backend_error($op, &other),
        }
    };
}

/// One stored item: keys and bookkeeping beside the flattened domain record.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    pk: String,
    sk: String,
    kind: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi3pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi3sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi4pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi4sk: Option<String>,
    #[serde(flatten)]
    data: T,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl<T> Envelope<T> {
    fn new(pk: String, sk: impl Into<String>, kind: &str, data: T) -> Self {
        Self {
            pk,
            sk: sk.into(),
            kind: kind.to_owned(),
            version: 0,
            ttl: None,
            gsi1pk: None,
            gsi1sk: None,
            gsi2pk: None,
            gsi2sk: None,
            gsi3pk: None,
            gsi3sk: None,
            gsi4pk: None,
            gsi4sk: None,
            data,
        }
    }

    fn ttl(mut self, at: Timestamp) -> Self {
        self.ttl = Some(at.epoch_seconds());
        self
    }
}

#[derive(Serialize, Deserialize)]
struct CmidData {
    seq: u64,
}

#[derive(Serialize, Deserialize)]
struct CheckpointData {
    value: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

fn encode<T: Serialize>(env: &Envelope<T>) -> Result<Item, StoreError> {
    sd::to_item(env).map_err(|_| StoreError::Corrupt { operation: "encode" })
}

fn decode<T: DeserializeOwned>(operation: &'static str, item: Item) -> Result<Envelope<T>, StoreError> {
    sd::from_item(item).map_err(|_| StoreError::Corrupt { operation })
}

fn attr_str<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn session_envelope(session: &Session, version: u64) -> Envelope<Session> {
    let id = session.id.as_str();
    let site = &session.site_id;
    let mut env = Envelope::new(
        keys::session_pk(&session.id),
        keys::SESSION_SK,
        "session",
        session.clone(),
    )
    .ttl(session.expires_at);
    env.version = version;
    env.gsi1pk = Some(keys::visitor_gsi1pk(site, &session.visitor_id));
    env.gsi1sk = Some(format!("{}#{id}", keys::ts(session.created_at)));
    if let (true, Some(last)) = (session.is_conversation(), session.last_activity_at) {
        env.gsi2pk = Some(keys::conversations_gsi2pk(site));
        env.gsi2sk = Some(format!("{}#{id}", keys::ts(last)));
    }
    if let Some(ip) = &session.ip {
        env.gsi3pk = Some(keys::ip_gsi3pk(site));
        env.gsi3sk = Some(format!("{}#{id}", keys::ts(ip.recorded_at)));
    }
    if let Some(lookup) = &session.email_lookup {
        env.gsi4pk = Some(keys::email_gsi4pk(site, lookup));
        env.gsi4sk = Some(id.to_owned());
    }
    env
}

fn connection_envelopes(conn: &Connection) -> (Envelope<Connection>, Envelope<Connection>) {
    let lookup = Envelope::new(
        keys::connection_pk(&conn.id),
        keys::CONNECTION_SK,
        "connection",
        conn.clone(),
    )
    .ttl(conn.expires_at);
    let membership = match &conn.principal {
        Principal::Visitor { session_id, .. } => Envelope::new(
            keys::session_pk(session_id),
            keys::member_sk(&conn.id),
            "membership",
            conn.clone(),
        ),
        Principal::Agent { .. } => Envelope::new(
            keys::site_pk(&conn.site_id),
            keys::agent_conn_sk(&conn.id),
            "agentOnline",
            conn.clone(),
        ),
    };
    (lookup, membership.ttl(conn.expires_at))
}

/// Cursors are a query's LastEvaluatedKey (string attributes only) as base64url
/// JSON. Decoding checks the key names and that it stays in the queried
/// partition, so a client cannot steer a query elsewhere.
fn encode_cursor(lek: Option<Item>) -> Option<String> {
    let lek = lek?;
    let map: BTreeMap<String, String> = lek
        .into_iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k, s.clone())))
        .collect();
    serde_json::to_vec(&map).ok().map(|j| B64.encode(j))
}

fn decode_cursor(
    cursor: Option<&str>,
    expected: &[&str],
    partition: Option<(&str, &str)>,
) -> Result<Option<Item>, StoreError> {
    let Some(c) = cursor else { return Ok(None) };
    let raw = B64.decode(c).map_err(|_| StoreError::InvalidCursor)?;
    let map: BTreeMap<String, String> = serde_json::from_slice(&raw).map_err(|_| StoreError::InvalidCursor)?;
    let names: BTreeSet<&str> = map.keys().map(String::as_str).collect();
    if names != expected.iter().copied().collect() {
        return Err(StoreError::InvalidCursor);
    }
    if let Some((attr, value)) = partition
        && map.get(attr).map(String::as_str) != Some(value)
    {
        return Err(StoreError::InvalidCursor);
    }
    Ok(Some(map.into_iter().map(|(k, v)| (k, s(v))).collect()))
}

/// A Query, described once and run page by page.
struct QuerySpec {
    index: Option<&'static str>,
    condition: String,
    names: HashMap<String, String>,
    values: Item,
    forward: bool,
}

impl QuerySpec {
    fn partition(index: Option<(&'static str, &'static str, &'static str)>, pk_value: String) -> Self {
        let (index, pk_attr) = match index {
            Some((name, p, _)) => (Some(name), p),
            None => (None, keys::PK),
        };
        Self {
            index,
            condition: "#p = :p".into(),
            names: HashMap::from([("#p".to_owned(), pk_attr.to_owned())]),
            values: HashMap::from([(":p".to_owned(), s(pk_value))]),
            forward: true,
        }
    }

    fn sort(mut self, attr: &str, op: &str, value: String) -> Self {
        self.condition.push_str(&format!(" AND {op}"));
        self.names.insert("#s".into(), attr.to_owned());
        self.values.insert(":s".into(), s(value));
        self
    }

    fn backward(mut self) -> Self {
        self.forward = false;
        self
    }
}

/// Sleeps before retry `attempt` of a batch (exponential with a small cap).
async fn backoff(attempt: u32) {
    let ms = 25u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// The DynamoDB store over one table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store over `table` using `client` (build the client once per process).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, key_item: Item, consistent: bool) -> Result<Option<Item>, StoreError> {
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

    async fn put(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify!("PutItem", e, PutItemError))?;
        Ok(())
    }

    async fn delete(&self, key_item: Item) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_item))
            .send()
            .await
            .map_err(|e| classify!("DeleteItem", e, DeleteItemError))?;
        Ok(())
    }

    async fn query_page(
        &self,
        q: &QuerySpec,
        start: Option<Item>,
        limit: Option<i32>,
        consistent: bool,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(q.index.map(str::to_owned))
            .key_condition_expression(&q.condition)
            .set_expression_attribute_names(Some(q.names.clone()))
            .set_expression_attribute_values(Some(q.values.clone()))
            .scan_index_forward(q.forward)
            .consistent_read(consistent && q.index.is_none())
            .set_exclusive_start_key(start)
            .set_limit(limit)
            .send()
            .await
            .map_err(|e| classify!("Query", e, QueryError))?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    async fn query_all(&self, q: &QuerySpec, consistent: bool) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let (mut page, next) = self.query_page(q, start, None, consistent).await?;
            items.append(&mut page);
            match next {
                Some(n) => start = Some(n),
                None => return Ok(items),
            }
        }
    }

    /// A page of a session-returning index query, with the cursor bound to its partition.
    async fn session_page(
        &self,
        q: QuerySpec,
        index: (&'static str, &'static str, &'static str),
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Session>, Option<String>), StoreError> {
        let pk_value = attr_str(&q.values, ":p").unwrap_or_default().to_owned();
        let start = decode_cursor(
            cursor,
            &[keys::PK, keys::SK, index.1, index.2],
            Some((index.1, &pk_value)),
        )?;
        let (items, lek) = self
            .query_page(&q, start, Some(clamp_limit(limit) as i32), false)
            .await?;
        let sessions = items
            .into_iter()
            .map(|i| decode::<Session>("Query", i).map(|e| e.data))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((sessions, encode_cursor(lek)))
    }

    /// Reads several items by key, consistently, retrying unprocessed keys.
    async fn batch_get(&self, keys_list: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys_list.chunks(BATCH_GET) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(|_| StoreError::Backend {
                        operation: "BatchGetItem",
                        code: Some("BuildError".into()),
                    })?;
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

    /// Deletes items by key in batches of 25, retrying `UnprocessedItems` with
    /// backoff; fails (never silently succeeds) if some remain.
    async fn batch_delete(&self, keys_list: Vec<Item>) -> Result<(), StoreError> {
        for chunk in keys_list.chunks(BATCH_WRITE) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|_| StoreError::Backend {
                            operation: "BatchWriteItem",
                            code: Some("BuildError".into()),
                        })
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
        }
        Ok(())
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        Ok(matches!(self.transact_outcome(items).await?, Transacted::Done))
    }

    /// Runs a transaction and says why it was cancelled, if it was.
    async fn transact_outcome(&self, items: Vec<TransactWriteItem>) -> Result<Transacted, StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Transacted::Done),
            Err(e) => match e.into_service_error() {
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
            },
        }
    }

    fn put_op(
        &self,
        item: Item,
        condition: Option<(&str, HashMap<String, String>, Item)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some((expr, names, values)) = condition {
            put = put
                .condition_expression(expr)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values((!values.is_empty()).then_some(values));
        }
        let put = put.build().map_err(|_| StoreError::Backend {
            operation: "TransactWriteItems",
            code: Some("BuildError".into()),
        })?;
        Ok(TransactWriteItem::builder().put(put).build())
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
            .map_err(|_| StoreError::Backend {
                operation: "TransactWriteItems",
                code: Some("BuildError".into()),
            })?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Writes `ops` plus the session check, retrying transaction conflicts;
    /// [`StoreError::NotFound`] if the session is gone or fenced.
    async fn write_into_session(&self, session: &SessionId, ops: Vec<TransactWriteItem>) -> Result<(), StoreError> {
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

    fn delete_op(&self, key_item: Item) -> Result<TransactWriteItem, StoreError> {
        let del = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key_item))
            .build()
            .map_err(|_| StoreError::Backend {
                operation: "TransactWriteItems",
                code: Some("BuildError".into()),
            })?;
        Ok(TransactWriteItem::builder().delete(del).build())
    }

    fn not_exists() -> (&'static str, HashMap<String, String>, Item) {
        (
            "attribute_not_exists(#pk)",
            HashMap::from([("#pk".to_owned(), keys::PK.to_owned())]),
            HashMap::new(),
        )
    }

    fn version_is(v: u64) -> (&'static str, HashMap<String, String>, Item) {
        (
            "#ver = :ver",
            HashMap::from([("#ver".to_owned(), "version".to_owned())]),
            HashMap::from([(":ver".to_owned(), n(v))]),
        )
    }

    /// A session with the version it was read at, whether live or not.
    async fn session_versioned(&self, id: &SessionId) -> Result<Option<(Session, u64)>, StoreError> {
        match self.get(key(keys::session_pk(id), keys::SESSION_SK), true).await? {
            None => Ok(None),
            Some(item) => {
                let env = decode::<Session>("GetItem", item)?;
                Ok(Some((env.data, env.version)))
            }
        }
    }

    /// Writes a session if its version is still `version`; `false` if it moved on.
    async fn write_session(&self, session: &Session, version: u64) -> Result<bool, StoreError> {
        let item = encode(&session_envelope(session, version + 1))?;
        let (expr, names, values) = Self::version_is(version);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
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

    /// Read-modify-write of a live session under optimistic concurrency.
    async fn update_session<R>(
        &self,
        id: &SessionId,
        now: Timestamp,
        mut change: impl FnMut(&mut Session) -> R,
    ) -> Result<(Session, R), StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut session, version)) = self.session_versioned(id).await? else {
                return Err(StoreError::NotFound);
            };
            if !session.is_usable(now) {
                return Err(StoreError::NotFound);
            }
            let r = change(&mut session);
            if self.write_session(&session, version).await? {
                return Ok((session, r));
            }
        }
        Err(StoreError::Conflict)
    }

    async fn connections_in(&self, q: QuerySpec, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        self.query_all(&q, true)
            .await?
            .into_iter()
            .map(|i| decode::<Connection>("Query", i).map(|e| e.data))
            .filter(|c| c.as_ref().map_or(true, |c| is_live(c.expires_at, now)))
            .collect()
    }
}

#[async_trait]
impl SiteStore for DynamoStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        let mut env = Envelope::new(keys::site_pk(&site.id), keys::SITE_SK, "site", site.clone());
        env.gsi1pk = Some(keys::SITES_GSI1PK.to_owned());
        env.gsi1sk = Some(site.id.to_string());
        self.put(encode(&env)?).await
    }

    async fn get_site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        self.get(key(keys::site_pk(id), keys::SITE_SK), false)
            .await?
            .map(|i| decode::<Site>("GetItem", i).map(|e| e.data))
            .transpose()
    }

    async fn list_sites(&self, cursor: Option<&str>, limit: u32) -> Result<Page<Site>, StoreError> {
        let (_, p, sk) = keys::GSI1;
        let start = decode_cursor(cursor, &[keys::PK, keys::SK, p, sk], Some((p, keys::SITES_GSI1PK)))?;
        let q = QuerySpec::partition(Some(keys::GSI1), keys::SITES_GSI1PK.to_owned());
        let (items, lek) = self
            .query_page(&q, start, Some(clamp_limit(limit) as i32), false)
            .await?;
        let items = items
            .into_iter()
            .map(|i| decode::<Site>("Query", i).map(|e| e.data))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next: encode_cursor(lek),
        })
    }

    async fn put_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        let env = Envelope::new(
            keys::site_pk(&agent.site_id),
            keys::agent_sk(&agent.id),
            "agent",
            agent.clone(),
        );
        self.put(encode(&env)?).await
    }

    async fn get_agent(&self, site: &SiteId, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        self.get(key(keys::site_pk(site), keys::agent_sk(id)), false)
            .await?
            .map(|i| decode::<Agent>("GetItem", i).map(|e| e.data))
            .transpose()
    }

    async fn agent_and_site(
        &self,
        site: &SiteId,
        agent: &AgentId,
    ) -> Result<(Option<Agent>, Option<Site>), StoreError> {
        let pk = keys::site_pk(site);
        let items = self
            .batch_get(vec![key(pk.clone(), keys::agent_sk(agent)), key(pk, keys::SITE_SK)])
            .await?;
        let (mut found_agent, mut found_site) = (None, None);
        for item in items {
            if attr_str(&item, keys::SK) == Some(keys::SITE_SK) {
                found_site = Some(decode::<Site>("BatchGetItem", item)?.data);
            } else {
                found_agent = Some(decode::<Agent>("BatchGetItem", item)?.data);
            }
        }
        Ok((found_agent, found_site))
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let (expr, names, _) = Self::not_exists();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&session_envelope(session, 1))?))
            .condition_expression(expr)
            .set_expression_attribute_names(Some(names))
            .send()
            .await;
        result.map(|_| ()).map_err(
            |e| classify!("PutItem", e, PutItemError, ConditionalCheckFailedException => StoreError::AlreadyExists),
        )
    }

    async fn get_session(&self, id: &SessionId, now: Timestamp) -> Result<Option<Session>, StoreError> {
        Ok(self
            .session_versioned(id)
            .await?
            .map(|(s, _)| s)
            .filter(|s| s.is_usable(now)))
    }

    async fn touch_session(&self, id: &SessionId, touch: SessionTouch) -> Result<Session, StoreError> {
        Ok(self.update_session(id, touch.now, |s| apply_touch(s, touch)).await?.0)
    }

    async fn set_prechat(
        &self,
        id: &SessionId,
        prechat: &PreChat,
        email_lookup: Option<&str>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        Ok(self
            .update_session(id, now, |s| apply_prechat(s, prechat, email_lookup, now))
            .await?
            .0)
    }

    async fn mark_read(
        &self,
        id: &SessionId,
        role: AuthorRole,
        seq: u64,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        Ok(self.update_session(id, now, |s| apply_read(s, role, seq)).await?.0)
    }

    async fn set_status(
        &self,
        id: &SessionId,
        status: ConversationStatus,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        Ok(self.update_session(id, now, |s| s.status = status).await?.0)
    }
}

#[async_trait]
impl MessageStore for DynamoStore {
    async fn append_message(
        &self,
        msg: &NewMessage,
        now: Timestamp,
        rate: Option<RateLimit>,
    ) -> Result<Appended, StoreError> {
        let pk = keys::session_pk(&msg.session_id);
        let cmid_sk = keys::cmid_sk(msg.author.role, &msg.author.id, &msg.client_msg_id);
        for _ in 0..MAX_ATTEMPTS {
            // One consistent read of the session and the retry record together.
            let items = self
                .batch_get(vec![
                    key(pk.clone(), keys::SESSION_SK),
                    key(pk.clone(), cmid_sk.clone()),
                ])
                .await?;
            let mut session = None;
            let mut retry_of = None;
            for item in items {
                match attr_str(&item, keys::SK) {
                    Some(keys::SESSION_SK) => session = Some(decode::<Session>("BatchGetItem", item)?),
                    _ => retry_of = Some(decode::<CmidData>("BatchGetItem", item)?.data.seq),
                }
            }
            let Some(env) = session.filter(|e| e.data.is_usable(now) && e.data.site_id == msg.site_id) else {
                return Err(StoreError::NotFound);
            };
            if let Some(seq) = retry_of {
                // A retry: answer with the stored original (the only extra read, and only on retries).
                let item = self
                    .get(key(pk.clone(), keys::msg_sk(seq)), true)
                    .await?
                    .ok_or(StoreError::Corrupt {
                        operation: "append_message",
                    })?;
                return Ok(Appended {
                    message: decode::<Message>("GetItem", item)?.data,
                    duplicate: true,
                });
            }
            let (mut s, version) = (env.data, env.version);
            let seq = apply_append(&mut s, now, rate)?;
            let message = Message {
                session_id: msg.session_id.clone(),
                seq,
                author: msg.author.clone(),
                text: msg.text.clone(),
                client_msg_id: msg.client_msg_id.clone(),
                created_at: now,
            };
            let ops = vec![
                self.put_op(
                    encode(&session_envelope(&s, version + 1))?,
                    Some(Self::version_is(version)),
                )?,
                self.put_op(
                    encode(&Envelope::new(
                        pk.clone(),
                        keys::msg_sk(seq),
                        "message",
                        message.clone(),
                    ))?,
                    Some(Self::not_exists()),
                )?,
                self.put_op(
                    encode(&Envelope::new(
                        pk.clone(),
                        cmid_sk.clone(),
                        "clientMsgId",
                        CmidData { seq },
                    ))?,
                    Some(Self::not_exists()),
                )?,
            ];
            if self.transact(ops).await? {
                return Ok(Appended {
                    message,
                    duplicate: false,
                });
            }
            // Cancelled: a concurrent append or the same retry won; re-read and decide again.
            tracing::debug!(seq, "append lost a race, re-reading the session");
        }
        Err(StoreError::Conflict)
    }

    async fn list_messages(&self, session: &SessionId, after: u64, limit: u32) -> Result<MessagePage, StoreError> {
        let limit = clamp_limit(limit);
        let q = QuerySpec::partition(None, keys::session_pk(session)).sort(
            keys::SK,
            "#s BETWEEN :s AND :e",
            keys::msg_sk(after.saturating_add(1)),
        );
        let mut q = q;
        q.values.insert(":e".into(), s(keys::msg_sk(u64::MAX)));
        // One more than asked tells whether another page exists.
        let (items, _) = self.query_page(&q, None, Some(limit as i32 + 1), true).await?;
        let mut messages = items
            .into_iter()
            .map(|i| decode::<Message>("Query", i).map(|e| e.data))
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        Ok(MessagePage { messages, has_more })
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let (lookup, membership) = connection_envelopes(conn);
        let ops = vec![
            self.put_op(encode(&lookup)?, None)?,
            self.put_op(encode(&membership)?, None)?,
        ];
        match &conn.principal {
            // A visitor's membership lives in their session's partition: never behind an erasure.
            Principal::Visitor { session_id, .. } => self.write_into_session(session_id, ops).await,
            Principal::Agent { .. } => {
                if self.transact(ops).await? {
                    Ok(())
                } else {
                    Err(StoreError::Conflict)
                }
            }
        }
    }

    async fn get_connection(&self, id: &ConnectionId, now: Timestamp) -> Result<Option<Connection>, StoreError> {
        Ok(self
            .get(key(keys::connection_pk(id), keys::CONNECTION_SK), true)
            .await?
            .map(|i| decode::<Connection>("GetItem", i).map(|e| e.data))
            .transpose()?
            .filter(|c| is_live(c.expires_at, now)))
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let Some(item) = self
            .get(key(keys::connection_pk(id), keys::CONNECTION_SK), true)
            .await?
        else {
            return Ok(None);
        };
        let conn = decode::<Connection>("GetItem", item)?.data;
        let (lookup, membership) = connection_envelopes(&conn);
        let ops = vec![
            self.delete_op(key(lookup.pk, lookup.sk))?,
            self.delete_op(key(membership.pk, membership.sk))?,
        ];
        if self.transact(ops).await? {
            Ok(Some(conn))
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn join_conversation(
        &self,
        conn: &ConnectionId,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Connection, StoreError> {
        let c = self.get_connection(conn, now).await?.ok_or(StoreError::NotFound)?;
        if self.get_session(session, now).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        let env = Envelope::new(
            keys::session_pk(session),
            keys::member_sk(conn),
            "membership",
            c.clone(),
        )
        .ttl(c.expires_at);
        self.write_into_session(session, vec![self.put_op(encode(&env)?, None)?])
            .await?;
        Ok(c)
    }

    async fn conversation_connections(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Vec<Connection>, StoreError> {
        let q = QuerySpec::partition(None, keys::session_pk(session)).sort(
            keys::SK,
            "begins_with(#s, :s)",
            keys::MEMBER_PREFIX.to_owned(),
        );
        self.connections_in(q, now).await
    }

    async fn agent_connections(&self, site: &SiteId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        let q = QuerySpec::partition(None, keys::site_pk(site)).sort(
            keys::SK,
            "begins_with(#s, :s)",
            keys::AGENT_CONN_PREFIX.to_owned(),
        );
        self.connections_in(q, now).await
    }
}

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
        let q = QuerySpec::partition(Some(keys::GSI2), keys::conversations_gsi2pk(site)).backward();
        let (sessions, next) = self.session_page(q, keys::GSI2, cursor, limit).await?;
        let items = sessions
            .into_iter()
            .filter(|s| s.is_usable(now) && status.is_none_or(|st| s.status == st))
            .collect();
        Ok(Page { items, next })
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
            .expression_attribute_names("#ver", "version")
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
            let items = self.query_all(&QuerySpec::partition(None, pk.clone()), true).await?;
            let mut deletes = Vec::new();
            for item in items {
                let sk = attr_str(&item, keys::SK).unwrap_or_default().to_owned();
                if sk == keys::SESSION_SK {
                    continue;
                }
                let kind = attr_str(&item, keys::KIND).unwrap_or("unknown").to_owned();
                if kind == "membership" {
                    let conn = decode::<Connection>("Query", item)?.data;
                    // A visitor's own connection goes with their session; an agent's stays.
                    if matches!(conn.principal, Principal::Visitor { .. }) {
                        let lookup = key(keys::connection_pk(&conn.id), keys::CONNECTION_SK);
                        if self.get(lookup.clone(), true).await?.is_some() {
                            counts.add("connection", 1);
                        }
                        deletes.push(lookup);
                    }
                }
                counts.add(&kind, 1);
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
            counts.add("session", 1);
        }
        for job in keys::JOBS {
            if self
                .get_checkpoint(job)
                .await?
                .is_some_and(|raw| checkpoint_mentions(&raw, id.as_str()))
            {
                self.put_checkpoint(job, None).await?;
            }
        }
        tracing::info!(items = counts.total(), "session erased");
        Ok(counts)
    }
}

impl DynamoStore {
    /// A page of an index partition whose sort keys start with a timestamp, before `before`, oldest first.
    async fn sessions_before(
        &self,
        index: (&'static str, &'static str, &'static str),
        pk: String,
        before: Timestamp,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Session>, StoreError> {
        let q = QuerySpec::partition(Some(index), pk).sort(index.2, "#s < :s", keys::ts(before));
        let (items, next) = self.session_page(q, index, cursor, limit).await?;
        Ok(Page { items, next })
    }

    async fn sessions_by_index(
        &self,
        index: (&'static str, &'static str, &'static str),
        pk: String,
    ) -> Result<Vec<Session>, StoreError> {
        self.query_all(&QuerySpec::partition(Some(index), pk), false)
            .await?
            .into_iter()
            .map(|i| decode::<Session>("Query", i).map(|e| e.data))
            .collect()
    }
}

#[async_trait]
impl SubjectStore for DynamoStore {
    async fn session_any(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.session_versioned(id).await?.map(|(s, _)| s))
    }

    async fn sessions_of_visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Vec<Session>, StoreError> {
        self.sessions_by_index(keys::GSI1, keys::visitor_gsi1pk(site, visitor))
            .await
    }

    async fn sessions_by_email(&self, site: &SiteId, email_lookup: &str) -> Result<Vec<Session>, StoreError> {
        let mut v = self
            .sessions_by_index(keys::GSI4, keys::email_gsi4pk(site, email_lookup))
            .await?;
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(v)
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
        self.sessions_before(keys::GSI2, keys::conversations_gsi2pk(site), before, cursor, limit)
            .await
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
        let start = decode_cursor(cursor, &[keys::PK, keys::SK], None)?;
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(#sk, :msg) OR begins_with(#sk, :cmid)")
            .projection_expression("#pk, #sk, #kind")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_names("#kind", keys::KIND)
            .expression_attribute_values(":msg", s(keys::MSG_PREFIX))
            .expression_attribute_values(":cmid", s("CMID#"))
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
            next: encode_cursor(out.last_evaluated_key),
        })
    }

    async fn delete_orphans(&self, orphans: &[Orphan]) -> Result<u64, StoreError> {
        // Re-check: a session may have been created under the same partition since the scan (ids are random, but be exact).
        let existing = self.existing_sessions(orphans).await?;
        let keys_list: Vec<Item> = orphans
            .iter()
            .filter(|o| !existing.contains(&o.pk) && o.pk.starts_with("SESS#"))
            .map(|o| key(o.pk.clone(), o.sk.clone()))
            .collect();
        let n = keys_list.len() as u64;
        self.batch_delete(keys_list).await?;
        Ok(n)
    }

    async fn get_checkpoint(&self, job: &str) -> Result<Option<String>, StoreError> {
        self.get(key(keys::job_pk(job), keys::CHECKPOINT_SK), true)
            .await?
            .map(|i| decode::<CheckpointData>("GetItem", i).map(|e| e.data.value))
            .transpose()
    }

    async fn put_checkpoint(&self, job: &str, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(v) => {
                let env = Envelope::new(
                    keys::job_pk(job),
                    keys::CHECKPOINT_SK,
                    "checkpoint",
                    CheckpointData { value: v.to_owned() },
                );
                self.put(encode(&env)?).await
            }
            None => self.delete(key(keys::job_pk(job), keys::CHECKPOINT_SK)).await,
        }
    }
}

impl DynamoStore {
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
impl AuditStore for DynamoStore {
    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let env = Envelope::new(
            keys::audit_pk(&record.site_id),
            format!("{}#{}", keys::ts(record.at), record.id),
            "audit",
            record.clone(),
        )
        .ttl(record.expires_at);
        let (expr, names, _) = Self::not_exists();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&env)?))
            .condition_expression(expr)
            .set_expression_attribute_names(Some(names))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already recorded: appending the same record again is a no-op.
            Err(e) => {
                match classify!("PutItem", e, PutItemError, ConditionalCheckFailedException => StoreError::AlreadyExists)
                {
                    StoreError::AlreadyExists => Ok(()),
                    other => Err(other),
                }
            }
        }
    }

    async fn list_audit(
        &self,
        site: &SiteId,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let pk = keys::audit_pk(site);
        let start = decode_cursor(cursor, &[keys::PK, keys::SK], Some((keys::PK, &pk)))?;
        let q = QuerySpec::partition(None, pk).backward();
        let (items, lek) = self
            .query_page(&q, start, Some(clamp_limit(limit) as i32), false)
            .await?;
        let items = items
            .into_iter()
            .map(|i| decode::<AuditRecord>("Query", i).map(|e| e.data))
            .filter(|r| r.as_ref().map_or(true, |r| is_live(r.expires_at, now)))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next: encode_cursor(lek),
        })
    }
}

/// The sliding-window counter item's attribute holding the `i`-th most recent
/// admission time (milliseconds). Plain names keep the shifting update short;
/// no DynamoDB reserved word has a digit.
fn rate_slot(i: usize) -> String {
    format!("t{i}")
}

/// The update that admits one request: shifts every slot one place older
/// (`t(L-1) = t(L-2)`, ..., `t1 = t0`) and writes now into `t0`. Written oldest
/// slot first so that the result is the same whether operands are read before
/// the update (DynamoDB) or action by action.
fn rate_update_expression(limit: u32) -> String {
    let mut e = String::from("SET #ttl = :ttl, #kind = :kind");
    for i in (1..limit as usize).rev() {
        // A slot not written yet reads as 0, i.e. long out of any window; DynamoDB
        // refuses an update whose operand attribute is missing.
        e.push_str(&format!(",{}=if_not_exists({},:zero)", rate_slot(i), rate_slot(i - 1)));
    }
    e.push_str(",t0=:now");
    e
}

/// DynamoDB's limit on an expression's length.
#[cfg(test)]
const MAX_EXPRESSION_BYTES: usize = 4096;

fn rate_time(item: Option<&Item>, slot: &str) -> Option<Timestamp> {
    item?
        .get(slot)?
        .as_n()
        .ok()?
        .parse::<i64>()
        .ok()
        .map(Timestamp::from_millis)
}

#[async_trait]
impl RateLimitStore for DynamoStore {
    /// One conditional UpdateItem per hit, admitted or not: the condition
    /// admits the request only while the `limit`-th most recent admission is
    /// out of the window, and DynamoDB applies conditional writes to one item
    /// one at a time, so concurrent hits never admit more than the limit.
    async fn hit(&self, key_str: &str, limit: RateLimit, now: Timestamp) -> Result<RateDecision, StoreError> {
        let Some(last) = (limit.limit as usize).checked_sub(1) else {
            return Ok(limit.admit(&[], now));
        };
        let oldest = rate_slot(last);
        let cutoff = limit.cutoff(now);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::rate_pk(key_str), keys::RATE_SK)))
            .update_expression(rate_update_expression(limit.limit))
            .condition_expression(format!("attribute_not_exists({oldest}) OR {oldest} <= :cutoff"))
            .expression_attribute_names("#ttl", keys::TTL)
            .expression_attribute_names("#kind", keys::KIND)
            .expression_attribute_values(":ttl", n(limit.counter_expiry(now).epoch_seconds()))
            .expression_attribute_values(":kind", s("rate"))
            .expression_attribute_values(":now", n(now.millis()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":cutoff", n(cutoff.millis()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let times: Vec<Timestamp> = (0..=last)
                    .filter_map(|i| rate_time(out.attributes.as_ref(), &rate_slot(i)))
                    .collect();
                Ok(RateDecision::Allowed {
                    window_start: cutoff,
                    count: RateLimit::counted(&times, cutoff),
                })
            }
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(c) => {
                    // The refused request's wait: until the oldest counted admission leaves
                    // the window (the whole window if the old item did not come back).
                    let retry_after = rate_time(c.item(), &oldest)
                        .map(|t| now.until(t.plus(limit.window)))
                        .filter(|d| !d.is_zero())
                        .unwrap_or(limit.window);
                    Ok(RateDecision::Limited { retry_after })
                }
                UpdateItemError::ProvisionedThroughputExceededException(_)
                | UpdateItemError::RequestLimitExceeded(_)
                | UpdateItemError::ThrottlingException(_) => Err(StoreError::Throttled {
                    operation: "UpdateItem",
                }),
                other => Err(backend_error("UpdateItem", &other)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::MAX_SLIDING_LIMIT;

    #[test]
    fn the_largest_rate_update_fits_dynamodbs_expression_limit() {
        let e = rate_update_expression(MAX_SLIDING_LIMIT);
        assert!(e.len() < MAX_EXPRESSION_BYTES, "{} bytes", e.len());
        assert_eq!(
            rate_update_expression(3),
            "SET #ttl = :ttl, #kind = :kind,t2=if_not_exists(t1,:zero),t1=if_not_exists(t0,:zero),t0=:now"
        );
        assert_eq!(rate_update_expression(1), "SET #ttl = :ttl, #kind = :kind,t0=:now");
    }
}
