//! The WebSocket message routes: every action of
//! [`chat_core::api::client_frames::ClientFrame`] (`$default` gets the rest).
//!
//! Every frame is answered on the sender's connection: `hello`, an `ack`, a
//! `history` page, `read`, a `conversations` page, `joined`, `deleted`, or an
//! `error` frame with a stable code; each answer echoes the frame's `ref`
//! (`typing` has no answer but its errors). A message is stored before anyone is
//! told about it, then delivered to the conversation's connections and the
//! site's online agents (never to another conversation or site). Delivery is at
//! least once: a retried `sendMessage` is acknowledged with the original sequence
//! and delivered again, and clients deduplicate by (`sessionId`, `seq`).
//!
//! A frame is read as a typed [`ClientFrame`] before anything is read from the
//! store; its fields are validated (`TryFrom`) once the sender is known, so an
//! agents-only action from a visitor is `forbidden` whatever its fields.
//!
//! Authorization is checked at use: every agent frame re-checks the token's
//! expiry (kept on the connection record) and reads the agent and its site in
//! one BatchGetItem (active, not revoked, this frame's source address in the
//! allow-list); that read also gives the agent's display name for its messages.
//! A refused agent gets an `unauthorized` error frame, then the socket is closed
//! and its record deleted. Visitor frames pay nothing extra.

use std::net::IpAddr;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use chat_core::api::MAX_FRAME_BYTES;
use chat_core::api::authn::{self, FrameRefusal, TokenFacts};
use chat_core::api::client_frames::{
    self, ClientFrame, ConversationCursor, ConversationTarget, FrameRef, History, Incoming, ListConversations,
    MarkRead, SendMessage, Typing, Unreadable,
};
use chat_core::api::delivery::{recipients, send_all};
use chat_core::api::frames::{ConversationView, Limits, MessageView, ServerFrame};
use chat_core::api::verdict::Verdict;
use chat_core::api::ws::{self, WsRequest};
use chat_core::clock::{Clock, Timestamp};
use chat_core::config::Config;
use chat_core::domain::*;
use chat_core::error::{ApiError, ErrorCode};
use chat_core::gateway::{ConnectionGateway, GatewayFactory};
use chat_core::gdpr;
use chat_core::storage::{
    AgentGate, AuditStore, ConnectionStore, ConversationStore, MessageStore, NewMessage, SessionStore, SiteStore,
    StoreError, SubjectStore,
};

/// Every action this function serves: one per [`ClientFrame`] variant, and the
/// WebSocket API's routes besides `$connect`, `$disconnect` and `$default`.
pub const ACTIONS: &[&str] = client_frames::ACTIONS;

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
    let incoming = req
        .frame()
        .map_err(|error| Unreadable { error, echo: None })
        .and_then(client_frames::read);
    let (frame, echo) = match incoming {
        Ok(Incoming { frame, echo }) => (Some(frame), echo),
        Err(Unreadable { error, echo }) => {
            error.log("frame refused");
            send_error(gateway.as_ref(), &conn_id, &error, echo.as_ref()).await;
            return ws::status(200);
        }
    };
    let ctx = Ctx {
        deps,
        gateway: gateway.as_ref(),
        conn_id: &conn_id,
        source_ip: req.source_ip(),
        now: deps.clock.now(),
        echo: echo.as_ref(),
    };
    let Some(frame) = frame else {
        return ws::status(200);
    };
    let action = frame.action();
    let (e, close) = match ctx.dispatch(frame, req.verdict()).await {
        Ok(()) => {
            tracing::info!(action, "frame handled");
            return ws::status(200);
        }
        Err(FrameError::Api(e)) => (e, false),
        Err(FrameError::Refused(e)) => (e, true),
    };
    tracing::info!(action, "frame not handled");
    e.log("frame refused or failed");
    send_error(ctx.gateway, &conn_id, &e, echo.as_ref()).await;
    if close {
        ctx.close().await;
    }
    ws::status(200)
}

/// Sends an error frame, echoing the frame's `ref`.
async fn send_error(gateway: &dyn ConnectionGateway, to: &ConnectionId, e: &ApiError, echo: Option<&FrameRef>) {
    let bytes = serde_json::to_vec(&e.ws_frame(echo.map(FrameRef::as_str))).unwrap_or_default();
    if let Err(err) = gateway.send(to, &bytes).await {
        tracing::warn!(error = %err, "could not send an error frame");
    }
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

impl From<ValidationError> for FrameError {
    fn from(e: ValidationError) -> Self {
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
    /// The `ref` the answer echoes.
    echo: Option<&'a FrameRef>,
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
        /// The display name read by this frame's check, for its messages.
        name: String,
    },
    /// An agent whose check rides on the frame's own first read (`sendMessage`:
    /// the store reads the agent and site with the session, [`AgentGate`]).
    AgentToCheck(AgentGate),
}

fn not_found() -> ApiError {
    // The same answer for "does not exist", "expired" and "not yours": nothing is revealed.
    ApiError::new(ErrorCode::NotFound, "conversation not found")
}

fn agents_only() -> ApiError {
    ApiError::new(ErrorCode::Forbidden, "agents only")
}

/// A store answer where "not found" means the conversation is not (or no longer) there.
fn gone_as_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => not_found(),
        other => other.into(),
    }
}

impl<S: MessageRoutesStore> Ctx<'_, '_, S> {
    fn store(&self) -> &S {
        self.deps.store
    }

    /// Answers the sender, echoing the frame's `ref`.
    async fn reply(&self, frame: &ServerFrame) {
        let bytes = frame.reply_bytes(self.echo.map(FrameRef::as_str));
        if let Err(e) = self.gateway.send(self.conn_id, &bytes).await {
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

    /// Who is behind this connection: the `$connect` authorizer's verdict, which
    /// API Gateway passes with every frame (no read), else (a connection opened
    /// without an authorizer) the connection record.
    async fn principal(&self, verdict: Option<Verdict>) -> Result<(SiteId, Principal), FrameError> {
        if let Some(Verdict::Admitted { site_id, principal }) = verdict {
            return Ok((site_id, principal));
        }
        let conn = self
            .store()
            .get_connection(self.conn_id, self.now)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "connection is not authenticated; reconnect"))?;
        Ok((conn.site_id, conn.principal))
    }

    /// Who sent the frame. An agent is re-checked on every frame (see the module
    /// header): for `sendMessage` by the append's own read (`deferred`), for any
    /// other frame by one BatchGetItem here. An expired token costs no read.
    async fn sender(&self, site: &SiteId, principal: Principal, deferred: bool) -> Result<Sender, FrameError> {
        match principal {
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
                if deferred && token.exp > self.now.epoch_seconds() {
                    return Ok(Sender::AgentToCheck(AgentGate {
                        site: site.clone(),
                        agent: agent_id,
                        token,
                        ip: self.source_ip,
                    }));
                }
                let d = self.deps;
                match authn::recheck_agent_frame(
                    d.store,
                    d.config,
                    "frame",
                    site,
                    &agent_id,
                    token,
                    self.source_ip,
                    self.now,
                )
                .await
                {
                    Ok(ok) => Ok(Sender::Agent {
                        agent_id,
                        role: ok.role,
                        name: ok.agent.display_name,
                    }),
                    Err(FrameRefusal::Refused(r)) => Err(FrameError::Refused(r.frame_error())),
                    Err(FrameRefusal::Store(e)) => Err(e.into()),
                }
            }
        }
    }

    /// Routes a frame: the sender first (an unknown connection is `unauthorized`),
    /// then the action's permission, then its fields.
    async fn dispatch(&self, frame: ClientFrame, verdict: Option<Verdict>) -> Result<(), FrameError> {
        let (site, principal) = self.principal(verdict).await?;
        let deferred = matches!(frame, ClientFrame::SendMessage(_));
        let sender = self.sender(&site, principal, deferred).await?;
        if frame.agents_only() && matches!(sender, Sender::Visitor { .. }) {
            return Err(agents_only().into());
        }
        let max_text = self.deps.config.max_message_bytes;
        match frame {
            ClientFrame::Hello(_) => self.hello().await,
            ClientFrame::SendMessage(f) => {
                return self
                    .send_message(SendMessage::try_from((f, max_text))?, &site, &sender)
                    .await;
            }
            ClientFrame::Typing(f) => self.typing(Typing::try_from(f)?, &site, &sender).await,
            ClientFrame::History(f) => self.history(History::try_from(f)?, &site, &sender).await,
            ClientFrame::MarkRead(f) => self.mark_read(MarkRead::try_from(f)?, &site, &sender).await,
            ClientFrame::ListConversations(f) => self.list_conversations(ListConversations::try_from(f)?, &site).await,
            ClientFrame::Join(f) => self.join(ConversationTarget::try_from(f)?, &site, &sender).await,
            ClientFrame::DeleteConversation(f) => {
                self.delete_conversation(ConversationTarget::try_from(f)?, &site, &sender)
                    .await
            }
        }?;
        Ok(())
    }

    /// The conversation a frame is about: a visitor's own (a `sessionId`, if given,
    /// must be it), or for an agent the `sessionId` given.
    fn target(&self, given: Option<SessionId>, sender: &Sender) -> Result<SessionId, ApiError> {
        match sender {
            Sender::Visitor { session_id, .. } => match given {
                Some(g) if g != *session_id => Err(not_found()),
                _ => Ok(session_id.clone()),
            },
            Sender::Agent { .. } | Sender::AgentToCheck(_) => {
                given.ok_or_else(|| ValidationError::new("sessionId", "is required").into())
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
            Sender::Agent { agent_id, .. } | Sender::AgentToCheck(AgentGate { agent: agent_id, .. }) => Author {
                role: AuthorRole::Agent,
                id: agent_id.to_string(),
            },
        }
    }

    /// `hello`: the protocol version and this deployment's limits. Reads nothing.
    async fn hello(&self) -> Result<(), ApiError> {
        let c = self.deps.config;
        self.reply(&ServerFrame::hello(Limits::new(
            c.max_message_bytes,
            c.message_rate.limit,
        )))
        .await;
        Ok(())
    }

    async fn send_message(&self, req: SendMessage, site: &SiteId, sender: &Sender) -> Result<(), FrameError> {
        let session_id = self.target(req.session_id, sender)?;
        let msg = NewMessage {
            site_id: site.clone(),
            session_id: session_id.clone(),
            author: Self::author(sender),
            text: req.text,
            client_msg_id: req.client_msg_id,
        };
        // Stored (with its sequence) before anyone hears of it.
        // The rate limit protects against visitors flooding a conversation; it must never
        // stop an agent from answering, so agents' messages are not counted.
        let rate = matches!(sender, Sender::Visitor { .. }).then_some(self.deps.config.message_rate);
        let gate = match sender {
            Sender::AgentToCheck(gate) => Some(gate),
            _ => None,
        };
        let appended = self
            .store()
            .append_gated(&msg, self.now, rate, gate)
            .await
            .map_err(|e| match e {
                StoreError::RateLimited { retry_after } => {
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
                other => gone_as_not_found(other),
            })?;
        let out = match appended {
            Ok(out) => out,
            Err(refused) => {
                let c = self.deps.config;
                authn::log_refusal(c, refused, "frame", Some(site), gate.map(|g| &g.agent), self.source_ip);
                return Err(FrameError::Refused(refused.frame_error()));
            }
        };
        let m = &out.message;
        let author_name = match (sender, &out.agent) {
            (Sender::Agent { name, .. }, _) => Some(name.clone()),
            (_, Some(ok)) => Some(ok.agent.display_name.clone()),
            _ => None,
        };
        let view = MessageView::from(m).with_author_name(author_name);
        // The sender's answer carries the stored message, so it renders its own message
        // from it; its `ref` is the frame's, else (protocol 1.0) the `clientMsgId`.
        let ack = ServerFrame::Ack {
            session_id: m.session_id.to_string(),
            seq: m.seq,
            created_at: m.created_at,
            duplicate: out.duplicate,
            message: view.clone(),
        };
        // The answer and the recipients' read go out together: the third round trip.
        let ((), to) = futures::join!(
            self.reply(&ack),
            recipients(self.store(), site, &session_id, true, Some(self.conn_id), self.now)
        );
        let bytes = ServerFrame::Message { message: view }.to_bytes();
        match to {
            Ok(to) => {
                let d = send_all(self.store(), self.gateway, &to, &bytes).await;
                tracing::info!(
                    sent = d.sent,
                    gone = d.gone,
                    failed = d.failed,
                    duplicate = out.duplicate,
                    "message delivered"
                );
            }
            Err(e) => ApiError::from(e).log("fan-out skipped: recipients not read"),
        }
        Ok(())
    }

    /// Sends `bytes` to the conversation's other connections and the site's agents,
    /// after the sender has had its answer. A failure to find them is logged, not
    /// answered: the sender already holds its `ack` (one answer per frame), the
    /// message is stored, and the others read it with `history` on reconnect.
    async fn fan_out(
        &self,
        site: &SiteId,
        session_id: &SessionId,
        bytes: &[u8],
    ) -> Option<chat_core::api::delivery::Delivered> {
        match recipients(self.store(), site, session_id, true, Some(self.conn_id), self.now).await {
            Ok(to) => Some(send_all(self.store(), self.gateway, &to, bytes).await),
            Err(e) => {
                ApiError::from(e).log("fan-out skipped: recipients not read");
                None
            }
        }
    }

    async fn typing(&self, req: Typing, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let session_id = self.target(req.session_id, sender)?;
        // Checked for visitors too: an expired or erased conversation relays nothing.
        self.session_of_site(&session_id, site).await?;
        let role = Self::author(sender).role;
        let frame = ServerFrame::Typing {
            session_id: session_id.to_string(),
            role,
            is_typing: req.is_typing,
        };
        let to = recipients(self.store(), site, &session_id, false, Some(self.conn_id), self.now).await?;
        send_all(self.store(), self.gateway, &to, &frame.to_bytes()).await;
        Ok(())
    }

    async fn history(&self, req: History, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let session_id = self.target(req.session_id, sender)?;
        let session = self.session_of_site(&session_id, site).await?;
        let page = self.store().list_messages(&session_id, req.after, req.limit).await?;
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

    async fn mark_read(&self, req: MarkRead, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let session_id = self.target(req.session_id, sender)?;
        if let Sender::Agent { .. } = sender {
            self.session_of_site(&session_id, site).await?;
        }
        let role = Self::author(sender).role;
        let session = self
            .store()
            .mark_read(&session_id, role, req.seq, self.now)
            .await
            .map_err(gone_as_not_found)?;
        let seq = match role {
            AuthorRole::Visitor => session.visitor_read_seq,
            _ => session.agent_read_seq,
        };
        let frame = ServerFrame::Read {
            session_id: session_id.to_string(),
            role,
            seq,
        };
        // The sender's answer is the marker as stored (it never moves back nor past the
        // last message), with its `ref`; everyone else gets the same frame without one.
        self.reply(&frame).await;
        self.fan_out(site, &session_id, &frame.to_bytes()).await;
        Ok(())
    }

    async fn list_conversations(&self, req: ListConversations, site: &SiteId) -> Result<(), ApiError> {
        let page = self
            .store()
            .list_conversations(site, req.status, req.cursor.as_deref(), req.limit, self.now)
            .await?;
        self.reply(&ServerFrame::Conversations {
            items: page.items.iter().map(ConversationView::from).collect(),
            next: ConversationCursor::issue(req.status, page.next),
        })
        .await;
        Ok(())
    }

    /// An agent deletes a conversation: everything in it is erased, the visitor's live
    /// connections are closed, and an audit record (no personal data) is kept.
    async fn delete_conversation(
        &self,
        req: ConversationTarget,
        site: &SiteId,
        sender: &Sender,
    ) -> Result<(), ApiError> {
        let Sender::Agent { agent_id, role, .. } = sender else {
            return Err(agents_only());
        };
        let session_id = self.target(req.session_id, sender)?;
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

    async fn join(&self, req: ConversationTarget, site: &SiteId, sender: &Sender) -> Result<(), ApiError> {
        let session_id = self.target(req.session_id, sender)?;
        let session = self.session_of_site(&session_id, site).await?;
        self.store()
            .join_conversation(self.conn_id, &session_id, self.now)
            .await
            .map_err(gone_as_not_found)?;
        self.reply(&ServerFrame::Joined {
            conversation: ConversationView::from(&session),
        })
        .await;
        Ok(())
    }
}
