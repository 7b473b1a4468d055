//! The run summary printed at the end of `flywheel run` and `flywheel demo`: inputs, the network's
//! KPI bands (coloured on a terminal, plain when piped), list sizes per center, the top five of
//! each list, and where the files are. [`render`] returns the text; the command line prints it.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::{Array, AsArray, RecordBatch};

use super::page::{cell, rows};
use super::report::list_sizes_per_center;
use crate::engine::Table;
use crate::steps::publishing::Manifest;

/// A cell as text for the terminal ("-" when null).
fn text(b: &RecordBatch, col: &str, i: usize) -> String {
    cell(b, col, i).unwrap_or_else(|| "-".into())
}

fn paint(band: &str, colour: bool) -> String {
    if !colour {
        return band.to_string();
    }
    let code = match band {
        "excellent" => "32",
        "qualified" | "good" | "pass" => "33",
        "danger" => "31",
        _ => "0",
    };
    format!("\x1b[{code}m{band}\x1b[0m")
}

/// The summary of a published run: its manifest, where the manifest is, and the tables.
pub fn render(
    m: &Manifest,
    manifest_path: &str,
    tables: &BTreeMap<String, Table>,
    colour: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nflywheel run {} — inputs {} → outputs {}",
        m.run_date, m.input, m.output
    );
    out.push_str("inputs:\n");
    for c in &m.contract_checks {
        let _ = writeln!(
            out,
            "  {:<16} {:>10} rows, {:>6} rejected, {:>10} used",
            c.input, c.rows, c.rejected, c.used
        );
    }
    kpis(&mut out, tables, colour);
    lists(&mut out, tables);
    published(&mut out, m, manifest_path);
    out
}

/// The network's rows of the KPI tables and its diagnosis.
fn kpis(out: &mut String, tables: &BTreeMap<String, Table>, colour: bool) {
    for table in ["referral_kpis", "lifecycle_health"] {
        let _ = writeln!(out, "{table} (network):");
        for (b, i) in rows(tables.get(table)) {
            if text(b, "scope", i) != "network" {
                continue;
            }
            let value = b
                .column_by_name("value")
                .filter(|c| c.is_valid(i))
                .map(|c| {
                    format!(
                        "{:.3}",
                        c.as_primitive::<arrow::datatypes::Float64Type>().value(i)
                    )
                })
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "  {:<26} {:>9}  {}",
                text(b, "kpi", i),
                value,
                paint(&text(b, "band", i), colour)
            );
        }
    }
    for (b, i) in rows(tables.get("lifecycle_diagnosis")) {
        if text(b, "scope", i) == "network" {
            let _ = writeln!(
                out,
                "diagnosis (network): {} ({} excellent stages)",
                text(b, "diagnosis", i),
                text(b, "excellent_stages", i)
            );
        }
    }
}

/// List sizes per center and the top five of each list.
fn lists(out: &mut String, tables: &BTreeMap<String, Table>) {
    let per_center = list_sizes_per_center(tables);
    if !per_center.is_empty() {
        out.push_str("lists per center (ambassador candidates / churn alerts):\n");
        let cells: Vec<String> = per_center
            .iter()
            .map(|(c, (a, b))| format!("{c} {a}/{b}"))
            .collect();
        for chunk in cells.chunks(6) {
            let _ = writeln!(out, "  {}", chunk.join("   "));
        }
    }
    for (table, score, title) in [
        (
            "ambassador_candidates",
            "p_refer",
            "top 5 ambassador candidates",
        ),
        (
            "churn_alerts",
            "value_at_risk",
            "top 5 churn alerts (by value at risk)",
        ),
    ] {
        let top = top_five(tables.get(table), score);
        if !top.is_empty() {
            let _ = writeln!(out, "{title}:");
            for line in top {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
}

/// The five rows of a list with the highest `score` (ties: the line's text), as lines.
fn top_five(table: Option<&Table>, score: &str) -> Vec<String> {
    let mut all: Vec<(f64, String)> = rows(table)
        .map(|(b, i)| {
            let s = b
                .column_by_name(score)
                .filter(|c| c.is_valid(i))
                .map(|c| c.as_primitive::<arrow::datatypes::Float64Type>().value(i))
                .unwrap_or(f64::NEG_INFINITY);
            let shown = if s.is_finite() {
                format!("{s:.3}")
            } else {
                "-".into()
            };
            let line = format!(
                "{} ({}, {score} {shown}): {}",
                text(b, "customer_id", i),
                text(b, "service_center_id", i),
                text(b, "reasons", i)
            );
            (s, line)
        })
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    all.into_iter().take(5).map(|(_, line)| line).collect()
}

/// Where every table went, the warnings, and the run's time (stages do not overlap).
fn published(out: &mut String, m: &Manifest, manifest_path: &str) {
    out.push_str("published:\n");
    for t in &m.tables {
        let _ = writeln!(
            out,
            "  {:<28} {:>10} rows  {}/{}",
            t.table, t.rows, m.output, t.path
        );
    }
    let _ = writeln!(
        out,
        "  {:<28} {:>10}       {}/reports/dt={}/index.html",
        "report (HTML)", "", m.output, m.run_date
    );
    for w in &m.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let total: f64 = m.stages.iter().map(|s| s.seconds).sum();
    let _ = writeln!(
        out,
        "stages: {:.2} s in all; manifest: {manifest_path}",
        total
    );
}
