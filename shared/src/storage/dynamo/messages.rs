//! Messages: an append is one round trip of two concurrent consistent reads
//! (the session, with the agent and its site for an agent; and LSI1 for the
//! author's `clientMsgId`, a retry), the agent check, then one transaction
//! writing the session (on its version) and the message (only if absent).

use async_trait::async_trait;

use super::DynamoStore;
use super::client::{Condition, MAX_ATTEMPTS};
use super::item::{Envelope, attr_str, decode, encode, key, record, session_envelope};
use super::query::QuerySpec;
use crate::auth::access::Refusal;
use crate::clock::Timestamp;
use crate::domain::{Message, Session, SessionId};
use crate::policy::RateLimit;
use crate::storage::keys::{self, kind};
use crate::storage::{AgentGate, Appended, MessagePage, MessageStore, NewMessage, StoreError, clamp_limit};

#[async_trait]
impl MessageStore for DynamoStore {
    async fn append_gated(
        &self,
        msg: &NewMessage,
        now: Timestamp,
        rate: Option<RateLimit>,
        gate: Option<&AgentGate>,
    ) -> Result<Result<Appended, Refusal>, StoreError> {
        let pk = keys::session_pk(&msg.session_id);
        let retry_key = keys::retry_key(msg.author.role, &msg.author.id, &msg.client_msg_id);
        for _ in 0..MAX_ATTEMPTS {
            // One round trip: a consistent read of the session (and, for an agent,
            // the agent and its site: the per-frame authorization check rides on
            // it), and beside it a consistent LSI1 query for this author's
            // `clientMsgId` (a retry).
            let mut wanted = vec![key(pk.clone(), keys::SESSION_SK)];
            if let Some(g) = gate {
                let site_pk = keys::site_pk(&g.site);
                wanted.push(key(site_pk.clone(), keys::agent_sk(&g.agent)));
                wanted.push(key(site_pk, keys::SITE_SK));
            }
            let retry = QuerySpec::local(keys::LSI1, pk.clone()).sort("#s = :s", retry_key.clone());
            let (items, earlier) = futures::join!(self.batch_get(wanted), self.query_page(&retry, None, Some(1), true));
            let (mut session, mut agent, mut site) = (None, None, None);
            for item in items? {
                match (
                    attr_str(&item, keys::PK) == Some(pk.as_str()),
                    attr_str(&item, keys::SK),
                ) {
                    (true, _) => session = Some(decode::<Session>("BatchGetItem", item)?),
                    (false, Some(keys::SITE_SK)) => site = Some(record("BatchGetItem", item)?),
                    (false, _) => agent = Some(record("BatchGetItem", item)?),
                }
            }
            let retry_of = earlier?
                .0
                .first()
                .and_then(|i| attr_str(i, keys::SK))
                .and_then(keys::msg_seq);
            // The agent first: a refused agent learns nothing about the conversation.
            let agent = match gate.map(|g| g.admit(agent, site, now)).transpose() {
                Ok(agent) => agent,
                Err(refused) => return Ok(Err(refused)),
            };
            let Some(env) = session.filter(|e| e.data.is_usable(now) && e.data.site_id == msg.site_id) else {
                return Err(StoreError::NotFound);
            };
            if let Some(seq) = retry_of {
                // A retry: answer with the stored original (the only extra read, and only on retries).
                let item = self
                    .get(key(pk.clone(), keys::msg_sk(seq)), true)
                    .await?
                    .ok_or(StoreError::Corrupt {
                        operation: "append_message",
                    })?;
                return Ok(Ok(Appended {
                    message: record("GetItem", item)?,
                    duplicate: true,
                    agent,
                }));
            }
            let (mut s, version) = (env.data, env.version);
            let seq = s.append(now, rate)?;
            let message = Message {
                session_id: msg.session_id.clone(),
                seq,
                author: msg.author.clone(),
                text: msg.text.clone(),
                client_msg_id: msg.client_msg_id.clone(),
                created_at: now,
            };
            let mut message_item = Envelope::new(pk.clone(), keys::msg_sk(seq), kind::MESSAGE, message.clone());
            message_item.lsi1sk = Some(retry_key.clone());
            // Both or neither (a crash between two separate writes would leave a
            // sequence taken without its message, or a message the session's
            // sequence, rate window and expiry do not count): docs/data-model.md.
            let ops = vec![
                self.put_op(
                    encode(&session_envelope(&s, version + 1))?,
                    Some(Condition::version_is(version)),
                )?,
                self.put_op(encode(&message_item)?, Some(Condition::not_exists()))?,
            ];
            if self.transact(ops).await? {
                return Ok(Ok(Appended {
                    message,
                    duplicate: false,
                    agent,
                }));
            }
            // Cancelled: a concurrent append (perhaps the same retry) won; re-read and
            // decide again: the LSI1 read is consistent, so a retry that lost sees its original.
            tracing::debug!(seq, "append lost a race, re-reading the session");
        }
        Err(StoreError::Conflict)
    }

    async fn list_messages(&self, session: &SessionId, after: u64, limit: u32) -> Result<MessagePage, StoreError> {
        let limit = clamp_limit(limit);
        let q = QuerySpec::table(keys::session_pk(session))
            .sort("#s BETWEEN :s AND :e", keys::msg_sk(after.saturating_add(1)))
            .value(":e", keys::msg_sk(u64::MAX));
        // One more than asked tells whether another page exists.
        let (items, _) = self.query_page(&q, None, Some(limit as i32 + 1), true).await?;
        let mut messages = items
            .into_iter()
            .map(|i| record("Query", i))
            .collect::<Result<Vec<Message>, _>>()?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        Ok(MessagePage { messages, has_more })
    }
}
