//! Credentials: visitor session tokens, signed agent tokens, and keyed hashes
//! (pseudonyms) for values that must be matched without being stored readably.
//!
//! Visitor token: `vt1.<sessionId>.<43 chars base64url of 256 random bits>`. The
//! session id inside lets `$connect` read the one session it names (no index on
//! token hashes); only SHA-256 of the whole token is stored, compared in constant
//! time. A stolen table therefore yields no usable token.
//!
//! Agent token: `at1.<base64url(JSON claims)>.<base64url(HMAC-SHA256)>`, scoped to
//! one site, with a role and an expiry. Verification accepts the current secret
//! and, during a rotation, the previous one, and refuses an `iat` more than
//! [`MAX_CLOCK_SKEW`] in the future or a lifetime (`exp - iat`) over
//! [`MAX_AGENT_TOKEN_LIFETIME`]: a token is a bearer credential, and a bounded
//! lifetime bounds what a leaked one is worth.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Timestamp;
use crate::domain::{AgentId, AgentRole, SessionId, SiteId};

type HmacSha256 = Hmac<Sha256>;

pub use crate::random::random_bytes;

pub mod access;

/// Why a credential was refused. Clients see only the error code, never which
/// check failed beyond "expired" (so a widget knows to start a new session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a token of the expected shape.
    #[error("malformed token")]
    Malformed,
    /// Signature or hash does not match.
    #[error("invalid token")]
    Invalid,
    /// Valid but past its expiry.
    #[error("token expired")]
    Expired,
    /// Issued more than [`MAX_CLOCK_SKEW`] in the future.
    #[error("token issued in the future")]
    NotYetValid,
    /// Its lifetime is not positive or exceeds [`MAX_AGENT_TOKEN_LIFETIME`].
    #[error("token lifetime out of bounds")]
    BadLifetime,
}

impl AuthError {
    /// Stable reason code for security logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::Invalid => "token_invalid",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::BadLifetime => "token_lifetime",
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    crate::random::hex(&Sha256::digest(data))
}

/// A freshly issued visitor token. `token` goes to the visitor once; only `hash` is stored.
pub struct IssuedVisitorToken {
    /// The secret token for the widget.
    pub token: String,
    /// SHA-256 of the token, hex: what the session stores.
    pub hash: String,
}

impl std::fmt::Debug for IssuedVisitorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedVisitorToken(<redacted>)")
    }
}

/// Issues a new visitor token for `session` (256 bits from the OS CSPRNG).
pub fn issue_visitor_token(session: &SessionId) -> IssuedVisitorToken {
    let secret: [u8; 32] = random_bytes();
    let token = format!("vt1.{}.{}", session.as_str(), B64.encode(secret));
    let hash = sha256_hex(token.as_bytes());
    IssuedVisitorToken { token, hash }
}

/// A visitor token as presented by a client, parsed but not yet verified.
pub struct PresentedVisitorToken {
    session_id: SessionId,
    raw: String,
}

impl std::fmt::Debug for PresentedVisitorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresentedVisitorToken(<redacted>)")
    }
}

impl PresentedVisitorToken {
    /// Parses a presented token's shape.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        let mut parts = s.split('.');
        let (Some("vt1"), Some(sid), Some(secret), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let session_id = SessionId::parse(sid).map_err(|_| AuthError::Malformed)?;
        if secret.len() != 43 || B64.decode(secret).is_err() {
            return Err(AuthError::Malformed);
        }
        Ok(Self {
            session_id,
            raw: s.to_owned(),
        })
    }

    /// The session the token claims to open; verify before trusting it.
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// Whether this token hashes to `stored_hash`, compared in constant time.
    pub fn matches(&self, stored_hash: &str) -> bool {
        let computed = sha256_hex(self.raw.as_bytes());
        bool::from(computed.as_bytes().ct_eq(stored_hash.as_bytes()))
    }

    /// Verifies against a session's stored hash and token expiry.
    pub fn verify(&self, stored_hash: &str, token_expires_at: Timestamp, now: Timestamp) -> Result<(), AuthError> {
        if !self.matches(stored_hash) {
            return Err(AuthError::Invalid);
        }
        if token_expires_at <= now {
            return Err(AuthError::Expired);
        }
        Ok(())
    }
}

/// What an agent token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentClaims {
    /// Format version (1).
    pub v: u8,
    /// The one site the token is valid for.
    pub site: SiteId,
    /// The agent.
    pub sub: AgentId,
    /// The agent's role.
    pub role: AgentRole,
    /// Issued at, epoch seconds.
    pub iat: i64,
    /// Expires at, epoch seconds.
    pub exp: i64,
}

/// Mints and verifies agent tokens.
///
/// Clones share one key set, so a rotation picked up while warm
/// ([`AgentTokenKeys::replace`], from `crate::secrets`) reaches every holder.
#[derive(Clone)]
pub struct AgentTokenKeys {
    keys: std::sync::Arc<std::sync::RwLock<KeyPair>>,
}

struct KeyPair {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for AgentTokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentTokenKeys(<redacted>)")
    }
}

/// Shortest agent token secret accepted (256 bits, the HMAC-SHA256 block strength).
pub const MIN_SECRET_BYTES: usize = 32;

/// Fewest distinct byte values a secret must contain. A random secret of 32 or
/// more bytes, even hex-encoded (16 symbols), has far more; a typed placeholder
/// such as `aaaa…` or `abab…` has fewer.
pub const MIN_SECRET_DISTINCT_BYTES: usize = 10;

/// How far in the future an agent token's `iat` may lie: clocks of the minting
/// machine and of Lambda may disagree a little, never by more than this.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

/// The longest agent token lifetime (`exp - iat`) accepted: 7 days. Revocation
/// (`eurochat-admin revoke-tokens`) takes effect at once; this bounds what a
/// leaked token that nobody noticed is worth. `eurochat-admin mint-token` mints
/// no longer ones.
pub const MAX_AGENT_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Why a secret is too weak to use, or `None` if it is acceptable. The rule:
/// at least [`MIN_SECRET_BYTES`] bytes, at least [`MIN_SECRET_DISTINCT_BYTES`]
/// distinct byte values, and not one shorter string repeated (`abcabcabc…`).
pub fn secret_weakness(secret: &[u8]) -> Option<&'static str> {
    if secret.len() < MIN_SECRET_BYTES {
        return Some("must be at least 32 bytes");
    }
    let distinct = secret.iter().collect::<std::collections::BTreeSet<_>>().len();
    if distinct < MIN_SECRET_DISTINCT_BYTES {
        return Some("has too little variety (fewer than 10 distinct bytes); use a random secret");
    }
    let repeats = (1..=secret.len() / 2).any(|p| secret.iter().skip(p).zip(secret).all(|(a, b)| a == b));
    if repeats {
        return Some("is a repeated pattern; use a random secret");
    }
    None
}

impl AgentTokenKeys {
    /// Keys from the current secret and, while rotating, the previous one.
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Self {
        Self {
            keys: std::sync::Arc::new(std::sync::RwLock::new(KeyPair {
                current: current.to_vec(),
                previous: previous.map(<[u8]>::to_vec),
            })),
        }
    }

    /// Keys for a function that was not granted the agent token secret: a random
    /// key of this process's own. Every real token fails to verify against it (the
    /// function fails closed), without an `Option` in every caller.
    pub fn unusable() -> Self {
        Self::new(&random_bytes::<32>(), None)
    }

    /// Swaps in a rotated key set (current and, while rotating, previous) for every clone.
    pub fn replace(&self, current: &[u8], previous: Option<&[u8]>) {
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *keys = KeyPair {
            current: current.to_vec(),
            previous: previous.map(<[u8]>::to_vec),
        };
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyPair> {
        // A panic while holding the lock cannot leave a half-written pair: `replace`
        // assigns a whole value.
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mac(key: &[u8], msg: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(msg);
        m
    }

    /// Mints a token for `agent` of `site` valid from `now` for `ttl`.
    pub fn mint(
        &self,
        site: &SiteId,
        agent: &AgentId,
        role: AgentRole,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> String {
        let claims = AgentClaims {
            v: 1,
            site: site.clone(),
            sub: agent.clone(),
            role,
            iat: now.epoch_seconds(),
            exp: now.plus(ttl).epoch_seconds(),
        };
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let signed = format!("at1.{}", B64.encode(json));
        let tag = Self::mac(&self.read().current, signed.as_bytes())
            .finalize()
            .into_bytes();
        format!("{signed}.{}", B64.encode(tag))
    }

    /// Verifies a presented agent token and returns its claims.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<AgentClaims, AuthError> {
        let (signed, tag_b64) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let payload_b64 = signed.strip_prefix("at1.").ok_or(AuthError::Malformed)?;
        let tag = B64.decode(tag_b64).map_err(|_| AuthError::Malformed)?;
        let keys = self.read();
        let ok = std::iter::once(&keys.current)
            .chain(keys.previous.as_ref())
            .any(|key| Self::mac(key, signed.as_bytes()).verify_slice(&tag).is_ok());
        drop(keys);
        if !ok {
            return Err(AuthError::Invalid);
        }
        let json = B64.decode(payload_b64).map_err(|_| AuthError::Malformed)?;
        let claims: AgentClaims = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
        if claims.v != 1 {
            return Err(AuthError::Malformed);
        }
        let lifetime = claims.exp.saturating_sub(claims.iat);
        if lifetime <= 0 || lifetime > MAX_AGENT_TOKEN_LIFETIME.as_secs() as i64 {
            return Err(AuthError::BadLifetime);
        }
        if claims.iat > now.plus(MAX_CLOCK_SKEW).epoch_seconds() {
            return Err(AuthError::NotYetValid);
        }
        if claims.exp <= now.epoch_seconds() {
            return Err(AuthError::Expired);
        }
        Ok(claims)
    }
}

/// Which limit a rate-limit key counts for, so two limits on the same client
/// never share a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// `$connect`, per IP.
    Connect,
    /// `POST /v1/sessions` creating a session, per IP.
    CreateSession,
    /// `POST /v1/gdpr/export`, per token holder.
    Export,
}

impl RateScope {
    /// The scope's stable name, part of the keyed hash.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::CreateSession => "create-session",
            Self::Export => "export",
        }
    }
}

/// Whose token a per-token limit counts.
#[derive(Debug, Clone, Copy)]
pub enum TokenHolder<'a> {
    /// A visitor, by the session their token opens.
    Session(&'a SessionId),
    /// An agent of a site.
    Agent(&'a SiteId, &'a crate::domain::AgentId),
}

/// What of an IP a per-IP limit counts: the IPv4 address, or the IPv6 /64.
fn rate_network(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(net))
        }
    }
}

/// Keyed hashes (HMAC-SHA256) that let eurochat match a value without storing it
/// readably: the audit trail's subject, email lookups, rate-limit counters (per IP, per token holder).
/// Each use has its own label so a hash from one purpose is useless for another.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<redacted>)")
    }
}

impl Pseudonymizer {
    /// A pseudonymizer with the given secret key.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// A pseudonymizer for a function that was not granted the pseudonym key: a
    /// random key of this process's own, so nothing it could hash links to any
    /// stored pseudonym.
    pub fn unusable() -> Self {
        Self::new(&random_bytes::<32>())
    }

    fn hash(&self, label: &str, parts: &[&str]) -> String {
        let mut m = AgentTokenKeys::mac(&self.key, label.as_bytes());
        for p in parts {
            // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p.as_bytes());
        }
        crate::random::hex(&m.finalize().into_bytes())
    }

    /// The audit trail's name for a data subject (a visitor, by site).
    pub fn subject(&self, site: &SiteId, visitor_id: &str) -> String {
        self.hash("eurochat/subject/v1", &[site.as_str(), visitor_id])
    }

    /// The lookup key for a pre-chat email within a site.
    pub fn email_lookup(&self, site: &SiteId, email: &crate::domain::Email) -> String {
        self.hash("eurochat/email/v1", &[site.as_str(), &email.lookup_form()])
    }

    /// The rate-limit key for a client network under one limit: the IPv4
    /// address, or the IPv6 /64 (one host or home owns a whole /64 and can
    /// pick any address in it, so counting per address would not limit it).
    /// An IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn ip_key(&self, scope: RateScope, ip: std::net::IpAddr) -> String {
        self.hash("eurochat/rate-ip/v2", &[scope.as_str(), &rate_network(ip)])
    }

    /// The rate-limit key for a bearer token's holder under one limit: a
    /// visitor's session, or an agent of a site.
    pub fn holder_key(&self, scope: RateScope, holder: TokenHolder<'_>) -> String {
        match holder {
            TokenHolder::Session(session) => self.hash(
                "eurochat/rate-holder/v1",
                &[scope.as_str(), "session", session.as_str()],
            ),
            TokenHolder::Agent(site, agent) => self.hash(
                "eurochat/rate-holder/v1",
                &[scope.as_str(), "agent", site.as_str(), agent.as_str()],
            ),
        }
    }

    /// A short keyed hash of a source IP for security logs: stable within a
    /// deployment (so an operator can group an attacker's requests), not
    /// reversible without the key, and distinct from the rate-limit key.
    pub fn ip_tag(&self, ip: std::net::IpAddr) -> String {
        let mut h = self.hash("eurochat/ip-tag/v1", &[&ip.to_string()]);
        h.truncate(16);
        h
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn visitor_token_round_trip_stores_only_a_hash() {
        let sid = SessionId::generate();
        let issued = issue_visitor_token(&sid);
        assert!(!issued.hash.contains(issued.token.rsplit('.').next().unwrap()));
        assert_eq!(issued.hash.len(), 64);
        let presented = PresentedVisitorToken::parse(&issued.token).unwrap();
        assert_eq!(presented.session_id(), &sid);
        let now = Timestamp::from_secs(10);
        assert_eq!(presented.verify(&issued.hash, Timestamp::from_secs(11), now), Ok(()));
        assert_eq!(presented.verify(&issued.hash, now, now), Err(AuthError::Expired));
        let other = issue_visitor_token(&sid);
        assert_eq!(
            presented.verify(&other.hash, Timestamp::from_secs(11), now),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn visitor_tokens_carry_256_random_bits() {
        let sid = SessionId::generate();
        let a = issue_visitor_token(&sid).token;
        let b = issue_visitor_token(&sid).token;
        assert_ne!(a, b);
        let secret = a.rsplit('.').next().unwrap();
        assert_eq!(B64.decode(secret).unwrap().len(), 32);
    }

    #[test]
    fn malformed_visitor_tokens_are_refused() {
        let sid = SessionId::generate();
        for bad in [
            "".to_owned(),
            "vt1".to_owned(),
            format!("vt2.{sid}.{}", "A".repeat(43)),
            format!("vt1.{sid}.short"),
            format!("vt1.not-a-session.{}", "A".repeat(43)),
            format!("vt1.{sid}.{}.extra", "A".repeat(43)),
        ] {
            assert!(PresentedVisitorToken::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn agent_tokens_verify_scope_expiry_and_rotation() {
        let site = SiteId::parse("acme").unwrap();
        let agent = AgentId::parse("alice").unwrap();
        let now = Timestamp::from_secs(1_000);
        let old = AgentTokenKeys::new(&[1; 32], None);
        let token = old.mint(&site, &agent, AgentRole::Admin, now, Duration::from_secs(60));
        let claims = old.verify(&token, now).unwrap();
        assert_eq!(
            (claims.site, claims.sub, claims.role),
            (site.clone(), agent.clone(), AgentRole::Admin)
        );
        assert_eq!(
            old.verify(&token, now.plus(Duration::from_secs(60))),
            Err(AuthError::Expired)
        );

        let rotated = AgentTokenKeys::new(&[2; 32], Some(&[1; 32]));
        assert!(
            rotated.verify(&token, now).is_ok(),
            "previous secret still accepted while rotating"
        );
        let done = AgentTokenKeys::new(&[2; 32], None);
        assert_eq!(done.verify(&token, now), Err(AuthError::Invalid));
    }

    #[test]
    fn tampered_agent_tokens_are_refused() {
        let keys = AgentTokenKeys::new(&[7; 32], None);
        let site = SiteId::parse("acme").unwrap();
        let now = Timestamp::from_secs(1_000);
        let token = keys.mint(
            &site,
            &AgentId::parse("bob").unwrap(),
            AgentRole::Agent,
            now,
            Duration::from_secs(60),
        );
        // Forge an admin role with the same signature.
        let (signed, tag) = token.rsplit_once('.').unwrap();
        let payload = B64.decode(signed.strip_prefix("at1.").unwrap()).unwrap();
        let forged_payload = String::from_utf8(payload).unwrap().replace("\"agent\"", "\"admin\"");
        let forged = format!("at1.{}.{tag}", B64.encode(forged_payload));
        assert_eq!(keys.verify(&forged, now), Err(AuthError::Invalid));
        for bad in ["", "at1.", "at1.x.y", "vt1.a.b", "at1..."] {
            assert!(keys.verify(bad, now).is_err(), "{bad:?}");
        }
    }

    fn claims_token(keys: &AgentTokenKeys, iat: i64, exp: i64) -> String {
        // Signs arbitrary claims the way `mint` does, to test what `mint` never produces.
        let claims = AgentClaims {
            v: 1,
            site: SiteId::parse("acme").unwrap(),
            sub: AgentId::parse("alice").unwrap(),
            role: AgentRole::Agent,
            iat,
            exp,
        };
        let signed = format!("at1.{}", B64.encode(serde_json::to_vec(&claims).unwrap()));
        let tag = AgentTokenKeys::mac(&keys.read().current, signed.as_bytes())
            .finalize()
            .into_bytes();
        format!("{signed}.{}", B64.encode(tag))
    }

    #[test]
    fn agent_tokens_issued_in_the_future_are_refused_beyond_the_skew() {
        let keys = AgentTokenKeys::new(&[7; 32], None);
        let now = Timestamp::from_secs(10_000);
        let skew = MAX_CLOCK_SKEW.as_secs() as i64;
        let within = claims_token(&keys, 10_000 + skew, 10_000 + skew + 3600);
        assert!(keys.verify(&within, now).is_ok());
        let beyond = claims_token(&keys, 10_000 + skew + 1, 10_000 + skew + 3600);
        assert_eq!(keys.verify(&beyond, now), Err(AuthError::NotYetValid));
    }

    #[test]
    fn agent_token_lifetimes_are_bounded() {
        let keys = AgentTokenKeys::new(&[7; 32], None);
        let now = Timestamp::from_secs(10_000);
        let max = MAX_AGENT_TOKEN_LIFETIME.as_secs() as i64;
        assert!(keys.verify(&claims_token(&keys, 10_000, 10_000 + max), now).is_ok());
        for (iat, exp) in [(10_000, 10_000 + max + 1), (10_000, 10_000), (10_000, 9_000)] {
            assert_eq!(
                keys.verify(&claims_token(&keys, iat, exp), now),
                Err(AuthError::BadLifetime),
                "{iat}..{exp}"
            );
        }
        let minted = keys.mint(
            &SiteId::parse("acme").unwrap(),
            &AgentId::parse("alice").unwrap(),
            AgentRole::Agent,
            Timestamp::from_millis(10_000_500),
            MAX_AGENT_TOKEN_LIFETIME,
        );
        assert!(
            keys.verify(&minted, now).is_ok(),
            "the longest mintable lifetime verifies"
        );
    }

    #[test]
    fn weak_secrets_are_named() {
        assert_eq!(secret_weakness(b"short"), Some("must be at least 32 bytes"));
        assert!(secret_weakness(&[b'a'; 40]).unwrap().contains("variety"));
        assert!(secret_weakness(b"abcdefghijklmnopqrstuvwxyz0123456789").is_none());
        assert!(
            secret_weakness(b"0123456789abcdef0123456789abcdef")
                .unwrap()
                .contains("repeated")
        );
        assert!(
            secret_weakness(b"0123456789ab0123456789ab0123456789ab")
                .unwrap()
                .contains("repeated")
        );
        // Random secrets, hex-encoded (the local gateway's), base64, or Secrets Manager's generated letters and digits, pass.
        let hex = crate::random::hex(&random_bytes::<32>());
        assert_eq!(secret_weakness(hex.as_bytes()), None);
        assert_eq!(secret_weakness(B64.encode(random_bytes::<48>()).as_bytes()), None);
    }

    #[test]
    fn pseudonyms_are_keyed_and_purpose_bound() {
        let p = Pseudonymizer::new(&[9; 32]);
        let q = Pseudonymizer::new(&[8; 32]);
        let site = SiteId::parse("acme").unwrap();
        let email = crate::domain::Email::parse("A@B.example").unwrap();
        assert_eq!(
            p.email_lookup(&site, &email),
            p.email_lookup(&site, &crate::domain::Email::parse("a@b.example").unwrap())
        );
        assert_ne!(p.email_lookup(&site, &email), q.email_lookup(&site, &email));
        assert_ne!(
            p.subject(&site, "x"),
            p.ip_key(RateScope::Connect, "127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn ip_rate_keys_count_ipv4_per_address_and_ipv6_per_64() {
        let p = Pseudonymizer::new(&[9; 32]);
        let key = |ip: &str| p.ip_key(RateScope::Connect, ip.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
        assert_eq!(key("::ffff:203.0.113.7"), key("203.0.113.7"));
        assert_ne!(
            key("203.0.113.7"),
            p.ip_key(RateScope::CreateSession, "203.0.113.7".parse().unwrap()),
            "each limit has its own counter"
        );
        assert!(!key("203.0.113.7").contains("203.0.113"), "the key is a keyed hash");
        assert_eq!(
            rate_network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn holder_rate_keys_tell_visitors_and_agents_apart() {
        let p = Pseudonymizer::new(&[9; 32]);
        let site = SiteId::parse("acme").unwrap();
        let agent = crate::domain::AgentId::parse("alice").unwrap();
        let sid = SessionId::generate();
        let a = p.holder_key(RateScope::Export, TokenHolder::Agent(&site, &agent));
        let v = p.holder_key(RateScope::Export, TokenHolder::Session(&sid));
        assert_ne!(a, v);
        assert!(!v.contains(sid.as_str()) && !a.contains("alice"));
        assert_eq!(v, p.holder_key(RateScope::Export, TokenHolder::Session(&sid)));
    }
}

/// Tokens are untrusted input: any string, parsed or verified, is an answer
/// (never a panic), and only a genuine token is accepted.
#[cfg(test)]
mod proptests;
