//! Lambda glue for `gdpr-export`: configuration and clients at cold start, then the handler.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use chat_core::clock::SystemClock;
use chat_core::config::Config;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, _sdk, store) = Config::cold_start().await?;
    let deps = gdpr_export::Deps {
        store: &store,
        clock: &SystemClock,
        config: &config,
        page_bytes: chat_core::gdpr::EXPORT_PAGE_BYTES,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let deps = &deps;
        async move { Ok::<_, std::convert::Infallible>(gdpr_export::handle(event.payload, deps).await) }
    }))
    .await
}
