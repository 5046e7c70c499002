//! What every function does at cold start: logging, configuration, clients,
//! secrets. `main.rs` files call [`cold_start`] with the secrets they use and
//! [`Started::before_invocation`] for each event.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Secret, check_distinct};
use crate::secrets::{KeyRefresh, SecretSource, SecretsManager, read_agent_keys, read_pseudonym_key};
use crate::storage::DynamoStore;

/// A started function: validated configuration, the SDK configuration and the
/// DynamoDB store (built once, kept while warm), and the secret refresh.
#[derive(Debug)]
pub struct Started {
    /// The configuration, secrets included.
    pub config: Config,
    /// Shared by every AWS client the function builds.
    pub sdk: aws_config::SdkConfig,
    /// The table.
    pub store: DynamoStore,
    /// Re-reads rotated agent token keys while warm.
    pub key_refresh: KeyRefresh,
}

impl Started {
    /// Called as each event arrives: re-reads the agent token keys when they are
    /// stale (at most once in five minutes, waiting at most two seconds).
    pub async fn before_invocation(&self) {
        self.key_refresh.refresh_if_stale(SystemClock.now()).await;
    }
}

/// Installs logging, reads and validates the configuration for a function that
/// uses `needs`, builds the clients, and reads the needed secrets from Secrets
/// Manager (concurrently). Any failure is logged (variable and reason, never a
/// value) and refuses the start: Lambda reports an init error rather than a
/// function that fails on its first request.
pub async fn cold_start(needs: &[Secret]) -> Result<Started, ConfigError> {
    crate::telemetry::init();
    start(needs)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "refusing to start"))
}

async fn start(needs: &[Secret]) -> Result<Started, ConfigError> {
    let (mut config, arns) = Config::from_lookup_for(|k| std::env::var(k).ok(), needs)?;
    let sdk = config.aws_sdk_config().await;
    let store = config.dynamo_store(&sdk);
    let mut key_refresh = KeyRefresh::none();
    if arns.agent_token.is_some() || arns.pseudonym_key.is_some() {
        // A hung request must not hold the cold start or a refresh forever.
        let timeouts = aws_sdk_secretsmanager::config::timeout::TimeoutConfig::builder()
            .operation_timeout(std::time::Duration::from_secs(5))
            .build();
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(&sdk).timeout_config(timeouts);
        if let Some(endpoint) = config.local.as_ref().and_then(|l| l.secretsmanager.clone()) {
            builder = builder.endpoint_url(endpoint);
        }
        let source: Arc<dyn SecretSource> = Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::from_conf(
            builder.build(),
        )));
        let agent = async {
            match &arns.agent_token {
                Some(arn) => read_agent_keys(source.as_ref(), arn).await.map(Some),
                None => Ok(None),
            }
        };
        let pseudonym = async {
            match &arns.pseudonym_key {
                Some(arn) => read_pseudonym_key(source.as_ref(), arn).await.map(Some),
                None => Ok(None),
            }
        };
        let (agent, pseudonym) = tokio::join!(agent, pseudonym);
        let (agent, pseudonym) = (agent?, pseudonym?);
        if let (Some((current, previous)), Some(key)) = (&agent, &pseudonym) {
            check_distinct(current, previous.as_deref(), key)?;
        }
        if let Some(key) = pseudonym {
            config.pseudonymizer = crate::auth::Pseudonymizer::new(&key);
        }
        if let (Some((current, previous)), Some(arn)) = (agent, arns.agent_token) {
            config.agent_keys = crate::auth::AgentTokenKeys::new(&current, previous.as_deref());
            key_refresh = KeyRefresh::new(source, arn, config.agent_keys.clone(), SystemClock.now());
        }
    }
    Ok(Started {
        config,
        sdk,
        store,
        key_refresh,
    })
}
