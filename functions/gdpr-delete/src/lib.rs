//! `POST /v1/gdpr/erase`: erases a data subject, or one conversation.
//!
//! - `{"scope": "subject", ...}` (the default): everything of the subject on the
//!   requester's site: sessions, messages, connections (closed
//!   first, so nothing more flows), pre-chat data and its email index entry.
//!   Visitors erase themselves (`{}`); site admins name a `visitorId`,
//!   `sessionId` or `email`.
//! - `{"scope": "conversation", "sessionId": ...}`: one conversation, by any
//!   agent of the site.
//!
//! Idempotent: a second run finds nothing and reports zero. Resumable: a failure
//! part-way is an error (5xx), never a report of success, and the rerun
//! finishes the job. An audit record without personal data is written on
//! success.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chat_core::api::cors;
use chat_core::api::http::HttpRequest;
use chat_core::api::json;
use chat_core::clock::Clock;
use chat_core::config::Config;
use chat_core::domain::{AuditAction, SessionId, ValidationError};
use chat_core::error::{ApiError, ErrorCode, json_response};
use chat_core::gateway::ConnectionGateway;
use chat_core::gdpr::{self, Requester, Subject};
use chat_core::storage::{AuditStore, ConnectionStore, ConversationStore, SessionStore, SiteStore, SubjectStore};

/// The answer: items erased by kind (every kind, zeros included) and their total.
#[derive(Debug, serde::Serialize)]
pub struct EraseAnswer {
    /// Items erased, by kind.
    pub erased: std::collections::BTreeMap<String, u64>,
    /// Their sum.
    pub total: u64,
}

/// What the handler needs.
pub struct Deps<'a, S> {
    /// Sites, sessions, connections, audit.
    pub store: &'a S,
    /// Closes the subject's live WebSocket connections.
    pub gateway: &'a dyn ConnectionGateway,
    /// Time.
    pub clock: &'a dyn Clock,
    /// Configuration.
    pub config: &'a Config,
}

/// The storage erasure uses.
pub trait EraseStore:
    SiteStore + SessionStore + SubjectStore + ConnectionStore + ConversationStore + AuditStore
{
}
impl<T: SiteStore + SessionStore + SubjectStore + ConnectionStore + ConversationStore + AuditStore> EraseStore for T {}

/// Handles one request. Never fails: errors are HTTP responses.
pub async fn handle<S: EraseStore>(event: ApiGatewayV2httpRequest, deps: &Deps<'_, S>) -> ApiGatewayV2httpResponse {
    let mut shared_with = None;
    let mut resp = match erase(&HttpRequest::new(&event), deps, &mut shared_with).await {
        Ok(body) => json_response(200, &body),
        Err(e) => {
            e.log("erasure refused or failed");
            e.http_response()
        }
    };
    if let Some(origin) = &shared_with {
        cors::share_with(&mut resp, origin);
    }
    resp
}

async fn erase<S: EraseStore>(
    req: &HttpRequest<'_>,
    deps: &Deps<'_, S>,
    shared_with: &mut Option<chat_core::domain::Origin>,
) -> Result<EraseAnswer, ApiError> {
    let now = deps.clock.now();
    let (requester, origin) = gdpr::authenticate_request(deps.store, deps.config, req, "gdpr_erase", now).await?;
    *shared_with = origin;
    let body = req.json_body()?;
    let (action, subject) = match json::opt_str(&body, "scope")?.unwrap_or("subject") {
        "subject" => {
            let subject_ref = gdpr::subject_ref(&body)?;
            gdpr::check_access(&requester, &subject_ref, json::opt_str(&body, "siteId")?)?;
            (
                AuditAction::GdprErase,
                gdpr::resolve(deps.store, deps.config, &requester, &subject_ref).await?,
            )
        }
        "conversation" => {
            let Requester::Agent { site, .. } = &requester else {
                return Err(ApiError::new(ErrorCode::Forbidden, "agents only"));
            };
            let id = SessionId::parse(json::req_str(&body, "sessionId")?)?;
            // Another site's conversation and a missing one look the same: nothing to delete.
            let session = gdpr::held_conversation(deps.store, site, &id).await?;
            let subject = Subject {
                visitor_ids: session.iter().map(|s| s.visitor_id.clone()).collect(),
                sessions: session.into_iter().collect(),
            };
            (AuditAction::ConversationDelete, subject)
        }
        _ => return Err(ValidationError::new("scope", "must be subject or conversation").into()),
    };
    let counts = gdpr::erase_sessions(deps.store, deps.gateway, &subject.sessions, now).await?;
    let total = counts.total();
    deps.store
        .append_audit(&gdpr::audit_record(
            deps.config,
            &requester,
            action,
            &subject,
            counts.0.clone(),
            now,
        ))
        .await?;
    tracing::info!(items = total, sessions = subject.sessions.len(), "erasure done");
    // Every kind, zeros included: a client reads the same shape whatever was stored.
    Ok(EraseAnswer {
        erased: counts.with_zeros(),
        total,
    })
}
