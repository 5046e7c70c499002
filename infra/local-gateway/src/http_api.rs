//! The HTTP API: the routes of the HTTP functions, as payload-2.0 events, with
//! the CORS behaviour the SAM template configures (allowed origins only).

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chat_core::clock::Clock;

use crate::events::{self, HttpRequestParts};
use crate::{App, Store};

/// The HTTP functions and their routes, as in `template.yaml`.
#[derive(Debug, Clone, Copy)]
enum Function {
    CreateSession,
    GdprExport,
    GdprErase,
}

/// Largest body API Gateway's HTTP API accepts (10 MB); the functions enforce their own, smaller limits.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

pub(crate) fn routes<S: Store>() -> axum::Router<Arc<App<S>>> {
    let route = |f: Function| {
        post(move |state, peer, method, uri, query, headers, body| {
            call::<S>(f, state, peer, method, uri, query, headers, body)
        })
        .options(move |state: State<Arc<App<S>>>, headers: HeaderMap| async move { preflight(&state, &headers) })
    };
    axum::Router::new()
        .route("/v1/sessions", route(Function::CreateSession))
        .route("/v1/gdpr/export", route(Function::GdprExport))
        .route("/v1/gdpr/erase", route(Function::GdprErase))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn allowed_origin<S>(app: &App<S>, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get("origin")?;
    app.cors_origins
        .iter()
        .any(|o| o.as_bytes() == origin.as_bytes())
        .then(|| origin.clone())
}

fn preflight<S>(app: &App<S>, headers: &HeaderMap) -> Response {
    let Some(origin) = allowed_origin(app, headers) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    (
        StatusCode::NO_CONTENT,
        [
            ("access-control-allow-origin", origin),
            (
                "access-control-allow-methods",
                HeaderValue::from_static("POST, OPTIONS"),
            ),
            (
                "access-control-allow-headers",
                HeaderValue::from_static("content-type, authorization"),
            ),
            ("access-control-max-age", HeaderValue::from_static("600")),
            ("vary", HeaderValue::from_static("origin")),
        ],
    )
        .into_response()
}

#[allow(clippy::too_many_arguments)] // axum extractors, one per part of the request
async fn call<S: Store>(
    function: Function,
    State(app): State<Arc<App<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = app.clock.now().millis();
    let parts = HttpRequestParts {
        method: method.as_str(),
        path: uri.path(),
        raw_query: query.as_deref(),
        headers: &headers,
        body: &body,
        source_ip: peer.ip(),
        domain_name: &app.domain,
    };
    let route_key = format!("POST {}", uri.path());
    let event = match events::http(&parts, &route_key, now) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "could not build an HTTP event");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let answer = match function {
        Function::CreateSession => {
            let deps = create_session::Deps {
                store: &app.store,
                clock: &app.clock,
                config: &app.config,
            };
            create_session::handle(event, &deps).await
        }
        Function::GdprExport => {
            let deps = gdpr_export::Deps {
                store: &app.store,
                clock: &app.clock,
                config: &app.config,
                page_bytes: chat_core::gdpr::EXPORT_PAGE_BYTES,
            };
            gdpr_export::handle(event, &deps).await
        }
        Function::GdprErase => {
            let deps = gdpr_delete::Deps {
                store: &app.store,
                gateway: app.erase_gateway.as_ref(),
                clock: &app.clock,
                config: &app.config,
            };
            gdpr_delete::handle(event, &deps).await
        }
    };
    let mut resp = http_response(answer);
    if let Some(origin) = allowed_origin(&app, &headers) {
        let h = resp.headers_mut();
        h.insert("access-control-allow-origin", origin);
        h.insert("vary", HeaderValue::from_static("origin"));
    }
    resp
}

/// What API Gateway makes of a payload-2.0 response: `cookies` become `Set-Cookie`
/// headers (eurochat's functions set none; kept so the emulation stays faithful).
fn http_response(r: ApiGatewayV2httpResponse) -> Response {
    let mut resp = crate::function_response(r.status_code, r.body);
    let h = resp.headers_mut();
    for (k, v) in r.headers.iter() {
        h.insert(k.clone(), v.clone());
    }
    for (k, v) in r.multi_value_headers.iter() {
        h.append(k.clone(), v.clone());
    }
    for c in &r.cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append("set-cookie", v);
        }
    }
    resp
}
