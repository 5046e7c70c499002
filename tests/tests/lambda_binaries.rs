//! Every Lambda binary, run as Lambda runs it, logs nothing personal even at
//! `AWS_LAMBDA_LOG_LEVEL=TRACE`.
//!
//! At TRACE the Lambda runtime itself logs the raw event (names, emails,
//! tokens, IPs, message text); eurochat's telemetry caps it. This test proves
//! the cap where it matters: each function's real binary runs as a process
//! against a stand-in Lambda Runtime API (a small axum server on a free
//! loopback port) and moto's DynamoDB, with the environment Lambda sets, and
//! handles one realistic invocation. Its whole output (stdout and stderr) is
//! then searched for every personal value the events carried. Each step also
//! checks that the invocation really ran: the function posted a response with
//! the expected status.
//!
//! The binaries are the workspace's debug builds. `cargo test` holds the build
//! lock, so the test cannot build them; `make unit` runs
//! `cargo build --workspace --bins --locked` first.

use std::path::PathBuf;

use chat_core::domain::IpPolicy;
use chat_core::domain::{Origin, SiteId};
use chat_core::storage::{DynamoStore, SiteStore, schema};
use eurochat_tests::fixtures::site;
use eurochat_tests::runtime_api::{FunctionCommand, ManagementApi};
use serde_json::{Value, json};

const NAME: &str = "Ottilie Vandersnoot";
const EMAIL: &str = "Ottilie.Vandersnoot@Mail.Example";
const IP: &str = "198.51.100.77";
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) OttilieBrowser/9.1";
const TEXT: &str = "my locker code is 8812-QZ";
const AGENT_SECRET: &str = "agent-token-secret-for-binary-tests!!";
const PSEUDONYM_KEY: &str = "pseudonym-key-for-binary-tests-only-xx";
const STAGE: &str = "local";

/// `target/debug/<name>`, next to this test's own executable (`target/debug/deps/`).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/debug")
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: the Lambda binaries must be built before the tests. Run `make unit` \
         (it runs `cargo build --workspace --bins --locked` first) or `cargo build --workspace --bins`.",
        path.display()
    );
    path
}

/// One function's run: its response and everything it printed.
struct Run {
    response: Value,
    output: String,
}

/// Runs `name` as Lambda would for one `event` (a fresh process, at TRACE) and
/// returns its response and its whole output.
async fn invoke(name: &str, table: &str, moto: &str, event: Value) -> Run {
    let management = ManagementApi::start(STAGE).await;
    let mut function = FunctionCommand::new(format!("eurochat-{name}"), binary(name))
        .log_level("TRACE")
        // eurochat's configuration, local mode against moto and the stand-in gateway.
        .env("EUROCHAT_TABLE_NAME", table)
        .env("EUROCHAT_AGENT_TOKEN_SECRET", AGENT_SECRET)
        .env("EUROCHAT_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("EUROCHAT_LOCAL_MODE", "true")
        .env("EUROCHAT_DYNAMODB_ENDPOINT", moto)
        .env("EUROCHAT_APIGW_ENDPOINT", management.endpoint())
        .env("EUROCHAT_WS_MANAGEMENT_ENDPOINT", management.endpoint())
        .start()
        .await;
    let response = function.invoke_ok(event).await;
    // The function waits for its next event forever; stop it and collect all it printed.
    let output = function.stop().await;
    Run { response, output }
}

fn http_event(path: &str, body: Value, bearer: Option<&str>) -> Value {
    let mut e: Value = serde_json::from_str(include_str!("../events/http-post-sessions.json")).expect("fixture");
    e["routeKey"] = json!(format!("POST {path}"));
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["path"] = json!(path);
    e["requestContext"]["routeKey"] = json!(format!("POST {path}"));
    e["requestContext"]["http"]["sourceIp"] = json!(IP);
    e["requestContext"]["http"]["userAgent"] = json!(USER_AGENT);
    e["headers"]["user-agent"] = json!(USER_AGENT);
    e["headers"]["x-forwarded-for"] = json!(IP);
    if let Some(t) = bearer {
        e["headers"]["authorization"] = json!(format!("Bearer {t}"));
    }
    e["body"] = json!(body.to_string());
    e
}

fn ws_event(fixture: &str, conn: &str) -> Value {
    let text = match fixture {
        "connect" => include_str!("../events/ws-connect.json"),
        "message" => include_str!("../events/ws-message.json"),
        _ => include_str!("../events/ws-disconnect.json"),
    };
    let mut e: Value = serde_json::from_str(text).expect("fixture");
    e["requestContext"]["connectionId"] = json!(conn);
    e["requestContext"]["stage"] = json!(STAGE);
    e["requestContext"]["identity"]["sourceIp"] = json!(IP);
    e["requestContext"]["identity"]["userAgent"] = json!(USER_AGENT);
    e
}

fn status(run: &Run) -> i64 {
    run.response["statusCode"].as_i64().unwrap_or(0)
}

fn body(run: &Run) -> Value {
    run.response["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_binaries_log_nothing_personal_at_trace() {
    // Fail first on missing binaries, before starting anything.
    for name in [
        "create-session",
        "connect",
        "message",
        "disconnect",
        "gdpr-export",
        "gdpr-delete",
        "retention",
    ] {
        binary(name);
    }
    let moto = eurochat_tests::moto::moto().endpoint().to_owned();
    let table = eurochat_tests::moto::unique_table("binaries");
    let client = aws_sdk_dynamodb::Client::new(&eurochat_tests::moto::sdk_config().await);
    schema::create_table(&client, &table).await.expect("create table");
    let store = DynamoStore::new(client, table.clone());
    let mut acme = site("acme");
    acme.allowed_origins = vec![Origin::parse("https://acme.example").expect("origin")];
    acme.retention.ip_policy = IpPolicy::Full;
    store.put_site(&acme).await.expect("put site");
    assert!(store.get_site(&SiteId::parse("acme").unwrap()).await.unwrap().is_some());

    let mut runs: Vec<(&str, Run)> = Vec::new();
    let consent = json!({"purpose": "support-follow-up", "policyVersion": "2026-01"});

    // A visitor fills in the pre-chat form.
    let created = invoke(
        "create-session",
        &table,
        &moto,
        http_event(
            "/v1/sessions",
            json!({"siteId": "acme", "prechat": {"name": NAME, "email": EMAIL, "consent": consent}}),
            None,
        ),
    )
    .await;
    assert_eq!(status(&created), 201, "{}", created.response);
    let session = body(&created);
    let token = session["token"].as_str().expect("token").to_owned();
    let session_id = session["sessionId"].as_str().expect("session id").to_owned();
    let visitor_id = session["visitorId"].as_str().expect("visitor id").to_owned();
    runs.push(("create-session", created));

    // Connects with the token as the subprotocol (as the widget does), a stray cookie beside it.
    let conn = "Zk1VsdTAliACEfQ=";
    let mut e = ws_event("connect", conn);
    e["headers"]["Sec-WebSocket-Protocol"] = json!(format!("eurochat.v1, {token}"));
    e["headers"]["Cookie"] = json!(format!("eurochat_vt={token}"));
    e["headers"]["User-Agent"] = json!(USER_AGENT);
    e["headers"]["X-Forwarded-For"] = json!(IP);
    let connected = invoke("connect", &table, &moto, e).await;
    assert_eq!(status(&connected), 200, "{}", connected.response);
    runs.push(("connect", connected));

    // Sends a message with personal text.
    let mut e = ws_event("message", conn);
    e["body"] = json!(
        json!({"action": "sendMessage", "clientMsgId": "c-1", "text": format!("{TEXT}, I am {NAME}, {EMAIL}")})
            .to_string()
    );
    let sent = invoke("message", &table, &moto, e).await;
    assert_eq!(status(&sent), 200, "{}", sent.response);
    runs.push(("message", sent));

    let left = invoke("disconnect", &table, &moto, ws_event("disconnect", conn)).await;
    assert_eq!(status(&left), 200, "{}", left.response);
    runs.push(("disconnect", left));

    // Exports their data (the response holds it all), then erases it.
    let exported = invoke(
        "gdpr-export",
        &table,
        &moto,
        http_event("/v1/gdpr/export", json!({}), Some(&token)),
    )
    .await;
    assert_eq!(status(&exported), 200, "{}", exported.response);
    let doc = body(&exported).to_string();
    assert!(
        doc.contains(TEXT) && doc.contains(NAME),
        "the export really read the data: {doc}"
    );
    runs.push(("gdpr-export", exported));

    // The retention job runs over the stored conversation before the erasure.
    let retained = invoke("retention", &table, &moto, json!({"dryRun": false})).await;
    assert!(retained.response.is_object(), "{}", retained.response);
    runs.push(("retention", retained));

    let erased = invoke(
        "gdpr-delete",
        &table,
        &moto,
        http_event("/v1/gdpr/erase", json!({}), Some(&token)),
    )
    .await;
    assert_eq!(status(&erased), 200, "{}", erased.response);
    runs.push(("gdpr-delete", erased));

    let secret_part = token.rsplit('.').next().unwrap_or_default().to_owned();
    let secrets = [
        NAME.to_owned(),
        "Vandersnoot".to_owned(),
        EMAIL.to_owned(),
        EMAIL.to_lowercase(),
        IP.to_owned(),
        "OttilieBrowser".to_owned(),
        TEXT.to_owned(),
        "8812-QZ".to_owned(),
        token.clone(),
        secret_part,
        session_id,
        visitor_id,
        AGENT_SECRET.to_owned(),
        PSEUDONYM_KEY.to_owned(),
    ];
    for (name, run) in &runs {
        assert!(
            run.output.contains("\"level\":"),
            "{name} logged as JSON under Lambda (the capture works):\n{}",
            run.output
        );
        for secret in &secrets {
            assert!(
                !run.output.contains(secret.as_str()),
                "{name} logged the personal value {secret:?} at TRACE:\n{}",
                run.output
            );
        }
    }
}
