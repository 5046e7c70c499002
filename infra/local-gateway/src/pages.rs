//! The local gateway's own pages: an index and a demo shop embedding the visitor
//! widget. The widget, the agent console and their files are the `web`
//! function's (as on a deployed stack) and reach it through the HTTP API
//! routes (`http_api.rs`).
//!
//! Both pages are served with the `web` function's Content-Security-Policy
//! (scripts and styles from this origin only, no inline code, no `eval`),
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`. The
//! browser test fails on any CSP violation, so markup that needs an inline
//! script cannot creep back in.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use web::{Framing, page_csp};

use crate::{App, GatewayStore};

const INDEX: &str = include_str!("../web/index.html");
const DEMO: &str = include_str!("../web/demo.html");

pub(crate) fn routes<S: GatewayStore>() -> axum::Router<Arc<App<S>>> {
    axum::Router::new()
        .route(
            "/",
            get(|State(app): State<Arc<App<S>>>| async move { page(&app, INDEX) }),
        )
        .route(
            "/demo",
            get(|State(app): State<Arc<App<S>>>| async move { page(&app, DEMO) }),
        )
}

/// A page with the demo's site id and WebSocket URL filled in, and its security headers.
fn page<S>(app: &App<S>, template: &str) -> Response {
    let html = web::render(template, &app.web.ws_url).replace("{{SITE}}", &app.site);
    let mut resp = (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        html,
    )
        .into_response();
    // A validated URL is always a valid header value.
    if let Ok(csp) = HeaderValue::from_str(&page_csp(&app.web.ws_url, Framing::Allowed)) {
        resp.headers_mut().insert(CONTENT_SECURITY_POLICY, csp);
    }
    resp
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
        let ws = web::PublicWsUrl::parse("ws://127.0.0.1:8080/local").unwrap();
        let demo = page_csp(&ws, Framing::Allowed);
        let console = page_csp(&ws, Framing::Denied);
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
        for (name, html) in [("index", INDEX), ("demo", DEMO), ("console", web::CONSOLE_HTML)] {
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
        for (name, js) in [("widget.js", web::WIDGET_JS), ("console.js", web::CONSOLE_JS)] {
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
