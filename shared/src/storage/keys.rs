//! The single-table key scheme (documented in `docs/data-model.md`).
//!
//! Every item has `pk` and `sk`. Items that share a lifetime share a partition,
//! so one Query reaches them and one partition sweep erases them: a
//! conversation's session item, messages, retry records and connection
//! memberships all live under `SESS#<sessionId>`.

use crate::clock::Timestamp;
use crate::domain::{AuthorRole, ClientMsgId, ConnectionId, SessionId, SiteId, VisitorId};

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// DynamoDB TTL attribute: epoch seconds.
pub const TTL: &str = "ttl";
/// Item kind attribute.
pub const KIND: &str = "kind";

/// GSI1: a visitor's sessions; the site registry.
pub const GSI1: (&str, &str, &str) = ("gsi1", "gsi1pk", "gsi1sk");
/// GSI2: a site's conversations by last activity.
pub const GSI2: (&str, &str, &str) = ("gsi2", "gsi2pk", "gsi2sk");
/// GSI3: a site's sessions holding an IP, by the time it was recorded.
pub const GSI3: (&str, &str, &str) = ("gsi3", "gsi3pk", "gsi3sk");
/// GSI4: sessions by keyed hash of the pre-chat email.
pub const GSI4: (&str, &str, &str) = ("gsi4", "gsi4pk", "gsi4sk");

/// All global secondary indexes: (name, partition attribute, sort attribute).
pub const GSIS: [(&str, &str, &str); 4] = [GSI1, GSI2, GSI3, GSI4];

/// Sortable fixed-width rendering of a timestamp (13 digits of milliseconds).
pub fn ts(t: Timestamp) -> String {
    format!("{:013}", t.millis().max(0))
}

/// A site's partition: the site item, its agents, its online agents.
pub fn site_pk(site: &SiteId) -> String {
    format!("SITE#{site}")
}
/// The site item's sort key.
pub const SITE_SK: &str = "SITE";
/// GSI1 partition listing every site.
pub const SITES_GSI1PK: &str = "SITES";
/// An agent item's sort key.
pub fn agent_sk(agent: &crate::domain::AgentId) -> String {
    format!("AGENT#{agent}")
}
/// Prefix of online-agent items in the site partition.
pub const AGENT_CONN_PREFIX: &str = "AGENTCONN#";
/// An online agent's item in the site partition.
pub fn agent_conn_sk(conn: &ConnectionId) -> String {
    format!("{AGENT_CONN_PREFIX}{conn}")
}

/// A session's partition: session item, messages, retry records, memberships.
pub fn session_pk(session: &SessionId) -> String {
    format!("SESS#{session}")
}
/// The session item's sort key.
pub const SESSION_SK: &str = "META";
/// Prefix of message items.
pub const MSG_PREFIX: &str = "MSG#";
/// A message's sort key (20-digit sequence, so sort order is sequence order).
pub fn msg_sk(seq: u64) -> String {
    format!("{MSG_PREFIX}{seq:020}")
}
/// A retry record's sort key: one per (author, clientMsgId).
pub fn cmid_sk(role: AuthorRole, author_id: &str, id: &ClientMsgId) -> String {
    let role = match role {
        AuthorRole::Visitor => "v",
        AuthorRole::Agent => "a",
        AuthorRole::System => "s",
    };
    format!("CMID#{role}#{author_id}#{id}")
}
/// Prefix of connection memberships in a session partition.
pub const MEMBER_PREFIX: &str = "CONN#";
/// A connection's membership in a conversation.
pub fn member_sk(conn: &ConnectionId) -> String {
    format!("{MEMBER_PREFIX}{conn}")
}
/// GSI1 partition of a visitor's sessions.
pub fn visitor_gsi1pk(site: &SiteId, visitor: &VisitorId) -> String {
    format!("VIS#{site}#{visitor}")
}
/// GSI2 partition of a site's conversations.
pub fn conversations_gsi2pk(site: &SiteId) -> String {
    format!("CONV#{site}")
}
/// GSI3 partition of a site's IP-holding sessions.
pub fn ip_gsi3pk(site: &SiteId) -> String {
    format!("IP#{site}")
}
/// GSI4 partition of an email lookup key.
pub fn email_gsi4pk(site: &SiteId, email_lookup: &str) -> String {
    format!("EMAIL#{site}#{email_lookup}")
}

/// A connection's lookup item (by connection id).
pub fn connection_pk(conn: &ConnectionId) -> String {
    format!("CONN#{conn}")
}
/// The lookup item's sort key.
pub const CONNECTION_SK: &str = "CONN";

/// A site's audit partition.
pub fn audit_pk(site: &SiteId) -> String {
    format!("AUDIT#{site}")
}
/// A rate-limit counter's partition; `key` is a keyed hash
/// ([`crate::auth::Pseudonymizer::ip_key`], [`crate::auth::Pseudonymizer::holder_key`]).
pub fn rate_pk(key: &str) -> String {
    format!("RATE#{key}")
}
/// The sliding-window counter's sort key (one item per key and limit).
pub const RATE_SK: &str = "WINDOW";
/// The retention job's checkpoint name.
pub const RETENTION_JOB: &str = "retention";
/// Every job that keeps a checkpoint (erasure resets one that names an erased session).
pub const JOBS: [&str; 1] = [RETENTION_JOB];
/// The session attribute set by an erasure's fence (`Session::erasing_since`).
pub const ERASING: &str = "erasingSince";
/// A job's checkpoint partition.
pub fn job_pk(job: &str) -> String {
    format!("JOB#{job}")
}
/// The checkpoint item's sort key.
pub const CHECKPOINT_SK: &str = "CHECKPOINT";
