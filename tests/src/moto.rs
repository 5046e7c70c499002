//! A moto server for tests, one per test process.
//!
//! moto speaks DynamoDB and the API Gateway Management API on one port. The
//! server is started on first use on a free loopback port and watched by a
//! small shell loop that stops it when the test process exits (test statics are
//! never dropped, so a `Drop` impl alone would leak it). It is started through
//! `tests/moto_serial.py`, which serves one request at a time: moto's own
//! threaded launcher lets concurrent transactions interleave, which DynamoDB
//! never does (see that file).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    endpoint: String,
    _child: Mutex<Child>,
}

impl Moto {
    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// The Python with moto installed: the project's venv (`make setup`), or `EUROCHAT_MOTO_PYTHON`.
fn moto_python() -> PathBuf {
    if let Some(p) = std::env::var_os("EUROCHAT_MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

fn start() -> Moto {
    let python = moto_python();
    let has_moto = Command::new(&python)
        .args(["-c", "import moto.moto_server.werkzeug_app, werkzeug"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_moto,
        "moto is not installed for {}.\nRun `make setup` (creates .venv with moto[server] and cfn-lint from requirements-dev.txt), \
         or set EUROCHAT_MOTO_PYTHON to a Python that has moto[server].",
        python.display()
    );
    let launcher = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("moto_serial.py");
    let port = free_port();
    let script = r#"
        "$0" "$3" 127.0.0.1 "$1" >/dev/null 2>&1 &
        m=$!
        trap 'kill $m 2>/dev/null' EXIT TERM INT
        while kill -0 "$2" 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done
    "#;
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(&python)
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .arg(&launcher)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn moto");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("loopback address");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start on {addr} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        endpoint: format!("http://{addr}"),
        _child: Mutex::new(child),
    }
}

/// The test process's moto server, started on first call.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start)
}

/// An SDK configuration pointing at moto (dummy credentials, an EU region).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-central-1"))
        .endpoint_url(moto().endpoint())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await
}

/// A table name no other test uses.
pub fn unique_table(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}
