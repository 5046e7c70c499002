//! The hosted front end, served by the HTTP API itself (same region, no global
//! CDN): `GET /widget.js`, `GET /eurochat.css`, `GET /console`, `GET /console.js`,
//! and the answer to every CORS preflight (`OPTIONS`).
//!
//! The files are compiled in (`assets/`, the same the local gateway serves) and
//! configured for this deployment: the widget's and console's WebSocket URL is
//! the stack's ([`PublicWsUrl`]). Pages carry a Content-Security-Policy that
//! allows scripts and styles from this origin only and connections to this
//! origin and the WebSocket API; the console, which holds an agent token, may
//! not be framed. Nothing is read from or written to the table.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use chat_core::api::cors;
use chat_core::api::http::HttpRequest;
use chat_core::error::{ApiError, ErrorCode};
use http::HeaderValue;

/// The visitor widget (one script tag on the customer's page).
pub const WIDGET_JS: &str = include_str!("../assets/widget.js");
/// The widget's and console's style sheet.
pub const CSS: &str = include_str!("../assets/eurochat.css");
/// The agent console page.
pub const CONSOLE_HTML: &str = include_str!("../assets/console.html");
/// The agent console's script.
pub const CONSOLE_JS: &str = include_str!("../assets/console.js");

/// The variable naming the WebSocket URL the pages connect to.
pub const PUBLIC_WS_URL_VAR: &str = "EUROCHAT_PUBLIC_WS_URL";

/// Why the configuration was refused (names the variable, never guesses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebConfigError {
    /// Not set.
    #[error("{PUBLIC_WS_URL_VAR} is not set")]
    Missing,
    /// Not a usable URL.
    #[error("{PUBLIC_WS_URL_VAR} is invalid: must be wss://host[/path] (ws:// only on a loopback address)")]
    Invalid,
}

/// The WebSocket URL the served pages connect to: `wss://`, or `ws://` on a
/// loopback address (the local gateway). Validated, so it is safe to place in a
/// script string, an HTML attribute and a CSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicWsUrl(String);

impl PublicWsUrl {
    /// Validates `s`.
    pub fn parse(s: &str) -> Result<Self, WebConfigError> {
        let url = url::Url::parse(s.trim()).map_err(|_| WebConfigError::Invalid)?;
        let host = url.host_str().ok_or(WebConfigError::Invalid)?;
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        let scheme_ok = url.scheme() == "wss" || (url.scheme() == "ws" && loopback);
        let plain = url.query().is_none() && url.fragment().is_none() && url.username().is_empty();
        // Whatever `url` accepts is percent-encoded ASCII; refuse the characters that
        // would need escaping in JavaScript, HTML or a CSP anyway.
        let text = url.as_str().trim_end_matches('/').to_owned();
        let safe = !text.contains(['"', '\'', '<', '>', '\\', ';', ' ', '`']);
        if scheme_ok && plain && safe {
            Ok(Self(text))
        } else {
            Err(WebConfigError::Invalid)
        }
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]`, for a CSP's `connect-src`.
    pub fn origin(&self) -> String {
        url::Url::parse(&self.0)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }
}

/// Who may frame a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Any page may (the local gateway's demo shop).
    Allowed,
    /// Nobody may: the console holds an agent token, so clickjacking it must be impossible.
    Denied,
}

/// The Content-Security-Policy of a page that talks to `ws`. `connect-src` names
/// the WebSocket origin explicitly: not every browser counts `ws(s)://` as `'self'`.
pub fn page_csp(ws: &PublicWsUrl, framing: Framing) -> String {
    let mut csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' {}; base-uri 'none'; form-action 'none'",
        ws.origin()
    );
    if framing == Framing::Denied {
        csp.push_str("; frame-ancestors 'none'");
    }
    csp
}

/// The policy of a script or style sheet: it applies only if the file is opened
/// as a document, and then nothing may run or load.
pub const ASSET_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// A page or file with `{{WS_URL}}` filled in.
pub fn render(template: &str, ws: &PublicWsUrl) -> String {
    template.replace("{{WS_URL}}", ws.as_str())
}

/// What the handler needs.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The WebSocket URL the pages connect to.
    pub ws_url: PublicWsUrl,
}

fn response(status: u16, content_type: &'static str, body: String) -> ApiGatewayV2httpResponse {
    let mut resp = ApiGatewayV2httpResponse::default();
    resp.status_code = i64::from(status);
    let h = &mut resp.headers;
    h.insert("content-type", HeaderValue::from_static(content_type));
    // Short: a deploy with new files reaches browsers within minutes.
    h.insert("cache-control", HeaderValue::from_static("public, max-age=300"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp.body = Some(Body::Text(body));
    resp
}

fn asset(content_type: &'static str, body: String) -> ApiGatewayV2httpResponse {
    let mut resp = response(200, content_type, body);
    resp.headers
        .insert("content-security-policy", HeaderValue::from_static(ASSET_CSP));
    // Customer pages load the widget and its style sheet from their own origin.
    resp.headers
        .insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    resp
}

fn page(body: String, ws: &PublicWsUrl, framing: Framing) -> ApiGatewayV2httpResponse {
    let mut resp = response(200, "text/html; charset=utf-8", body);
    resp.headers
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    if let Ok(csp) = HeaderValue::from_str(&page_csp(ws, framing)) {
        resp.headers.insert("content-security-policy", csp);
    }
    if framing == Framing::Denied {
        // For browsers that predate `frame-ancestors`.
        resp.headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    }
    resp
}

/// Handles one request. Never fails: an unknown path is `404 not_found`, a
/// method other than GET/OPTIONS `405 method_not_allowed`.
pub fn handle(event: &ApiGatewayV2httpRequest, deps: &Deps) -> ApiGatewayV2httpResponse {
    let req = HttpRequest::new(event);
    let method = event.request_context.http.method.as_str();
    if method == "OPTIONS" {
        return cors::preflight(&req);
    }
    let path = event.raw_path.as_deref().unwrap_or("/");
    let ws = &deps.ws_url;
    let found = match path {
        "/widget.js" => Some(asset("text/javascript; charset=utf-8", render(WIDGET_JS, ws))),
        "/eurochat.css" => Some(asset("text/css; charset=utf-8", CSS.to_owned())),
        "/console.js" => Some(asset("text/javascript; charset=utf-8", CONSOLE_JS.to_owned())),
        "/console" => Some(page(render(CONSOLE_HTML, ws), ws, Framing::Denied)),
        _ => None,
    };
    match (method, found) {
        ("GET", Some(resp)) => resp,
        (_, Some(_)) => ApiError::new(ErrorCode::MethodNotAllowed, "GET only").http_response(),
        (_, None) => ApiError::new(ErrorCode::NotFound, "no such page").http_response(),
    }
}

#[cfg(test)]
mod tests;
