//! `$connect`: authenticates a visitor or an agent and records the connection.
//!
//! Deployed, the function plays both halves of the handshake: API Gateway first
//! calls it as the `$connect` route's REQUEST authorizer ([`authorize`]), which
//! decides; its verdict (the principal, or the refusal) then reaches the
//! `$connect` route ([`handle`]), which records the connection, and every later
//! route of the connection, which so never reads the connection record to know
//! who sent a frame ([`chat_core::api::verdict`]).
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

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerResponse, ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use chat_core::api::authn::{
    FrameRefusal, TokenFacts, VisitorDoor, authenticate_agent, authenticate_visitor, gone_as_unauthorized,
    recheck_agent_frame, touch_visitor,
};
use chat_core::api::cors::origin_refused;
use chat_core::api::verdict::Verdict;
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

/// The two events this function receives: the authorizer's carries the route's
/// `methodArn` (and `type: REQUEST`), the `$connect` route's does not.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub enum Invocation {
    /// The `$connect` route's authorizer call.
    Authorize(Box<AuthorizerRequest>),
    /// The `$connect` route.
    Connect(Box<ApiGatewayWebsocketProxyRequest>),
}

/// What the function answers each [`Invocation`].
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// The authorizer's policy and verdict.
    Authorize(AuthorizerResponse),
    /// The handshake's answer.
    Connect(ApiGatewayProxyResponse),
}

/// The `$connect` authorizer's event: a `$connect` request plus the route's ARN.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRequest {
    /// The `$connect` route's ARN, the resource the policy allows.
    pub method_arn: String,
    /// Headers, query and request context, as in the `$connect` event.
    #[serde(flatten)]
    pub request: ApiGatewayWebsocketProxyRequest,
}

/// The `$connect` authorizer: decides the handshake (everything but recording the
/// connection) and returns the verdict as context. Never fails: a refusal is part
/// of the verdict, which `$connect` answers (see [`chat_core::api::verdict`]).
pub async fn authorize<S>(event: AuthorizerRequest, deps: &Deps<'_, S>) -> AuthorizerResponse
where
    S: SiteStore + SessionStore + SubjectStore + ConnectionStore + RateLimitStore,
{
    let req = WsRequest::new(&event.request);
    let verdict = match authenticate(&req, deps).await {
        Ok((site_id, principal)) => Verdict::Admitted { site_id, principal },
        Err(e) => {
            e.log("connection refused or failed");
            Verdict::refused(&e)
        }
    };
    verdict.authorizer_response(&event.method_arn)
}

/// What the authorizer answers API Gateway.
pub type AuthorizerResponse = ApiGatewayCustomAuthorizerResponse<serde_json::Map<String, serde_json::Value>>;

/// Handles one `$connect`: answers the authorizer's verdict, recording an admitted
/// connection. Without a verdict (no authorizer in front, e.g. `cargo lambda
/// invoke` with a bare event) it decides the handshake itself first. Never fails:
/// a refusal is a status code.
pub async fn handle<S>(event: ApiGatewayWebsocketProxyRequest, deps: &Deps<'_, S>) -> ApiGatewayProxyResponse
where
    S: SiteStore + SessionStore + SubjectStore + ConnectionStore + RateLimitStore,
{
    let req = WsRequest::new(&event);
    let decided = match req.verdict() {
        Some(Verdict::Refused {
            status,
            body,
            retry_after,
        }) => {
            // Logged by the authorizer, with its cause.
            tracing::info!(status, "connection refused by the authorizer");
            return ws::reject_verdict(status, &body, retry_after);
        }
        Some(Verdict::Admitted { site_id, principal }) => Ok((site_id, principal)),
        None => authenticate(&req, deps).await,
    };
    let recorded = match decided {
        Ok((site_id, principal)) => record(&req, deps, site_id, principal).await,
        Err(e) => Err(e),
    };
    match recorded {
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

/// Decides a handshake: per-IP rate limit, the token (subprotocol only), the
/// Origin, then the visitor's session or the agent's authorization. Stores
/// nothing but the per-IP counter and a visitor's access time.
async fn authenticate<S>(req: &WsRequest<'_>, deps: &Deps<'_, S>) -> Result<(SiteId, Principal), ApiError>
where
    S: SiteStore + SessionStore + SubjectStore + ConnectionStore + RateLimitStore,
{
    let now = deps.clock.now();
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
    if token.starts_with("at1.") {
        // Agent refusals are logged where they are decided, with the site and agent.
        return agent(deps, token, &origin, ip, now).await;
    }
    let decided = visitor(deps, token, &origin, now).await;
    if let Err(e) = &decided {
        log_refused(deps, ip, e.code.as_str());
    }
    decided
}

/// Records an admitted connection; an agent is re-checked after the write.
async fn record<S>(
    req: &WsRequest<'_>,
    deps: &Deps<'_, S>,
    site_id: SiteId,
    principal: Principal,
) -> Result<&'static str, ApiError>
where
    S: SiteStore + SessionStore + SubjectStore + ConnectionStore + RateLimitStore,
{
    let now = deps.clock.now();
    let conn_id = req.connection_id()?;
    let ip = req.source_ip();
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
            ip,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> serde_json::Value {
        let path = format!("{}/../../tests/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_authorizer_call_and_the_route_call_are_told_apart() {
        let mut e = event("ws-connect");
        assert!(matches!(
            serde_json::from_value::<Invocation>(e.clone()).unwrap(),
            Invocation::Connect(_)
        ));
        e["type"] = "REQUEST".into();
        e["methodArn"] = "arn:aws:execute-api:eu-central-1:123456789012:abc/prod/$connect".into();
        let Invocation::Authorize(a) = serde_json::from_value::<Invocation>(e).unwrap() else {
            panic!("an authorizer event read as a route event");
        };
        // Nothing of the request is lost on the way through the untagged enum.
        let req = WsRequest::new(&a.request);
        assert!(req.connection_id().is_ok());
        assert!(req.source_ip().is_some());
        assert!(req.header("origin").is_some());
    }
}
