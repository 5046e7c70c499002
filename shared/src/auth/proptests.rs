//! Tokens are untrusted input: property tests with generated strings.

use proptest::prelude::*;

use super::*;
use crate::error::{ApiError, ErrorCode};

fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,120}",
        "(vt1|at1)\\.[A-Za-z0-9_.=+/-]{0,120}",
        "vt1\\.ses_[0-9a-f]{32}\\.[A-Za-z0-9_-]{0,50}",
        "at1\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,50}",
    ]
}

proptest! {
    #[test]
    fn visitor_tokens_parse_or_refuse_as_unauthorized(token in token_like()) {
        if let Err(e) = PresentedVisitorToken::parse(&token) {
            prop_assert_eq!(ApiError::from(e).code, ErrorCode::Unauthorized);
        }
    }

    #[test]
    fn only_genuine_agent_tokens_verify(token in token_like()) {
        let keys = AgentTokenKeys::new(b"agent-token-secret-for-proptests-0123456789", None);
        let now = Timestamp::from_secs(1_800_000_000);
        match keys.verify(&token, now) {
            Ok(_) => prop_assert!(false, "a generated string verified: {token}"),
            Err(e) => prop_assert_eq!(ApiError::from(e).code, ErrorCode::Unauthorized),
        }
    }

    #[test]
    fn a_tampered_agent_token_never_verifies(flip in 0usize..200, bit in 0u8..8) {
        let keys = AgentTokenKeys::new(b"agent-token-secret-for-proptests-0123456789", None);
        let now = Timestamp::from_secs(1_800_000_000);
        let site = SiteId::parse("acme").unwrap();
        let agent = AgentId::parse("alice").unwrap();
        let token = keys.mint(&site, &agent, AgentRole::Agent, now, std::time::Duration::from_secs(3600));
        let mut bytes = token.clone().into_bytes();
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        if let Ok(tampered) = String::from_utf8(bytes)
            && tampered != token
        {
            prop_assert!(keys.verify(&tampered, now).is_err(), "{tampered}");
        }
    }
}
