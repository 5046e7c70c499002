//! The cold-start wiring the functions will use, against moto: local-mode
//! configuration builds working AWS clients, and the API Gateway Management
//! adapter signs and sends to an `@connections` endpoint.

use chat_core::config::{Config, vars};
use chat_core::domain::ConnectionId;
use chat_core::gateway::{GatewayFactory, ManagementClients};
use chat_core::storage::{DynamoStore, SiteStore, schema};
use eurochat_tests::fixtures::site;
use eurochat_tests::moto::{moto, unique_table};

fn local_config(table: &str) -> Config {
    let endpoint = moto().endpoint().to_owned();
    let table = table.to_owned();
    Config::from_lookup(move |k| match k {
        vars::LOCAL_MODE => Some("true".into()),
        vars::DYNAMODB_ENDPOINT => Some(endpoint.clone()),
        vars::APIGW_ENDPOINT => Some(endpoint.clone()),
        vars::TABLE_NAME => Some(table.clone()),
        vars::AGENT_TOKEN_SECRET => Some("wiring-agent-token-secret-for-tests".into()),
        vars::PSEUDONYM_KEY => Some("wiring-pseudonym-key-for-tests-0123".into()),
        _ => None,
    })
    .expect("valid local configuration")
}

#[tokio::test]
async fn local_mode_config_builds_a_working_dynamodb_store() {
    let cfg = local_config(&unique_table("wiring"));
    assert_eq!(
        cfg.region, "eu-central-1",
        "local mode without AWS_REGION defaults to an EU region"
    );
    let sdk = cfg.aws_sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    schema::create_table(&client, &cfg.table_name).await.unwrap();
    schema::create_table(&client, &cfg.table_name)
        .await
        .expect("creating an existing table is a no-op");
    let store = DynamoStore::new(client, cfg.table_name.clone());
    store.put_site(&site("acme")).await.unwrap();
    assert!(store.get_site(&site("acme").id).await.unwrap().is_some());
}

#[tokio::test]
async fn management_api_adapter_posts_and_closes_through_moto() {
    let cfg = local_config("unused");
    let sdk = cfg.aws_sdk_config().await;
    let apigw = cfg.local.as_ref().and_then(|l| l.apigw.clone());
    let clients = ManagementClients::new(sdk, apigw);
    assert_eq!(
        clients.endpoint("abc.execute-api.eu-central-1.amazonaws.com", "prod"),
        moto().endpoint()
    );
    let gateway = clients.for_request("abc.execute-api.eu-central-1.amazonaws.com", "prod");
    let conn = ConnectionId::parse("L0SM9cOFvHcCIhw=").unwrap();
    gateway
        .send(&conn, br#"{"type":"message"}"#)
        .await
        .expect("post to connection");
    gateway.close(&conn).await.expect("delete connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_message_flows_through_dynamodb_and_the_real_management_client() {
    use chat_core::storage::{MessageStore, SessionStore};
    use eurochat_tests::backends::{Backend, Dynamo};
    use eurochat_tests::chat::{Chat, ORIGIN};
    use serde_json::json;

    let chat = Chat::new(Dynamo::new().await).await;
    let v = chat.visitor().await;
    assert_eq!(chat.connect("V1=", &v.token).await, 200);
    let agent = chat.agent_token("acme", "alice", chat_core::domain::AgentRole::Admin);
    assert_eq!(chat.connect_from("A1=", &agent, ORIGIN).await, 200);

    // The message function exactly as main.rs wires it, with the management API on moto.
    let cfg = local_config("unused");
    let gateways = ManagementClients::new(
        cfg.aws_sdk_config().await,
        cfg.local.as_ref().and_then(|l| l.apigw.clone()),
    );
    let deps = message::Deps {
        store: chat.backend.store(),
        gateways: &gateways,
        clock: &chat.clock,
        config: &chat.config(),
    };
    let mut e: serde_json::Value = serde_json::from_str(include_str!("../events/ws-message.json")).unwrap();
    e["requestContext"]["connectionId"] = json!("V1=");
    e["body"] = json!(json!({"action": "sendMessage", "clientMsgId": "c-1", "text": "via moto"}).to_string());
    let resp = message::handle(serde_json::from_value(e).unwrap(), &deps).await;
    assert_eq!(resp.status_code, 200);
    let sid = chat_core::domain::SessionId::parse(&v.session_id).unwrap();
    let page = chat.backend.store().list_messages(&sid, 0, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(
        chat.backend
            .store()
            .get_session(&sid, chat.now())
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        1
    );
    assert!(
        chat.gateway.sent().is_empty(),
        "everything went through the real client, not the recorder"
    );
}

/// The secrets path against moto's Secrets Manager with the real SDK client: the
/// current value alone, then after a rotation (`put-secret-value`) the new value
/// current and the old one previous, as `AWSCURRENT` / `AWSPREVIOUS`; a missing
/// secret is an error naming the variable, never a value.
#[tokio::test]
async fn agent_token_keys_follow_a_secrets_manager_rotation() {
    use chat_core::secrets::{SecretsManager, read_agent_keys, read_pseudonym_key};
    let client = aws_sdk_secretsmanager::Client::new(&eurochat_tests::moto::sdk_config().await);
    let old = "rotation-test-old-secret-0123456789abcdefgh";
    let new = "rotation-test-new-secret-9876543210zyxwvuts";
    let arn = client
        .create_secret()
        .name(unique_table("agent-token"))
        .secret_string(old)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let source = SecretsManager::new(client.clone());
    assert_eq!(read_agent_keys(&source, &arn).await.unwrap(), (old.into(), None));
    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(new)
        .send()
        .await
        .unwrap();
    assert_eq!(
        read_agent_keys(&source, &arn).await.unwrap(),
        (new.into(), Some(old.into()))
    );
    let missing = format!("{arn}-missing");
    let err = read_pseudonym_key(&source, &missing).await.unwrap_err().to_string();
    assert!(
        err.starts_with("EUROCHAT_PSEUDONYM_KEY_ARN: the secret could not be read"),
        "{err}"
    );
    assert!(!err.contains(old) && !err.contains(new));
}
