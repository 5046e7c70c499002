//! `scripts/deploy-function` agrees with the code and the template it works
//! against: its EU region list is `chat_core::config::EU_REGIONS`, it refuses
//! every secret-value and local-mode variable, and every function crate it
//! accepts has the `<Name>FunctionName` / `<Name>FunctionRoleArn` outputs it
//! reads. (Running it needs the AWS CLI and a stack; docs/deploy.md says how it
//! was checked.)

use std::path::Path;
use std::process::Command;

use chat_core::config::{EU_REGIONS, vars};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn script() -> String {
    std::fs::read_to_string(root().join("scripts/deploy-function")).expect("scripts/deploy-function")
}

/// The words of the bash array `NAME=(...)` in the script.
fn bash_array(text: &str, name: &str) -> Vec<String> {
    let start = text
        .find(&format!("\n{name}=("))
        .unwrap_or_else(|| panic!("{name} in the script"));
    let body = &text[start + name.len() + 3..];
    let body = &body[..body.find(')').expect("closing parenthesis")];
    body.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_script_parses_and_knows_the_eu_regions() {
    let status = Command::new("bash")
        .arg("-n")
        .arg(root().join("scripts/deploy-function"))
        .status()
        .expect("bash");
    assert!(status.success(), "bash -n scripts/deploy-function");
    assert_eq!(bash_array(&script(), "EU_REGIONS"), EU_REGIONS.to_vec());
}

#[test]
fn the_script_refuses_secret_values_and_local_mode_settings() {
    let forbidden = bash_array(&script(), "FORBIDDEN_VARS");
    for var in [
        vars::AGENT_TOKEN_SECRET,
        vars::AGENT_TOKEN_SECRET_PREVIOUS,
        vars::PSEUDONYM_KEY,
        vars::LOCAL_MODE,
        vars::DYNAMODB_ENDPOINT,
        vars::APIGW_ENDPOINT,
        vars::SECRETSMANAGER_ENDPOINT,
    ] {
        assert!(forbidden.iter().any(|v| v == var), "{var} is not in FORBIDDEN_VARS");
    }
}

#[test]
fn every_function_crate_has_the_outputs_the_script_reads() {
    let template: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml"))
            .expect("template.yaml parses");
    let outputs = &template["Outputs"];
    let mut crates = 0;
    for entry in std::fs::read_dir(root().join("functions")).expect("functions/") {
        let dir = entry.expect("directory entry").path();
        if !dir.join("Cargo.toml").is_file() {
            continue;
        }
        crates += 1;
        let krate = dir.file_name().unwrap().to_string_lossy().into_owned();
        // What the script's awk does: create-session -> CreateSession.
        let name: String = krate
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            })
            .collect();
        for output in [format!("{name}FunctionName"), format!("{name}FunctionRoleArn")] {
            assert!(
                outputs.get(&output).is_some(),
                "template.yaml has no output {output} for functions/{krate}"
            );
        }
    }
    assert!(crates >= 8, "found {crates} function crates");
    for output in ["TableName", "AgentTokenSecretArn", "PseudonymKeySecretArn"] {
        assert!(outputs.get(output).is_some(), "template.yaml has no output {output}");
    }
}
