//! Lambda glue for `connect`: configuration and clients at cold start, then the handler.

use chat_core::clock::SystemClock;
use chat_core::config::Secret;
use chat_core::startup::{Started, cold_start};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = cold_start(&[Secret::AgentToken, Secret::PseudonymKey]).await?;
    let Started { config, store, .. } = &started;
    let deps = connect::Deps {
        store,
        clock: &SystemClock,
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<connect::Invocation>| {
        let (deps, started) = (&deps, &started);
        async move {
            // A rotated agent token secret reaches a warm function before its next token check.
            started.before_invocation().await;
            Ok::<_, std::convert::Infallible>(match event.payload {
                connect::Invocation::Authorize(a) => connect::Answer::Authorize(connect::authorize(*a, deps).await),
                connect::Invocation::Connect(c) => connect::Answer::Connect(connect::handle(*c, deps).await),
            })
        }
    }))
    .await
}
