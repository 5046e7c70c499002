//! Faults between the functions and DynamoDB (issue 14), injected by a proxy in
//! front of moto (`eurochat_tests::faults`), through the real handlers. Every
//! case ends with the conversation's history exactly what the clients sent
//! (nothing lost, nothing twice, in order), a client-visible error that says
//! to retry where one is due, and erasure complete (a raw look at the table).

use std::time::Duration;

use chat_core::storage::ConnectionStore as _;
use eurochat_tests::backends::{Backend as _, Dynamo};
use eurochat_tests::capacity::Table;
use eurochat_tests::chat::{Chat, ORIGIN, Visitor};
use eurochat_tests::faults::{self, Fault, Faults, Rule};
use eurochat_tests::requests::counted_table_via;
use serde_json::{Value, json};

struct World {
    chat: Chat<Dynamo>,
    table: Table,
    faults: Faults,
    visitor: Visitor,
}

/// A visitor on `V1=` and agent alice on `A1=`, with no fault yet.
async fn world() -> World {
    let faults = Faults::default();
    let endpoint = faults::proxy(eurochat_tests::moto::moto().endpoint(), faults.clone(), Duration::ZERO).await;
    let (store, _log, table) = counted_table_via(endpoint).await;
    let chat = Chat::new(Dynamo(store)).await;
    let visitor = chat.visitor().await;
    assert_eq!(chat.connect("V1=", &visitor.token).await, 200);
    let agent = chat.agent_token("acme", "alice", chat_core::domain::AgentRole::Admin);
    assert_eq!(chat.connect_from("A1=", &agent, ORIGIN).await, 200);
    World {
        chat,
        table,
        faults,
        visitor,
    }
}

async fn say(w: &World, cmid: &str, text: &str) -> Value {
    w.chat
        .send(
            "V1=",
            json!({"action": "sendMessage", "clientMsgId": cmid, "text": text, "ref": cmid}),
        )
        .await;
    w.chat.last("V1=")
}

/// The conversation as stored, read through the handler: (seq, text) in order.
async fn history(w: &World) -> Vec<(u64, String)> {
    w.chat.send("V1=", json!({"action": "history", "limit": 100})).await;
    let h = w.chat.last("V1=");
    assert_eq!(h["type"], "history", "{h}");
    h["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap_or(0),
                m["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Nothing lost, nothing twice, in order: history is exactly `texts`, numbered 1…n.
async fn assert_exactly(w: &World, texts: &[&str]) {
    let expected: Vec<(u64, String)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (i as u64 + 1, (*t).to_owned()))
        .collect();
    assert_eq!(history(w).await, expected);
    // The agent saw each of them live, possibly more than once (at least once), never another.
    let seen: std::collections::BTreeSet<u64> = w
        .chat
        .frames_of("A1=", "message")
        .iter()
        .filter_map(|f| f["message"]["seq"].as_u64())
        .collect();
    assert_eq!(seen, (1..=texts.len() as u64).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_beyond_the_sdks_retries_asks_to_retry_and_stores_nothing() {
    let w = world().await;
    assert_eq!(say(&w, "c-1", "one").await["type"], "ack");
    w.faults.set(vec![Rule {
        op: "TransactWriteItems",
        fault: Fault::Throttle,
        skip: 0,
        times: u32::MAX,
    }]);
    let refused = say(&w, "c-2", "two").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(refused["retryAfter"], 1, "the client is told when to retry: {refused}");
    assert_eq!(refused["ref"], "c-2");
    assert!(w.faults.injected() > 1, "the SDK retried before giving up");
    w.faults.clear();
    // The client retries the same frame, then goes on; a second retry is recognised.
    assert_eq!(say(&w, "c-2", "two").await["seq"], 2);
    assert_eq!(say(&w, "c-3", "three").await["seq"], 3);
    let again = say(&w, "c-3", "three").await;
    assert_eq!(
        (again["seq"].as_u64(), again["duplicate"].as_bool()),
        (Some(3), Some(true))
    );
    assert_exactly(&w, &["one", "two", "three"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_5xx_is_retried_and_a_lasting_one_asks_to_retry() {
    let w = world().await;
    // Twice: within the SDK's retries, nobody notices.
    w.faults.set(vec![Rule {
        op: "BatchGetItem",
        fault: Fault::ServerError,
        skip: 0,
        times: 2,
    }]);
    assert_eq!(say(&w, "c-1", "one").await["type"], "ack");
    assert_eq!(w.faults.injected(), 2);
    // Lasting: `unavailable`, retry later; nothing stored meanwhile.
    w.faults.set(vec![Rule {
        op: "BatchGetItem",
        fault: Fault::ServerError,
        skip: 0,
        times: u32::MAX,
    }]);
    let refused = say(&w, "c-2", "two").await;
    assert_eq!(
        (refused["code"].as_str(), refused["retryAfter"].as_u64()),
        (Some("unavailable"), Some(1)),
        "{refused}"
    );
    w.faults.clear();
    assert_eq!(say(&w, "c-2", "two").await["seq"], 2);
    assert_exactly(&w, &["one", "two"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_delivered_twice_stores_one_message() {
    let w = world().await;
    let mut event: Value = serde_json::from_str(include_str!("../events/ws-message.json")).expect("fixture");
    event["requestContext"]["connectionId"] = json!("V1=");
    event["body"] = json!(json!({"action": "sendMessage", "clientMsgId": "c-1", "text": "once"}).to_string());
    // Lambda retries an invocation with the very same event; so may API Gateway.
    let (a, b) = tokio::join!(w.chat.message_event(event.clone()), w.chat.message_event(event));
    assert_eq!((a, b), (200, 200));
    let acks: Vec<Value> = w.chat.frames_of("V1=", "ack");
    assert_eq!(acks.len(), 2, "each delivery is answered");
    assert!(acks.iter().all(|f| f["seq"] == 1), "{acks:?}");
    assert_eq!(acks.iter().filter(|f| f["duplicate"] == true).count(), 1, "{acks:?}");
    assert_exactly(&w, &["once"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_gone_in_the_middle_of_a_fan_out_costs_no_one_else_the_message() {
    let w = world().await;
    let bob = w.chat.agent_token("acme", "bob", chat_core::domain::AgentRole::Agent);
    assert_eq!(w.chat.connect_from("A2=", &bob, ORIGIN).await, 200);
    assert_eq!(
        w.chat.connect("V2=", &w.visitor.token).await,
        200,
        "the visitor's second tab"
    );
    w.chat
        .gateway
        .mark_gone(&chat_core::domain::ConnectionId::parse("A2=").expect("id"));
    assert_eq!(say(&w, "c-1", "one").await["type"], "ack");
    assert_eq!(w.chat.frames_of("V2=", "message").len(), 1, "the other tab got it");
    assert_eq!(w.chat.frames_of("A1=", "message").len(), 1, "the other agent got it");
    let gone = chat_core::domain::ConnectionId::parse("A2=").expect("id");
    assert!(
        w.chat
            .backend
            .store()
            .get_connection(&gone, w.chat.now())
            .await
            .expect("read")
            .is_none(),
        "the gone connection's record was deleted"
    );
    assert_exactly(&w, &["one"]).await;
}

/// Items left in the visitor's session partition, read straight from the table.
async fn left_in_partition(w: &World) -> usize {
    let pk = format!("SESS#{}", w.visitor.session_id);
    w.table.snapshot().await.into_keys().filter(|(p, _)| *p == pk).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_survives_unprocessed_items_and_a_kill_between_two_writes() {
    let w = world().await;
    let texts: Vec<String> = (1..=60).map(|i| format!("message {i}")).collect();
    for (i, t) in texts.iter().enumerate() {
        w.chat.advance(Duration::from_secs(3));
        assert_eq!(say(&w, &format!("c-{i}"), t).await["type"], "ack");
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_exactly(&w, &refs).await;
    // The function dies after the fence and one batch of deletes (a non-retryable
    // failure stands for a timeout or a crash): it answers an error, the
    // conversation stays fenced, and nothing more can be written to it.
    w.faults.set(vec![Rule {
        op: "BatchWriteItem",
        fault: Fault::Fatal,
        skip: 1,
        times: 1,
    }]);
    let r = w.chat.erase(Some(&w.visitor.token), &json!({})).await;
    assert!(r.status >= 500, "{r:?}");
    assert!(left_in_partition(&w).await > 0, "interrupted: something is left");
    // The visitor's socket was closed by the erasure; the agent's message is refused.
    w.chat
        .send(
            "A1=",
            json!({"action": "sendMessage", "sessionId": w.visitor.session_id, "clientMsgId": "late", "text": "late"}),
        )
        .await;
    let late = w.chat.last("A1=");
    assert_eq!(
        late["code"], "not_found",
        "a fenced conversation takes no message: {late}"
    );
    assert_eq!(
        w.chat.connect("V3=", &w.visitor.token).await,
        401,
        "nor a new connection"
    );
    // The rerun (the visitor presses the button again) meets UnprocessedItems too.
    w.faults.set(vec![Rule {
        op: "BatchWriteItem",
        fault: Fault::Unprocessed,
        skip: 0,
        times: 3,
    }]);
    let r = w.chat.erase(Some(&w.visitor.token), &json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(w.faults.injected(), 4, "one kill, three unprocessed batches");
    assert_eq!(left_in_partition(&w).await, 0, "erasure complete");
}
