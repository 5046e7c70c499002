//! `POST /v1/sessions`: creates an anonymous visitor session, or resumes one.
//!
//! A visitor without a token gets a new session and a six-month token (in the
//! body only: eurochat sets no cookie, the widget keeps the token in
//! `localStorage`; see `docs/protocol.md`). A visitor with a valid token gets
//! the same session back and the token's lifetime renewed; an invalid one is
//! 401 and changes nothing (the widget then drops it and asks afresh).
//!
//! Creating a session is limited per IP (IPv6: per /64) by a sliding window
//! (`EUROCHAT_SESSIONS_PER_MINUTE`); over it the answer is 429 with
//! `Retry-After` and nothing is stored. Resuming is not limited.

use std::net::IpAddr;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chat_core::api::authn::{VisitorDoor, authenticate_visitor, gone_as_unauthorized, touch_visitor};
use chat_core::api::clip_user_agent;
use chat_core::api::cors::{self, origin_refused};
use chat_core::api::http::HttpRequest;
use chat_core::api::json::{self, Object};
use chat_core::auth::RateScope;
use chat_core::auth::issue_visitor_token;
use chat_core::clock::{Clock, Timestamp};
use chat_core::config::Config;
use chat_core::domain::*;
use chat_core::error::{ApiError, json_response};
use chat_core::policy::RateDecision;
use chat_core::security_log::SecurityEvent;
use chat_core::storage::{RateLimitStore, SessionStore, SessionTouch, SiteStore, SubjectStore};
use serde::Serialize;

/// What the handler needs.
pub struct Deps<'a, S> {
    /// Sites and sessions.
    pub store: &'a S,
    /// Time.
    pub clock: &'a dyn Clock,
    /// Configuration.
    pub config: &'a Config,
}

/// The response body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionResponse {
    session_id: String,
    visitor_id: String,
    token: String,
    token_expires_at: Timestamp,
    expires_at: Timestamp,
    last_seq: u64,
    resumed: bool,
}

/// Handles one request. Never fails: every error is an HTTP response.
pub async fn handle<S: SiteStore + SessionStore + SubjectStore + RateLimitStore>(
    event: ApiGatewayV2httpRequest,
    deps: &Deps<'_, S>,
) -> ApiGatewayV2httpResponse {
    let req = HttpRequest::new(&event);
    let mut shared_with = None;
    let mut resp = match create_or_resume(&req, deps, &mut shared_with).await {
        Ok((status, body)) => {
            tracing::info!(status, resumed = body.resumed, "session response");
            json_response(status, &body)
        }
        Err(e) => {
            e.log("session request refused or failed");
            e.http_response()
        }
    };
    // Only an origin the site lists may read the answer (errors after that check included).
    if let Some(origin) = &shared_with {
        cors::share_with(&mut resp, origin);
    }
    resp
}

async fn create_or_resume<S: SiteStore + SessionStore + SubjectStore + RateLimitStore>(
    req: &HttpRequest<'_>,
    deps: &Deps<'_, S>,
    shared_with: &mut Option<Origin>,
) -> Result<(u16, SessionResponse), ApiError> {
    let now = deps.clock.now();
    let body = req.json_body()?;
    let site_id = SiteId::parse(json::req_str(&body, "siteId")?)?;
    let prechat_input = json::opt_object(&body, "prechat")?;
    let origin = req
        .header("origin")
        .and_then(|o| Origin::from_header(o).ok())
        .ok_or_else(origin_refused)?;
    // An unknown site and a foreign origin answer the same: nothing about which sites exist.
    let site = deps
        .store
        .get_site(&site_id)
        .await?
        .ok_or_else(origin_refused)?
        .within(&deps.config.policy_limit);
    if !site.allows_origin(&origin) {
        return Err(origin_refused());
    }
    *shared_with = Some(origin);
    let prechat = prechat_input.map(|p| parse_prechat(p, now)).transpose()?;
    let email_lookup = prechat
        .as_ref()
        .and_then(|p| p.email.as_ref())
        .map(|e| deps.config.pseudonymizer.email_lookup(&site.id, e));

    // Resume with the token from the body (strict: an invalid one is refused).
    if let Some(token) = json::opt_str(&body, "token")? {
        let session = resume(deps, &site, token, now).await?;
        let session = match &prechat {
            // Erased (or fenced) since the resume read it: the same answer as a missing session.
            Some(p) => deps
                .store
                .set_prechat(&session.id, p, email_lookup.as_deref(), now)
                .await
                .map_err(gone_as_unauthorized)?,
            None => session,
        };
        return Ok((200, response(&session, token.to_owned(), true)));
    }

    // Only a request that creates a session counts: a resume creates nothing,
    // and a refused or malformed request has already been answered above, so
    // bad input stores nothing, not even a counter.
    let source_ip = req.source_ip();
    if let Some(ip) = source_ip {
        let rate_key = deps.config.pseudonymizer.ip_key(RateScope::CreateSession, ip);
        if let RateDecision::Limited { retry_after } = deps.store.hit(&rate_key, deps.config.session_rate, now).await? {
            SecurityEvent {
                reason: "rate_limited",
                route: "create_session",
                site: Some(&site.id),
                ip_tag: Some(deps.config.pseudonymizer.ip_tag(ip)),
                ..SecurityEvent::default()
            }
            .log();
            return Err(ApiError::rate_limited(retry_after));
        }
    }

    let id = SessionId::generate();
    let issued = issue_visitor_token(&id);
    let ip = source_ip
        .and_then(|ip: IpAddr| site.retention.ip_policy.apply(ip))
        .map(|address| StoredIp {
            address,
            recorded_at: now,
        });
    let mut session = Session::start(id, &site, VisitorId::generate(), issued.hash.clone(), now);
    session.ip = ip;
    session.user_agent = req.header("user-agent").map(clip_user_agent);
    session.prechat = prechat;
    session.email_lookup = email_lookup;
    deps.store.create_session(&session).await?;
    Ok((201, response(&session, issued.token, false)))
}

async fn resume<S: SessionStore + SubjectStore>(
    deps: &Deps<'_, S>,
    site: &Site,
    token: &str,
    now: Timestamp,
) -> Result<Session, ApiError> {
    let session = authenticate_visitor(deps.store, token, VisitorDoor::Chat, now).await?;
    // Another site's session looks like an invalid token: nothing about it is revealed.
    if session.site_id != site.id {
        return Err(chat_core::auth::AuthError::Invalid.into());
    }
    touch_visitor(deps.store, &session, SessionTouch { now, renew_token: true }).await
}

fn parse_prechat(p: &Object, now: Timestamp) -> Result<PreChat, ApiError> {
    let name = json::opt_str(p, "name")?.map(PersonName::parse).transpose()?;
    let email = json::opt_str(p, "email")?.map(Email::parse).transpose()?;
    let consent =
        json::opt_object(p, "consent")?.ok_or(ValidationError::new("consent", "is required with pre-chat data"))?;
    let purpose = json::req_str(consent, "purpose")?;
    let policy_version = json::req_str(consent, "policyVersion")?;
    let short = |field: &'static str, v: &str| {
        if v.trim().is_empty() || v.len() > 100 {
            Err(ValidationError::new(field, "must be 1-100 characters"))
        } else {
            Ok(v.trim().to_owned())
        }
    };
    if name.is_none() && email.is_none() {
        return Err(ValidationError::new("prechat", "needs a name or an email").into());
    }
    Ok(PreChat {
        name,
        email,
        consent: Consent {
            purpose: short("purpose", purpose)?,
            policy_version: short("policyVersion", policy_version)?,
            given_at: now,
        },
    })
}

fn response(s: &Session, token: String, resumed: bool) -> SessionResponse {
    SessionResponse {
        session_id: s.id.to_string(),
        visitor_id: s.visitor_id.to_string(),
        token,
        token_expires_at: s.token_expires_at,
        expires_at: s.expires_at,
        last_seq: s.last_seq,
        resumed,
    }
}
