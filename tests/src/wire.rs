//! A client of a running local gateway over real sockets: plain HTTP/1.1 POSTs
//! and WebSocket connections, optionally from a chosen loopback address (any of
//! 127.0.0.0/8), so a test controls the source IP the gateway reports.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// A client WebSocket.
pub type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// An HTTP answer: status, the lower-cased head, the JSON body (`Null` if none).
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Status line and headers, lower-cased.
    pub head: String,
    /// The body as JSON.
    pub body: Value,
}

async fn tcp(server: SocketAddr, from: Option<IpAddr>) -> TcpStream {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .expect("socket");
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0)).expect("bind the source address");
    }
    socket.connect(server).await.expect("connect to the gateway")
}

/// `POST path` with a JSON body, an `Origin`, and optionally a bearer token.
pub async fn post(
    server: SocketAddr,
    from: Option<IpAddr>,
    path: &str,
    origin: &str,
    bearer: Option<&str>,
    body: &Value,
) -> Reply {
    let mut stream = tcp(server, from).await;
    let body = body.to_string();
    let auth = bearer
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {server}\r\norigin: {origin}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Reply {
        status: head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0),
        head: head.to_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// `method path` without a body (a page, an asset, a preflight); the body as text.
pub async fn request(server: SocketAddr, method: &str, path: &str, origin: Option<&str>) -> (u16, String, String) {
    let mut stream = tcp(server, None).await;
    let origin = origin.map(|o| format!("origin: {o}\r\n")).unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nhost: {server}\r\n{origin}connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

/// Opens a WebSocket to `url` offering `eurochat.v1, <token>`. `Ok` with the selected
/// subprotocol, or `Err` with the status the handshake was refused with.
pub async fn connect(
    server: SocketAddr,
    from: Option<IpAddr>,
    url: &str,
    origin: &str,
    token: &str,
) -> Result<(Socket, Option<String>), u16> {
    let mut req = url.into_client_request().expect("a ws:// URL");
    let h = req.headers_mut();
    h.insert("origin", origin.parse().expect("origin header"));
    h.insert(
        "sec-websocket-protocol",
        format!("eurochat.v1, {token}").parse().expect("protocol header"),
    );
    match tokio_tungstenite::client_async(req, tcp(server, from).await).await {
        Ok((socket, resp)) => Ok((
            socket,
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        )),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("handshake failed oddly: {e}"),
    }
}

/// The next text frame as JSON (10 s at most).
pub async fn next_json(s: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a frame within 10 s")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("a JSON frame");
        }
    }
}

/// The close code the server closes with (10 s at most); `None` if it just went away.
pub async fn close_code(s: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("closes within 10 s")
        {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}
