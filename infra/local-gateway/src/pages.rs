//! The demo pages: a host page embedding the visitor widget, the agent console,
//! and an index linking both. Plain files compiled into the binary, so the
//! gateway runs from anywhere.
//!
//! Every page and asset is served with a Content-Security-Policy that allows
//! scripts and styles from this origin only (no inline script, no inline
//! style, no `eval`), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`; the console, which holds an admin token,
//! may not be framed by anyone (`frame-ancestors 'none'`). The browser test
//! fails on any CSP violation, so markup that needs an inline script cannot
//! creep back in.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{App, Store};

const INDEX: &str = include_str!("../web/index.html");
const DEMO: &str = include_str!("../web/demo.html");
const CONSOLE: &str = include_str!("../web/console.html");
const WIDGET_JS: &str = include_str!("../web/widget.js");
const CONSOLE_JS: &str = include_str!("../web/console.js");
const CSS: &str = include_str!("../web/eurochat.css");

/// Who may frame a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Any page may (the demo shop stands for a customer's site, which decides itself).
    Allowed,
    /// Nobody may: the console holds an admin token, so clickjacking it must be impossible.
    Denied,
}

/// The Content-Security-Policy of a page served from `domain` (`host:port`).
/// `connect-src` names the WebSocket origin explicitly: not every browser counts
/// `ws://` as `'self'`.
pub(crate) fn page_csp(domain: &str, framing: Framing) -> String {
    let mut csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' ws://{domain}; base-uri 'none'; form-action 'none'"
    );
    if framing == Framing::Denied {
        csp.push_str("; frame-ancestors 'none'");
    }
    csp
}

/// The policy of a script or style sheet: it applies only if the file is opened
/// as a document, and then nothing may run or load.
const ASSET_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

pub(crate) fn routes<S: Store>() -> axum::Router<Arc<App<S>>> {
    axum::Router::new()
        .route(
            "/",
            get(|State(app): State<Arc<App<S>>>| async move { page(&app, INDEX, Framing::Allowed) }),
        )
        .route(
            "/demo",
            get(|State(app): State<Arc<App<S>>>| async move { page(&app, DEMO, Framing::Allowed) }),
        )
        .route(
            "/console",
            get(|State(app): State<Arc<App<S>>>| async move { page(&app, CONSOLE, Framing::Denied) }),
        )
        .route(
            "/widget.js",
            get(|| async { asset("text/javascript; charset=utf-8", WIDGET_JS) }),
        )
        .route(
            "/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route("/eurochat.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
}

/// A page with the demo's site id and WebSocket URL filled in, and its security headers.
fn page<S>(app: &App<S>, template: &str, framing: Framing) -> Response {
    let html = template
        .replace("{{SITE}}", &app.site)
        .replace("{{WS_URL}}", &format!("ws://{}/{}", app.domain, app.stage));
    let mut resp = (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        html,
    )
        .into_response();
    let h = resp.headers_mut();
    // The domain is the bound socket address, so the value is always a valid header.
    if let Ok(csp) = HeaderValue::from_str(&page_csp(&app.domain, framing)) {
        h.insert(CONTENT_SECURITY_POLICY, csp);
    }
    if framing == Framing::Denied {
        // For browsers that predate `frame-ancestors`.
        h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, ASSET_CSP),
            (REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `X-Content-Type-Options: nosniff` on every answer of the gateway (pages, HTTP
/// API, `@connections`, errors): a browser must never run a JSON answer or an
/// error page as a script or style sheet.
pub(crate) async fn nosniff(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_allow_no_inline_code_and_the_console_no_framing() {
        let demo = page_csp("127.0.0.1:8080", Framing::Allowed);
        let console = page_csp("127.0.0.1:8080", Framing::Denied);
        for csp in [&demo, &console] {
            assert!(csp.starts_with("default-src 'none'"), "{csp}");
            assert!(
                csp.contains("script-src 'self';") && csp.contains("style-src 'self';"),
                "{csp}"
            );
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
            assert!(csp.contains("connect-src 'self' ws://127.0.0.1:8080"), "{csp}");
        }
        assert!(console.ends_with("frame-ancestors 'none'"));
        assert!(!demo.contains("frame-ancestors"));
    }

    #[test]
    fn the_web_files_have_no_inline_script_handler_or_style() {
        for (name, html) in [("index", INDEX), ("demo", DEMO), ("console", CONSOLE)] {
            let lower = html.to_ascii_lowercase();
            for script in lower.match_indices("<script").map(|(i, _)| &lower[i..]) {
                let tag_end = script.find('>').unwrap_or(script.len());
                assert!(script[..tag_end].contains(" src="), "{name}: inline <script>");
                assert!(
                    script[tag_end + 1..].starts_with("</script>"),
                    "{name}: script with a body"
                );
            }
            assert!(!lower.contains("<style"), "{name}: inline <style>");
            assert!(!lower.contains(" style="), "{name}: style attribute");
            assert!(!lower.contains("javascript:"), "{name}: javascript: URL");
            for handler in [
                " onclick=",
                " onload=",
                " onsubmit=",
                " oninput=",
                " onchange=",
                " onerror=",
            ] {
                assert!(!lower.contains(handler), "{name}: inline handler {handler}");
            }
        }
        for (name, js) in [("widget.js", WIDGET_JS), ("console.js", CONSOLE_JS)] {
            for banned in [
                "eval(",
                "new Function",
                "innerHTML",
                ".style.cssText",
                "setAttribute(\"style\"",
            ] {
                assert!(!js.contains(banned), "{name} uses {banned}");
            }
        }
    }
}
