//! A run's numbers: as text for people, as JSON for machines.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::accounting::Tally;
use crate::cpu;

/// Latency percentiles, from samples in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest.
    pub max: Duration,
}

impl Percentiles {
    /// The percentiles of `micros` (nearest rank).
    pub fn of(mut micros: Vec<u32>) -> Self {
        if micros.is_empty() {
            return Self::default();
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
            Duration::from_micros(u64::from(micros[rank - 1]))
        };
        Self {
            count: micros.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }

    fn text(&self) -> String {
        format!(
            "p50 {} p90 {} p99 {} p99.9 {} max {}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.p999),
            ms(self.max)
        )
    }

    fn json(&self) -> Value {
        let f = |d: Duration| d.as_secs_f64() * 1000.0;
        json!({
            "count": self.count,
            "p50Ms": f(self.p50),
            "p90Ms": f(self.p90),
            "p99Ms": f(self.p99),
            "p999Ms": f(self.p999),
            "maxMs": f(self.max),
        })
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// WebSocket connections in all.
    pub connections: usize,
    /// Visitor connections (the senders).
    pub visitors: usize,
    /// Agent connections (listeners of the site's fan-out).
    pub agents: usize,
    /// Conversations.
    pub conversations: usize,
    /// Offered messages per second.
    pub rate: f64,
    /// Warm-up.
    pub warmup: Duration,
    /// Measured window, as planned.
    pub duration: Duration,
    /// Messages the schedule holds.
    pub planned_messages: u64,
    /// Messages due in the measured window.
    pub planned_in_window: u64,
    /// Loss, duplicates, order.
    pub tally: Tally,
    /// Sessions and connections set-up time.
    pub setup: Duration,
    /// The measured window as it happened (between the CPU readings).
    pub window: Duration,
    /// From the window's end until every answer was in (or the grace ran out).
    pub drain: Duration,
    /// Messages due in the window that were sent.
    pub sent_in_window: u64,
    /// Acks that arrived within the window.
    pub acked_in_window: u64,
    /// Ack latency from the due time (the open-loop figure).
    pub latency_due: Percentiles,
    /// Ack latency from the actual send.
    pub latency_sent: Percentiles,
    /// The generator's own lag: actual send minus due time.
    pub send_lag: Percentiles,
    /// `error` frames by code.
    pub errors: BTreeMap<String, u64>,
    /// Connections that ended before the run did, and why.
    pub failures: Vec<String>,
    /// Frames that were neither acks, errors nor messages.
    pub other_frames: u64,
    /// The gateway's CPU time in the window.
    pub gateway_cpu: Option<Duration>,
    /// The generator's CPU time in the window.
    pub own_cpu: Option<Duration>,
    /// The gateway runs inside the generator's process (tests): its CPU is the generator's.
    pub gateway_is_self: bool,
    /// The whole machine's CPU in the window.
    pub machine: Option<cpu::Machine>,
    /// CPUs.
    pub cores: usize,
    /// Load average before set-up.
    pub loadavg_before: String,
    /// Load average at the window's end.
    pub loadavg_after: String,
}

impl Report {
    /// Nothing lost, duplicated, reordered, refused or misrouted; every connection lasted.
    pub fn clean(&self) -> bool {
        self.tally.clean() && self.errors.is_empty() && self.failures.is_empty()
    }

    /// Acks per second within the window.
    pub fn achieved(&self) -> f64 {
        self.acked_in_window as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Messages due in the window that were sent, per second.
    pub fn sent_rate(&self) -> f64 {
        self.sent_in_window as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn per_message(&self, cpu: Option<Duration>) -> Option<f64> {
        let cpu = cpu?;
        (self.acked_in_window > 0).then(|| cpu.as_secs_f64() * 1000.0 / self.acked_in_window as f64)
    }

    /// Gateway CPU milliseconds per acknowledged message.
    pub fn gateway_ms_per_message(&self) -> Option<f64> {
        self.per_message(self.gateway_cpu)
    }

    /// Generator CPU milliseconds per acknowledged message.
    pub fn own_ms_per_message(&self) -> Option<f64> {
        self.per_message(self.own_cpu)
    }

    /// Cores' worth of CPU used by `cpu` over the window.
    fn cores_used(&self, cpu: Option<Duration>) -> Option<f64> {
        Some(cpu?.as_secs_f64() / self.window.as_secs_f64().max(1e-9))
    }

    /// Busy CPU on the machine not used by the gateway or the generator, in cores.
    pub fn others_cores(&self) -> Option<f64> {
        let busy = self.machine?.busy;
        let mine = if self.gateway_is_self {
            self.own_cpu?
        } else {
            self.own_cpu? + self.gateway_cpu?
        };
        self.cores_used(Some(busy.saturating_sub(mine)))
    }

    /// The human summary.
    pub fn text(&self) -> String {
        let t = &self.tally;
        let mut s = String::new();
        let verdict = if self.clean() { "PASS" } else { "FAIL" };
        s += &format!(
            "loadgen {verdict}: {} connections ({} visitors in {} conversations, {} agents), open loop {} msg/s, {:.1} s measured after {:.1} s warm-up\n",
            self.connections,
            self.visitors,
            self.conversations,
            self.agents,
            self.rate,
            self.duration.as_secs_f64(),
            self.warmup.as_secs_f64()
        );
        s += &format!(
            "  throughput      sent {:.0} msg/s, acked {:.0} msg/s (window {:.2} s; set-up {:.1} s; drained {:.2} s after the window)\n",
            self.sent_rate(),
            self.achieved(),
            self.window.as_secs_f64(),
            self.setup.as_secs_f64(),
            self.drain.as_secs_f64()
        );
        s += &format!(
            "  ack latency     {} (from due time, n={})\n",
            self.latency_due.text(),
            self.latency_due.count
        );
        s += &format!("  from send       {}\n", self.latency_sent.text());
        s += &format!("  generator lag   {} (send - due)\n", self.send_lag.text());
        s += &format!(
            "  messages        planned {} sent {} acked {} refused {} | lost {} duplicated {} out-of-order {}\n",
            self.planned_messages, t.sent, t.acked, t.refused, t.lost, t.duplicated, t.out_of_order
        );
        s += &format!(
            "  deliveries      expected {} received {} | lost {} duplicated {} out-of-order {} misrouted {}\n",
            t.deliveries_expected,
            t.delivered,
            t.deliveries_lost,
            t.deliveries_duplicated,
            t.deliveries_out_of_order,
            t.misrouted
        );
        s += &format!(
            "  totals          lost {} duplicated {} out-of-order {} unexpected {} other-frames {}\n",
            t.lost_total(),
            t.duplicated_total(),
            t.out_of_order_total(),
            t.unexpected,
            self.other_frames
        );
        if !self.errors.is_empty() {
            s += &format!("  error frames    {:?}\n", self.errors);
        }
        if !self.failures.is_empty() {
            s += &format!(
                "  connections lost early: {} (first: {})\n",
                self.failures.len(),
                self.failures[0]
            );
        }
        let cpu_line = |name: &str, cpu: Option<Duration>, per: Option<f64>| match cpu {
            Some(c) => format!(
                "  {name:<15} {:.2} s CPU = {:.2} cores, {} ms per message\n",
                c.as_secs_f64(),
                self.cores_used(Some(c)).unwrap_or_default(),
                per.map_or("?".into(), |p| format!("{p:.3}"))
            ),
            None => format!("  {name:<15} unknown (no pid)\n"),
        };
        if self.gateway_is_self {
            s += &cpu_line("gateway+gen cpu", self.own_cpu, self.own_ms_per_message());
        } else {
            s += &cpu_line("gateway cpu", self.gateway_cpu, self.gateway_ms_per_message());
            s += &cpu_line("loadgen cpu", self.own_cpu, self.own_ms_per_message());
        }
        s += &format!(
            "  machine         {} cores; other processes used {} cores in the window; loadavg {} before, {} after\n",
            self.cores,
            self.others_cores().map_or("?".into(), |c| format!("{c:.2}")),
            self.loadavg_before,
            self.loadavg_after
        );
        s
    }

    /// The machine summary.
    pub fn json(&self) -> Value {
        let t = &self.tally;
        let secs = |d: Duration| d.as_secs_f64();
        let opt_secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        json!({
            "pass": self.clean(),
            "connections": self.connections,
            "visitors": self.visitors,
            "agents": self.agents,
            "conversations": self.conversations,
            "rate": self.rate,
            "warmupSecs": secs(self.warmup),
            "durationSecs": secs(self.duration),
            "windowSecs": secs(self.window),
            "setupSecs": secs(self.setup),
            "drainSecs": secs(self.drain),
            "sentPerSec": self.sent_rate(),
            "achievedPerSec": self.achieved(),
            "latency": self.latency_due.json(),
            "latencyFromSend": self.latency_sent.json(),
            "sendLag": self.send_lag.json(),
            "messages": {
                "planned": self.planned_messages,
                "plannedInWindow": self.planned_in_window,
                "sent": t.sent,
                "acked": t.acked,
                "refused": t.refused,
                "lost": t.lost,
                "duplicated": t.duplicated,
                "outOfOrder": t.out_of_order,
            },
            "deliveries": {
                "expected": t.deliveries_expected,
                "received": t.delivered,
                "lost": t.deliveries_lost,
                "duplicated": t.deliveries_duplicated,
                "outOfOrder": t.deliveries_out_of_order,
                "misrouted": t.misrouted,
            },
            "lost": t.lost_total(),
            "duplicated": t.duplicated_total(),
            "outOfOrder": t.out_of_order_total(),
            "unexpected": t.unexpected,
            "otherFrames": self.other_frames,
            "errors": self.errors,
            "failures": self.failures.len(),
            "cpu": {
                "gatewaySecs": opt_secs(self.gateway_cpu),
                "loadgenSecs": opt_secs(self.own_cpu),
                "gatewayIsLoadgen": self.gateway_is_self,
                "gatewayMsPerMessage": self.gateway_ms_per_message(),
                "loadgenMsPerMessage": self.own_ms_per_message(),
                "otherProcessesCores": self.others_cores(),
                "cores": self.cores,
                "loadavgBefore": self.loadavg_before,
                "loadavgAfter": self.loadavg_after,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let p = Percentiles::of((1..=1000).collect());
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, Duration::from_micros(500));
        assert_eq!(p.p99, Duration::from_micros(990));
        assert_eq!(p.p999, Duration::from_micros(999));
        assert_eq!(p.max, Duration::from_micros(1000));
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
        assert_eq!(Percentiles::of(vec![7]).p99, Duration::from_micros(7));
    }
}
