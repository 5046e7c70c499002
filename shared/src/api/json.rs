//! Reading request bodies: the JSON must be an object, and each field is taken
//! with its own check, so a client learns which field is wrong (by name, never
//! echoing its value) and nothing is stored.

use serde_json::{Map, Value};

use crate::domain::ValidationError;
use crate::error::{ApiError, ErrorCode};

/// A JSON object body.
pub type Object = Map<String, Value>;

/// Parses a body as a JSON object of at most `max_bytes`.
pub fn parse_object(body: &[u8], max_bytes: usize) -> Result<Object, ApiError> {
    if body.len() > max_bytes {
        return Err(ApiError {
            field: None,
            ..ApiError::new(ErrorCode::PayloadTooLarge, "request too large")
        });
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::new(ErrorCode::InvalidJson, "body is not UTF-8 text"))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::new(ErrorCode::InvalidJson, "body must be a JSON object")),
        Err(_) => Err(ApiError::new(ErrorCode::InvalidJson, "body is not valid JSON")),
    }
}

/// A required string field.
pub fn req_str<'a>(o: &'a Object, field: &'static str) -> Result<&'a str, ValidationError> {
    match o.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ValidationError::new(field, "is required")),
        Some(_) => Err(ValidationError::new(field, "must be a string")),
    }
}

/// An optional string field.
pub fn opt_str<'a>(o: &'a Object, field: &'static str) -> Result<Option<&'a str>, ValidationError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::new(field, "must be a string")),
    }
}

/// An optional object field.
pub fn opt_object<'a>(o: &'a Object, field: &'static str) -> Result<Option<&'a Object>, ValidationError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(ValidationError::new(field, "must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_must_be_small_utf8_json_objects() {
        assert_eq!(parse_object(b"[1]", 100).unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(parse_object(b"{", 100).unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(
            parse_object(&[0xff, 0xfe], 100).unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(parse_object(b"{}", 1).unwrap_err().code, ErrorCode::PayloadTooLarge);
        assert!(parse_object(br#"{"a":1}"#, 100).is_ok());
    }

    #[test]
    fn fields_are_checked_by_type_and_named() {
        let o = parse_object(br#"{"s":"x","n":5,"neg":-1,"b":true,"wrong":1}"#, 1000).unwrap();
        assert_eq!(req_str(&o, "s"), Ok("x"));
        assert_eq!(req_str(&o, "missing").unwrap_err().field, "missing");
        assert_eq!(req_str(&o, "wrong").unwrap_err().reason, "must be a string");
    }
}
