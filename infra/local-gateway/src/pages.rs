//! The demo pages: a host page embedding the visitor widget, the agent console,
//! and an index linking both. Plain files compiled into the binary, so the
//! gateway runs from anywhere.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::{App, Store};

const INDEX: &str = include_str!("../web/index.html");
const DEMO: &str = include_str!("../web/demo.html");
const CONSOLE: &str = include_str!("../web/console.html");
const WIDGET_JS: &str = include_str!("../web/widget.js");
const CONSOLE_JS: &str = include_str!("../web/console.js");
const CSS: &str = include_str!("../web/eurochat.css");

pub(crate) fn routes<S: Store>() -> axum::Router<Arc<App<S>>> {
    axum::Router::new()
        .route(
            "/",
            get(|State(app): State<Arc<App<S>>>| async move { page(&app, INDEX) }),
        )
        .route(
            "/demo",
            get(|State(app): State<Arc<App<S>>>| async move { page(&app, DEMO) }),
        )
        .route(
            "/console",
            get(|State(app): State<Arc<App<S>>>| async move { page(&app, CONSOLE) }),
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

/// A page with the demo's site id and WebSocket URL filled in.
fn page<S>(app: &App<S>, template: &str) -> Html<String> {
    Html(
        template
            .replace("{{SITE}}", &app.site)
            .replace("{{WS_URL}}", &format!("ws://{}/{}", app.domain, app.stage)),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], body).into_response()
}
