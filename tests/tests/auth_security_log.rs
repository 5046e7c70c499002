//! Authorization refusals are security events without personal data, on both
//! stores. A binary of its own: every test here installs a capturing subscriber.
use eurochat_tests::auth_flows::refusals_are_security_events_without_ip_or_token;
use eurochat_tests::backends::{Dynamo, Memory};
use eurochat_tests::chat::Chat;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_security_events_on_memory() {
    refusals_are_security_events_without_ip_or_token(&Chat::new(Memory::default()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_security_events_on_dynamodb() {
    refusals_are_security_events_without_ip_or_token(&Chat::new(Dynamo::new().await).await).await;
}
