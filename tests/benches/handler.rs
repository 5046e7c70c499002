//! Handler benchmark (issue 14): CPU time per frame of the `message` function's
//! handler for `sendMessage` (with its fan-out) and `history`, on the in-memory
//! store and a recording gateway, so what is measured is eurochat's own work:
//! parsing the event and the frame, the checks, the store logic, building and
//! serializing every answer and fan-out frame. DynamoDB and API Gateway latency
//! is the capacity benchmark's business (`tests/tests/capacity.rs`).
//!
//! `make bench-handler` (= `cargo bench -p eurochat-tests --bench handler`).
//! Process CPU time (user + system, getrusage) over many frames, after a
//! warm-up; one line per case.

use std::time::Duration;

use chat_core::domain::AgentRole;
use chat_core::storage::MemoryStore;
use eurochat_tests::backends::Memory;
use eurochat_tests::chat::{Chat, ORIGIN};
use serde_json::json;

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc_rusage::Rusage = unsafe { std::mem::zeroed() };
    unsafe { libc_rusage::getrusage(0, &mut usage) };
    let tv = |t: libc_rusage::Timeval| Duration::from_secs(t.sec as u64) + Duration::from_micros(t.usec as u64);
    tv(usage.utime) + tv(usage.stime)
}

/// `getrusage(2)` without a libc dependency (Linux x86_64 / aarch64 layout).
mod libc_rusage {
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Timeval {
        pub sec: i64,
        pub usec: i64,
    }
    #[repr(C)]
    pub struct Rusage {
        pub utime: Timeval,
        pub stime: Timeval,
        pub rest: [i64; 14],
    }
    unsafe extern "C" {
        pub fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    }
}

async fn case(name: &str, recipients: usize, frames: usize) {
    let chat = Chat::new(Memory(MemoryStore::new())).await;
    let v = chat.visitor().await;
    assert_eq!(chat.connect("V1=", &v.token).await, 200);
    // Other recipients: the visitor's other tabs and agents online.
    for i in 0..recipients {
        // One IP may open 20 connections a minute.
        chat.advance(Duration::from_secs(4));
        match i % 2 {
            0 => assert_eq!(chat.connect(&format!("T{i}="), &v.token).await, 200),
            _ => {
                let t = chat.agent_token("acme", "alice", AgentRole::Admin);
                assert_eq!(chat.connect_from(&format!("A{i}="), &t, ORIGIN).await, 200);
            }
        }
    }
    let send = |n: usize| json!({"action": "sendMessage", "clientMsgId": format!("c-{n}"), "text": "Hello, is my order on its way?"});
    // The visitor's rate limit would refuse a burst: the clock moves 10 s per message.
    let mut sent = 0;
    let mut go = |count: usize| {
        let frames: Vec<_> = (0..count)
            .map(|_| {
                sent += 1;
                send(sent)
            })
            .collect();
        frames
    };
    let warm = go(frames / 10);
    for f in warm {
        chat.advance(Duration::from_secs(10));
        chat.send("V1=", f).await;
    }
    let measured = go(frames);
    let start = cpu_time();
    let wall = std::time::Instant::now();
    match name {
        "history" => {
            for _ in 0..frames {
                chat.send("V1=", json!({"action": "history", "limit": 50})).await;
            }
        }
        _ => {
            for f in measured {
                chat.advance(Duration::from_secs(10));
                chat.send("V1=", f).await;
            }
        }
    }
    let cpu = cpu_time() - start;
    let per = cpu.as_secs_f64() * 1e6 / frames as f64;
    println!(
        "{name:<28} recipients {recipients:>3}  {frames:>6} frames  CPU {per:>7.1} µs/frame  (wall {:.1} µs/frame)",
        wall.elapsed().as_secs_f64() * 1e6 / frames as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        case("sendMessage", 1, 5_000).await;
        case("sendMessage (fan-out)", 10, 5_000).await;
        case("sendMessage (fan-out)", 50, 2_000).await;
        case("history", 1, 5_000).await;
    });
}
