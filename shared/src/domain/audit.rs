//! The audit trail of GDPR and retention actions.

use serde::{Deserialize, Serialize};

use super::{AgentId, SiteId};
use crate::clock::Timestamp;

/// What an audit record documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// A GDPR export (Art. 15/20).
    GdprExport,
    /// A GDPR erasure (Art. 17).
    GdprErase,
    /// An agent deleted one conversation.
    ConversationDelete,
    /// The scheduled retention job ran.
    RetentionRun,
}

/// Who asked for an audited action. Agent ids are staff identifiers, kept for
/// accountability; visitors appear only as "the subject themself".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Actor {
    /// A site agent or admin.
    #[serde(rename_all = "camelCase")]
    Agent {
        /// The agent.
        agent_id: AgentId,
    },
    /// The data subject, with their own session token.
    Subject,
    /// The scheduled retention job.
    System,
}

/// A record of a GDPR or retention action. Holds no personal data: the subject
/// appears only as a keyed hash, so the record survives the erasure it documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Unique id (time-ordered within a site).
    pub id: String,
    /// The site concerned.
    pub site_id: SiteId,
    /// What was done.
    pub action: AuditAction,
    /// Keyed hash of the subject's id (see [`crate::auth::Pseudonymizer`]), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_hash: Option<String>,
    /// Who asked.
    pub actor: Actor,
    /// What was affected, by kind of item.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// When.
    pub at: Timestamp,
    /// Until when the record itself is kept.
    pub expires_at: Timestamp,
}
