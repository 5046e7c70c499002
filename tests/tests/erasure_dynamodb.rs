//! Erasure as a fence then a sweep, on DynamoDB (moto), checked with raw Scans.
eurochat_tests::erasure_suite!(eurochat_tests::backends::Dynamo::new().await);
