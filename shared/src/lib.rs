//! eurochat's chat core: everything the Lambda functions share.
//!
//! - [`api`]: request views, frames and fan-out shared by the functions.
//! - [`domain`]: validated identifiers and the records of the chat.
//! - [`policy`]: privacy and expiry rules (TTLs, IP truncation, rate windows).
//! - [`storage`]: capability traits with a DynamoDB and an in-memory adapter.
//! - [`gateway`]: sending frames to WebSocket clients.
//! - [`auth`]: visitor tokens, agent tokens, keyed pseudonyms.
//! - [`config`]: typed configuration and the EU residency guard.
//! - [`secrets`]: secrets from Secrets Manager, re-read while warm.
//! - [`startup`]: what every function does at cold start.
//! - [`error`]: the one mapping from errors to HTTP and WebSocket responses.
//! - [`gdpr`]: who may ask, whose data, export and erasure.
//! - [`telemetry`]: JSON logging without personal data.
//! - [`metrics`]: counts as CloudWatch metrics (Embedded Metric Format).
//! - [`security_log`]: security events (refusals, revocations, rate limits) without personal data.
//! - [`clock`]: injected time.
//! - [`random`]: the OS CSPRNG, a leaf module.

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod gdpr;
pub mod metrics;
pub mod policy;
pub mod random;
pub mod secrets;
pub mod security_log;
pub mod startup;
pub mod storage;
pub mod telemetry;
