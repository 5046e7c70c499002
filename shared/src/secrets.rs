//! Secrets from AWS Secrets Manager: read at cold start, re-read while warm.
//!
//! A deployed function's environment holds only secret ARNs (anyone allowed
//! `lambda:GetFunctionConfiguration` can read an environment). The agent token
//! secret rotates the Secrets Manager way: `put-secret-value` makes the new
//! value `AWSCURRENT` and the old one `AWSPREVIOUS`; functions sign nothing,
//! they verify with both. Warm functions pick a rotation up within
//! [`REFRESH_EVERY`] ([`KeyRefresh`]); the pseudonym key does not rotate
//! (changing it would orphan every stored email lookup), so it is read once.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use crate::auth::{AgentTokenKeys, secret_weakness};
use crate::clock::Timestamp;
use crate::config::{ConfigError, Secret};

/// How long a warm function trusts the agent token keys it read before reading
/// them again: the most a rotation takes to reach every warm function.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// After a failed re-read, how long until the next try (the old keys stay in use).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// How long an invocation that finds the keys stale waits for their re-read
/// before going on with the old ones. A rotation must reach an environment that
/// sat idle past [`REFRESH_EVERY`] before its next token check, not after it.
pub const STALE_WAIT: Duration = Duration::from_secs(2);

/// A version stage of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `AWSCURRENT`: the value in use.
    Current,
    /// `AWSPREVIOUS`: the value before the last rotation, if any.
    Previous,
}

impl Stage {
    /// Secrets Manager's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Current => "AWSCURRENT",
            Self::Previous => "AWSPREVIOUS",
        }
    }
}

/// Why a secret could not be read: an error code, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

/// Where secrets come from: Secrets Manager in Lambda, a double in tests.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The secret's value at `stage`; `None` if the secret has no such version
    /// (no `AWSPREVIOUS` before the first rotation).
    async fn read(&self, arn: &str, stage: Stage) -> Result<Option<Vec<u8>>, ReadError>;
}

/// The Secrets Manager client, built once at cold start.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    /// A source over the given client.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn read(&self, arn: &str, stage: Stage) -> Result<Option<Vec<u8>>, ReadError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .version_stage(stage.label())
            .send()
            .await;
        match out {
            Ok(out) => Ok(out
                .secret_string
                .map(String::into_bytes)
                .or_else(|| out.secret_binary.map(|b| b.into_inner()))),
            Err(e) => match e.into_service_error() {
                // The secret exists but has no version with this label.
                GetSecretValueError::ResourceNotFoundException(_) if stage == Stage::Previous => Ok(None),
                other => Err(ReadError(
                    aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(&other)
                        .unwrap_or("the request failed (network or credentials)")
                        .to_owned(),
                )),
            },
        }
    }
}

fn unreadable(secret: Secret, why: impl Into<String>) -> ConfigError {
    ConfigError::SecretUnreadable {
        var: secret.arn_var(),
        why: why.into(),
    }
}

fn checked(secret: Secret, value: Vec<u8>) -> Result<Vec<u8>, ConfigError> {
    match secret_weakness(&value) {
        Some(why) => Err(ConfigError::Invalid {
            var: secret.arn_var(),
            why,
        }),
        None => Ok(value),
    }
}

/// Reads the agent token secret's current and previous values (two concurrent requests).
pub async fn read_agent_keys(source: &dyn SecretSource, arn: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), ConfigError> {
    let secret = Secret::AgentToken;
    let (current, previous) = tokio::join!(source.read(arn, Stage::Current), source.read(arn, Stage::Previous));
    let current = current
        .map_err(|e| unreadable(secret, e.0))?
        .ok_or_else(|| unreadable(secret, "the secret has no AWSCURRENT value"))?;
    let previous = previous.map_err(|e| unreadable(secret, e.0))?;
    // A weak previous value (say, the placeholder a secret was created with before
    // its real value was put) is dropped, not fatal: refusing to start over it would
    // take every function down for a value that should not verify anything anyway.
    let previous = previous.filter(|p| match secret_weakness(p) {
        None => true,
        Some(why) => {
            tracing::warn!(var = secret.arn_var(), why, "the AWSPREVIOUS value is ignored");
            false
        }
    });
    Ok((checked(secret, current)?, previous))
}

/// Reads the pseudonym key (`AWSCURRENT`).
pub async fn read_pseudonym_key(source: &dyn SecretSource, arn: &str) -> Result<Vec<u8>, ConfigError> {
    let secret = Secret::PseudonymKey;
    let key = source
        .read(arn, Stage::Current)
        .await
        .map_err(|e| unreadable(secret, e.0))?
        .ok_or_else(|| unreadable(secret, "the secret has no AWSCURRENT value"))?;
    checked(secret, key)
}

/// Re-reads the agent token keys while warm, so a rotation needs no redeploy.
///
/// [`KeyRefresh::refresh_if_stale`] runs before each invocation: when the keys
/// are older than [`REFRESH_EVERY`] it re-reads them (one GetSecretValue per
/// stage, concurrent) and waits up to [`STALE_WAIT`], so the invocation checks
/// tokens against the current value; at most one invocation in five minutes
/// pays that read. A re-read that takes longer finishes in the background; a
/// failed one keeps the old keys and tries again after [`RETRY_AFTER_FAILURE`].
#[derive(Clone, Default)]
pub struct KeyRefresh {
    state: Option<Arc<RefreshState>>,
}

struct RefreshState {
    source: Arc<dyn SecretSource>,
    arn: String,
    keys: AgentTokenKeys,
    next_due: Mutex<Timestamp>,
    running: AtomicBool,
}

impl std::fmt::Debug for KeyRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRefresh")
            .field("active", &self.state.is_some())
            .finish()
    }
}

impl KeyRefresh {
    /// Nothing to refresh: the function does not use the agent token secret, or
    /// got it as a value (local mode).
    pub fn none() -> Self {
        Self::default()
    }

    /// Refreshes `keys` (shared with the configuration) from `arn`, first after
    /// [`REFRESH_EVERY`] from `read_at`.
    pub fn new(source: Arc<dyn SecretSource>, arn: String, keys: AgentTokenKeys, read_at: Timestamp) -> Self {
        Self {
            state: Some(Arc::new(RefreshState {
                source,
                arn,
                keys,
                next_due: Mutex::new(read_at.plus(REFRESH_EVERY)),
                running: AtomicBool::new(false),
            })),
        }
    }

    /// Re-reads the keys if they are stale, waiting at most [`STALE_WAIT`].
    pub async fn refresh_if_stale(&self, now: Timestamp) {
        if let Some(task) = self.poll(now) {
            // On timeout the task goes on by itself; the old keys serve this invocation.
            drop(tokio::time::timeout(STALE_WAIT, task).await);
        }
    }

    /// Starts a background re-read if one is due and none is running; returns
    /// its task.
    pub fn poll(&self, now: Timestamp) -> Option<tokio::task::JoinHandle<()>> {
        let state = self.state.as_ref()?;
        let due = *state.next_due.lock().unwrap_or_else(std::sync::PoisonError::into_inner) <= now;
        if !due || state.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        let state = Arc::clone(state);
        Some(tokio::spawn(async move {
            let next = match read_agent_keys(state.source.as_ref(), &state.arn).await {
                Ok((current, previous)) => {
                    state.keys.replace(&current, previous.as_deref());
                    now.plus(REFRESH_EVERY)
                }
                Err(e) => {
                    // The message names the variable and an error code, never a value.
                    tracing::warn!(error = %e, "agent token keys not refreshed; the old ones stay in use");
                    now.plus(RETRY_AFTER_FAILURE)
                }
            };
            *state.next_due.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
            state.running.store(false, Ordering::Release);
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::{AgentId, AgentRole, SiteId};

    /// A Secrets Manager double: values per (arn, stage), and a switch to fail.
    #[derive(Default)]
    struct Double {
        values: Mutex<HashMap<(String, &'static str), Vec<u8>>>,
        failing: AtomicBool,
    }

    impl Double {
        fn put(&self, arn: &str, stage: Stage, value: &[u8]) {
            self.values
                .lock()
                .unwrap()
                .insert((arn.to_owned(), stage.label()), value.to_vec());
        }
    }

    #[async_trait]
    impl SecretSource for Double {
        async fn read(&self, arn: &str, stage: Stage) -> Result<Option<Vec<u8>>, ReadError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(ReadError("ThrottlingException".into()));
            }
            Ok(self
                .values
                .lock()
                .unwrap()
                .get(&(arn.to_owned(), stage.label()))
                .cloned())
        }
    }

    const ARN: &str = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:agent-AbCdEf";
    const OLD: &[u8] = b"old-agent-secret-0123456789abcdefghij";
    const NEW: &[u8] = b"new-agent-secret-9876543210zyxwvutsrq";

    fn token(secret: &[u8], now: Timestamp) -> String {
        AgentTokenKeys::new(secret, None).mint(
            &SiteId::parse("demo").unwrap(),
            &AgentId::parse("ana").unwrap(),
            AgentRole::Agent,
            now,
            Duration::from_secs(3600),
        )
    }

    #[tokio::test]
    async fn reads_current_and_previous_and_refuses_weak_or_missing_values() {
        let double = Double::default();
        double.put(ARN, Stage::Current, NEW);
        assert_eq!(read_agent_keys(&double, ARN).await.unwrap(), (NEW.to_vec(), None));
        double.put(ARN, Stage::Previous, OLD);
        assert_eq!(
            read_agent_keys(&double, ARN).await.unwrap(),
            (NEW.to_vec(), Some(OLD.to_vec()))
        );
        double.put(ARN, Stage::Current, b"short");
        let err = read_agent_keys(&double, ARN).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("EUROCHAT_AGENT_TOKEN_SECRET_ARN is invalid")
        );
        assert!(!err.to_string().contains("short"));
        let err = read_pseudonym_key(&double, "arn:missing").await.unwrap_err();
        assert!(err.to_string().contains("EUROCHAT_PSEUDONYM_KEY_ARN"), "{err}");
        double.failing.store(true, Ordering::SeqCst);
        let err = read_agent_keys(&double, ARN).await.unwrap_err();
        assert!(err.to_string().contains("ThrottlingException"), "{err}");
    }

    #[tokio::test]
    async fn a_weak_previous_value_is_ignored_not_fatal() {
        let double = Double::default();
        double.put(ARN, Stage::Current, NEW);
        double.put(ARN, Stage::Previous, b"placeholder");
        assert_eq!(read_agent_keys(&double, ARN).await.unwrap(), (NEW.to_vec(), None));
    }

    #[tokio::test]
    async fn a_stale_key_set_is_refreshed_before_the_invocation_goes_on() {
        let double = Arc::new(Double::default());
        let start = Timestamp::from_secs(1_800_000_000);
        let keys = AgentTokenKeys::new(OLD, None);
        let refresh = KeyRefresh::new(double.clone(), ARN.into(), keys.clone(), start);
        double.put(ARN, Stage::Current, NEW);
        double.put(ARN, Stage::Previous, OLD);
        // An environment idle for an hour: its first invocation already sees the rotation.
        let later = start.plus(Duration::from_secs(3600));
        refresh.refresh_if_stale(later).await;
        assert!(keys.verify(&token(NEW, later), later).is_ok());
    }

    #[tokio::test]
    async fn a_rotation_reaches_a_warm_function_after_the_refresh_interval() {
        let double = Arc::new(Double::default());
        double.put(ARN, Stage::Current, OLD);
        let start = Timestamp::from_secs(1_800_000_000);
        let keys = AgentTokenKeys::new(OLD, None);
        let refresh = KeyRefresh::new(double.clone(), ARN.into(), keys.clone(), start);
        let old_token = token(OLD, start);
        let new_token = token(NEW, start);
        assert!(keys.verify(&old_token, start).is_ok());

        // The operator rotates: the new value is current, the old one previous.
        double.put(ARN, Stage::Current, NEW);
        double.put(ARN, Stage::Previous, OLD);
        let before = start.plus(REFRESH_EVERY - Duration::from_secs(1));
        assert!(refresh.poll(before).is_none(), "not due yet");
        assert!(keys.verify(&new_token, before).is_err());

        let due = start.plus(REFRESH_EVERY);
        refresh.poll(due).expect("due").await.unwrap();
        assert!(keys.verify(&new_token, due).is_ok(), "the new secret verifies");
        assert!(keys.verify(&old_token, due).is_ok(), "the previous one still does");
        assert!(refresh.poll(due).is_none(), "the next refresh is a full interval away");
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_old_keys_and_retries_soon() {
        let double = Arc::new(Double::default());
        double.put(ARN, Stage::Current, OLD);
        let start = Timestamp::from_secs(1_800_000_000);
        let keys = AgentTokenKeys::new(OLD, None);
        let refresh = KeyRefresh::new(double.clone(), ARN.into(), keys.clone(), start);
        double.failing.store(true, Ordering::SeqCst);
        let due = start.plus(REFRESH_EVERY);
        refresh.poll(due).expect("due").await.unwrap();
        assert!(keys.verify(&token(OLD, due), due).is_ok());
        assert!(
            refresh
                .poll(due.plus(RETRY_AFTER_FAILURE - Duration::from_secs(1)))
                .is_none()
        );
        double.failing.store(false, Ordering::SeqCst);
        double.put(ARN, Stage::Current, NEW);
        let retry = due.plus(RETRY_AFTER_FAILURE);
        refresh.poll(retry).expect("retry due").await.unwrap();
        assert!(keys.verify(&token(NEW, retry), retry).is_ok());
    }

    #[test]
    fn nothing_to_refresh_never_spawns() {
        assert!(KeyRefresh::none().poll(Timestamp::from_secs(i64::MAX / 2000)).is_none());
    }
}
