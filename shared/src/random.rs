//! Random bytes from the operating system's CSPRNG: a leaf module, so identifiers
//! (`domain`) and credentials (`auth`) draw from one source without importing
//! each other.

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
