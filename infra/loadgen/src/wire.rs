//! The client side of the protocol the generator needs: `POST /v1/sessions`
//! over a hand-written HTTP/1.1 request (one per session, so no client library),
//! and a WebSocket handshake offering `eurochat.v1, <token>` with an `Origin`,
//! both optionally from a chosen source address (any of 127.0.0.0/8), so the
//! per-IP limits of `$connect` and session creation are spread over addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};

/// The WebSocket read buffer (tungstenite's default is 128 KiB, zeroed on every read).
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// A client WebSocket.
pub type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Why a request failed.
#[derive(Debug)]
pub enum WireError {
    /// The TCP connection or I/O failed.
    Io(std::io::Error),
    /// The server answered with this status (and body).
    Status(u16, String),
    /// The answer could not be read.
    Protocol(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "I/O: {e}"),
            WireError::Status(s, body) => write!(f, "HTTP {s}: {body}"),
            WireError::Protocol(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        WireError::Io(e)
    }
}

/// The `i`-th source address of a block of loopback addresses starting at the
/// /24 of `base`: hosts .1 to .254 of each /24 in turn, always inside 127.0.0.0/8.
pub fn loopback_source(base: Ipv4Addr, i: usize) -> IpAddr {
    let network = u32::from(base) & !0xff;
    let a = network
        .wrapping_add((i / 254) as u32 * 256)
        .wrapping_add(1 + (i % 254) as u32);
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | (a & 0x00ff_ffff)))
}

async fn tcp(server: SocketAddr, from: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `POST /v1/sessions {"siteId": site}` with `Origin: origin`: the new session's token.
pub async fn create_session(
    server: SocketAddr,
    from: Option<IpAddr>,
    origin: &str,
    site: &str,
) -> Result<String, WireError> {
    let mut stream = tcp(server, from).await?;
    let body = serde_json::json!({ "siteId": site }).to_string();
    let req = format!(
        "POST /v1/sessions HTTP/1.1\r\nhost: {server}\r\norigin: {origin}\r\nuser-agent: eurochat-loadgen\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| WireError::Protocol("no HTTP answer".into()))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| WireError::Protocol("no HTTP status".into()))?;
    if status != 201 && status != 200 {
        return Err(WireError::Status(status, body.chars().take(300).collect()));
    }
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| WireError::Protocol(format!("session answer is not JSON: {e}")))?;
    json.get("token")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| WireError::Protocol("session answer has no token".into()))
}

/// Opens a WebSocket to `url` offering `eurochat.v1, <token>` with `Origin: origin`.
pub async fn connect(
    server: SocketAddr,
    from: Option<IpAddr>,
    url: &str,
    origin: &str,
    token: &str,
) -> Result<Socket, WireError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| WireError::Protocol(format!("bad WebSocket URL: {e}")))?;
    let h = req.headers_mut();
    let header = |v: String| HeaderValue::from_str(&v).map_err(|e| WireError::Protocol(format!("header: {e}")));
    h.insert("origin", header(origin.to_owned())?);
    h.insert("sec-websocket-protocol", header(format!("eurochat.v1, {token}"))?);
    h.insert("user-agent", header("eurochat-loadgen".to_owned())?);
    // tungstenite zero-fills its whole read buffer (128 KiB by default) before every read:
    // a small one keeps the generator's CPU per message down (frames here are < 1 KiB).
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    match tokio_tungstenite::client_async_with_config(req, tcp(server, from).await?, Some(config)).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).chars().take(300).collect())
                .unwrap_or_default();
            Err(WireError::Status(resp.status().as_u16(), body))
        }
        Err(e) => Err(WireError::Protocol(format!("handshake: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_on_loopback_hosts() {
        let base = Ipv4Addr::new(127, 9, 0, 1);
        let ip = |i| loopback_source(base, i);
        assert_eq!(ip(0), IpAddr::V4(Ipv4Addr::new(127, 9, 0, 1)));
        assert_eq!(ip(253), IpAddr::V4(Ipv4Addr::new(127, 9, 0, 254)));
        assert_eq!(ip(254), IpAddr::V4(Ipv4Addr::new(127, 9, 1, 1)));
        assert_eq!(ip(300), IpAddr::V4(Ipv4Addr::new(127, 9, 1, 47)));
        let all: std::collections::HashSet<IpAddr> = (0..5000).map(ip).collect();
        assert_eq!(all.len(), 5000, "no two indexes share an address");
        let top = Ipv4Addr::new(127, 255, 255, 0);
        assert!(matches!(loopback_source(top, 1000), IpAddr::V4(a) if a.octets()[0] == 127));
    }
}
