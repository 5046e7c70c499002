//! The item envelope: every stored item is its keys, kind, optional TTL and
//! GSI keys, and the domain record flattened beside them, (de)serialised with
//! `serde_dynamo`. The attribute names are the ones `keys` declares (a test
//! below holds the envelope's field names to them).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_dynamo::aws_sdk_dynamodb_1 as sd;

use crate::clock::Timestamp;
use crate::domain::{Connection, Principal, Session};
use crate::storage::StoreError;
use crate::storage::keys::{self, kind};

/// A raw DynamoDB item or key.
pub(super) type Item = HashMap<String, AttributeValue>;

/// One stored item: keys and bookkeeping beside the flattened domain record.
#[derive(Serialize, Deserialize)]
pub(super) struct Envelope<T> {
    pub pk: String,
    pub sk: String,
    pub kind: String,
    /// Session items only: the optimistic-concurrency version (absent is 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi4pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi4sk: Option<String>,
    /// Message items only: the author and `clientMsgId` ([`keys::LSI1`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsi1sk: Option<String>,
    #[serde(flatten)]
    pub data: T,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl<T> Envelope<T> {
    /// An item of `kind` at (`pk`, `sk`) holding `data`, without TTL or index keys.
    pub fn new(pk: String, sk: impl Into<String>, kind: &str, data: T) -> Self {
        Self {
            pk,
            sk: sk.into(),
            kind: kind.to_owned(),
            version: 0,
            ttl: None,
            gsi1pk: None,
            gsi1sk: None,
            gsi2pk: None,
            gsi2sk: None,
            gsi3pk: None,
            gsi3sk: None,
            gsi4pk: None,
            gsi4sk: None,
            lsi1sk: None,
            data,
        }
    }

    /// Sets the TTL (DynamoDB wants epoch seconds).
    pub fn ttl(mut self, at: Timestamp) -> Self {
        self.ttl = Some(at.epoch_seconds());
        self
    }

    /// The item's key.
    pub fn key(&self) -> Item {
        key(self.pk.clone(), self.sk.clone())
    }
}

/// A job checkpoint's data.
#[derive(Serialize, Deserialize)]
pub(super) struct CheckpointData {
    pub value: String,
}

/// A string attribute.
pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// An item's key.
pub(super) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

/// A string attribute of an item, if present.
pub(super) fn attr_str<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn encode<T: Serialize>(env: &Envelope<T>) -> Result<Item, StoreError> {
    sd::to_item(env).map_err(|_| StoreError::Corrupt { operation: "encode" })
}

pub(super) fn decode<T: DeserializeOwned>(operation: &'static str, item: Item) -> Result<Envelope<T>, StoreError> {
    sd::from_item(item).map_err(|_| StoreError::Corrupt { operation })
}

/// Decodes an item and keeps only the record (the common case).
pub(super) fn record<T: DeserializeOwned>(operation: &'static str, item: Item) -> Result<T, StoreError> {
    decode(operation, item).map(|e| e.data)
}

/// A session's item at `version`, with the index keys its state calls for:
/// GSI1 always, GSI2 once it is a conversation, GSI3 while it holds an IP,
/// GSI4 while it has an email lookup key.
pub(super) fn session_envelope(session: &Session, version: u64) -> Envelope<Session> {
    let (id, site) = (&session.id, &session.site_id);
    let mut env =
        Envelope::new(keys::session_pk(id), keys::SESSION_SK, kind::SESSION, session.clone()).ttl(session.expires_at);
    env.version = version;
    env.gsi1pk = Some(keys::visitor_gsi1pk(site, &session.visitor_id));
    env.gsi1sk = Some(keys::visitor_gsi1sk(session.created_at, id));
    if session.is_conversation() {
        env.gsi2pk = Some(keys::conversations_gsi2pk(site));
        env.gsi2sk = Some(keys::conversation_gsi2sk(session.created_at, id));
    }
    if let Some(ip) = &session.ip {
        env.gsi3pk = Some(keys::ip_gsi3pk(site));
        env.gsi3sk = Some(keys::ip_gsi3sk(ip.recorded_at, id));
    }
    if let Some(lookup) = &session.email_lookup {
        env.gsi4pk = Some(keys::email_gsi4pk(site, lookup));
        env.gsi4sk = Some(id.to_string());
    }
    env
}

/// A connection's two items: its lookup item, and its membership in the
/// visitor's conversation or the site's online agents. Both expire with it.
pub(super) fn connection_envelopes(conn: &Connection) -> (Envelope<Connection>, Envelope<Connection>) {
    let lookup = Envelope::new(
        keys::connection_pk(&conn.id),
        keys::CONNECTION_SK,
        kind::CONNECTION,
        conn.clone(),
    )
    .ttl(conn.expires_at);
    let membership = match &conn.principal {
        Principal::Visitor { session_id, .. } => Envelope::new(
            keys::session_pk(session_id),
            keys::member_sk(&conn.id),
            kind::MEMBERSHIP,
            conn.clone(),
        ),
        Principal::Agent { .. } => Envelope::new(
            keys::site_pk(&conn.site_id),
            keys::agent_conn_sk(&conn.id),
            kind::AGENT_ONLINE,
            conn.clone(),
        ),
    };
    (lookup, membership.ttl(conn.expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_writes_the_attribute_names_keys_declares() {
        let mut env =
            Envelope::new("p".into(), "s", "k", CheckpointData { value: "v".into() }).ttl(Timestamp::from_secs(1));
        env.version = 1;
        env.lsi1sk = Some("x".into());
        for slot in [
            &mut env.gsi1pk,
            &mut env.gsi1sk,
            &mut env.gsi2pk,
            &mut env.gsi2sk,
            &mut env.gsi3pk,
            &mut env.gsi3sk,
            &mut env.gsi4pk,
            &mut env.gsi4sk,
        ] {
            *slot = Some("x".into());
        }
        let item = encode(&env).unwrap();
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut expected = vec![
            keys::PK,
            keys::SK,
            keys::KIND,
            keys::VERSION,
            keys::TTL,
            keys::LSI1_SK,
            "value",
        ];
        expected.extend(keys::INDEXES.iter().flat_map(|g| [g.pk, g.sk]));
        expected.sort_unstable();
        assert_eq!(names, expected);
    }
}
