//! The chat's rules through the real handlers, on the in-memory store.
eurochat_tests::chat_suite!(eurochat_tests::backends::Memory::default());
