//! Authorization checked at use, through the real handlers, on the in-memory store.
eurochat_tests::auth_suite!(eurochat_tests::backends::Memory::default());
