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
    let expected: Vec<IndexDecl> = keys::INDEXES
        .iter()
        .map(|g| {
            (
                g.name.to_owned(),
                vec![
                    (g.pk.to_owned(), "HASH".to_owned()),
                    (g.sk.to_owned(), "RANGE".to_owned()),
                ],
                "KEYS_ONLY".to_owned(),
            )
        })
        .collect();
    assert_eq!(declared, expected);
    let lsis = table(&t)["LocalSecondaryIndexes"].as_sequence().expect("LSIs");
    let declared: Vec<IndexDecl> = lsis
        .iter()
        .map(|g| {
            (
                g["IndexName"].as_str().unwrap().to_owned(),
                key_schema(&g["KeySchema"]),
                g["Projection"]["ProjectionType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let lsi1 = (
        keys::LSI1.to_owned(),
        vec![
            (keys::PK.to_owned(), "HASH".to_owned()),
            (keys::LSI1_SK.to_owned(), "RANGE".to_owned()),
        ],
        "KEYS_ONLY".to_owned(),
    );
    assert_eq!(declared, [lsi1]);
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

/// A function's inline policies (none for a function that needs no AWS permission).
fn policies(f: &Value) -> &[Value] {
    f["Properties"]["Policies"]
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_default()
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
    use chat_core::domain::IpPolicy;
    use chat_core::policy::{self, MAX_RETENTION_DAYS};
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
        vars::LAMBDA_FUNCTION_NAME,
        vars::LOCAL_MODE,
        vars::DYNAMODB_ENDPOINT,
        vars::APIGW_ENDPOINT,
        vars::SECRETSMANAGER_ENDPOINT,
        // Secret values never; secret ARNs only where used (checked below).
        vars::AGENT_TOKEN_SECRET,
        vars::AGENT_TOKEN_SECRET_PREVIOUS,
        vars::PSEUDONYM_KEY,
        vars::AGENT_TOKEN_SECRET_ARN,
        vars::PSEUDONYM_KEY_ARN,
        // Connect only (checked with the custom domains).
        vars::CONSOLE_ORIGINS,
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
    // Secret values never appear in any environment, not even resolved references.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    assert!(
        !text.contains("resolve:secretsmanager"),
        "a resolved secret lands in plain text"
    );
    for var in [
        vars::AGENT_TOKEN_SECRET,
        vars::AGENT_TOKEN_SECRET_PREVIOUS,
        vars::PSEUDONYM_KEY,
    ] {
        assert!(!global.contains(var), "{var} in Globals");
        for (name, f) in functions(&t) {
            assert!(
                f["Properties"]["Environment"]["Variables"][var].is_null(),
                "{name} has {var}"
            );
        }
    }
}

/// Each function gets exactly the secrets its `main.rs` asks `cold_start` for: the
/// ARN in its environment, `secretsmanager:GetSecretValue` on that secret only, and
/// nothing for the secrets it does not use.
#[test]
fn each_function_is_granted_exactly_the_secrets_it_reads() {
    use chat_core::config::vars;
    let t = template();
    let secrets = [
        ("Secret::AgentToken", vars::AGENT_TOKEN_SECRET_ARN, "AgentTokenSecret"),
        ("Secret::PseudonymKey", vars::PSEUDONYM_KEY_ARN, "PseudonymKeySecret"),
    ];
    let mut granted_somewhere = BTreeSet::new();
    for (name, f) in functions(&t) {
        let code = f["Properties"]["CodeUri"].as_str().unwrap();
        let main = std::fs::read_to_string(format!("{}/../{code}/src/main.rs", env!("CARGO_MANIFEST_DIR"))).unwrap();
        // A function that does not start through `cold_start` (web) reads no secret.
        let call = main
            .split_once("cold_start(&[")
            .and_then(|(_, rest)| rest.split_once("])"))
            .map(|(needs, _)| needs.to_owned())
            .unwrap_or_default();
        assert!(
            !call.is_empty() || !main.contains("Secret::"),
            "{code}: secrets named outside cold_start"
        );
        let env = &f["Properties"]["Environment"]["Variables"];
        let readable: BTreeSet<String> = policies(f)
            .iter()
            .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
            .filter(|st| strings(&st["Action"]).contains(&"secretsmanager:GetSecretValue"))
            .flat_map(|st| st["Resource"].as_sequence().cloned().unwrap_or_default())
            .filter_map(|r| conditional_ref(&r).map(|(_, then, _)| then.to_owned()))
            .collect();
        for (needed, var, resource) in secrets {
            let uses = call.contains(needed);
            assert_eq!(!env[var].is_null(), uses, "{name}: {var} in the environment");
            if uses {
                let (cond, then, otherwise) =
                    conditional_ref(&env[var]).expect("!If [Create…, !Ref secret, !Ref parameter]");
                assert_eq!((cond, then), (format!("Create{resource}").as_str(), resource), "{name}");
                assert!(is_ref(otherwise, &format!("{resource}Arn")), "{name}");
                granted_somewhere.insert(resource);
            }
            assert_eq!(readable.contains(resource), uses, "{name}: may read {resource}");
        }
    }
    assert_eq!(granted_somewhere.len(), 2, "both secrets are used");
    for (_, _, resource) in secrets {
        let r = &t["Resources"][resource];
        assert_eq!(r["Type"].as_str(), Some("AWS::SecretsManager::Secret"));
        assert!(
            is_ref(&r["Properties"]["KmsKeyId"], "DataKey"),
            "{resource} uses the stack's key"
        );
        assert!(
            r["Properties"]["Name"].is_null(),
            "{resource}: generated name, no collisions"
        );
        assert!(
            r["Properties"]["SecretString"].is_null(),
            "{resource}: no value in the template"
        );
        assert!(r["Properties"]["GenerateSecretString"]["PasswordLength"].as_u64() >= Some(32));
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

/// Origins are per site, decided by the functions (docs/protocol.md, "CORS"): the
/// HTTP API has no deployment-wide list, preflights on every path go to the web
/// function, which also serves the widget and the console, with no AWS permission.
#[test]
fn cors_is_per_site_and_the_front_end_is_hosted() {
    let t = template();
    let api = &t["Resources"]["HttpApi"]["Properties"];
    assert!(api["CorsConfiguration"].is_null(), "a deployment-wide origin list");
    assert!(t["Parameters"]["AllowedOrigins"].is_null());
    let web = &t["Resources"]["WebFunction"]["Properties"];
    let routes: BTreeSet<(String, String)> = web["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .map(|e| {
            assert!(is_ref(&e["Properties"]["ApiId"], "HttpApi"));
            (
                e["Properties"]["Method"].as_str().unwrap().to_owned(),
                e["Properties"]["Path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/widget.js"),
        ("GET", "/eurochat.css"),
        ("GET", "/console"),
        ("GET", "/console.js"),
        ("OPTIONS", "/{proxy+}"),
    ]
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .into();
    assert_eq!(routes, expected);
    assert!(web["Policies"].is_null(), "the web function needs no AWS permission");
    let (cond, _, _) = {
        let v = &web["Environment"]["Variables"][web::PUBLIC_WS_URL_VAR];
        let (tag, args) = tagged(v).expect("!If");
        assert_eq!(tag, "!If");
        (args[0].as_str().unwrap().to_owned(), (), ())
    };
    assert_eq!(cond, "HasWebSocketDomain");
}

/// Custom domains are optional, regional (same region, no global service), need a
/// certificate, and @connections never goes through them.
#[test]
fn custom_domains_are_optional_regional_and_keep_the_management_endpoint() {
    let t = template();
    for (domain, mapping, param) in [
        ("ApiDomain", "ApiDomainMapping", "ApiDomainName"),
        ("WebSocketDomain", "WebSocketDomainMapping", "WebSocketDomainName"),
    ] {
        assert_eq!(
            t["Parameters"][param]["Default"].as_str(),
            Some(""),
            "{param} is optional"
        );
        let d = &t["Resources"][domain];
        assert!(d["Condition"].as_str().is_some(), "{domain} is conditional");
        let config = &d["Properties"]["DomainNameConfigurations"][0];
        assert_eq!(config["EndpointType"].as_str(), Some("REGIONAL"), "{domain}");
        assert_eq!(config["SecurityPolicy"].as_str(), Some("TLS_1_2"), "{domain}");
        assert!(is_ref(&config["CertificateArn"], "CertificateArn"));
        assert_eq!(t["Resources"][mapping]["Condition"], d["Condition"]);
    }
    let cert = t["Parameters"]["CertificateArn"]["AllowedPattern"].as_str().unwrap();
    assert!(
        cert.contains("arn:aws:acm:eu-"),
        "{cert}: a certificate in an EU region"
    );
    assert!(!t["Rules"]["CustomDomainsNeedACertificate"].is_null());
    // Agents connect from the console the web function serves, at whichever address.
    let console = &t["Resources"]["ConnectFunction"]["Properties"]["Environment"]["Variables"]
        [chat_core::config::vars::CONSOLE_ORIGINS];
    let (tag, args) = tagged(console).expect("!If");
    assert_eq!((tag.as_str(), args[0].as_str()), ("!If", Some("HasApiDomain")));
    // Functions always call @connections on the execute-api endpoint.
    let env = &t["Globals"]["Function"]["Environment"]["Variables"][chat_core::config::vars::WS_MANAGEMENT_ENDPOINT];
    let (tag, v) = tagged(env).unwrap();
    assert_eq!(
        (tag.as_str(), v.as_str()),
        (
            "!Sub",
            Some("https://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${StageName}")
        )
    );
}

#[test]
fn iam_policies_name_actions_and_resources_without_wildcards() {
    let t = template();
    for (name, f) in functions(&t) {
        for policy in policies(f) {
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

// ---- Deploys on a fresh account (issue 12): key policy, API Gateway logging role,
// stack-derived names, auto-deployed stage, alarms, optional tracing.

fn resources(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, r)| (k.as_str().unwrap().to_owned(), r))
        .collect()
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(String, &'a Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .collect()
}

/// `(tag, value)` of a short-form intrinsic such as `!Ref X` or `!If [...]`.
fn tagged(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(s) => s.iter().filter_map(|a| a.as_str()).collect(),
        _ => Vec::new(),
    }
}

fn is_ref(v: &Value, target: &str) -> bool {
    matches!(tagged(v), Some((tag, value)) if tag == "!Ref" && value.as_str() == Some(target))
}

/// `!If [condition, !Ref then, else]`: (condition, then's target, else).
fn conditional_ref(v: &Value) -> Option<(&str, &str, &Value)> {
    let (tag, args) = tagged(v)?;
    if tag != "!If" {
        return None;
    }
    let (_, then) = tagged(&args[1])?;
    Some((args[0].as_str()?, then.as_str()?, &args[2]))
}

/// The key works on a fresh account: the account administers it, and every principal
/// of the account (the functions, whoever CloudFormation creates the table as,
/// eurochat-admin's operators) may use it through DynamoDB in this region only. No
/// statement depends on role names (aws-cdk#18616, aws-cdk#10010).
#[test]
fn kms_key_policy_works_on_a_fresh_account() {
    let t = template();
    let statements = t["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence()
        .unwrap();
    let text = serde_norway::to_string(statements).unwrap();
    for fragile in ["role/", "PrincipalArn", "AWS::StackName"] {
        assert!(!text.contains(fragile), "the key policy depends on {fragile}");
    }
    let usage = [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:DescribeKey",
        "kms:CreateGrant",
    ];
    let admin = statements
        .iter()
        .find(|s| s["Sid"].as_str() == Some("AccountAdministration"))
        .expect("an administration statement");
    let Some((_, root)) = tagged(&admin["Principal"]["AWS"]) else {
        panic!("the administrator is not a !Sub")
    };
    assert_eq!(root.as_str(), Some("arn:${AWS::Partition}:iam::${AWS::AccountId}:root"));
    assert!(admin["Condition"].is_null());
    let admin_actions = strings(&admin["Action"]);
    for action in ["kms:Put*", "kms:Describe*", "kms:ScheduleKeyDeletion"] {
        assert!(admin_actions.contains(&action), "administrators lack {action}");
    }
    for action in ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"] {
        assert!(!admin_actions.contains(&action), "{action} outside DynamoDB");
    }
    // Every statement that allows using the key requires DynamoDB in this region and a
    // caller of this account.
    let mut granted = BTreeSet::new();
    for st in statements {
        assert_eq!(st["Effect"].as_str(), Some("Allow"));
        let actions = strings(&st["Action"]);
        if !actions
            .iter()
            .any(|a| usage[..4].contains(a) || *a == "kms:CreateGrant")
        {
            continue;
        }
        let cond = &st["Condition"]["StringEquals"];
        let Some(via) = cond["kms:ViaService"].as_sequence() else {
            panic!("usage without kms:ViaService: {st:?}")
        };
        let via: BTreeSet<(String, Option<&str>)> = via
            .iter()
            .filter_map(tagged)
            .map(|(tag, v)| (tag, v.as_str()))
            .collect();
        let sub = |s: &'static str| ("!Sub".to_owned(), Some(s));
        assert_eq!(
            via,
            BTreeSet::from([
                sub("dynamodb.${AWS::Region}.amazonaws.com"),
                sub("secretsmanager.${AWS::Region}.amazonaws.com")
            ]),
            "the key is used only through DynamoDB and Secrets Manager"
        );
        assert!(is_ref(&cond["kms:CallerAccount"], "AWS::AccountId"), "{st:?}");
        granted.extend(actions);
    }
    for action in usage {
        assert!(granted.contains(&action), "nobody may {action} through DynamoDB");
    }
    // The functions keep their own narrow grants: through DynamoDB, and (only for
    // decrypting their secrets) through Secrets Manager.
    for (name, f) in functions(&t) {
        let kms: Vec<&Value> = policies(f)
            .iter()
            .flat_map(|p| p["Statement"].as_sequence().unwrap())
            .filter(|st| strings(&st["Action"]).iter().any(|a| a.starts_with("kms:")))
            .collect();
        // Every function but web (which touches no table) uses the key through DynamoDB.
        assert!(
            matches!(kms.len(), 1 | 2) || (name == "WebFunction" && kms.is_empty()),
            "{name}"
        );
        for st in kms {
            let (tag, via) = tagged(&st["Condition"]["StringEquals"]["kms:ViaService"]).expect("ViaService");
            assert_eq!(tag, "!Sub", "{name}");
            match via.as_str() {
                Some("dynamodb.${AWS::Region}.amazonaws.com") => {}
                Some("secretsmanager.${AWS::Region}.amazonaws.com") => {
                    assert_eq!(strings(&st["Action"]), ["kms:Decrypt"], "{name}: secrets are only read")
                }
                other => panic!("{name}: kms through {other:?}"),
            }
        }
    }
}

/// WebSocket access logs need API Gateway's account-level CloudWatch role. The stack sets
/// it unless told not to, and the stage waits for it when it does.
#[test]
fn api_gateway_account_role_is_optional_and_precedes_the_stage() {
    let t = template();
    let param = &t["Parameters"]["ManageApiGatewayAccountRole"];
    assert_eq!(param["Default"].as_str(), Some("true"));
    assert_eq!(strings(&param["AllowedValues"]), vec!["true", "false"]);
    let Some((tag, args)) = tagged(&t["Conditions"]["ManageApiGatewayAccount"]) else {
        panic!("no ManageApiGatewayAccount condition")
    };
    assert_eq!(tag, "!Equals");
    assert!(is_ref(&args[0], "ManageApiGatewayAccountRole"));
    assert_eq!(args[1].as_str(), Some("true"));

    let account = &t["Resources"]["ApiGatewayAccount"];
    assert_eq!(account["Type"].as_str(), Some("AWS::ApiGateway::Account"));
    assert_eq!(account["Condition"].as_str(), Some("ManageApiGatewayAccount"));
    let Some((tag, role)) = tagged(&account["Properties"]["CloudWatchRoleArn"]) else {
        panic!("CloudWatchRoleArn is not a !GetAtt")
    };
    assert_eq!(
        (tag.as_str(), role.as_str()),
        ("!GetAtt", Some("ApiGatewayCloudWatchRole.Arn"))
    );
    let role = &t["Resources"]["ApiGatewayCloudWatchRole"];
    assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"));
    assert_eq!(role["Condition"].as_str(), Some("ManageApiGatewayAccount"));
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["Service"].as_str(), Some("apigateway.amazonaws.com"));
    let managed = serde_norway::to_string(&role["Properties"]["ManagedPolicyArns"]).unwrap();
    assert!(
        managed.contains(":iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"),
        "{managed}"
    );
    // The setting is account-wide: deleting the stack must not pull it from other APIs.
    for r in [account, role] {
        assert_eq!(r["DeletionPolicy"].as_str(), Some("Retain"));
    }

    // DependsOn cannot be conditional; a conditional !Ref in the stage's tags is the
    // dependency when the account resource exists, and nothing when it does not.
    let stage = &t["Resources"]["WebSocketStage"];
    let deps = strings(&stage["DependsOn"]);
    assert!(!deps.contains(&"ApiGatewayAccount"), "an unconditional dependency");
    let tags = stage["Properties"]["Tags"].as_mapping().expect("stage tags");
    let refs: Vec<(&str, &str, &Value)> = tags.values().filter_map(conditional_ref).collect();
    assert!(
        refs.iter().any(|(c, target, other)| *c == "ManageApiGatewayAccount"
            && *target == "ApiGatewayAccount"
            && other.as_str().is_some()),
        "the stage does not wait for ApiGatewayAccount: {tags:?}"
    );
}

/// Two stacks in one account and region never collide: every explicit name is derived
/// from the stack name (or from another of the stack's resources), and the retention
/// schedule, which SAM names after its event, lives in a group CloudFormation names.
#[test]
fn explicit_names_are_unique_per_stack() {
    let t = template();
    // Properties that name something other than the resource itself, or a label
    // that need not be unique (the alarm topic's DisplayName).
    let not_a_resource_name = ["MetricName", "IndexName", "AttributeName", "DisplayName"];
    for (logical, r) in resources(&t) {
        let Some(props) = r["Properties"].as_mapping() else {
            continue;
        };
        for (key, value) in props {
            let key = key.as_str().unwrap();
            if !key.ends_with("Name") || not_a_resource_name.contains(&key) {
                continue;
            }
            match tagged(value) {
                Some((tag, v)) if tag == "!Sub" => assert!(
                    v.as_str().unwrap().contains("${AWS::StackName}"),
                    "{logical}.{key} = {v:?} is not derived from the stack name"
                ),
                // A parameter scoped by another resource (StageName), or another resource.
                Some((tag, _)) if tag == "!Ref" || tag == "!GetAtt" => {}
                _ => panic!("{logical}.{key} is fixed: {value:?}"),
            }
        }
    }
    for (logical, r) in of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .chain(of_type(&t, "AWS::SNS::Topic"))
        .chain(of_type(&t, "AWS::SQS::Queue"))
        .chain(of_type(&t, "AWS::IAM::Role"))
        .chain(of_type(&t, "AWS::Scheduler::ScheduleGroup"))
    {
        let p = &r["Properties"];
        for key in ["AlarmName", "TopicName", "QueueName", "RoleName", "Name"] {
            assert!(p[key].is_null(), "{logical} sets {key}");
        }
    }
    let schedule = &t["Resources"]["RetentionFunction"]["Properties"]["Events"]["Schedule"];
    assert_eq!(schedule["Type"].as_str(), Some("ScheduleV2"));
    assert!(schedule["Properties"]["Name"].is_null());
    let group = &schedule["Properties"]["GroupName"];
    assert!(is_ref(group, "RetentionScheduleGroup"), "{group:?}");
    assert_eq!(
        t["Resources"]["RetentionScheduleGroup"]["Type"].as_str(),
        Some("AWS::Scheduler::ScheduleGroup")
    );
}

/// The WebSocket stage deploys itself on every change to routes and integrations; no
/// Deployment resource pins it to the first set of routes.
#[test]
fn websocket_stage_auto_deploys() {
    let t = template();
    assert!(of_type(&t, "AWS::ApiGatewayV2::Deployment").is_empty());
    let stage = &t["Resources"]["WebSocketStage"];
    assert_eq!(stage["Properties"]["AutoDeploy"].as_bool(), Some(true));
    assert!(stage["Properties"]["DeploymentId"].is_null());
    // Created after every route, so its first deployment has them all.
    let deps: BTreeSet<&str> = strings(&stage["DependsOn"]).into_iter().collect();
    let routes: BTreeSet<String> = of_type(&t, "AWS::ApiGatewayV2::Route")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(deps, routes.iter().map(String::as_str).collect::<BTreeSet<&str>>());
}

fn alarms(t: &Value) -> Vec<(String, &Value)> {
    of_type(t, "AWS::CloudWatch::Alarm")
}

/// (namespace, metric, dimension value's `!Ref`/`!GetAtt` target) of each alarm.
fn alarm_metrics(t: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (_, a) in alarms(t) {
        let p = &a["Properties"];
        // Metric-math alarms (per-index throttles) are checked on their own.
        let Some(dimensions) = p["Dimensions"].as_sequence() else {
            continue;
        };
        for d in dimensions {
            let (_, target) = tagged(&d["Value"]).expect("dimension is a reference");
            out.insert((
                p["Namespace"].as_str().unwrap().to_owned(),
                p["MetricName"].as_str().unwrap().to_owned(),
                target.as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn every_alarm_goes_to_one_topic_in_the_region() {
    let t = template();
    let param = &t["Parameters"]["AlarmTopicArn"];
    assert_eq!(param["Default"].as_str(), Some(""));
    // An SNS topic in an EU region (CloudWatch itself refuses one outside the alarm's region).
    let pattern = param["AllowedPattern"].as_str().unwrap();
    assert!(pattern.starts_with("^$|^arn:aws:sns:eu-"), "{pattern}");
    let topic = &t["Resources"]["AlarmTopic"];
    assert_eq!(topic["Type"].as_str(), Some("AWS::SNS::Topic"));
    assert_eq!(topic["Condition"].as_str(), Some("CreateAlarmTopic"));
    let output = conditional_ref(&t["Outputs"]["AlarmTopicArn"]["Value"]).expect("output");
    assert_eq!((output.0, output.1), ("CreateAlarmTopic", "AlarmTopic"));
    assert!(is_ref(output.2, "AlarmTopicArn"));
    let list = alarms(&t);
    assert!(!list.is_empty());
    for (name, a) in list {
        let actions = a["Properties"]["AlarmActions"].as_sequence().unwrap();
        assert_eq!(actions.len(), 1, "{name}");
        let (cond, then, other) = conditional_ref(&actions[0]).expect("a conditional topic");
        assert_eq!((cond, then), ("CreateAlarmTopic", "AlarmTopic"), "{name}");
        assert!(is_ref(other, "AlarmTopicArn"), "{name}");
        assert!(a["Properties"]["AlarmName"].is_null(), "{name}");
    }
}

#[test]
fn alarms_cover_functions_retention_table_and_apis() {
    let t = template();
    let metrics = alarm_metrics(&t);
    let has =
        |ns: &str, metric: &str, target: &str| metrics.contains(&(ns.to_owned(), metric.to_owned(), target.to_owned()));
    for (name, _) in functions(&t) {
        for metric in ["Errors", "Throttles"] {
            assert!(has("AWS/Lambda", metric, &name), "no {metric} alarm for {name}");
        }
    }
    assert!(has(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "RetentionDeadLetters.QueueName"
    ));
    for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
        assert!(has("AWS/DynamoDB", metric, "ChatTable"), "{metric}");
    }
    assert!(has("AWS/ApiGateway", "5xx", "HttpApi"));
    // The retention job's own summary metric: a stalled job alarms even when nothing fails.
    assert!(has("eurochat", "RetentionComplete", "RetentionFunction"));
    let stalled = &t["Resources"]["RetentionStalledAlarm"]["Properties"];
    assert_eq!(
        stalled["TreatMissingData"].as_str(),
        Some("breaching"),
        "a job that never runs alarms"
    );
    assert_eq!(chat_core::metrics::NAMESPACE, "eurochat");
    // Every index's throttles, reads and writes.
    let indexes: BTreeSet<String> = t["Resources"]["ChatTable"]["Properties"]["GlobalSecondaryIndexes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| g["IndexName"].as_str().unwrap().to_owned())
        .collect();
    let mut watched = BTreeSet::new();
    for (_, a) in alarms(&t) {
        let Some(queries) = a["Properties"]["Metrics"].as_sequence() else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for q in queries {
            let m = &q["MetricStat"]["Metric"];
            if m["Namespace"].as_str() != Some("AWS/DynamoDB") {
                continue;
            }
            let dims = m["Dimensions"].as_sequence().unwrap();
            assert!(is_ref(&dims[0]["Value"], "ChatTable"));
            let index = dims[1]["Value"].as_str().unwrap().to_owned();
            seen.insert((index, m["MetricName"].as_str().unwrap().to_owned()));
        }
        for (index, _) in &seen {
            for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
                assert!(seen.contains(&(index.clone(), metric.to_owned())), "{index} {metric}");
            }
            watched.insert(index.clone());
        }
    }
    assert_eq!(watched, indexes, "every index has a throttle alarm");
    assert!(has("AWS/ApiGateway", "ExecutionError", "WebSocketApi"));
    // IntegrationError counts deliberate 4xx answers (refused handshakes): no alarm on it.
    assert!(!has("AWS/ApiGateway", "IntegrationError", "WebSocketApi"));
}

/// X-Ray tracing is off unless asked for, and set once for every function.
#[test]
fn tracing_is_optional_and_off_by_default() {
    let t = template();
    let param = &t["Parameters"]["EnableTracing"];
    assert_eq!(param["Default"].as_str(), Some("false"));
    assert_eq!(strings(&param["AllowedValues"]), vec!["true", "false"]);
    let Some((tag, args)) = tagged(&t["Globals"]["Function"]["Tracing"]) else {
        panic!("Globals set no conditional Tracing")
    };
    assert_eq!(tag, "!If");
    assert_eq!(args[0].as_str(), Some("TracingEnabled"));
    assert_eq!(args[1].as_str(), Some("Active"));
    assert!(is_ref(&args[2], "AWS::NoValue"));
    for (name, f) in functions(&t) {
        assert!(f["Properties"]["Tracing"].is_null(), "{name} overrides Tracing");
    }
}
