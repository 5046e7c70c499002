//! The operator's tool: sites (origins, retention, IP policy, agent IP
//! allow-list), agents, agent tokens and their revocation, against the same
//! store the functions use. The binary (`eurochat-admin`) is argument parsing
//! around these functions.

use std::time::Duration;

use chat_core::auth::{AgentTokenKeys, MAX_AGENT_TOKEN_LIFETIME};
use chat_core::clock::Timestamp;
use chat_core::domain::*;
use chat_core::domain::{IpPolicy, RetentionPolicy};
use chat_core::gateway::ConnectionGateway;
use chat_core::storage::{ConnectionStore, SiteStore, StoreError};

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
    /// The management API could not close a connection.
    #[error("closing a connection: {0}")]
    Gateway(chat_core::gateway::GatewayError),
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
pub async fn put_site(
    store: &(impl SiteStore + ConnectionStore),
    spec: &SiteSpec,
    now: Timestamp,
) -> Result<Site, AdminError> {
    let id = SiteId::parse(&spec.id)?;
    let existing = store.get_site(&id).await?;
    let origins = spec
        .origins
        .iter()
        .map(|o| Origin::parse(o))
        .collect::<Result<Vec<_>, _>>()?;
    let existing_allowlist = existing.as_ref().and_then(|s| s.agent_ip_allowlist.clone());
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
    let allowlist_before = existing_allowlist;
    site.updated_at = now;
    store.put_site(&site).await?;
    // A new or narrower allow-list applies to agents already connected too: their
    // records go, so they receive nothing more and must reconnect from an allowed
    // address (every agent frame re-checks the list as well).
    if site.agent_ip_allowlist.is_some() && site.agent_ip_allowlist != allowlist_before {
        forget_agent_connections(store, site.id.as_str(), None, now).await?;
    }
    Ok(site)
}

/// Creates or updates an agent of an existing site. Deactivating revokes every
/// token issued so far (`tokensValidAfter` = now); reactivating keeps that, so
/// old tokens stay dead and the agent needs a new one.
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
    let existing = store.get_agent(&site_id, &id).await?;
    let created_at = existing.as_ref().map_or(now, |a| a.created_at);
    let kept = existing.and_then(|a| a.tokens_valid_after);
    let agent = Agent {
        site_id,
        id,
        display_name: name.to_owned(),
        role,
        active,
        created_at,
        tokens_valid_after: if active { kept } else { kept.max(Some(now)) },
    };
    store.put_agent(&agent).await?;
    Ok(agent)
}

/// Revokes every token of an agent issued so far (`tokensValidAfter` = now): they
/// are refused at the next connect, frame or HTTP call. Tokens minted afterwards
/// work (see [`mint_agent_token`]).
pub async fn revoke_tokens(
    store: &impl SiteStore,
    site: &str,
    agent: &str,
    now: Timestamp,
) -> Result<Agent, AdminError> {
    let site_id = SiteId::parse(site)?;
    let mut agent = store
        .get_agent(&site_id, &AgentId::parse(agent)?)
        .await?
        .ok_or(AdminError::NotFound("agent"))?;
    agent.tokens_valid_after = agent.tokens_valid_after.max(Some(now));
    store.put_agent(&agent).await?;
    Ok(agent)
}

/// Deletes the connection records of a site's agents (one agent's, or with
/// `None` every agent's): one Query on the site's partition for its online
/// agents, then a delete per record. Run on every revocation, deactivation and
/// allow-list change, with or without a management endpoint: a socket without
/// its record receives no more fan-out and its next frame is refused, even
/// where the socket itself cannot be closed. Returns how many were removed.
pub async fn forget_agent_connections(
    store: &impl ConnectionStore,
    site: &str,
    agent: Option<&str>,
    now: Timestamp,
) -> Result<usize, AdminError> {
    let site_id = SiteId::parse(site)?;
    let agent_id = agent.map(AgentId::parse).transpose()?;
    let mut removed = 0;
    for conn in store.agent_connections(&site_id, now).await? {
        let Principal::Agent { agent_id: a, .. } = &conn.principal else {
            continue;
        };
        if agent_id.as_ref().is_some_and(|wanted| wanted != a) {
            continue;
        }
        if store.delete_connection(&conn.id).await?.is_some() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Closes an agent's open WebSocket connections and deletes their records: one
/// Query on the site's partition for its online agents, then a DeleteConnection
/// per connection of this agent. Returns how many were closed. Stops at the
/// first connection the management API cannot close; its record is kept, and
/// its next frame is refused anyway.
pub async fn close_agent_connections(
    store: &impl ConnectionStore,
    gateway: &dyn ConnectionGateway,
    site: &str,
    agent: &str,
    now: Timestamp,
) -> Result<usize, AdminError> {
    let site_id = SiteId::parse(site)?;
    let agent_id = AgentId::parse(agent)?;
    let mut closed = 0;
    for conn in store.agent_connections(&site_id, now).await? {
        if !matches!(&conn.principal, Principal::Agent { agent_id: a, .. } if *a == agent_id) {
            continue;
        }
        gateway.close(&conn.id).await.map_err(AdminError::Gateway)?;
        store.delete_connection(&conn.id).await?;
        closed += 1;
    }
    Ok(closed)
}

/// Longest agent token lifetime the tool mints: the longest tokens verify
/// ([`MAX_AGENT_TOKEN_LIFETIME`], 7 days).
pub const MAX_TOKEN_HOURS: u64 = MAX_AGENT_TOKEN_LIFETIME.as_secs() / 3600;

/// Mints a token for an active agent, with the agent's current role. Its `iat`
/// is after the agent's last revocation even when minted in the same second
/// (it then lies at most a second in the future, well within the verifier's
/// skew), so a token minted right after `revoke-tokens` works.
pub async fn mint_agent_token(
    store: &impl SiteStore,
    keys: &AgentTokenKeys,
    site: &str,
    agent: &str,
    hours: u64,
    now: Timestamp,
) -> Result<String, AdminError> {
    if !(1..=MAX_TOKEN_HOURS).contains(&hours) {
        return Err(ValidationError::new("ttlHours", "must be between 1 and 168 (7 days)").into());
    }
    let site_id = SiteId::parse(site)?;
    let agent = store
        .get_agent(&site_id, &AgentId::parse(agent)?)
        .await?
        .filter(|a| a.active)
        .ok_or(AdminError::NotFound("active agent"))?;
    let issued = match agent.tokens_valid_after {
        Some(t) => now.max(Timestamp::from_secs(t.epoch_seconds() + 1)),
        None => now,
    };
    Ok(keys.mint(
        &site_id,
        &agent.id,
        agent.role,
        issued,
        Duration::from_secs(hours * 3600),
    ))
}
