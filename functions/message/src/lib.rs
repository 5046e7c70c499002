//! The WebSocket message routes (`sendMessage`, `typing`, `history`, `markRead`,
//! `listConversations`, `join`, and `$default` for anything else).
//!
//! Every frame is answered on the sender's connection: an `ack`, a `history`
//! page, a `conversations` page, `joined`, or an `error` frame with a stable code.
//! A message is stored before anyone is told about it, then delivered to the
//! conversation's connections and the site's online agents (never to another
//! conversation or site). Delivery is at least once: a retried `sendMessage` is
//! acknowledged with the original sequence and delivered again, and clients
//! deduplicate by (`sessionId`, `seq`).
//!
//! Authorization is checked at use: every agent frame re-checks the token's
//! expiry (kept on the connection record) and reads the agent and its site in
//! one BatchGetItem (active, not revoked, this frame's source address in the
//! allow-list). A refused agent gets an `unauthorized` error frame, then the
//! socket is closed and its record deleted. Visitor frames pay nothing extra.

use std::net::IpAddr;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use chat_core::api::MAX_FRAME_BYTES;
use chat_core::api::agent_auth::{FrameRefusal, TokenFacts, recheck_agent_frame};
use chat_core::api::delivery::{recipients, send_all};
use chat_core::api::frames::{ConversationView, MessageView, ServerFrame};
use chat_core::api::json::{self, Object};
use chat_core::api::ws::{self, WsRequest};
use chat_core::clock::{Clock, Timestamp};
use chat_core::config::Config;
use chat_core::domain::*;
use chat_core::error::{ApiError, ErrorCode};
use chat_core::gateway::{ConnectionGateway, GatewayFactory};
use chat_core::gdpr;
use chat_core::storage::{
    AuditStore, ConnectionStore, ConversationStore, MessageStore, NewMessage, SessionStore, SiteStore, StoreError,
    SubjectStore,
};

/// Every action this function serves.
pub const ACTIONS: [&str; 7] = [
    "sendMessage",
    "typing",
    "history",
    "markRead",
    "listConversations",
    "join",
    "deleteConversation",
];

/// Default and largest history page.
pub const HISTORY_PAGE: (u64, u64) = (50, 100);
/// Default and largest conversation list page.
pub const CONVERSATION_PAGE: (u64, u64) = (20, 50);

/// What the handler needs.
pub struct Deps<'a, S> {
    /// Sessions, messages, connections, conversations.
    pub store: &'a S,
    /// The management API client for the request's API and stage.
    pub gateways: &'a dyn GatewayFactory,
    /// Time.
    pub clock: &'a dyn Clock,
    /// Configuration.
    pub config: &'a Config,
}

/// The storage the routes use (sites and agents for the per-frame agent check).
pub trait MessageRoutesStore:
    SiteStore + SessionStore + MessageStore + ConnectionStore + ConversationStore + SubjectStore + AuditStore
{
}
impl<T: SiteStore + SessionStore + MessageStore + ConnectionStore + ConversationStore + SubjectStore + AuditStore>
    MessageRoutesStore for T
{
}

/// Handles one frame. Never fails: problems become an `error` frame to the sender.
pub async fn handle<S: MessageRoutesStore>(
    event: ApiGatewayWebsocketProxyRequest,
    deps: &Deps<'_, S>,
) -> ApiGatewayProxyResponse {
    let req = WsRequest::new(&event);
    let Ok(conn_id) = req.connection_id() else {
        return ws::status(400);
    };
    let gateway = deps.gateways.for_request(req.domain_name(), req.stage());
    let ctx = Ctx {
        deps,
        gateway: gateway.as_ref(),
        conn_id: &conn_id,
        source_ip: req.source_ip(),
        now: deps.clock.now(),
    };
    let frame = req.frame();
    let ref_id = frame
        .as_ref()
        .ok()
        .and_then(|f| f.get("clientMsgId").or_else(|| f.get("ref")))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let outcome = match frame {
        Ok(f) => ctx.dispatch(&f).await,
        Err(e) => Err(e.into()),
    };
    let (e, close) = match outcome {
        Ok(action) => {
            tracing::info!(action, "frame handled");
            return ws::status(200);
        }
        Err(FrameError::Api(e)) => (e, false),
        Err(FrameError::Refused(e)) => (e, true),
    };
    tracing::info!(code = e.code.as_str(), "frame refused");
    let bytes = serde_json::to_vec(&e.ws_frame(ref_id.as_deref())).unwrap_or_default();
    if let Err(err) = ctx.gateway.send(&conn_id, &bytes).await {
        tracing::warn!(error = %err, "could not send an error frame");
    }
    if close {
        ctx.close().await;
    }
    ws::status(200)
}

/// Why a frame was not handled.
enum FrameError {
    /// Answered with an error frame; the connection stays.
    Api(ApiError),
    /// The agent may no longer act: error frame, then the socket is closed.
    Refused(ApiError),
}

impl From<ApiError> for FrameError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<StoreError> for FrameError {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

struct Ctx<'a, 'd, S> {
    deps: &'a Deps<'d, S>,
    gateway: &'a dyn ConnectionGateway,
    conn_id: &'a ConnectionId,
    /// This frame's source address, from API Gateway's request context: for the
    /// agent allow-list and the keyed IP tag of security events, never logged itself.
    source_ip: Option<IpAddr>,
    now: Timestamp,
}

/// Who sent the frame, as far as the routes care.
enum Sender {
    Visitor {
        session_id: SessionId,
        visitor_id: VisitorId,
    },
    Agent {
        agent_id: AgentId,
        /// The role checked on this frame.
        role: AgentRole,
    },
}

fn not_found() -> ApiError {
    // The same answer for "does not exist", "expired" and "not yours": nothing is revealed.
    ApiError::new(ErrorCode::NotFound, "conversation not found")
}

fn limit(o: &Object, field: &'static str, (default, max): (u64, u64)) -> Result<u32, ApiError> {
    match json::opt_u64(o, field)? {
        None => Ok(default as u32),
        Some(n) if (1..=max).contains(&n) => Ok(n as u32),
        Some(_) => Err(ValidationError::new(field, "is out of range").into()),
    }
}

impl<S: MessageRoutesStore> Ctx<'_, '_, S> {
    fn store(&self) -> &S {
        self.deps.store
    }

    async fn reply(&self, frame: &ServerFrame) {
        if let Err(e) = self.gateway.send(self.conn_id, &frame.to_bytes()).await {
            tracing::warn!(error = %e, "could not answer the sender");
        }
    }

    /// Closes the sender's socket and deletes its connection record (the
    /// `$disconnect` the close triggers deletes it again, harmlessly).
    async fn close(&self) {
        if let Err(e) = self.gateway.close(self.conn_id).await {
            tracing::warn!(error = %e, "could not close a refused connection");
        }
        if let Err(e) = self.store().delete_connection(self.conn_id).await {
            tracing::warn!(error = %e, "could not delete a refused connection");
        }
    }

    /// Who sent the frame. An agent is re-checked on every frame (see the module header).
    async fn sender(&self, conn: Connection) -> Result<Sender, FrameError> {
        match conn.principal {
            Principal::Visitor { session_id, visitor_id } => Ok(Sender::Visitor { session_id, visitor_id }),
            Principal::Agent {
                agent_id,
                role,
                token_exp,
                token_iat,
            } => {
                let token = TokenFacts {
                    role,
                    iat: token_iat,
                    exp: token_exp,
                };
                let d = self.deps;
                match recheck_agent_frame(
                    d.store,
                    d.config,
                    "frame",
                    &conn.site_id,
                    &agent_id,
                    token,
                    self.source_ip,
                    self.now,
                )
                .await
                {
                    Ok(role) => Ok(Sender::Agent { agent_id, role }),
                    Err(FrameRefusal::Refused(r)) => Err(FrameError::Refused(r.frame_error())),
                    Err(FrameRefusal::Store(e)) => Err(e.into()),
                }
            }
        }
    }

    async fn dispatch(&self, f: &Object) -> Result<&'static str, FrameError> {
        let action = json::req_str(f, "action").map_err(ApiError::from)?;
        let Some(action) = ACTIONS.iter().copied().find(|a| *a == action) else {
            return Err(ApiError::new(ErrorCode::UnknownAction, "unknown action").into());
        };
        let conn = self
            .store()
            .get_connection(self.conn_id, self.now)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "connection is not authenticated; reconnect"))?;
        let site = conn.site_id.clone();
        let sender = self.sender(conn).await?;
        match action {
            "sendMessage" => self.send_message(f, &site, &sender).await,
            "typing" => self.typing(f, &site, &sender).await,
            "history" => self.history(f, &site, &sender).await,
            "markRead" => self.mark_read(f, &site, &sender).await,
            "listConversations" => self.list_conversations(f, &site, &sender).await,
            "deleteConversation" => self.delete_conversation(f, &site, &sender).await,
            _ => self.join(f, &site, &sender).await,
        }?;
        Ok(action)
    }

    /// The conversation a frame is about: a visitor's own (a `sessionId`, if given,
    /// must be it), or for an agent the `sessionId` given.
    fn target(&self, f: &Object, sender: &Sender) -> Result<SessionId, ApiError> {
        let given = json::opt_str(f, "sessionId")?;
        match sender {
            Sender::Visitor { session_id, .. } => match given {
                Some(g) if g != session_id.as_str() => Err(not_found()),
                _ => Ok(session_id.clone()),
            },
            Sender::Agent { .. } => {
                let g = given.ok_or(ValidationError::new("sessionId", "is required"))?;
                Ok(SessionId::parse(g)?)
            }
        }
    }

    /// A live session of the sender's site.
    async fn session_of_site(&self, id: &SessionId, site: &SiteId) -> Result<Session, ApiError> {
        self.store()
            .get_session(id, self.now)
            .await?
            .filter(|s| s.site_id == *site)
            .ok_or_else(not_found)
    }

    fn author(sender: &Sender) -> Author {
        match sender {
            Sender::Visitor { visitor_id, .. } => Author {
                role: AuthorRole::Visitor,
                id: visitor_id.to_string(),
            },
            Sender::Agent { agent_id, .. } => Author {
                role: AuthorRole::Agent,
                id: agent_id.to_string(),
            },
        }
    }

    async fn send_message(&self, f: &Object, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let client_msg_id = ClientMsgId::parse(json::req_str(f, "clientMsgId")?)?;
        let text = MessageText::parse(json::req_str(f, "text")?, self.deps.config.max_message_bytes)?;
        let session_id = self.target(f, sender)?;
        let msg = NewMessage {
            site_id: site.clone(),
            session_id: session_id.clone(),
            author: Self::author(sender),
            text,
            client_msg_id,
        };
        // Stored (with its sequence) before anyone hears of it.
        // The rate limit protects against visitors flooding a conversation; it must never
        // stop an agent from answering, so agents' messages are not counted.
        let rate = matches!(sender, Sender::Visitor { .. }).then_some(self.deps.config.message_rate);
        let out = self
            .store()
            .append_message(&msg, self.now, rate)
            .await
            .map_err(|e| match e {
                chat_core::storage::StoreError::NotFound => not_found(),
                chat_core::storage::StoreError::RateLimited { retry_after } => {
                    chat_core::security_log::SecurityEvent {
                        reason: "rate_limited",
                        route: "frame",
                        site: Some(site),
                        agent: None,
                        ip_tag: self.source_ip.map(|ip| self.deps.config.pseudonymizer.ip_tag(ip)),
                    }
                    .log();
                    ApiError::rate_limited(retry_after)
                }
                other => other.into(),
            })?;
        let m = &out.message;
        self.reply(&ServerFrame::Ack {
            ref_id: m.client_msg_id.to_string(),
            session_id: m.session_id.to_string(),
            seq: m.seq,
            created_at: m.created_at,
            duplicate: out.duplicate,
        })
        .await;
        let to = recipients(self.store(), site, &session_id, true, Some(self.conn_id), self.now).await?;
        let d = send_all(
            self.store(),
            self.gateway,
            &to,
            &ServerFrame::Message {
                message: MessageView::from(m),
            }
            .to_bytes(),
        )
        .await;
        tracing::info!(
            sent = d.sent,
            gone = d.gone,
            failed = d.failed,
            duplicate = out.duplicate,
            "message delivered"
        );
        Ok(())
    }

    async fn typing(&self, f: &Object, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let is_typing = json::req_bool(f, "isTyping")?;
        let session_id = self.target(f, sender)?;
        // Checked for visitors too: an expired or erased conversation relays nothing.
        self.session_of_site(&session_id, site).await?;
        let role = Self::author(sender).role;
        let frame = ServerFrame::Typing {
            session_id: session_id.to_string(),
            role,
            is_typing,
        };
        let to = recipients(self.store(), site, &session_id, false, Some(self.conn_id), self.now).await?;
        send_all(self.store(), self.gateway, &to, &frame.to_bytes()).await;
        Ok(())
    }

    async fn history(&self, f: &Object, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let after = json::opt_u64(f, "after")?.unwrap_or(0);
        let limit = limit(f, "limit", HISTORY_PAGE)?;
        let session_id = self.target(f, sender)?;
        let session = self.session_of_site(&session_id, site).await?;
        let page = self.store().list_messages(&session_id, after, limit).await?;
        // Keep the frame within API Gateway's 32 KB: stop early and let the client ask again.
        let mut budget = MAX_FRAME_BYTES - 1024;
        let mut messages = Vec::new();
        for m in &page.messages {
            let view = MessageView::from(m);
            let size = serde_json::to_vec(&view).map(|v| v.len() + 1).unwrap_or(usize::MAX);
            if size > budget {
                break;
            }
            budget -= size;
            messages.push(view);
        }
        let has_more = page.has_more || messages.len() < page.messages.len();
        self.reply(&ServerFrame::History {
            session_id: session_id.to_string(),
            messages,
            has_more,
            visitor_read_seq: session.visitor_read_seq,
            agent_read_seq: session.agent_read_seq,
        })
        .await;
        Ok(())
    }

    async fn mark_read(&self, f: &Object, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let seq = json::req_u64(f, "seq")?;
        let session_id = self.target(f, sender)?;
        if let Sender::Agent { .. } = sender {
            self.session_of_site(&session_id, site).await?;
        }
        let role = Self::author(sender).role;
        let session = self
            .store()
            .mark_read(&session_id, role, seq, self.now)
            .await
            .map_err(|e| match e {
                chat_core::storage::StoreError::NotFound => not_found(),
                other => other.into(),
            })?;
        let seq = match role {
            AuthorRole::Visitor => session.visitor_read_seq,
            _ => session.agent_read_seq,
        };
        let frame = ServerFrame::Read {
            session_id: session_id.to_string(),
            role,
            seq,
        };
        let to = recipients(self.store(), site, &session_id, true, None, self.now).await?;
        send_all(self.store(), self.gateway, &to, &frame.to_bytes()).await;
        Ok(())
    }

    async fn list_conversations(&self, f: &Object, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let Sender::Agent { .. } = sender else {
            return Err(ApiError::new(ErrorCode::Forbidden, "agents only"));
        };
        let status = match json::opt_str(f, "status")? {
            None => None,
            Some("open") => Some(ConversationStatus::Open),
            Some("closed") => Some(ConversationStatus::Closed),
            Some(_) => return Err(ValidationError::new("status", "must be open or closed").into()),
        };
        let limit = limit(f, "limit", CONVERSATION_PAGE)?;
        let cursor = json::opt_str(f, "cursor")?;
        let page = self
            .store()
            .list_conversations(site, status, cursor, limit, self.now)
            .await?;
        self.reply(&ServerFrame::Conversations {
            items: page.items.iter().map(ConversationView::from).collect(),
            next: page.next,
        })
        .await;
        Ok(())
    }

    /// An agent deletes a conversation: everything in it is erased, the visitor's live
    /// connections are closed, and an audit record (no personal data) is kept.
    async fn delete_conversation(&self, f: &Object, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let Sender::Agent { agent_id, role } = sender else {
            return Err(ApiError::new(ErrorCode::Forbidden, "agents only"));
        };
        let session_id = self.target(f, sender)?;
        // Data still held is erased, expired or not, exactly as HTTP `scope: conversation` does.
        let session = gdpr::held_conversation(self.store(), site, &session_id)
            .await?
            .ok_or_else(not_found)?;
        let requester = gdpr::Requester::Agent {
            site: site.clone(),
            agent: agent_id.clone(),
            role: *role,
        };
        let subject = gdpr::Subject {
            visitor_ids: [session.visitor_id.clone()].into(),
            sessions: vec![session],
        };
        let counts = gdpr::erase_sessions(self.store(), self.gateway, &subject.sessions, self.now).await?;
        let record = gdpr::audit_record(
            self.deps.config,
            &requester,
            AuditAction::ConversationDelete,
            &subject,
            counts.0.clone(),
            self.now,
        );
        self.store().append_audit(&record).await?;
        self.reply(&ServerFrame::Deleted {
            session_id: session_id.to_string(),
            items: counts.total(),
        })
        .await;
        Ok(())
    }

    async fn join(&self, f: &Object, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let Sender::Agent { .. } = sender else {
            return Err(ApiError::new(ErrorCode::Forbidden, "agents only"));
        };
        let session_id = self.target(f, sender)?;
        let session = self.session_of_site(&session_id, site).await?;
        self.store()
            .join_conversation(self.conn_id, &session_id, self.now)
            .await
            .map_err(|e| match e {
                chat_core::storage::StoreError::NotFound => not_found(),
                other => other.into(),
            })?;
        self.reply(&ServerFrame::Joined {
            conversation: ConversationView::from(&session),
        })
        .await;
        Ok(())
    }
}
