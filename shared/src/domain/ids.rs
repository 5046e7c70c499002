//! Identifiers: validated newtypes over strings, and the random ids the
//! service issues. Every id from outside is parsed here before it reaches
//! storage, so a key can never be built from an unchecked string.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;

fn random_hex_id(prefix: &str) -> String {
    format!("{prefix}{}", crate::random::hex(&crate::random::random_bytes::<16>()))
}

fn is_prefixed_hex_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The validated value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Deserialising re-validates: stored or transported values are not trusted more
        // than request input.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// A site (tenant): the website the widget runs on. Chosen by the operator:
    /// 3 to 64 characters of lowercase ASCII letters, digits and inner hyphens.
    SiteId
);

impl SiteId {
    /// Validates a site id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (3..=64).contains(&s.len())
            && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "siteId",
                "must be 3-64 characters of a-z, 0-9 and inner '-'",
            ))
        }
    }
}

string_newtype!(
    /// A visitor's chat session: `ses_` and 128 random bits in hex.
    SessionId
);

impl SessionId {
    /// Validates a session id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if is_prefixed_hex_id(s, "ses_") {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new("sessionId", "is not a session id"))
        }
    }

    /// A fresh id from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(random_hex_id("ses_"))
    }
}

string_newtype!(
    /// An anonymous visitor: `vis_` and 128 random bits in hex, bound to no identity.
    VisitorId
);

impl VisitorId {
    /// Validates a visitor id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if is_prefixed_hex_id(s, "vis_") {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new("visitorId", "is not a visitor id"))
        }
    }

    /// A fresh id from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(random_hex_id("vis_"))
    }
}

string_newtype!(
    /// A site's agent: 1 to 64 characters of lowercase ASCII letters, digits, '-', '_' and '.'.
    AgentId
);

impl AgentId {
    /// Validates an agent id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "agentId",
                "must be 1-64 characters of a-z, 0-9, '-', '_', '.'",
            ))
        }
    }
}

string_newtype!(
    /// An API Gateway WebSocket connection id (opaque, base64-like, e.g. `L0SM9cOFvHcCIhw=`).
    ConnectionId
);

impl ConnectionId {
    /// Validates a connection id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new("connectionId", "is not a connection id"))
        }
    }
}

string_newtype!(
    /// The id a client gives a message so a retry is recognised: 1 to 64
    /// characters of ASCII letters, digits, '-', '_', '.', ':'.
    ClientMsgId
);

impl ClientMsgId {
    /// Validates a client message id.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "clientMsgId",
                "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'",
            ))
        }
    }
}

string_newtype!(
    /// A web origin the widget may run on, normalised to `scheme://host[:port]`
    /// (https, or http for localhost only).
    Origin
);

impl Origin {
    /// Validates and normalises an origin.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        const BAD: ValidationError =
            ValidationError::new("origin", "must be https://host[:port] (http only for localhost)");
        let raw = s.trim();
        // Browsers send `scheme://host[:port]` and nothing else. `url` would turn a
        // trailing `/`, `/.` or `/..` into `/`; an origin with any of them is not
        // one a browser sends, so it matches nothing (exact matching).
        if raw
            .split_once("://")
            .is_none_or(|(_, rest)| rest.contains(['/', '?', '#']))
        {
            return Err(BAD);
        }
        let url = url::Url::parse(raw).map_err(|_| BAD)?;
        let host = url.host_str().ok_or(BAD)?;
        let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && local);
        let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
        if !scheme_ok || !bare || !url.username().is_empty() || url.password().is_some() {
            return Err(BAD);
        }
        // `ascii_serialization` drops default ports and lower-cases the host,
        // so "https://Example.com:443" and "https://example.com" compare equal.
        Ok(Self(url.origin().ascii_serialization()))
    }

    /// An `Origin` header, matched exactly: a browser sends the canonical
    /// `scheme://host[:port]` (lower-case host, no default port, nothing after
    /// it), so anything the parser would have to normalise (`\`, `\.`, a tab,
    /// upper case, `:443`, percent-encoding) is not an origin a browser sent and
    /// matches no site. Sites' own origins (`put-site`) go through [`Origin::parse`].
    pub fn from_header(s: &str) -> Result<Self, ValidationError> {
        let origin = Self::parse(s)?;
        if origin.0 == s {
            Ok(origin)
        } else {
            Err(ValidationError::new(
                "origin",
                "must be exactly the canonical origin a browser sends",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_headers_match_exactly() {
        assert_eq!(
            Origin::from_header("https://acme.example").unwrap().as_str(),
            "https://acme.example"
        );
        assert!(Origin::from_header("http://localhost:8080").is_ok());
        for sent in [
            "https://acme.example/",
            "https://acme.example/.",
            "https://acme.example\\",
            "https://acme.example\\.",
            "https://ACME.example",
            "https://acme.example:443",
            "https://acme.ex\tample",
            "https://acme%2Eexample",
            "null",
        ] {
            assert!(Origin::from_header(sent).is_err(), "{sent:?}");
        }
        // A site's configured origin is normalised (an operator's typing), a header is not.
        assert_eq!(
            Origin::parse("https://Acme.example:443").unwrap().as_str(),
            "https://acme.example"
        );
    }

    #[test]
    fn site_id_accepts_slugs_and_refuses_the_rest() {
        assert!(SiteId::parse("acme-shop").is_ok());
        for bad in ["", "ab", "-abc", "abc-", "ABC", "a b c", "äbc", &"a".repeat(65)] {
            assert!(SiteId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn generated_ids_parse_back_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str()), Ok(a));
        assert!(VisitorId::parse(VisitorId::generate().as_str()).is_ok());
        assert!(
            SessionId::parse(VisitorId::generate().as_str()).is_err(),
            "a visitor id is not a session id"
        );
        assert!(SessionId::parse("ses_XYZ").is_err());
    }

    #[test]
    fn origin_normalises_and_refuses_insecure_or_pathy_values() {
        assert_eq!(
            Origin::parse("https://Shop.Example:443").unwrap().as_str(),
            "https://shop.example"
        );
        assert_eq!(
            Origin::parse("http://localhost:8080").unwrap().as_str(),
            "http://localhost:8080"
        );
        for bad in [
            "http://shop.example",
            "https://shop.example/path",
            "ftp://x.y",
            "not a url",
            "null",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deserialising_revalidates() {
        assert!(serde_json::from_str::<SiteId>("\"BAD SITE\"").is_err());
        assert!(serde_json::from_str::<ClientMsgId>("\"ok-1\"").is_ok());
    }
}
