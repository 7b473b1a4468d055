//! The run summary printed at the end of `flywheel run` and `flywheel demo`: inputs, the network's
//! KPI bands (coloured on a terminal, plain when piped), list sizes per center, the top five of
//! each list, and where the files are.

use std::io::IsTerminal;

use arrow::array::{Array, AsArray, RecordBatch};

use crate::report::{cell, list_sizes_per_center, rows};
use crate::run::RunReport;

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

pub fn print(report: &RunReport) {
    let m = &report.manifest;
    let colour = std::io::stdout().is_terminal();
    println!();
    println!(
        "flywheel run {} — inputs {} → outputs {}",
        m.run_date, m.input, m.output
    );
    println!("inputs:");
    for c in &m.contract_checks {
        println!(
            "  {:<16} {:>10} rows, {:>6} rejected, {:>10} used",
            c.input, c.rows, c.rejected, c.used
        );
    }
    for table in ["referral_kpis", "lifecycle_health"] {
        println!("{table} (network):");
        for (b, i) in rows(report.tables.get(table)) {
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
            println!(
                "  {:<26} {:>9}  {}",
                text(b, "kpi", i),
                value,
                paint(&text(b, "band", i), colour)
            );
        }
    }
    for (b, i) in rows(report.tables.get("lifecycle_diagnosis")) {
        if text(b, "scope", i) == "network" {
            println!(
                "diagnosis (network): {} ({} excellent stages)",
                text(b, "diagnosis", i),
                text(b, "excellent_stages", i)
            );
        }
    }
    let per_center = list_sizes_per_center(&report.tables);
    if !per_center.is_empty() {
        println!("lists per center (ambassador candidates / churn alerts):");
        let cells: Vec<String> = per_center
            .iter()
            .map(|(c, (a, b))| format!("{c} {a}/{b}"))
            .collect();
        for chunk in cells.chunks(6) {
            println!("  {}", chunk.join("   "));
        }
    }
    let top = |table: &str, score: &str, title: &str| {
        let mut all: Vec<(f64, String)> = rows(report.tables.get(table))
            .map(|(b, i)| {
                let s = b
                    .column_by_name(score)
                    .filter(|c| c.is_valid(i))
                    .map(|c| c.as_primitive::<arrow::datatypes::Float64Type>().value(i))
                    .unwrap_or(f64::NEG_INFINITY);
                let line = format!(
                    "{} ({}, {} {}): {}",
                    text(b, "customer_id", i),
                    text(b, "service_center_id", i),
                    score,
                    if s.is_finite() {
                        format!("{s:.3}")
                    } else {
                        "-".into()
                    },
                    text(b, "reasons", i)
                );
                (s, line)
            })
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        if !all.is_empty() {
            println!("{title}:");
            for (_, line) in all.iter().take(5) {
                println!("  {line}");
            }
        }
    };
    top(
        "ambassador_candidates",
        "p_refer",
        "top 5 ambassador candidates",
    );
    top(
        "churn_alerts",
        "value_at_risk",
        "top 5 churn alerts (by value at risk)",
    );
    println!("published:");
    for t in &m.tables {
        println!(
            "  {:<28} {:>10} rows  {}/{}",
            t.table, t.rows, m.output, t.path
        );
    }
    println!(
        "  {:<28} {:>10}       {}/reports/dt={}/index.html",
        "report (HTML)", "", m.output, m.run_date
    );
    for w in &m.warnings {
        println!("warning: {w}");
    }
    let total: f64 = m.stages.iter().map(|s| s.seconds).sum();
    println!(
        "stages: {:.2} s in all; manifest: {}",
        total, report.manifest_path
    );
}
