//! The widget and the agent console in a real browser: Debian's chromium driven by
//! `playwright-core` (`tests/browser/e2e.mjs`) against the local gateway, once on the
//! in-memory store and once on moto's DynamoDB. Screenshots and the visitor's data
//! export land in `target/e2e/<store>/`.
//!
//! Needs `make setup` (npm packages in `tests/browser`, `apt-get install chromium`);
//! fails with that instruction when something is missing, never skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use local_gateway::{Options, start};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn check_prerequisites() {
    let browser_dir = workspace().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/browser: run `make setup` (npm ci --prefix tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no chromium at {chromium}: run `make setup` (apt-get install -y chromium) or set CHROMIUM"
    );
}

async fn browser_flow(label: &str, dynamodb: bool) {
    check_prerequisites();
    let g = start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        dynamodb_endpoint: dynamodb.then(|| eurochat_tests::moto::moto().endpoint().to_owned()),
        table: eurochat_tests::moto::unique_table("browser"),
        ..Options::default()
    })
    .await
    .expect("gateway starts");
    let shots = workspace().join("target/e2e").join(label);
    let _ = std::fs::remove_dir_all(&shots);
    let run = tokio::process::Command::new("node")
        .arg(workspace().join("tests/browser/e2e.mjs"))
        .args(["--base", &g.base_url(), "--console", &g.console_url(), "--shots"])
        .arg(&shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser flow finishes within 4 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{label}: {stdout}{stderr}");
    g.stop().await.expect("gateway stops");
    assert!(
        out.status.success(),
        "browser flow on {label} failed:\n{stdout}\n{stderr}"
    );
    for shot in [
        "visitor.png",
        "console.png",
        "visitor-after-reload.png",
        "visitor-after-delete.png",
        "console-after-delete.png",
    ] {
        let size = std::fs::metadata(shots.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{label}: screenshot {shot} missing or empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_and_console_in_chromium_on_memory() {
    browser_flow("memory", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_and_console_in_chromium_on_moto() {
    browser_flow("moto", true).await;
}
