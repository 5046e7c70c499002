//! Lambda glue for `connect`: configuration and clients at cold start, then the handler.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
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
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let (deps, started) = (&deps, &started);
        async move {
            // A rotated agent token secret reaches a warm function before its next token check.
            started.before_invocation().await;
            Ok::<_, std::convert::Infallible>(connect::handle(event.payload, deps).await)
        }
    }))
    .await
}
