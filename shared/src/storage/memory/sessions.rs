//! Sessions in memory: each change is one of [`Session`]'s own methods,
//! applied under the lock.

use async_trait::async_trait;

use super::MemoryStore;
use crate::clock::Timestamp;
use crate::domain::{Session, SessionChange, SessionId};
use crate::storage::{SessionStore, StoreError};

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut g = self.turn().await;
        if g.sessions.contains_key(&session.id) {
            return Err(StoreError::AlreadyExists);
        }
        g.sessions.insert(session.id.clone(), session.clone());
        Ok(())
    }

    async fn get_session(&self, id: &SessionId, now: Timestamp) -> Result<Option<Session>, StoreError> {
        Ok(self.turn().await.usable_session(id, now).cloned())
    }

    async fn change_session(
        &self,
        id: &SessionId,
        now: Timestamp,
        change: &SessionChange<'_>,
    ) -> Result<Session, StoreError> {
        let mut g = self.turn().await;
        let s = g.usable_session_mut(id, now)?;
        s.apply(change);
        Ok(s.clone())
    }
}
