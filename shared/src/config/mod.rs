//! Configuration from the environment, validated once at cold start.
//!
//! A function with a bad configuration must refuse to start with a message
//! naming the variable, rather than fail on the first request. The EU residency
//! guard lives here too: data must never be processed outside the EU.

use std::net::IpAddr;
use std::time::Duration;

use crate::auth::{AgentTokenKeys, Pseudonymizer, secret_weakness};
use crate::domain::DEFAULT_MAX_MESSAGE_BYTES;
use crate::domain::{IpPolicy, RetentionPolicy};
use crate::policy::{MAX_RETENTION_DAYS, MAX_SLIDING_LIMIT, RateLimit};

/// The AWS regions eurochat may run in. The SAM template's `Rules` section uses
/// the same list (a test checks they agree).
pub const EU_REGIONS: [&str; 6] = [
    "eu-central-1",
    "eu-west-1",
    "eu-west-3",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
];

/// API Gateway's WebSocket frame limit is 32 KB. JSON escaping can double a text
/// (quotes, backslashes, line breaks), so 15 KiB of text plus the envelope always fits.
pub const MAX_CONFIGURABLE_MESSAGE_BYTES: usize = 15 * 1024;

/// `EUROCHAT_CONNECTS_PER_MINUTE` when unset.
pub const DEFAULT_CONNECTS_PER_MINUTE: usize = 20;
/// `EUROCHAT_SESSIONS_PER_MINUTE` when unset.
pub const DEFAULT_SESSIONS_PER_MINUTE: usize = 10;
/// `EUROCHAT_EXPORTS_PER_HOUR` when unset.
pub const DEFAULT_EXPORTS_PER_HOUR: usize = 20;

/// Environment variable names, in one place for the functions, the SAM template
/// check and the docs.
pub mod vars {
    /// AWS region (set by Lambda).
    pub const REGION: &str = "AWS_REGION";
    /// DynamoDB table name.
    pub const TABLE_NAME: &str = "EUROCHAT_TABLE_NAME";
    /// `true` to allow a loopback endpoint and a non-EU region for local runs and tests.
    pub const LOCAL_MODE: &str = "EUROCHAT_LOCAL_MODE";
    /// DynamoDB endpoint override (local mode only, loopback only).
    pub const DYNAMODB_ENDPOINT: &str = "EUROCHAT_DYNAMODB_ENDPOINT";
    /// API Gateway management endpoint override (local mode only, loopback only).
    pub const APIGW_ENDPOINT: &str = "EUROCHAT_APIGW_ENDPOINT";
    /// Secret for signing agent tokens (at least 32 bytes). A value: local mode and
    /// operators' machines only; a deployed function gets [`AGENT_TOKEN_SECRET_ARN`].
    pub const AGENT_TOKEN_SECRET: &str = "EUROCHAT_AGENT_TOKEN_SECRET";
    /// Previous agent token secret, accepted for verification during a rotation (a value, like the above).
    pub const AGENT_TOKEN_SECRET_PREVIOUS: &str = "EUROCHAT_AGENT_TOKEN_SECRET_PREVIOUS";
    /// Key for pseudonyms (audit subject hashes, email lookups, IP rate keys), at least 32 bytes
    /// (a value; a deployed function gets [`PSEUDONYM_KEY_ARN`]).
    pub const PSEUDONYM_KEY: &str = "EUROCHAT_PSEUDONYM_KEY";
    /// Secrets Manager secret holding the agent token secret. Its `AWSCURRENT` version
    /// signs and verifies, its `AWSPREVIOUS` version (after a rotation) still verifies.
    pub const AGENT_TOKEN_SECRET_ARN: &str = "EUROCHAT_AGENT_TOKEN_SECRET_ARN";
    /// Secrets Manager secret holding the pseudonym key (`AWSCURRENT` only).
    pub const PSEUDONYM_KEY_ARN: &str = "EUROCHAT_PSEUDONYM_KEY_ARN";
    /// Secrets Manager endpoint override (local mode only, loopback only; default: the DynamoDB one).
    pub const SECRETSMANAGER_ENDPOINT: &str = "EUROCHAT_SECRETSMANAGER_ENDPOINT";
    /// The origins of the agent console this deployment serves, comma-separated (the
    /// HTTP API's execute-api origin, and its custom domain's when there is one): agents
    /// may connect from them whatever their site lists.
    pub const CONSOLE_ORIGINS: &str = "EUROCHAT_CONSOLE_ORIGINS";
    /// Set by Lambda in every function: secret values in the environment are refused there.
    pub const LAMBDA_FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
    /// Maximum message text in bytes (default 4096).
    pub const MAX_MESSAGE_BYTES: &str = "EUROCHAT_MAX_MESSAGE_BYTES";
    /// Messages a session may send per minute (default 30).
    pub const MESSAGES_PER_MINUTE: &str = "EUROCHAT_MESSAGES_PER_MINUTE";
    /// WebSocket connections one IP (IPv6: one /64) may open in any minute (1–100, default 20).
    pub const CONNECTS_PER_MINUTE: &str = "EUROCHAT_CONNECTS_PER_MINUTE";
    /// Sessions one IP (IPv6: one /64) may create in any minute (1–100, default 10).
    pub const SESSIONS_PER_MINUTE: &str = "EUROCHAT_SESSIONS_PER_MINUTE";
    /// Export requests (pages) one token holder may make in any hour (1–100, default 20).
    pub const EXPORTS_PER_HOUR: &str = "EUROCHAT_EXPORTS_PER_HOUR";
    /// The WebSocket API's management endpoint (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`),
    /// for functions outside the WebSocket API that close connections (GDPR erasure).
    pub const WS_MANAGEMENT_ENDPOINT: &str = "EUROCHAT_WS_MANAGEMENT_ENDPOINT";
    /// The most days any site of the deployment keeps a conversation (1–3650; unset: 3650).
    pub const MAX_CONVERSATION_DAYS: &str = "EUROCHAT_MAX_CONVERSATION_DAYS";
    /// The most of an IP any site stores: `none`, `truncated` or `full` (unset: `full`).
    pub const MAX_IP_POLICY: &str = "EUROCHAT_MAX_IP_POLICY";
    /// The most days any site keeps a stored IP (1–3650; unset: 3650).
    pub const MAX_IP_RETENTION_DAYS: &str = "EUROCHAT_MAX_IP_RETENTION_DAYS";

    /// Every variable [`super::Config::from_lookup`] reads.
    pub const ALL: [&str; 22] = [
        REGION,
        TABLE_NAME,
        LOCAL_MODE,
        DYNAMODB_ENDPOINT,
        APIGW_ENDPOINT,
        AGENT_TOKEN_SECRET,
        AGENT_TOKEN_SECRET_PREVIOUS,
        PSEUDONYM_KEY,
        AGENT_TOKEN_SECRET_ARN,
        PSEUDONYM_KEY_ARN,
        SECRETSMANAGER_ENDPOINT,
        LAMBDA_FUNCTION_NAME,
        MAX_MESSAGE_BYTES,
        MESSAGES_PER_MINUTE,
        CONNECTS_PER_MINUTE,
        SESSIONS_PER_MINUTE,
        EXPORTS_PER_HOUR,
        WS_MANAGEMENT_ENDPOINT,
        MAX_CONVERSATION_DAYS,
        MAX_IP_POLICY,
        MAX_IP_RETENTION_DAYS,
        CONSOLE_ORIGINS,
    ];
}

/// Why the configuration was refused. Messages name the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable's value is not acceptable.
    #[error("{var} is invalid: {why}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// A secret could not be read from Secrets Manager (the reason names the
    /// error code, never a value).
    #[error("{var}: the secret could not be read from Secrets Manager: {why}")]
    SecretUnreadable {
        /// The variable naming the secret.
        var: &'static str,
        /// What went wrong (an error code).
        why: String,
    },
    /// The region is outside the EU.
    #[error(
        "AWS_REGION {0} is outside the EU; eurochat runs only in eu-central-1, eu-west-1, eu-west-3, eu-north-1, eu-south-1 or eu-south-2 (set EUROCHAT_LOCAL_MODE=true with a loopback EUROCHAT_DYNAMODB_ENDPOINT for local runs)"
    )]
    RegionOutsideEu(String),
}

/// Endpoints used instead of AWS's in local mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoints {
    /// DynamoDB (moto, DynamoDB Local).
    pub dynamodb: String,
    /// API Gateway management API, if not derived from the request.
    pub apigw: Option<String>,
    /// Secrets Manager (moto), if not the DynamoDB endpoint.
    pub secretsmanager: Option<String>,
}

/// A secret a function may be granted. Each function's `main.rs` names the ones
/// it uses; the others are [`AgentTokenKeys::unusable`] / [`Pseudonymizer::unusable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// The agent token signing secret (current and previous).
    AgentToken,
    /// The pseudonym key.
    PseudonymKey,
}

impl Secret {
    /// The variable holding the secret's Secrets Manager ARN.
    pub fn arn_var(self) -> &'static str {
        match self {
            Self::AgentToken => vars::AGENT_TOKEN_SECRET_ARN,
            Self::PseudonymKey => vars::PSEUDONYM_KEY_ARN,
        }
    }

    /// The variable holding the secret's value (local mode, operators).
    pub fn value_var(self) -> &'static str {
        match self {
            Self::AgentToken => vars::AGENT_TOKEN_SECRET,
            Self::PseudonymKey => vars::PSEUDONYM_KEY,
        }
    }
}

/// Secrets named by ARN that [`Config::cold_start`] still has to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretArns {
    /// The agent token secret's ARN, if the function uses it and it comes from Secrets Manager.
    pub agent_token: Option<String>,
    /// The pseudonym key's ARN, likewise.
    pub pseudonym_key: Option<String>,
}

/// The validated configuration every function shares.
#[derive(Debug, Clone)]
pub struct Config {
    /// AWS region.
    pub region: String,
    /// The single DynamoDB table.
    pub table_name: String,
    /// Local endpoints; `None` in AWS.
    pub local: Option<LocalEndpoints>,
    /// Agent token keys.
    pub agent_keys: AgentTokenKeys,
    /// Keyed hashing for pseudonyms.
    pub pseudonymizer: Pseudonymizer,
    /// Maximum message text, bytes.
    pub max_message_bytes: usize,
    /// Per-session message rate.
    pub message_rate: RateLimit,
    /// Per-IP (IPv6: per /64) `$connect` rate, a sliding window.
    pub connect_rate: RateLimit,
    /// Per-IP (IPv6: per /64) session creation rate, a sliding window.
    pub session_rate: RateLimit,
    /// Per-token-holder export request rate, a sliding window.
    pub export_rate: RateLimit,
    /// The WebSocket management endpoint for functions outside the WebSocket API.
    pub ws_management_endpoint: Option<String>,
    /// The origins of the agent console this deployment serves: agents' `$connect`
    /// from them needs no entry in the site's origins.
    pub console_origins: Vec<crate::domain::Origin>,
    /// The deployment's retention and IP policy: the most any site keeps.
    /// Functions apply it to every site they load ([`crate::domain::Site::within`]).
    pub policy_limit: RetentionPolicy,
}

/// Which variable to name when a needed secret is not given: inside Lambda the
/// ARN (values are refused there), elsewhere the value.
fn missing_var(secret: Secret, in_lambda: bool) -> &'static str {
    if in_lambda {
        secret.arn_var()
    } else {
        secret.value_var()
    }
}

/// An agent token secret must not double as the pseudonym key: a key shared
/// between two purposes lets one purpose's outputs help attack the other.
pub fn check_distinct(current: &[u8], previous: Option<&[u8]>, pseudonym_key: &[u8]) -> Result<(), ConfigError> {
    for (var, key) in [
        (vars::AGENT_TOKEN_SECRET, Some(current)),
        (vars::AGENT_TOKEN_SECRET_PREVIOUS, previous),
    ] {
        if key == Some(pseudonym_key) {
            return Err(ConfigError::Invalid {
                var,
                why: "must differ from EUROCHAT_PSEUDONYM_KEY",
            });
        }
    }
    Ok(())
}

/// Whether a region may hold eurochat data.
pub fn is_eu_region(region: &str) -> bool {
    EU_REGIONS.contains(&region)
}

fn loopback_endpoint(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(value).map_err(|_| ConfigError::Invalid { var, why: "not a URL" })?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    if !loopback || !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid {
            var,
            why: "must be an http(s) URL on a loopback address",
        });
    }
    Ok(value.trim_end_matches('/').to_owned())
}

impl Config {
    /// Reads and validates configuration from any lookup (tests, the local gateway,
    /// the admin CLI), with both secrets given as values.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let (config, arns) = Self::from_lookup_for(get, &[Secret::AgentToken, Secret::PseudonymKey])?;
        // Only `cold_start` reads Secrets Manager.
        if let Some(secret) = [
            (Secret::AgentToken, &arns.agent_token),
            (Secret::PseudonymKey, &arns.pseudonym_key),
        ]
        .into_iter()
        .find_map(|(secret, arn)| arn.as_ref().map(|_| secret))
        {
            return Err(ConfigError::Missing(secret.value_var()));
        }
        Ok(config)
    }

    /// Reads and validates configuration for a function that uses `needs`. Each
    /// needed secret comes as a value (local mode, operators' machines) or as a
    /// Secrets Manager ARN, returned in [`SecretArns`] for the caller to read;
    /// secrets not needed get unusable random keys. Inside Lambda outside local
    /// mode, secret values in the environment are refused: anyone allowed
    /// `lambda:GetFunctionConfiguration` could read them.
    pub fn from_lookup_for(
        get: impl Fn(&str) -> Option<String>,
        needs: &[Secret],
    ) -> Result<(Self, SecretArns), ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let local_mode = match get(vars::LOCAL_MODE).as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    var: vars::LOCAL_MODE,
                    why: "must be true or false",
                });
            }
        };
        let local = if local_mode {
            let dynamodb = get(vars::DYNAMODB_ENDPOINT).ok_or(ConfigError::Missing(vars::DYNAMODB_ENDPOINT))?;
            Some(LocalEndpoints {
                dynamodb: loopback_endpoint(vars::DYNAMODB_ENDPOINT, &dynamodb)?,
                apigw: get(vars::APIGW_ENDPOINT)
                    .map(|v| loopback_endpoint(vars::APIGW_ENDPOINT, &v))
                    .transpose()?,
                secretsmanager: get(vars::SECRETSMANAGER_ENDPOINT)
                    .map(|v| loopback_endpoint(vars::SECRETSMANAGER_ENDPOINT, &v))
                    .transpose()?,
            })
        } else {
            // Endpoint overrides outside local mode could send EU data anywhere.
            for var in [
                vars::DYNAMODB_ENDPOINT,
                vars::APIGW_ENDPOINT,
                vars::SECRETSMANAGER_ENDPOINT,
            ] {
                if get(var).is_some() {
                    return Err(ConfigError::Invalid {
                        var,
                        why: "endpoint overrides need EUROCHAT_LOCAL_MODE=true",
                    });
                }
            }
            None
        };
        let region = match get(vars::REGION) {
            Some(r) => r,
            None if local_mode => EU_REGIONS[0].to_owned(),
            None => return Err(ConfigError::Missing(vars::REGION)),
        };
        if !local_mode && !is_eu_region(&region) {
            return Err(ConfigError::RegionOutsideEu(region));
        }
        let table_name = get(vars::TABLE_NAME).ok_or(ConfigError::Missing(vars::TABLE_NAME))?;
        // Secrets must look random (see `auth::secret_weakness`).
        let secret = |var: &'static str| -> Result<Option<Vec<u8>>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(s) => match secret_weakness(s.as_bytes()) {
                    Some(why) => Err(ConfigError::Invalid { var, why }),
                    None => Ok(Some(s.into_bytes())),
                },
            }
        };
        let in_lambda = get(vars::LAMBDA_FUNCTION_NAME).is_some();
        if in_lambda && !local_mode {
            for var in [
                vars::AGENT_TOKEN_SECRET,
                vars::AGENT_TOKEN_SECRET_PREVIOUS,
                vars::PSEUDONYM_KEY,
            ] {
                if get(var).is_some() {
                    return Err(ConfigError::Invalid {
                        var,
                        why: "secret values must not be in a deployed function's environment; set the secret's ARN (EUROCHAT_AGENT_TOKEN_SECRET_ARN, EUROCHAT_PSEUDONYM_KEY_ARN) instead",
                    });
                }
            }
        }
        let arn = |s: Secret| -> Result<Option<String>, ConfigError> {
            match get(s.arn_var()) {
                None => Ok(None),
                Some(v) if v.starts_with("arn:") || local_mode => Ok(Some(v.trim().to_owned())),
                Some(_) => Err(ConfigError::Invalid {
                    var: s.arn_var(),
                    why: "must be a Secrets Manager secret ARN (arn:aws:secretsmanager:…)",
                }),
            }
        };
        let mut arns = SecretArns::default();
        let (agent_keys, pseudonymizer) = {
            let agent = if needs.contains(&Secret::AgentToken) {
                match (secret(vars::AGENT_TOKEN_SECRET)?, arn(Secret::AgentToken)?) {
                    (Some(current), _) => Some((current, secret(vars::AGENT_TOKEN_SECRET_PREVIOUS)?)),
                    (None, Some(a)) => {
                        arns.agent_token = Some(a);
                        None
                    }
                    (None, None) => return Err(ConfigError::Missing(missing_var(Secret::AgentToken, in_lambda))),
                }
            } else {
                None
            };
            let pseudonym = if needs.contains(&Secret::PseudonymKey) {
                match (secret(vars::PSEUDONYM_KEY)?, arn(Secret::PseudonymKey)?) {
                    (Some(key), _) => Some(key),
                    (None, Some(a)) => {
                        arns.pseudonym_key = Some(a);
                        None
                    }
                    (None, None) => return Err(ConfigError::Missing(missing_var(Secret::PseudonymKey, in_lambda))),
                }
            } else {
                None
            };
            if let (Some((current, previous)), Some(key)) = (&agent, &pseudonym) {
                check_distinct(current, previous.as_deref(), key)?;
            }
            (
                agent.map_or_else(AgentTokenKeys::unusable, |(c, p)| AgentTokenKeys::new(&c, p.as_deref())),
                pseudonym.map_or_else(Pseudonymizer::unusable, |k| Pseudonymizer::new(&k)),
            )
        };
        let number = |var: &'static str, default: usize, range: std::ops::RangeInclusive<usize>| match get(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or(ConfigError::Invalid {
                    var,
                    why: "must be a whole number within the documented range",
                }),
        };
        let max_message_bytes = number(
            vars::MAX_MESSAGE_BYTES,
            DEFAULT_MAX_MESSAGE_BYTES,
            1..=MAX_CONFIGURABLE_MESSAGE_BYTES,
        )?;
        let per_minute = |n: usize| RateLimit {
            limit: u32::try_from(n).unwrap_or(u32::MAX),
            window: Duration::from_secs(60),
        };
        let message_rate = per_minute(number(vars::MESSAGES_PER_MINUTE, 30, 1..=10_000)?);
        // Sliding-window limits keep one timestamp per admitted request, hence the lower ceiling.
        let sliding = 1..=MAX_SLIDING_LIMIT as usize;
        let connect_rate = per_minute(number(
            vars::CONNECTS_PER_MINUTE,
            DEFAULT_CONNECTS_PER_MINUTE,
            sliding.clone(),
        )?);
        let session_rate = per_minute(number(
            vars::SESSIONS_PER_MINUTE,
            DEFAULT_SESSIONS_PER_MINUTE,
            sliding.clone(),
        )?);
        let export_rate = RateLimit {
            limit: u32::try_from(number(vars::EXPORTS_PER_HOUR, DEFAULT_EXPORTS_PER_HOUR, sliding)?)
                .unwrap_or(u32::MAX),
            window: Duration::from_secs(3600),
        };
        let ws_management_endpoint = match get(vars::WS_MANAGEMENT_ENDPOINT) {
            None => None,
            Some(v) if local_mode => Some(loopback_endpoint(vars::WS_MANAGEMENT_ENDPOINT, &v)?),
            Some(v) => {
                let ok = url::Url::parse(&v).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
                if !ok {
                    return Err(ConfigError::Invalid {
                        var: vars::WS_MANAGEMENT_ENDPOINT,
                        why: "must be an https URL",
                    });
                }
                Some(v.trim_end_matches('/').to_owned())
            }
        };
        let console_origins = get(vars::CONSOLE_ORIGINS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|o| {
                crate::domain::Origin::parse(o).map_err(|_| ConfigError::Invalid {
                    var: vars::CONSOLE_ORIGINS,
                    why: "must be comma-separated https://host[:port] origins (http only for localhost)",
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_days = MAX_RETENTION_DAYS as usize;
        let policy_limit = RetentionPolicy {
            conversation_days: number(vars::MAX_CONVERSATION_DAYS, max_days, 1..=max_days)? as u32,
            ip_policy: match get(vars::MAX_IP_POLICY) {
                None => IpPolicy::Full,
                Some(v) => IpPolicy::parse(v.trim()).ok_or(ConfigError::Invalid {
                    var: vars::MAX_IP_POLICY,
                    why: "must be none, truncated or full",
                })?,
            },
            ip_retention_days: number(vars::MAX_IP_RETENTION_DAYS, max_days, 1..=max_days)? as u32,
        };
        let config = Self {
            region,
            table_name,
            local,
            agent_keys,
            pseudonymizer,
            max_message_bytes,
            message_rate,
            connect_rate,
            session_rate,
            export_rate,
            ws_management_endpoint,
            console_origins,
            policy_limit,
        };
        Ok((config, arns))
    }

    /// The AWS SDK configuration for this config: the function's region, and in
    /// local mode the loopback endpoint with dummy credentials. Build it once at
    /// cold start and share the clients made from it.
    pub async fn aws_sdk_config(&self) -> aws_config::SdkConfig {
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()));
        let loader = match &self.local {
            Some(local) => loader.endpoint_url(local.dynamodb.clone()).credentials_provider(
                aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "eurochat-local"),
            ),
            None => loader,
        };
        loader.load().await
    }

    /// The DynamoDB store for this configuration's table, with a client built from `sdk`.
    pub fn dynamo_store(&self, sdk: &aws_config::SdkConfig) -> crate::storage::DynamoStore {
        crate::storage::DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), self.table_name.clone())
    }
}

#[cfg(test)]
mod tests;
