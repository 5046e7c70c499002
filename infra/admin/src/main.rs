//! `eurochat-admin`: argument parsing and client set-up around the admin functions.

use std::process::ExitCode;

use chat_core::auth::{AgentTokenKeys, secret_weakness};
use chat_core::clock::{Clock, SystemClock, Timestamp};
use chat_core::config::{is_eu_region, vars};
use chat_core::domain::AgentRole;
use chat_core::gateway::ApiGatewayManagement;
use chat_core::secrets::{SecretSource, SecretsManager, Stage};
use chat_core::storage::{DynamoStore, SiteStore, schema};
use clap::{Parser, Subcommand, ValueEnum};
use eurochat_admin::{
    SiteSpec, close_agent_connections, forget_agent_connections, mint_agent_token, put_agent, put_site, revoke_tokens,
};

/// Manage eurochat sites, agents and agent tokens.
#[derive(Parser)]
#[command(name = "eurochat-admin", version)]
struct Cli {
    /// The DynamoDB table.
    #[arg(long, env = vars::TABLE_NAME)]
    table: String,
    /// AWS region (EU only, unless --dynamodb-endpoint is a loopback URL).
    #[arg(long, env = vars::REGION, default_value = "eu-central-1")]
    region: String,
    /// A local DynamoDB endpoint (moto, DynamoDB Local) on a loopback address.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// The WebSocket API's management endpoint (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`,
    /// or a loopback URL): deactivating an agent or revoking its tokens then also
    /// closes its open connections.
    #[arg(long, env = vars::WS_MANAGEMENT_ENDPOINT)]
    ws_management_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Agent,
    Admin,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the table (with TTL) if it does not exist; for local endpoints and tests.
    CreateTable,
    /// Creates or updates a site.
    PutSite {
        /// Site id.
        #[arg(long)]
        site: String,
        /// Label.
        #[arg(long)]
        name: Option<String>,
        /// Allowed origin (repeatable; replaces the list).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// Conversation retention in days.
        #[arg(long)]
        retention_days: Option<u32>,
        /// full, truncated or none.
        #[arg(long)]
        ip_policy: Option<String>,
        /// IP retention in days.
        #[arg(long)]
        ip_retention_days: Option<u32>,
        /// Agent IP allow-list CIDR (repeatable; replaces the list).
        #[arg(long = "agent-ip")]
        agent_ips: Vec<String>,
        /// Remove the agent IP allow-list.
        #[arg(long, conflicts_with = "agent_ips")]
        clear_agent_ips: bool,
    },
    /// Prints a site as JSON.
    ShowSite {
        /// Site id.
        #[arg(long)]
        site: String,
    },
    /// Creates or updates an agent.
    PutAgent {
        /// Site id.
        #[arg(long)]
        site: String,
        /// Agent id.
        #[arg(long)]
        agent: String,
        /// Name shown to visitors.
        #[arg(long)]
        name: String,
        /// Role.
        #[arg(long, value_enum, default_value = "agent")]
        role: Role,
        /// Deactivate (revokes every token of the agent, for good: reactivating
        /// does not bring old tokens back).
        #[arg(long)]
        inactive: bool,
    },
    /// Revokes every token of an agent issued so far; tokens minted afterwards work.
    RevokeTokens {
        /// Site id.
        #[arg(long)]
        site: String,
        /// Agent id.
        #[arg(long)]
        agent: String,
    },
    /// Mints an agent token, signed with the agent token secret: read from Secrets
    /// Manager when EUROCHAT_AGENT_TOKEN_SECRET_ARN is set (the stack's
    /// AgentTokenSecretArn output; needs secretsmanager:GetSecretValue and kms:Decrypt),
    /// else from EUROCHAT_AGENT_TOKEN_SECRET (local runs).
    MintToken {
        /// Site id.
        #[arg(long)]
        site: String,
        /// Agent id.
        #[arg(long)]
        agent: String,
        /// Lifetime in hours (1-168).
        #[arg(long, default_value_t = 12)]
        ttl_hours: u64,
    },
}

fn is_loopback(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| {
            h == "localhost"
                || h.trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

/// After a revocation: closes the agent's open connections through the management
/// API when its endpoint is known, then deletes whatever records are left, so a
/// socket that could not be closed receives nothing more and is refused at its
/// next frame; says what happened either way.
async fn close_connections(
    cli: &Cli,
    sdk: &aws_config::SdkConfig,
    store: &DynamoStore,
    site: &str,
    agent: &str,
    now: Timestamp,
) -> Result<String, String> {
    let closed = match &cli.ws_management_endpoint {
        Some(endpoint) => {
            let gateway = ApiGatewayManagement::new(sdk, endpoint.trim_end_matches('/'));
            let n = close_agent_connections(store, &gateway, site, agent, now)
                .await
                .map_err(|e| e.to_string())?;
            format!("closed {n} open connection(s) of the agent")
        }
        None => format!(
            "no management endpoint (--ws-management-endpoint or {}): open sockets were not closed",
            vars::WS_MANAGEMENT_ENDPOINT
        ),
    };
    let forgotten = forget_agent_connections(store, site, Some(agent), now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{closed}; {forgotten} connection record(s) removed: they receive nothing more and their next frame is refused"
    ))
}

async fn store(cli: &Cli) -> Result<(aws_config::SdkConfig, DynamoStore), String> {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(cli.region.clone()));
    match &cli.dynamodb_endpoint {
        Some(e) if is_loopback(e) => {
            loader = loader
                .endpoint_url(e)
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "local", "local", None, None, "local",
                ));
        }
        Some(_) => return Err("--dynamodb-endpoint must be a loopback URL".into()),
        None if !is_eu_region(&cli.region) => {
            return Err(format!(
                "region {} is outside the EU; eurochat data stays in the EU",
                cli.region
            ));
        }
        None => {}
    }
    let sdk = loader.load().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), cli.table.clone());
    Ok((sdk, store))
}

/// The current agent token secret: from Secrets Manager by ARN (what a deployed
/// stack has), else the value variable (local runs). Errors name the variable, never a value.
async fn signing_secret(sdk: &aws_config::SdkConfig) -> Result<Vec<u8>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let secret = match (var(vars::AGENT_TOKEN_SECRET_ARN), var(vars::AGENT_TOKEN_SECRET)) {
        (Some(arn), _) => {
            let source = SecretsManager::new(aws_sdk_secretsmanager::Client::new(sdk));
            source
                .read(arn.trim(), Stage::Current)
                .await
                .map_err(|e| format!("{}: the secret could not be read: {e}", vars::AGENT_TOKEN_SECRET_ARN))?
                .ok_or_else(|| format!("{}: the secret has no current value", vars::AGENT_TOKEN_SECRET_ARN))?
        }
        (None, Some(value)) => value.into_bytes(),
        (None, None) => {
            return Err(format!(
                "set {} (the stack's AgentTokenSecretArn output) or, for local runs, {}",
                vars::AGENT_TOKEN_SECRET_ARN,
                vars::AGENT_TOKEN_SECRET
            ));
        }
    };
    match secret_weakness(&secret) {
        Some(why) => Err(format!("the agent token secret {why}")),
        None => Ok(secret),
    }
}

async fn run(cli: Cli) -> Result<String, String> {
    // Checked before anything changes, so a typo never leaves a half-done revocation.
    if let Some(endpoint) = &cli.ws_management_endpoint {
        let https = url::Url::parse(endpoint).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
        if !https && !is_loopback(endpoint) {
            return Err("--ws-management-endpoint must be an https URL (or a loopback URL)".into());
        }
    }
    let (sdk, store) = store(&cli).await?;
    let now = SystemClock.now();
    match &cli.command {
        Command::CreateTable => {
            schema::create_table(store.client(), store.table())
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("table {} ready", store.table()))
        }
        Command::PutSite {
            site,
            name,
            origins,
            retention_days,
            ip_policy,
            ip_retention_days,
            agent_ips,
            clear_agent_ips,
        } => {
            let agent_ips = if *clear_agent_ips {
                Some(Vec::new())
            } else {
                (!agent_ips.is_empty()).then(|| agent_ips.clone())
            };
            let spec = SiteSpec {
                id: site.clone(),
                name: name.clone(),
                origins: origins.clone(),
                retention_days: *retention_days,
                ip_policy: ip_policy.clone(),
                ip_retention_days: *ip_retention_days,
                agent_ips,
            };
            let site = put_site(&store, &spec, now).await.map_err(|e| e.to_string())?;
            serde_json::to_string_pretty(&site).map_err(|e| e.to_string())
        }
        Command::ShowSite { site } => {
            let id = chat_core::domain::SiteId::parse(site).map_err(|e| e.to_string())?;
            let site = store
                .get_site(&id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("site not found")?;
            serde_json::to_string_pretty(&site).map_err(|e| e.to_string())
        }
        Command::PutAgent {
            site,
            agent,
            name,
            role,
            inactive,
        } => {
            let role = match role {
                Role::Agent => AgentRole::Agent,
                Role::Admin => AgentRole::Admin,
            };
            let stored = put_agent(&store, site, agent, name, role, !inactive, now)
                .await
                .map_err(|e| e.to_string())?;
            let json = serde_json::to_string_pretty(&stored).map_err(|e| e.to_string())?;
            if !inactive {
                return Ok(json);
            }
            let closed = close_connections(&cli, &sdk, &store, site, agent, now).await?;
            Ok(format!("{json}\n{closed}"))
        }
        Command::RevokeTokens { site, agent } => {
            let stored = revoke_tokens(&store, site, agent, now)
                .await
                .map_err(|e| e.to_string())?;
            let closed = close_connections(&cli, &sdk, &store, site, agent, now).await?;
            let after = stored.tokens_valid_after.unwrap_or(now).to_rfc3339();
            Ok(format!(
                "tokens of agent {agent} of site {site} issued up to {after} (to the second) are revoked\n{closed}"
            ))
        }
        Command::MintToken { site, agent, ttl_hours } => {
            let secret = signing_secret(&sdk).await?;
            let keys = AgentTokenKeys::new(&secret, None);
            mint_agent_token(&store, &keys, site, agent, *ttl_hours, now)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
