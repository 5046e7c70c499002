//! CORS, decided per site by the functions.
//!
//! The HTTP API has no deployment-wide origin list (adding a site would need a
//! redeploy): a preflight is answered for any well-formed origin
//! ([`preflight`]), and the function that handles the real request decides,
//! from the site's own origins, before it reads or changes anything. A browser
//! request from an origin the site does not list is refused with `403
//! origin_not_allowed` and carries no `Access-Control-Allow-Origin`, so the page
//! cannot read even the refusal. The permissive preflight opens nothing: it
//! lets a browser send what any HTTP client can send anyway, and the function
//! checks the origin first.
//!
//! Requests without an `Origin` header (curl, servers) and from the API's own
//! origin (the agent console it serves) need no site's consent.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use http::HeaderValue;

use crate::api::http::HttpRequest;
use crate::domain::{Origin, SiteId};
use crate::error::{ApiError, ErrorCode};
use crate::storage::SiteStore;

/// Methods a browser may use across origins.
pub const ALLOWED_METHODS: &str = "GET, POST, OPTIONS";
/// Request headers a browser may send across origins.
pub const ALLOWED_HEADERS: &str = "authorization, content-type";
/// How long a browser may cache a preflight answer, seconds.
pub const MAX_AGE_SECS: u32 = 600;

/// The refusal for a browser origin a site does not list.
pub fn origin_refused() -> ApiError {
    ApiError::new(ErrorCode::OriginNotAllowed, "this origin may not use this site's chat")
}

/// Lets the browser hand `resp` to pages of `origin`.
pub fn share_with(resp: &mut ApiGatewayV2httpResponse, origin: &Origin) {
    if let Ok(v) = HeaderValue::from_str(origin.as_str()) {
        resp.headers.insert("access-control-allow-origin", v);
    }
    // Answers differ by origin: caches must not hand one origin's answer to another.
    resp.headers.insert("vary", HeaderValue::from_static("origin"));
}

/// The answer to an `OPTIONS` preflight: `204`, and for a well-formed origin
/// asking for an allowed method, the methods, headers and cache time. Nothing is
/// read or stored.
pub fn preflight(req: &HttpRequest<'_>) -> ApiGatewayV2httpResponse {
    let mut resp = ApiGatewayV2httpResponse::default();
    resp.status_code = 204;
    // Like every answer of the API (docs/protocol.md, "Headers").
    resp.headers
        .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    let method_ok = req
        .header("access-control-request-method")
        .is_some_and(|m| matches!(m, "GET" | "POST"));
    if let (Some(Ok(origin)), true) = (req.origin(), method_ok) {
        share_with(&mut resp, &origin);
        let h = &mut resp.headers;
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert("access-control-max-age", HeaderValue::from(MAX_AGE_SECS));
    }
    resp
}

/// Whether the request's origin may act for `site`: `Ok(None)` without an
/// `Origin` header, `Ok(Some(origin))` for the API's own origin or one the site
/// lists (read only then: requests from curl or the console cost no read), and
/// `403 origin_not_allowed` otherwise, an unknown site included.
pub async fn check_origin(
    store: &(impl SiteStore + ?Sized),
    req: &HttpRequest<'_>,
    site: &SiteId,
) -> Result<Option<Origin>, ApiError> {
    let origin = match req.origin() {
        None => return Ok(None),
        Some(parsed) => parsed.map_err(|_| origin_refused())?,
    };
    if req.is_own_origin(&origin) {
        return Ok(Some(origin));
    }
    let allowed = store.get_site(site).await?.is_some_and(|s| s.allows_origin(&origin));
    if allowed {
        Ok(Some(origin))
    } else {
        Err(origin_refused())
    }
}
