//! Lambda functions run as Lambda runs them: a process against a stand-in
//! Lambda Runtime API, kept warm and fed one event after another.
//!
//! [`FunctionCommand`] starts a function's binary (directly, or through a
//! wrapper such as `qemu-aarch64-static -L <sysroot> bootstrap`) with only the
//! environment Lambda sets plus the function's own configuration, and serves it
//! the Runtime API (`/2018-06-01/runtime/...`) on a free loopback port. The
//! [`WarmFunction`] it returns hands the process one event per
//! [`WarmFunction::invoke`], each with its own request id and deadline, exactly
//! as Lambda reuses a warm execution environment, and returns what the function
//! posted back. Everything the process prints (stdout and stderr) is captured;
//! the process is killed when the [`WarmFunction`] is dropped.
//!
//! [`ManagementApi`] is a stand-in API Gateway Management API
//! (`/{stage}/@connections/{id}`) on loopback that records every call, so a
//! test sees the frames a function sent to each WebSocket connection and the
//! connections it closed.

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What a function posted back to the Runtime API for one invocation (or at start).
#[derive(Debug, Clone, PartialEq)]
pub enum Posted {
    /// `POST /runtime/invocation/{id}/response`: the handler's result (JSON, or the raw body).
    Response(Value),
    /// `POST /runtime/invocation/{id}/error`: the handler failed.
    Error(String),
    /// `POST /runtime/init/error`: the function could not start.
    InitError(String),
}

/// The stand-in's invocation deadline and how long [`WarmFunction::invoke`] waits, unless set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const FUNCTION_ARN_PREFIX: &str = "arn:aws:lambda:eu-central-1:123456789012:function:";

/// How to start one function process.
#[derive(Debug, Clone)]
pub struct FunctionCommand {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    memory_mb: u32,
    log_level: String,
    timeout: Duration,
}

impl FunctionCommand {
    /// Runs `program` as the function `name` (its `AWS_LAMBDA_FUNCTION_NAME`).
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            memory_mb: 128,
            log_level: "INFO".to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// One more argument (e.g. the bootstrap's path after `qemu-aarch64-static -L <sysroot>`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More arguments.
    pub fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// One variable of the function's own configuration (set after Lambda's, so it may override them).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Several variables of the function's own configuration.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (default 128).
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    /// `AWS_LAMBDA_LOG_LEVEL` (the function's `ApplicationLogLevel`; default `INFO`).
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    /// Each invocation's deadline, and how long [`WarmFunction::invoke`] waits for its answer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Serves the Runtime API and starts the process. Panics if it cannot be started.
    pub async fn start(self) -> WarmFunction {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (posted_tx, posted_rx) = mpsc::unbounded_channel();
        let (polls_tx, polls_rx) = watch::channel(0u64);
        let api = Arc::new(RuntimeState {
            events: tokio::sync::Mutex::new(events_rx),
            posted: posted_tx,
            polls: polls_tx,
            function_arn: format!("{FUNCTION_ARN_PREFIX}{}", self.name),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Runtime API");
        let addr = listener.local_addr().expect("Runtime API address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let name = &self.name;
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            // What Lambda sets for a provided.al2023 function.
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", self.memory_mb.to_string())
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/27/[$LATEST]0123456789abcdef")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_LEVEL", &self.log_level)
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("AWS_REGION", "eu-central-1")
            .env("AWS_DEFAULT_REGION", "eu-central-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDLOCALTEST")
            .env("AWS_SECRET_ACCESS_KEY", "local-test-secret")
            .env("AWS_SESSION_TOKEN", "local-test-session")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .env("LAMBDA_RUNTIME_DIR", "/var/runtime")
            .env("_HANDLER", "bootstrap")
            .env("TZ", ":UTC")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "{}: could not start {} {:?}: {e}",
                self.name,
                self.program.display(),
                self.args
            )
        });
        let output = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            tokio::spawn(capture(child.stdout.take().expect("stdout"), output.clone())),
            tokio::spawn(capture(child.stderr.take().expect("stderr"), output.clone())),
        ];
        WarmFunction {
            name: self.name,
            addr,
            timeout: self.timeout,
            events: events_tx,
            posted: posted_rx,
            polls: polls_rx,
            child,
            exited: None,
            output,
            readers,
            server,
            invocations: 0,
        }
    }
}

/// Appends every line the process prints to `out`.
async fn capture(stream: impl AsyncRead + Unpin, out: Arc<Mutex<Vec<u8>>>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => out
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(&line),
        }
    }
}

/// One event for the process, with its request id and deadline.
struct Invocation {
    request_id: String,
    deadline_ms: u128,
    event: Value,
}

struct RuntimeState {
    /// Events waiting for the process's next `GET /next`.
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    posted: mpsc::UnboundedSender<(Option<String>, Posted)>,
    /// How many times the process asked for its next event.
    polls: watch::Sender<u64>,
    function_arn: String,
}

async fn next(State(api): State<Arc<RuntimeState>>) -> impl IntoResponse {
    api.polls.send_modify(|n| *n += 1);
    // Between invocations Lambda freezes the environment; here the request just waits.
    let invocation = api.events.lock().await.recv().await;
    let Some(inv) = invocation else {
        std::future::pending::<()>().await;
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let mut h = HeaderMap::new();
    let mut put = |k: &'static str, v: &str| {
        h.insert(k, v.parse().expect("header value"));
    };
    put("lambda-runtime-aws-request-id", &inv.request_id);
    put("lambda-runtime-deadline-ms", &inv.deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &api.function_arn);
    put(
        "lambda-runtime-trace-id",
        "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
    );
    put("content-type", "application/json");
    (StatusCode::OK, h, inv.event.to_string())
}

async fn response(State(api): State<Arc<RuntimeState>>, Path(id): Path<String>, body: String) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api.posted.send((Some(id), Posted::Response(value)));
    StatusCode::ACCEPTED
}

async fn invocation_error(State(api): State<Arc<RuntimeState>>, Path(id): Path<String>, body: String) -> StatusCode {
    let _ = api.posted.send((Some(id), Posted::Error(body)));
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Arc<RuntimeState>>, body: String) -> StatusCode {
    let _ = api.posted.send((None, Posted::InitError(body)));
    StatusCode::ACCEPTED
}

/// A running function process, warm between invocations. Killed when dropped.
pub struct WarmFunction {
    name: String,
    addr: SocketAddr,
    timeout: Duration,
    events: mpsc::UnboundedSender<Invocation>,
    posted: mpsc::UnboundedReceiver<(Option<String>, Posted)>,
    polls: watch::Receiver<u64>,
    child: tokio::process::Child,
    exited: Option<ExitStatus>,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
    invocations: u32,
}

impl WarmFunction {
    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stand-in Runtime API's address (`AWS_LAMBDA_RUNTIME_API`).
    pub fn runtime_api(&self) -> SocketAddr {
        self.addr
    }

    /// How many events this process has been given.
    pub fn invocations(&self) -> u32 {
        self.invocations
    }

    /// Whether the process is still running (a warm function waits for its next event).
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited.is_none()
    }

    /// Everything the process printed so far (stdout and stderr, line by line as they came).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// Waits until the process has finished its cold start and asks for an event
    /// (its first `GET /runtime/invocation/next`). Panics, with its output, if it
    /// exits, reports an init error or does not get there within the timeout.
    pub async fn ready(&mut self) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if *self.polls.borrow_and_update() > 0 {
                return;
            }
            if let Ok((_, posted)) = self.posted.try_recv() {
                self.fail(&format!("posted {posted:?} before its first event")).await;
            }
            tokio::select! {
                changed = self.polls.changed() => {
                    if changed.is_err() {
                        self.fail("lost its Runtime API").await;
                    }
                }
                status = self.child.wait(), if self.exited.is_none() => {
                    self.exited = status.ok();
                    self.fail("exited during its cold start").await;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.fail(&format!("did not ask for an event within {:?}", self.timeout)).await;
                }
            }
        }
    }

    /// Hands the warm process one event and waits (up to the timeout) for what it
    /// posts back. Panics, with the process's output, if it exits or posts nothing in time.
    pub async fn invoke(&mut self, event: Value) -> Posted {
        self.invocations += 1;
        let request_id = format!("8476a536-e9f4-11e8-9739-{:012x}", self.invocations);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let invocation = Invocation {
            request_id: request_id.clone(),
            deadline_ms: now_ms + self.timeout.as_millis(),
            event,
        };
        if self.events.send(invocation).is_err() {
            self.fail("cannot be given an event").await;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            tokio::select! {
                posted = self.posted.recv() => match posted {
                    Some((Some(id), posted)) if id == request_id => return posted,
                    Some((Some(id), posted)) => {
                        self.fail(&format!("answered request {id}, not {request_id}: {posted:?}")).await;
                    }
                    Some((None, posted)) => return posted,
                    None => self.fail("lost its Runtime API").await,
                },
                status = self.child.wait(), if self.exited.is_none() => {
                    self.exited = status.ok();
                    // Whatever it managed to post before exiting (an init error) still counts.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Ok((_, posted)) = self.posted.try_recv() {
                        return posted;
                    }
                    self.fail("exited instead of answering").await;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.fail(&format!("posted nothing within {:?}", self.timeout)).await;
                }
            }
        }
    }

    /// [`Self::invoke`], expecting a response: returns it, or panics with the
    /// error the function reported and its output.
    pub async fn invoke_ok(&mut self, event: Value) -> Value {
        match self.invoke(event).await {
            Posted::Response(v) => v,
            other => {
                let msg = format!("failed invocation {}: {other:?}", self.invocations);
                self.fail(&msg).await
            }
        }
    }

    /// Stops the process and returns everything it printed.
    pub async fn stop(mut self) -> String {
        self.kill_and_drain().await;
        self.output()
    }

    async fn kill_and_drain(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.start_kill();
            self.exited = self.child.wait().await.ok();
        }
        // The pipes close with the process: the readers finish with every line it printed.
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
    }

    async fn fail(&mut self, what: &str) -> ! {
        // An exit status is only news if the process ended by itself.
        let status = self.exited.map(|s| format!(" ({s})")).unwrap_or_default();
        self.kill_and_drain().await;
        panic!(
            "function {} {what}{status}\n--- its output ---\n{}",
            self.name,
            self.output()
        );
    }
}

impl Drop for WarmFunction {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.server.abort();
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// One call a function made to the stand-in management API.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagementCall {
    /// `POST` (send a frame), `GET` (connection info) or `DELETE` (close).
    pub method: Method,
    /// The connection id, URL-decoded.
    pub connection_id: String,
    /// The request body (the frame, for a `POST`).
    pub body: Vec<u8>,
    /// The `Authorization` header (SigV4 in AWS), if any.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct ManagementState {
    calls: Mutex<Vec<ManagementCall>>,
    gone: Mutex<HashSet<String>>,
}

/// A stand-in API Gateway Management API on a free loopback port: records every
/// call; answers `410 Gone` for connections marked gone, success otherwise.
pub struct ManagementApi {
    endpoint: String,
    state: Arc<ManagementState>,
    server: JoinHandle<()>,
}

impl ManagementApi {
    /// Serves `/{stage}/@connections/{id}`.
    pub async fn start(stage: &str) -> Self {
        let state = Arc::new(ManagementState::default());
        let app = Router::new()
            .route(
                &format!("/{stage}/@connections/{{id}}"),
                post(connection_call).get(connection_call).delete(connection_call),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the management API");
        let addr = listener.local_addr().expect("management API address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}/{stage}"),
            state,
            server,
        }
    }

    /// `http://127.0.0.1:<port>/<stage>`, for `EUROCHAT_APIGW_ENDPOINT` and `EUROCHAT_WS_MANAGEMENT_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<ManagementCall> {
        self.state.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The frames posted to `connection`, oldest first (a body that is not JSON becomes a string).
    pub fn frames_to(&self, connection: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == Method::POST && c.connection_id == connection)
            .map(|c| {
                serde_json::from_slice(&c.body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&c.body).into_owned()))
            })
            .collect()
    }

    /// The frames of one `type` posted to `connection`.
    pub fn frames_of(&self, connection: &str, kind: &str) -> Vec<Value> {
        self.frames_to(connection)
            .into_iter()
            .filter(|f| f["type"] == json!(kind))
            .collect()
    }

    /// The connections closed (`DELETE`), in order.
    pub fn closed(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == Method::DELETE)
            .map(|c| c.connection_id)
            .collect()
    }

    /// From now on, calls for `connection` answer `410 Gone` (the client left).
    pub fn mark_gone(&self, connection: &str) {
        self.state
            .gone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(connection.to_owned());
    }
}

impl Drop for ManagementApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn connection_call(
    State(state): State<Arc<ManagementState>>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let gone = state.gone.lock().unwrap_or_else(PoisonError::into_inner).contains(&id);
    state
        .calls
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(ManagementCall {
            method: method.clone(),
            connection_id: id.clone(),
            body: body.to_vec(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
    if gone {
        return (
            StatusCode::GONE,
            [("x-amzn-errortype", "GoneException")],
            axum::Json(json!({"message": null})),
        )
            .into_response();
    }
    if method == Method::GET {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        return axum::Json(json!({
            "connectedAt": now,
            "lastActiveAt": now,
            "identity": {"sourceIp": "192.0.2.1", "userAgent": "stand-in"}
        }))
        .into_response();
    }
    StatusCode::OK.into_response()
}
