//! Connections: a lookup item by connection id, and a membership in the
//! visitor's session partition or the site's partition, written together.

use async_trait::async_trait;

use super::DynamoStore;
use super::item::{Envelope, connection_envelopes, encode, key, record};
use super::query::QuerySpec;
use crate::clock::Timestamp;
use crate::domain::{Connection, ConnectionId, Principal, SessionId, SiteId};
use crate::policy::is_live;
use crate::storage::keys::{self, kind};
use crate::storage::{ConnectionStore, SessionStore, StoreError};

impl DynamoStore {
    /// Live connections among a partition's items starting with `prefix`: one Query.
    async fn live_connections(
        &self,
        pk: String,
        prefix: &str,
        now: Timestamp,
        consistent: bool,
    ) -> Result<Vec<Connection>, StoreError> {
        let q = QuerySpec::table(pk).sort("begins_with(#s, :s)", prefix.to_owned());
        let all: Vec<Connection> = self.query_records(&q, consistent).await?;
        Ok(all.into_iter().filter(|c| is_live(c.expires_at, now)).collect())
    }

    /// A connection's lookup item, live or not.
    async fn connection_any(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        self.get(key(keys::connection_pk(id), keys::CONNECTION_SK), true)
            .await?
            .map(|i| record("GetItem", i))
            .transpose()
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let (lookup, membership) = connection_envelopes(conn);
        let ops = vec![
            self.put_op(encode(&lookup)?, None)?,
            self.put_op(encode(&membership)?, None)?,
        ];
        match &conn.principal {
            // A visitor's membership lives in their session's partition: never behind an erasure.
            Principal::Visitor { session_id, .. } => self.write_into_session(session_id, ops).await,
            Principal::Agent { .. } => {
                if self.transact(ops).await? {
                    Ok(())
                } else {
                    Err(StoreError::Conflict)
                }
            }
        }
    }

    async fn get_connection(&self, id: &ConnectionId, now: Timestamp) -> Result<Option<Connection>, StoreError> {
        Ok(self.connection_any(id).await?.filter(|c| is_live(c.expires_at, now)))
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let Some(conn) = self.connection_any(id).await? else {
            return Ok(None);
        };
        let (lookup, membership) = connection_envelopes(&conn);
        let ops = vec![self.delete_op(lookup.key())?, self.delete_op(membership.key())?];
        if self.transact(ops).await? {
            Ok(Some(conn))
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn join_conversation(
        &self,
        conn: &ConnectionId,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Connection, StoreError> {
        let c = self.get_connection(conn, now).await?.ok_or(StoreError::NotFound)?;
        if self.get_session(session, now).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        let env = Envelope::new(
            keys::session_pk(session),
            keys::member_sk(conn),
            kind::MEMBERSHIP,
            c.clone(),
        )
        .ttl(c.expires_at);
        self.write_into_session(session, vec![self.put_op(encode(&env)?, None)?])
            .await?;
        Ok(c)
    }

    async fn conversation_connections(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Vec<Connection>, StoreError> {
        self.live_connections(keys::session_pk(session), keys::MEMBER_PREFIX, now, true)
            .await
    }

    async fn agent_connections(&self, site: &SiteId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        self.live_connections(keys::site_pk(site), keys::AGENT_CONN_PREFIX, now, true)
            .await
    }

    async fn fan_out_targets(
        &self,
        session: &SessionId,
        site: Option<&SiteId>,
        now: Timestamp,
    ) -> Result<Vec<Connection>, StoreError> {
        let members = self.live_connections(keys::session_pk(session), keys::MEMBER_PREFIX, now, false);
        let agents = async {
            match site {
                Some(site) => {
                    self.live_connections(keys::site_pk(site), keys::AGENT_CONN_PREFIX, now, false)
                        .await
                }
                None => Ok(Vec::new()),
            }
        };
        let (members, agents) = futures::join!(members, agents);
        Ok(members?.into_iter().chain(agents?).collect())
    }
}
