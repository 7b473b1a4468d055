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
    // Every file is compiled in, and every compiled-in contract is one of these files, unchanged.
    assert_eq!(
        seen,
        contracts::contract_texts().len(),
        "every contract file must be embedded (pipelines/build.rs lists data-contracts/)"
    );
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

/// The catalog is found, not kept: every published table has exactly one contract and, when SQL
/// builds it, exactly one file in sql/; every SQL file that is not intermediate (`int_`) or a
/// training set (`train_`) is a published table with a contract. Adding a table is one SQL file
/// plus one contract.
#[test]
fn every_published_table_has_one_sql_file_and_one_contract_and_back() {
    use flywheel_pipelines::contracts::Role;
    let sql_dir = common::repo().join("sql");
    let mut sql_tables: Vec<String> = std::fs::read_dir(&sql_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter_map(|f| f.strip_suffix(".sql").map(str::to_string))
        .filter(|n| !n.starts_with("int_") && !n.starts_with("train_"))
        .collect();
    sql_tables.sort();
    let published = contracts::published().unwrap();
    let mut by_sql: Vec<String> = published
        .iter()
        .filter(|c| matches!(&c.role, Role::Published(p) if p.producer == "sql"))
        .map(|c| c.table.clone())
        .collect();
    by_sql.sort();
    assert_eq!(
        sql_tables, by_sql,
        "published SQL files and contracts with producer sql must match one to one"
    );
    assert!(sql_tables.len() >= 10, "{sql_tables:?}");
    // The other published tables are built by Rust steps and have no SQL file.
    for c in &published {
        let Role::Published(p) = &c.role else {
            unreachable!()
        };
        let has_sql = sql_dir.join(format!("{}.sql", c.table)).exists();
        assert_eq!(has_sql, p.producer == "sql", "{}", c.table);
        assert!(
            ["sql", "scoring", "ingest"].contains(&p.producer.as_str()),
            "{}: producer {}",
            c.table,
            p.producer
        );
        assert_eq!(p.partition, "dt", "{}", c.table);
    }
    // Every contract is either an input or a published table; the inputs keep their order.
    assert_eq!(
        contracts::inputs(),
        [
            "crm_customers",
            "visits",
            "nps_responses",
            "referral_events"
        ]
    );
    assert_eq!(
        published.len() + contracts::inputs().len(),
        contracts::contract_texts().len()
    );
    // Every SQL file (published, intermediate or training) opens with its own name.
    for entry in std::fs::read_dir(&sql_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(&format!("-- {name}")),
            "sql/{name}.sql must open with `-- {name}`"
        );
        for part in ["Grain:", "Inputs:", "Contract:"] {
            assert!(text.contains(part), "sql/{name}.sql header lacks {part}");
        }
    }
}

/// A one-row batch of `contract`'s columns from one CSV line (empty = null). Every field is
/// nullable, so a null in a required column reaches the output check (as a computed table's
/// would) instead of being refused by Arrow.
fn one_row(contract: &contracts::Contract, line: &str) -> arrow::array::RecordBatch {
    let fields: Vec<arrow::datatypes::Field> = contract
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let text = format!("{}\n{line}\n", names.join(","));
    let mut reader = arrow::csv::ReaderBuilder::new(schema)
        .with_header(true)
        .with_null_regex(regex::Regex::new("^$").unwrap())
        .build(std::io::Cursor::new(text))
        .unwrap();
    reader.next().unwrap().unwrap()
}

/// The output check covers the whole contract: types, required, unique, enumerations and
/// ranges. Each broken table must be refused with a message naming the column.
#[test]
fn output_contract_checks_enumerations_ranges_required_and_unique() {
    let kpis = contracts::contract("referral_kpis").unwrap();
    let cols = kpis.columns.len();
    assert_eq!(
        cols, 7,
        "dt, scope, kpi, numerator, denominator, value, band"
    );
    let row = |line: &str| vec![one_row(&kpis, line)];
    let good = row("2026-06-01,network,referral_rate,3,10,0.3,excellent");
    kpis.check_output(&good, &good[0].schema()).unwrap();
    let refused = |c: &contracts::Contract, batches: Vec<arrow::array::RecordBatch>| {
        c.check_output(&batches, &batches[0].schema())
            .unwrap_err()
            .to_string()
    };
    let e = refused(
        &kpis,
        row("2026-06-01,network,referral_rate,3,10,0.3,superb"),
    );
    assert!(e.contains("band") && e.contains("superb"), "{e}");
    let e = refused(
        &kpis,
        row("2026-06-01,network,word_of_mouth,3,10,0.3,excellent"),
    );
    assert!(e.contains("kpi") && e.contains("word_of_mouth"), "{e}");
    let e = refused(&kpis, row("2026-06-01,,referral_rate,3,10,0.3,excellent"));
    assert!(e.contains("required column scope"), "{e}");

    let scores = contracts::contract("customer_scores").unwrap();
    let row = |line: &str| vec![one_row(&scores, line)];
    let ok = "C1,0.5,1,r,v1,0.25,2,r,v2";
    let good = row(ok);
    scores.check_output(&good, &good[0].schema()).unwrap();
    let e = refused(&scores, row("C1,1.5,1,r,v1,0.25,2,r,v2"));
    assert!(e.contains("p_refer") && e.contains("maximum"), "{e}");
    let e = refused(&scores, row("C1,0.5,0,r,v1,0.25,2,r,v2"));
    assert!(e.contains("p_refer_decile") && e.contains("minimum"), "{e}");
    let twice = vec![one_row(&scores, ok), one_row(&scores, ok)];
    let e = refused(&scores, twice);
    assert!(e.contains("unique column customer_id"), "{e}");
}

/// Row rules are ODCS `type: sql` checks that datacontract-cli runs as they are; flywheel takes
/// the predicate out of `SELECT COUNT(*) FROM <table> WHERE NOT (<predicate>)`. Integer types
/// are spelt as SQL engines know them (`integer`, `bigint`); the Arrow names are read too.
#[test]
fn row_rules_are_sql_checks_and_integer_types_read_in_both_spellings() {
    let visits = contracts::contract("visits").unwrap();
    let rules: Vec<(&str, &str)> = visits
        .row_rules
        .iter()
        .map(|r| (r.name.as_str(), r.predicate.as_str()))
        .collect();
    assert_eq!(
        rules,
        [(
            "value_added_within_revenue",
            "value_added_revenue <= revenue"
        )]
    );
    let events = contracts::contract("referral_events").unwrap();
    assert_eq!(
        events.row_rules[0].predicate,
        "event_type = 'share' OR referee_key IS NOT NULL"
    );
    for (a, b) in [("integer", "int32"), ("bigint", "int64")] {
        assert_eq!(ColType::parse(a), ColType::parse(b));
        assert!(ColType::parse(a).is_some());
    }
    for (_, text) in contracts::contract_texts() {
        assert!(
            !text.contains("physicalType: int32") && !text.contains("physicalType: int64"),
            "a contract still uses an Arrow integer name"
        );
    }
    // A sql check that is not of the row-rule form is refused, naming the form.
    let text = contracts::contract_texts()
        .iter()
        .find(|(n, _)| *n == "visits")
        .unwrap()
        .1
        .replace(
            "WHERE NOT (value_added_revenue <= revenue)",
            "WHERE revenue < 0",
        );
    let e = contracts::parse_contract("visits", &text)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SELECT COUNT(*) FROM visits WHERE NOT (<predicate>)"),
        "{e}"
    );
}
