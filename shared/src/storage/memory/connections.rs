//! Connections in memory: the lookup map plus a membership in the visitor's
//! conversation or in the site's online agents.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Inner, MemoryStore};
use crate::clock::Timestamp;
use crate::domain::{Connection, ConnectionId, Principal, SessionId, SiteId};
use crate::policy::is_live;
use crate::storage::{ConnectionStore, StoreError};

/// Whether a connection may be recorded: a visitor's only while their session
/// exists and is not fenced (the DynamoDB store checks the same in its transaction).
fn may_record(g: &Inner, conn: &Connection) -> bool {
    match &conn.principal {
        Principal::Visitor { session_id, .. } => g.sessions.get(session_id).is_some_and(|s| s.erasing_since.is_none()),
        Principal::Agent { .. } => true,
    }
}

/// Live connections keyed under `owner` (a session's recipients, a site's agents).
fn live_under<K: Ord + Clone>(map: &BTreeMap<(K, String), Connection>, owner: &K, now: Timestamp) -> Vec<Connection> {
    map.range((owner.clone(), String::new())..)
        .take_while(|((o, _), _)| o == owner)
        .filter(|(_, c)| is_live(c.expires_at, now))
        .map(|(_, c)| c.clone())
        .collect()
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let mut g = self.turn().await;
        if !may_record(&g, conn) {
            return Err(StoreError::NotFound);
        }
        let cid = conn.id.to_string();
        g.connections.insert(cid.clone(), conn.clone());
        match &conn.principal {
            Principal::Visitor { session_id, .. } => {
                g.members.insert((session_id.clone(), cid), conn.clone());
            }
            Principal::Agent { .. } => {
                g.agents_online.insert((conn.site_id.to_string(), cid), conn.clone());
            }
        }
        Ok(())
    }

    async fn get_connection(&self, id: &ConnectionId, now: Timestamp) -> Result<Option<Connection>, StoreError> {
        Ok(self
            .lock()
            .connections
            .get(id.as_str())
            .filter(|c| is_live(c.expires_at, now))
            .cloned())
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let mut g = self.turn().await;
        let Some(conn) = g.connections.remove(id.as_str()) else {
            return Ok(None);
        };
        match &conn.principal {
            Principal::Visitor { session_id, .. } => {
                g.members.remove(&(session_id.clone(), id.to_string()));
            }
            Principal::Agent { .. } => {
                g.agents_online.remove(&(conn.site_id.to_string(), id.to_string()));
            }
        }
        Ok(Some(conn))
    }

    async fn join_conversation(
        &self,
        conn: &ConnectionId,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Connection, StoreError> {
        let mut g = self.turn().await;
        let c = g
            .connections
            .get(conn.as_str())
            .filter(|c| is_live(c.expires_at, now))
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if g.usable_session(session, now).is_none() {
            return Err(StoreError::NotFound);
        }
        g.members.insert((session.clone(), conn.to_string()), c.clone());
        Ok(c)
    }

    async fn conversation_connections(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Vec<Connection>, StoreError> {
        Ok(live_under(&self.turn().await.members, session, now))
    }

    async fn agent_connections(&self, site: &SiteId, now: Timestamp) -> Result<Vec<Connection>, StoreError> {
        Ok(live_under(&self.turn().await.agents_online, &site.to_string(), now))
    }
}
