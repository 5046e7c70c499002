//! How the functions' `@connections` calls reach the sockets.
//!
//! By default the gateway hands a function's frame straight to the socket's
//! writer (the same rules as its `@connections` endpoint: a missing connection is
//! gone, a frame over API Gateway's limit is refused, a close says "Going
//! away"). Posting each frame over HTTP through the AWS SDK to its own endpoint
//! (signing included) was about two thirds of the gateway's CPU per message
//! (the loadgen profile in `infra/loadgen/README.md`). `--sdk-delivery` keeps
//! that path, the one the deployed functions use, for whoever wants to see the
//! real management client at work locally; the tests run both.

use std::sync::Arc;

use async_trait::async_trait;
use chat_core::domain::ConnectionId;
use chat_core::gateway::{ConnectionGateway, GatewayError, GatewayFactory};

use crate::events::MAX_POST_BYTES;
use crate::ws::{Connections, Outgoing};

/// Delivery straight to this gateway's sockets.
pub(crate) struct Direct(pub(crate) Arc<Connections>);

#[async_trait]
impl ConnectionGateway for Direct {
    async fn send(&self, to: &ConnectionId, frame: &[u8]) -> Result<(), GatewayError> {
        let conn = self.0.get(to.as_str()).ok_or(GatewayError::Gone)?;
        if frame.len() > MAX_POST_BYTES {
            return Err(GatewayError::PayloadTooLarge);
        }
        let out = match std::str::from_utf8(frame) {
            Ok(text) => Outgoing::Text(text.to_owned()),
            Err(_) => Outgoing::Binary(frame.to_vec()),
        };
        conn.tx.send(out).map_err(|_| GatewayError::Gone)
    }

    async fn close(&self, conn: &ConnectionId) -> Result<(), GatewayError> {
        if let Some(c) = self.0.remove(conn.as_str()) {
            let _ = c.tx.send(Outgoing::Close(1000, "Going away"));
        }
        Ok(())
    }
}

/// One [`Direct`] for every request: there is one API and one stage here.
pub(crate) struct DirectFactory(pub(crate) Arc<Direct>);

impl GatewayFactory for DirectFactory {
    fn for_request(&self, _domain_name: &str, _stage: &str) -> Arc<dyn ConnectionGateway> {
        self.0.clone()
    }
}
