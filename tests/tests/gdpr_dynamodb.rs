//! GDPR export, erasure and retention through the real handlers, on DynamoDB (moto).
eurochat_tests::gdpr_suite!(eurochat_tests::backends::Dynamo::new().await);
