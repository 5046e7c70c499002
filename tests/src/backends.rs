//! The two store adapters behind one test interface.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chat_core::clock::Timestamp;
use chat_core::storage::{DynamoStore, MemoryStore, Store, keys, schema};

/// A store under test, plus what only a test may do to it.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The store type.
    type S: Store;
    /// The store.
    fn store(&self) -> &Self::S;
    /// Does what DynamoDB's TTL sweeper eventually does: deletes every item whose
    /// `ttl` is at or before `now`, with no cascade.
    async fn ttl_sweep(&self, now: Timestamp);
    /// A short name for messages.
    fn name(&self) -> &'static str;
    /// How many items of each kind are stored.
    async fn counts(&self) -> BTreeMap<String, usize>;
    /// Every stored item as text, read outside the store's own read paths (a raw
    /// Scan on DynamoDB), so residue checks do not trust the code they check.
    async fn raw_texts(&self) -> Vec<String>;
}

/// The in-memory adapter.
#[derive(Default)]
pub struct Memory(pub MemoryStore);

#[async_trait]
impl Backend for Memory {
    type S = MemoryStore;
    fn store(&self) -> &MemoryStore {
        &self.0
    }
    async fn ttl_sweep(&self, now: Timestamp) {
        self.0.purge_expired(now);
    }
    fn name(&self) -> &'static str {
        "memory"
    }
    async fn raw_texts(&self) -> Vec<String> {
        self.0.raw_texts()
    }
    async fn counts(&self) -> BTreeMap<String, usize> {
        self.0
            .item_counts()
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect()
    }
}

/// The DynamoDB adapter on a fresh table in moto.
pub struct Dynamo(pub DynamoStore);

impl Dynamo {
    /// A DynamoDB store over a new table created from the shared schema.
    pub async fn new() -> Self {
        let client = aws_sdk_dynamodb::Client::new(&crate::moto::sdk_config().await);
        let table = crate::moto::unique_table("eurochat");
        schema::create_table(&client, &table)
            .await
            .expect("create table in moto");
        Self(DynamoStore::new(client, table))
    }

    /// Every item in the table, read with the raw API outside the store code.
    pub async fn raw_items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .0
                .client()
                .scan()
                .table_name(self.0.table())
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return items,
            }
        }
    }
}

#[async_trait]
impl Backend for Dynamo {
    type S = DynamoStore;
    fn store(&self) -> &DynamoStore {
        &self.0
    }
    async fn ttl_sweep(&self, now: Timestamp) {
        for item in self.raw_items().await {
            let expired = item
                .get(keys::TTL)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|ttl| ttl <= now.epoch_seconds());
            if expired {
                self.0
                    .client()
                    .delete_item()
                    .table_name(self.0.table())
                    .key(keys::PK, item[keys::PK].clone())
                    .key(keys::SK, item[keys::SK].clone())
                    .send()
                    .await
                    .expect("delete expired item");
            }
        }
    }
    fn name(&self) -> &'static str {
        "dynamodb"
    }
    async fn raw_texts(&self) -> Vec<String> {
        self.raw_items().await.iter().map(|i| format!("{i:?}")).collect()
    }
    async fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for item in self.raw_items().await {
            let kind = item
                .get(keys::KIND)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            *counts.entry(kind).or_default() += 1;
        }
        counts
    }
}
