//! `$disconnect`: removes the connection's records. Best-effort by API Gateway's
//! design; records of connections never seen to disconnect expire by TTL.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use chat_core::api::ws::{self, WsRequest};
use chat_core::storage::ConnectionStore;

/// What the handler needs (the same shape as every function's `Deps`).
pub struct Deps<'a, S> {
    /// Connections.
    pub store: &'a S,
}

/// Handles one `$disconnect` (idempotent).
pub async fn handle<S: ConnectionStore>(
    event: ApiGatewayWebsocketProxyRequest,
    deps: &Deps<'_, S>,
) -> ApiGatewayProxyResponse {
    let req = WsRequest::new(&event);
    let Ok(id) = req.connection_id() else {
        return ws::status(400);
    };
    match deps.store.delete_connection(&id).await {
        Ok(found) => {
            tracing::info!(found = found.is_some(), "disconnected");
            ws::status(200)
        }
        Err(e) => {
            // The record expires by TTL anyway; report the failure for metrics.
            tracing::error!(error = %e, "could not delete connection");
            ws::status(500)
        }
    }
}
