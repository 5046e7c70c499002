//! What the functions share between an API Gateway event and the chat core:
//! request views, field extraction with client-safe errors, the frames sent to
//! WebSocket clients, and fan-out. The wire contract is `docs/protocol.md`.

pub mod authn;
pub mod client_frames;
pub mod cors;
pub mod delivery;
pub mod frames;
pub mod http;
pub mod json;
pub mod verdict;
pub mod ws;

/// Largest WebSocket frame API Gateway accepts (32 KB); the local gateway enforces it too
/// (docs/protocol.md, "Frame size").
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

/// A user agent cut to [`MAX_USER_AGENT_CHARS`].
pub fn clip_user_agent(ua: &str) -> String {
    ua.chars().take(MAX_USER_AGENT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_clipped_on_char_boundaries() {
        assert_eq!(clip_user_agent(&"é".repeat(600)).chars().count(), 512);
    }
}
