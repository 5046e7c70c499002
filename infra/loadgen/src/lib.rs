//! An open-loop load generator for eurochat's local gateway.
//!
//! `cargo run --release -p loadgen -- --spawn --connections 1000 --rate 5000`
//! (see `README.md`): creates visitor sessions (`POST /v1/sessions`), opens
//! visitor and agent WebSockets, sends `sendMessage` frames on a fixed schedule
//! ([`run`]), checks every `ack` and every fan-out `message` for loss,
//! duplicates and order ([`accounting`]), and reports throughput, ack latency
//! from the due time, and the CPU time of the gateway and of itself ([`cpu`],
//! [`report`]).

pub mod accounting;
pub mod cpu;
pub mod report;
pub mod run;
pub mod wire;

pub use report::Report;
pub use run::{Plan, RunError, Target, run};

/// The `EUROCHAT_*` limits a load run needs raised, with the values `--spawn`
/// sets: the per-session message limit at its documented maximum (a session
/// sends `rate / conversations * 60` a minute), and the per-IP `$connect` and
/// session-creation windows at theirs (connections are also spread over
/// loopback source addresses, `--per-ip` each).
pub const LOAD_LIMITS: [(&str, &str); 3] = [
    ("EUROCHAT_MESSAGES_PER_MINUTE", "10000"),
    ("EUROCHAT_CONNECTS_PER_MINUTE", "100"),
    ("EUROCHAT_SESSIONS_PER_MINUTE", "100"),
];

/// The documented ceiling of `EUROCHAT_MESSAGES_PER_MINUTE`.
pub const MAX_MESSAGES_PER_MINUTE: f64 = 10_000.0;
