//! `$connect`: authenticates a visitor or an agent and records the connection.
//!
//! The token comes from the WebSocket subprotocol only
//! (`Sec-WebSocket-Protocol: eurochat.v1, <token>`, echoed back as
//! `eurochat.v1`): never from the URL, which reaches access logs, browser
//! history and `Referer`s (a `?token=` is refused), and never from a cookie,
//! which eurochat does not set (see `docs/protocol.md`). The Origin must be one
//! of the site's; an agent is authenticated by
//! [`chat_core::api::authn::authenticate_agent`] (active, not revoked,
//! from the site's IP allow-list), the same check every agent frame and HTTP
//! call repeats. Anything wrong rejects the handshake (400, 401, 403 or 429) and
//! stores nothing but the per-IP attempt counter, which exists precisely to
//! slow down token guessing.

use std::net::IpAddr;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use chat_core::api::authn::{
    FrameRefusal, TokenFacts, VisitorDoor, authenticate_agent, authenticate_visitor, gone_as_unauthorized,
    recheck_agent_frame, touch_visitor,
};
use chat_core::api::cors::origin_refused;
use chat_core::api::ws::{self, SUBPROTOCOL, WsRequest};
use chat_core::auth::{AuthError, RateScope};
use chat_core::clock::{Clock, Timestamp};
use chat_core::config::Config;
use chat_core::domain::*;
use chat_core::error::{ApiError, ErrorCode};
use chat_core::policy::{self, RateDecision};
use chat_core::security_log::SecurityEvent;
use chat_core::storage::{ConnectionStore, RateLimitStore, SessionStore, SessionTouch, SiteStore, SubjectStore};

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
    S: SiteStore + SessionStore + SubjectStore + ConnectionStore + RateLimitStore,
{
    let req = WsRequest::new(&event);
    match connect(&req, deps).await {
        Ok(role) => {
            tracing::info!(role, "connected");
            let mut r = ws::status(200);
            // The token came as the second subprotocol; select the first, never echo the token.
            r.headers
                .insert("sec-websocket-protocol", http::HeaderValue::from_static(SUBPROTOCOL));
            r
        }
        Err(e) => {
            e.log("connection refused or failed");
            ws::reject(&e)
        }
    }
}

/// A refused visitor (or tokenless) handshake, for operators tracing token guessing:
/// the reason and a keyed tag of the address, nothing personal.
fn log_refused<S>(deps: &Deps<'_, S>, ip: IpAddr, reason: &'static str) {
    chat_core::security_log::SecurityEvent {
        reason,
        route: "connect",
        site: None,
        agent: None,
        ip_tag: Some(deps.config.pseudonymizer.ip_tag(ip)),
    }
    .log();
}

fn unauthorized() -> ApiError {
    AuthError::Invalid.into()
}

async fn connect<S>(req: &WsRequest<'_>, deps: &Deps<'_, S>) -> Result<&'static str, ApiError>
where
    S: SiteStore + SessionStore + SubjectStore + ConnectionStore + RateLimitStore,
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
    // A token in the URL has already leaked into logs; refuse it so no client relies on it.
    if req.query("token").is_some() {
        log_refused(deps, ip, "token_in_url");
        return Err(ApiError {
            field: Some("token"),
            ..ApiError::new(
                ErrorCode::InvalidRequest,
                "a token is never accepted in the URL: offer it as the WebSocket subprotocol",
            )
        });
    }
    let Some(token) = req.subprotocol_token() else {
        log_refused(deps, ip, "no_token");
        return Err(unauthorized());
    };
    let Some(origin) = req.header("origin").and_then(|o| Origin::from_header(o).ok()) else {
        log_refused(deps, ip, "origin_not_allowed");
        return Err(origin_refused());
    };
    let (site_id, principal) = if token.starts_with("at1.") {
        // Agent refusals are logged where they are decided, with the site and agent.
        agent(deps, token, &origin, ip, now).await?
    } else {
        visitor(deps, token, &origin, now)
            .await
            .inspect_err(|e| log_refused(deps, ip, e.code.as_str()))?
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
    deps.store.put_connection(&conn).await.map_err(gone_as_unauthorized)?;
    if let Principal::Agent {
        agent_id,
        role,
        token_exp,
        token_iat,
    } = &conn.principal
    {
        // Written, then re-read: a revocation (or a new allow-list) that removed the
        // agent's connection records just before this write is seen by this read, so
        // a revoked agent never keeps a record that fan-out would deliver to.
        let facts = TokenFacts {
            role: *role,
            iat: *token_iat,
            exp: *token_exp,
        };
        if let Err(refused) = recheck_agent_frame(
            deps.store,
            deps.config,
            "connect",
            &conn.site_id,
            agent_id,
            facts,
            Some(ip),
            now,
        )
        .await
        {
            deps.store.delete_connection(&conn.id).await?;
            return Err(match refused {
                FrameRefusal::Refused(r) => r.api_error(),
                FrameRefusal::Store(e) => e.into(),
            });
        }
    }
    Ok(role)
}

async fn visitor<S: SiteStore + SessionStore + SubjectStore>(
    deps: &Deps<'_, S>,
    token: &str,
    origin: &Origin,
    now: Timestamp,
) -> Result<(SiteId, Principal), ApiError> {
    let session = authenticate_visitor(deps.store, token, VisitorDoor::Chat, now).await?;
    let site = deps
        .store
        .get_site(&session.site_id)
        .await?
        .ok_or_else(origin_refused)?;
    if !site.allows_origin(origin) {
        return Err(origin_refused());
    }
    // Connecting is an access: an empty session lives 30 minutes from now.
    touch_visitor(
        deps.store,
        &session,
        SessionTouch {
            now,
            renew_token: false,
        },
    )
    .await?;
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
    let ok = authenticate_agent(deps.store, deps.config, token, Some(ip), "connect", now).await?;
    // The console this deployment serves is the agents' own page, on no site's list.
    let console = deps.config.console_origins.contains(origin);
    if !console && !ok.site.allows_origin(origin) {
        chat_core::security_log::SecurityEvent {
            reason: "origin_not_allowed",
            route: "connect",
            site: Some(&ok.site.id),
            agent: Some(&ok.agent.id),
            ip_tag: Some(deps.config.pseudonymizer.ip_tag(ip)),
        }
        .log();
        return Err(origin_refused());
    }
    // The token's expiry and issue time go with the connection, so every frame
    // re-checks them without verifying the token again.
    Ok((
        ok.site.id,
        Principal::Agent {
            agent_id: ok.agent.id,
            role: ok.role,
            token_exp: ok.token_exp,
            token_iat: ok.token_iat,
        },
    ))
}
