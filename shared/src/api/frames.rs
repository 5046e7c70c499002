//! Frames the server sends to WebSocket clients (see docs/protocol.md).

use serde::Serialize;

use crate::clock::Timestamp;
use crate::domain::{AuthorRole, ConversationStatus, Message, Session};

/// A message as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    /// The conversation.
    pub session_id: String,
    /// Sequence number (clients deduplicate and order by it).
    pub seq: u64,
    /// Author role.
    pub role: AuthorRole,
    /// Author id (visitor id or agent id).
    pub author_id: String,
    /// The text.
    pub text: String,
    /// The sender's id for it.
    pub client_msg_id: String,
    /// Server time, epoch milliseconds.
    pub created_at: Timestamp,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            session_id: m.session_id.to_string(),
            seq: m.seq,
            role: m.author.role,
            author_id: m.author.id.clone(),
            text: m.text.as_str().to_owned(),
            client_msg_id: m.client_msg_id.to_string(),
            created_at: m.created_at,
        }
    }
}

/// A conversation in an agent's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    /// The conversation (session) id.
    pub session_id: String,
    /// The visitor.
    pub visitor_id: String,
    /// Open or closed.
    pub status: ConversationStatus,
    /// Last message's sequence.
    pub last_seq: u64,
    /// Last message's time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity_at: Option<Timestamp>,
    /// Highest sequence an agent has read.
    pub agent_read_seq: u64,
    /// Highest sequence the visitor has read.
    pub visitor_read_seq: u64,
    /// Name from the pre-chat form, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl From<&Session> for ConversationView {
    fn from(s: &Session) -> Self {
        Self {
            session_id: s.id.to_string(),
            visitor_id: s.visitor_id.to_string(),
            status: s.status,
            last_seq: s.last_seq,
            last_activity_at: s.last_activity_at,
            agent_read_seq: s.agent_read_seq,
            visitor_read_seq: s.visitor_read_seq,
            name: s
                .prechat
                .as_ref()
                .and_then(|p| p.name.as_ref())
                .map(|n| n.as_str().to_owned()),
        }
    }
}

/// Every frame type the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerFrame {
    /// The sender's message is stored (also for a retry, with the same `seq`).
    #[serde(rename_all = "camelCase")]
    Ack {
        /// The sender's `clientMsgId`.
        #[serde(rename = "ref")]
        ref_id: String,
        /// The conversation.
        session_id: String,
        /// Its sequence.
        seq: u64,
        /// Server time.
        created_at: Timestamp,
        /// Whether it had been stored before.
        duplicate: bool,
    },
    /// A new message in a conversation.
    Message {
        /// The message.
        message: MessageView,
    },
    /// Someone started or stopped typing.
    #[serde(rename_all = "camelCase")]
    Typing {
        /// The conversation.
        session_id: String,
        /// Who.
        role: AuthorRole,
        /// Started (true) or stopped.
        is_typing: bool,
    },
    /// Someone has read up to `seq`.
    #[serde(rename_all = "camelCase")]
    Read {
        /// The conversation.
        session_id: String,
        /// Who.
        role: AuthorRole,
        /// Up to which message.
        seq: u64,
    },
    /// A page of history.
    #[serde(rename_all = "camelCase")]
    History {
        /// The conversation.
        session_id: String,
        /// Messages after the requested cursor, in order.
        messages: Vec<MessageView>,
        /// Whether more follow (ask again with `after` = last `seq`).
        has_more: bool,
        /// The visitor's read marker.
        visitor_read_seq: u64,
        /// The agents' read marker.
        agent_read_seq: u64,
    },
    /// A page of the site's conversations (agents).
    Conversations {
        /// Most recent activity first.
        items: Vec<ConversationView>,
        /// Cursor for the next page.
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// A conversation was deleted at the agent's request.
    #[serde(rename_all = "camelCase")]
    Deleted {
        /// The conversation.
        session_id: String,
        /// How many items were erased.
        items: u64,
    },
    /// The agent now receives this conversation's typing and read events too.
    #[serde(rename_all = "camelCase")]
    Joined {
        /// The conversation.
        conversation: ConversationView,
    },
}

impl ServerFrame {
    /// The frame as JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
