//! Authentication, the same way at every door: visitors ([`authenticate_visitor`])
//! at `$connect`, session resume and the GDPR routes; agents
//! ([`authenticate_agent`]) at `$connect`, every agent frame on an open socket
//! ([`recheck_agent_frame`]) and every HTTP call.
//!
//! A visitor is accepted when the token parses (`vt1.<session>.<secret>`), its
//! session is held and live (and, for chat, not being erased), and the secret's
//! SHA-256 equals the stored hash, compared in constant time, before the token's
//! expiry. Every failure is the same `unauthorized`: nothing tells a missing
//! session from a wrong secret.
//!
//! An agent is accepted when the token verifies (signature, site scope,
//! `exp`, `iat` skew and lifetime bounds, see [`crate::auth`]), the agent
//! exists and is active, the token was issued after the agent's last
//! revocation ([`Agent::accepts_token_issued_at`]), and the request's source
//! address (API Gateway's, never a header) is in the site's agent IP
//! allow-list when it has one. The agent and its site are read together in one
//! BatchGetItem ([`SiteStore::agent_and_site`]). Its role is the lower of the
//! token's and the agent's current one, so a demotion takes effect at once.
//!
//! Every agent refusal is logged as a [`SecurityEvent`] (reason, route, site,
//! agent, keyed IP tag), never with the IP or the token.

use std::net::IpAddr;

pub use crate::auth::access::{AuthenticatedAgent, Refusal, TokenFacts, check};
use crate::auth::{AuthError, PresentedVisitorToken};
use crate::clock::Timestamp;
use crate::config::Config;
use crate::domain::Session;
use crate::domain::{AgentId, SiteId};
use crate::error::{ApiError, ErrorCode};
use crate::security_log::SecurityEvent;
use crate::storage::{SessionStore, SessionTouch, SiteStore, StoreError, SubjectStore};

/// Which sessions a visitor token may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitorDoor {
    /// Chat (`$connect`, resume): a live session not being erased.
    Chat,
    /// The GDPR routes: a live session, also one an interrupted erasure fenced,
    /// so its visitor can see what is left and retry "Delete my data".
    Gdpr,
}

/// The session a presented visitor token opens, or `unauthorized` (the same
/// answer for a malformed token, a missing, expired or fenced session, a wrong
/// secret and an expired token's `token_expired`).
pub async fn authenticate_visitor(
    store: &(impl SessionStore + SubjectStore + ?Sized),
    token: &str,
    door: VisitorDoor,
    now: Timestamp,
) -> Result<Session, ApiError> {
    let presented = PresentedVisitorToken::parse(token)?;
    let session = match door {
        VisitorDoor::Chat => store.get_session(presented.session_id(), now).await?,
        VisitorDoor::Gdpr => store
            .session_any(presented.session_id())
            .await?
            .filter(|s| crate::policy::is_live(s.expires_at, now)),
    }
    .ok_or(AuthError::Invalid)?;
    presented.verify(&session.token_hash, session.token_expires_at, now)?;
    Ok(session)
}

/// Records a visitor's access ([`SessionStore::touch_session`]); a session erased
/// or fenced since it was read answers `unauthorized`, like a missing one.
pub async fn touch_visitor(
    store: &(impl SessionStore + ?Sized),
    session: &Session,
    touch: SessionTouch,
) -> Result<Session, ApiError> {
    store
        .touch_session(&session.id, touch)
        .await
        .map_err(gone_as_unauthorized)
}

/// A store answer for a session that vanished between two calls (erased,
/// fenced): `unauthorized`, as if it had never been there.
pub fn gone_as_unauthorized(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => AuthError::Invalid.into(),
        other => other.into(),
    }
}

// The refusal's client answers live here, beside the other API errors; the
// refusal itself and the pure check are in `crate::auth::access` (storage uses them).
impl Refusal {
    /// What a `$connect` or HTTP client is told: `forbidden` (403) for an address
    /// outside the allow-list (the credentials are fine, the place is not),
    /// `token_expired` (401) for an expired token, `unauthorized` (401) otherwise.
    pub fn api_error(self) -> ApiError {
        match self {
            Self::Token(e) => e.into(),
            Self::IpNotAllowed => ApiError::new(
                ErrorCode::Forbidden,
                "agents of this site may not connect from this address",
            ),
            Self::Inactive | Self::Revoked | Self::NoSite => AuthError::Invalid.into(),
        }
    }

    /// What an agent frame on an open socket is told before the socket is closed:
    /// always `unauthorized`, whatever the reason (docs/protocol.md).
    pub fn frame_error(self) -> ApiError {
        let message = match self {
            Self::Token(AuthError::Expired) => "token expired; reconnect with a new token",
            _ => "no longer authorized; reconnect",
        };
        ApiError::new(ErrorCode::Unauthorized, message)
    }
}

/// Logs a refusal as a security event.
pub fn log_refusal(
    config: &Config,
    refusal: Refusal,
    route: &'static str,
    site: Option<&SiteId>,
    agent: Option<&AgentId>,
    ip: Option<IpAddr>,
) {
    SecurityEvent {
        reason: refusal.reason(),
        route,
        site,
        agent,
        ip_tag: ip.map(|ip| config.pseudonymizer.ip_tag(ip)),
    }
    .log();
}

/// Authenticates an agent token presented at `$connect` or on an HTTP call
/// (`route` names it in the security log). `ip` is the source address from
/// API Gateway's request context.
pub async fn authenticate_agent(
    store: &impl SiteStore,
    config: &Config,
    token: &str,
    ip: Option<IpAddr>,
    route: &'static str,
    now: Timestamp,
) -> Result<AuthenticatedAgent, ApiError> {
    let claims = match config.agent_keys.verify(token, now) {
        Ok(c) => c,
        Err(e) => {
            log_refusal(config, e.into(), route, None, None, ip);
            return Err(e.into());
        }
    };
    let (agent, site) = store.agent_and_site(&claims.site, &claims.sub).await?;
    let facts = TokenFacts {
        role: claims.role,
        iat: claims.iat,
        exp: claims.exp,
    };
    check(agent, site, facts, ip, now).map_err(|r| {
        log_refusal(config, r, route, Some(&claims.site), Some(&claims.sub), ip);
        r.api_error()
    })
}

/// Why an agent frame was not let through.
#[derive(Debug)]
pub enum FrameRefusal {
    /// The agent may no longer act: answer `unauthorized` and close the socket.
    Refused(Refusal),
    /// Reading the agent failed; the frame fails, the socket stays.
    Store(StoreError),
}

/// Re-checks an agent's open connection for one frame (or, with route
/// `connect`, right after `$connect` recorded it): the token's expiry from the
/// connection record first (no read), then the agent and site in one
/// BatchGetItem. `ip` is the request's source address. Refusals are logged
/// under `route`.
#[allow(clippy::too_many_arguments)]
pub async fn recheck_agent_frame(
    store: &impl SiteStore,
    config: &Config,
    route: &'static str,
    site: &SiteId,
    agent: &AgentId,
    token: TokenFacts,
    ip: Option<IpAddr>,
    now: Timestamp,
) -> Result<AuthenticatedAgent, FrameRefusal> {
    let outcome = if token.exp <= now.epoch_seconds() {
        Err(Refusal::Token(AuthError::Expired))
    } else {
        let (a, s) = store.agent_and_site(site, agent).await.map_err(FrameRefusal::Store)?;
        check(a, s, token, ip, now)
    };
    outcome.map_err(|r| {
        log_refusal(config, r, route, Some(site), Some(agent), ip);
        FrameRefusal::Refused(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RetentionPolicy;
    use crate::domain::{Agent, AgentRole, Site};

    fn agent(active: bool, tokens_valid_after: Option<Timestamp>) -> Agent {
        Agent {
            site_id: SiteId::parse("acme").unwrap(),
            id: AgentId::parse("alice").unwrap(),
            display_name: "Alice".into(),
            role: AgentRole::Agent,
            active,
            created_at: Timestamp::from_secs(0),
            tokens_valid_after,
        }
    }

    fn site(allow: Option<&str>) -> Site {
        Site {
            id: SiteId::parse("acme").unwrap(),
            name: "Acme".into(),
            allowed_origins: vec![],
            retention: RetentionPolicy::default(),
            agent_ip_allowlist: allow.map(|n| vec![n.parse().unwrap()]),
            created_at: Timestamp::from_secs(0),
            updated_at: Timestamp::from_secs(0),
        }
    }

    const FACTS: TokenFacts = TokenFacts {
        role: AgentRole::Admin,
        iat: 1_000,
        exp: 5_000,
    };

    #[test]
    fn every_check_refuses_with_its_own_reason() {
        let now = Timestamp::from_secs(2_000);
        let ip = Some("192.0.2.9".parse().unwrap());
        let ok = check(
            Some(agent(true, None)),
            Some(site(Some("192.0.2.0/24"))),
            FACTS,
            ip,
            now,
        )
        .unwrap();
        assert_eq!(ok.role, AgentRole::Agent, "the lower of token and agent role");
        let cases = [
            (
                Some(agent(true, None)),
                Some(site(None)),
                Timestamp::from_secs(5_000),
                ip,
                "token_expired",
            ),
            (None, Some(site(None)), now, ip, "agent_inactive"),
            (Some(agent(false, None)), Some(site(None)), now, ip, "agent_inactive"),
            (Some(agent(true, None)), None, now, ip, "site_missing"),
            (
                Some(agent(true, None)),
                Some(site(Some("198.51.100.0/24"))),
                now,
                ip,
                "ip_not_allowed",
            ),
            (
                Some(agent(true, None)),
                Some(site(Some("192.0.2.0/24"))),
                now,
                None,
                "ip_not_allowed",
            ),
        ];
        for (i, (a, s, at, ip, reason)) in cases.into_iter().enumerate() {
            assert_eq!(check(a, s, FACTS, ip, at).unwrap_err().reason(), reason, "case {i}");
        }
    }

    #[test]
    fn revocation_refuses_tokens_issued_up_to_its_second() {
        let now = Timestamp::from_secs(2_000);
        let revoked = |at_ms: i64| {
            check(
                Some(agent(true, Some(Timestamp::from_millis(at_ms)))),
                Some(site(None)),
                FACTS,
                None,
                now,
            )
        };
        // The token's iat is 1000 s (minting rounds up, so it was minted in 999.001..=1000 s).
        assert!(revoked(999_000).is_ok(), "revoked in an earlier second");
        assert_eq!(revoked(999_999).unwrap_err(), Refusal::Revoked, "same second: refused");
        assert_eq!(revoked(1_000_000).unwrap_err(), Refusal::Revoked);
        assert_eq!(revoked(1_000_001).unwrap_err(), Refusal::Revoked);
    }

    #[test]
    fn frame_refusals_are_all_unauthorized() {
        for r in [
            Refusal::Token(AuthError::Expired),
            Refusal::Inactive,
            Refusal::Revoked,
            Refusal::IpNotAllowed,
            Refusal::NoSite,
        ] {
            assert_eq!(r.frame_error().code, ErrorCode::Unauthorized);
        }
        assert_eq!(Refusal::IpNotAllowed.api_error().code, ErrorCode::Forbidden);
        assert_eq!(Refusal::Revoked.api_error().code, ErrorCode::Unauthorized);
    }
}
