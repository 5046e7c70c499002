//! Capacity benchmark (issue 14): for each request path, through the real
//! handlers on moto, the DynamoDB requests, their sequential round trips, and
//! the read and write units DynamoDB would bill (computed by its item-size
//! rules, `eurochat_tests::capacity`), at several table sizes; asserted against
//! the targets in `docs/data-model.md`, "Cost per message".
//!
//! `make bench-capacity` prints the table (`--nocapture`);
//! `EUROCHAT_CAPACITY_JSON=<file>` also writes it as JSON, and
//! `EUROCHAT_CAPACITY_REPORT_ONLY=1` measures without asserting (how
//! `scripts/bench-compare` measures an older commit beside this one).

use std::collections::BTreeSet;
use std::time::Duration;

use chat_core::domain::AgentRole;
use eurochat_tests::backends::Dynamo;
use eurochat_tests::capacity::{self, Call, Table};
use eurochat_tests::chat::{Chat, ORIGIN};
use eurochat_tests::requests::{RequestLog, counted_table_at_latency};
use serde_json::json;

/// What one request path cost.
#[derive(Debug, Clone, serde::Serialize)]
struct Measured {
    path: &'static str,
    /// Conversations (each with a connection and a message) already in the table.
    table_size: usize,
    requests: Vec<String>,
    round_trips: usize,
    read_units: f64,
    /// Read units of the fan-out Queries alone.
    fan_out_read_units: f64,
    table_write_units: f64,
    index_write_units: f64,
    items_written: usize,
    write_requests: usize,
}

impl Measured {
    fn write_units(&self) -> f64 {
        self.table_write_units + self.index_write_units
    }
}

struct Bench {
    chat: Chat<Dynamo>,
    log: RequestLog,
    table: Table,
    table_size: usize,
    results: std::sync::Mutex<Vec<Measured>>,
}

impl Bench {
    async fn new(table_size: usize) -> Self {
        // Every request takes at least MODEL_ROUND_TRIP_MS, as on DynamoDB.
        let (store, log, table) = counted_table_at_latency(Duration::from_millis(MODEL_ROUND_TRIP_MS as u64)).await;
        let chat = Chat::new(Dynamo(store)).await;
        let b = Self {
            chat,
            log,
            table,
            table_size,
            results: std::sync::Mutex::default(),
        };
        // Noise: other conversations with a live connection and a message each.
        for i in 0..table_size {
            // One IP creates at most 10 sessions a minute (EUROCHAT_SESSIONS_PER_MINUTE).
            b.chat.advance(Duration::from_secs(7));
            let other = b.chat.visitor().await;
            assert_eq!(b.chat.connect(&format!("N{i}="), &other.token).await, 200);
            b.chat
                .send(
                    &format!("N{i}="),
                    json!({"action": "sendMessage", "clientMsgId": "n", "text": "noise"}),
                )
                .await;
        }
        b.chat.advance(Duration::from_secs(120));
        b
    }

    /// Runs `what` and records what it cost as `path`.
    async fn measure<F: std::future::Future<Output = ()>>(&self, path: &'static str, what: F) {
        let before = self.table.snapshot().await;
        self.log.take_calls();
        what.await;
        let calls = self.log.take_calls();
        let after = self.table.snapshot().await;
        let cost = self
            .table
            .write_cost(&before, &after, &capacity::transactional_keys(&calls));
        let fan_out: Vec<Call> = calls
            .iter()
            .filter(|c| c.op == "Query")
            .filter(|c| {
                let sk = c.request["ExpressionAttributeValues"][":s"]["S"]
                    .as_str()
                    .unwrap_or_default();
                sk == "CONN#" || sk == "AGENTCONN#"
            })
            .cloned()
            .collect();
        self.results.lock().expect("results").push(Measured {
            path,
            table_size: self.table_size,
            requests: calls.iter().map(|c| c.op.clone()).collect(),
            round_trips: capacity::round_trips(&calls),
            read_units: capacity::read_units(&calls),
            fan_out_read_units: capacity::read_units(&fan_out),
            table_write_units: cost.table_units,
            index_write_units: cost.index_units,
            items_written: cost.items,
            write_requests: capacity::write_requests(&calls),
        });
    }
}

/// Modelled DynamoDB latency of one round trip (issue 14: 10 ms per batch).
const MODEL_ROUND_TRIP_MS: f64 = 10.0;

fn report_only() -> bool {
    std::env::var_os("EUROCHAT_CAPACITY_REPORT_ONLY").is_some()
}

fn print(results: &[Measured]) {
    eprintln!(
        "\n{:<26} {:>6} {:>5} {:>4} {:>7} {:>7} {:>7} {:>7}  requests",
        "path", "table", "reqs", "RTs", "RCU", "fanRCU", "WRU", "idxWRU"
    );
    for m in results {
        // A long list (an erasure's batches) is shown as counts per operation.
        let requests = match m.requests.len() {
            0..=12 => m.requests.join(","),
            _ => {
                let mut counts = std::collections::BTreeMap::<&str, usize>::new();
                for r in &m.requests {
                    *counts.entry(r.as_str()).or_default() += 1;
                }
                counts
                    .iter()
                    .map(|(op, n)| format!("{n}x{op}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        };
        eprintln!(
            "{:<26} {:>6} {:>5} {:>4} {:>7.1} {:>7.1} {:>7.1} {:>7.1}  {}",
            m.path,
            m.table_size,
            m.requests.len(),
            m.round_trips,
            m.read_units,
            m.fan_out_read_units + 0.0,
            m.write_units(),
            m.index_write_units,
            requests
        );
    }
}

fn save(name: &str, results: &[Measured]) {
    if let Some(dir) = std::env::var_os("EUROCHAT_CAPACITY_JSON") {
        let path = std::path::Path::new(&dir).join(format!("{name}.json"));
        std::fs::create_dir_all(&dir).expect("capacity output directory");
        std::fs::write(&path, serde_json::to_vec_pretty(results).expect("JSON")).expect("write capacity JSON");
    }
}

async fn chat_paths(table_size: usize) -> Vec<Measured> {
    let b = Bench::new(table_size).await;
    let v = std::sync::OnceLock::new();
    b.measure("create session (visitor)", async {
        let _ = v.set(b.chat.visitor().await);
    })
    .await;
    let v = v.into_inner().expect("a visitor");
    let agent = b.chat.agent_token("acme", "alice", AgentRole::Admin);
    b.measure("connect (visitor)", async {
        assert_eq!(b.chat.connect("V1=", &v.token).await, 200);
    })
    .await;
    b.measure("connect (agent)", async {
        assert_eq!(b.chat.connect_from("A1=", &agent, ORIGIN).await, 200);
    })
    .await;
    let text = "Hello, I have a question about my order from last week.";
    b.measure("send (visitor)", async {
        b.chat
            .send(
                "V1=",
                json!({"action": "sendMessage", "clientMsgId": "c-1", "text": text}),
            )
            .await;
    })
    .await;
    b.measure("send (visitor, 2nd)", async {
        b.chat
            .send(
                "V1=",
                json!({"action": "sendMessage", "clientMsgId": "c-2", "text": text}),
            )
            .await;
    })
    .await;
    b.measure("send (agent)", async {
        b.chat
            .send(
                "A1=",
                json!({"action": "sendMessage", "sessionId": v.session_id, "clientMsgId": "a-1", "text": text}),
            )
            .await;
    })
    .await;
    b.measure("send retried (visitor)", async {
        b.chat
            .send(
                "V1=",
                json!({"action": "sendMessage", "clientMsgId": "c-2", "text": text}),
            )
            .await;
    })
    .await;
    b.measure("history (visitor)", async {
        b.chat.send("V1=", json!({"action": "history"})).await;
    })
    .await;
    b.measure("listConversations (agent)", async {
        b.chat.send("A1=", json!({"action": "listConversations"})).await;
    })
    .await;
    b.measure("export (visitor)", async {
        let r = b.chat.export(Some(&v.token), &json!({}), 4 * 1024 * 1024).await;
        assert_eq!(r.status, 200);
    })
    .await;
    // At least once: the retry is delivered again, with the original sequence.
    let delivered: BTreeSet<u64> = b
        .chat
        .frames_of("A1=", "message")
        .into_iter()
        .filter(|f| f["message"]["sessionId"] == v.session_id.as_str())
        .filter_map(|f| f["message"]["seq"].as_u64())
        .collect();
    assert_eq!(
        delivered,
        BTreeSet::from([1, 2]),
        "the agent received both visitor messages"
    );
    b.results.into_inner().expect("results")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_paths_cost_the_same_at_every_table_size() {
    let mut all = Vec::new();
    for size in [0, 20, 80] {
        all.extend(chat_paths(size).await);
    }
    print(&all);
    save("chat", &all);
    if report_only() {
        return;
    }
    for m in &all {
        if m.path.starts_with("send (") {
            assert_eq!(m.round_trips, 3, "three sequential round trips per message: {m:?}");
            assert!(m.fan_out_read_units <= 1.0, "at most 1 RCU of fan-out reads: {m:?}");
            assert!(
                m.write_units() <= 6.0,
                "at most 6 WRU per message, indexes included: {m:?}"
            );
        }
    }
    // Flat: the same cost whatever else the table holds.
    for path in [
        "send (visitor, 2nd)",
        "send (agent)",
        "history (visitor)",
        "connect (visitor)",
    ] {
        let costs: BTreeSet<String> = all
            .iter()
            .filter(|m| m.path == path)
            .map(|m| format!("{:?} {} {}", m.requests, m.read_units, m.write_units()))
            .collect();
        assert_eq!(costs.len(), 1, "{path} costs the same at every table size: {costs:?}");
    }
}

/// The gdpr-delete function's timeout in template.yaml, seconds.
const ERASE_TIMEOUT_SECS: f64 = 29.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_ten_thousand_messages_takes_at_most_420_writes() {
    use aws_sdk_dynamodb::types::AttributeValue;
    const MESSAGES: u64 = 10_000;
    let b = Bench::new(0).await;
    let v = b.chat.visitor().await;
    assert_eq!(b.chat.connect("V1=", &v.token).await, 200);
    b.chat
        .send(
            "V1=",
            json!({"action": "sendMessage", "clientMsgId": "m-1", "text": "hello"}),
        )
        .await;
    // The rest as the append writes them: copies of every item the first send
    // wrote into the partition (the message, and whatever else this version
    // writes per message), renumbered.
    let pk = format!("SESS#{}", v.session_id);
    let written: Vec<_> = b
        .table
        .snapshot()
        .await
        .into_iter()
        .filter(|((p, sk), _)| *p == pk && sk != "META" && !sk.starts_with("CONN#"))
        .map(|(_, item)| item)
        .collect();
    assert!(!written.is_empty(), "the first message is stored");
    let renumber = |item: &std::collections::HashMap<String, AttributeValue>, seq: u64| {
        let mut copy = item.clone();
        for (name, value) in copy.iter_mut() {
            match value {
                AttributeValue::S(text) if name == "sk" && text.starts_with("MSG#") => {
                    *text = format!("MSG#{seq:020}");
                }
                AttributeValue::S(text) if text == "m-1" => *text = format!("m-{seq}"),
                AttributeValue::S(text) if text.ends_with("#m-1") => {
                    *text = format!("{}#m-{seq}", &text[..text.len() - 4]);
                }
                AttributeValue::N(n) if name == "seq" => *n = seq.to_string(),
                _ => {}
            }
        }
        copy
    };
    let items: Vec<_> = (2..=MESSAGES)
        .flat_map(|seq| written.iter().map(move |item| renumber(item, seq)).collect::<Vec<_>>())
        .collect();
    b.table.put_all(items).await;
    b.measure("erase (10,000 messages)", async {
        let r = b.chat.erase(Some(&v.token), &json!({})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    })
    .await;
    let left: Vec<_> = b.table.snapshot().await.into_keys().filter(|(p, _)| *p == pk).collect();
    assert!(
        left.is_empty(),
        "nothing of the conversation is left: {} items",
        left.len()
    );
    let results = b.results.into_inner().expect("results");
    let m = &results[0];
    let modelled = m.round_trips as f64 * MODEL_ROUND_TRIP_MS / 1000.0;
    print(&results);
    eprintln!(
        "erase: {} write requests, {} sequential round trips: {modelled:.2} s at {MODEL_ROUND_TRIP_MS} ms each \
         (timeout {ERASE_TIMEOUT_SECS} s)",
        m.write_requests, m.round_trips
    );
    save("erase", &results);
    if report_only() {
        return;
    }
    assert!(m.write_requests <= 420, "at most 420 write requests: {m:?}");
    assert!(
        modelled <= ERASE_TIMEOUT_SECS / 4.0,
        "well inside the timeout at {MODEL_ROUND_TRIP_MS} ms per round trip: {modelled} s"
    );
}
