//! Authorization checked at use, through the real handlers, on DynamoDB (moto).
eurochat_tests::auth_suite!(eurochat_tests::backends::Dynamo::new().await);
