//! Sites (tenants) and their agents: the data an operator manages, including
//! the site's retention settings and who may connect from where.

use serde::{Deserialize, Serialize};

use super::RetentionPolicy;
use super::{AgentId, Origin, SiteId, ValidationError};
use crate::clock::Timestamp;
use crate::policy::MAX_RETENTION_DAYS;

/// An agent's permissions on their site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentRole {
    /// Chats with visitors.
    Agent,
    /// Also manages the site's data: GDPR export and erasure, conversation deletion.
    Admin,
}

/// A site (tenant) and its privacy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// The site's id.
    pub id: SiteId,
    /// A label for agents and operators (not personal data).
    pub name: String,
    /// Origins the widget may be embedded on; requests from others are refused.
    pub allowed_origins: Vec<Origin>,
    /// How long data is kept and how IPs are stored.
    pub retention: RetentionPolicy,
    /// When set, agents may connect only from these networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ip_allowlist: Option<Vec<ipnet::IpNet>>,
    /// When the site was created.
    pub created_at: Timestamp,
    /// When its settings last changed.
    pub updated_at: Timestamp,
}

impl Site {
    /// The site as this deployment runs it: its retention capped by the
    /// deployment's limit (see [`RetentionPolicy::within`]). Every function that
    /// stores, reports or sweeps by the site's policy applies this to the site it
    /// loads, so the three agree.
    pub fn within(mut self, limit: &RetentionPolicy) -> Self {
        self.retention = self.retention.within(limit);
        self
    }

    /// Whether `origin` may host this site's widget.
    pub fn allows_origin(&self, origin: &Origin) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }

    /// Whether an agent at `ip` may connect. Without an allow-list every address may.
    pub fn allows_agent_ip(&self, ip: std::net::IpAddr) -> bool {
        match &self.agent_ip_allowlist {
            None => true,
            Some(nets) => nets.iter().any(|n| n.contains(&ip)),
        }
    }
}

/// One of a site's agents. Tokens are minted for an active agent; deactivating
/// the agent, or revoking its tokens, refuses every token already issued, at the
/// next connect, frame or HTTP call (see [`Agent::accepts_token_issued_at`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// The site the agent works for.
    pub site_id: SiteId,
    /// The agent's id.
    pub id: AgentId,
    /// Name shown to visitors in the chat.
    pub display_name: String,
    /// Permissions.
    pub role: AgentRole,
    /// Whether the agent may still connect.
    pub active: bool,
    /// When the agent was created.
    pub created_at: Timestamp,
    /// Tokens issued at or before this instant are refused everywhere. Set by
    /// deactivation and by `eurochat-admin revoke-tokens`; reactivation keeps it,
    /// so old tokens stay dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_valid_after: Option<Timestamp>,
}

impl Agent {
    /// Whether a token with this `iat` (epoch seconds) survives the agent's
    /// revocations. `iat` has whole seconds, rounded up when minted, and
    /// revocations have milliseconds: a token is accepted only if its `iat` is
    /// after the revocation instant rounded up to the whole second. So a token
    /// minted before the revocation, or within the same second, is refused.
    pub fn accepts_token_issued_at(&self, iat: i64) -> bool {
        self.tokens_valid_after.is_none_or(|t| iat > t.epoch_seconds())
    }
}

// Defined here rather than in `policy`: the bounds are a site's data, refused
// with the domain's `ValidationError`, and `policy` stays free of domain types
// (it imports only `clock`), so the two modules do not import each other.
impl RetentionPolicy {
    /// Checks the bounds an operator may set: 1 day to 10 years.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=MAX_RETENTION_DAYS).contains(&self.conversation_days) {
            return Err(ValidationError::new("conversationDays", "must be between 1 and 3650"));
        }
        if !(1..=MAX_RETENTION_DAYS).contains(&self.ip_retention_days) {
            return Err(ValidationError::new("ipRetentionDays", "must be between 1 and 3650"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_bounds() {
        assert!(RetentionPolicy::default().validate().is_ok());
        let bad = RetentionPolicy {
            conversation_days: 0,
            ..RetentionPolicy::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "conversationDays");
        let bad = RetentionPolicy {
            ip_retention_days: MAX_RETENTION_DAYS + 1,
            ..RetentionPolicy::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "ipRetentionDays");
    }

    #[test]
    fn agent_ip_allowlist_and_token_revocation() {
        let mut site = Site {
            id: SiteId::parse("acme").unwrap(),
            name: "acme".into(),
            allowed_origins: vec![Origin::parse("https://shop.example").unwrap()],
            retention: RetentionPolicy::default(),
            agent_ip_allowlist: None,
            created_at: Timestamp::from_secs(0),
            updated_at: Timestamp::from_secs(0),
        };
        let ip = "203.0.113.7".parse().unwrap();
        assert!(site.allows_agent_ip(ip), "no allow-list: every address");
        site.agent_ip_allowlist = Some(vec!["198.51.100.0/24".parse().unwrap()]);
        assert!(!site.allows_agent_ip(ip));
        assert!(site.allows_origin(&Origin::parse("https://shop.example:443").unwrap()));
        assert!(!site.allows_origin(&Origin::parse("https://other.example").unwrap()));

        let agent = Agent {
            site_id: site.id.clone(),
            id: AgentId::parse("alice").unwrap(),
            display_name: "Alice".into(),
            role: AgentRole::Agent,
            active: true,
            created_at: Timestamp::from_secs(0),
            tokens_valid_after: Some(Timestamp::from_millis(10_500)),
        };
        assert!(!agent.accepts_token_issued_at(11), "same second as the revocation");
        assert!(agent.accepts_token_issued_at(12));
    }
}
