//! The operator's tool: sites (origins, retention, IP policy, agent IP
//! allow-list), agents, and agent tokens, against the same store the functions
//! use. The binary (`eurochat-admin`) is argument parsing around these functions.

use std::time::Duration;

use chat_core::auth::AgentTokenKeys;
use chat_core::clock::Timestamp;
use chat_core::domain::*;
use chat_core::policy::{IpPolicy, RetentionPolicy};
use chat_core::storage::{SiteStore, StoreError};

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// An argument is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Something the command needs does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What to set on a site; `None` keeps the current value (or the default for a new site).
#[derive(Debug, Clone, Default)]
pub struct SiteSpec {
    /// The site.
    pub id: String,
    /// Its label.
    pub name: Option<String>,
    /// Allowed origins (replaces the list when non-empty).
    pub origins: Vec<String>,
    /// Conversation retention in days.
    pub retention_days: Option<u32>,
    /// `full`, `truncated` or `none`.
    pub ip_policy: Option<String>,
    /// IP retention in days.
    pub ip_retention_days: Option<u32>,
    /// Agent IP allow-list (CIDRs); `Some(vec![])` removes it.
    pub agent_ips: Option<Vec<String>>,
}

/// Creates or updates a site.
pub async fn put_site(store: &impl SiteStore, spec: &SiteSpec, now: Timestamp) -> Result<Site, AdminError> {
    let id = SiteId::parse(&spec.id)?;
    let existing = store.get_site(&id).await?;
    let origins = spec
        .origins
        .iter()
        .map(|o| Origin::parse(o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut site = match existing {
        Some(s) => s,
        None => {
            if origins.is_empty() {
                return Err(ValidationError::new("origin", "a new site needs at least one allowed origin").into());
            }
            Site {
                id: id.clone(),
                name: id.to_string(),
                allowed_origins: Vec::new(),
                retention: RetentionPolicy::default(),
                agent_ip_allowlist: None,
                created_at: now,
                updated_at: now,
            }
        }
    };
    if let Some(name) = &spec.name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ValidationError::new("name", "must be 1-100 characters").into());
        }
        site.name = name.to_owned();
    }
    if !origins.is_empty() {
        site.allowed_origins = origins;
    }
    if let Some(d) = spec.retention_days {
        site.retention.conversation_days = d;
    }
    if let Some(p) = &spec.ip_policy {
        site.retention.ip_policy =
            IpPolicy::parse(p).ok_or(ValidationError::new("ipPolicy", "must be full, truncated or none"))?;
    }
    if let Some(d) = spec.ip_retention_days {
        site.retention.ip_retention_days = d;
    }
    site.retention.validate()?;
    if let Some(ips) = &spec.agent_ips {
        let nets = ips
            .iter()
            .map(|n| n.parse::<ipnet::IpNet>().map(|n| n.trunc()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ValidationError::new("agentIp", "must be CIDRs such as 192.0.2.0/24"))?;
        site.agent_ip_allowlist = (!nets.is_empty()).then_some(nets);
    }
    site.updated_at = now;
    store.put_site(&site).await?;
    Ok(site)
}

/// Creates or updates an agent of an existing site.
pub async fn put_agent(
    store: &impl SiteStore,
    site: &str,
    agent: &str,
    display_name: &str,
    role: AgentRole,
    active: bool,
    now: Timestamp,
) -> Result<Agent, AdminError> {
    let site_id = SiteId::parse(site)?;
    let id = AgentId::parse(agent)?;
    store.get_site(&site_id).await?.ok_or(AdminError::NotFound("site"))?;
    let name = display_name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ValidationError::new("name", "must be 1-100 characters").into());
    }
    let created_at = store.get_agent(&site_id, &id).await?.map_or(now, |a| a.created_at);
    let agent = Agent {
        site_id,
        id,
        display_name: name.to_owned(),
        role,
        active,
        created_at,
    };
    store.put_agent(&agent).await?;
    Ok(agent)
}

/// Longest agent token lifetime the tool mints (30 days).
pub const MAX_TOKEN_HOURS: u64 = 720;

/// Mints a token for an active agent, with the agent's current role.
pub async fn mint_agent_token(
    store: &impl SiteStore,
    keys: &AgentTokenKeys,
    site: &str,
    agent: &str,
    hours: u64,
    now: Timestamp,
) -> Result<String, AdminError> {
    if !(1..=MAX_TOKEN_HOURS).contains(&hours) {
        return Err(ValidationError::new("ttlHours", "must be between 1 and 720").into());
    }
    let site_id = SiteId::parse(site)?;
    let agent = store
        .get_agent(&site_id, &AgentId::parse(agent)?)
        .await?
        .filter(|a| a.active)
        .ok_or(AdminError::NotFound("active agent"))?;
    Ok(keys.mint(&site_id, &agent.id, agent.role, now, Duration::from_secs(hours * 3600)))
}
