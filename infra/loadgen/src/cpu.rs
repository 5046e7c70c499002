//! CPU time from `/proc`: a process's user + system time (all its threads,
//! exited ones included), and the whole machine's busy time, so a report can
//! say what else was running.

use std::time::Duration;

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

fn ticks(t: u64) -> Duration {
    Duration::from_nanos(t.saturating_mul(1_000_000_000) / ticks_per_second())
}

/// `utime + stime` from a `/proc/<pid>/stat` line.
pub fn parse_stat(line: &str) -> Option<Duration> {
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (field 3) … utime is field 14, stime 15 (1-based, man proc).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks(utime + stime))
}

/// CPU time used so far by process `pid` (user + system, all threads).
pub fn process(pid: u32) -> Option<Duration> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time used so far by this process.
pub fn own() -> Option<Duration> {
    process(std::process::id())
}

/// The machine's CPU time so far: (busy, total), summed over all cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct Machine {
    /// Time not idle nor waiting for I/O.
    pub busy: Duration,
    /// All time.
    pub total: Duration,
}

impl Machine {
    /// Reads `/proc/stat`.
    pub fn now() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        parse_proc_stat(text.lines().next()?)
    }
}

/// The `cpu` line of `/proc/stat`.
pub fn parse_proc_stat(line: &str) -> Option<Machine> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let v: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some(Machine {
        busy: ticks(total - idle),
        total: ticks(total),
    })
}

/// The number of CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `/proc/loadavg`'s three averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let hz = ticks_per_second();
        let line = format!(
            "42 (local gw) S 1 42 42 0 -1 4194560 100 0 0 0 {hz} {} 0 0 20 0 3 0 1 1 1",
            2 * hz
        );
        assert_eq!(parse_stat(&line), Some(Duration::from_secs(3)));
    }

    #[test]
    fn own_cpu_is_readable_and_grows() {
        let before = own().expect("/proc/self/stat");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        // Spin until the kernel has charged at least one more tick (a loaded machine may take a while).
        while own().expect("again") <= before {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            assert!(start.elapsed() < Duration::from_secs(10), "CPU time never grew");
        }
        std::hint::black_box(x);
    }

    #[test]
    fn the_machine_line_parses() {
        let m = parse_proc_stat("cpu  100 0 50 800 50 0 0 0 0 0").expect("cpu line");
        let hz = ticks_per_second();
        assert_eq!(m.total, ticks(1000));
        assert_eq!(m.busy, ticks(150));
        assert!(hz > 0);
        assert!(Machine::now().is_some());
    }
}
