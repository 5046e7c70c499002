//! Free text from people: message text, email addresses and names. All three
//! are personal data, so their `Debug` never prints the value.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Default limit on a message's text, in bytes of UTF-8.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4096;

/// A chat message's text: not blank, no control characters but line breaks
/// and tabs, at most a configured number of UTF-8 bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageText(String);

impl MessageText {
    /// Validates message text against `max_bytes`.
    pub fn parse(s: &str, max_bytes: usize) -> Result<Self, ValidationError> {
        if s.len() > max_bytes {
            return Err(ValidationError::too_large(
                "text",
                "is longer than the message size limit",
            ));
        }
        if s.trim().is_empty() {
            return Err(ValidationError::new("text", "must not be empty"));
        }
        if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(ValidationError::new("text", "must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Message text is personal data: a stray `{:?}` in a log line must not print it.
impl fmt::Debug for MessageText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageText(<{} bytes>)", self.0.len())
    }
}

/// An email address given in a pre-chat form. Only the shape is checked
/// (one '@', a dotted domain, no spaces, at most 254 bytes); the domain part
/// is lower-cased so lookups by email are case-insensitive there.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Validates and normalises an email address.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        const BAD: ValidationError = ValidationError::new("email", "is not an email address");
        let s = s.trim();
        if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(BAD);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(BAD)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(BAD);
        }
        let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
        if !labels_ok {
            return Err(BAD);
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used for lookups: the whole address lower-cased.
    pub fn lookup_form(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A person's name from a pre-chat form: 1 to 100 characters, no control characters.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    /// Validates a name.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let t = s.trim();
        if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "must be 1-100 characters without control characters",
            ));
        }
        Ok(Self(t.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for PersonName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_limits() {
        assert!(MessageText::parse("hello\nworld\t!", 4096).is_ok());
        assert_eq!(MessageText::parse("   ", 4096).unwrap_err().field, "text");
        assert!(MessageText::parse("bell\u{7}", 4096).is_err());
        let err = MessageText::parse(&"é".repeat(2049), 4096).unwrap_err();
        assert!(err.too_large, "4098 bytes of UTF-8 exceed 4096");
        assert!(MessageText::parse(&"é".repeat(2048), 4096).is_ok());
    }

    #[test]
    fn debug_output_hides_personal_data() {
        let t = MessageText::parse("my secret text", 100).unwrap();
        let e = Email::parse("Jane.Doe@Example.COM").unwrap();
        let n = PersonName::parse("Jane Doe").unwrap();
        let shown = format!("{t:?} {e:?} {n:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("Jane") && !shown.contains("xample"),
            "{shown}"
        );
    }

    #[test]
    fn email_normalises_domain_only() {
        let e = Email::parse(" Jane.Doe@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Jane.Doe@example.com");
        assert_eq!(e.lookup_form(), "jane.doe@example.com");
        for bad in ["", "a", "a@b", "@b.c", "a b@c.d", "a@b..c", "a@.b"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
