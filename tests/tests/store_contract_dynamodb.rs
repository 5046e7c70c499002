//! The storage contract against the DynamoDB store, on moto's server.
eurochat_tests::contract_suite!(eurochat_tests::backends::Dynamo::new().await);
