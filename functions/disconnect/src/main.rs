//! Lambda glue for `disconnect`: configuration and clients at cold start, then the handler.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use chat_core::config::Config;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (_config, _sdk, store) = Config::cold_start().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let store = &store;
        async move { Ok::<_, std::convert::Infallible>(disconnect::handle(event.payload, store).await) }
    }))
    .await
}
