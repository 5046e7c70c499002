//! The admin tool: its functions on the in-memory store, and the binary against moto.

use std::process::Command;

use chat_core::auth::AgentTokenKeys;
use chat_core::domain::{AgentRole, SiteId};
use chat_core::storage::{MemoryStore, SiteStore};
use eurochat_admin::*;
use eurochat_tests::fixtures::{T0, at_min};

fn spec(id: &str) -> SiteSpec {
    SiteSpec {
        id: id.into(),
        origins: vec!["https://shop.example".into()],
        ..SiteSpec::default()
    }
}

#[tokio::test]
async fn sites_are_validated_created_and_updated() {
    let store = MemoryStore::new();
    let no_origin = SiteSpec {
        id: "shop".into(),
        ..SiteSpec::default()
    };
    assert!(matches!(put_site(&store, &no_origin, T0).await, Err(AdminError::Invalid(e)) if e.field == "origin"));
    for bad in [
        SiteSpec {
            origins: vec!["http://shop.example".into()],
            ..spec("shop")
        },
        SiteSpec {
            ip_policy: Some("most".into()),
            ..spec("shop")
        },
        SiteSpec {
            retention_days: Some(0),
            ..spec("shop")
        },
        SiteSpec {
            agent_ips: Some(vec!["not-a-net".into()]),
            ..spec("shop")
        },
        spec("BAD ID"),
    ] {
        assert!(
            matches!(put_site(&store, &bad, T0).await, Err(AdminError::Invalid(_))),
            "{bad:?}"
        );
    }
    assert!(
        store.list_sites(None, 10).await.unwrap().items.is_empty(),
        "nothing stored on errors"
    );

    let created = put_site(
        &store,
        &SiteSpec {
            agent_ips: Some(vec!["192.0.2.7/24".into()]),
            ..spec("shop")
        },
        T0,
    )
    .await
    .unwrap();
    assert_eq!(created.retention.conversation_days, 365);
    assert_eq!(
        created.agent_ip_allowlist.as_ref().unwrap()[0].to_string(),
        "192.0.2.0/24"
    );
    let update = SiteSpec {
        id: "shop".into(),
        name: Some("Shop".into()),
        retention_days: Some(30),
        agent_ips: Some(vec![]),
        ..SiteSpec::default()
    };
    let updated = put_site(&store, &update, at_min(5)).await.unwrap();
    assert_eq!((updated.created_at, updated.updated_at), (T0, at_min(5)));
    assert_eq!(
        updated.allowed_origins, created.allowed_origins,
        "origins kept when none are given"
    );
    assert_eq!(
        (updated.name.as_str(), updated.retention.conversation_days),
        ("Shop", 30)
    );
    assert_eq!(updated.agent_ip_allowlist, None);
}

#[tokio::test]
async fn agents_and_tokens() {
    let store = MemoryStore::new();
    assert!(matches!(
        put_agent(&store, "shop", "alice", "Alice", AgentRole::Admin, true, T0).await,
        Err(AdminError::NotFound("site"))
    ));
    put_site(&store, &spec("shop"), T0).await.unwrap();
    put_agent(&store, "shop", "alice", "Alice", AgentRole::Admin, true, T0)
        .await
        .unwrap();
    let again = put_agent(&store, "shop", "alice", "Alice B.", AgentRole::Agent, true, at_min(1))
        .await
        .unwrap();
    assert_eq!(again.created_at, T0);

    let keys = AgentTokenKeys::new(&[5; 32], None);
    assert!(matches!(
        mint_agent_token(&store, &keys, "shop", "alice", 0, T0).await,
        Err(AdminError::Invalid(_))
    ));
    assert!(matches!(
        mint_agent_token(&store, &keys, "shop", "nobody", 12, T0).await,
        Err(AdminError::NotFound(_))
    ));
    let token = mint_agent_token(&store, &keys, "shop", "alice", 12, T0).await.unwrap();
    let claims = keys.verify(&token, at_min(60)).unwrap();
    assert_eq!(
        (claims.site, claims.role),
        (SiteId::parse("shop").unwrap(), AgentRole::Agent),
        "the agent's current role"
    );
    put_agent(&store, "shop", "alice", "Alice", AgentRole::Agent, false, at_min(2))
        .await
        .unwrap();
    assert!(matches!(
        mint_agent_token(&store, &keys, "shop", "alice", 12, T0).await,
        Err(AdminError::NotFound(_))
    ));
}

fn admin(table: &str, args: &[&str]) -> (bool, String, String) {
    admin_cli(table, &[], args)
}

#[test]
fn the_binary_manages_a_site_on_dynamodb() {
    let table = eurochat_tests::moto::unique_table("admin");
    assert!(admin(&table, &["create-table"]).0);
    let (ok, out, err) = admin(
        &table,
        &[
            "put-site",
            "--site",
            "shop",
            "--origin",
            "https://shop.example",
            "--ip-policy",
            "none",
        ],
    );
    assert!(ok, "{err}");
    let site: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(site["retention"]["ipPolicy"], "none");
    assert!(
        admin(
            &table,
            &[
                "put-agent",
                "--site",
                "shop",
                "--agent",
                "alice",
                "--name",
                "Alice",
                "--role",
                "admin"
            ]
        )
        .0
    );
    let (ok, token, _) = admin(
        &table,
        &["mint-token", "--site", "shop", "--agent", "alice", "--ttl-hours", "2"],
    );
    assert!(ok && token.starts_with("at1."), "{token}");
    let (ok, out, _) = admin(&table, &["show-site", "--site", "shop"]);
    assert!(ok && out.contains("https://shop.example"));
    let (ok, _, err) = admin(&table, &["put-site", "--site", "shop", "--origin", "ftp://nope"]);
    assert!(!ok && err.contains("origin"), "{err}");
}

#[test]
fn the_binary_refuses_non_eu_regions_and_remote_endpoints() {
    let out = Command::new(env!("CARGO_BIN_EXE_eurochat-admin"))
        .args(["--table", "t", "--region", "us-east-1", "show-site", "--site", "shop"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the EU"));
    let out = Command::new(env!("CARGO_BIN_EXE_eurochat-admin"))
        .args([
            "--table",
            "t",
            "--dynamodb-endpoint",
            "http://10.1.2.3:8000",
            "show-site",
            "--site",
            "shop",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

/// Deactivation, reactivation, revocation, closing connections and minting after a
/// revocation, on one store.
async fn revocation_flow(store: &impl chat_core::storage::Store) {
    use chat_core::clock::Timestamp;
    use chat_core::domain::AgentId;
    use chat_core::gateway::RecordingGateway;
    use eurochat_tests::fixtures::{agent_conn, site};

    let keys = AgentTokenKeys::new(b"admin-lib-test-secret-32-bytes-long!", None);
    put_site(store, &spec("shop"), T0).await.unwrap();
    for agent in ["alice", "bob"] {
        put_agent(store, "shop", agent, agent, AgentRole::Admin, true, T0)
            .await
            .unwrap();
    }
    let old = mint_agent_token(store, &keys, "shop", "alice", 12, T0).await.unwrap();
    let old_iat = keys.verify(&old, T0).unwrap().iat;
    let shop = site("shop");
    for (conn, agent) in [("AL1=", "alice"), ("AL2=", "alice"), ("BO1=", "bob")] {
        store.put_connection(&agent_conn(conn, &shop, agent, T0)).await.unwrap();
    }

    let off = put_agent(store, "shop", "alice", "alice", AgentRole::Admin, false, at_min(1))
        .await
        .unwrap();
    assert_eq!(off.tokens_valid_after, Some(at_min(1)), "deactivation revokes");
    let on = put_agent(store, "shop", "alice", "alice", AgentRole::Admin, true, at_min(2))
        .await
        .unwrap();
    assert_eq!(
        on.tokens_valid_after,
        Some(at_min(1)),
        "reactivation keeps the revocation"
    );
    assert!(!on.accepts_token_issued_at(old_iat), "old tokens stay dead");

    let gateway = RecordingGateway::new();
    assert_eq!(
        close_agent_connections(store, &gateway, "shop", "alice", at_min(2))
            .await
            .unwrap(),
        2
    );
    let mut closed: Vec<String> = gateway.closed().iter().map(|c| c.to_string()).collect();
    closed.sort();
    assert_eq!(closed, ["AL1=", "AL2="], "only that agent's connections");
    let online: Vec<String> = store
        .agent_connections(&shop.id, at_min(2))
        .await
        .unwrap()
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(online, ["BO1="], "their records are deleted, the others' kept");

    // Revoking at 3 min 0.5 s; a token minted in that same second still works.
    let revoked_at = Timestamp::from_millis(at_min(3).millis() + 500);
    let agent = revoke_tokens(store, "shop", "alice", revoked_at).await.unwrap();
    assert_eq!(agent.tokens_valid_after, Some(revoked_at));
    let fresh = mint_agent_token(store, &keys, "shop", "alice", 12, revoked_at)
        .await
        .unwrap();
    let claims = keys.verify(&fresh, revoked_at).unwrap();
    assert!(agent.accepts_token_issued_at(claims.iat), "minted after the revocation");
    assert!(matches!(
        revoke_tokens(store, "shop", "nobody", at_min(4)).await,
        Err(AdminError::NotFound(_))
    ));
    let bob = store
        .get_agent(&shop.id, &AgentId::parse("bob").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.tokens_valid_after, None, "other agents untouched");

    // The longest lifetime minted is the longest verified.
    assert!(
        mint_agent_token(store, &keys, "shop", "alice", MAX_TOKEN_HOURS, at_min(5))
            .await
            .is_ok()
    );
    assert!(matches!(
        mint_agent_token(store, &keys, "shop", "alice", MAX_TOKEN_HOURS + 1, at_min(5)).await,
        Err(AdminError::Invalid(e)) if e.field == "ttlHours"
    ));
}

#[tokio::test]
async fn revocation_on_memory() {
    revocation_flow(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_dynamodb() {
    revocation_flow(&eurochat_tests::backends::Dynamo::new().await.0).await;
}

fn admin_cli(table: &str, global: &[&str], args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eurochat-admin"))
        .args([
            "--table",
            table,
            "--dynamodb-endpoint",
            eurochat_tests::moto::moto().endpoint(),
        ])
        .args(global)
        .args(args)
        .env("EUROCHAT_AGENT_TOKEN_SECRET", "admin-cli-test-secret-32-bytes-long!")
        .env_remove("EUROCHAT_WS_MANAGEMENT_ENDPOINT")
        .env_remove("AWS_REGION")
        .output()
        .expect("run eurochat-admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_revokes_tokens_and_closes_connections() {
    use chat_core::clock::Clock;
    use chat_core::domain::AgentId;
    use chat_core::storage::{ConnectionStore, DynamoStore};
    use eurochat_tests::fixtures::{agent_conn, site};

    let table = eurochat_tests::moto::unique_table("admin");
    assert!(admin_cli(&table, &[], &["create-table"]).0);
    let (ok, _, err) = admin_cli(
        &table,
        &[],
        &["put-site", "--site", "shop", "--origin", "https://shop.example"],
    );
    assert!(ok, "{err}");
    let agent = ["--site", "shop", "--agent", "alice"];
    let (ok, _, err) = admin_cli(
        &table,
        &[],
        &[&["put-agent", "--name", "Alice"][..], &agent[..]].concat(),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = admin_cli(
        &table,
        &[],
        &[&["mint-token", "--ttl-hours", "169"][..], &agent[..]].concat(),
    );
    assert!(!ok && err.contains("168"), "{err}");

    let (ok, out, err) = admin_cli(&table, &[], &[&["revoke-tokens"][..], &agent[..]].concat());
    assert!(ok, "{err}");
    assert!(
        out.contains("revoked") && out.contains("no management endpoint"),
        "{out}"
    );

    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&eurochat_tests::moto::sdk_config().await),
        table.clone(),
    );
    let shop = site("shop");
    let now = chat_core::clock::SystemClock.now();
    store
        .put_connection(&agent_conn("AL1=", &shop, "alice", now))
        .await
        .unwrap();
    let endpoint = eurochat_tests::moto::moto().endpoint();
    let (ok, out, err) = admin_cli(
        &table,
        &["--ws-management-endpoint", endpoint],
        &[&["put-agent", "--name", "Alice", "--inactive"][..], &agent[..]].concat(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("closed 1 open connection"), "{out}");
    let stored = store
        .get_agent(&shop.id, &AgentId::parse("alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.active && stored.tokens_valid_after.is_some());
    assert!(store.agent_connections(&shop.id, now).await.unwrap().is_empty());
    let (ok, _, err) = admin_cli(
        &table,
        &["--ws-management-endpoint", "http://10.0.0.1/prod"],
        &[&["revoke-tokens"][..], &agent[..]].concat(),
    );
    assert!(!ok && err.contains("https"), "{err}");
    let again = store
        .get_agent(&shop.id, &AgentId::parse("alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, stored, "a bad endpoint changes nothing");
}
