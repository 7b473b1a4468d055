//! The run summary printed at the end of `flywheel run` and `flywheel demo`.

use crate::run::RunReport;

pub fn print(report: &RunReport) {
    let m = &report.manifest;
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
    println!("published:");
    for t in &m.tables {
        println!(
            "  {:<28} {:>10} rows  {}/{}",
            t.table, t.rows, m.output, t.path
        );
    }
    for w in &m.warnings {
        println!("warning: {w}");
    }
    let total: f64 = m.stages.iter().map(|s| s.seconds).sum();
    println!(
        "stages: {:.2} s in all; manifest: {}",
        total, report.manifest_path
    );
}
