//! Pagination cursors: the one encoding both stores and the GDPR export use. A cursor is a
//! position serialised as JSON and then base64url (no padding), opaque to
//! clients. What a position holds, and how it is checked against the query it
//! is offered to, is each store's business (the DynamoDB store binds it to the
//! queried partition, the in-memory store to the query's name).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Serialize, de::DeserializeOwned};

use super::StoreError;

/// Encodes a position; `None` only if it cannot be written as JSON (a map
/// with non-string keys), which no store's position is.
pub fn encode<T: Serialize>(position: &T) -> Option<String> {
    serde_json::to_vec(position).ok().map(|json| B64.encode(json))
}

/// Decodes a cursor into a position; anything that is not base64url JSON of
/// that shape is [`StoreError::InvalidCursor`].
pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, StoreError> {
    let raw = B64.decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
    serde_json::from_slice(&raw).map_err(|_| StoreError::InvalidCursor)
}

/// Whether a stored job checkpoint names `id`, in plain text or inside one of
/// the cursors the stores issue. Erasure resets such a checkpoint, so no item
/// outlives a subject's erasure holding one of their ids.
pub(crate) fn mentions(raw: &str, id: &str) -> bool {
    if raw.contains(id) {
        return true;
    }
    raw.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|t| t.len() >= 8)
        .filter_map(|t| B64.decode(t).ok())
        .any(|bytes| String::from_utf8_lossy(&bytes).contains(id))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::storage::keys;

    #[test]
    fn positions_round_trip_and_garbage_is_refused() {
        let pos = BTreeMap::from([(keys::PK.to_owned(), "x".to_owned())]);
        let c = encode(&pos).unwrap();
        assert_eq!(decode::<BTreeMap<String, String>>(&c), Ok(pos));
        for bad in ["", "!!!", "bm90IGpzb24"] {
            assert_eq!(
                decode::<BTreeMap<String, String>>(bad),
                Err(StoreError::InvalidCursor),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_checkpoint_mentions_an_id_in_plain_text_or_inside_a_cursor() {
        let id = "ses_0123456789abcdef0123456789abcdef";
        let cursor = encode(&BTreeMap::from([(keys::PK, format!("{}{id}", keys::SESSION_PREFIX))])).unwrap();
        assert!(mentions(&cursor, id));
        assert!(mentions(&format!("done:{id}"), id));
        assert!(!mentions(&cursor, "ses_ffffffffffffffffffffffffffffffff"));
    }
}
