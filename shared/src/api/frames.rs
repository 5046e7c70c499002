//! Frames the server sends to WebSocket clients (see docs/protocol.md), as types.
//!
//! An answer to a client's frame is sent with [`ServerFrame::reply_bytes`], which
//! adds the frame's `ref`; what others receive (fan-out) carries none.

use serde::Serialize;

use super::client_frames::{ACTIONS, CONVERSATION_PAGE, HISTORY_PAGE, PageLimit};
use crate::clock::Timestamp;
use crate::domain::{AuthorRole, ConversationStatus, Message, Session};

/// The protocol version this server speaks (docs/protocol.md). 1.1 only adds to
/// 1.0 (`ref`, `hello`, the stored message in `ack`, `authorName`), so the
/// WebSocket subprotocol stays `eurochat.v1`; a client learns the version from
/// the `hello` answer.
pub const PROTOCOL_VERSION: &str = "1.1";

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
    /// The agent's display name (`eurochat-admin put-agent --name`), on agents'
    /// messages as they are sent (`message`, `ack`); messages are stored without it,
    /// so `history` pages do not carry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
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
            author_name: None,
        }
    }
}

impl MessageView {
    /// The view with the author's display name.
    pub fn with_author_name(self, name: Option<String>) -> Self {
        Self {
            author_name: name,
            ..self
        }
    }
}

/// The limits a client should respect, as the `hello` answer states them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Largest frame (bytes of UTF-8 text) the gateway accepts.
    pub max_frame_bytes: usize,
    /// Largest message text, in bytes of UTF-8.
    pub max_text_bytes: usize,
    /// Messages a visitor may send per minute and conversation.
    pub visitor_messages_per_minute: u32,
    /// `history` page sizes.
    pub history_page: PageLimit,
    /// `listConversations` page sizes.
    pub conversations_page: PageLimit,
}

impl Limits {
    /// The limits of a deployment with this text limit and message rate.
    pub fn new(max_text_bytes: usize, visitor_messages_per_minute: u32) -> Self {
        Self {
            max_frame_bytes: super::MAX_FRAME_BYTES,
            max_text_bytes,
            visitor_messages_per_minute,
            history_page: HISTORY_PAGE,
            conversations_page: CONVERSATION_PAGE,
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
    /// The answer to `hello`: what this server speaks.
    Hello {
        /// [`PROTOCOL_VERSION`].
        protocol: &'static str,
        /// Every action it serves.
        actions: &'static [&'static str],
        /// Its limits.
        limits: Limits,
    },
    /// The sender's message is stored (also for a retry, with the same `seq`).
    /// Its `ref` (added by [`ServerFrame::reply_bytes`]) is the frame's `ref`, else
    /// the `clientMsgId`.
    #[serde(rename_all = "camelCase")]
    Ack {
        /// The conversation.
        session_id: String,
        /// Its sequence.
        seq: u64,
        /// Server time.
        created_at: Timestamp,
        /// Whether it had been stored before.
        duplicate: bool,
        /// The message as stored, so the sender renders it as everyone else sees it.
        message: MessageView,
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
        /// Cursor for the next page; `null` on the last page (always present,
        /// as in the GDPR export).
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
    /// The `hello` answer for a deployment with these limits.
    pub fn hello(limits: Limits) -> Self {
        Self::Hello {
            protocol: PROTOCOL_VERSION,
            actions: ACTIONS,
            limits,
        }
    }

    /// The frame as JSON bytes, as fan-out sends it (no `ref`).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The frame as the answer to a client's frame: with its `ref`, when it had one.
    pub fn reply_bytes(&self, ref_id: Option<&str>) -> Vec<u8> {
        let Some(r) = ref_id else {
            return self.to_bytes();
        };
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut o)) => {
                o.insert("ref".into(), r.into());
                serde_json::to_vec(&o).unwrap_or_default()
            }
            _ => self.to_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_echo_ref_and_fan_out_does_not() {
        let f = ServerFrame::Read {
            session_id: "ses_1".into(),
            role: AuthorRole::Agent,
            seq: 3,
        };
        let v: serde_json::Value = serde_json::from_slice(&f.reply_bytes(Some("r-1"))).unwrap();
        assert_eq!((v["type"].as_str(), v["ref"].as_str()), (Some("read"), Some("r-1")));
        let v: serde_json::Value = serde_json::from_slice(&f.to_bytes()).unwrap();
        assert!(v.get("ref").is_none());
    }

    #[test]
    fn next_is_null_on_the_last_page_and_hello_states_the_version() {
        let f = ServerFrame::Conversations {
            items: vec![],
            next: None,
        };
        assert_eq!(f.to_bytes(), br#"{"type":"conversations","items":[],"next":null}"#);
        let v: serde_json::Value =
            serde_json::from_slice(&ServerFrame::hello(Limits::new(4096, 30)).to_bytes()).unwrap();
        assert_eq!(v["protocol"], "1.1");
        assert_eq!(v["limits"]["maxFrameBytes"], 32 * 1024);
        assert_eq!(v["limits"]["historyPage"]["max"], 100);
        assert_eq!(v["actions"][0], "hello");
    }
}
