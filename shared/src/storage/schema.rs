//! The table's physical definition, in one place: the DynamoDB store creates
//! tables from it (moto in tests, `--dynamodb-endpoint` locally, the admin
//! tool), and a test checks `template.yaml` declares the same keys, indexes and
//! TTL attribute.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use super::keys;
use super::{StoreError, dynamo::backend_error};

/// Attribute definitions (all key attributes are strings).
pub fn attribute_names() -> Vec<&'static str> {
    let mut v = vec![keys::PK, keys::SK];
    for g in keys::INDEXES {
        v.push(g.pk);
        v.push(g.sk);
    }
    v.push(keys::LSI1_SK);
    v
}

fn key(name: &str, kt: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kt)
        .build()
        .map_err(|_| StoreError::Backend {
            operation: "CreateTable",
            code: Some("BuildError".into()),
        })
}

/// Creates the table (on-demand, every index projecting only keys, see
/// [`keys::INDEXES`] and [`keys::LSI1`]) and
/// enables TTL on [`keys::TTL`]. Succeeds if the table already exists.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), StoreError> {
    let build_err = |_| StoreError::Backend {
        operation: "CreateTable",
        code: Some("BuildError".into()),
    };
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(keys::PK, KeyType::Hash)?)
        .key_schema(key(keys::SK, KeyType::Range)?);
    for name in attribute_names() {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_err)?,
        );
    }
    for g in keys::INDEXES {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(g.name)
                .key_schema(key(g.pk, KeyType::Hash)?)
                .key_schema(key(g.sk, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                .build()
                .map_err(build_err)?,
        );
    }
    req = req.local_secondary_indexes(
        LocalSecondaryIndex::builder()
            .index_name(keys::LSI1)
            .key_schema(key(keys::PK, KeyType::Hash)?)
            .key_schema(key(keys::LSI1_SK, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
            .build()
            .map_err(build_err)?,
    );
    match req.send().await {
        Ok(_) => {}
        Err(e) => {
            use aws_sdk_dynamodb::operation::create_table::CreateTableError;
            match e.into_service_error() {
                CreateTableError::ResourceInUseException(_) => return Ok(()),
                other => return Err(backend_error("CreateTable", &other)),
            }
        }
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(keys::TTL)
                .enabled(true)
                .build()
                .map_err(build_err)?,
        )
        .send()
        .await
        .map_err(|e| backend_error("UpdateTimeToLive", &e.into_service_error()))?;
    Ok(())
}
