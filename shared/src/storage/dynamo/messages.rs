//! Messages: an append is one consistent read of the session and the retry
//! record, then one transaction writing the session (on its version), the
//! message and the retry record (both only if absent).

use async_trait::async_trait;

use super::DynamoStore;
use super::client::{Condition, MAX_ATTEMPTS};
use super::item::{CmidData, Envelope, attr_str, decode, encode, key, record, session_envelope};
use super::query::QuerySpec;
use crate::clock::Timestamp;
use crate::domain::{Message, Session, SessionId};
use crate::policy::RateLimit;
use crate::storage::keys::{self, kind};
use crate::storage::{Appended, MessagePage, MessageStore, NewMessage, StoreError, clamp_limit};

#[async_trait]
impl MessageStore for DynamoStore {
    async fn append_message(
        &self,
        msg: &NewMessage,
        now: Timestamp,
        rate: Option<RateLimit>,
    ) -> Result<Appended, StoreError> {
        let pk = keys::session_pk(&msg.session_id);
        let cmid_sk = keys::cmid_sk(msg.author.role, &msg.author.id, &msg.client_msg_id);
        for _ in 0..MAX_ATTEMPTS {
            // One consistent read of the session and the retry record together.
            let items = self
                .batch_get(vec![
                    key(pk.clone(), keys::SESSION_SK),
                    key(pk.clone(), cmid_sk.clone()),
                ])
                .await?;
            let mut session = None;
            let mut retry_of = None;
            for item in items {
                match attr_str(&item, keys::SK) {
                    Some(keys::SESSION_SK) => session = Some(decode::<Session>("BatchGetItem", item)?),
                    _ => retry_of = Some(record::<CmidData>("BatchGetItem", item)?.seq),
                }
            }
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
                return Ok(Appended {
                    message: record("GetItem", item)?,
                    duplicate: true,
                });
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
            let message_item = Envelope::new(pk.clone(), keys::msg_sk(seq), kind::MESSAGE, message.clone());
            let retry_item = Envelope::new(pk.clone(), cmid_sk.clone(), kind::CLIENT_MSG_ID, CmidData { seq });
            let ops = vec![
                self.put_op(
                    encode(&session_envelope(&s, version + 1))?,
                    Some(Condition::version_is(version)),
                )?,
                self.put_op(encode(&message_item)?, Some(Condition::not_exists()))?,
                self.put_op(encode(&retry_item)?, Some(Condition::not_exists()))?,
            ];
            if self.transact(ops).await? {
                return Ok(Appended {
                    message,
                    duplicate: false,
                });
            }
            // Cancelled: a concurrent append or the same retry won; re-read and decide again.
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
