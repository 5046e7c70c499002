//! GDPR export, erasure and retention through the real handlers, on the in-memory store.
eurochat_tests::gdpr_suite!(eurochat_tests::backends::Memory::default());
