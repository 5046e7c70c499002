//! Custom CloudWatch metrics as Embedded Metric Format (EMF) log lines.
//!
//! A line printed to stdout in EMF becomes a metric in this region's
//! CloudWatch, with no SDK call and no network round trip. Only counts go
//! into a metric: names are fixed, values are numbers, the one dimension is
//! the function's name. Nothing personal can reach one.

use serde_json::{Map, Value, json};

/// The namespace of every eurochat metric (the template's alarms use it).
pub const NAMESPACE: &str = "eurochat";

/// One EMF document: `values` under `namespace`, with the dimension
/// `FunctionName = function`, at `timestamp_ms`.
pub fn emf_line(namespace: &str, function: &str, values: &[(&'static str, f64)], timestamp_ms: i64) -> String {
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["FunctionName"]],
                "Metrics": values.iter().map(|(name, _)| json!({ "Name": name, "Unit": "Count" })).collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert("FunctionName".into(), Value::String(function.to_owned()));
    for (name, value) in values {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

/// Prints `values` as one EMF line when running in Lambda (elsewhere there is no
/// CloudWatch agent to read it, and tests assert on [`emf_line`]).
pub fn emit(values: &[(&'static str, f64)], timestamp_ms: i64) {
    if let Ok(function) = std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
        println!("{}", emf_line(NAMESPACE, &function, values, timestamp_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_every_value_as_a_count_under_one_dimension() {
        let line = emf_line(
            "eurochat",
            "stack-retention",
            &[("Runs", 1.0), ("ItemsErased", 42.0)],
            1_800_000_000_000,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_800_000_000_000_i64);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "eurochat");
        assert_eq!(m["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            m["Metrics"],
            json!([{ "Name": "Runs", "Unit": "Count" }, { "Name": "ItemsErased", "Unit": "Count" }])
        );
        assert_eq!(v["FunctionName"], "stack-retention");
        assert_eq!((v["Runs"].as_f64(), v["ItemsErased"].as_f64()), (Some(1.0), Some(42.0)));
        assert!(!line.contains('\n'), "one log line");
    }
}
