//! Frames clients send over the WebSocket (docs/protocol.md, "Client → server
//! frames"), as types.
//!
//! A frame is read in three steps, each with its own refusal, so a client always
//! learns what was wrong and nothing is stored:
//!
//! 1. the bytes become a JSON object ([`super::ws::WsRequest::frame`]):
//!    `invalid_json` or `payload_too_large`;
//! 2. [`read`] takes its `ref` and its `action`, which picks a variant of
//!    [`ClientFrame`]: `unknown_action`, or `invalid_request` naming `ref` or
//!    `action`. Every payload field is a [`Field`], which keeps a value of the
//!    wrong type as [`Field::Invalid`] instead of failing, so no field is lost to
//!    serde's messages (they name no field) and step 2 cannot fail on a payload;
//! 3. `TryFrom` turns a payload into validated domain values (`invalid_request`
//!    or `payload_too_large`, naming the field). The message function runs this
//!    step only once it knows the sender: an agents-only action from a visitor is
//!    `forbidden` whatever its fields.
//!
//! [`ACTIONS`] and [`ClientFrame`] come from one list (the `client_frames!`
//! macro), so an action cannot be routed without a variant, nor a variant
//! exist without its route; the message function matches the enum exhaustively.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::json::Object;
use crate::domain::{ClientMsgId, ConversationStatus, MessageText, SessionId, ValidationError};
use crate::error::{ApiError, ErrorCode};

/// Default and largest `history` page.
pub const HISTORY_PAGE: PageLimit = PageLimit { default: 50, max: 100 };
/// Default and largest `listConversations` page.
pub const CONVERSATION_PAGE: PageLimit = PageLimit { default: 20, max: 50 };

/// How many items a page request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PageLimit {
    /// Used when the frame has no `limit`.
    pub default: u32,
    /// The largest `limit` accepted.
    pub max: u32,
}

impl PageLimit {
    /// `limit` checked against this range (1 to `max`), or the default.
    fn check(self, limit: Field<u64>) -> Result<u32, ValidationError> {
        match limit.optional("limit")? {
            None => Ok(self.default),
            Some(n) if (1..=u64::from(self.max)).contains(&n) => Ok(n as u32),
            Some(_) => Err(ValidationError::new("limit", "is out of range")),
        }
    }
}

/// One field of a client frame as sent: absent (or `null`), a value of the
/// expected type, or something else. Reading it never fails; the `TryFrom`
/// conversions decide, and name the field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Field<T> {
    /// Not in the frame, or `null`.
    #[default]
    Absent,
    /// A value of the expected type.
    Given(T),
    /// A value of another type.
    Invalid,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Any JSON value is accepted here; its type is judged below, per field.
        let v = Value::deserialize(d)?;
        if v.is_null() {
            return Ok(Self::Absent);
        }
        Ok(T::deserialize(v).map_or(Self::Invalid, Self::Given))
    }
}

/// The words a refusal of a field of this type uses.
pub trait Expected {
    /// Why a value of another type is refused.
    const REASON: &'static str;
}

impl Expected for String {
    const REASON: &'static str = "must be a string";
}

impl Expected for u64 {
    const REASON: &'static str = "must be a non-negative integer";
}

impl Expected for bool {
    const REASON: &'static str = "must be true or false";
}

impl<T: Expected> Field<T> {
    /// The value, or a refusal naming `name`.
    pub fn required(self, name: &'static str) -> Result<T, ValidationError> {
        self.optional(name)?.ok_or(ValidationError::new(name, "is required"))
    }

    /// The value if given, or a refusal naming `name` if of the wrong type.
    pub fn optional(self, name: &'static str) -> Result<Option<T>, ValidationError> {
        match self {
            Self::Absent => Ok(None),
            Self::Given(v) => Ok(Some(v)),
            Self::Invalid => Err(ValidationError::new(name, T::REASON)),
        }
    }
}

/// The `sessionId` a frame names, if any, as a session id.
fn session_id(f: Field<String>) -> Result<Option<SessionId>, ValidationError> {
    f.optional("sessionId")?.map(|s| SessionId::parse(&s)).transpose()
}

/// Declares [`ClientFrame`] and [`ACTIONS`] from one list of `"action" => Variant(Payload)`.
macro_rules! client_frames {
    ($( $(#[doc = $doc:literal])* $action:literal => $variant:ident($payload:ident), )*) => {
        /// A client frame, by its `action`.
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        #[serde(tag = "action")]
        pub enum ClientFrame {
            $( $(#[doc = $doc])* #[serde(rename = $action)] $variant($payload), )*
        }

        /// Every action, in the order declared: each is a route of the WebSocket
        /// API (`template.yaml`), next to `$connect`, `$disconnect` and `$default`.
        pub const ACTIONS: &[&str] = &[$($action),*];

        impl ClientFrame {
            /// The frame's `action`.
            pub fn action(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $action, )*
                }
            }
        }
    };
}

client_frames! {
    /// Which protocol version and limits the server has (answer: `hello`).
    "hello" => Hello(HelloFrame),
    /// A new message (answer: `ack`).
    "sendMessage" => SendMessage(SendMessageFrame),
    /// Started or stopped typing (no answer).
    "typing" => Typing(TypingFrame),
    /// A page of a conversation's messages (answer: `history`).
    "history" => History(HistoryFrame),
    /// Read up to a message (answer: `read`).
    "markRead" => MarkRead(MarkReadFrame),
    /// A page of the site's conversations, agents only (answer: `conversations`).
    "listConversations" => ListConversations(ListConversationsFrame),
    /// Follow a conversation's typing and read events, agents only (answer: `joined`).
    "join" => Join(ConversationFrame),
    /// Erase a conversation, agents only (answer: `deleted`).
    "deleteConversation" => DeleteConversation(ConversationFrame),
}

impl ClientFrame {
    /// Whether only agents may send it (a visitor gets `forbidden`).
    pub fn agents_only(&self) -> bool {
        match self {
            Self::ListConversations(_) | Self::Join(_) | Self::DeleteConversation(_) => true,
            Self::Hello(_) | Self::SendMessage(_) | Self::Typing(_) | Self::History(_) | Self::MarkRead(_) => false,
        }
    }
}

/// `hello`: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HelloFrame {}

/// `sendMessage` as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SendMessageFrame {
    /// The conversation (agents; a visitor's own if given).
    pub session_id: Field<String>,
    /// The sender's id for the message (retries reuse it).
    pub client_msg_id: Field<String>,
    /// The text.
    pub text: Field<String>,
}

/// A validated `sendMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    /// The conversation named, if any.
    pub session_id: Option<SessionId>,
    /// The sender's id for the message.
    pub client_msg_id: ClientMsgId,
    /// The text.
    pub text: MessageText,
}

/// The text limit is the deployment's (`EUROCHAT_MAX_MESSAGE_BYTES`), hence the pair.
impl TryFrom<(SendMessageFrame, usize)> for SendMessage {
    type Error = ValidationError;

    fn try_from((f, max_text_bytes): (SendMessageFrame, usize)) -> Result<Self, Self::Error> {
        // Checked in this order, as before the frames were typed: the first bad field is named.
        let client_msg_id = ClientMsgId::parse(&f.client_msg_id.required("clientMsgId")?)?;
        let text = MessageText::parse(&f.text.required("text")?, max_text_bytes)?;
        Ok(Self {
            session_id: session_id(f.session_id)?,
            client_msg_id,
            text,
        })
    }
}

/// `typing` as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TypingFrame {
    /// The conversation (agents).
    pub session_id: Field<String>,
    /// Started (true) or stopped.
    pub is_typing: Field<bool>,
}

/// A validated `typing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing {
    /// The conversation named, if any.
    pub session_id: Option<SessionId>,
    /// Started (true) or stopped.
    pub is_typing: bool,
}

impl TryFrom<TypingFrame> for Typing {
    type Error = ValidationError;

    fn try_from(f: TypingFrame) -> Result<Self, Self::Error> {
        let is_typing = f.is_typing.required("isTyping")?;
        Ok(Self {
            session_id: session_id(f.session_id)?,
            is_typing,
        })
    }
}

/// `history` as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HistoryFrame {
    /// The conversation (agents).
    pub session_id: Field<String>,
    /// Messages after this sequence (default 0).
    pub after: Field<u64>,
    /// Page size.
    pub limit: Field<u64>,
}

/// A validated `history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The conversation named, if any.
    pub session_id: Option<SessionId>,
    /// Messages after this sequence.
    pub after: u64,
    /// Page size, within [`HISTORY_PAGE`].
    pub limit: u32,
}

impl TryFrom<HistoryFrame> for History {
    type Error = ValidationError;

    fn try_from(f: HistoryFrame) -> Result<Self, Self::Error> {
        let after = f.after.optional("after")?.unwrap_or(0);
        let limit = HISTORY_PAGE.check(f.limit)?;
        Ok(Self {
            session_id: session_id(f.session_id)?,
            after,
            limit,
        })
    }
}

/// `markRead` as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MarkReadFrame {
    /// The conversation (agents).
    pub session_id: Field<String>,
    /// Read up to this sequence.
    pub seq: Field<u64>,
}

/// A validated `markRead`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkRead {
    /// The conversation named, if any.
    pub session_id: Option<SessionId>,
    /// Read up to this sequence.
    pub seq: u64,
}

impl TryFrom<MarkReadFrame> for MarkRead {
    type Error = ValidationError;

    fn try_from(f: MarkReadFrame) -> Result<Self, Self::Error> {
        let seq = f.seq.required("seq")?;
        Ok(Self {
            session_id: session_id(f.session_id)?,
            seq,
        })
    }
}

/// `listConversations` as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListConversationsFrame {
    /// `open` or `closed`; both if absent.
    pub status: Field<String>,
    /// Page size.
    pub limit: Field<u64>,
    /// The previous page's `next`.
    pub cursor: Field<String>,
}

/// A validated `listConversations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListConversations {
    /// The status asked for, if any.
    pub status: Option<ConversationStatus>,
    /// Page size, within [`CONVERSATION_PAGE`].
    pub limit: u32,
    /// The store's cursor, taken out of a [`ConversationCursor`] issued for this query.
    pub cursor: Option<String>,
}

impl TryFrom<ListConversationsFrame> for ListConversations {
    type Error = ValidationError;

    fn try_from(f: ListConversationsFrame) -> Result<Self, Self::Error> {
        let status = match f.status.optional("status")?.as_deref() {
            None => None,
            Some("open") => Some(ConversationStatus::Open),
            Some("closed") => Some(ConversationStatus::Closed),
            Some(_) => return Err(ValidationError::new("status", "must be open or closed")),
        };
        let limit = CONVERSATION_PAGE.check(f.limit)?;
        let cursor = f
            .cursor
            .optional("cursor")?
            .map(|c| ConversationCursor::open(&c, status))
            .transpose()?;
        Ok(Self { status, limit, cursor })
    }
}

/// The `next` of a `conversations` page: the store's cursor, bound to the query
/// (`listConversations` and its `status`) it continues. The store binds its own
/// cursors to the site; this binding refuses a cursor of another query
/// (another `status`, or a GDPR export cursor) with the same answer as a forged
/// one: `invalid_request`, `field: "cursor"`.
pub struct ConversationCursor;

impl ConversationCursor {
    const PREFIX: &'static str = "lc1.";

    fn tag(status: Option<ConversationStatus>) -> char {
        match status {
            None => 'a',
            Some(ConversationStatus::Open) => 'o',
            Some(ConversationStatus::Closed) => 'c',
        }
    }

    /// The cursor a client gets for the store's `next`.
    pub fn issue(status: Option<ConversationStatus>, store_next: Option<String>) -> Option<String> {
        store_next.map(|n| format!("{}{}.{n}", Self::PREFIX, Self::tag(status)))
    }

    /// The store's cursor inside `cursor`, if it was issued for `status`.
    pub fn open(cursor: &str, status: Option<ConversationStatus>) -> Result<String, ValidationError> {
        let inner = cursor
            .strip_prefix(Self::PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .filter(|(tag, inner)| !inner.is_empty() && tag.len() == 1 && tag.starts_with(Self::tag(status)));
        match inner {
            Some((_, inner)) => Ok(inner.to_owned()),
            None => Err(ValidationError::new("cursor", "is not a cursor of this query")),
        }
    }
}

/// `join` and `deleteConversation` as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConversationFrame {
    /// The conversation.
    pub session_id: Field<String>,
}

/// A validated `join` or `deleteConversation`: the conversation named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationTarget {
    /// The conversation, if named (agents must name it).
    pub session_id: Option<SessionId>,
}

impl TryFrom<ConversationFrame> for ConversationTarget {
    type Error = ValidationError;

    fn try_from(f: ConversationFrame) -> Result<Self, Self::Error> {
        Ok(Self {
            session_id: session_id(f.session_id)?,
        })
    }
}

/// A client's id for one request, echoed as `ref` by its answer or error:
/// 1-64 of `A-Za-z0-9-_.:` (the `clientMsgId` alphabet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRef(String);

impl FrameRef {
    /// Validates a `ref`.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        ClientMsgId::parse(s)
            .map(|_| Self(s.to_owned()))
            .map_err(|_| ValidationError::new("ref", "must be 1-64 of A-Za-z0-9-_.:"))
    }

    /// The ref.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A frame read: its payload, and the `ref` its answer echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The action and its fields, not validated yet.
    pub frame: ClientFrame,
    /// The frame's `ref`; without one, a `sendMessage`'s `clientMsgId` (as in protocol 1.0).
    pub echo: Option<FrameRef>,
}

/// A frame that could not be read, and the `ref` its error echoes if one could be read.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// The refusal.
    pub error: ApiError,
    /// The frame's `ref`, if it had a valid one.
    pub echo: Option<FrameRef>,
}

/// Reads a frame's `ref` and `action` and its payload's fields (step 2 of the module header).
pub fn read(o: Object) -> Result<Incoming, Unreadable> {
    let echo = match o.get("ref") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(FrameRef::parse(s).map_err(|e| Unreadable {
            error: e.into(),
            echo: None,
        })?),
        Some(_) => {
            return Err(Unreadable {
                error: ValidationError::new("ref", "must be a string").into(),
                echo: None,
            });
        }
    };
    // Protocol 1.0 clients match errors of `sendMessage` by its `clientMsgId`.
    let echo = echo.or_else(|| {
        o.get("clientMsgId")
            .and_then(Value::as_str)
            .and_then(|s| FrameRef::parse(s).ok())
    });
    let refuse = |error: ApiError| Unreadable {
        error,
        echo: echo.clone(),
    };
    match o.get("action") {
        Some(Value::String(a)) if ACTIONS.contains(&a.as_str()) => {}
        Some(Value::String(_)) => return Err(refuse(ApiError::new(ErrorCode::UnknownAction, "unknown action"))),
        None | Some(Value::Null) => return Err(refuse(ValidationError::new("action", "is required").into())),
        Some(_) => return Err(refuse(ValidationError::new("action", "must be a string").into())),
    }
    // Every payload field is a `Field`, so with a known action this cannot fail;
    // if it ever did, the client is told its frame was not understood.
    match serde_json::from_value::<ClientFrame>(Value::Object(o)) {
        Ok(frame) => Ok(Incoming { frame, echo }),
        Err(_) => Err(refuse(ApiError::new(ErrorCode::InvalidRequest, "frame not understood"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::parse_object;

    fn incoming(body: &str) -> Result<Incoming, Unreadable> {
        read(parse_object(body.as_bytes(), 32 * 1024).unwrap())
    }

    #[test]
    fn actions_and_variants_are_one_list() {
        assert_eq!(
            ACTIONS,
            [
                "hello",
                "sendMessage",
                "typing",
                "history",
                "markRead",
                "listConversations",
                "join",
                "deleteConversation"
            ]
        );
        for a in ACTIONS {
            let f = incoming(&format!(r#"{{"action":"{a}"}}"#)).unwrap().frame;
            assert_eq!(f.action(), *a);
        }
    }

    #[test]
    fn action_and_ref_are_read_first() {
        let code = |b: &str| incoming(b).unwrap_err().error;
        assert_eq!(code(r#"{"action":"fly"}"#).code, ErrorCode::UnknownAction);
        assert_eq!(code(r#"{"text":"x"}"#).field, Some("action"));
        assert_eq!(code(r#"{"action":5}"#).field, Some("action"));
        assert_eq!(code(r#"{"action":"typing","ref":7}"#).field, Some("ref"));
        assert_eq!(code(r#"{"action":"typing","ref":"no spaces"}"#).field, Some("ref"));
        let e = incoming(r#"{"action":"fly","ref":"r-1"}"#).unwrap_err();
        assert_eq!(e.echo.unwrap().as_str(), "r-1", "an unknown action's error echoes ref");
        let i = incoming(r#"{"action":"sendMessage","clientMsgId":"c-1"}"#).unwrap();
        assert_eq!(i.echo.unwrap().as_str(), "c-1", "1.0 clients: clientMsgId");
        let i = incoming(r#"{"action":"sendMessage","clientMsgId":"c-1","ref":"r-2"}"#).unwrap();
        assert_eq!(i.echo.unwrap().as_str(), "r-2", "ref wins");
    }

    #[test]
    fn fields_are_named_with_their_reason() {
        let ClientFrame::SendMessage(p) = incoming(r#"{"action":"sendMessage","clientMsgId":1,"text":"t"}"#)
            .unwrap()
            .frame
        else {
            panic!()
        };
        let e = SendMessage::try_from((p, 4096)).unwrap_err();
        assert_eq!((e.field, e.reason), ("clientMsgId", "must be a string"));
        let ClientFrame::History(p) = incoming(r#"{"action":"history","after":-1}"#).unwrap().frame else {
            panic!()
        };
        assert_eq!(History::try_from(p).unwrap_err().field, "after");
        let ClientFrame::History(p) = incoming(r#"{"action":"history","limit":101}"#).unwrap().frame else {
            panic!()
        };
        assert_eq!(History::try_from(p).unwrap_err().reason, "is out of range");
        let ClientFrame::Typing(p) = incoming(r#"{"action":"typing","isTyping":null}"#).unwrap().frame else {
            panic!()
        };
        assert_eq!(Typing::try_from(p).unwrap_err().reason, "is required");
        let ClientFrame::SendMessage(p) = incoming(r#"{"action":"sendMessage","clientMsgId":"x","text":"xxxx"}"#)
            .unwrap()
            .frame
        else {
            panic!()
        };
        assert!(SendMessage::try_from((p, 3)).unwrap_err().too_large);
    }

    #[test]
    fn cursors_are_bound_to_their_query() {
        let open = Some(ConversationStatus::Open);
        let next = ConversationCursor::issue(open, Some("c3RvcmU=".into())).unwrap();
        assert_eq!(ConversationCursor::open(&next, open).unwrap(), "c3RvcmU=");
        for (cursor, status) in [
            (next.as_str(), None),
            (next.as_str(), Some(ConversationStatus::Closed)),
            ("c3RvcmU=", open),
            ("lc1.o.", open),
            ("lc1.oo.x", open),
        ] {
            let e = ConversationCursor::open(cursor, status).unwrap_err();
            assert_eq!(e.field, "cursor", "{cursor} {status:?}");
        }
        assert_eq!(ConversationCursor::issue(None, None), None);
    }
}
