//! Sliding-window rate counters: one conditional UpdateItem per hit. The
//! item keeps the last `limit` admission times in slots `t0`..; the condition
//! encodes [`RateLimit::admit`], the decision the in-memory store makes.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::DynamoStore;
use super::client::backend_error;
use super::item::{Item, key, n, s};
use crate::clock::Timestamp;
use crate::policy::{RateDecision, RateLimit};
use crate::storage::keys::{self, kind};
use crate::storage::{RateLimitStore, StoreError};

/// The sliding-window counter item's attribute holding the `i`-th most recent
/// admission time (milliseconds). Plain names keep the shifting update short;
/// no DynamoDB reserved word has a digit.
fn rate_slot(i: usize) -> String {
    format!("t{i}")
}

/// The update that admits one request: shifts every slot one place older
/// (`t(L-1) = t(L-2)`, ..., `t1 = t0`) and writes now into `t0`. Written oldest
/// slot first so that the result is the same whether operands are read before
/// the update (DynamoDB) or action by action.
fn rate_update_expression(limit: u32) -> String {
    let mut e = String::from("SET #ttl = :ttl, #kind = :kind");
    for i in (1..limit as usize).rev() {
        // A slot not written yet reads as 0, i.e. long out of any window; DynamoDB
        // refuses an update whose operand attribute is missing.
        e.push_str(&format!(",{}=if_not_exists({},:zero)", rate_slot(i), rate_slot(i - 1)));
    }
    e.push_str(",t0=:now");
    e
}

/// DynamoDB's limit on an expression's length.
#[cfg(test)]
const MAX_EXPRESSION_BYTES: usize = 4096;

fn rate_time(item: Option<&Item>, slot: &str) -> Option<Timestamp> {
    item?
        .get(slot)?
        .as_n()
        .ok()?
        .parse::<i64>()
        .ok()
        .map(Timestamp::from_millis)
}

#[async_trait]
impl RateLimitStore for DynamoStore {
    /// One conditional UpdateItem per hit, admitted or not: the condition
    /// admits the request only while the `limit`-th most recent admission is
    /// out of the window, and DynamoDB applies conditional writes to one item
    /// one at a time, so concurrent hits never admit more than the limit.
    async fn hit(&self, key_str: &str, limit: RateLimit, now: Timestamp) -> Result<RateDecision, StoreError> {
        let Some(last) = (limit.limit as usize).checked_sub(1) else {
            return Ok(limit.admit(&[], now));
        };
        let oldest = rate_slot(last);
        let cutoff = limit.cutoff(now);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::rate_pk(key_str), keys::RATE_SK)))
            .update_expression(rate_update_expression(limit.limit))
            .condition_expression(format!("attribute_not_exists({oldest}) OR {oldest} <= :cutoff"))
            .expression_attribute_names("#ttl", keys::TTL)
            .expression_attribute_names("#kind", keys::KIND)
            .expression_attribute_values(":ttl", n(limit.counter_expiry(now).epoch_seconds()))
            .expression_attribute_values(":kind", s(kind::RATE))
            .expression_attribute_values(":now", n(now.millis()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":cutoff", n(cutoff.millis()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let times: Vec<Timestamp> = (0..=last)
                    .filter_map(|i| rate_time(out.attributes.as_ref(), &rate_slot(i)))
                    .collect();
                Ok(RateDecision::Allowed {
                    window_start: cutoff,
                    count: RateLimit::counted(&times, cutoff),
                })
            }
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(c) => {
                    // The refused request's wait: until the oldest counted admission leaves
                    // the window (the whole window if the old item did not come back).
                    let retry_after = rate_time(c.item(), &oldest)
                        .map(|t| now.until(t.plus(limit.window)))
                        .filter(|d| !d.is_zero())
                        .unwrap_or(limit.window);
                    Ok(RateDecision::Limited { retry_after })
                }
                UpdateItemError::ProvisionedThroughputExceededException(_)
                | UpdateItemError::RequestLimitExceeded(_)
                | UpdateItemError::ThrottlingException(_) => Err(StoreError::Throttled {
                    operation: "UpdateItem",
                }),
                other => Err(backend_error("UpdateItem", &other)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::MAX_SLIDING_LIMIT;

    #[test]
    fn the_largest_rate_update_fits_dynamodbs_expression_limit() {
        let e = rate_update_expression(MAX_SLIDING_LIMIT);
        assert!(e.len() < MAX_EXPRESSION_BYTES, "{} bytes", e.len());
        assert_eq!(
            rate_update_expression(3),
            "SET #ttl = :ttl, #kind = :kind,t2=if_not_exists(t1,:zero),t1=if_not_exists(t0,:zero),t0=:now"
        );
        assert_eq!(rate_update_expression(1), "SET #ttl = :ttl, #kind = :kind,t0=:now");
    }
}
