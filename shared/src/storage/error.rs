//! How a storage operation fails, in terms callers can act on (retry, 404,
//! 409, 429) and safe to log.

use std::time::Duration;

use crate::domain::MessageRateExceeded;

/// A storage failure. `Display` names the operation and an error code only,
/// never item contents, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The item does not exist or has expired.
    #[error("not found")]
    NotFound,
    /// An item with this key already exists.
    #[error("already exists")]
    AlreadyExists,
    /// A concurrent change won; retrying the request may succeed.
    #[error("conflicting concurrent change")]
    Conflict,
    /// A rate limit refused the write.
    #[error("rate limited")]
    RateLimited {
        /// Time until the limit resets.
        retry_after: Duration,
    },
    /// A pagination cursor that this query did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    /// DynamoDB throttled the request beyond the SDK's retries.
    #[error("{operation} throttled")]
    Throttled {
        /// The DynamoDB operation.
        operation: &'static str,
    },
    /// DynamoDB failed on its side (`InternalServerError`) beyond the SDK's retries.
    #[error("{operation} unavailable")]
    Unavailable {
        /// The DynamoDB operation.
        operation: &'static str,
    },
    /// Any other backend failure.
    #[error("{operation} failed ({})", code.as_deref().unwrap_or("no code"))]
    Backend {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The service's error code, if any.
        code: Option<String>,
    },
    /// A stored item could not be decoded.
    #[error("{operation}: stored item could not be decoded")]
    Corrupt {
        /// The operation that read it.
        operation: &'static str,
    },
}

impl From<MessageRateExceeded> for StoreError {
    fn from(e: MessageRateExceeded) -> Self {
        Self::RateLimited {
            retry_after: e.retry_after,
        }
    }
}
