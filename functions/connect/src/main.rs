//! Lambda glue for `connect`: configuration and clients at cold start, then the handler.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use chat_core::clock::SystemClock;
use chat_core::config::Config;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, _sdk, store) = Config::cold_start().await?;
    let deps = connect::Deps {
        store: &store,
        clock: &SystemClock,
        config: &config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let deps = &deps;
        async move { Ok::<_, std::convert::Infallible>(connect::handle(event.payload, deps).await) }
    }))
    .await
}
