//! `template.yaml` and the code must describe the same table and the same EU
//! region list: the store creates tables (moto, local runs) from
//! `chat_core::storage::schema`, AWS creates it from the template.

use std::collections::BTreeSet;

use chat_core::config::EU_REGIONS;
use chat_core::storage::{keys, schema};
use serde_norway::Value;

/// (index name, key schema, projection type).
type IndexDecl = (String, Vec<(String, String)>, String);

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).expect("read template.yaml");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

fn table(t: &Value) -> &Value {
    &t["Resources"]["ChatTable"]["Properties"]
}

fn key_schema(v: &Value) -> Vec<(String, String)> {
    v.as_sequence()
        .expect("KeySchema is a list")
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn table_keys_match_the_store() {
    let t = template();
    let props = table(&t);
    assert_eq!(props["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(
        key_schema(&props["KeySchema"]),
        vec![
            (keys::PK.to_owned(), "HASH".to_owned()),
            (keys::SK.to_owned(), "RANGE".to_owned())
        ]
    );
    let defined: BTreeSet<(String, String)> = props["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = schema::attribute_names()
        .into_iter()
        .map(|n| (n.to_owned(), "S".to_owned()))
        .collect();
    assert_eq!(defined, expected);
}

#[test]
fn indexes_match_the_store() {
    let t = template();
    let gsis = table(&t)["GlobalSecondaryIndexes"].as_sequence().expect("GSIs");
    let declared: Vec<IndexDecl> = gsis
        .iter()
        .map(|g| {
            (
                g["IndexName"].as_str().unwrap().to_owned(),
                key_schema(&g["KeySchema"]),
                g["Projection"]["ProjectionType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<IndexDecl> = keys::GSIS
        .iter()
        .map(|(name, p, s)| {
            (
                name.to_string(),
                vec![(p.to_string(), "HASH".to_owned()), (s.to_string(), "RANGE".to_owned())],
                "ALL".to_owned(),
            )
        })
        .collect();
    assert_eq!(declared, expected);
}

#[test]
fn ttl_pitr_encryption_and_protection_are_on() {
    let t = template();
    let props = table(&t);
    assert_eq!(
        props["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(keys::TTL)
    );
    assert_eq!(props["TimeToLiveSpecification"]["Enabled"].as_bool(), Some(true));
    assert_eq!(
        props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(props["SSESpecification"]["SSEType"].as_str(), Some("KMS"));
    assert!(
        !props["SSESpecification"]["KMSMasterKeyId"].is_null(),
        "a customer-managed key"
    );
    assert_eq!(props["DeletionProtectionEnabled"].as_bool(), Some(true));
}

#[test]
fn region_rule_equals_the_runtime_guard() {
    let t = template();
    let assertion = &t["Rules"]["EuRegionsOnly"]["Assertions"][0]["Assert"];
    // `!Contains [[regions...], !Ref AWS::Region]` parses as a tagged sequence.
    let Value::Tagged(tagged) = assertion else {
        panic!("Assert is not a !Contains: {assertion:?}")
    };
    assert_eq!(tagged.tag, "!Contains");
    let regions: Vec<&str> = tagged.value[0]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(regions, EU_REGIONS.to_vec());
    let Value::Tagged(reference) = &tagged.value[1] else {
        panic!("second argument is not a !Ref")
    };
    assert_eq!(
        (reference.tag.to_string().as_str(), reference.value.as_str()),
        ("!Ref", Some("AWS::Region"))
    );
}

fn functions(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(k, r)| (k.as_str().unwrap().to_owned(), r))
        .collect()
}

fn function_crates() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_function_crate_is_a_function_and_nothing_else_is() {
    let t = template();
    let declared: BTreeSet<String> = functions(&t)
        .iter()
        .map(|(_, f)| {
            f["Properties"]["CodeUri"]
                .as_str()
                .unwrap()
                .strip_prefix("functions/")
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(declared, function_crates());
    assert_eq!(declared.len(), functions(&t).len(), "one function per crate");
    let g = &t["Globals"]["Function"];
    assert_eq!(g["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(g["Handler"].as_str(), Some("bootstrap"));
    assert_eq!(g["Architectures"][0].as_str(), Some("arm64"));
    for (name, f) in functions(&t) {
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}"
        );
        let p = &f["Properties"];
        assert!(
            p["MemorySize"].as_u64().is_some() && p["Timeout"].as_u64().is_some(),
            "{name} sets memory and timeout"
        );
        assert_eq!(p["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"), "{name}");
        let Value::Tagged(group) = &p["LoggingConfig"]["LogGroup"] else {
            panic!("{name} has no own log group")
        };
        let group = group.value.as_str().unwrap();
        assert!(
            !t["Resources"][group]["Properties"]["RetentionInDays"].is_null(),
            "{group} has a retention"
        );
    }
}

/// The privacy parameters' defaults and bounds are the product's: a team that accepts the
/// defaults gets the documented policy, and CloudFormation refuses what the config would.
#[test]
fn privacy_parameters_match_the_policy() {
    use chat_core::policy::{self, IpPolicy, MAX_RETENTION_DAYS};
    let t = template();
    let p = &t["Parameters"];
    for (name, default) in [
        ("ConversationRetentionDays", policy::DEFAULT_CONVERSATION_RETENTION_DAYS),
        ("IpRetentionDays", policy::DEFAULT_IP_RETENTION_DAYS),
    ] {
        assert_eq!(p[name]["Default"].as_u64(), Some(u64::from(default)), "{name}");
        assert_eq!(p[name]["MinValue"].as_u64(), Some(1), "{name}");
        assert_eq!(
            p[name]["MaxValue"].as_u64(),
            Some(u64::from(MAX_RETENTION_DAYS)),
            "{name}"
        );
    }
    let allowed: Vec<&str> = p["IpPolicy"]["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(allowed.iter().all(|v| IpPolicy::parse(v).is_some()), "{allowed:?}");
    assert_eq!(allowed.len(), 3);
    assert_eq!(
        IpPolicy::parse(p["IpPolicy"]["Default"].as_str().unwrap()),
        Some(IpPolicy::default())
    );
}

#[test]
fn every_variable_the_config_reads_is_set() {
    use chat_core::config::vars;
    let t = template();
    // Set by Lambda itself, or only meaningful in local runs.
    let not_in_template = [
        vars::REGION,
        vars::LOCAL_MODE,
        vars::DYNAMODB_ENDPOINT,
        vars::APIGW_ENDPOINT,
    ];
    let global: BTreeSet<String> = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    for (name, f) in functions(&t) {
        let mut set = global.clone();
        if let Some(m) = f["Properties"]["Environment"]["Variables"].as_mapping() {
            set.extend(m.keys().map(|k| k.as_str().unwrap().to_owned()));
        }
        for var in vars::ALL.iter().filter(|v| !not_in_template.contains(v)) {
            assert!(set.contains(*var), "{name} lacks {var}");
        }
    }
    // Secrets come by reference, never as literals.
    let env = &t["Globals"]["Function"]["Environment"]["Variables"];
    for secret in [vars::AGENT_TOKEN_SECRET, vars::PSEUDONYM_KEY] {
        let Value::Tagged(sub) = &env[secret] else {
            panic!("{secret} is not a !Sub")
        };
        assert!(
            sub.value.as_str().unwrap().starts_with("{{resolve:secretsmanager:"),
            "{secret}"
        );
    }
}

#[test]
fn websocket_routes_are_exactly_the_message_actions() {
    let t = template();
    let keys: BTreeSet<String> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::ApiGatewayV2::Route"))
        .map(|r| r["Properties"]["RouteKey"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: BTreeSet<String> = message::ACTIONS.iter().map(|a| a.to_string()).collect();
    expected.extend(["$connect", "$disconnect", "$default"].map(String::from));
    assert_eq!(keys, expected);
    let api = &t["Resources"]["WebSocketApi"]["Properties"];
    assert_eq!(api["RouteSelectionExpression"].as_str(), Some("$request.body.action"));
    let format = t["Resources"]["WebSocketStage"]["Properties"]["AccessLogSettings"]["Format"]
        .as_str()
        .unwrap();
    for personal in ["sourceIp", "userAgent", "querystring", "identity"] {
        assert!(!format.contains(personal), "access logs must not carry {personal}");
    }
}

/// eurochat sets no cookie (docs/protocol.md, "No cookie"), so the HTTP API lets no
/// origin send credentials.
#[test]
fn http_api_cors_allows_no_credentials() {
    let t = template();
    let cors = &t["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"];
    assert_eq!(cors["AllowCredentials"].as_bool(), Some(false));
    let headers: Vec<&str> = cors["AllowHeaders"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    assert!(!headers.iter().any(|h| h.eq_ignore_ascii_case("cookie")), "{headers:?}");
}

#[test]
fn iam_policies_name_actions_and_resources_without_wildcards() {
    let t = template();
    for (name, f) in functions(&t) {
        for policy in f["Properties"]["Policies"].as_sequence().unwrap() {
            for st in policy["Statement"].as_sequence().unwrap() {
                let actions: Vec<&str> = match &st["Action"] {
                    Value::String(s) => vec![s.as_str()],
                    Value::Sequence(s) => s.iter().map(|a| a.as_str().unwrap()).collect(),
                    other => panic!("{name}: {other:?}"),
                };
                assert!(
                    actions.iter().all(|a| !a.contains('*')),
                    "{name}: wildcard action in {actions:?}"
                );
                assert_ne!(st["Resource"].as_str(), Some("*"), "{name}: wildcard resource");
            }
        }
    }
}
