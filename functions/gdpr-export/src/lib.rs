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
//! Each token holder (a visitor's session, or a site's agent) may make
//! `EUROCHAT_EXPORTS_PER_HOUR` requests in any hour, pages included; over it
//! the answer is 429 with `Retry-After`.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chat_core::api::cors;
use chat_core::api::http::HttpRequest;
use chat_core::api::json;
use chat_core::auth::{RateScope, TokenHolder};
use chat_core::clock::Clock;
use chat_core::config::Config;
use chat_core::domain::AuditAction;
use chat_core::error::{ApiError, ErrorCode, json_response};
use chat_core::gdpr;
use chat_core::policy::RateDecision;
use chat_core::security_log::SecurityEvent;
use chat_core::storage::{
    AuditStore, ConnectionStore, MessageStore, RateLimitStore, SessionStore, SiteStore, SubjectStore,
};

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
    S: SiteStore + SessionStore + SubjectStore + MessageStore + ConnectionStore + AuditStore + RateLimitStore,
{
    let mut shared_with = None;
    let mut resp = match export(&HttpRequest::new(&event), deps, &mut shared_with).await {
        Ok(doc) => json_response(200, &doc),
        Err(e) => {
            e.log("export refused or failed");
            e.http_response()
        }
    };
    if let Some(origin) = &shared_with {
        cors::share_with(&mut resp, origin);
    }
    resp
}

async fn export<S>(
    req: &HttpRequest<'_>,
    deps: &Deps<'_, S>,
    shared_with: &mut Option<chat_core::domain::Origin>,
) -> Result<gdpr::ExportPage, ApiError>
where
    S: SiteStore + SessionStore + SubjectStore + MessageStore + ConnectionStore + AuditStore + RateLimitStore,
{
    let now = deps.clock.now();
    let (requester, origin) = gdpr::authenticate_request(deps.store, deps.config, req, "gdpr_export", now).await?;
    *shared_with = origin;
    let body = req.json_body()?;
    let subject_ref = gdpr::subject_ref(&body)?;
    gdpr::check_access(&requester, &subject_ref, json::opt_str(&body, "siteId")?)?;
    let cursor = json::opt_str(&body, "cursor")?;
    // A malformed cursor is bad input: refused before it counts against the limit.
    cursor.map(gdpr::parse_cursor).transpose()?;
    limit(req, deps, &requester, now).await?;
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
        more = doc.has_next(),
        "export page served"
    );
    Ok(doc)
}

/// Counts the request against the token holder's export limit. Every
/// well-formed request counts, pages included (a cursor can be replayed, and a
/// well-formed cursor of another subject is a guess worth slowing down); the
/// holder is keyed through the pseudonymizer, never stored readable.
async fn limit<S: RateLimitStore>(
    req: &HttpRequest<'_>,
    deps: &Deps<'_, S>,
    requester: &gdpr::Requester,
    now: chat_core::clock::Timestamp,
) -> Result<(), ApiError> {
    let (holder, agent) = match requester {
        gdpr::Requester::Agent { site, agent, .. } => (TokenHolder::Agent(site, agent), Some(agent)),
        gdpr::Requester::Subject { session, .. } => (TokenHolder::Session(&session.id), None),
    };
    let key = deps.config.pseudonymizer.holder_key(RateScope::Export, holder);
    if let RateDecision::Limited { retry_after } = deps.store.hit(&key, deps.config.export_rate, now).await? {
        SecurityEvent {
            reason: "rate_limited",
            route: "gdpr_export",
            site: Some(requester.site()),
            agent,
            ip_tag: req.source_ip().map(|ip| deps.config.pseudonymizer.ip_tag(ip)),
        }
        .log();
        return Err(ApiError::rate_limited(retry_after));
    }
    Ok(())
}
