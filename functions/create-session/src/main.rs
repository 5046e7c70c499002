//! Lambda glue for `create-session`: configuration and clients at cold start, then the handler.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use chat_core::clock::SystemClock;
use chat_core::config::Secret;
use chat_core::startup::{Started, cold_start};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = cold_start(&[Secret::PseudonymKey]).await?;
    let Started { config, store, .. } = &started;
    let deps = create_session::Deps {
        store,
        clock: &SystemClock,
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let deps = &deps;
        async move { Ok::<_, std::convert::Infallible>(create_session::handle(event.payload, deps).await) }
    }))
    .await
}
