//! The HTTP API: the routes of the HTTP functions, as payload-2.0 events, as
//! `template.yaml` routes them. CORS is the functions' own (per site, see
//! `chat_core::api::cors`): preflights go to the `web` function, as on a
//! deployed stack.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chat_core::clock::Clock;

use crate::events::{self, HttpRequestParts};
use crate::{App, GatewayStore};

/// The HTTP functions and their routes, as in `template.yaml`.
#[derive(Debug, Clone, Copy)]
enum Function {
    CreateSession,
    GdprExport,
    GdprErase,
    Web,
}

/// Largest body API Gateway's HTTP API accepts (10 MB); the functions enforce their own, smaller limits.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

pub(crate) fn routes<S: GatewayStore>() -> axum::Router<Arc<App<S>>> {
    let to = |f: Function| {
        move |state, peer, method, uri, query, headers, body| {
            call::<S>(f, state, peer, method, uri, query, headers, body)
        }
    };
    let api = |f: Function| post(to(f)).options(to(Function::Web));
    axum::Router::new()
        .route("/v1/sessions", api(Function::CreateSession))
        .route("/v1/gdpr/export", api(Function::GdprExport))
        .route("/v1/gdpr/erase", api(Function::GdprErase))
        .route("/widget.js", get(to(Function::Web)))
        .route("/eurochat.css", get(to(Function::Web)))
        .route("/console", get(to(Function::Web)))
        .route("/console.js", get(to(Function::Web)))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

#[allow(clippy::too_many_arguments)] // axum extractors, one per part of the request
async fn call<S: GatewayStore>(
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
    let route_key = match function {
        Function::Web if method == Method::OPTIONS => "OPTIONS /{proxy+}".to_owned(),
        _ => format!("{} {}", method.as_str(), uri.path()),
    };
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
        Function::Web => web::handle(&event, &app.web),
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
    http_response(answer)
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
