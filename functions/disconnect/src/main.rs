//! Lambda glue for `disconnect`: configuration and clients at cold start, then the handler.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use chat_core::startup::{Started, cold_start};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = cold_start(&[]).await?;
    let Started { store, .. } = &started;
    let deps = disconnect::Deps { store };
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let deps = &deps;
        async move { Ok::<_, std::convert::Infallible>(disconnect::handle(event.payload, deps).await) }
    }))
    .await
}
