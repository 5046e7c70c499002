//! API Gateway for eurochat on one machine.
//!
//! SAM cannot run API Gateway WebSockets locally, so this gateway plays API
//! Gateway's part: it accepts WebSocket connections and HTTP requests, turns
//! them into the very events API Gateway sends ([`events`]), and calls the same
//! handler functions the Lambda binaries run. The functions answer WebSocket
//! clients through the real `aws-sdk-apigatewaymanagement` client, which this
//! gateway serves at `/{stage}/@connections/{id}`. The retention job runs on a
//! timer. Storage is an in-memory store, or DynamoDB (moto, DynamoDB Local, or
//! AWS in an EU region) when given an endpoint.
//!
//! Binary: `cargo run -p local-gateway` (see `main.rs`); library: [`start`],
//! used by the end-to-end tests to run a gateway on a free port.

mod delivery;
pub mod events;
mod http_api;
mod pages;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_core::clock::{Clock, SystemClock};
use chat_core::config::{Config, ConfigError, vars};
use chat_core::domain::AgentRole;
use chat_core::gateway::{ConnectionGateway, GatewayFactory, ManagementClients};
use chat_core::storage::{DynamoStore, MemoryStore, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the gateway needs of storage: every capability the functions use,
/// shared across tasks, and the TTL sweep where the store must emulate it.
pub trait GatewayStore: chat_core::storage::Store + 'static {
    /// Emulates DynamoDB's TTL sweeper where the store needs it (in memory).
    fn sweep_expired(&self, _now: chat_core::clock::Timestamp) -> usize {
        0
    }
}

impl GatewayStore for MemoryStore {
    fn sweep_expired(&self, now: chat_core::clock::Timestamp) -> usize {
        self.purge_expired(now)
    }
}

/// DynamoDB removes expired items itself.
impl GatewayStore for DynamoStore {}

/// How to run the gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// The WebSocket stage: clients connect to `ws://host/{stage}`.
    pub stage: String,
    /// DynamoDB instead of the in-memory store.
    pub dynamodb_endpoint: Option<String>,
    /// The table (created if missing on a loopback endpoint).
    pub table: String,
    /// The region (EU; any for loopback endpoints).
    pub region: String,
    /// How often the retention job (and, in memory, the TTL sweep) runs.
    pub retention_every: Duration,
    /// The demo site to create or update.
    pub site: String,
    /// Origins besides the gateway's own that may embed the demo site's widget.
    pub extra_origins: Vec<String>,
    /// Deliver the functions' frames through the AWS SDK's management client and
    /// this gateway's own `@connections` endpoint, as deployed, instead of
    /// straight to the sockets (`delivery.rs`).
    pub sdk_delivery: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            stage: "local".into(),
            dynamodb_endpoint: None,
            table: "eurochat-local".into(),
            region: "eu-central-1".into(),
            retention_every: Duration::from_secs(300),
            site: "demo".into(),
            extra_origins: Vec::new(),
            sdk_delivery: false,
        }
    }
}

/// Why the gateway could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The address could not be bound or the server failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration was refused (same rules as the functions).
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// An option is wrong.
    #[error("{0}")]
    Option(String),
    /// The pages' WebSocket URL was refused (a stage name the URL cannot carry).
    #[error("pages: {0}")]
    Web(#[from] web::WebConfigError),
    /// Storage failed while preparing the demo site.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The demo site or agent could not be created.
    #[error("demo site: {0}")]
    Seed(#[from] eurochat_admin::AdminError),
}

/// The demo agent every start (re)creates.
pub const DEMO_AGENT: &str = "demo-agent";

/// A running gateway.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The demo site.
    pub site: String,
    /// A 12-hour admin token of the demo agent.
    pub agent_token: String,
    /// `memory` or the DynamoDB endpoint.
    pub storage: String,
    stage: String,
    connections: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `http://host:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The WebSocket URL clients connect to.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/{}", self.addr, self.stage)
    }

    /// The management endpoint the functions post to.
    pub fn management_endpoint(&self) -> String {
        format!("{}/{}", self.base_url(), self.stage)
    }

    /// The demo host page with the visitor widget.
    pub fn demo_url(&self) -> String {
        format!("{}/demo", self.base_url())
    }

    /// The agent console, signed in as the demo agent (the token stays in the fragment,
    /// which browsers never send to a server).
    pub fn console_url(&self) -> String {
        format!("{}/console#token={}", self.base_url(), self.agent_token)
    }

    /// The ids of the open WebSocket connections (for tests and diagnostics).
    pub fn connection_ids(&self) -> Vec<String> {
        (self.connections)()
    }

    /// Stops accepting, closes every WebSocket (running `$disconnect`), and waits.
    pub async fn stop(self) -> Result<(), GatewayError> {
        let _ = self.stop.send(true);
        match self.server.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(GatewayError::Io(std::io::Error::other(e))),
        }
    }
}

/// The HTTP response for a function's status and body; both API Gateway response
/// types carry these, and headers and cookies are added by the caller.
pub(crate) fn function_response(
    status_code: i64,
    body: Option<aws_lambda_events::encodings::Body>,
) -> axum::response::Response {
    use aws_lambda_events::encodings::Body;
    use axum::response::IntoResponse;
    // A status API Gateway could not send is the function's bug: answer as API Gateway does.
    let status = u16::try_from(status_code)
        .ok()
        .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let body = match body {
        Some(Body::Text(t)) => t.into_bytes(),
        Some(Body::Binary(b)) => b,
        _ => Vec::new(),
    };
    (status, body).into_response()
}

/// The state every route shares.
pub(crate) struct App<S> {
    pub(crate) store: S,
    pub(crate) config: Config,
    pub(crate) clock: SystemClock,
    pub(crate) gateways: Arc<dyn GatewayFactory>,
    pub(crate) erase_gateway: Arc<dyn ConnectionGateway>,
    pub(crate) conns: Arc<ws::Connections>,
    pub(crate) domain: String,
    pub(crate) stage: String,
    pub(crate) site: String,
    /// The `web` function's dependencies: the pages connect to this gateway's WebSocket.
    pub(crate) web: web::Deps,
}

fn random_secret() -> String {
    chat_core::random::hex(&chat_core::random::random_bytes::<32>())
}

fn is_loopback_url(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

/// The functions' configuration for this gateway, through the same validation
/// as in Lambda. Secrets come from the environment when set (so tokens and
/// pseudonyms survive restarts on a persistent store), else are random per run.
fn config(options: &Options, own_endpoint: &str) -> Result<Config, ConfigError> {
    config_with_env(options, own_endpoint, |k| std::env::var(k).ok())
}

/// [`config`] with the process environment given as a lookup (tests pass their own).
/// Every `EUROCHAT_*` variable the gateway does not set itself comes from `env`
/// exactly as in Lambda, so limits left unset get Lambda's defaults.
fn config_with_env(
    options: &Options,
    own_endpoint: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let agent_secret = env(vars::AGENT_TOKEN_SECRET).unwrap_or_else(random_secret);
    let pseudonym_key = env(vars::PSEUDONYM_KEY).unwrap_or_else(random_secret);
    let local_dynamo = options.dynamodb_endpoint.as_deref().filter(|u| is_loopback_url(u));
    Config::from_lookup(|k| match k {
        vars::REGION => Some(options.region.clone()),
        vars::TABLE_NAME => Some(options.table.clone()),
        vars::LOCAL_MODE => Some(local_dynamo.is_some().to_string()),
        vars::DYNAMODB_ENDPOINT => local_dynamo.map(str::to_owned),
        vars::APIGW_ENDPOINT => local_dynamo.map(|_| own_endpoint.to_owned()),
        vars::AGENT_TOKEN_SECRET => Some(agent_secret.clone()),
        vars::AGENT_TOKEN_SECRET_PREVIOUS | vars::WS_MANAGEMENT_ENDPOINT => None,
        vars::PSEUDONYM_KEY => Some(pseudonym_key.clone()),
        // No override of the limits: the gateway must refuse what Lambda refuses.
        // (It once raised the connect limit to 600 because every tab connects from
        // 127.0.0.1; set EUROCHAT_CONNECTS_PER_MINUTE to raise it for a long local session.)
        other => env(other),
    })
}

/// Binds, prepares storage and the demo site, and serves until [`Running::stop`].
pub async fn start(options: Options) -> Result<Running, GatewayError> {
    if options.stage.is_empty() || !options.stage.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(GatewayError::Option("--stage must be letters and digits".into()));
    }
    let listener = TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let own_endpoint = format!("http://{addr}/{}", options.stage);
    let config = config(&options, &own_endpoint)?;
    // The management client signs requests; locally any credentials do.
    let local_sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.region.clone()))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "eurochat-local-gateway",
        ))
        .load()
        .await;
    let conns = Arc::new(ws::Connections::default());
    let (gateways, erase_gateway): (Arc<dyn GatewayFactory>, Arc<dyn ConnectionGateway>) = if options.sdk_delivery {
        let clients = ManagementClients::new(local_sdk.clone(), Some(own_endpoint.clone()));
        let erase = clients.for_endpoint(&own_endpoint);
        (Arc::new(clients), erase)
    } else {
        let direct = Arc::new(delivery::Direct(conns.clone()));
        (Arc::new(delivery::DirectFactory(direct.clone())), direct)
    };
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    origins.extend(options.extra_origins.iter().cloned());
    let parts = Parts {
        listener,
        addr,
        options: options.clone(),
        gateways,
        erase_gateway,
        conns,
        origins,
    };
    match &options.dynamodb_endpoint {
        None => launch(parts, MemoryStore::new(), config, "memory".into()).await,
        Some(endpoint) => {
            let store = if config.local.is_some() {
                let sdk = config.aws_sdk_config().await;
                let store = config.dynamo_store(&sdk);
                chat_core::storage::schema::create_table(store.client(), store.table()).await?;
                store
            } else {
                if !endpoint.starts_with("https://") {
                    return Err(GatewayError::Option(
                        "--dynamodb-endpoint must be a loopback URL (moto, DynamoDB Local) or an https AWS endpoint"
                            .into(),
                    ));
                }
                let sdk = config.aws_sdk_config().await;
                let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
                    .endpoint_url(endpoint.clone())
                    .build();
                DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), config.table_name.clone())
            };
            launch(parts, store, config, endpoint.clone()).await
        }
    }
}

struct Parts {
    listener: TcpListener,
    addr: SocketAddr,
    options: Options,
    gateways: Arc<dyn GatewayFactory>,
    erase_gateway: Arc<dyn ConnectionGateway>,
    conns: Arc<ws::Connections>,
    origins: Vec<String>,
}

async fn launch<S: GatewayStore>(
    parts: Parts,
    store: S,
    config: Config,
    storage: String,
) -> Result<Running, GatewayError> {
    let now = SystemClock.now();
    let spec = eurochat_admin::SiteSpec {
        id: parts.options.site.clone(),
        name: Some("eurochat demo".into()),
        origins: parts.origins.clone(),
        ..Default::default()
    };
    eurochat_admin::put_site(&store, &spec, now).await?;
    eurochat_admin::put_agent(
        &store,
        &parts.options.site,
        DEMO_AGENT,
        "Demo Agent",
        AgentRole::Admin,
        true,
        now,
    )
    .await?;
    let agent_token =
        eurochat_admin::mint_agent_token(&store, &config.agent_keys, &parts.options.site, DEMO_AGENT, 12, now).await?;
    let app = Arc::new(App {
        store,
        config,
        clock: SystemClock,
        gateways: parts.gateways,
        erase_gateway: parts.erase_gateway,
        conns: parts.conns,
        domain: parts.addr.to_string(),
        stage: parts.options.stage.clone(),
        site: parts.options.site.clone(),
        web: web::Deps {
            ws_url: web::PublicWsUrl::parse(&format!("ws://{}/{}", parts.addr, parts.options.stage))?,
        },
    });
    let (stop, stopped) = watch::channel(false);
    let router = axum::Router::new()
        .merge(ws::routes::<S>(&app.stage))
        .merge(http_api::routes::<S>())
        .merge(pages::routes::<S>())
        .layer(axum::middleware::map_response(pages::nosniff))
        .with_state(Arc::clone(&app));
    let timer = tokio::spawn(retention_timer(
        Arc::clone(&app),
        parts.options.retention_every,
        stopped.clone(),
    ));
    let server = tokio::spawn({
        let app = Arc::clone(&app);
        let mut stopped = stopped;
        async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
                // Upgraded connections outlive the HTTP server's graceful shutdown; close them
                // the way API Gateway does when a stage goes away, so `$disconnect` runs.
                ws::close_all(&app).await;
            };
            let result = axum::serve(
                parts.listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await;
            timer.abort();
            result
        }
    });
    tracing::info!(storage = %storage, addr = %parts.addr, "local gateway started");
    Ok(Running {
        addr: parts.addr,
        site: parts.options.site,
        agent_token,
        storage,
        stage: parts.options.stage,
        connections: {
            let app = Arc::clone(&app);
            Arc::new(move || app.conns.ids())
        },
        stop,
        server,
    })
}

/// Runs the retention job (and the in-memory TTL sweep) every `every`, as the
/// EventBridge schedule does in AWS.
async fn retention_timer<S: GatewayStore>(app: Arc<App<S>>, every: Duration, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = app.clock.now();
        let swept = app.store.sweep_expired(now);
        match retention::handle(
            serde_json::json!({}),
            &retention::Deps {
                store: &app.store,
                clock: &app.clock,
                limit: &app.config.policy_limit,
            },
        )
        .await
        {
            Ok(s) => tracing::info!(
                swept,
                conversations = s.conversations_erased,
                ips = s.ips_removed,
                orphans = s.orphans_deleted,
                "retention run"
            ),
            Err(e) => tracing::warn!(error = %e, "retention run failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration a Lambda function gets with only the required variables set.
    fn lambda_defaults() -> Config {
        Config::from_lookup(|k| match k {
            vars::REGION => Some("eu-central-1".into()),
            vars::TABLE_NAME => Some("eurochat".into()),
            vars::AGENT_TOKEN_SECRET => Some("agent-token-secret-for-tests-only!".into()),
            vars::PSEUDONYM_KEY => Some("pseudonym-key-for-tests-only-xxxx".into()),
            _ => None,
        })
        .expect("Lambda configuration")
    }

    #[test]
    fn the_gateway_applies_lambdas_default_limits() {
        let got = config_with_env(&Options::default(), "http://127.0.0.1:8080/local", |_| None).expect("config");
        let want = lambda_defaults();
        assert_eq!(
            got.connect_rate, want.connect_rate,
            "EUROCHAT_CONNECTS_PER_MINUTE default"
        );
        assert_eq!(
            got.session_rate, want.session_rate,
            "EUROCHAT_SESSIONS_PER_MINUTE default"
        );
        assert_eq!(got.export_rate, want.export_rate, "EUROCHAT_EXPORTS_PER_HOUR default");
        assert_eq!(
            got.message_rate, want.message_rate,
            "EUROCHAT_MESSAGES_PER_MINUTE default"
        );
        assert_eq!(got.max_message_bytes, want.max_message_bytes);
        assert_eq!(got.policy_limit, want.policy_limit);
    }

    #[test]
    fn the_gateway_reads_limits_from_the_environment_and_validates_them() {
        let env = |k: &str| (k == vars::CONNECTS_PER_MINUTE).then(|| "75".to_owned());
        let got = config_with_env(&Options::default(), "http://127.0.0.1:8080/local", env).expect("config");
        assert_eq!(got.connect_rate.limit, 75);
        let bad = |k: &str| (k == vars::SESSIONS_PER_MINUTE).then(|| "0".to_owned());
        let err = config_with_env(&Options::default(), "http://127.0.0.1:8080/local", bad).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { var, .. } if var == vars::SESSIONS_PER_MINUTE));
    }
}
