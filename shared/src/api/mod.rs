//! What the functions share between an API Gateway event and the chat core:
//! request views, field extraction with client-safe errors, the frames sent to
//! WebSocket clients, and fan-out. The wire contract is `docs/protocol.md`.

pub mod agent_auth;
pub mod delivery;
pub mod frames;
pub mod http;
pub mod json;
pub mod ws;

/// Name of the cookie that carries the visitor token.
pub const VISITOR_COOKIE: &str = "eurochat_vt";

/// Largest WebSocket frame API Gateway accepts (32 KB); the local gateway enforces it too.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// Largest HTTP request body eurochat accepts.
pub const MAX_HTTP_BODY_BYTES: usize = 16 * 1024;

/// Longest user agent stored (longer ones are cut at a character boundary).
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// A header value as text, if present and valid.
pub fn header<'a>(headers: &'a ::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The value of cookie `name` in `Cookie` header values.
pub fn cookie<'a>(values: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    values
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A user agent cut to [`MAX_USER_AGENT_CHARS`].
pub fn clip_user_agent(ua: &str) -> String {
    ua.chars().take(MAX_USER_AGENT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        assert_eq!(cookie(["a=1; eurochat_vt=tok; b=2"], VISITOR_COOKIE), Some("tok"));
        assert_eq!(cookie(["a=1", "eurochat_vt=x"], VISITOR_COOKIE), Some("x"));
        assert_eq!(cookie(["eurochat_vtx=1"], VISITOR_COOKIE), None);
    }

    #[test]
    fn user_agents_are_clipped_on_char_boundaries() {
        assert_eq!(clip_user_agent(&"é".repeat(600)).chars().count(), 512);
    }
}
