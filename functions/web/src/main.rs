//! Lambda glue for `web`: the WebSocket URL at cold start, then the handler. It
//! needs no table, no secret and no AWS client.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use web::{Deps, PUBLIC_WS_URL_VAR, PublicWsUrl, WebConfigError};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    chat_core::telemetry::init();
    let ws_url = std::env::var(PUBLIC_WS_URL_VAR)
        .map_err(|_| WebConfigError::Missing)
        .and_then(|v| PublicWsUrl::parse(&v))
        .inspect_err(|e| tracing::error!(error = %e, "refusing to start"))?;
    let deps = Deps { ws_url };
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let deps = &deps;
        async move { Ok::<_, std::convert::Infallible>(web::handle(&event.payload, deps)) }
    }))
    .await
}
