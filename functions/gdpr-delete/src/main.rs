//! Lambda glue for `gdpr-delete`: configuration and clients at cold start, then the handler.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use chat_core::clock::SystemClock;
use chat_core::config::{Config, vars};
use chat_core::gateway::ManagementClients;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, sdk, store) = Config::cold_start().await?;
    // Erasure closes the subject's live connections, so it must know the WebSocket API.
    let override_endpoint = config.local.as_ref().and_then(|l| l.apigw.clone());
    let endpoint = override_endpoint
        .clone()
        .or_else(|| config.ws_management_endpoint.clone())
        .ok_or_else(|| {
            tracing::error!(var = vars::WS_MANAGEMENT_ENDPOINT, "refusing to start: not set");
            format!("{} is not set", vars::WS_MANAGEMENT_ENDPOINT)
        })?;
    let gateway = ManagementClients::new(sdk, override_endpoint).for_endpoint(&endpoint);
    let deps = gdpr_delete::Deps {
        store: &store,
        gateway: gateway.as_ref(),
        clock: &SystemClock,
        config: &config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let deps = &deps;
        async move { Ok::<_, std::convert::Infallible>(gdpr_delete::handle(event.payload, deps).await) }
    }))
    .await
}
