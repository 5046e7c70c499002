//! `POST /v1/gdpr/export`: everything eurochat holds about a data subject, as one
//! versioned JSON document (GDPR Art. 15 and 20), in pages under 4 MB.
//!
//! The subject is named in the body, never in the URL (URLs end up in access
//! logs): `{}` for the visitor themself (their session token as bearer), or
//! one of `visitorId`, `sessionId`, `email` for a site admin (agent token).
//! An unknown subject and a subject of another site both export as empty.
//!
//! Every session says how it was found (`foundBy`); one found through a
//! pre-chat email says `unverifiedEmail`, and the document carries a note,
//! because nobody verified that address: the agent console shows the first
//! page's sessions with that warning before anything is downloaded or erased.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chat_core::api::http::HttpRequest;
use chat_core::api::json;
use chat_core::clock::Clock;
use chat_core::config::Config;
use chat_core::domain::AuditAction;
use chat_core::error::{ApiError, ErrorCode, json_response};
use chat_core::gdpr;
use chat_core::storage::{AuditStore, ConnectionStore, MessageStore, SessionStore, SiteStore, SubjectStore};

/// What the handler needs.
pub struct Deps<'a, S> {
    /// Sites, sessions, messages, audit.
    pub store: &'a S,
    /// Time.
    pub clock: &'a dyn Clock,
    /// Configuration.
    pub config: &'a Config,
    /// Largest page, bytes ([`gdpr::EXPORT_PAGE_BYTES`] in Lambda).
    pub page_bytes: usize,
}

/// Handles one request. Never fails: errors are HTTP responses.
pub async fn handle<S>(event: ApiGatewayV2httpRequest, deps: &Deps<'_, S>) -> ApiGatewayV2httpResponse
where
    S: SiteStore + SessionStore + SubjectStore + MessageStore + ConnectionStore + AuditStore,
{
    match export(&HttpRequest::new(&event), deps).await {
        Ok(doc) => json_response(200, &doc),
        Err(e) => {
            tracing::info!(status = e.status(), code = e.code.as_str(), "export refused");
            e.http_response()
        }
    }
}

async fn export<S>(req: &HttpRequest<'_>, deps: &Deps<'_, S>) -> Result<serde_json::Value, ApiError>
where
    S: SiteStore + SessionStore + SubjectStore + MessageStore + ConnectionStore + AuditStore,
{
    let now = deps.clock.now();
    let requester = gdpr::authenticate(
        deps.store,
        deps.config,
        req.bearer(),
        req.source_ip(),
        "gdpr_export",
        now,
    )
    .await?;
    let body = req.json_body()?;
    let subject_ref = gdpr::subject_ref(&body)?;
    gdpr::check_access(&requester, &subject_ref, json::opt_str(&body, "siteId")?)?;
    let cursor = json::opt_str(&body, "cursor")?;
    let site = deps
        .store
        .get_site(requester.site())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "site not found"))?
        .within(&deps.config.policy_limit);
    let subject = gdpr::resolve(deps.store, deps.config, &requester, &subject_ref).await?;
    let found_by = gdpr::FoundBy::of(&subject_ref);
    let doc = gdpr::export_page(deps.store, &site, &subject, found_by, cursor, now, deps.page_bytes).await?;
    if cursor.is_none() {
        let mut counts: std::collections::BTreeMap<String, u64> =
            [("session".to_owned(), subject.sessions.len() as u64)].into();
        // The trail shows which exports rested on an unverified email (a count, no address).
        if found_by == gdpr::FoundBy::UnverifiedEmail {
            counts.insert("unverifiedEmailLookup".to_owned(), 1);
        }
        deps.store
            .append_audit(&gdpr::audit_record(
                deps.config,
                &requester,
                AuditAction::GdprExport,
                &subject,
                counts,
                now,
            ))
            .await?;
    }
    tracing::info!(
        sessions = subject.sessions.len(),
        more = !doc["next"].is_null(),
        "export page served"
    );
    Ok(doc)
}
