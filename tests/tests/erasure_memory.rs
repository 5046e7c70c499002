//! Erasure as a fence then a sweep, on the in-memory store.
eurochat_tests::erasure_suite!(eurochat_tests::backends::Memory::default());
