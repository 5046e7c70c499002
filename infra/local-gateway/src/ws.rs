//! The WebSocket API and its `@connections` management endpoint.
//!
//! API Gateway's semantics, as the functions rely on them: `$connect` runs before
//! the handshake completes and a non-200 answer refuses it with that status;
//! each text message is routed by its `action` (else `$default`) to the message
//! function; a frame over 32 KB, or a message over 128 KB (a client may split a
//! message into frames), closes the connection with 1009; a binary message
//! closes it with 1003 (API Gateway supports no binary frames from clients);
//! text that is not UTF-8 closes it with 1007 (RFC 6455: the gateway, not the
//! function, refuses it); a closed connection runs `$disconnect`. The functions answer only through
//! `POST /{stage}/@connections/{id}`; `GET` describes a connection and `DELETE`
//! closes it; an unknown id is `410 GoneException`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use chat_core::clock::Clock;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use chat_core::api::MAX_FRAME_BYTES;

use crate::events::{self, MAX_MESSAGE_BYTES, MAX_POST_BYTES, WsContext};
use crate::{App, GatewayStore};

/// What the gateway sends to one client.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
    Close(u16, &'static str),
}

/// One open connection.
pub(crate) struct Conn {
    ctx: WsContext,
    pub(crate) tx: mpsc::UnboundedSender<Outgoing>,
    last_active: Mutex<i64>,
    /// Set by whoever runs `$disconnect`, so it runs once however the connection ends.
    disconnected: AtomicBool,
}

/// Open connections by id.
#[derive(Default)]
pub(crate) struct Connections(Mutex<HashMap<String, Arc<Conn>>>);

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Conn>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Conn>> {
        self.lock().get(id).cloned()
    }

    /// Takes a connection out (a close): later frames to it find it gone.
    pub(crate) fn remove(&self, id: &str) -> Option<Arc<Conn>> {
        self.lock().remove(id)
    }
}

pub(crate) fn routes<S: GatewayStore>(stage: &str) -> axum::Router<Arc<App<S>>> {
    axum::Router::new()
        .route(&format!("/{stage}"), get(upgrade::<S>))
        .route(&format!("/{stage}/@connections/{{id}}"), any(manage::<S>))
}

fn proxy_response(r: ApiGatewayProxyResponse) -> Response {
    let mut resp = crate::function_response(r.status_code, r.body);
    for (k, v) in r.headers.iter() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

async fn upgrade<S: GatewayStore>(
    State(app): State<Arc<App<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (StatusCode::UPGRADE_REQUIRED, "this is eurochat's WebSocket endpoint").into_response();
    };
    let now = app.clock.now().millis();
    let mut ctx = WsContext {
        connection_id: events::connection_id(),
        domain_name: app.domain.clone(),
        stage: app.stage.clone(),
        source_ip: peer.ip(),
        user_agent: headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        connected_at: now,
        authorizer: serde_json::Map::new(),
    };
    match authorize(&ctx, &headers, query.as_deref(), now, &app).await {
        Ok(context) => ctx.authorizer = context,
        Err(refused) => return refused,
    }
    let event = match events::connect(&ctx, &headers, query.as_deref(), now) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "could not build $connect");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let deps = connect::Deps {
        store: &app.store,
        clock: &app.clock,
        config: &app.config,
    };
    let answer = connect::handle(event, &deps).await;
    if answer.status_code != 200 {
        return proxy_response(answer);
    }
    // Registered before the handshake completes: a function may post to the
    // connection as soon as `$connect` returned, and the frame must wait, not vanish.
    let (tx, rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        ctx: ctx.clone(),
        tx,
        last_active: Mutex::new(now),
        disconnected: AtomicBool::new(false),
    });
    app.conns.lock().insert(ctx.connection_id.clone(), Arc::clone(&conn));
    let selected: Vec<String> = answer
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(|p| vec![p.to_owned()])
        .unwrap_or_default();
    let failed_app = Arc::clone(&app);
    let failed_ctx = ctx.clone();
    // An 8 KiB read buffer (not 128 KiB): tungstenite zero-fills the whole buffer
    // before every read, which was 7% of the gateway's CPU; frames up to the
    // 32 KB limit still arrive whole.
    ws.protocols(selected)
        .read_buffer_size(8 * 1024)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_failed_upgrade(move |_| {
            tokio::spawn(async move {
                failed_app.conns.lock().remove(&failed_ctx.connection_id);
                run_disconnect(&failed_app, &failed_ctx, 1006, "handshake failed").await;
            });
        })
        .on_upgrade(move |socket| serve(app, conn, socket, rx))
}

/// API Gateway's part of a handshake with the `$connect` REQUEST authorizer
/// (template.yaml `ConnectAuthorizer`): without the identity source header it
/// answers 401 itself; otherwise it calls the authorizer and lets the handshake
/// on only with an Allow for the route, keeping `principalId` and the context
/// for every later event.
async fn authorize<S: GatewayStore>(
    ctx: &WsContext,
    headers: &HeaderMap,
    query: Option<&str>,
    now: i64,
    app: &App<S>,
) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
    let deps = connect::Deps {
        store: &app.store,
        clock: &app.clock,
        config: &app.config,
    };
    if !headers.contains_key("sec-websocket-protocol") {
        return Err((
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "message": "Unauthorized" })),
        )
            .into_response());
    }
    let event = events::authorizer(ctx, headers, query, now).map_err(|e| {
        tracing::error!(error = %e, "could not build the authorizer event");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })?;
    let answer = connect::authorize(event, &deps).await;
    let route = events::connect_route_arn(ctx);
    let allowed = answer
        .policy_document
        .statement
        .iter()
        .any(|st| st.effect == aws_lambda_events::iam::IamPolicyEffect::Allow && st.resource.contains(&route));
    if !allowed {
        return Err((
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "message": "Forbidden" })),
        )
            .into_response());
    }
    let mut context = answer.context;
    context.insert(
        "principalId".to_owned(),
        serde_json::Value::String(answer.principal_id.unwrap_or_default()),
    );
    Ok(context)
}

async fn serve<S: GatewayStore>(
    app: Arc<App<S>>,
    conn: Arc<Conn>,
    socket: WebSocket,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let sent = match out {
                Outgoing::Text(t) => sink.send(Message::Text(t.into())).await,
                Outgoing::Binary(b) => sink.send(Message::Binary(b.into())).await,
                Outgoing::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    break;
                }
            };
            if sent.is_err() {
                break;
            }
        }
    });
    let deps = message::Deps {
        store: &app.store,
        gateways: app.gateways.as_ref(),
        clock: &app.clock,
        config: &app.config,
    };
    let mut close = (1005_i64, "");
    while let Some(next) = stream.next().await {
        let frame = match next {
            Ok(Message::Text(t)) => t.as_str().to_owned(),
            Ok(Message::Binary(_)) => {
                // As API Gateway: binary frames are refused and the client disconnected.
                let _ = conn.tx.send(Outgoing::Close(1003, "Binary frames are not supported"));
                close = (1003, "Binary frames are not supported");
                break;
            }
            Ok(Message::Close(frame)) => {
                close = (frame.map_or(1005, |f| i64::from(f.code)), "Client closed");
                break;
            }
            Ok(_) => continue,
            Err(e) => {
                close = match socket_error(&e) {
                    SocketError::TooBig => (1009, "Message too big"),
                    SocketError::NotUtf8 => (1007, "Invalid UTF-8 text"),
                    SocketError::Other => (1006, "Connection lost"),
                };
                if close.0 != 1006 {
                    let _ = conn.tx.send(Outgoing::Close(close.0 as u16, close.1));
                }
                break;
            }
        };
        let now = app.clock.now().millis();
        *conn.last_active.lock().unwrap_or_else(|e| e.into_inner()) = now;
        let route = events::route_key(frame.as_bytes(), message::ACTIONS);
        match events::message(&conn.ctx, &route, &frame, now) {
            Ok(event) => {
                message::handle(event, &deps).await;
            }
            Err(e) => tracing::error!(error = %e, "could not build a message event"),
        }
    }
    // A `DELETE @connections` or a shutdown already removed it and sent the close.
    let still_open = app.conns.lock().remove(&conn.ctx.connection_id).is_some();
    if still_open {
        let _ = conn.tx.send(Outgoing::Close(1000, ""));
    }
    if !conn.disconnected.swap(true, Ordering::SeqCst) {
        run_disconnect(&app, &conn.ctx, close.0, close.1).await;
    }
    // The writer ends once the close is sent or every sender is gone.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}

/// Why reading the socket failed, as far as the close code goes.
enum SocketError {
    /// Over the frame or message size limit: 1009.
    TooBig,
    /// A text message that is not UTF-8: 1007.
    NotUtf8,
    /// Anything else: the connection is lost (1006, no close frame).
    Other,
}

fn socket_error(e: &axum::Error) -> SocketError {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::Error as WsError;
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(t) = err.downcast_ref::<WsError>() {
            return match t {
                WsError::Capacity(_) => SocketError::TooBig,
                WsError::Utf8(_) => SocketError::NotUtf8,
                _ => SocketError::Other,
            };
        }
        source = err.source();
    }
    SocketError::Other
}

async fn run_disconnect<S: GatewayStore>(app: &App<S>, ctx: &WsContext, code: i64, reason: &str) {
    let now = app.clock.now().millis();
    match events::disconnect(ctx, code, reason, now) {
        Ok(event) => {
            disconnect::handle(event, &disconnect::Deps { store: &app.store }).await;
        }
        Err(e) => tracing::error!(error = %e, "could not build $disconnect"),
    }
}

fn gone() -> Response {
    (
        StatusCode::GONE,
        [
            ("x-amzn-errortype", "GoneException"),
            ("content-type", "application/json"),
        ],
        r#"{"message":"connection is gone"}"#,
    )
        .into_response()
}

fn iso(ms: i64) -> String {
    chat_core::clock::Timestamp::from_millis(ms).to_rfc3339()
}

/// `@connections/{id}`: POST sends, GET describes, DELETE closes.
async fn manage<S: GatewayStore>(
    State(app): State<Arc<App<S>>>,
    method: axum::http::Method,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(conn) = app.conns.get(&id) else {
        return gone();
    };
    match method.as_str() {
        "POST" => {
            if body.len() > MAX_POST_BYTES {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    [("x-amzn-errortype", "PayloadTooLargeException")],
                    r#"{"message":"payload too large"}"#,
                )
                    .into_response();
            }
            let out = match String::from_utf8(body.to_vec()) {
                Ok(text) => Outgoing::Text(text),
                Err(e) => Outgoing::Binary(e.into_bytes()),
            };
            if conn.tx.send(out).is_err() {
                return gone();
            }
            StatusCode::OK.into_response()
        }
        "GET" => {
            let last = *conn.last_active.lock().unwrap_or_else(|e| e.into_inner());
            axum::Json(serde_json::json!({
                "connectedAt": iso(conn.ctx.connected_at),
                "identity": {
                    "sourceIp": conn.ctx.source_ip.to_string(),
                    "userAgent": conn.ctx.user_agent,
                },
                "lastActiveAt": iso(last),
            }))
            .into_response()
        }
        "DELETE" => {
            app.conns.lock().remove(&id);
            let _ = conn.tx.send(Outgoing::Close(1000, "Going away"));
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// Closes every connection, as when the stage is deleted.
pub(crate) async fn close_all<S: GatewayStore>(app: &App<S>) {
    let all: Vec<Arc<Conn>> = app.conns.lock().drain().map(|(_, c)| c).collect();
    for conn in &all {
        let _ = conn.tx.send(Outgoing::Close(1001, "Going away"));
    }
    for conn in all {
        if !conn.disconnected.swap(true, Ordering::SeqCst) {
            run_disconnect(app, &conn.ctx, 1001, "Going away").await;
        }
    }
}
