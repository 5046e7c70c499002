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
    // The configured execute-api endpoint when there is one: behind a custom domain
    // the request's `domainName` is that domain, where `/{stage}/@connections` does
    // not exist. Otherwise one client per request endpoint, built on first use.
    let fixed = config
        .local
        .as_ref()
        .and_then(|l| l.apigw.clone())
        .or_else(|| config.ws_management_endpoint.clone());
    let gateways = ManagementClients::new(sdk.clone(), fixed);
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
