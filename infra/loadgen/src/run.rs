//! One load run: create the sessions, open the connections, send on an
//! open-loop schedule, check every answer, and measure.
//!
//! **Schedule.** Message `k` (0, 1, 2, … over the whole run) is due at
//! `start + k / rate` and is sent by visitor connection `k mod V` as that
//! connection's message `n = k div V`. Each connection sends its own messages at
//! their due times whatever happened to earlier ones (open loop), and ack
//! latency is measured from the **due** time, so a stalled gateway (or a
//! generator that falls behind) shows up as latency instead of silently
//! lowering the rate (no coordinated omission). Send timers are set one tick
//! (1 ms) early, so a message may leave up to 1 ms before its due time; its
//! latency is then measured from the actual send. The latency from the actual
//! send and the generator's own lag (send − due, 0 when early) are reported
//! beside it.
//!
//! **Windows.** Messages due in the first `warmup` are sent and checked but not
//! measured; the measured window is the next `duration`. CPU is read at the
//! window's edges. After the last due time the run waits until every ack and
//! every expected delivery has arrived, at most `grace`, then closes.
//!
//! **Who hears what.** Visitor `v` belongs to conversation `v mod C` (with fewer
//! conversations than visitors, a conversation has several connections, like
//! browser tabs sharing one session); its messages go to the other connections
//! of its conversation and to every agent connection (the site's fan-out).
//! Agents only listen.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::accounting::{self, AckOutcome, Expects, ReceiverLedger, SenderLedger};
use crate::cpu;
use crate::report::{Percentiles, Report};
use crate::wire::{self, Socket};

/// Where the gateway is.
#[derive(Debug, Clone)]
pub struct Target {
    /// The HTTP address (`POST /v1/sessions`).
    pub http: SocketAddr,
    /// The WebSocket URL (`ws://host:port/stage`).
    pub ws_url: String,
    /// The `Origin` every request carries (one of the site's origins).
    pub origin: String,
    /// The site.
    pub site: String,
    /// An agent token of the site (needed for agent connections).
    pub agent_token: Option<String>,
    /// Spread connections over source addresses in 127.0.0.0/8 (the gateway is on loopback).
    pub spread_sources: bool,
    /// The gateway's process, for its CPU time.
    pub gateway_pid: Option<u32>,
}

impl Target {
    /// A target from the gateway's base URL (`http://127.0.0.1:8080`) and stage.
    pub fn from_base_url(base: &str, stage: &str, site: &str) -> Result<Self, String> {
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url must be http://host:port, not {base}"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let http = std::net::ToSocketAddrs::to_socket_addrs(authority)
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority} resolves to nothing"))?;
        Ok(Self {
            http,
            ws_url: format!("ws://{authority}/{stage}"),
            origin: format!("http://{authority}"),
            site: site.to_owned(),
            agent_token: None,
            spread_sources: http.ip().is_loopback() && http.is_ipv4(),
            gateway_pid: None,
        })
    }
}

/// What to do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// WebSocket connections in all: visitors plus agents.
    pub connections: usize,
    /// Agent connections (they listen to the site's fan-out).
    pub agents: usize,
    /// Visitor conversations (sessions); `None`: one per visitor connection.
    pub conversations: Option<usize>,
    /// Messages per second, all visitors together.
    pub rate: f64,
    /// Sent and checked, not measured.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
    /// The longest wait for answers after the last due time.
    pub grace: Duration,
    /// At most this many sessions, and this many connections, per source address.
    pub per_ip: usize,
    /// Bytes of each message's text.
    pub text_bytes: usize,
    /// Sessions and handshakes in flight at once during set-up.
    pub setup_concurrency: usize,
    /// No progress lines on stderr.
    pub quiet: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            connections: 100,
            agents: 0,
            conversations: None,
            rate: 1000.0,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            grace: Duration::from_secs(5),
            per_ip: 8,
            text_bytes: 64,
            setup_concurrency: 32,
            quiet: false,
        }
    }
}

impl Plan {
    /// Visitor connections.
    pub fn visitors(&self) -> usize {
        self.connections.saturating_sub(self.agents)
    }

    /// Conversations.
    pub fn conversation_count(&self) -> usize {
        self.conversations.unwrap_or(self.visitors())
    }

    /// Refuses what cannot run.
    pub fn validate(&self) -> Result<(), String> {
        let v = self.visitors();
        if v == 0 {
            return Err("no visitor connection: --connections must exceed --agents".into());
        }
        let c = self.conversation_count();
        if c == 0 || c > v {
            return Err(format!("--conversations must be 1 to {v} (the visitor connections)"));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err("--rate must be positive".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if self.per_ip == 0 {
            return Err("--per-ip must be at least 1".into());
        }
        if self.text_bytes < 24 || self.text_bytes > 4096 {
            return Err("--text-bytes must be 24 to 4096".into());
        }
        if v > u32::MAX as usize {
            return Err("too many connections".into());
        }
        Ok(())
    }

    /// Messages per minute each session sends (the per-session limit applies to this).
    pub fn per_session_per_minute(&self) -> f64 {
        self.rate / self.conversation_count() as f64 * 60.0
    }

    fn total_secs(&self) -> f64 {
        (self.warmup + self.duration).as_secs_f64()
    }

    /// Messages in the whole run: every `k` due before `warmup + duration`.
    pub fn total_messages(&self) -> u64 {
        count_below(self.rate * self.total_secs())
    }

    /// Messages due in the measured window.
    pub fn measured_messages(&self) -> u64 {
        self.total_messages() - count_below(self.rate * self.warmup.as_secs_f64())
    }

    /// How many messages visitor `v` sends.
    fn messages_of(&self, v: usize) -> u64 {
        let total = self.total_messages();
        let vs = self.visitors() as u64;
        let v = v as u64;
        if v >= total { 0 } else { (total - v).div_ceil(vs) }
    }

    /// The largest `n` any visitor sends (bounds what a delivery may name).
    fn max_n(&self) -> u64 {
        self.messages_of(0)
    }

    /// Deliveries each message of visitor `v` makes: the other tabs of its conversation and every agent.
    fn fan_out_of(&self, v: usize) -> usize {
        self.tabs_of(v % self.conversation_count()) - 1 + self.agents
    }

    /// Visitor connections in conversation `c`.
    fn tabs_of(&self, c: usize) -> usize {
        let (v, cs) = (self.visitors(), self.conversation_count());
        v / cs + usize::from(c < v % cs)
    }
}

/// How many integers `k >= 0` are below `x`.
fn count_below(x: f64) -> u64 {
    if x <= 0.0 { 0 } else { x.ceil() as u64 }
}

/// Why a run could not be made.
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

fn source_base() -> Ipv4Addr {
    // A different 127.X.0.0/16 each run, so back-to-back runs against one long-lived
    // gateway do not meet the previous run's per-IP windows.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
    Ipv4Addr::new(127, 1 + (nanos % 250) as u8, 0, 1)
}

struct Shared {
    start: Instant,
    rate: f64,
    visitors: u64,
    warmup_secs: f64,
    end_secs: f64,
    window_start: Instant,
    window_end: Instant,
    max_n: u64,
    outstanding_acks: AtomicI64,
    outstanding_deliveries: AtomicI64,
}

impl Shared {
    fn due_secs(&self, v: u32, n: u64) -> f64 {
        (u64::from(v) + n * self.visitors) as f64 / self.rate
    }

    fn due(&self, v: u32, n: u64) -> Instant {
        self.start + Duration::from_secs_f64(self.due_secs(v, n))
    }

    fn measured(&self, v: u32, n: u64) -> bool {
        let s = self.due_secs(v, n);
        s >= self.warmup_secs && s < self.end_secs
    }
}

enum Role {
    Visitor {
        v: u32,
        messages: u64,
        /// Deliveries each of its messages must make (other tabs and agents).
        fan_out: i64,
    },
    Agent,
}

/// What one connection saw.
#[derive(Default)]
struct ConnOutcome {
    sender: Option<(u32, SenderLedger)>,
    receiver: ReceiverLedger,
    latency_due: Vec<u32>,
    latency_sent: Vec<u32>,
    send_lag: Vec<u32>,
    sent_in_window: u64,
    acked_in_window: u64,
    errors: BTreeMap<String, u64>,
    other_frames: u64,
    failure: Option<String>,
}

/// How early a send timer is set: tokio's timer rounds a deadline up to its next
/// millisecond tick, so a timer set for the due time fires 0-1 ms late. Set 1 ms
/// early, it fires within a tick of the due time; a message sent before its due
/// time has its latency measured from the send instead.
const TIMER_SLACK: Duration = Duration::from_millis(1);

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn text_of(v: u32, n: u64, bytes: usize) -> String {
    let mut t = format!("loadgen v{v} n{n} ");
    while t.len() < bytes {
        t.push('x');
    }
    t.truncate(bytes);
    t
}

async fn drive(
    mut ws: Socket,
    role: Role,
    receiver: ReceiverLedger,
    text_bytes: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> ConnOutcome {
    let mut out = ConnOutcome {
        receiver,
        ..ConnOutcome::default()
    };
    let mut ledger = SenderLedger::default();
    let mut sent_at: Vec<Instant> = Vec::new();
    let (me, messages, fan_out) = match role {
        Role::Visitor { v, messages, fan_out } => (Some(v), messages, fan_out),
        Role::Agent => (None, 0, 0),
    };
    let first_due = me.map_or(shared.start, |v| shared.due(v, 0));
    let sleep = tokio::time::sleep_until(first_due - TIMER_SLACK);
    tokio::pin!(sleep);
    loop {
        let sending = ledger.sent() < messages;
        tokio::select! {
            _ = stop.changed() => break,
            next = ws.next() => {
                let now = Instant::now();
                match next {
                    Some(Ok(Message::Text(t))) => on_frame(&mut out, &mut ledger, &sent_at, me, fan_out, &shared, t.as_str(), now),
                    Some(Ok(Message::Close(f))) => {
                        out.failure = Some(format!("closed by the gateway: {f:?}"));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        out.failure = Some(format!("socket error: {e}"));
                        break;
                    }
                    None => {
                        out.failure = Some("connection dropped".into());
                        break;
                    }
                }
            }
            _ = &mut sleep, if sending => {
                let v = me.unwrap_or_default();
                let n = ledger.on_send();
                let id = accounting::message_id(v, n);
                let frame = format!(
                    r#"{{"action":"sendMessage","ref":"{id}","clientMsgId":"{id}","text":"{}"}}"#,
                    text_of(v, n, text_bytes)
                );
                let now = Instant::now();
                sent_at.push(now);
                if shared.measured(v, n) {
                    out.sent_in_window += 1;
                    out.send_lag.push(micros(now.saturating_duration_since(shared.due(v, n))));
                }
                if let Err(e) = ws.send(Message::Text(frame.into())).await {
                    out.failure = Some(format!("send failed: {e}"));
                    break;
                }
                if ledger.sent() < messages {
                    sleep.as_mut().reset(shared.due(v, ledger.sent()) - TIMER_SLACK);
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    out.sender = me.map(|v| (v, ledger));
    out
}

#[allow(clippy::too_many_arguments)] // one connection's state, passed apart to keep borrows simple
fn on_frame(
    out: &mut ConnOutcome,
    ledger: &mut SenderLedger,
    sent_at: &[Instant],
    me: Option<u32>,
    fan_out: i64,
    shared: &Shared,
    text: &str,
    now: Instant,
) {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        out.other_frames += 1;
        return;
    };
    let ours = |id: Option<&str>| id.and_then(accounting::parse_message_id);
    match frame.get("type").and_then(Value::as_str) {
        Some("ack") => {
            let Some(v) = me else {
                out.receiver.unexpected += 1;
                return;
            };
            let Some((sv, n)) = ours(frame.get("ref").and_then(Value::as_str)).filter(|(sv, _)| *sv == v) else {
                ledger.unexpected += 1;
                return;
            };
            let seq = frame.get("seq").and_then(Value::as_u64);
            let dup = frame.get("duplicate").and_then(Value::as_bool).unwrap_or(false);
            if let AckOutcome::New(_) = ledger.on_ack(n, seq, dup) {
                shared.outstanding_acks.fetch_sub(1, Ordering::Relaxed);
                if now >= shared.window_start && now < shared.window_end {
                    out.acked_in_window += 1;
                }
                if shared.measured(sv, n) {
                    let due = shared.due(sv, n);
                    let sent = sent_at.get(n as usize).copied().unwrap_or(due);
                    // From the due time, or from the send if the timer's slack sent it early.
                    out.latency_due
                        .push(micros(now.saturating_duration_since(due.max(sent))));
                    out.latency_sent.push(micros(now.saturating_duration_since(sent)));
                }
            }
        }
        Some("error") => {
            let code = frame.get("code").and_then(Value::as_str).unwrap_or("?").to_owned();
            *out.errors.entry(code).or_default() += 1;
            let answered = me.zip(ours(frame.get("ref").and_then(Value::as_str)));
            match answered {
                Some((v, (sv, n))) if sv == v => {
                    if ledger.on_error(n) {
                        shared.outstanding_acks.fetch_sub(1, Ordering::Relaxed);
                        shared.outstanding_deliveries.fetch_sub(fan_out, Ordering::Relaxed);
                    }
                }
                _ => ledger.unexpected += 1,
            }
        }
        Some("message") => {
            let id = frame
                .get("message")
                .and_then(|m| m.get("clientMsgId"))
                .and_then(Value::as_str);
            match ours(id) {
                Some((sv, _)) if Some(sv) == me => out.receiver.misrouted += 1,
                Some((sv, n)) => {
                    if out.receiver.on_message(sv, n, shared.max_n) {
                        shared.outstanding_deliveries.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                None => out.receiver.unexpected += 1,
            }
        }
        _ => out.other_frames += 1,
    }
}

fn progress(plan: &Plan, line: &str) {
    if !plan.quiet {
        eprintln!("loadgen: {line}");
    }
}

struct Snapshot {
    at: Instant,
    gateway: Option<Duration>,
    own: Option<Duration>,
    machine: Option<cpu::Machine>,
}

impl Snapshot {
    fn take(gateway_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            gateway: gateway_pid.and_then(cpu::process),
            own: cpu::own(),
            machine: cpu::Machine::now(),
        }
    }
}

fn delta(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    Some(b?.saturating_sub(a?))
}

/// Makes the run described by `plan` against `target`.
pub async fn run(target: &Target, plan: &Plan) -> Result<Report, RunError> {
    plan.validate().map_err(RunError)?;
    if plan.agents > 0 && target.agent_token.is_none() {
        return Err(RunError("agent connections need an agent token (--agent-token)".into()));
    }
    let visitors = plan.visitors();
    let conversations = plan.conversation_count();
    let base = source_base();
    let source = |i: usize| {
        target
            .spread_sources
            .then(|| wire::loopback_source(base, i / plan.per_ip))
    };
    let setup_started = Instant::now();
    let loadavg_before = cpu::loadavg();

    // Sessions: one per conversation.
    progress(plan, &format!("creating {conversations} sessions"));
    let tokens: Vec<String> = futures::stream::iter((0..conversations).map(|c| {
        let from = source(c);
        async move {
            wire::create_session(target.http, from, &target.origin, &target.site)
                .await
                .map_err(|e| RunError(format!("session {c} (from {from:?}): {e}")))
        }
    }))
    .buffered(plan.setup_concurrency)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()?;

    // Connections: agents first (they must hear the first message), then visitors.
    progress(
        plan,
        &format!("opening {} agent and {visitors} visitor connections", plan.agents),
    );
    let connect = |i: usize, token: String| {
        let from = source(i);
        async move {
            wire::connect(target.http, from, &target.ws_url, &target.origin, &token)
                .await
                .map_err(|e| RunError(format!("connection {i} (from {from:?}): {e}")))
        }
    };
    let agent_token = target.agent_token.clone().unwrap_or_default();
    let agent_sockets: Vec<Socket> =
        futures::stream::iter((0..plan.agents).map(|a| connect(visitors + a, agent_token.clone())))
            .buffered(plan.setup_concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
    let visitor_sockets: Vec<Socket> =
        futures::stream::iter((0..visitors).map(|v| connect(v, tokens[v % conversations].clone())))
            .buffered(plan.setup_concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
    let setup = setup_started.elapsed();
    progress(
        plan,
        &format!(
            "set up in {:.1} s; sending {} messages at {} msg/s ({:.1} s warm-up, {:.1} s measured)",
            setup.as_secs_f64(),
            plan.total_messages(),
            plan.rate,
            plan.warmup.as_secs_f64(),
            plan.duration.as_secs_f64()
        ),
    );

    let start = Instant::now() + Duration::from_millis(200);
    let shared = Arc::new(Shared {
        start,
        rate: plan.rate,
        visitors: visitors as u64,
        warmup_secs: plan.warmup.as_secs_f64(),
        end_secs: plan.total_secs(),
        window_start: start + plan.warmup,
        window_end: start + plan.warmup + plan.duration,
        max_n: plan.max_n(),
        // Everything planned is outstanding from the start, so the run cannot look finished
        // while a message is still to be sent.
        outstanding_acks: AtomicI64::new(plan.total_messages() as i64),
        outstanding_deliveries: AtomicI64::new(
            (0..visitors)
                .map(|v| plan.messages_of(v) as i64 * plan.fan_out_of(v) as i64)
                .sum(),
        ),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(plan.connections);
    for ws in agent_sockets {
        tasks.push(tokio::spawn(drive(
            ws,
            Role::Agent,
            ReceiverLedger::new(Expects::All),
            plan.text_bytes,
            Arc::clone(&shared),
            stop_rx.clone(),
        )));
    }
    for (v, ws) in visitor_sockets.into_iter().enumerate() {
        let c = v % conversations;
        let others: Vec<u32> = (c..visitors)
            .step_by(conversations)
            .filter(|&o| o != v)
            .map(|o| o as u32)
            .collect();
        let fan_out = plan.fan_out_of(v) as i64;
        let expects = if others.is_empty() {
            Expects::None
        } else {
            Expects::Senders(others)
        };
        tasks.push(tokio::spawn(drive(
            ws,
            Role::Visitor {
                v: v as u32,
                messages: plan.messages_of(v),
                fan_out,
            },
            ReceiverLedger::new(expects),
            plan.text_bytes,
            Arc::clone(&shared),
            stop_rx.clone(),
        )));
    }

    tokio::time::sleep_until(shared.window_start).await;
    let before = Snapshot::take(target.gateway_pid);
    tokio::time::sleep_until(shared.window_end).await;
    let after = Snapshot::take(target.gateway_pid);
    let loadavg_after = cpu::loadavg();
    // Wait for the stragglers: every ack and every expected delivery, within the grace.
    let deadline = shared.window_end + plan.grace;
    loop {
        let done = shared.outstanding_acks.load(Ordering::Relaxed) <= 0
            && shared.outstanding_deliveries.load(Ordering::Relaxed) <= 0;
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = shared.window_end.elapsed();
    let _ = stop_tx.send(true);
    let mut senders: Vec<SenderLedger> = vec![SenderLedger::default(); visitors];
    let mut receivers = Vec::with_capacity(plan.connections);
    let (mut lat_due, mut lat_sent, mut lag) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sent_in_window, mut acked_in_window, mut other_frames) = (0, 0, 0);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for t in tasks {
        let o = t
            .await
            .map_err(|e| RunError(format!("a connection task failed: {e}")))?;
        if let Some((v, l)) = o.sender {
            senders[v as usize] = l;
        }
        receivers.push(o.receiver);
        lat_due.extend(o.latency_due);
        lat_sent.extend(o.latency_sent);
        lag.extend(o.send_lag);
        sent_in_window += o.sent_in_window;
        acked_in_window += o.acked_in_window;
        other_frames += o.other_frames;
        for (k, n) in o.errors {
            *errors.entry(k).or_default() += n;
        }
        failures.extend(o.failure);
    }
    let tally = accounting::tally(&senders, &receivers);
    let window = after.at.saturating_duration_since(before.at);
    let machine = before.machine.zip(after.machine).map(|(b, a)| cpu::Machine {
        busy: a.busy.saturating_sub(b.busy),
        total: a.total.saturating_sub(b.total),
    });
    Ok(Report {
        connections: plan.connections,
        visitors,
        agents: plan.agents,
        conversations,
        rate: plan.rate,
        warmup: plan.warmup,
        duration: plan.duration,
        planned_messages: plan.total_messages(),
        planned_in_window: plan.measured_messages(),
        tally,
        setup,
        window,
        drain,
        sent_in_window,
        acked_in_window,
        latency_due: Percentiles::of(lat_due),
        latency_sent: Percentiles::of(lat_sent),
        send_lag: Percentiles::of(lag),
        errors,
        failures,
        other_frames,
        gateway_cpu: delta(before.gateway, after.gateway),
        own_cpu: delta(before.own, after.own),
        gateway_is_self: target.gateway_pid == Some(std::process::id()),
        machine,
        cores: cpu::cores(),
        loadavg_before,
        loadavg_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rate: f64, warmup_ms: u64, secs: u64, visitors: usize) -> Plan {
        Plan {
            connections: visitors,
            rate,
            warmup: Duration::from_millis(warmup_ms),
            duration: Duration::from_secs(secs),
            ..Plan::default()
        }
    }

    #[test]
    fn the_schedule_covers_rate_times_time_and_splits_it_over_visitors() {
        let p = plan(200.0, 500, 2, 18);
        assert_eq!(p.total_messages(), 500);
        assert_eq!(p.measured_messages(), 400);
        let per: u64 = (0..18).map(|v| p.messages_of(v)).sum();
        assert_eq!(per, 500);
        // 500 = 27 * 18 + 14: the first 14 visitors send 28, the rest 27.
        assert_eq!((p.messages_of(0), p.messages_of(13), p.messages_of(14)), (28, 28, 27));
        let p = plan(3.0, 0, 1, 5);
        assert_eq!(p.total_messages(), 3);
        assert_eq!((p.messages_of(2), p.messages_of(3)), (1, 0));
    }

    #[test]
    fn tabs_and_conversations_add_up() {
        let p = Plan {
            connections: 20,
            agents: 2,
            conversations: Some(7),
            ..Plan::default()
        };
        assert_eq!(p.visitors(), 18);
        assert_eq!((0..7).map(|c| p.tabs_of(c)).sum::<usize>(), 18);
        assert_eq!((p.tabs_of(0), p.tabs_of(3), p.tabs_of(4)), (3, 3, 2));
        // Visitor 0 is in a 3-tab conversation: 2 other tabs and 2 agents; visitor 4 in a 2-tab one.
        assert_eq!((p.fan_out_of(0), p.fan_out_of(4)), (4, 3));
        let even = Plan {
            conversations: Some(9),
            ..p.clone()
        };
        let deliveries: u64 = (0..18).map(|v| even.messages_of(v) * even.fan_out_of(v) as u64).sum();
        assert_eq!(deliveries, even.total_messages() * 3);
        assert!(p.validate().is_ok());
        assert!(
            Plan {
                conversations: Some(19),
                ..p.clone()
            }
            .validate()
            .is_err()
        );
        assert!(Plan { agents: 20, ..p }.validate().is_err());
    }

    #[test]
    fn texts_have_the_asked_size_and_name_their_message() {
        let t = text_of(12, 345, 64);
        assert_eq!(t.len(), 64);
        assert!(t.starts_with("loadgen v12 n345 "));
    }

    #[test]
    fn base_urls_become_targets() {
        let t = Target::from_base_url("http://127.0.0.1:8080", "local", "demo").expect("target");
        assert_eq!(t.ws_url, "ws://127.0.0.1:8080/local");
        assert_eq!(t.origin, "http://127.0.0.1:8080");
        assert!(t.spread_sources);
        assert!(Target::from_base_url("https://example.org", "local", "demo").is_err());
    }
}
