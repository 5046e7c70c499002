//! Harness for eurochat's workspace-level tests.
//!
//! - [`moto`]: a moto server (DynamoDB and the API Gateway Management API) on a
//!   free loopback port, started on first use and stopped with the test process.
//! - [`auth_flows`]: authorization checked at use (revocation, expiry, allow-list), on both stores.
//! - [`backends`]: the two store adapters behind one interface, each able to
//!   emulate DynamoDB's TTL sweeper, so one contract suite runs against both.
//! - [`contract`]: that suite.
//! - [`chat`]: the chat functions' handlers driven with API Gateway events.
//! - [`chat_flows`]: the chat's rules as flows, run against both stores.
//! - [`erasure`]: erasure as a fence then a sweep, raced by writers, on both stores.
//! - [`fixtures`]: sites, sessions and messages for tests.
//! - [`gdpr_flows`]: GDPR export, erasure and the retention job as flows, on both stores.
//! - [`requests`]: counts the DynamoDB requests a store operation makes.
//! - [`runtime_api`]: Lambda functions as processes against a stand-in Runtime
//!   API, kept warm across invocations, and a stand-in management API.
//! - [`wire`]: HTTP and WebSocket clients of a running local gateway.

#![warn(missing_docs)]

pub mod auth_flows;
pub mod backends;
pub mod capacity;
pub mod chat;
pub mod chat_flows;
pub mod contract;
pub mod erasure;
pub mod faults;
pub mod fixtures;
pub mod gdpr_flows;
pub mod moto;
pub mod requests;
pub mod runtime_api;
pub mod wire;
