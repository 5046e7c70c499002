//! Sliding-window rate counters in memory: the decision is
//! [`RateLimit::admit`], the same one the DynamoDB store's condition encodes.

use async_trait::async_trait;

use super::MemoryStore;
use crate::clock::Timestamp;
use crate::policy::{RateDecision, RateLimit, is_live};
use crate::storage::{RateLimitStore, StoreError};

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn hit(&self, key: &str, limit: RateLimit, now: Timestamp) -> Result<RateDecision, StoreError> {
        let mut g = self.turn().await;
        let entry = g.rates.entry(key.to_owned()).or_insert((Vec::new(), now));
        // An expired counter not yet swept holds only times outside the window anyway.
        let recent: &[Timestamp] = if is_live(entry.1, now) { &entry.0 } else { &[] };
        let decision = limit.admit(recent, now);
        if let RateDecision::Allowed { .. } = decision {
            let mut times = Vec::with_capacity(limit.limit as usize);
            times.push(now);
            times.extend(recent.iter().take((limit.limit as usize).saturating_sub(1)));
            *entry = (times, limit.counter_expiry(now));
        } else if entry.0.is_empty() {
            // Refused without a counter (a zero limit): store nothing.
            g.rates.remove(key);
        }
        Ok(decision)
    }
}
