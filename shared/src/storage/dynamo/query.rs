//! Queries: a [`QuerySpec`] describes one partition (of the table or of an
//! index, [`Gsi`]), run one page at a time or to the end. A page's cursor is
//! its `LastEvaluatedKey` (string attributes only) through the one cursor
//! encoding; decoding checks the key names and that the key stays in the
//! queried partition, so a client cannot steer a query elsewhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::operation::query::QueryError;
use serde::de::DeserializeOwned;

use super::DynamoStore;
use super::client::classify;
use super::item::{Item, attr_str, record, s};
use crate::storage::keys::{self, Gsi};
use crate::storage::{Page, StoreError, clamp_limit, cursor};

/// A Query, described once and run page by page.
pub(super) struct QuerySpec {
    index: Option<Gsi>,
    /// A local index: it can be read consistently, and its entries are read as keys.
    local: bool,
    /// The queried partition: (attribute, value).
    partition: (&'static str, String),
    condition: String,
    names: HashMap<String, String>,
    values: Item,
    forward: bool,
}

impl QuerySpec {
    /// All of a table partition.
    pub fn table(pk: String) -> Self {
        Self::new(None, keys::PK, pk)
    }

    /// All of a global index partition.
    pub fn index(gsi: Gsi, pk: String) -> Self {
        Self::new(Some(gsi), gsi.pk, pk)
    }

    /// All of a local index's entries in a table partition (its keys only).
    pub fn local(name: &'static str, pk: String) -> Self {
        let lsi = Gsi {
            name,
            pk: keys::PK,
            sk: keys::LSI1_SK,
        };
        Self {
            local: true,
            ..Self::new(Some(lsi), keys::PK, pk)
        }
    }

    fn new(index: Option<Gsi>, pk_attr: &'static str, pk: String) -> Self {
        Self {
            index,
            local: false,
            partition: (pk_attr, pk.clone()),
            condition: "#p = :p".into(),
            names: HashMap::from([("#p".to_owned(), pk_attr.to_owned())]),
            values: HashMap::from([(":p".to_owned(), s(pk))]),
            forward: true,
        }
    }

    /// Narrows the sort key: `op` is written with `#s` for the sort attribute
    /// and `:s` for `value` (and any further values added with [`Self::value`]).
    pub fn sort(mut self, op: &str, value: String) -> Self {
        let attr = self.index.map_or(keys::SK, |g| g.sk);
        self.condition.push_str(&format!(" AND {op}"));
        self.names.insert("#s".into(), attr.to_owned());
        self.values.insert(":s".into(), s(value));
        self
    }

    /// Another value for the sort condition.
    pub fn value(mut self, name: &str, value: String) -> Self {
        self.values.insert(name.to_owned(), s(value));
        self
    }

    /// Newest (highest sort key) first.
    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }

    /// The start key a cursor names, checked against this query: exactly the
    /// key attributes of its table or index, and in its partition.
    fn start_key(&self, cursor: Option<&str>) -> Result<Option<Item>, StoreError> {
        let mut names = vec![keys::PK, keys::SK];
        if let Some(g) = self.index {
            names.extend([g.pk, g.sk]);
        }
        let (attr, value) = &self.partition;
        start_key(cursor, &names, Some((attr, value)))
    }
}

/// Decodes a cursor into a start key with exactly the attributes `names`,
/// and, if given, the partition attribute's value; anything else is
/// [`StoreError::InvalidCursor`].
pub(super) fn start_key(
    cursor: Option<&str>,
    names: &[&str],
    partition: Option<(&str, &str)>,
) -> Result<Option<Item>, StoreError> {
    let Some(c) = cursor else { return Ok(None) };
    let map: BTreeMap<String, String> = cursor::decode(c)?;
    if map.keys().map(String::as_str).collect::<BTreeSet<_>>() != names.iter().copied().collect() {
        return Err(StoreError::InvalidCursor);
    }
    if let Some((attr, value)) = partition
        && map.get(attr).map(String::as_str) != Some(value)
    {
        return Err(StoreError::InvalidCursor);
    }
    Ok(Some(map.into_iter().map(|(k, v)| (k, s(v))).collect()))
}

/// The cursor of a page that ended at `lek` (`None` on the last page).
pub(super) fn next_cursor(lek: Option<Item>) -> Option<String> {
    let map: BTreeMap<String, String> = lek?
        .into_iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k, s.clone())))
        .collect();
    cursor::encode(&map)
}

impl DynamoStore {
    /// One Query request.
    pub(super) async fn query_page(
        &self,
        q: &QuerySpec,
        start: Option<Item>,
        limit: Option<i32>,
        consistent: bool,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(q.index.map(|g| g.name.to_owned()))
            .key_condition_expression(&q.condition)
            .set_expression_attribute_names(Some(q.names.clone()))
            .set_expression_attribute_values(Some(q.values.clone()))
            .scan_index_forward(q.forward)
            .consistent_read(consistent && (q.index.is_none() || q.local))
            .set_exclusive_start_key(start)
            .set_limit(limit)
            .send()
            .await
            .map_err(|e| classify!("Query", e, QueryError))?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// Every item of the query, page after page.
    pub(super) async fn query_all(&self, q: &QuerySpec, consistent: bool) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let (mut page, next) = self.query_page(q, start, None, consistent).await?;
            items.append(&mut page);
            match next {
                Some(n) => start = Some(n),
                None => return Ok(items),
            }
        }
    }

    /// The items a query's entries stand for: a table query's items themselves;
    /// a global index's entries are keys only (every index projects only keys),
    /// so the items are read with one consistent BatchGetItem per 100, in the
    /// index's order. An item deleted since its entry was read is left out.
    async fn resolve(&self, q: &QuerySpec, entries: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        if q.index.is_none() || q.local || entries.is_empty() {
            return Ok(entries);
        }
        let id = |i: &Item| (attr_string(i, keys::PK), attr_string(i, keys::SK));
        let order: Vec<(String, String)> = entries.iter().map(id).collect();
        let wanted = order
            .iter()
            .map(|(pk, sk)| super::item::key(pk.clone(), sk.clone()))
            .collect();
        let mut found: HashMap<(String, String), Item> =
            self.batch_get(wanted).await?.into_iter().map(|i| (id(&i), i)).collect();
        Ok(order.iter().filter_map(|k| found.remove(k)).collect())
    }

    /// Every record of the query, decoded.
    pub(super) async fn query_records<T: DeserializeOwned>(
        &self,
        q: &QuerySpec,
        consistent: bool,
    ) -> Result<Vec<T>, StoreError> {
        let entries = self.query_all(q, consistent).await?;
        self.resolve(q, entries)
            .await?
            .into_iter()
            .map(|i| record("Query", i))
            .collect()
    }

    /// One page of records (eventually consistent), resuming at `cursor`.
    pub(super) async fn records_page<T: DeserializeOwned>(
        &self,
        q: &QuerySpec,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<T>, StoreError> {
        let start = q.start_key(cursor)?;
        let (entries, lek) = self
            .query_page(q, start, Some(clamp_limit(limit) as i32), false)
            .await?;
        let items = self
            .resolve(q, entries)
            .await?
            .into_iter()
            .map(|i| record("Query", i))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next: next_cursor(lek),
        })
    }
}

fn attr_string(item: &Item, name: &str) -> String {
    attr_str(item, name).unwrap_or_default().to_owned()
}
