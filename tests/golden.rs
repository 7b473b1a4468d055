//! Golden tests: every folder in tests/golden/ is a case of hand-made inputs (CSV, converted to
//! Parquet with the contracts' types) and hand-checked expected rows of published tables. The
//! real pipeline runs on them; each `expected/<table>.csv` names the columns it checks in its
//! header and lists the rows in published order. `expected/<a>__<b>.csv` means table `a/b`;
//! `expected/<table>@<date>.csv` checks the table of an earlier run date.
//!
//! `case.toml`: `date` (the run date), optional `earlier_dates` (run first, in order, into the same
//! output: for cooldowns), optional `[config]` overrides. A `models/` folder in the case is a
//! hand-made model registry (champion pointers and model files) copied to the output's models
//! root before the runs, so list rules that depend on scores are checked on known probabilities.

mod common;

use std::path::Path;

use flywheel_pipelines::app::run;

async fn run_case(case: &Path) {
    let name = case.file_name().unwrap().to_string_lossy().to_string();
    let settings: toml::Table =
        toml::from_str(&std::fs::read_to_string(case.join("case.toml")).unwrap()).unwrap();
    let date =
        chrono::NaiveDate::parse_from_str(settings["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let dir = common::tempdir(&format!("golden-{name}"));
    let (input, output) = (dir.join("in"), dir.join("out"));
    common::csv_inputs_to_parquet(&case.join("inputs"), &input);
    if case.join("models").is_dir() {
        copy_dir(&case.join("models"), &output.join("models"));
    }
    let mut cfg = common::config(&input, &output);
    if let Some(toml::Value::Table(overrides)) = settings.get("config") {
        let mut table = toml::Table::try_from(&cfg).unwrap();
        for (k, v) in overrides {
            table.insert(k.clone(), v.clone());
        }
        cfg = table.try_into().unwrap();
    }
    let earlier: Vec<chrono::NaiveDate> = settings
        .get("earlier_dates")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .map(|d| {
                    chrono::NaiveDate::parse_from_str(d.as_str().unwrap(), "%Y-%m-%d").unwrap()
                })
                .collect()
        })
        .unwrap_or_default();
    for d in earlier.iter().chain([&date]) {
        run::run(&cfg, *d)
            .await
            .unwrap_or_else(|e| panic!("case {name}: run of {d} failed: {e}"));
    }
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(case.join("expected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let (table, at) = match stem.split_once('@') {
            Some((t, d)) => (t.replace("__", "/"), d.to_string()),
            None => (stem.replace("__", "/"), date.to_string()),
        };
        let (columns, want) = common::expected(&path);
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        let got = common::read_rows(&output, &format!("{table}/dt={at}"), &cols).await;
        if got != want {
            let mut msg = format!(
                "case {name}, table {table} of {at}: published rows differ\n  columns: {}\n",
                columns.join(",")
            );
            for i in 0..got.len().max(want.len()) {
                let g = got.get(i).map(String::as_str).unwrap_or("<none>");
                let w = want.get(i).map(String::as_str).unwrap_or("<none>");
                let mark = if g == w { " " } else { "✗" };
                msg.push_str(&format!("{mark} want {w}\n{mark}  got {g}\n"));
            }
            panic!("{msg}");
        }
        checked += 1;
    }
    assert!(checked > 0, "case {name} has no expected tables");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

macro_rules! golden {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            run_case(&common::repo().join("tests/golden").join(stringify!($name))).await;
        }
    )*};
}

golden!(
    attribution,
    features,
    kpis,
    nps_edge,
    lists,
    lists_model,
    lists_cooldown,
    row_rules
);
