//! Sending to WebSocket clients: the [`ConnectionGateway`] port, its API Gateway
//! Management API adapter, and a recording adapter for tests.
//!
//! API Gateway's management endpoint is per API and stage
//! (`https://{domain}/{stage}`), known only from a request's context, so
//! [`ManagementClients`] builds one client per endpoint on first use and reuses
//! it for every later invocation of the warm function.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;

use crate::domain::ConnectionId;

/// Why a frame could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The connection no longer exists (HTTP 410): delete its record.
    #[error("connection gone")]
    Gone,
    /// The frame exceeds API Gateway's limit.
    #[error("frame too large")]
    PayloadTooLarge,
    /// Anything else (throttling, permissions, network); `code` is the service's error code.
    #[error("post failed ({})", code.as_deref().unwrap_or("no code"))]
    Failed {
        /// The service's error code, if any.
        code: Option<String>,
    },
}

/// Delivers frames to connected WebSocket clients.
#[async_trait]
pub trait ConnectionGateway: Send + Sync {
    /// Sends one frame to one connection.
    async fn send(&self, to: &ConnectionId, frame: &[u8]) -> Result<(), GatewayError>;
    /// Closes a connection (e.g. after an erasure). Closing a gone connection succeeds.
    async fn close(&self, conn: &ConnectionId) -> Result<(), GatewayError>;
}

/// The API Gateway Management API client for one endpoint.
#[derive(Debug, Clone)]
pub struct ApiGatewayManagement {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayManagement {
    /// A client for `endpoint`, signed for the region in `sdk`.
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let conf = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build();
        Self {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(conf),
        }
    }
}

#[async_trait]
impl ConnectionGateway for ApiGatewayManagement {
    async fn send(&self, to: &ConnectionId, frame: &[u8]) -> Result<(), GatewayError> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(to.as_str())
            .data(Blob::new(frame.to_vec()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.into_service_error() {
                PostToConnectionError::GoneException(_) => GatewayError::Gone,
                PostToConnectionError::PayloadTooLargeException(_) => GatewayError::PayloadTooLarge,
                other => GatewayError::Failed {
                    code: other.code().map(str::to_owned),
                },
            }),
        }
    }

    async fn close(&self, conn: &ConnectionId) -> Result<(), GatewayError> {
        match self
            .client
            .delete_connection()
            .connection_id(conn.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                DeleteConnectionError::GoneException(_) => Ok(()),
                other => Err(GatewayError::Failed {
                    code: other.code().map(str::to_owned),
                }),
            },
        }
    }
}

/// Gives a handler the gateway for the API and stage a request came through.
pub trait GatewayFactory: Send + Sync {
    /// The gateway for a request's `domainName` and `stage`.
    fn for_request(&self, domain_name: &str, stage: &str) -> Arc<dyn ConnectionGateway>;
}

/// Management API clients, one per endpoint, built on first use.
#[derive(Debug)]
pub struct ManagementClients {
    sdk: aws_config::SdkConfig,
    endpoint_override: Option<String>,
    clients: Mutex<HashMap<String, Arc<ApiGatewayManagement>>>,
}

impl ManagementClients {
    /// Clients signed with `sdk`. With `endpoint_override` (local mode) every
    /// request's client points there instead of at the request's domain.
    pub fn new(sdk: aws_config::SdkConfig, endpoint_override: Option<String>) -> Self {
        Self {
            sdk,
            endpoint_override,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The management endpoint for a request's `domainName` and `stage`.
    pub fn endpoint(&self, domain_name: &str, stage: &str) -> String {
        match &self.endpoint_override {
            Some(e) => e.clone(),
            None => format!("https://{domain_name}/{stage}"),
        }
    }

    /// The client for a configured endpoint (functions outside the WebSocket API);
    /// the local override, if any, wins.
    pub fn for_endpoint(&self, endpoint: &str) -> Arc<ApiGatewayManagement> {
        self.cached(self.endpoint_override.clone().unwrap_or_else(|| endpoint.to_owned()))
    }

    /// The client for a request's `domainName` and `stage`.
    pub fn client(&self, domain_name: &str, stage: &str) -> Arc<ApiGatewayManagement> {
        self.cached(self.endpoint(domain_name, stage))
    }

    fn cached(&self, endpoint: String) -> Arc<ApiGatewayManagement> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            clients
                .entry(endpoint)
                .or_insert_with_key(|e| Arc::new(ApiGatewayManagement::new(&self.sdk, e))),
        )
    }
}

impl GatewayFactory for ManagementClients {
    fn for_request(&self, domain_name: &str, stage: &str) -> Arc<dyn ConnectionGateway> {
        self.client(domain_name, stage)
    }
}

/// A gateway that records what it is asked to do; for tests and handler checks.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    state: Mutex<RecordingState>,
}

#[derive(Debug, Default)]
struct RecordingState {
    sent: Vec<(ConnectionId, Vec<u8>)>,
    closed: Vec<ConnectionId>,
    endpoints: Vec<(String, String)>,
    gone: HashSet<ConnectionId>,
    failing: HashSet<ConnectionId>,
}

impl RecordingGateway {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, sends to `conn` fail with [`GatewayError::Gone`].
    pub fn mark_gone(&self, conn: &ConnectionId) {
        self.lock().gone.insert(conn.clone());
    }

    /// From now on, sends to `conn` fail with [`GatewayError::Failed`].
    pub fn mark_failing(&self, conn: &ConnectionId) {
        self.lock().failing.insert(conn.clone());
    }

    /// Frames delivered, in order.
    pub fn sent(&self) -> Vec<(ConnectionId, Vec<u8>)> {
        self.lock().sent.clone()
    }

    /// Frames delivered to `conn`, parsed as JSON.
    pub fn frames_to(&self, conn: &ConnectionId) -> Vec<serde_json::Value> {
        self.lock()
            .sent
            .iter()
            .filter(|(c, _)| c == conn)
            .filter_map(|(_, f)| serde_json::from_slice(f).ok())
            .collect()
    }

    /// The (domain name, stage) pairs handlers asked for a gateway for.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        self.lock().endpoints.clone()
    }

    /// Connections closed, in order.
    pub fn closed(&self) -> Vec<ConnectionId> {
        self.lock().closed.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecordingState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl ConnectionGateway for RecordingGateway {
    async fn send(&self, to: &ConnectionId, frame: &[u8]) -> Result<(), GatewayError> {
        let mut s = self.lock();
        if s.gone.contains(to) || s.closed.contains(to) {
            return Err(GatewayError::Gone);
        }
        if s.failing.contains(to) {
            return Err(GatewayError::Failed {
                code: Some("InternalServerError".into()),
            });
        }
        s.sent.push((to.clone(), frame.to_vec()));
        Ok(())
    }

    async fn close(&self, conn: &ConnectionId) -> Result<(), GatewayError> {
        self.lock().closed.push(conn.clone());
        Ok(())
    }
}

impl GatewayFactory for Arc<RecordingGateway> {
    fn for_request(&self, domain_name: &str, stage: &str) -> Arc<dyn ConnectionGateway> {
        self.lock().endpoints.push((domain_name.to_owned(), stage.to_owned()));
        Arc::clone(self) as Arc<dyn ConnectionGateway>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recording_gateway_reports_gone_and_closed_connections() {
        let g = RecordingGateway::new();
        let a = ConnectionId::parse("AAAA=").unwrap();
        let b = ConnectionId::parse("BBBB=").unwrap();
        g.send(&a, b"{}").await.unwrap();
        g.mark_gone(&b);
        assert_eq!(g.send(&b, b"{}").await, Err(GatewayError::Gone));
        g.close(&a).await.unwrap();
        assert_eq!(g.send(&a, b"{}").await, Err(GatewayError::Gone));
        assert_eq!(g.sent().len(), 1);
    }

    #[tokio::test]
    async fn management_clients_are_reused_per_endpoint() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let clients = ManagementClients::new(sdk, None);
        assert_eq!(
            clients.endpoint("abc.execute-api.eu-central-1.amazonaws.com", "prod"),
            "https://abc.execute-api.eu-central-1.amazonaws.com/prod"
        );
        let a = clients.client("d1", "prod");
        let b = clients.client("d1", "prod");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &clients.client("d2", "prod")));
    }
}
