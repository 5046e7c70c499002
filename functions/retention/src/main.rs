//! Lambda glue for `retention`: configuration and clients at cold start, then the job.

use chat_core::clock::SystemClock;
use chat_core::startup::{Started, cold_start};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = cold_start(&[]).await?;
    let Started { config, store, .. } = &started;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let limit = &config.policy_limit;
        // An error fails the invocation, so the scheduler's retry policy and dead-letter queue apply.
        async move {
            retention::handle(event.payload, store, &SystemClock, limit)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))
        }
    }))
    .await
}
