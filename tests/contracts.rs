//! The data contracts stay valid ODCS v3.1.0 (checked offline against the standard's JSON
//! Schema in ../shared/schemas) and say what domain.md says of the inputs.

mod common;

use flywheel_pipelines::contracts::{self, ColType};

fn odcs_schema() -> serde_json::Value {
    let candidates = [
        common::repo().join("../shared/schemas/odcs-json-schema-v3.1.0.json"),
        common::repo().join("tests/schemas/odcs-json-schema-v3.1.0.json"),
    ];
    let path = candidates
        .iter()
        .find(|p| p.exists())
        .expect("the ODCS JSON schema");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_contract_file_is_valid_odcs() {
    let validator = jsonschema::validator_for(&odcs_schema()).unwrap();
    let dir = common::repo().join("data-contracts");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            path.display(),
            errors.join("\n")
        );
        seen += 1;
    }
    assert!(
        seen >= 7,
        "expected a contract per input and output, found {seen}"
    );
    // Every compiled-in contract is one of these files, unchanged.
    for (name, text) in contracts::contract_texts() {
        let on_disk = std::fs::read_to_string(dir.join(format!("{name}.odcs.yaml"))).unwrap();
        assert_eq!(&on_disk, text);
        contracts::contract(name).unwrap();
    }
}

#[test]
fn input_contracts_say_what_domain_md_says() {
    let visits = contracts::contract("visits").unwrap();
    let revenue = visits.column("revenue").unwrap();
    assert_eq!(revenue.ty, ColType::Decimal(12, 2));
    assert_eq!(revenue.minimum, Some(0.0));
    assert!(visits.column("wait_minutes").map(|c| !c.required).unwrap());
    assert_eq!(
        visits.column("customer_id").unwrap().references,
        Some(("crm_customers".into(), "customer_id".into()))
    );
    assert_eq!(visits.row_rules.len(), 1);
    let events = contracts::contract("referral_events").unwrap();
    assert_eq!(
        events
            .column("event_type")
            .unwrap()
            .valid_values
            .as_ref()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        events
            .column("channel")
            .unwrap()
            .valid_values
            .as_ref()
            .unwrap()
            .len(),
        7
    );
    let nps = contracts::contract("nps_responses").unwrap();
    let score = nps.column("score").unwrap();
    assert_eq!((score.minimum, score.maximum), (Some(0.0), Some(10.0)));
    let crm = contracts::contract("crm_customers").unwrap();
    assert_eq!(crm.columns.len(), 14);
    assert!(crm.column("customer_id").unwrap().unique);
    assert_eq!(
        crm.column("segment")
            .unwrap()
            .valid_values
            .as_ref()
            .unwrap(),
        &["mass", "vip", "b2b"]
    );
}
