//! The storage contract against the in-memory store.
eurochat_tests::contract_suite!(eurochat_tests::backends::Memory::default());
