//! Security events: refused connects, refused or revoked tokens, allow-list
//! refusals, rate limits. An operator must be able to trace an attack from the
//! logs, but the logs must hold nothing personal, so an event carries only a
//! stable reason code, the site id, the agent id (a staff identifier, not a
//! visitor's) and a keyed hash of the source IP (`Pseudonymizer::ip_tag`),
//! which groups requests from one network without revealing it.

use crate::domain::{AgentId, SiteId};

/// Log target of every security event, so operators can filter on it.
pub const TARGET: &str = "eurochat::security";

/// One security event. Build it with what is known at the point of refusal and
/// call [`SecurityEvent::log`].
#[derive(Debug, Clone, Default)]
pub struct SecurityEvent<'a> {
    /// Stable reason code, e.g. `agent_revoked`, `ip_not_allowed`, `rate_limited`.
    pub reason: &'static str,
    /// Where it happened: `connect`, `frame`, `create_session`, `gdpr_export`, `gdpr_erase`.
    pub route: &'static str,
    /// The site concerned, when known.
    pub site: Option<&'a SiteId>,
    /// The agent concerned, when the request claimed to be one.
    pub agent: Option<&'a AgentId>,
    /// Keyed hash of the source IP (never the IP itself).
    pub ip_tag: Option<String>,
}

impl SecurityEvent<'_> {
    /// Writes the event at `warn` under [`TARGET`].
    pub fn log(&self) {
        tracing::warn!(
            target: TARGET,
            reason = self.reason,
            route = self.route,
            site = self.site.map(SiteId::as_str),
            agent = self.agent.map(AgentId::as_str),
            ip_tag = self.ip_tag.as_deref(),
            "security event"
        );
    }
}
