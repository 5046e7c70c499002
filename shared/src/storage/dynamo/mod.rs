//! The DynamoDB single-table store.
//!
//! Layout: a small core and one module per capability trait.
//! - `client`: the SDK calls, their error mapping, batches and transactions.
//! - `item`: the item envelope (keys, kind, TTL, GSI keys beside the flattened
//!   domain record) and the session and connection items.
//! - `query`: partition queries over the table or a [`crate::storage::keys::Gsi`], and their cursors.
//! - `sites`, `sessions`, `messages`, `connections`, `conversations`,
//!   `subjects`, `retention`, `audit`, `rate`: one trait implementation each.
//!
//! Session items carry a `version` for optimistic concurrency: every write of a
//! session is conditional on the version it read, so concurrent senders never
//! lose a sequence number or a rate-limit count. What a write changes on a
//! session is one of [`crate::domain::Session`]'s methods, the same the
//! in-memory store calls.

use aws_sdk_dynamodb::Client;

mod audit;
mod client;
mod connections;
mod conversations;
mod item;
mod messages;
mod query;
mod rate;
mod retention;
mod sessions;
mod sites;
mod subjects;

pub(crate) use client::backend_error;

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
}
