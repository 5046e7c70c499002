//! Sessions in memory: each change is one of [`Session`]'s own methods,
//! applied under the lock.

use async_trait::async_trait;

use super::MemoryStore;
use crate::clock::Timestamp;
use crate::domain::{AuthorRole, ConversationStatus, PreChat, Session, SessionId, SessionTouch};
use crate::storage::{SessionStore, StoreError};

impl MemoryStore {
    /// Applies `change` to a usable session and returns the result.
    async fn change_session(
        &self,
        id: &SessionId,
        now: Timestamp,
        change: impl FnOnce(&mut Session),
    ) -> Result<Session, StoreError> {
        let mut g = self.turn().await;
        let s = g.usable_session_mut(id, now)?;
        change(s);
        Ok(s.clone())
    }
}

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

    async fn touch_session(&self, id: &SessionId, touch: SessionTouch) -> Result<Session, StoreError> {
        self.change_session(id, touch.now, |s| s.touch(touch)).await
    }

    async fn set_prechat(
        &self,
        id: &SessionId,
        prechat: &PreChat,
        email_lookup: Option<&str>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        self.change_session(id, now, |s| s.record_prechat(prechat, email_lookup, now))
            .await
    }

    async fn mark_read(
        &self,
        id: &SessionId,
        role: AuthorRole,
        seq: u64,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        self.change_session(id, now, |s| s.mark_read(role, seq)).await
    }

    async fn set_status(
        &self,
        id: &SessionId,
        status: ConversationStatus,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        self.change_session(id, now, |s| s.status = status).await
    }
}
