//! The chat's domain model: validated identifiers and values, and the records
//! every function works with.
//!
//! Everything that arrives from outside (a widget, an agent console, a CLI) is
//! turned into one of these types through `parse` before it reaches business
//! logic or storage, so a malformed value is a typed [`ValidationError`] at the
//! edge and never a panic or a half-written item further in.
//!
//! One module per record, each with its rules as methods and its tests:
//! - `ids`: validated identifiers ([`SiteId`], [`SessionId`], ...) and [`Origin`].
//! - `text`: message text, email addresses and names (personal data, redacted in `Debug`).
//! - `site`: a [`Site`], its retention bounds, and its [`Agent`]s.
//! - `session`: a visitor's [`Session`] and its state changes (touch,
//!   pre-chat, read markers, append), which both stores call.
//! - `prechat`, `message`, `connection`, `audit`: the other records.
//!
//! This module imports only `clock`, `policy` and `random`; nothing here knows
//! about storage or authentication.

mod audit;
mod connection;
mod ids;
mod message;
mod prechat;
mod retention;
mod session;
mod site;
mod text;

pub use audit::{Actor, AuditAction, AuditRecord};
pub use connection::{Connection, Principal};
pub use ids::{AgentId, ClientMsgId, ConnectionId, Origin, SessionId, SiteId, VisitorId};
pub use message::{Author, AuthorRole, Message};
pub use prechat::{Consent, PreChat};
pub use retention::{IpPolicy, RetentionPolicy};
pub use session::{ConversationStatus, MessageRateExceeded, Session, SessionChange, SessionTouch, StoredIp};
pub use site::{Agent, AgentRole, Site};
pub use text::{DEFAULT_MAX_MESSAGE_BYTES, Email, MessageText, PersonName};

/// Why a value from outside was refused. `field` names the input, never its value,
/// so the error can be shown to clients and logged without leaking personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    /// The input that was refused (e.g. `siteId`, `text`).
    pub field: &'static str,
    /// What is wrong with it, in words safe to show a client.
    pub reason: &'static str,
    /// Whether the value was refused for its size (maps to 413 / `payload_too_large`).
    pub too_large: bool,
}

impl ValidationError {
    /// A refusal for the named field.
    pub const fn new(field: &'static str, reason: &'static str) -> Self {
        Self {
            field,
            reason,
            too_large: false,
        }
    }

    /// A refusal because the value exceeds a size limit.
    pub const fn too_large(field: &'static str, reason: &'static str) -> Self {
        Self {
            field,
            reason,
            too_large: true,
        }
    }
}
