//! The agent checks that need no I/O: token expiry, active, revocation, IP
//! allow-list, applied to an agent and site already read. They live beside the
//! credentials (not in `api`) so that a store can apply them between the read
//! and the write of one operation: a sent message re-checks its agent with the
//! same consistent read that fetches the session (issue 14).

use std::net::IpAddr;

use super::AuthError;
use crate::clock::Timestamp;
use crate::domain::{Agent, AgentRole, Site};

/// Why an agent was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token itself: malformed, forged, expired, from the future, too long-lived.
    Token(AuthError),
    /// The agent does not exist (any more) or is deactivated.
    Inactive,
    /// The token was issued at or before the agent's last revocation.
    Revoked,
    /// The site has an agent IP allow-list and the source address is not in it.
    IpNotAllowed,
    /// The token's site does not exist (any more).
    NoSite,
}

impl Refusal {
    /// Stable reason code for the security log.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Token(e) => e.reason(),
            Self::Inactive => "agent_inactive",
            Self::Revoked => "agent_revoked",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::NoSite => "site_missing",
        }
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        Self::Token(e)
    }
}

/// An agent let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedAgent {
    /// The agent as stored.
    pub agent: Agent,
    /// Its site as stored.
    pub site: Site,
    /// The role it acts with: the lower of the token's and the agent's.
    pub role: AgentRole,
    /// The token's `iat`, epoch seconds.
    pub token_iat: i64,
    /// The token's `exp`, epoch seconds.
    pub token_exp: i64,
}

/// What a token claims, for [`check`].
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts {
    /// The role the token grants (or, on a frame, the connection's role).
    pub role: AgentRole,
    /// Issued at, epoch seconds.
    pub iat: i64,
    /// Expires at, epoch seconds.
    pub exp: i64,
}

/// The checks on a stored agent and site, with no I/O: expiry, active,
/// revocation, IP allow-list. Returns the role to act with.
pub fn check(
    agent: Option<Agent>,
    site: Option<Site>,
    token: TokenFacts,
    ip: Option<IpAddr>,
    now: Timestamp,
) -> Result<AuthenticatedAgent, Refusal> {
    if token.exp <= now.epoch_seconds() {
        return Err(AuthError::Expired.into());
    }
    let agent = agent.filter(|a| a.active).ok_or(Refusal::Inactive)?;
    if !agent.accepts_token_issued_at(token.iat) {
        return Err(Refusal::Revoked);
    }
    let site = site.ok_or(Refusal::NoSite)?;
    // Without a source address there is nothing to check an allow-list against.
    let allowed = match ip {
        Some(ip) => site.allows_agent_ip(ip),
        None => site.agent_ip_allowlist.is_none(),
    };
    if !allowed {
        return Err(Refusal::IpNotAllowed);
    }
    Ok(AuthenticatedAgent {
        role: token.role.min(agent.role),
        agent,
        site,
        token_iat: token.iat,
        token_exp: token.exp,
    })
}
