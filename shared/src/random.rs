//! Random bytes from the operating system's CSPRNG, and the one hex encoding:
//! a leaf module, so identifiers (`domain`) and credentials (`auth`) draw from
//! one source without importing each other.

/// `N` bytes from the operating system's CSPRNG.
///
/// # Panics
/// If the OS cannot supply randomness. Nothing secure can be issued then, and
/// aborting the invocation is safer than a guessable token.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the OS CSPRNG is unavailable");
    buf
}

/// Lower-case hex of `bytes` (ids, hashes, secrets made for local runs).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
        assert_ne!(random_bytes::<16>(), random_bytes::<16>());
    }
}
