//! Counting DynamoDB requests: an SDK interceptor that records the name of
//! every operation a client sends, so tests can prove cost rules (no Scan on a
//! request path, a fixed number of requests per operation whatever the table
//! size).

use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use chat_core::storage::{DynamoStore, schema};

/// Records operation names, in order.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<String>>>);

impl RequestLog {
    /// Takes and clears what was recorded.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    // Before transmit runs once per request on the wire, so SDK retries count too.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // DynamoDB's JSON protocol names the operation in this header: "DynamoDB_20120810.GetItem".
        let op = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(op);
        Ok(())
    }
}

/// A DynamoDB store on a new moto table whose client records every request.
pub async fn counted_store() -> (DynamoStore, RequestLog) {
    let sdk = crate::moto::sdk_config().await;
    let log = RequestLog::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(log.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    let table = crate::moto::unique_table("counted");
    schema::create_table(&client, &table)
        .await
        .expect("create table in moto");
    log.take();
    (DynamoStore::new(client, table), log)
}
