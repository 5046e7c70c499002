//! `cargo run -p local-gateway`: eurochat on this machine. Glue only: options,
//! logging, start, print where everything is, stop on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use local_gateway::{Options, start};

/// eurochat's local API Gateway: WebSockets, @connections, the HTTP routes and
/// the retention timer, running the functions' own handlers.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// WebSocket stage (clients connect to ws://HOST/STAGE).
    #[arg(long, default_value = "local")]
    stage: String,
    /// Use DynamoDB at this endpoint (moto, DynamoDB Local, or an https AWS endpoint) instead of memory.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// DynamoDB table (created if missing on a loopback endpoint).
    #[arg(long, default_value = "eurochat-local")]
    table: String,
    /// Region (must be an EU region unless the endpoint is loopback).
    #[arg(long, default_value = "eu-central-1")]
    region: String,
    /// Seconds between retention runs.
    #[arg(long, default_value_t = 300)]
    retention_every: u64,
    /// The demo site's id.
    #[arg(long, default_value = "demo")]
    site: String,
    /// Another origin allowed to embed the demo site's widget (repeatable).
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// Deliver frames through the AWS SDK's management client and this gateway's
    /// @connections endpoint, as the deployed functions do (slower; the default
    /// hands them straight to the sockets).
    #[arg(long)]
    sdk_delivery: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    chat_core::telemetry::init();
    let args = Args::parse();
    if args.retention_every == 0 {
        return Err("--retention-every must be at least 1 second".into());
    }
    let running = start(Options {
        listen: args.listen,
        stage: args.stage,
        dynamodb_endpoint: args.dynamodb_endpoint,
        table: args.table,
        region: args.region,
        retention_every: Duration::from_secs(args.retention_every),
        site: args.site,
        extra_origins: args.allow_origins,
        sdk_delivery: args.sdk_delivery,
    })
    .await?;
    // Printed, not logged: the token is a credential and logs hold none.
    println!("eurochat local gateway ({} storage)", running.storage);
    println!("  visitor demo page  {}", running.demo_url());
    println!("  agent console      {}", running.console_url());
    println!("  WebSocket API      {}", running.ws_url());
    println!("  HTTP API           {}/v1", running.base_url());
    println!(
        "  @connections       {}/@connections/{{id}}",
        running.management_endpoint()
    );
    println!("  demo agent token   {}", running.agent_token);
    println!("Ctrl-C stops.");
    shutdown_signal().await;
    println!("stopping: closing connections");
    running.stop().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
