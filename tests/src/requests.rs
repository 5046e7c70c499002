//! Counting DynamoDB requests: an SDK interceptor ([`Recorder`]) that records
//! every operation a client sends, with its bodies and times, so tests can prove cost rules (no Scan on a
//! request path, a fixed number of requests per operation whatever the table
//! size).

use chat_core::storage::{DynamoStore, schema};

use crate::capacity::{Call, Recorder, Table};

/// Records every request (see [`Recorder`]); most tests only need the names.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Recorder);

impl RequestLog {
    /// Takes and clears what was recorded: the operation names, in order.
    pub fn take(&self) -> Vec<String> {
        self.0.take().into_iter().map(|c| c.op).collect()
    }

    /// Takes and clears what was recorded: every call with its bodies and times.
    pub fn take_calls(&self) -> Vec<Call> {
        self.0.take()
    }
}

/// A DynamoDB store on a new moto table whose client records every request.
pub async fn counted_store() -> (DynamoStore, RequestLog) {
    let (store, log, _) = counted_table().await;
    (store, log)
}

/// [`counted_store`], and the same table through a client that is not counted
/// (to read the table's contents and index definitions, [`Table`]).
pub async fn counted_table() -> (DynamoStore, RequestLog, Table) {
    counted_table_with(crate::moto::sdk_config().await).await
}

/// [`counted_table`] whose counted client reaches moto through a proxy that
/// adds `latency` to every request ([`crate::capacity::delayed_endpoint`]).
pub async fn counted_table_at_latency(latency: std::time::Duration) -> (DynamoStore, RequestLog, Table) {
    let sdk = crate::moto::sdk_config().await;
    let proxy = crate::capacity::delayed_endpoint(crate::moto::moto().endpoint(), latency).await;
    counted_table_with(sdk.to_builder().endpoint_url(proxy).build()).await
}

/// [`counted_table`] whose clients reach moto through `endpoint` (a proxy such
/// as [`crate::faults::proxy`]).
pub async fn counted_table_via(endpoint: String) -> (DynamoStore, RequestLog, Table) {
    let sdk = crate::moto::sdk_config().await;
    counted_table_with(sdk.to_builder().endpoint_url(endpoint).build()).await
}

async fn counted_table_with(sdk: aws_config::SdkConfig) -> (DynamoStore, RequestLog, Table) {
    let log = RequestLog::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(log.0.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    let table = crate::moto::unique_table("counted");
    schema::create_table(&client, &table)
        .await
        .expect("create table in moto");
    log.take();
    let raw = Table::new(aws_sdk_dynamodb::Client::new(&sdk), &table).await;
    (DynamoStore::new(client, table), log, raw)
}
