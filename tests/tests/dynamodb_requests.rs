//! What each request-path store operation costs in DynamoDB requests, on moto.
//! These numbers are the basis of the cost statements in docs/data-model.md.

use chat_core::policy::RateLimit;
use chat_core::storage::*;
use eurochat_tests::fixtures::*;
use eurochat_tests::requests::counted_store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_path_operations_cost_a_fixed_number_of_requests_and_never_scan() {
    let (store, log) = counted_store().await;
    let site = site("acme");
    store.put_site(&site).await.unwrap();
    log.take();
    let mut all = Vec::new();
    // Compared as multisets: the reads of one step may go out concurrently.
    let mut check = |what: &str, expected: &[&str]| {
        let got = log.take();
        let (mut g, mut e) = (got.clone(), expected.to_vec());
        g.sort_unstable();
        e.sort_unstable();
        assert_eq!(g, e, "{what}");
        all.extend(got);
    };
    let s = session(&site, T0);
    store.create_session(&s).await.unwrap();
    check("create a session", &["PutItem"]);
    let v = visitor_conn("VISITOR1=", &s, T0);
    let a = agent_conn("AGENT1=", &site, "alice", T0);
    store.put_connection(&v).await.unwrap();
    check("record a connection", &["TransactWriteItems"]);
    store.put_connection(&a).await.unwrap();
    log.take();

    store.get_connection(&v.id, at_min(1)).await.unwrap();
    check("read the sender's connection", &["GetItem"]);
    let rate = Some(RateLimit {
        limit: 30,
        window: std::time::Duration::from_secs(60),
    });
    store
        .append_message(&visitor_msg(&s, "c1", "hello"), at_min(1), rate)
        .await
        .unwrap();
    check(
        "append a message: the session and LSI1 (a retry?) together, then the transaction",
        &["BatchGetItem", "Query", "TransactWriteItems"],
    );
    store
        .append_message(&visitor_msg(&s, "c1", "hello"), at_min(1), rate)
        .await
        .unwrap();
    check("append a retry", &["BatchGetItem", "Query", "GetItem"]);
    store.conversation_connections(&s.id, at_min(1)).await.unwrap();
    check("conversation fan-out", &["Query"]);
    store.agent_connections(&site.id, at_min(1)).await.unwrap();
    check("site agents fan-out", &["Query"]);
    store.list_messages(&s.id, 0, 50).await.unwrap();
    check("history", &["Query"]);
    store
        .list_conversations(&site.id, None, None, 20, at_min(1))
        .await
        .unwrap();
    check(
        "agent's conversation list: GSI2 (keys only), then the sessions",
        &["Query", "BatchGetItem"],
    );
    store.get_session(&s.id, at_min(1)).await.unwrap();
    check("read a session", &["GetItem"]);
    store
        .touch_session(
            &s.id,
            SessionTouch {
                now: at_min(2),
                renew_token: true,
            },
        )
        .await
        .unwrap();
    check("resume a session", &["GetItem", "PutItem"]);
    store.join_conversation(&a.id, &s.id, at_min(2)).await.unwrap();
    check("agent joins", &["GetItem", "GetItem", "TransactWriteItems"]);
    let sliding = RateLimit::new(2, std::time::Duration::from_secs(60));
    for _ in 0..2 {
        store.hit("ip", sliding, at_min(2)).await.unwrap();
        check("sliding-window counter, admitted", &["UpdateItem"]);
    }
    assert!(matches!(
        store.hit("ip", sliding, at_min(2)).await.unwrap(),
        chat_core::policy::RateDecision::Limited { .. }
    ));
    check("sliding-window counter, refused", &["UpdateItem"]);
    store.delete_connection(&v.id).await.unwrap();
    check("$disconnect", &["GetItem", "TransactWriteItems"]);
    store.sessions_of_visitor(&site.id, &s.visitor_id).await.unwrap();
    check(
        "GDPR lookup by visitor: GSI1 (keys only), then the sessions",
        &["Query", "BatchGetItem"],
    );
    store.erase_session(&s.id, at_min(3)).await.unwrap();
    let erase = log.take();
    assert!(!erase.iter().any(|op| op == "Scan"), "erasure: {erase:?}");
    all.extend(erase);
    assert!(!all.iter().any(|op| op == "Scan"), "no Scan on a request path: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_is_one_query_whatever_the_table_holds() {
    let (store, log) = counted_store().await;
    let site = site("acme");
    let target = session(&site, T0);
    store.create_session(&target).await.unwrap();
    store
        .put_connection(&visitor_conn("TARGET=", &target, T0))
        .await
        .unwrap();
    // 100 other conversations, each with a connection and a message.
    for i in 0..100 {
        let s = session(&site, T0);
        store.create_session(&s).await.unwrap();
        store
            .put_connection(&visitor_conn(&format!("OTHER{i}="), &s, T0))
            .await
            .unwrap();
        store
            .append_message(&visitor_msg(&s, "c1", "noise"), T0, None)
            .await
            .unwrap();
    }
    log.take();
    let conns = store.conversation_connections(&target.id, at_min(1)).await.unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(log.take(), ["Query"], "one Query on the conversation's partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_message_is_three_sequential_round_trips() {
    use eurochat_tests::backends::Dynamo;
    use eurochat_tests::chat::{Chat, ORIGIN};
    use serde_json::json;

    // 10 ms per request, as on DynamoDB: concurrent requests visibly overlap.
    let (store, log, _) =
        eurochat_tests::requests::counted_table_at_latency(std::time::Duration::from_millis(10)).await;
    let chat = Chat::new(Dynamo(store)).await;
    let v = chat.visitor().await;
    assert_eq!(chat.connect("V1=", &v.token).await, 200);
    let agent = chat.agent_token("acme", "alice", chat_core::domain::AgentRole::Admin);
    assert_eq!(chat.connect_from("A1=", &agent, ORIGIN).await, 200);
    // Noise: other conversations with connections and messages.
    for i in 0..15 {
        // One IP creates at most 10 sessions a minute (EUROCHAT_SESSIONS_PER_MINUTE).
        chat.advance(std::time::Duration::from_secs(7));
        let other = chat.visitor().await;
        chat.connect(&format!("N{i}="), &other.token).await;
        chat.send(
            &format!("N{i}="),
            json!({"action": "sendMessage", "clientMsgId": "n", "text": "noise"}),
        )
        .await;
    }
    log.take();
    chat.send(
        "V1=",
        json!({"action": "sendMessage", "clientMsgId": "c-1", "text": "hello"}),
    )
    .await;
    let calls = log.take_calls();
    let ops: Vec<&str> = calls.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(
        ops[2..],
        ["TransactWriteItems", "Query", "Query"],
        "no sender lookup (the authorizer's context names it); the session and a retry's \
         original (LSI1) together, the atomic write, then fan-out: the conversation's partition \
         and the site's agents"
    );
    let mut first: Vec<&str> = ops[..2].to_vec();
    first.sort_unstable();
    assert_eq!(first, ["BatchGetItem", "Query"]);
    assert_eq!(
        eurochat_tests::capacity::round_trips(&calls),
        3,
        "the two fan-out Queries go out together: {calls:#?}"
    );
    // An agent's message: its revocation check rides on the same BatchGetItem.
    chat.send(
        "A1=",
        json!({"action": "sendMessage", "sessionId": v.session_id, "clientMsgId": "a-1", "text": "hi"}),
    )
    .await;
    let calls = log.take_calls();
    let ops: Vec<&str> = calls.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(ops[2..], ["TransactWriteItems", "Query", "Query"]);
    let batch = calls.iter().find(|c| c.op == "BatchGetItem").expect("a BatchGetItem");
    let keys = batch.request["RequestItems"]
        .as_object()
        .and_then(|t| t.values().next())
        .and_then(|spec| spec["Keys"].as_array())
        .map_or(0, Vec::len);
    assert_eq!(keys, 3, "session, agent, site in one request");
    assert_eq!(eurochat_tests::capacity::round_trips(&calls), 3);
    let for_v = chat
        .frames_of("A1=", "message")
        .into_iter()
        .filter(|f| f["message"]["sessionId"] == v.session_id.as_str())
        .count();
    assert_eq!(for_v, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_frames_cost_one_batch_get_more_and_visitor_frames_nothing_more() {
    use eurochat_tests::backends::Dynamo;
    use eurochat_tests::chat::Chat;
    use serde_json::json;

    let (store, log) = counted_store().await;
    let chat = Chat::new(Dynamo(store)).await;
    let v = chat.visitor().await;
    assert_eq!(chat.connect("V1=", &v.token).await, 200);
    let agent = chat.agent_token("acme", "alice", chat_core::domain::AgentRole::Admin);
    log.take();
    assert_eq!(chat.connect("A1=", &agent).await, 200);
    assert_eq!(
        log.take(),
        ["UpdateItem", "BatchGetItem", "TransactWriteItems", "BatchGetItem"],
        "agent $connect: IP counter, agent + site, connection, agent + site again (revocation race)"
    );
    chat.send("A1=", json!({"action": "listConversations"})).await;
    assert_eq!(
        log.take(),
        ["BatchGetItem", "Query"],
        "agent frame: agent + site (the per-frame check), the listing (GSI2 keys; no conversation \
         yet, so no sessions to read); the sender comes from the authorizer's context"
    );
    chat.send("V1=", json!({"action": "history"})).await;
    assert_eq!(
        log.take(),
        ["GetItem", "Query"],
        "visitor frame: session, messages; no agent check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rate_limited_request_costs_one_update_item() {
    use eurochat_tests::backends::Dynamo;
    use eurochat_tests::chat::Chat;
    use serde_json::json;

    let (store, log) = counted_store().await;
    let chat = Chat::new(Dynamo(store)).await;
    log.take();
    let v = chat.visitor().await;
    assert_eq!(
        log.take(),
        ["GetItem", "UpdateItem", "PutItem"],
        "a new session: the site, the per-IP counter, the session"
    );
    for _ in 1..10 {
        chat.visitor().await;
    }
    log.take();
    let refused = chat.post_session(&json!({"siteId": "acme"}), &[], &[]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        log.take(),
        ["GetItem", "UpdateItem"],
        "a refused creation writes nothing"
    );
    let exported = chat.export(Some(&v.token), &json!({}), 4 * 1024 * 1024).await;
    assert_eq!(exported.status, 200);
    let ops = log.take();
    assert_eq!(
        ops.iter().filter(|op| *op == "UpdateItem").count(),
        1,
        "one counter update per export request: {ops:?}"
    );
}
