//! The hosted front end: every route, its headers, preflights, and refusals.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::encodings::Body;

use super::*;

fn deps() -> Deps {
    Deps {
        ws_url: PublicWsUrl::parse("wss://abc123.execute-api.eu-central-1.amazonaws.com/prod").unwrap(),
    }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> ApiGatewayV2httpRequest {
    let mut h = serde_json::Map::new();
    for (k, v) in headers {
        h.insert((*k).to_owned(), serde_json::Value::String((*v).to_owned()));
    }
    serde_json::from_value(serde_json::json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": h,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.execute-api.eu-central-1.amazonaws.com",
            "domainPrefix": "api",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "test" },
            "requestId": "r",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "27/Nov/2026:00:00:00 +0000",
            "timeEpoch": 1_800_000_000_000_i64
        },
        "isBase64Encoded": false
    }))
    .unwrap()
}

fn header<'a>(r: &'a ApiGatewayV2httpResponse, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

fn body(r: &ApiGatewayV2httpResponse) -> &str {
    match &r.body {
        Some(Body::Text(t)) => t,
        _ => "",
    }
}

#[test]
fn the_widget_is_served_configured_for_this_deployment() {
    let r = handle(&request("GET", "/widget.js", &[]), &deps());
    assert_eq!(r.status_code, 200);
    assert_eq!(header(&r, "content-type"), Some("text/javascript; charset=utf-8"));
    assert!(body(&r).contains(r#""wss://abc123.execute-api.eu-central-1.amazonaws.com/prod""#));
    assert!(!body(&r).contains("{{"), "every placeholder is filled");
    assert_eq!(header(&r, "content-security-policy"), Some(ASSET_CSP));
    assert_eq!(header(&r, "cross-origin-resource-policy"), Some("cross-origin"));
    assert_eq!(header(&r, "x-content-type-options"), Some("nosniff"));
    let css = handle(&request("GET", "/eurochat.css", &[]), &deps());
    assert_eq!(css.status_code, 200);
    assert_eq!(header(&css, "content-type"), Some("text/css; charset=utf-8"));
}

#[test]
fn the_console_cannot_be_framed_and_talks_only_to_this_deployment() {
    let r = handle(&request("GET", "/console", &[]), &deps());
    assert_eq!(r.status_code, 200);
    let csp = header(&r, "content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("connect-src 'self' wss://abc123.execute-api.eu-central-1.amazonaws.com;"),
        "{csp}"
    );
    assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(header(&r, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&r, "referrer-policy"), Some("no-referrer"));
    assert!(body(&r).contains(r#"data-ws="wss://abc123.execute-api.eu-central-1.amazonaws.com/prod""#));
    let js = handle(&request("GET", "/console.js", &[]), &deps());
    assert_eq!(js.status_code, 200);
    assert!(body(&js).contains("eurochat agent console"));
}

#[test]
fn unknown_paths_and_methods_get_stable_errors() {
    let r = handle(&request("GET", "/v1/../etc/passwd", &[]), &deps());
    assert_eq!(r.status_code, 404);
    assert!(body(&r).contains(r#""code":"not_found""#), "{}", body(&r));
    let r = handle(&request("POST", "/widget.js", &[]), &deps());
    assert_eq!(r.status_code, 405);
    assert!(body(&r).contains(r#""code":"method_not_allowed""#), "{}", body(&r));
}

#[test]
fn preflights_answer_well_formed_origins_for_get_and_post_only() {
    let ok = handle(
        &request(
            "OPTIONS",
            "/v1/gdpr/export",
            &[
                ("origin", "https://shop.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "authorization, content-type"),
            ],
        ),
        &deps(),
    );
    assert_eq!(ok.status_code, 204);
    assert_eq!(header(&ok, "access-control-allow-origin"), Some("https://shop.example"));
    assert_eq!(
        header(&ok, "access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(header(&ok, "access-control-max-age"), Some("600"));
    assert_eq!(header(&ok, "vary"), Some("origin"));
    assert_eq!(
        header(&ok, "access-control-allow-credentials"),
        None,
        "never credentials"
    );
    for headers in [
        vec![("origin", "null"), ("access-control-request-method", "POST")],
        vec![
            ("origin", "http://shop.example"),
            ("access-control-request-method", "POST"),
        ],
        vec![
            ("origin", "https://shop.example"),
            ("access-control-request-method", "DELETE"),
        ],
        vec![("access-control-request-method", "POST")],
    ] {
        let r = handle(&request("OPTIONS", "/v1/sessions", &headers), &deps());
        assert_eq!(r.status_code, 204, "{headers:?}");
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{headers:?}");
    }
}

#[test]
fn the_websocket_url_is_validated() {
    for ok in [
        "wss://abc.execute-api.eu-west-1.amazonaws.com/prod",
        "wss://chat.example.com",
        "ws://127.0.0.1:8080/local",
    ] {
        assert!(PublicWsUrl::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "https://chat.example.com",
        "ws://chat.example.com/prod",
        "wss://chat.example.com/prod?x=1",
        "wss://user@chat.example.com",
    ] {
        assert_eq!(PublicWsUrl::parse(bad), Err(WebConfigError::Invalid), "{bad}");
    }
    // Whatever survives parsing is percent-encoded: it cannot break out of a script
    // string, an attribute or the CSP.
    let odd = PublicWsUrl::parse("wss://chat.example.com/\"</script>").unwrap();
    assert!(!odd.as_str().contains(['"', '<', '>']), "{odd:?}");
    let url = PublicWsUrl::parse("wss://chat.example.com:8443/prod/").unwrap();
    assert_eq!(url.as_str(), "wss://chat.example.com:8443/prod");
    assert_eq!(url.origin(), "wss://chat.example.com:8443");
}
