//! Protocol 1.1: an `Origin` matches a site's allowed origin exactly. A browser
//! never sends a path, so `https://acme.example/` or `https://acme.example/.` is
//! not a browser's origin and must not pass as `https://acme.example`.
//!
//! Fails until `Origin::parse` (shared/src/domain) refuses anything after the
//! host and port instead of accepting the path `/` that `url` normalises
//! `""`, `/` and `/.` to.

use chat_core::domain::Origin;
use eurochat_tests::backends::Memory;
use eurochat_tests::chat::{Chat, ORIGIN, SITE};
use serde_json::json;

const NOT_EXACT: [&str; 6] = [
    "https://acme.example/",
    "https://acme.example/.",
    "https://acme.example/./",
    "https://acme.example/..",
    "https://acme.example?",
    "https://acme.example#",
];

#[test]
fn an_origin_with_anything_after_the_host_is_refused() {
    assert_eq!(Origin::parse(ORIGIN).unwrap().as_str(), ORIGIN);
    for bad in NOT_EXACT {
        assert!(Origin::parse(bad).is_err(), "{bad:?} accepted as an origin");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_sockets_refuse_an_inexact_origin() {
    let c = Chat::new(Memory::default()).await;
    let v = c.visitor().await;
    let before = c.stored().await;
    for (i, bad) in NOT_EXACT.into_iter().enumerate() {
        let r = c.post_session(&json!({"siteId": SITE}), &[("origin", bad)], &[]).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (403, Some("origin_not_allowed")),
            "POST /v1/sessions from {bad:?}"
        );
        assert_eq!(
            c.connect_from(&format!("O{i}="), &v.token, bad).await,
            403,
            "$connect from {bad:?}"
        );
    }
    assert_eq!(c.stored().await, before, "nothing stored");
}
