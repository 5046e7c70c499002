//! `$connect`: authenticates a visitor or an agent and records the connection.
//!
//! The token comes from the query string (`?token=`), from the WebSocket
//! subprotocol (`Sec-WebSocket-Protocol: eurochat.v1, <token>`, echoed back as
//! `eurochat.v1`), or, for visitors, from the `eurochat_vt` cookie. The Origin
//! must be one of the site's; an agent must come from the site's IP allow-list
//! when it has one. Anything wrong rejects the handshake (401, 403 or 429) and
//! stores nothing but the per-IP attempt counter, which exists precisely to
//! slow down token guessing.

use std::net::IpAddr;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use chat_core::api::ws::{self, SUBPROTOCOL, WsRequest};
use chat_core::auth::{AuthError, PresentedVisitorToken, RateScope};
use chat_core::clock::{Clock, Timestamp};
use chat_core::config::Config;
use chat_core::domain::*;
use chat_core::error::{ApiError, ErrorCode};
use chat_core::policy::{self, RateDecision};
use chat_core::security_log::SecurityEvent;
use chat_core::storage::{ConnectionStore, RateLimitStore, SessionStore, SessionTouch, SiteStore, StoreError};

/// What the handler needs.
pub struct Deps<'a, S> {
    /// Sites, agents, sessions, connections, rate counters.
    pub store: &'a S,
    /// Time.
    pub clock: &'a dyn Clock,
    /// Configuration.
    pub config: &'a Config,
}

/// Handles one `$connect`. Never fails: a refusal is a status code.
pub async fn handle<S>(event: ApiGatewayWebsocketProxyRequest, deps: &Deps<'_, S>) -> ApiGatewayProxyResponse
where
    S: SiteStore + SessionStore + ConnectionStore + RateLimitStore,
{
    let req = WsRequest::new(&event);
    match connect(&req, deps).await {
        Ok((role, via_subprotocol)) => {
            tracing::info!(role, "connected");
            let mut r = ws::status(200);
            if via_subprotocol {
                r.headers
                    .insert("sec-websocket-protocol", http::HeaderValue::from_static(SUBPROTOCOL));
            }
            r
        }
        Err(e) => {
            tracing::info!(status = e.status(), code = e.code.as_str(), "connection refused");
            ws::reject(&e)
        }
    }
}

fn unauthorized() -> ApiError {
    AuthError::Invalid.into()
}

fn origin_refused() -> ApiError {
    ApiError::new(ErrorCode::OriginNotAllowed, "this origin may not use this site's chat")
}

async fn connect<S>(req: &WsRequest<'_>, deps: &Deps<'_, S>) -> Result<(&'static str, bool), ApiError>
where
    S: SiteStore + SessionStore + ConnectionStore + RateLimitStore,
{
    let now = deps.clock.now();
    let conn_id = req.connection_id()?;
    let ip = req
        .source_ip()
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "no source address"))?;
    let rate_key = deps.config.pseudonymizer.ip_key(RateScope::Connect, ip);
    if let RateDecision::Limited { retry_after } = deps.store.hit(&rate_key, deps.config.connect_rate, now).await? {
        SecurityEvent {
            reason: "rate_limited",
            route: "connect",
            ip_tag: Some(deps.config.pseudonymizer.ip_tag(ip)),
            ..SecurityEvent::default()
        }
        .log();
        return Err(ApiError::rate_limited(retry_after));
    }
    let (token, via_subprotocol) = match (req.query("token"), req.subprotocol_token()) {
        (Some(t), _) => (t, false),
        (None, Some(t)) => (t, true),
        (None, None) => (req.visitor_cookie().ok_or_else(unauthorized)?, false),
    };
    let origin = req
        .header("origin")
        .and_then(|o| Origin::parse(o).ok())
        .ok_or_else(origin_refused)?;
    let (site_id, principal) = if token.starts_with("at1.") {
        agent(deps, token, &origin, ip, now).await?
    } else {
        visitor(deps, token, &origin, now).await?
    };
    let role = match principal {
        Principal::Visitor { .. } => "visitor",
        Principal::Agent { .. } => "agent",
    };
    let conn = Connection {
        id: conn_id,
        site_id,
        principal,
        connected_at: now,
        expires_at: policy::connection_expiry(now),
    };
    // A visitor's session erased (or fenced) since it was read: the same answer as a bad token.
    deps.store.put_connection(&conn).await.map_err(|e| match e {
        StoreError::NotFound => unauthorized(),
        other => other.into(),
    })?;
    Ok((role, via_subprotocol))
}

async fn visitor<S: SiteStore + SessionStore>(
    deps: &Deps<'_, S>,
    token: &str,
    origin: &Origin,
    now: Timestamp,
) -> Result<(SiteId, Principal), ApiError> {
    let presented = PresentedVisitorToken::parse(token)?;
    let session = deps
        .store
        .get_session(presented.session_id(), now)
        .await?
        .ok_or_else(unauthorized)?;
    presented.verify(&session.token_hash, session.token_expires_at, now)?;
    let site = deps
        .store
        .get_site(&session.site_id)
        .await?
        .ok_or_else(origin_refused)?;
    if !site.allows_origin(origin) {
        return Err(origin_refused());
    }
    // Connecting is an access: an empty session lives 30 minutes from now.
    match deps
        .store
        .touch_session(
            &session.id,
            SessionTouch {
                now,
                renew_token: false,
            },
        )
        .await
    {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(unauthorized()),
        Err(e) => return Err(e.into()),
    }
    Ok((
        site.id,
        Principal::Visitor {
            session_id: session.id,
            visitor_id: session.visitor_id,
        },
    ))
}

async fn agent<S: SiteStore>(
    deps: &Deps<'_, S>,
    token: &str,
    origin: &Origin,
    ip: IpAddr,
    now: Timestamp,
) -> Result<(SiteId, Principal), ApiError> {
    let claims = deps.config.agent_keys.verify(token, now)?;
    // A deactivated or deleted agent's tokens stop working at once.
    let agent = deps
        .store
        .get_agent(&claims.site, &claims.sub)
        .await?
        .filter(|a| a.active)
        .ok_or_else(unauthorized)?;
    let site = deps.store.get_site(&claims.site).await?.ok_or_else(origin_refused)?;
    if !site.allows_origin(origin) {
        return Err(origin_refused());
    }
    if !site.allows_agent_ip(ip) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "agents of this site may not connect from this address",
        ));
    }
    // A token minted before a demotion carries no more than the agent's current role.
    let role = claims.role.min(agent.role);
    Ok((
        site.id,
        Principal::Agent {
            agent_id: agent.id,
            role,
        },
    ))
}
