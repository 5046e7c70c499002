//! Messages in memory: the session's sequence, the retry index entry and the
//! message change together under one lock, as in DynamoDB's transaction.

use async_trait::async_trait;

use super::MemoryStore;
use crate::auth::access::Refusal;
use crate::clock::Timestamp;
use crate::domain::{Message, SessionId};
use crate::policy::RateLimit;
use crate::storage::{AgentGate, Appended, MessagePage, MessageStore, NewMessage, StoreError, clamp_limit, keys};

#[async_trait]
impl MessageStore for MemoryStore {
    async fn append_gated(
        &self,
        msg: &NewMessage,
        now: Timestamp,
        rate: Option<RateLimit>,
        gate: Option<&AgentGate>,
    ) -> Result<Result<Appended, Refusal>, StoreError> {
        let mut g = self.turn().await;
        let sid = &msg.session_id;
        // The same order as DynamoDB's: the gate first (a refused agent learns nothing
        // about the conversation), and before anything is written.
        let agent = match gate {
            Some(gate) => {
                let a = g.agents.get(&(gate.site.to_string(), gate.agent.to_string())).cloned();
                let s = g.sites.get(gate.site.as_str()).cloned();
                match gate.admit(a, s, now) {
                    Ok(ok) => Some(ok),
                    Err(refused) => return Ok(Err(refused)),
                }
            }
            None => None,
        };
        if g.usable_session(sid, now).is_none_or(|s| s.site_id != msg.site_id) {
            return Err(StoreError::NotFound);
        }
        let cmid = (
            sid.clone(),
            keys::retry_key(msg.author.role, &msg.author.id, &msg.client_msg_id),
        );
        if let Some(seq) = g.cmids.get(&cmid).copied() {
            let message = g
                .messages
                .get(&(sid.clone(), seq))
                .cloned()
                .ok_or(StoreError::Corrupt {
                    operation: "append_message",
                })?;
            return Ok(Ok(Appended {
                message,
                duplicate: true,
                agent,
            }));
        }
        let session = g.sessions.get_mut(sid).ok_or(StoreError::NotFound)?;
        let seq = session.append(now, rate)?;
        let message = Message {
            session_id: sid.clone(),
            seq,
            author: msg.author.clone(),
            text: msg.text.clone(),
            client_msg_id: msg.client_msg_id.clone(),
            created_at: now,
        };
        g.cmids.insert(cmid, seq);
        g.messages.insert((sid.clone(), seq), message.clone());
        Ok(Ok(Appended {
            message,
            duplicate: false,
            agent,
        }))
    }

    async fn list_messages(&self, session: &SessionId, after: u64, limit: u32) -> Result<MessagePage, StoreError> {
        let g = self.turn().await;
        let limit = clamp_limit(limit) as usize;
        let mut messages: Vec<Message> = g
            .messages
            .range((session.clone(), after.saturating_add(1))..=(session.clone(), u64::MAX))
            .take(limit + 1)
            .map(|(_, m)| m.clone())
            .collect();
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        Ok(MessagePage { messages, has_more })
    }
}
