//! WebSocket connections and who is behind them.

use serde::{Deserialize, Serialize};

use super::{AgentId, AgentRole, ConnectionId, SessionId, SiteId, VisitorId};
use crate::clock::Timestamp;

/// Who is behind a WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Principal {
    /// A visitor connected to their own session.
    #[serde(rename_all = "camelCase")]
    Visitor {
        /// The visitor's session.
        session_id: SessionId,
        /// The visitor.
        visitor_id: VisitorId,
    },
    /// An agent of the site.
    #[serde(rename_all = "camelCase")]
    Agent {
        /// The agent.
        agent_id: AgentId,
        /// The agent's role when the connection was opened.
        role: AgentRole,
        /// The token's expiry (epoch seconds), checked on every frame without
        /// verifying the token again. 0 on items stored before it was recorded:
        /// such a connection counts as expired and is asked to reconnect.
        #[serde(default)]
        token_exp: i64,
        /// The token's issue time (epoch seconds), checked on every frame against
        /// [`Agent::tokens_valid_after`].
        #[serde(default)]
        token_iat: i64,
    },
}

/// An open WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// API Gateway's connection id.
    pub id: ConnectionId,
    /// The site it belongs to.
    pub site_id: SiteId,
    /// Who is connected.
    pub principal: Principal,
    /// When it was opened.
    pub connected_at: Timestamp,
    /// When it is considered gone even if `$disconnect` never arrived (the TTL).
    pub expires_at: Timestamp,
}
