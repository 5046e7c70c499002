//! Lambda glue for `message`: configuration and clients at cold start, then the handler.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use chat_core::clock::SystemClock;
use chat_core::config::Secret;
use chat_core::gateway::ManagementClients;
use chat_core::startup::{Started, cold_start};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = cold_start(&[Secret::PseudonymKey]).await?;
    let Started { config, sdk, store, .. } = &started;
    // One management client per API endpoint, built on first use and kept while warm.
    let gateways = ManagementClients::new(sdk.clone(), config.local.as_ref().and_then(|l| l.apigw.clone()));
    let deps = message::Deps {
        store,
        gateways: &gateways,
        clock: &SystemClock,
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let deps = &deps;
        async move { Ok::<_, std::convert::Infallible>(message::handle(event.payload, deps).await) }
    }))
    .await
}
