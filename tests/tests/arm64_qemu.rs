//! The arm64 Lambda bootstraps, as deployed, run one full chat and GDPR flow.
//!
//! `make lambda-build` builds every function for Lambda (release,
//! aarch64-unknown-linux-gnu, provided.al2023) into
//! `target/lambda/<function>/bootstrap`. This test runs those very files under
//! qemu-user (`qemu-aarch64-static -L /usr/aarch64-linux-gnu`, Debian's
//! `qemu-user-static` and `libc6-arm64-cross`), each as one warm process against
//! a stand-in Lambda Runtime API ([`eurochat_tests::runtime_api`]) that feeds it
//! event after event, as Lambda reuses a warm function:
//!
//! - the table is created in moto from `template.yaml`'s own `ChatTable`
//!   (keys, attributes, indexes, TTL, billing mode);
//! - each function gets the environment the template gives it (Globals and its
//!   own `Environment`, parameters at their defaults, its memory size and log
//!   level), resolved to local stand-ins, plus the local-mode overrides
//!   (`EUROCHAT_LOCAL_MODE`, moto's endpoint, the stand-in management API).
//!   Secrets come as the template hands them over: Secrets Manager ARNs of
//!   secrets this test stores in moto (the agent token secret rotated once, so
//!   it has an `AWSPREVIOUS` version), or values;
//! - a site (with an agent IP allow-list) and an agent are seeded with
//!   `eurochat-admin`'s code, the agent's token minted with the same secret;
//! - API Gateway events (`tests/events/*.json`, adjusted) drive: the widget
//!   script and a CORS preflight (`web`) → create session → visitor `$connect`
//!   → agent `$connect` (and, from Secrets Manager, a second console whose token
//!   was signed with the previous secret) → agent `join` → visitor
//!   `sendMessage`, fanned out to the agent through `@connections` → agent
//!   reply → `history` → GDPR export → GDPR erase → a raw Scan finds no trace of
//!   the conversation → `$disconnect` → the retention job with the schedule's
//!   input;
//! - every `@connections` call was SigV4-signed, and every function logged
//!   Lambda's JSON format, no error and nothing personal, and is still running.
//!
//! Nothing is skipped: missing bootstraps fail naming `make lambda-build`, a
//! missing qemu or sysroot fails naming `make setup`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use chat_core::auth::AgentTokenKeys;
use chat_core::clock::{Clock, SystemClock};
use chat_core::domain::AgentRole;
use chat_core::storage::DynamoStore;
use eurochat_tests::moto;
use eurochat_tests::runtime_api::{FunctionCommand, ManagementApi, WarmFunction};
use serde_json::{Value as Json, json};
use serde_norway::Value as Yaml;

/// Debian's `qemu-user-static`.
const QEMU: &str = "qemu-aarch64-static";
/// Debian's `libc6-arm64-cross`: the aarch64 glibc and dynamic loader the bootstraps link against.
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
/// How long a cold start or one invocation may take. Lambda enforces the
/// template's `Timeout`; emulated on a busy CI machine everything is slower.
const TIMEOUT: Duration = Duration::from_secs(90);

const SITE: &str = "acme";
const ORIGIN: &str = "https://acme.example";
const AGENT: &str = "alice";
const AGENT_NET: &str = "198.51.100.0/24";
const AGENT_IP: &str = "198.51.100.20";
const AGENT_UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 15_2) Firefox/150.0";
const VISITOR_IP: &str = "203.0.113.77";
const VISITOR_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36";
const NAME: &str = "Philippa Quarrington";
const EMAIL: &str = "Philippa.Quarrington@Mail.Example";
const TEXT: &str = "my parcel 7731-KX never arrived";
const REPLY: &str = "Sorry to hear that, Philippa: checking parcel 7731-KX now";
const VISITOR_CONN: &str = "Vq3xJdTAliACEfQ=";
const AGENT_CONN: &str = "Ag7bXeFsliACF9w=";
const AGENT_OLDER_CONN: &str = "Ag7bPrvsliACF9w=";

/// The agent token signing secret (`AWSCURRENT`), as the stack generates them: 64 letters and digits.
const AGENT_SECRET: &str = "QekvUwppvxYSzxo90tgBkF2EQT0VPeZMNqZVyzdURQoDx7YXNYav977hWnGPZUGc";
/// The one before a rotation (`AWSPREVIOUS`), when the secrets come from Secrets Manager.
const AGENT_SECRET_PREVIOUS: &str = "RNh29uIxMf71IImm6gm0SU2wsMch2QYKihs3LWMxUTPByQgKKH0pXCOWYfRKTqeF";
const PSEUDONYM_KEY: &str = "uLHFLGDNHCoANNFOBcPOVfz0rPeY8SDy7b5Nv4c9yednkd9lsZYn0NC8onLaGGRO";

// ---- Preconditions: fail loudly, naming the command that fixes it.

/// `<target>/lambda`, from this test's executable (`<target>/debug/deps/`).
fn lambda_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .and_then(|profile| profile.parent())
        .expect("the target directory")
        .join("lambda")
}

/// The arm64 bootstrap of `function`; it must exist and be an aarch64 ELF executable.
fn bootstrap(function: &str) -> PathBuf {
    let path = lambda_dir().join(function).join("bootstrap");
    let bytes = std::fs::read(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: build the arm64 Lambda bootstraps first with `make lambda-build` \
             (cargo lambda build --release --arm64)",
            path.display()
        )
    });
    // ELF, 64-bit, e_machine (offset 18, little-endian) 0xB7 = EM_AARCH64.
    assert!(
        bytes.len() > 20 && bytes.starts_with(b"\x7fELF\x02") && bytes[18..20] == [0xB7, 0x00],
        "{} is not an aarch64 ELF executable: rebuild it with `make lambda-build`",
        path.display()
    );
    path
}

/// qemu-user and the aarch64 sysroot.
fn qemu() -> PathBuf {
    let qemu = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(QEMU))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{QEMU} is not installed: run `make setup` (apt-get install -y qemu-user-static libc6-arm64-cross)")
        });
    let loader = Path::new(SYSROOT).join("lib/ld-linux-aarch64.so.1");
    assert!(
        loader.is_file(),
        "{} is missing (the aarch64 glibc the bootstraps need): run `make setup` \
         (apt-get install -y qemu-user-static libc6-arm64-cross)",
        loader.display()
    );
    qemu
}

// ---- template.yaml

fn template() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).expect("read template.yaml");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

/// `(tag, value)` of a short-form intrinsic such as `!Ref X` or `!If [...]`.
fn tagged(v: &Yaml) -> Option<(String, &Yaml)> {
    match v {
        Yaml::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value of the template as a fresh stack with default parameters has it:
/// `Some(value)`, or `None` for `!Ref AWS::NoValue`. Panics on what it cannot resolve.
fn resolve(t: &Yaml, v: &Yaml, what: &str) -> Option<String> {
    if let Some(s) = scalar(v) {
        return Some(s);
    }
    match tagged(v) {
        Some((tag, name)) if tag == "!Ref" => {
            let name = name.as_str().expect("!Ref names something");
            if name == "AWS::NoValue" {
                return None;
            }
            if name == "AWS::Region" {
                return Some("eu-central-1".into());
            }
            let default = &t["Parameters"][name]["Default"];
            Some(scalar(default).unwrap_or_else(|| {
                panic!("{what}: !Ref {name} is not a parameter with a default; teach arm64_qemu.rs to resolve it")
            }))
        }
        Some((tag, text)) if tag == "!Sub" => {
            let text = text
                .as_str()
                .unwrap_or_else(|| panic!("{what}: only the one-argument !Sub is resolved"));
            Some(substitute(t, text, what))
        }
        Some((tag, args)) if tag == "!If" => {
            let cond = args[0].as_str().expect("!If names a condition");
            if condition(t, &t["Conditions"][cond]) {
                resolve(t, &args[1], what)
            } else {
                resolve(t, &args[2], what)
            }
        }
        _ => panic!("{what}: cannot resolve {v:?}; teach arm64_qemu.rs to resolve it"),
    }
}

/// `!Sub` for a stack named `eurochat` in eu-central-1: pseudo parameters, parameter
/// defaults, and the two APIs' ids as the event fixtures have them.
fn substitute(t: &Yaml, text: &str, what: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let name = &rest[start + 2..end];
        let value = match name {
            "AWS::Region" => "eu-central-1".to_owned(),
            "AWS::AccountId" => "123456789012".to_owned(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            "AWS::StackName" => "eurochat".to_owned(),
            "WebSocketApi" => "abc123".to_owned(),
            "HttpApi" => "h1a2b3c4d5".to_owned(),
            param => scalar(&t["Parameters"][param]["Default"]).unwrap_or_else(|| {
                panic!("{what}: ${{{param}}} is not a parameter with a default; teach arm64_qemu.rs to resolve it")
            }),
        };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A condition of the template, with parameters at their defaults.
fn condition(t: &Yaml, c: &Yaml) -> bool {
    let (tag, args) = tagged(c).unwrap_or_else(|| panic!("a condition: {c:?}"));
    match tag.as_str() {
        "!Equals" => resolve(t, &args[0], "condition") == resolve(t, &args[1], "condition"),
        "!Not" => !condition(t, &args[0]),
        "!And" => args.as_sequence().expect("!And list").iter().all(|a| condition(t, a)),
        "!Or" => args.as_sequence().expect("!Or list").iter().any(|a| condition(t, a)),
        "!Condition" => condition(t, &t["Conditions"][args.as_str().expect("condition name")]),
        other => panic!("condition {other}: teach arm64_qemu.rs to evaluate it"),
    }
}

/// One `AWS::Serverless::Function` of the template.
struct TemplateFunction {
    /// The crate under `functions/` (its `CodeUri`), also the bootstrap's directory.
    dir: String,
    properties: Yaml,
}

fn template_functions(t: &Yaml) -> Vec<TemplateFunction> {
    let resources = t["Resources"].as_mapping().expect("Resources");
    let mut functions: Vec<TemplateFunction> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|r| {
            let uri = r["Properties"]["CodeUri"].as_str().expect("CodeUri");
            TemplateFunction {
                dir: uri
                    .strip_prefix("functions/")
                    .unwrap_or(uri)
                    .trim_end_matches('/')
                    .to_owned(),
                properties: r["Properties"].clone(),
            }
        })
        .collect();
    functions.sort_by(|a, b| a.dir.cmp(&b.dir));
    functions
}

/// A function property, or the Globals' one.
fn property<'a>(t: &'a Yaml, f: &'a TemplateFunction, name: &str) -> &'a Yaml {
    match &f.properties[name] {
        Yaml::Null => &t["Globals"]["Function"][name],
        own => own,
    }
}

/// The table exactly as the template declares it (what the functions' code
/// depends on: keys, attributes, indexes, TTL, billing mode). Its KMS key,
/// point-in-time recovery and deletion protection change nothing the functions see.
async fn create_template_table(t: &Yaml, client: &aws_sdk_dynamodb::Client, table: &str) {
    let props = &t["Resources"]["ChatTable"]["Properties"];
    let keys = |v: &Yaml| -> Vec<KeySchemaElement> {
        v.as_sequence()
            .expect("KeySchema")
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(k["AttributeName"].as_str().expect("AttributeName"))
                    .key_type(KeyType::from(k["KeyType"].as_str().expect("KeyType")))
                    .build()
                    .expect("key schema element")
            })
            .collect()
    };
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::from(props["BillingMode"].as_str().expect("BillingMode")))
        .set_key_schema(Some(keys(&props["KeySchema"])));
    for a in props["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
    {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().expect("AttributeName"))
                .attribute_type(ScalarAttributeType::from(
                    a["AttributeType"].as_str().expect("AttributeType"),
                ))
                .build()
                .expect("attribute definition"),
        );
    }
    for g in props["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("GlobalSecondaryIndexes")
    {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(g["IndexName"].as_str().expect("IndexName"))
                .set_key_schema(Some(keys(&g["KeySchema"])))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            g["Projection"]["ProjectionType"].as_str().expect("ProjectionType"),
                        ))
                        .build(),
                )
                .build()
                .expect("index"),
        );
    }
    for l in props["LocalSecondaryIndexes"]
        .as_sequence()
        .expect("LocalSecondaryIndexes")
    {
        req = req.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name(l["IndexName"].as_str().expect("IndexName"))
                .set_key_schema(Some(keys(&l["KeySchema"])))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            l["Projection"]["ProjectionType"].as_str().expect("ProjectionType"),
                        ))
                        .build(),
                )
                .build()
                .expect("local index"),
        );
    }
    req.send().await.expect("create the template's table in moto");
    let ttl = &props["TimeToLiveSpecification"];
    if ttl["Enabled"].as_bool() == Some(true) {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl["AttributeName"].as_str().expect("TTL attribute"))
                    .enabled(true)
                    .build()
                    .expect("TTL"),
            )
            .send()
            .await
            .expect("enable TTL");
    }
}

// ---- Secrets and each function's environment

/// Where the functions' secrets are: the ARNs of secrets stored in moto's Secrets
/// Manager, for the template's `*_ARN` variables (values go in the environment otherwise).
#[derive(Default)]
struct SecretArns {
    agent_token: Option<String>,
    pseudonym_key: Option<String>,
}

/// Stores a secret in moto's Secrets Manager with these versions, oldest first
/// (the last is `AWSCURRENT`, the one before it `AWSPREVIOUS`); returns its ARN.
async fn store_secret(name: &str, versions: &[&str]) -> String {
    let client = aws_sdk_secretsmanager::Client::new(&moto::sdk_config().await);
    let created = client
        .create_secret()
        .name(name)
        .secret_string(versions[0])
        .send()
        .await
        .expect("create a secret in moto");
    let arn = created.arn.expect("secret ARN");
    for v in &versions[1..] {
        client
            .put_secret_value()
            .secret_id(&arn)
            .secret_string(*v)
            .send()
            .await
            .expect("put a secret version in moto");
    }
    arn
}

/// What each function is wired to locally.
struct Wiring<'a> {
    table: &'a str,
    moto: &'a str,
    management: &'a str,
    secrets: &'a SecretArns,
}

/// The template's environment for `f` (Globals merged with its own), resolved
/// for this run, plus the local-mode overrides a local run needs.
fn function_env(t: &Yaml, f: &TemplateFunction, w: &Wiring<'_>) -> BTreeMap<String, String> {
    let mut declared = BTreeMap::new();
    for source in [
        &t["Globals"]["Function"]["Environment"]["Variables"],
        &f.properties["Environment"]["Variables"],
    ] {
        if let Some(vars) = source.as_mapping() {
            for (k, v) in vars {
                declared.insert(k.as_str().expect("variable name").to_owned(), v.clone());
            }
        }
    }
    let mut env = BTreeMap::new();
    let mut uses_secrets_manager = false;
    for (name, value) in &declared {
        let what = format!("{} {name}", f.dir);
        let resolved = match name.as_str() {
            "EUROCHAT_TABLE_NAME" => Some(w.table.to_owned()),
            // The execute-api management endpoint: the stand-in (local mode wants loopback).
            "EUROCHAT_WS_MANAGEMENT_ENDPOINT" => Some(w.management.to_owned()),
            // Values resolved from Secrets Manager at deploy time.
            "EUROCHAT_AGENT_TOKEN_SECRET" => Some(AGENT_SECRET.to_owned()),
            "EUROCHAT_PSEUDONYM_KEY" => Some(PSEUDONYM_KEY.to_owned()),
            // A fresh stack has rotated nothing.
            "EUROCHAT_AGENT_TOKEN_SECRET_PREVIOUS" => Some(String::new()),
            // Secrets Manager ARNs: the secrets stored in moto.
            "EUROCHAT_AGENT_TOKEN_SECRET_ARN" | "EUROCHAT_PSEUDONYM_KEY_ARN" => {
                uses_secrets_manager = true;
                let arn = if name.starts_with("EUROCHAT_AGENT") {
                    &w.secrets.agent_token
                } else {
                    &w.secrets.pseudonym_key
                };
                Some(arn.clone().expect("the secret is stored in moto"))
            }
            _ => resolve(t, value, &what),
        };
        if let Some(v) = resolved {
            env.insert(name.clone(), v);
        }
    }
    // Local mode: loopback endpoints instead of AWS's.
    env.insert("EUROCHAT_LOCAL_MODE".into(), "true".into());
    env.insert("EUROCHAT_DYNAMODB_ENDPOINT".into(), w.moto.to_owned());
    env.insert("EUROCHAT_APIGW_ENDPOINT".into(), w.management.to_owned());
    if uses_secrets_manager {
        env.insert("EUROCHAT_SECRETSMANAGER_ENDPOINT".into(), w.moto.to_owned());
    }
    env
}

/// Whether any function of the template names its secrets by ARN.
fn template_uses_secret_arns(t: &Yaml) -> bool {
    let mut sources = vec![t["Globals"]["Function"]["Environment"]["Variables"].clone()];
    sources.extend(
        template_functions(t)
            .into_iter()
            .map(|f| f.properties["Environment"]["Variables"].clone()),
    );
    sources.iter().filter_map(Yaml::as_mapping).any(|vars| {
        vars.keys()
            .filter_map(Yaml::as_str)
            .any(|k| k == "EUROCHAT_AGENT_TOKEN_SECRET_ARN" || k == "EUROCHAT_PSEUDONYM_KEY_ARN")
    })
}

/// The retention function's schedule input (what EventBridge Scheduler sends).
fn schedule_input(f: &TemplateFunction) -> Json {
    let events = f.properties["Events"]
        .as_mapping()
        .expect("the retention function's Events");
    let schedule = events
        .values()
        .find(|e| matches!(e["Type"].as_str(), Some("ScheduleV2" | "Schedule")))
        .expect("the retention function has a schedule");
    let input = schedule["Properties"]["Input"].as_str().expect("the schedule's Input");
    serde_json::from_str(input).expect("the schedule's Input is JSON")
}

// ---- API Gateway events

fn now_ms() -> i64 {
    SystemClock.now().millis()
}

/// An HTTP API (payload 2.0) `POST <path>` from the visitor.
fn http_event(path: &str, body: &Json, bearer: Option<&str>) -> Json {
    let mut e: Json = serde_json::from_str(include_str!("../events/http-post-sessions.json")).expect("fixture");
    e["routeKey"] = json!(format!("POST {path}"));
    e["rawPath"] = json!(path);
    e["requestContext"]["routeKey"] = json!(format!("POST {path}"));
    e["requestContext"]["http"]["path"] = json!(path);
    e["requestContext"]["http"]["sourceIp"] = json!(VISITOR_IP);
    e["requestContext"]["http"]["userAgent"] = json!(VISITOR_UA);
    e["requestContext"]["timeEpoch"] = json!(now_ms());
    e["headers"]["origin"] = json!(ORIGIN);
    e["headers"]["user-agent"] = json!(VISITOR_UA);
    if let Some(t) = bearer {
        e["headers"]["authorization"] = json!(format!("Bearer {t}"));
    }
    e["body"] = json!(body.to_string());
    e
}

/// An HTTP API `GET <path>` from the visitor's browser (no body).
fn get_event(path: &str) -> Json {
    let mut e = http_event(path, &Json::Null, None);
    e["routeKey"] = json!(format!("GET {path}"));
    e["requestContext"]["routeKey"] = e["routeKey"].clone();
    e["requestContext"]["http"]["method"] = json!("GET");
    let headers = e["headers"].as_object_mut().expect("headers");
    for h in ["origin", "content-type"] {
        headers.remove(h);
    }
    headers.insert("accept".into(), json!("*/*"));
    headers.insert("sec-fetch-dest".into(), json!("script"));
    e.as_object_mut().expect("event").remove("body");
    e
}

/// A response's body as text (decoded if it came base64-encoded).
fn response_text(response: &Json) -> String {
    let raw = response["body"].as_str().unwrap_or_default();
    if response["isBase64Encoded"] == json!(true) {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("base64 body");
        String::from_utf8(bytes).expect("UTF-8 body")
    } else {
        raw.to_owned()
    }
}

/// Who is on a WebSocket connection.
struct Peer {
    conn: &'static str,
    ip: &'static str,
    user_agent: &'static str,
}

const VISITOR: Peer = Peer {
    conn: VISITOR_CONN,
    ip: VISITOR_IP,
    user_agent: VISITOR_UA,
};
const AGENT_PEER: Peer = Peer {
    conn: AGENT_CONN,
    ip: AGENT_IP,
    user_agent: AGENT_UA,
};
/// The same agent in a second console, with a token signed before the last rotation.
const AGENT_OLDER_TOKEN: Peer = Peer {
    conn: AGENT_OLDER_CONN,
    ip: AGENT_IP,
    user_agent: AGENT_UA,
};

fn ws_event(fixture: &str, peer: &Peer, stage: &str) -> Json {
    let text = match fixture {
        "connect" => include_str!("../events/ws-connect.json"),
        "message" => include_str!("../events/ws-message.json"),
        "disconnect" => include_str!("../events/ws-disconnect.json"),
        other => panic!("no fixture {other}"),
    };
    let mut e: Json = serde_json::from_str(text).expect("fixture");
    let ctx = &mut e["requestContext"];
    ctx["connectionId"] = json!(peer.conn);
    ctx["stage"] = json!(stage);
    ctx["identity"]["sourceIp"] = json!(peer.ip);
    ctx["identity"]["userAgent"] = json!(peer.user_agent);
    ctx["requestTimeEpoch"] = json!(now_ms());
    if let Some(verdict) = verdicts().get(peer.conn) {
        // API Gateway passes the authorizer's context with every later event.
        ctx["authorizer"] = verdict.clone();
    }
    e
}

/// Each connection's `$connect` authorizer context, once admitted.
fn verdicts() -> std::sync::MutexGuard<'static, BTreeMap<&'static str, Json>> {
    static VERDICTS: std::sync::OnceLock<std::sync::Mutex<BTreeMap<&'static str, Json>>> = std::sync::OnceLock::new();
    VERDICTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A handshake as the deployed API makes it: the connect function first as the
/// `$connect` route's REQUEST authorizer, then as the route with its verdict.
async fn connect_as_deployed(fleet: &mut Fleet, peer: &Peer, token: &str, stage: &str) -> Json {
    let route = format!("arn:aws:execute-api:eu-central-1:123456789012:abc123/{stage}/$connect");
    let mut call = connect_event(peer, token, stage);
    call["type"] = json!("REQUEST");
    call["methodArn"] = json!(route);
    let answer = fleet.invoke("connect", call).await;
    let statement = &answer["policyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"], "Allow", "authorizer: {answer}");
    assert_eq!(statement["Resource"], json!([route]), "authorizer: {answer}");
    let mut context = answer["context"].clone();
    assert!(
        context.as_object().is_some_and(|c| c.values().all(Json::is_string)),
        "flat string context: {answer}"
    );
    context["principalId"] = answer["principalId"].clone();
    let mut e = connect_event(peer, token, stage);
    e["requestContext"]["authorizer"] = context.clone();
    let connected = fleet.invoke("connect", e).await;
    if status(&connected) == 200 {
        verdicts().insert(peer.conn, context);
    }
    connected
}

/// `$connect` offering `token` as the subprotocol, as browsers do.
fn connect_event(peer: &Peer, token: &str, stage: &str) -> Json {
    let mut e = ws_event("connect", peer, stage);
    e["headers"]["Origin"] = json!(ORIGIN);
    e["headers"]["User-Agent"] = json!(peer.user_agent);
    e["headers"]["X-Forwarded-For"] = json!(peer.ip);
    e["headers"]["Sec-WebSocket-Protocol"] = json!(format!("eurochat.v1, {token}"));
    e["requestContext"]["connectedAt"] = json!(now_ms());
    e
}

/// A frame on an open connection, routed by its `action` as the WebSocket API does.
fn frame_event(peer: &Peer, frame: &Json, stage: &str) -> Json {
    let mut e = ws_event("message", peer, stage);
    e["requestContext"]["routeKey"] = frame["action"].clone();
    e["body"] = json!(frame.to_string());
    e
}

fn status(response: &Json) -> i64 {
    response["statusCode"].as_i64().unwrap_or(0)
}

fn body(response: &Json) -> Json {
    response["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Json::Null)
}

/// A response header, whatever its case.
fn header<'a>(response: &'a Json, name: &str) -> Option<&'a str> {
    response["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// The warm functions, by crate name.
struct Fleet(BTreeMap<String, WarmFunction>);

impl Fleet {
    fn get(&mut self, dir: &str) -> &mut WarmFunction {
        self.0
            .get_mut(dir)
            .unwrap_or_else(|| panic!("template.yaml has no function with CodeUri functions/{dir}"))
    }

    async fn invoke(&mut self, dir: &str, event: Json) -> Json {
        self.get(dir).invoke_ok(event).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm64_bootstraps_under_qemu_run_a_chat_and_gdpr_flow() {
    let started = Instant::now();
    let t = template();
    let functions = template_functions(&t);
    for f in [
        "web",
        "create-session",
        "connect",
        "message",
        "disconnect",
        "gdpr-export",
        "gdpr-delete",
        "retention",
    ] {
        assert!(
            functions.iter().any(|tf| tf.dir == f),
            "template.yaml has no function for functions/{f}"
        );
    }
    // Fail first on what is missing, before starting anything.
    let bootstraps: BTreeMap<String, PathBuf> = functions.iter().map(|f| (f.dir.clone(), bootstrap(&f.dir))).collect();
    let qemu = qemu();
    let stage = scalar(&t["Parameters"]["StageName"]["Default"]).expect("StageName default");

    // moto with the template's table; the stand-in @connections endpoint.
    let moto_endpoint = moto::moto().endpoint().to_owned();
    let table = moto::unique_table("arm64");
    let client = aws_sdk_dynamodb::Client::new(&moto::sdk_config().await);
    create_template_table(&t, &client, &table).await;
    let store = DynamoStore::new(client.clone(), table.clone());
    let management = ManagementApi::start(&stage).await;

    // Secrets the way the template hands them over.
    let secrets = if template_uses_secret_arns(&t) {
        SecretArns {
            agent_token: Some(
                store_secret(&format!("{table}-agent-token"), &[AGENT_SECRET_PREVIOUS, AGENT_SECRET]).await,
            ),
            pseudonym_key: Some(store_secret(&format!("{table}-pseudonym-key"), &[PSEUDONYM_KEY]).await),
        }
    } else {
        SecretArns::default()
    };

    // A site (with an agent IP allow-list) and an agent, as an operator creates them.
    let now = SystemClock.now();
    let spec = eurochat_admin::SiteSpec {
        id: SITE.into(),
        name: Some("Acme".into()),
        origins: vec![ORIGIN.into()],
        agent_ips: Some(vec![AGENT_NET.into()]),
        ..Default::default()
    };
    eurochat_admin::put_site(&store, &spec, now).await.expect("put-site");
    eurochat_admin::put_agent(&store, SITE, AGENT, "Alice", AgentRole::Agent, true, now)
        .await
        .expect("put-agent");
    let agent_token = eurochat_admin::mint_agent_token(
        &store,
        &AgentTokenKeys::new(AGENT_SECRET.as_bytes(), None),
        SITE,
        AGENT,
        8,
        now,
    )
    .await
    .expect("mint-token");

    // Every function of the template, one warm arm64 process each.
    let wiring = Wiring {
        table: &table,
        moto: &moto_endpoint,
        management: management.endpoint(),
        secrets: &secrets,
    };
    let mut fleet = Fleet(BTreeMap::new());
    for f in &functions {
        let memory = property(&t, f, "MemorySize").as_u64().expect("MemorySize");
        // SAM merges the function's LoggingConfig into the Globals' one.
        let level = scalar(&f.properties["LoggingConfig"]["ApplicationLogLevel"])
            .or_else(|| scalar(&t["Globals"]["Function"]["LoggingConfig"]["ApplicationLogLevel"]))
            .unwrap_or_else(|| "INFO".into());
        let process = FunctionCommand::new(format!("eurochat-{}", f.dir), &qemu)
            .arg("-L")
            .arg(SYSROOT)
            .arg(&bootstraps[&f.dir])
            .envs(function_env(&t, f, &wiring))
            .memory_mb(u32::try_from(memory).expect("memory size"))
            .log_level(level)
            .timeout(TIMEOUT)
            .start()
            .await;
        fleet.0.insert(f.dir.clone(), process);
    }
    for function in fleet.0.values_mut() {
        function.ready().await;
    }
    let cold = started.elapsed();

    // 0. The customer's page loads the widget script from the stack; the browser
    //    asks before its first cross-origin POST.
    let widget = fleet.invoke("web", get_event("/widget.js")).await;
    assert_eq!(status(&widget), 200, "GET /widget.js: {widget}");
    assert!(
        header(&widget, "content-type").is_some_and(|c| c.starts_with("text/javascript")),
        "{}",
        widget["headers"]
    );
    let web = functions.iter().find(|f| f.dir == "web").expect("web");
    let ws_url = function_env(&t, web, &wiring)
        .remove("EUROCHAT_PUBLIC_WS_URL")
        .expect("the web function's WebSocket URL");
    assert!(
        response_text(&widget).contains(&ws_url),
        "the widget connects to {ws_url}"
    );
    let mut preflight = get_event("/v1/sessions");
    preflight["requestContext"]["http"]["method"] = json!("OPTIONS");
    preflight["routeKey"] = json!("OPTIONS /{proxy+}");
    preflight["requestContext"]["routeKey"] = json!("OPTIONS /{proxy+}");
    preflight["headers"]["origin"] = json!(ORIGIN);
    preflight["headers"]["access-control-request-method"] = json!("POST");
    preflight["headers"]["access-control-request-headers"] = json!("content-type");
    let answered = fleet.invoke("web", preflight).await;
    assert_eq!(status(&answered), 204, "preflight: {answered}");
    assert_eq!(
        header(&answered, "access-control-allow-origin"),
        Some(ORIGIN),
        "{answered}"
    );

    // 1. A visitor fills in the pre-chat form.
    let consent = json!({"purpose": "support-follow-up", "policyVersion": "2026-01"});
    let created = fleet
        .invoke(
            "create-session",
            http_event(
                "/v1/sessions",
                &json!({"siteId": SITE, "prechat": {"name": NAME, "email": EMAIL, "consent": consent}}),
                None,
            ),
        )
        .await;
    assert_eq!(status(&created), 201, "create session: {created}");
    assert_eq!(
        header(&created, "access-control-allow-origin"),
        Some(ORIGIN),
        "{created}"
    );
    let session = body(&created);
    let visitor_token = session["token"].as_str().expect("token").to_owned();
    let session_id = session["sessionId"].as_str().expect("sessionId").to_owned();
    let visitor_id = session["visitorId"].as_str().expect("visitorId").to_owned();
    assert!(visitor_token.starts_with("vt1."), "{session}");
    assert!(
        session_id.starts_with("ses_") && visitor_id.starts_with("vis_"),
        "{session}"
    );
    assert_eq!(session["resumed"], json!(false), "{session}");
    assert_eq!(session["lastSeq"], json!(0), "{session}");

    // 2. The visitor's widget connects with its token as the subprotocol.
    let connected = connect_as_deployed(&mut fleet, &VISITOR, &visitor_token, &stage).await;
    assert_eq!(status(&connected), 200, "visitor $connect: {connected}");
    assert_eq!(
        header(&connected, "sec-websocket-protocol"),
        Some("eurochat.v1"),
        "{connected}"
    );
    assert!(
        !connected.to_string().contains(&visitor_token),
        "the token is never echoed"
    );

    // 3. The agent's console connects from the allowed network with a minted token.
    let connected = connect_as_deployed(&mut fleet, &AGENT_PEER, &agent_token, &stage).await;
    assert_eq!(status(&connected), 200, "agent $connect: {connected}");
    assert_eq!(
        header(&connected, "sec-websocket-protocol"),
        Some("eurochat.v1"),
        "{connected}"
    );
    // From Secrets Manager, the agent token secret's AWSPREVIOUS version (before the
    // last rotation) still verifies: a console with an older token stays connected.
    // (This one connects without an authorizer in front, as `cargo lambda invoke`
    // does: `$connect` decides itself and its frames are looked up by connection.)
    let mut sockets = vec![&VISITOR, &AGENT_PEER];
    if secrets.agent_token.is_some() {
        let older = eurochat_admin::mint_agent_token(
            &store,
            &AgentTokenKeys::new(AGENT_SECRET_PREVIOUS.as_bytes(), None),
            SITE,
            AGENT,
            8,
            now,
        )
        .await
        .expect("mint-token with the previous secret");
        let connected = fleet
            .invoke("connect", connect_event(&AGENT_OLDER_TOKEN, &older, &stage))
            .await;
        assert_eq!(status(&connected), 200, "agent $connect, previous secret: {connected}");
        sockets.push(&AGENT_OLDER_TOKEN);
    }

    // 4. The agent joins the conversation.
    let joined = fleet
        .invoke(
            "message",
            frame_event(&AGENT_PEER, &json!({"action": "join", "sessionId": session_id}), &stage),
        )
        .await;
    assert_eq!(status(&joined), 200, "join: {joined}");
    let frames = management.frames_of(AGENT_CONN, "joined");
    assert_eq!(
        frames.len(),
        1,
        "one joined frame to the agent: {:?}",
        management.frames_to(AGENT_CONN)
    );
    assert_eq!(
        frames[0]["conversation"]["sessionId"],
        json!(session_id),
        "{}",
        frames[0]
    );
    assert_eq!(frames[0]["conversation"]["name"], json!(NAME), "{}", frames[0]);

    // 5. The visitor writes; the message reaches the agent through @connections.
    let sent = fleet
        .invoke(
            "message",
            frame_event(
                &VISITOR,
                &json!({"action": "sendMessage", "clientMsgId": "m-1", "text": TEXT}),
                &stage,
            ),
        )
        .await;
    assert_eq!(status(&sent), 200, "visitor sendMessage: {sent}");
    let acks = management.frames_of(VISITOR_CONN, "ack");
    assert_eq!(acks.len(), 1, "{:?}", management.frames_to(VISITOR_CONN));
    assert_eq!(
        (
            &acks[0]["ref"],
            &acks[0]["sessionId"],
            &acks[0]["seq"],
            &acks[0]["duplicate"]
        ),
        (&json!("m-1"), &json!(session_id), &json!(1), &json!(false)),
        "{}",
        acks[0]
    );
    let delivered = management.frames_of(AGENT_CONN, "message");
    assert_eq!(
        delivered.len(),
        1,
        "fan-out to the agent: {:?}",
        management.frames_to(AGENT_CONN)
    );
    let m = &delivered[0]["message"];
    assert_eq!(
        (&m["sessionId"], &m["seq"], &m["role"], &m["authorId"], &m["text"]),
        (
            &json!(session_id),
            &json!(1),
            &json!("visitor"),
            &json!(visitor_id),
            &json!(TEXT)
        ),
        "{m}"
    );

    // 6. The agent answers; the visitor receives it.
    let replied = fleet
        .invoke(
            "message",
            frame_event(
                &AGENT_PEER,
                &json!({"action": "sendMessage", "sessionId": session_id, "clientMsgId": "a-1", "text": REPLY}),
                &stage,
            ),
        )
        .await;
    assert_eq!(status(&replied), 200, "agent sendMessage: {replied}");
    let acks = management.frames_of(AGENT_CONN, "ack");
    assert_eq!(acks.len(), 1, "{:?}", management.frames_to(AGENT_CONN));
    assert_eq!(
        (&acks[0]["ref"], &acks[0]["seq"]),
        (&json!("a-1"), &json!(2)),
        "{}",
        acks[0]
    );
    let delivered = management.frames_of(VISITOR_CONN, "message");
    assert_eq!(delivered.len(), 1, "{:?}", management.frames_to(VISITOR_CONN));
    let m = &delivered[0]["message"];
    assert_eq!(
        (&m["seq"], &m["role"], &m["authorId"], &m["text"]),
        (&json!(2), &json!("agent"), &json!(AGENT), &json!(REPLY)),
        "{m}"
    );

    // 7. The visitor's widget reloads its history.
    let history = fleet
        .invoke(
            "message",
            frame_event(&VISITOR, &json!({"action": "history", "after": 0}), &stage),
        )
        .await;
    assert_eq!(status(&history), 200, "history: {history}");
    let pages = management.frames_of(VISITOR_CONN, "history");
    assert_eq!(pages.len(), 1, "{:?}", management.frames_to(VISITOR_CONN));
    let page = &pages[0];
    assert_eq!(
        (&page["sessionId"], &page["hasMore"]),
        (&json!(session_id), &json!(false)),
        "{page}"
    );
    let texts: Vec<(&Json, &Json)> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (&m["seq"], &m["text"]))
        .collect();
    assert_eq!(texts, [(&json!(1), &json!(TEXT)), (&json!(2), &json!(REPLY))], "{page}");

    // 8. GDPR export with the visitor's token holds the conversation and the pre-chat data.
    let exported = fleet
        .invoke(
            "gdpr-export",
            http_event("/v1/gdpr/export", &json!({}), Some(&visitor_token)),
        )
        .await;
    assert_eq!(status(&exported), 200, "export: {exported}");
    assert_eq!(
        header(&exported, "access-control-allow-origin"),
        Some(ORIGIN),
        "{exported}"
    );
    assert_eq!(
        header(&exported, "content-type"),
        Some("application/json"),
        "{exported}"
    );
    let doc = body(&exported);
    let text = doc.to_string();
    // The email as stored: the domain lower-cased, the local part as given.
    let (local, domain) = EMAIL.split_once('@').expect("email");
    let stored_email = format!("{local}@{}", domain.to_lowercase());
    for expected in [
        TEXT,
        REPLY,
        NAME,
        &stored_email,
        session_id.as_str(),
        visitor_id.as_str(),
    ] {
        assert!(text.contains(expected), "the export holds {expected:?}: {doc}");
    }

    // 9. GDPR erasure with the visitor's token; the visitor's socket is closed first.
    let erased = fleet
        .invoke(
            "gdpr-delete",
            http_event("/v1/gdpr/erase", &json!({}), Some(&visitor_token)),
        )
        .await;
    assert_eq!(status(&erased), 200, "erase: {erased}");
    assert_eq!(header(&erased, "access-control-allow-origin"), Some(ORIGIN), "{erased}");
    let report = body(&erased);
    assert!(
        report["total"].as_u64().unwrap_or(0) >= 3,
        "session and two messages at least: {report}"
    );
    assert!(
        management.closed().contains(&VISITOR_CONN.to_owned()),
        "the erasure closed the visitor's connection: {:?}",
        management.calls()
    );

    // 10. A raw Scan of the whole table finds no trace of the conversation.
    let items = raw_items(&client, &table).await;
    assert!(!items.is_empty(), "the site, the agent and the audit trail remain");
    let secret_part = visitor_token.rsplit('.').next().unwrap_or_default().to_owned();
    let traces = [
        session_id.clone(),
        visitor_id.clone(),
        TEXT.to_owned(),
        "7731-KX".to_owned(),
        REPLY.to_owned(),
        NAME.to_owned(),
        "Quarrington".to_owned(),
        EMAIL.to_owned(),
        EMAIL.to_lowercase(),
        stored_email.clone(),
        VISITOR_IP.to_owned(),
        "203.0.113.".to_owned(),
        VISITOR_CONN.to_owned(),
        secret_part,
    ];
    for item in &items {
        let raw = format!("{item:?}");
        for trace in &traces {
            assert!(!raw.contains(trace.as_str()), "{trace:?} survived the erasure in {raw}");
        }
    }
    // The erased token opens nothing any more.
    let refused = fleet
        .invoke(
            "gdpr-export",
            http_event("/v1/gdpr/export", &json!({}), Some(&visitor_token)),
        )
        .await;
    assert_eq!(status(&refused), 401, "export after erasure: {refused}");

    // 11. API Gateway reports every socket gone.
    management.mark_gone(VISITOR_CONN);
    for peer in sockets {
        let left = fleet.invoke("disconnect", ws_event("disconnect", peer, &stage)).await;
        assert_eq!(status(&left), 200, "$disconnect {}: {left}", peer.conn);
    }
    let items = raw_items(&client, &table).await;
    for conn in [AGENT_CONN, AGENT_OLDER_CONN] {
        assert!(
            !items.iter().any(|i| format!("{i:?}").contains(conn)),
            "the agent's connection record {conn} is gone: {items:?}"
        );
    }

    // 12. The retention job, invoked with the schedule's own input.
    let retention = functions
        .iter()
        .find(|f| f.dir == "retention")
        .expect("retention function");
    let input = schedule_input(retention);
    let summary = fleet.invoke("retention", input.clone()).await;
    assert_eq!(
        summary["dryRun"],
        json!(input["dryRun"].as_bool().unwrap_or(false)),
        "{summary}"
    );
    assert_eq!(summary["complete"], json!(true), "{summary}");
    assert!(summary["sites"].as_u64().unwrap_or(0) >= 1, "{summary}");

    // Every @connections call was SigV4-signed for execute-api in the function's region.
    let calls = management.calls();
    assert!(!calls.is_empty());
    for call in &calls {
        let auth = call.authorization.as_deref().unwrap_or_default();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256") && auth.contains("/eu-central-1/execute-api/aws4_request"),
            "{call:?}"
        );
    }

    // Each function served its events from one warm process that is still
    // running; it logged JSON, no errors and nothing personal.
    for (dir, mut function) in std::mem::take(&mut fleet.0) {
        assert!(function.invocations() > 0, "{dir} was never invoked");
        assert!(
            function.is_running(),
            "{dir} is no longer running:\n{}",
            function.output()
        );
        let output = function.stop().await;
        // Lambda's JSON log format: one object per line, a log record with a level
        // or a CloudWatch embedded-metric record.
        let mut metrics = Vec::new();
        for line in output.lines().filter(|l| !l.trim().is_empty()) {
            let record: Json = serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("{dir} printed a line that is not JSON: {line}\n{output}"));
            if record["_aws"].is_object() {
                metrics.push(record);
                continue;
            }
            assert!(
                record["level"].is_string(),
                "{dir}: a log record without a level: {line}"
            );
            assert_ne!(record["level"], json!("ERROR"), "{dir} logged an error:\n{output}");
        }
        if dir == "retention" {
            // The run's summary as a metric (embedded metric format).
            assert!(
                metrics
                    .iter()
                    .any(|m| m["RetentionRuns"] == json!(1.0) && m["RetentionComplete"] == json!(1.0)),
                "the retention run's metrics: {metrics:?}"
            );
        }
        for personal in [
            TEXT,
            REPLY,
            NAME,
            EMAIL,
            &stored_email,
            VISITOR_IP,
            visitor_token.as_str(),
        ] {
            assert!(!output.contains(personal), "{dir} logged {personal:?}:\n{output}");
        }
    }
    eprintln!(
        "arm64 bootstraps under qemu: {} functions started in {:.1?}, whole flow {:.1?}; secrets {}",
        functions.len(),
        cold,
        started.elapsed(),
        if secrets.agent_token.is_some() {
            "from Secrets Manager (moto)"
        } else {
            "as environment values"
        }
    );
}

/// Every item of the table, read with the raw API.
async fn raw_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(k) => start = Some(k),
            None => return items,
        }
    }
}
