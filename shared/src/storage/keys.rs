//! The single-table key scheme (documented in `docs/data-model.md`).
//!
//! Every item has `pk` and `sk`. Items that share a lifetime share a partition,
//! so one Query reaches them and one partition sweep erases them: a
//! conversation's session item, messages and connection memberships all live
//! under `SESS#<sessionId>`.

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

/// The `version` attribute of session items: every write of a session is
/// conditional on the version it read (optimistic concurrency).
pub const VERSION: &str = "version";

/// A global secondary index: its name and its key attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gsi {
    /// The index name.
    pub name: &'static str,
    /// Its partition key attribute.
    pub pk: &'static str,
    /// Its sort key attribute.
    pub sk: &'static str,
}

/// GSI1: a visitor's sessions; the site registry.
pub const GSI1: Gsi = Gsi {
    name: "gsi1",
    pk: "gsi1pk",
    sk: "gsi1sk",
};
/// GSI2: a site's conversations by when they began (the session's creation:
/// a key that never changes, so a message writes nothing to the index).
pub const GSI2: Gsi = Gsi {
    name: "gsi2",
    pk: "gsi2pk",
    sk: "gsi2sk",
};
/// GSI3: a site's sessions holding an IP, by the time it was recorded.
pub const GSI3: Gsi = Gsi {
    name: "gsi3",
    pk: "gsi3pk",
    sk: "gsi3sk",
};
/// GSI4: sessions by keyed hash of the pre-chat email.
pub const GSI4: Gsi = Gsi {
    name: "gsi4",
    pk: "gsi4pk",
    sk: "gsi4sk",
};

/// All global secondary indexes, as the table declares them. Each projects
/// only its keys: a write that leaves an item's index keys alone writes nothing
/// to the index, and readers fetch the items themselves (one BatchGetItem per
/// page).
pub const INDEXES: [Gsi; 4] = [GSI1, GSI2, GSI3, GSI4];

/// LSI1: a message by its author and `clientMsgId`, for recognising a retried
/// send with a consistent read (a local index can be read consistently, a
/// global one cannot). Only message items carry its key; it projects only keys.
pub const LSI1: &str = "lsi1";
/// LSI1's sort key attribute (its partition key is the table's `pk`).
pub const LSI1_SK: &str = "lsi1sk";

/// The `kind` attribute of each item type; also the names erasure counts and
/// the orphan sweep report.
pub mod kind {
    /// A site's settings.
    pub const SITE: &str = "site";
    /// An agent.
    pub const AGENT: &str = "agent";
    /// An agent's live connection in its site's partition.
    pub const AGENT_ONLINE: &str = "agentOnline";
    /// A visitor's session.
    pub const SESSION: &str = "session";
    /// A chat message.
    pub const MESSAGE: &str = "message";
    /// A connection's membership in a conversation.
    pub const MEMBERSHIP: &str = "membership";
    /// A connection's lookup item.
    pub const CONNECTION: &str = "connection";
    /// An audit record.
    pub const AUDIT: &str = "audit";
    /// A sliding-window rate counter.
    pub const RATE: &str = "rate";
    /// What erasing a conversation removes (its partition, and the visitor's
    /// connection lookups): the kinds every erase answer lists, zeros included.
    pub const ERASABLE: [&str; 4] = [SESSION, MESSAGE, MEMBERSHIP, CONNECTION];
    /// A job checkpoint.
    pub const CHECKPOINT: &str = "checkpoint";
}

/// Sortable fixed-width rendering of a timestamp (13 digits of milliseconds).
pub fn ts(t: Timestamp) -> String {
    format!("{:013}", t.millis().max(0))
}

/// A sort key ordered by time, made unique by an id: `<ts>#<id>`.
fn ts_id(t: Timestamp, id: &str) -> String {
    format!("{}#{id}", ts(t))
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

/// Prefix of a session's partition key.
pub const SESSION_PREFIX: &str = "SESS#";
/// A session's partition: session item, messages, memberships.
pub fn session_pk(session: &SessionId) -> String {
    format!("{SESSION_PREFIX}{session}")
}
/// Whether `pk` is a session's partition key.
pub fn is_session_pk(pk: &str) -> bool {
    pk.starts_with(SESSION_PREFIX)
}
/// The session whose partition key is `pk`, if it is one.
pub fn session_of_pk(pk: &str) -> Option<SessionId> {
    pk.strip_prefix(SESSION_PREFIX).and_then(|id| SessionId::parse(id).ok())
}
/// The session item's sort key.
pub const SESSION_SK: &str = "META";
/// Prefix of message items.
pub const MSG_PREFIX: &str = "MSG#";
/// A message's sort key (20-digit sequence, so sort order is sequence order).
pub fn msg_sk(seq: u64) -> String {
    format!("{MSG_PREFIX}{seq:020}")
}
/// The sequence number of a message's sort key, if `sk` is one.
pub fn msg_seq(sk: &str) -> Option<u64> {
    sk.strip_prefix(MSG_PREFIX)?.parse().ok()
}
/// A message's LSI1 sort key: its author and `clientMsgId`, unique in the conversation.
pub fn retry_key(role: AuthorRole, author_id: &str, id: &ClientMsgId) -> String {
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
/// GSI1 sort key of a session: its creation time.
pub fn visitor_gsi1sk(created_at: Timestamp, session: &SessionId) -> String {
    ts_id(created_at, session.as_str())
}
/// GSI2 partition of a site's conversations.
pub fn conversations_gsi2pk(site: &SiteId) -> String {
    format!("CONV#{site}")
}
/// GSI2 sort key of a conversation: when its session was created.
pub fn conversation_gsi2sk(created_at: Timestamp, session: &SessionId) -> String {
    ts_id(created_at, session.as_str())
}
/// GSI3 partition of a site's IP-holding sessions.
pub fn ip_gsi3pk(site: &SiteId) -> String {
    format!("IP#{site}")
}
/// GSI3 sort key of a session holding an IP: when the IP was recorded.
pub fn ip_gsi3sk(recorded_at: Timestamp, session: &SessionId) -> String {
    ts_id(recorded_at, session.as_str())
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
/// An audit record's sort key: time order, then the record's id.
pub fn audit_sk(at: Timestamp, id: &str) -> String {
    ts_id(at, id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let sid = SessionId::generate();
        assert_eq!(session_of_pk(&session_pk(&sid)), Some(sid.clone()));
        assert!(is_session_pk(&session_pk(&sid)));
        assert_eq!(session_of_pk("CONN#x"), None);
        assert_eq!(msg_seq(&msg_sk(42)), Some(42));
        assert_eq!(msg_seq("CMID#v#x#y"), None);
        assert_eq!(msg_sk(7), "MSG#00000000000000000007");
        assert_eq!(
            conversation_gsi2sk(Timestamp::from_millis(5), &sid),
            format!("0000000000005#{sid}")
        );
    }
}
