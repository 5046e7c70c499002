//! Configuration: every variable, its validation, and the secret rules.

use std::collections::HashMap;

use super::*;

fn base() -> HashMap<&'static str, String> {
    HashMap::from([
        (vars::REGION, "eu-central-1".to_owned()),
        (vars::TABLE_NAME, "eurochat".to_owned()),
        (
            vars::AGENT_TOKEN_SECRET,
            "agent-token-secret-for-config-tests".to_owned(),
        ),
        (vars::PSEUDONYM_KEY, "pseudonym-key-for-config-tests-0123".to_owned()),
    ])
}

fn load(env: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
    Config::from_lookup(|k| env.get(k).cloned())
}

#[test]
fn valid_eu_config_with_defaults() {
    let c = load(&base()).unwrap();
    assert_eq!(c.max_message_bytes, 4096);
    assert_eq!(c.message_rate.limit, 30);
    assert!(c.local.is_none());
    assert_eq!(c.policy_limit, RetentionPolicy::UNLIMITED);
}

#[test]
fn abuse_limits_have_documented_defaults_and_ranges() {
    let c = load(&base()).unwrap();
    assert_eq!(
        (c.connect_rate.limit, c.connect_rate.window),
        (20, Duration::from_secs(60))
    );
    assert_eq!(
        (c.session_rate.limit, c.session_rate.window),
        (10, Duration::from_secs(60))
    );
    assert_eq!(
        (c.export_rate.limit, c.export_rate.window),
        (20, Duration::from_secs(3600))
    );
    for var in [
        vars::CONNECTS_PER_MINUTE,
        vars::SESSIONS_PER_MINUTE,
        vars::EXPORTS_PER_HOUR,
    ] {
        for ok in ["1", "100"] {
            let mut env = base();
            env.insert(var, ok.into());
            assert!(load(&env).is_ok(), "{var}={ok}");
        }
        for bad in ["0", "101", "-1", "ten", "1.5"] {
            let mut env = base();
            env.insert(var, bad.into());
            let err = load(&env).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { var: v, .. } if v == var),
                "{var}={bad}: {err}"
            );
        }
    }
    let mut env = base();
    env.insert(vars::SESSIONS_PER_MINUTE, "3".into());
    env.insert(vars::EXPORTS_PER_HOUR, "4".into());
    let c = load(&env).unwrap();
    assert_eq!((c.session_rate.limit, c.export_rate.limit), (3, 4));
}

#[test]
fn deployment_policy_limit_is_read_and_validated() {
    let mut env = base();
    env.insert(vars::MAX_CONVERSATION_DAYS, "90".into());
    env.insert(vars::MAX_IP_POLICY, "none".into());
    env.insert(vars::MAX_IP_RETENTION_DAYS, "7".into());
    let c = load(&env).unwrap();
    assert_eq!(
        c.policy_limit,
        RetentionPolicy {
            conversation_days: 90,
            ip_policy: IpPolicy::None,
            ip_retention_days: 7
        }
    );
    for (var, bad) in [
        (vars::MAX_CONVERSATION_DAYS, "0"),
        (vars::MAX_CONVERSATION_DAYS, "3651"),
        (vars::MAX_IP_RETENTION_DAYS, "forever"),
        (vars::MAX_IP_POLICY, "partial"),
    ] {
        let mut env = base();
        env.insert(var, bad.into());
        match load(&env) {
            Err(ConfigError::Invalid { var: v, .. }) => assert_eq!(v, var),
            other => panic!("{var}={bad}: {other:?}"),
        }
    }
}

#[test]
fn every_eu_region_is_accepted_and_others_refused() {
    for r in EU_REGIONS {
        let mut env = base();
        env.insert(vars::REGION, r.to_owned());
        assert!(load(&env).is_ok(), "{r}");
    }
    for r in ["us-east-1", "eu-west-2", "eu-central-2", "me-central-1", "EU-CENTRAL-1"] {
        let mut env = base();
        env.insert(vars::REGION, r.to_owned());
        let err = load(&env).unwrap_err();
        assert_eq!(err, ConfigError::RegionOutsideEu(r.to_owned()));
        assert!(err.to_string().contains("outside the EU"));
    }
}

#[test]
fn local_mode_allows_any_region_only_with_loopback_endpoints() {
    let mut env = base();
    env.insert(vars::REGION, "us-east-1".to_owned());
    env.insert(vars::LOCAL_MODE, "true".to_owned());
    env.insert(vars::DYNAMODB_ENDPOINT, "http://127.0.0.1:5000/".to_owned());
    let c = load(&env).unwrap();
    assert_eq!(c.local.unwrap().dynamodb, "http://127.0.0.1:5000");

    env.insert(vars::DYNAMODB_ENDPOINT, "http://10.0.0.5:5000".to_owned());
    assert!(matches!(
        load(&env),
        Err(ConfigError::Invalid {
            var: vars::DYNAMODB_ENDPOINT,
            ..
        })
    ));
    env.remove(vars::DYNAMODB_ENDPOINT);
    assert_eq!(load(&env).unwrap_err(), ConfigError::Missing(vars::DYNAMODB_ENDPOINT));
}

#[test]
fn endpoint_overrides_need_local_mode() {
    let mut env = base();
    env.insert(vars::DYNAMODB_ENDPOINT, "http://127.0.0.1:5000".to_owned());
    assert!(matches!(
        load(&env),
        Err(ConfigError::Invalid {
            var: vars::DYNAMODB_ENDPOINT,
            ..
        })
    ));
}

#[test]
fn missing_and_weak_secrets_are_named() {
    let mut env = base();
    env.remove(vars::AGENT_TOKEN_SECRET);
    assert_eq!(load(&env).unwrap_err(), ConfigError::Missing(vars::AGENT_TOKEN_SECRET));
    env.insert(vars::AGENT_TOKEN_SECRET, "short".to_owned());
    let err = load(&env).unwrap_err();
    assert!(err.to_string().starts_with("EUROCHAT_AGENT_TOKEN_SECRET is invalid"));
    assert!(
        !err.to_string().contains("short"),
        "the value never appears in the message"
    );
}

#[test]
fn low_entropy_secrets_are_refused_by_name() {
    for var in [
        vars::AGENT_TOKEN_SECRET,
        vars::AGENT_TOKEN_SECRET_PREVIOUS,
        vars::PSEUDONYM_KEY,
    ] {
        for weak in ["x".repeat(64), "ab".repeat(20), "0123456789abcdef".repeat(2)] {
            let mut env = base();
            env.insert(var, weak.clone());
            match load(&env) {
                Err(e @ ConfigError::Invalid { var: v, .. }) => {
                    assert_eq!(v, var, "{weak}");
                    assert!(!e.to_string().contains(&weak), "the value never appears in the message");
                }
                other => panic!("{var}={weak}: {other:?}"),
            }
        }
    }
}

#[test]
fn agent_secrets_equal_to_the_pseudonym_key_are_refused() {
    let mut env = base();
    env.insert(vars::AGENT_TOKEN_SECRET, env[vars::PSEUDONYM_KEY].clone());
    let err = load(&env).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid {
            var: vars::AGENT_TOKEN_SECRET,
            ..
        }
    ));
    assert!(err.to_string().contains("EUROCHAT_PSEUDONYM_KEY"));

    let mut env = base();
    env.insert(vars::AGENT_TOKEN_SECRET_PREVIOUS, env[vars::PSEUDONYM_KEY].clone());
    assert!(matches!(
        load(&env),
        Err(ConfigError::Invalid {
            var: vars::AGENT_TOKEN_SECRET_PREVIOUS,
            ..
        })
    ));
    env.insert(
        vars::AGENT_TOKEN_SECRET_PREVIOUS,
        "previous-agent-secret-for-config-tests".into(),
    );
    assert!(load(&env).is_ok());
}

#[test]
fn management_endpoint_must_be_https_outside_local_mode() {
    let mut env = base();
    env.insert(
        vars::WS_MANAGEMENT_ENDPOINT,
        "http://abc.execute-api.eu-central-1.amazonaws.com/prod".to_owned(),
    );
    assert!(matches!(
        load(&env),
        Err(ConfigError::Invalid {
            var: vars::WS_MANAGEMENT_ENDPOINT,
            ..
        })
    ));
    env.insert(
        vars::WS_MANAGEMENT_ENDPOINT,
        "https://abc.execute-api.eu-central-1.amazonaws.com/prod/".to_owned(),
    );
    assert_eq!(
        load(&env).unwrap().ws_management_endpoint.as_deref(),
        Some("https://abc.execute-api.eu-central-1.amazonaws.com/prod")
    );
}

#[test]
fn numbers_are_range_checked() {
    let mut env = base();
    env.insert(vars::MAX_MESSAGE_BYTES, "40000".to_owned());
    assert!(load(&env).is_err(), "beyond what fits in a 32 KB frame");
    env.insert(vars::MAX_MESSAGE_BYTES, "abc".to_owned());
    assert!(load(&env).is_err());
    env.insert(vars::MAX_MESSAGE_BYTES, "2000".to_owned());
    assert_eq!(load(&env).unwrap().max_message_bytes, 2000);
}

const AGENT_ARN: &str = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:eurochat-agent-AbCdEf";
const PSEUDONYM_ARN: &str = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:eurochat-pseudo-AbCdEf";

fn lambda_env() -> HashMap<&'static str, String> {
    HashMap::from([
        (vars::REGION, "eu-central-1".to_owned()),
        (vars::TABLE_NAME, "eurochat".to_owned()),
        (vars::LAMBDA_FUNCTION_NAME, "eurochat-connect".to_owned()),
        (vars::AGENT_TOKEN_SECRET_ARN, AGENT_ARN.to_owned()),
        (vars::PSEUDONYM_KEY_ARN, PSEUDONYM_ARN.to_owned()),
    ])
}

fn load_for(env: &HashMap<&'static str, String>, needs: &[Secret]) -> Result<(Config, SecretArns), ConfigError> {
    Config::from_lookup_for(|k| env.get(k).cloned(), needs)
}

#[test]
fn a_deployed_function_gets_secret_arns_to_read() {
    let both = [Secret::AgentToken, Secret::PseudonymKey];
    let (_, arns) = load_for(&lambda_env(), &both).unwrap();
    assert_eq!(arns.agent_token.as_deref(), Some(AGENT_ARN));
    assert_eq!(arns.pseudonym_key.as_deref(), Some(PSEUDONYM_ARN));
    // Only what the function uses is read; the rest stays unread and unusable.
    let (_, arns) = load_for(&lambda_env(), &[Secret::PseudonymKey]).unwrap();
    assert_eq!(arns.agent_token, None);
    let (config, arns) = load_for(&lambda_env(), &[]).unwrap();
    assert_eq!(arns, SecretArns::default());
    let token = AgentTokenKeys::new(b"agent-token-secret-for-config-tests", None).mint(
        &crate::domain::SiteId::parse("demo").unwrap(),
        &crate::domain::AgentId::parse("ana").unwrap(),
        crate::domain::AgentRole::Agent,
        crate::clock::Timestamp::from_secs(1_800_000_000),
        Duration::from_secs(3600),
    );
    assert!(
        config
            .agent_keys
            .verify(&token, crate::clock::Timestamp::from_secs(1_800_000_000))
            .is_err(),
        "a function not granted the secret verifies nothing"
    );
    // A needed secret with neither value nor ARN is named by its ARN variable in Lambda.
    let mut env = lambda_env();
    env.remove(vars::PSEUDONYM_KEY_ARN);
    assert_eq!(
        load_for(&env, &both).unwrap_err(),
        ConfigError::Missing(vars::PSEUDONYM_KEY_ARN)
    );
    env.insert(vars::PSEUDONYM_KEY_ARN, "eurochat-pseudo".into());
    assert_eq!(
        load_for(&env, &both).unwrap_err().to_string(),
        "EUROCHAT_PSEUDONYM_KEY_ARN is invalid: must be a Secrets Manager secret ARN (arn:aws:secretsmanager:…)"
    );
    // `from_lookup` cannot read Secrets Manager and says which value it lacks.
    let env = lambda_env();
    assert_eq!(
        Config::from_lookup(|k| env.get(k).cloned()).unwrap_err(),
        ConfigError::Missing(vars::AGENT_TOKEN_SECRET)
    );
}

#[test]
fn secret_values_are_refused_in_a_deployed_function() {
    for var in [
        vars::AGENT_TOKEN_SECRET,
        vars::AGENT_TOKEN_SECRET_PREVIOUS,
        vars::PSEUDONYM_KEY,
    ] {
        let mut env = lambda_env();
        env.insert(var, "a-perfectly-random-looking-secret-0123456789".into());
        let err = load_for(&env, &[]).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { var: v, .. } if v == var),
            "{var}: {err}"
        );
        assert!(!err.to_string().contains("random-looking"), "never the value");
        // Local mode (the local gateway, tests, moto) may pass values.
        env.insert(vars::LOCAL_MODE, "true".into());
        env.insert(vars::DYNAMODB_ENDPOINT, "http://127.0.0.1:8000".into());
        assert!(load_for(&env, &[]).is_ok(), "{var} in local mode");
    }
    // Outside Lambda (an operator's machine) values are fine too.
    assert!(load(&base()).is_ok());
}

#[test]
fn the_console_origins_are_origins() {
    let mut env = base();
    env.insert(
        vars::CONSOLE_ORIGINS,
        "https://Chat-API.example.com:443, https://abc.execute-api.eu-central-1.amazonaws.com".into(),
    );
    let origins: Vec<String> = load(&env)
        .unwrap()
        .console_origins
        .iter()
        .map(|o| o.as_str().to_owned())
        .collect();
    assert_eq!(
        origins,
        [
            "https://chat-api.example.com",
            "https://abc.execute-api.eu-central-1.amazonaws.com"
        ]
    );
    assert!(load(&base()).unwrap().console_origins.is_empty());
    for bad in [
        "http://chat-api.example.com",
        "https://chat-api.example.com/console",
        "null",
    ] {
        env.insert(vars::CONSOLE_ORIGINS, bad.into());
        assert!(
            matches!(
                load(&env),
                Err(ConfigError::Invalid {
                    var: vars::CONSOLE_ORIGINS,
                    ..
                })
            ),
            "{bad}"
        );
    }
}
