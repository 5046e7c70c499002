//! DynamoDB capacity, computed the way DynamoDB bills it (moto's own
//! `ConsumedCapacity` is a placeholder): read units from the items each
//! response carried, write units from what changed in the table, index writes
//! from the table's own index definitions (keys and projections, as
//! `DescribeTable` reports them).
//!
//! Rules (DynamoDB developer guide, "Read/write capacity mode" and "Item sizes"):
//! - item size: the UTF-8 length of every attribute name plus its value (a
//!   string its UTF-8 length, a number about 1 byte per two significant digits
//!   plus 1, binary its length, a boolean or null 1, a list or map 3 bytes plus
//!   1 byte and the size of each element);
//! - reads: a GetItem and each key of a BatchGetItem cost 1 unit per 4 KB of the
//!   item (at least 1, also for a missing item), a Query 1 unit per 4 KB of all
//!   items it returned together (at least 1); eventually consistent reads cost
//!   half, transactional reads double;
//! - writes: 1 unit per 1 KB of the larger of the item before and after
//!   (deletes: the item deleted), doubled inside TransactWriteItems;
//! - a global secondary index is written when an item enters it, leaves it, or
//!   changes a projected attribute; a changed index key is a delete plus a put;
//!   an index entry's size is its projected attributes (the table and index
//!   keys, plus the rest for `ALL`, or the named ones for `INCLUDE`).
//!
//! Writes are measured by diffing the table (a raw Scan before and after, with
//! a client that is not counted), so a failed conditional write is not counted:
//! the scenarios measured here have no races.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::{AttributeValue, ProjectionType};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde_json::Value;

/// One request on the wire.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation (`GetItem`, `Query`, …).
    pub op: String,
    /// The request body.
    pub request: Value,
    /// The response body, once it arrived.
    pub response: Option<Value>,
    /// When it was sent.
    pub start: Instant,
    /// When its response arrived.
    pub end: Option<Instant>,
}

/// Records every request and response of a client, in order.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Call>>>);

#[derive(Debug, Clone, Copy)]
struct CallIndex(usize);

impl Storable for CallIndex {
    type Storer = StoreReplace<Self>;
}

impl Recorder {
    /// Takes and clears what was recorded.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "CapacityRecorder"
    }

    // Once per request on the wire, so SDK retries count too.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        // DynamoDB's JSON protocol names the operation in this header: "DynamoDB_20120810.GetItem".
        let op = req
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        let request = req
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let mut calls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cfg.interceptor_state().store_put(CallIndex(calls.len()));
        calls.push(Call {
            op,
            request,
            response: None,
            start: Instant::now(),
            end: None,
        });
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(CallIndex(i)) = cfg.load::<CallIndex>().copied() else {
            return Ok(());
        };
        let response = context
            .response()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok());
        if let Some(call) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get_mut(i) {
            call.response = response;
            call.end = Some(Instant::now());
        }
        Ok(())
    }
}

/// A loopback proxy to `upstream` (`http://host:port`) that holds every request
/// for `delay` before forwarding it: moto answers in a millisecond, DynamoDB in
/// several, and with a modelled latency concurrent requests visibly overlap
/// (so [`round_trips`] counts them once) and a path's wall time models its
/// latency on DynamoDB. Returns the proxy's `http://` URL; it lives as long as
/// the runtime.
pub async fn delayed_endpoint(upstream: &str, delay: std::time::Duration) -> String {
    crate::faults::proxy(upstream, crate::faults::Faults::default(), delay).await
}

/// Sequential round trips: a call starts a new one when it was sent after every
/// earlier call had its answer; calls sent while another was in flight share it.
pub fn round_trips(calls: &[Call]) -> usize {
    let mut trips = 0;
    let mut latest_end: Option<Instant> = None;
    for c in calls {
        match latest_end {
            Some(end) if c.start < end => {}
            _ => trips += 1,
        }
        let end = c.end.unwrap_or(c.start);
        latest_end = Some(latest_end.map_or(end, |l| l.max(end)));
    }
    trips
}

/// Read units of the recorded calls, by DynamoDB's rules.
pub fn read_units(calls: &[Call]) -> f64 {
    calls.iter().map(read_units_of).sum()
}

fn read_units_of(c: &Call) -> f64 {
    let consistent = c.request["ConsistentRead"].as_bool().unwrap_or(false);
    let factor = if consistent { 1.0 } else { 0.5 };
    let resp = c.response.clone().unwrap_or(Value::Null);
    let units = |bytes: usize| (bytes.div_ceil(4096)).max(1) as f64;
    match c.op.as_str() {
        "GetItem" => factor * units(resp.get("Item").map_or(0, json_item_size)),
        "BatchGetItem" => {
            let mut total = 0.0;
            let tables = c.request["RequestItems"].as_object().cloned().unwrap_or_default();
            for (table, spec) in tables {
                let consistent = spec["ConsistentRead"].as_bool().unwrap_or(false);
                let factor = if consistent { 1.0 } else { 0.5 };
                let asked = spec["Keys"].as_array().map_or(0, Vec::len);
                let found: Vec<usize> = resp["Responses"][&table]
                    .as_array()
                    .map(|items| items.iter().map(json_item_size).collect())
                    .unwrap_or_default();
                // A missing item costs the minimum too.
                let missing = asked.saturating_sub(found.len());
                total += factor * (found.iter().map(|s| units(*s)).sum::<f64>() + missing as f64);
            }
            total
        }
        "Query" | "Scan" => {
            let bytes: usize = resp["Items"]
                .as_array()
                .map(|items| items.iter().map(json_item_size).sum())
                .unwrap_or(0);
            factor * units(bytes)
        }
        "TransactGetItems" => {
            let sizes: Vec<usize> = resp["Responses"]
                .as_array()
                .map(|r| r.iter().map(|x| x.get("Item").map_or(0, json_item_size)).collect())
                .unwrap_or_default();
            sizes.iter().map(|s| 2.0 * units(*s)).sum()
        }
        _ => 0.0,
    }
}

/// The size of an item in DynamoDB's JSON wire form (`{"a": {"S": "x"}}`).
pub fn json_item_size(item: &Value) -> usize {
    item.as_object()
        .map(|m| m.iter().map(|(k, v)| k.len() + json_value_size(v)).sum())
        .unwrap_or(0)
}

fn json_value_size(v: &Value) -> usize {
    let Some((t, inner)) = v.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    match t.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => number_size(inner.as_str().unwrap_or("0")),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |l| l.iter().map(|e| 1 + json_value_size(e)).sum())
        }
        "M" => {
            3 + inner
                .as_object()
                .map_or(0, |m| m.iter().map(|(k, e)| 1 + k.len() + json_value_size(e)).sum())
        }
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |l| {
            l.iter()
                .map(|e| match t.as_str() {
                    "NS" => number_size(e.as_str().unwrap_or("0")),
                    _ => e.as_str().map_or(0, str::len),
                })
                .sum()
        }),
        _ => 0,
    }
}

fn number_size(n: &str) -> usize {
    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1
}

/// The size of an SDK item, by the same rules.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum::<usize>(),
        AttributeValue::Ss(l) => l.iter().map(String::len).sum(),
        AttributeValue::Ns(l) => l.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(l) => l.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

type Item = HashMap<String, AttributeValue>;

/// An index as the table declares it.
#[derive(Debug, Clone)]
pub struct Index {
    /// Its name.
    pub name: String,
    /// Its key attributes.
    pub keys: Vec<String>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection: ProjectionType,
    /// The attributes an `INCLUDE` projection names.
    pub include: Vec<String>,
}

/// The table's contents and index definitions, read with an uncounted client.
pub struct Table {
    client: aws_sdk_dynamodb::Client,
    name: String,
    indexes: Vec<Index>,
}

/// What a change of the table cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteCost {
    /// Write units on the table's items.
    pub table_units: f64,
    /// Write units on the indexes.
    pub index_units: f64,
    /// Items written (put, changed or deleted).
    pub items: usize,
}

impl WriteCost {
    /// Table and index units together.
    pub fn total(&self) -> f64 {
        self.table_units + self.index_units
    }
}

impl Table {
    /// The table `name`, through `client` (not the counted one).
    pub async fn new(client: aws_sdk_dynamodb::Client, name: &str) -> Self {
        let d = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .expect("DescribeTable")
            .table
            .expect("a table");
        let indexes = d
            .global_secondary_indexes()
            .iter()
            .map(|g| Index {
                name: g.index_name().unwrap_or_default().to_owned(),
                keys: g.key_schema().iter().map(|k| k.attribute_name().to_owned()).collect(),
                projection: g
                    .projection()
                    .and_then(|p| p.projection_type().cloned())
                    .unwrap_or(ProjectionType::All),
                include: g
                    .projection()
                    .map(|p| p.non_key_attributes().to_vec())
                    .unwrap_or_default(),
            })
            .collect();
        Self {
            client,
            name: name.to_owned(),
            indexes,
        }
    }

    /// The indexes.
    pub fn indexes(&self) -> &[Index] {
        &self.indexes
    }

    /// Writes `items` as they are (to seed a benchmark quickly), 8 batches at a time.
    pub async fn put_all(&self, items: Vec<Item>) {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        let batches: Vec<Vec<WriteRequest>> = items
            .chunks(25)
            .map(|c| {
                c.iter()
                    .map(|i| {
                        let put = PutRequest::builder().set_item(Some(i.clone())).build().expect("put");
                        WriteRequest::builder().put_request(put).build()
                    })
                    .collect()
            })
            .collect();
        for wave in batches.chunks(8) {
            let sends = wave.iter().map(|batch| async move {
                let mut pending = batch.clone();
                while !pending.is_empty() {
                    let out = self
                        .client
                        .batch_write_item()
                        .request_items(&self.name, pending)
                        .send()
                        .await
                        .expect("BatchWriteItem");
                    pending = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&self.name))
                        .unwrap_or_default();
                }
            });
            futures::future::join_all(sends).await;
        }
    }

    /// Every item, by (pk, sk).
    pub async fn snapshot(&self) -> BTreeMap<(String, String), Item> {
        let mut out = BTreeMap::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.name)
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .expect("Scan");
            for item in page.items().iter().cloned() {
                let k = |a: &str| match item.get(a) {
                    Some(AttributeValue::S(s)) => s.clone(),
                    _ => String::new(),
                };
                out.insert((k("pk"), k("sk")), item);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out
    }

    /// What turning `before` into `after` cost, `transactional` naming the
    /// (pk, sk) of items written inside a TransactWriteItems.
    pub fn write_cost(
        &self,
        before: &BTreeMap<(String, String), Item>,
        after: &BTreeMap<(String, String), Item>,
        transactional: &BTreeSet<(String, String)>,
    ) -> WriteCost {
        let mut cost = WriteCost::default();
        let keys: BTreeSet<&(String, String)> = before.keys().chain(after.keys()).collect();
        let kb = |bytes: usize| bytes.div_ceil(1024).max(1) as f64;
        for k in keys {
            let (old, new) = (before.get(k), after.get(k));
            if old == new {
                continue;
            }
            cost.items += 1;
            let size = old.map_or(0, item_size).max(new.map_or(0, item_size));
            let factor = if transactional.contains(k) { 2.0 } else { 1.0 };
            cost.table_units += factor * kb(size);
            for index in &self.indexes {
                let (o, n) = (
                    old.and_then(|i| self.entry(index, i)),
                    new.and_then(|i| self.entry(index, i)),
                );
                cost.index_units += match (&o, &n) {
                    (None, None) => 0.0,
                    (Some(o), None) => kb(item_size(o)),
                    (None, Some(n)) => kb(item_size(n)),
                    (Some(o), Some(n)) if o == n => 0.0,
                    (Some(o), Some(n)) => {
                        let same_key = index.keys.iter().all(|a| o.get(a) == n.get(a));
                        match same_key {
                            true => kb(item_size(o).max(item_size(n))),
                            false => kb(item_size(o)) + kb(item_size(n)),
                        }
                    }
                };
            }
        }
        cost
    }

    /// The index entry of `item`, if it has the index's keys.
    fn entry(&self, index: &Index, item: &Item) -> Option<Item> {
        if !index.keys.iter().all(|a| item.contains_key(a)) {
            return None;
        }
        let keep = |a: &str| match index.projection {
            ProjectionType::All => true,
            ProjectionType::Include => {
                a == "pk" || a == "sk" || index.keys.iter().any(|k| k == a) || index.include.iter().any(|i| i == a)
            }
            _ => a == "pk" || a == "sk" || index.keys.iter().any(|k| k == a),
        };
        Some(
            item.iter()
                .filter(|(a, _)| keep(a))
                .map(|(a, v)| (a.clone(), v.clone()))
                .collect(),
        )
    }
}

/// The (pk, sk) of every item a TransactWriteItems call wrote.
pub fn transactional_keys(calls: &[Call]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for c in calls.iter().filter(|c| c.op == "TransactWriteItems") {
        for op in c.request["TransactItems"].as_array().into_iter().flatten() {
            for kind in ["Put", "Update", "Delete"] {
                let spec = &op[kind];
                let item = if kind == "Put" { &spec["Item"] } else { &spec["Key"] };
                if let (Some(pk), Some(sk)) = (item["pk"]["S"].as_str(), item["sk"]["S"].as_str()) {
                    out.insert((pk.to_owned(), sk.to_owned()));
                }
            }
        }
    }
    out
}

/// Requests that write (for "write requests per erasure").
pub fn write_requests(calls: &[Call]) -> usize {
    const WRITES: [&str; 5] = [
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
    ];
    calls.iter().filter(|c| WRITES.contains(&c.op.as_str())).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_follow_dynamodbs_rules() {
        // The guide's examples: a string is its UTF-8 bytes, a number ~1 byte per 2 digits + 1.
        assert_eq!(json_item_size(&json!({"ab": {"S": "héllo"}})), 2 + 6);
        assert_eq!(json_item_size(&json!({"n": {"N": "12345"}})), 1 + 4);
        assert_eq!(
            json_item_size(&json!({"m": {"M": {"k": {"S": "v"}}}})),
            1 + 3 + 1 + 1 + 1
        );
        assert_eq!(json_item_size(&json!({"l": {"L": [{"BOOL": true}]}})), 1 + 3 + 1 + 1);
    }

    #[test]
    fn round_trips_count_overlapping_calls_once() {
        let t = Instant::now();
        let ms = |n| t + std::time::Duration::from_millis(n);
        let call = |s, e| Call {
            op: "Query".into(),
            request: Value::Null,
            response: None,
            start: ms(s),
            end: Some(ms(e)),
        };
        assert_eq!(round_trips(&[call(0, 10), call(11, 20), call(21, 30), call(22, 31)]), 3);
        assert_eq!(round_trips(&[call(0, 10), call(1, 12), call(13, 20)]), 2);
        assert_eq!(round_trips(&[]), 0);
    }

    #[test]
    fn reads_are_billed_per_4kb_and_halved_when_eventual() {
        let big = "x".repeat(5000);
        let get = Call {
            op: "GetItem".into(),
            request: json!({"ConsistentRead": true}),
            response: Some(json!({"Item": {"a": {"S": big}}})),
            start: Instant::now(),
            end: None,
        };
        assert_eq!(read_units_of(&get), 2.0);
        let query = Call {
            op: "Query".into(),
            request: json!({}),
            response: Some(json!({"Items": [{"a": {"S": "x"}}, {"a": {"S": "y"}}]})),
            start: Instant::now(),
            end: None,
        };
        assert_eq!(read_units_of(&query), 0.5);
    }
}
