//! Lambda glue for `retention`: configuration and clients at cold start, then the job.

use chat_core::clock::{Clock, SystemClock};
use chat_core::startup::{Started, cold_start};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = cold_start(&[]).await?;
    let Started { config, store, .. } = &started;
    let deps = retention::Deps {
        store,
        clock: &SystemClock,
        limit: &config.policy_limit,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deps = &deps;
        // An error fails the invocation, so the scheduler's retry policy and dead-letter queue apply.
        async move {
            let summary = retention::handle(event.payload, deps).await.map_err(|e| {
                // Logged where the job finishes (the error names a code, never data).
                tracing::error!(error = %e, "retention run failed");
                lambda_runtime::Error::from(e.to_string())
            })?;
            // A dry run changes nothing, so it reports no metric.
            if !summary.dry_run {
                chat_core::metrics::emit(&summary.metric_values(), SystemClock.now().millis());
            }
            Ok::<_, lambda_runtime::Error>(summary)
        }
    }))
    .await
}
