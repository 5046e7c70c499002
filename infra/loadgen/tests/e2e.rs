//! The generator against a real gateway (started in this process with
//! `local_gateway::start`): a small clean run must count every message exactly,
//! and a gateway that refuses most messages must fail the run.
//!
//! One test function on purpose: the gateway reads its limits from the process
//! environment, which is set here before any runtime thread exists.

use std::net::SocketAddr;
use std::time::Duration;

use chat_core::config::vars;
use loadgen::{LOAD_LIMITS, Plan, Report, Target};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn run_against_a_gateway(plan: &Plan) -> Report {
    let gateway = local_gateway::start(local_gateway::Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..local_gateway::Options::default()
    })
    .await
    .expect("a gateway");
    let mut target = Target::from_base_url(&gateway.base_url(), "local", &gateway.site).expect("target");
    target.agent_token = Some(gateway.agent_token.clone());
    target.gateway_pid = Some(std::process::id());
    let report = loadgen::run(&target, plan).await.expect("the run");
    gateway.stop().await.expect("the gateway stops");
    report
}

#[test]
fn the_generator_counts_every_message_and_fails_on_refusals() {
    for (k, v) in LOAD_LIMITS {
        // SAFETY: no other thread exists yet that reads the environment (this binary's
        // only test, before any runtime is built).
        unsafe { std::env::set_var(k, v) };
    }

    // 18 visitors in 9 conversations (two tabs each) and 2 agents: every message is
    // acked to its sender and delivered to the other tab and to both agents.
    let plan = Plan {
        connections: 20,
        agents: 2,
        conversations: Some(9),
        // Low enough for a debug-built gateway on a busy machine: what is checked is counting.
        rate: 100.0,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(2),
        grace: Duration::from_secs(5),
        per_ip: 50,
        quiet: true,
        ..Plan::default()
    };
    let report = runtime().block_on(run_against_a_gateway(&plan));
    let t = &report.tally;
    println!("{}", report.text());
    // Exactly the schedule: 100 msg/s for 2.5 s.
    assert_eq!(t.sent, 250, "{t:?}");
    assert_eq!(t.acked, t.sent, "{t:?}");
    assert_eq!((t.lost, t.duplicated, t.out_of_order, t.refused), (0, 0, 0, 0), "{t:?}");
    assert_eq!(t.deliveries_expected, 250 * 3, "{t:?}");
    assert_eq!(t.delivered, t.deliveries_expected, "{t:?}");
    assert_eq!(
        (
            t.deliveries_lost,
            t.deliveries_duplicated,
            t.deliveries_out_of_order,
            t.misrouted,
            t.unexpected
        ),
        (0, 0, 0, 0, 0),
        "{t:?}"
    );
    assert!(report.errors.is_empty() && report.failures.is_empty(), "{report:?}");
    assert!(report.clean());
    // The window's 200 messages were measured.
    assert_eq!(report.sent_in_window, 200);
    assert_eq!(report.latency_due.count, 200);
    assert!(report.latency_due.max > Duration::ZERO);
    assert!(report.acked_in_window > 0);
    assert!(report.own_cpu.is_some_and(|c| c > Duration::ZERO));

    // The same run against a gateway that lets each session send 3 messages a minute:
    // the refusals must fail it (and nothing may count as acknowledged twice).
    // SAFETY: the previous runtime and all its threads are gone.
    unsafe { std::env::set_var(vars::MESSAGES_PER_MINUTE, "3") };
    let plan = Plan {
        connections: 4,
        agents: 1,
        conversations: None,
        rate: 30.0,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(1),
        ..plan
    };
    let report = runtime().block_on(run_against_a_gateway(&plan));
    let t = &report.tally;
    assert_eq!(t.sent, 30, "{t:?}");
    // 3 per session and fixed one-minute window (6 if the run straddles a minute's end).
    assert!((9..=18).contains(&t.acked), "3 per session per minute: {t:?}");
    assert_eq!(t.refused, 30 - t.acked, "{t:?}");
    assert_eq!(t.lost, 0, "{t:?}");
    assert_eq!(
        report.errors.get("rate_limited"),
        Some(&t.refused),
        "{:?}",
        report.errors
    );
    assert_eq!(t.deliveries_expected, t.acked, "the agent gets the acked ones: {t:?}");
    assert_eq!(t.delivered, t.acked, "{t:?}");
    assert!(!report.clean());
}
