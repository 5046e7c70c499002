//! `template.yaml` and the code must describe the same table and the same EU
//! region list: the store creates tables (moto, local runs) from
//! `chat_core::storage::schema`, AWS creates it from the template.

use std::collections::BTreeSet;

use chat_core::config::EU_REGIONS;
use chat_core::storage::{keys, schema};
use serde_norway::Value;

/// (index name, key schema, projection type).
type IndexDecl = (String, Vec<(String, String)>, String);

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).expect("read template.yaml");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

fn table(t: &Value) -> &Value {
    &t["Resources"]["ChatTable"]["Properties"]
}

fn key_schema(v: &Value) -> Vec<(String, String)> {
    v.as_sequence()
        .expect("KeySchema is a list")
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn table_keys_match_the_store() {
    let t = template();
    let props = table(&t);
    assert_eq!(props["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(
        key_schema(&props["KeySchema"]),
        vec![
            (keys::PK.to_owned(), "HASH".to_owned()),
            (keys::SK.to_owned(), "RANGE".to_owned())
        ]
    );
    let defined: BTreeSet<(String, String)> = props["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = schema::attribute_names()
        .into_iter()
        .map(|n| (n.to_owned(), "S".to_owned()))
        .collect();
    assert_eq!(defined, expected);
}

#[test]
fn indexes_match_the_store() {
    let t = template();
    let gsis = table(&t)["GlobalSecondaryIndexes"].as_sequence().expect("GSIs");
    let declared: Vec<IndexDecl> = gsis
        .iter()
        .map(|g| {
            (
                g["IndexName"].as_str().unwrap().to_owned(),
                key_schema(&g["KeySchema"]),
                g["Projection"]["ProjectionType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<IndexDecl> = keys::GSIS
        .iter()
        .map(|(name, p, s)| {
            (
                name.to_string(),
                vec![(p.to_string(), "HASH".to_owned()), (s.to_string(), "RANGE".to_owned())],
                "ALL".to_owned(),
            )
        })
        .collect();
    assert_eq!(declared, expected);
}

#[test]
fn ttl_pitr_encryption_and_protection_are_on() {
    let t = template();
    let props = table(&t);
    assert_eq!(
        props["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(keys::TTL)
    );
    assert_eq!(props["TimeToLiveSpecification"]["Enabled"].as_bool(), Some(true));
    assert_eq!(
        props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(props["SSESpecification"]["SSEType"].as_str(), Some("KMS"));
    assert!(
        !props["SSESpecification"]["KMSMasterKeyId"].is_null(),
        "a customer-managed key"
    );
    assert_eq!(props["DeletionProtectionEnabled"].as_bool(), Some(true));
}

#[test]
fn region_rule_equals_the_runtime_guard() {
    let t = template();
    let assertion = &t["Rules"]["EuRegionsOnly"]["Assertions"][0]["Assert"];
    // `!Contains [[regions...], !Ref AWS::Region]` parses as a tagged sequence.
    let Value::Tagged(tagged) = assertion else {
        panic!("Assert is not a !Contains: {assertion:?}")
    };
    assert_eq!(tagged.tag, "!Contains");
    let regions: Vec<&str> = tagged.value[0]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(regions, EU_REGIONS.to_vec());
    let Value::Tagged(reference) = &tagged.value[1] else {
        panic!("second argument is not a !Ref")
    };
    assert_eq!(
        (reference.tag.to_string().as_str(), reference.value.as_str()),
        ("!Ref", Some("AWS::Region"))
    );
}
