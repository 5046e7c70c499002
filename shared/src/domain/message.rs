//! Chat messages and their authors.

use serde::{Deserialize, Serialize};

use super::{ClientMsgId, MessageText, SessionId};
use crate::clock::Timestamp;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorRole {
    /// The site's visitor.
    Visitor,
    /// One of the site's agents.
    Agent,
    /// eurochat itself (e.g. "an agent joined").
    System,
}

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Author {
    /// Visitor, agent or system.
    pub role: AuthorRole,
    /// The visitor id, agent id, or `system`.
    pub id: String,
}

/// A stored chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The conversation it belongs to.
    pub session_id: SessionId,
    /// Its place in the conversation's one total order, from 1.
    pub seq: u64,
    /// Who wrote it.
    pub author: Author,
    /// The text.
    pub text: MessageText,
    /// The sender's id for it, used to recognise retries.
    pub client_msg_id: ClientMsgId,
    /// When the server stored it.
    pub created_at: Timestamp,
}
