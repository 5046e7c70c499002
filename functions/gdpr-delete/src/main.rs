//! Lambda glue for `gdpr-delete`: configuration and clients at cold start, then the handler.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use chat_core::clock::SystemClock;
use chat_core::config::{Secret, vars};
use chat_core::gateway::ManagementClients;
use chat_core::startup::{Started, cold_start};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = cold_start(&[Secret::AgentToken, Secret::PseudonymKey]).await?;
    let Started { config, sdk, store, .. } = &started;
    // Erasure closes the subject's live connections, so it must know the WebSocket API.
    let override_endpoint = config.local.as_ref().and_then(|l| l.apigw.clone());
    let endpoint = override_endpoint
        .clone()
        .or_else(|| config.ws_management_endpoint.clone())
        .ok_or_else(|| {
            tracing::error!(var = vars::WS_MANAGEMENT_ENDPOINT, "refusing to start: not set");
            format!("{} is not set", vars::WS_MANAGEMENT_ENDPOINT)
        })?;
    let gateway = ManagementClients::new(sdk.clone(), override_endpoint).for_endpoint(&endpoint);
    let deps = gdpr_delete::Deps {
        store,
        gateway: gateway.as_ref(),
        clock: &SystemClock,
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let (deps, started) = (&deps, &started);
        async move {
            // A rotated agent token secret reaches a warm function before its next token check.
            started.before_invocation().await;
            Ok::<_, std::convert::Infallible>(gdpr_delete::handle(event.payload, deps).await)
        }
    }))
    .await
}
