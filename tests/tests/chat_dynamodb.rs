//! The chat's rules through the real handlers, on DynamoDB (moto).
eurochat_tests::chat_suite!(eurochat_tests::backends::Dynamo::new().await);
