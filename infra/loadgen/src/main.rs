//! `cargo run --release -p loadgen -- …`: options, an optional gateway of its
//! own (`--spawn`), one run, one summary. Exit status 0 only if nothing was
//! lost, duplicated, reordered or refused.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use loadgen::{LOAD_LIMITS, MAX_MESSAGES_PER_MINUTE, Plan, Target};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Open-loop load against eurochat's local gateway: sessions, WebSockets, messages;
/// throughput, ack latency, loss/duplicates/order, and CPU.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The gateway's base URL (http://127.0.0.1:8080); or use --spawn.
    #[arg(long, conflicts_with = "spawn", required_unless_present = "spawn")]
    url: Option<String>,
    /// Start a gateway (the release binary) on a free loopback port with load limits, and stop it at the end.
    #[arg(long)]
    spawn: bool,
    /// The gateway binary for --spawn (default: next to this binary, else $CARGO_TARGET_DIR/release, else target/release).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Where the spawned gateway's log (stderr) goes (default: a file in the temp directory).
    #[arg(long)]
    gateway_log: Option<PathBuf>,
    /// RUST_LOG for the spawned gateway (default: inherited, else the gateway's `info`).
    #[arg(long)]
    gateway_rust_log: Option<String>,
    /// The gateway's process id with --url, for its CPU time.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// An agent token of the site, for --agents with --url (the spawned gateway prints its own).
    #[arg(long, env = "LOADGEN_AGENT_TOKEN", hide_env_values = true)]
    agent_token: Option<String>,
    /// The site.
    #[arg(long, default_value = "demo")]
    site: String,
    /// The WebSocket stage.
    #[arg(long, default_value = "local")]
    stage: String,
    /// The Origin header (default: the gateway's own origin, which the demo site allows).
    #[arg(long)]
    origin: Option<String>,
    /// WebSocket connections in all: visitors plus --agents.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Agent connections among them; each receives every message (site fan-out).
    #[arg(long, default_value_t = 0)]
    agents: usize,
    /// Visitor conversations (default: one per visitor connection; fewer gives conversations several tabs).
    #[arg(long)]
    conversations: Option<usize>,
    /// Offered messages per second (open loop), all visitors together.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds sent and checked before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Longest wait, in seconds, for outstanding answers after the last message is due.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// Sessions and connections per loopback source address (default 50 with --spawn, else 8:
    /// the gateway's default limits are 10 sessions and 20 connects per IP a minute).
    #[arg(long)]
    per_ip: Option<usize>,
    /// Bytes of each message's text.
    #[arg(long, default_value_t = 64)]
    text_bytes: usize,
    /// The generator's runtime threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

fn secs(name: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{name} must be a non-negative number of seconds"))
}

/// Lets this process (and a gateway it spawns) hold many sockets.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn default_gateway_bin() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("local-gateway")));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("release/local-gateway"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/local-gateway");
    [beside, target_dir, Some(workspace)]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("target/release/local-gateway"))
}

/// A gateway this run started.
struct Spawned {
    child: tokio::process::Child,
    pid: u32,
    base: String,
    agent_token: String,
}

async fn spawn_gateway(args: &Args, log: &Path) -> Result<Spawned, String> {
    let bin = args.gateway_bin.clone().unwrap_or_else(default_gateway_bin);
    if !bin.is_file() {
        return Err(format!(
            "no gateway binary at {} (build it: cargo build --release -p local-gateway, or pass --gateway-bin)",
            bin.display()
        ));
    }
    let log_file = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(["--listen", "127.0.0.1:0", "--site", &args.site, "--stage", &args.stage])
        .envs(LOAD_LIMITS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    if let Some(level) = &args.gateway_rust_log {
        cmd.env("RUST_LOG", level);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id().ok_or("the gateway exited at once")?;
    let stdout = child.stdout.take().ok_or("no gateway stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut base, mut token) = (None, None);
    let read = async {
        while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
            let line = line.trim();
            if let Some(url) = line.strip_prefix("HTTP API") {
                base = url.trim().strip_suffix("/v1").map(str::to_owned);
            } else if let Some(t) = line.strip_prefix("demo agent token") {
                token = Some(t.trim().to_owned());
            } else if line.starts_with("Ctrl-C stops") {
                return Ok(());
            }
        }
        Err(format!("the gateway exited during start-up; see {}", log.display()))
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .map_err(|_| "the gateway did not start within 60 s".to_owned())??;
    // Keep reading what it prints, so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Spawned {
        child,
        pid,
        base: base.ok_or("the gateway printed no HTTP API line")?,
        agent_token: token.ok_or("the gateway printed no agent token")?,
    })
}

/// SIGTERM (the gateway closes its connections and runs `$disconnect`), then kill after 15 s.
async fn stop_gateway(mut g: Spawned) {
    // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
    unsafe {
        libc::kill(g.pid as libc::pid_t, libc::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(15), g.child.wait())
        .await
        .is_err()
    {
        let _ = g.child.kill().await;
    }
}

async fn main_async(args: Args) -> Result<bool, String> {
    let plan = Plan {
        connections: args.connections,
        agents: args.agents,
        conversations: args.conversations,
        rate: args.rate,
        warmup: secs("warmup", args.warmup)?,
        duration: secs("duration", args.duration)?,
        grace: secs("grace", args.grace)?,
        per_ip: args.per_ip.unwrap_or(if args.spawn { 50 } else { 8 }),
        text_bytes: args.text_bytes,
        quiet: args.quiet,
        ..Plan::default()
    };
    plan.validate()?;
    let per_session = plan.per_session_per_minute();
    let mut spawned = None;
    let mut target = if args.spawn {
        if per_session > MAX_MESSAGES_PER_MINUTE {
            return Err(format!(
                "each session would send {per_session:.0} messages a minute, over the gateway's highest limit ({MAX_MESSAGES_PER_MINUTE}): use more --conversations or a lower --rate"
            ));
        }
        let log = args
            .gateway_log
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("loadgen-gateway-{}.log", std::process::id())));
        let g = spawn_gateway(&args, &log).await?;
        if !args.quiet {
            let set: Vec<String> = LOAD_LIMITS.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!(
                "loadgen: spawned the gateway (pid {}) at {} with {}{}; its log: {}",
                g.pid,
                g.base,
                set.join(" "),
                args.gateway_rust_log
                    .as_ref()
                    .map(|l| format!(" RUST_LOG={l}"))
                    .unwrap_or_default(),
                log.display()
            );
        }
        let mut t = Target::from_base_url(&g.base, &args.stage, &args.site)?;
        t.agent_token = Some(g.agent_token.clone());
        t.gateway_pid = Some(g.pid);
        spawned = Some(g);
        t
    } else {
        let url = args.url.as_deref().unwrap_or_default();
        if per_session > 30.0 && !args.quiet {
            eprintln!(
                "loadgen: each session sends {per_session:.0} messages a minute; the gateway must run with EUROCHAT_MESSAGES_PER_MINUTE at least that (default 30)"
            );
        }
        let mut t = Target::from_base_url(url, &args.stage, &args.site)?;
        t.agent_token = args.agent_token.clone();
        t.gateway_pid = args.gateway_pid;
        t
    };
    if let Some(o) = &args.origin {
        target.origin = o.clone();
    }
    let result = loadgen::run(&target, &plan).await;
    if let Some(g) = spawned {
        stop_gateway(g).await;
    }
    let report = result.map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(report.clean())
}

fn main() -> ExitCode {
    let args = Args::parse();
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(main_async(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
