//! The run as Prometheus metrics (`flywheel run --metrics-file PATH`): the text exposition format
//! that node_exporter's textfile collector reads. One file per run, replaced whole at the end of
//! the run (succeeded or failed). Every series carries `run_date`; label values are escaped as the
//! format requires. A failed run writes the run-level series only.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::{Array, AsArray};

use super::page::{cell, rows};
use crate::engine::Table;
use crate::steps::publishing::Manifest;

/// How the run ended, for the run-level series.
pub struct Outcome<'a> {
    pub run_date: &'a str,
    pub exit_code: i32,
    pub seconds: f64,
    /// Seconds since the epoch when the run ended.
    pub ended_at: f64,
    /// The manifest and tables of a run that succeeded.
    pub published: Option<(&'a Manifest, &'a BTreeMap<String, Table>)>,
}

/// One metric family: its help line, type, and samples (labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// The Prometheus text of a run.
pub fn prometheus(o: &Outcome) -> String {
    let date = || ("run_date", o.run_date.to_string());
    let mut families = vec![
        Family {
            name: "flywheel_run_success",
            help: "1 when the run succeeded, 0 when it failed.",
            samples: vec![(vec![date()], f64::from(u8::from(o.exit_code == 0)))],
        },
        Family {
            name: "flywheel_run_exit_code",
            help: "The run's exit code (README, Exit codes).",
            samples: vec![(vec![date()], f64::from(o.exit_code))],
        },
        Family {
            name: "flywheel_run_duration_seconds",
            help: "Wall time of the run.",
            samples: vec![(vec![date()], o.seconds)],
        },
        Family {
            name: "flywheel_run_end_timestamp_seconds",
            help: "When the run ended, seconds since the epoch.",
            samples: vec![(vec![date()], o.ended_at)],
        },
    ];
    if let Some((m, tables)) = o.published {
        families.extend(published(m, tables, o.run_date));
    }
    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} gauge", f.name);
        for (labels, value) in f.samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{}{{{}}} {}", f.name, labels.join(","), number(value));
        }
    }
    out
}

/// The series of a published run: stages, tables, inputs, lists and the network's KPIs.
fn published(m: &Manifest, tables: &BTreeMap<String, Table>, run_date: &str) -> Vec<Family> {
    let date = || ("run_date", run_date.to_string());
    let stage = |f: &dyn Fn(&crate::engine::stages::Stage) -> Option<f64>| {
        m.stages
            .iter()
            .filter_map(|s| Some((vec![date(), ("stage", s.stage.clone())], f(s)?)))
            .collect()
    };
    let kpis = ["referral_kpis", "lifecycle_health"]
        .iter()
        .flat_map(|t| {
            rows(tables.get(*t))
                .filter(|(b, i)| cell(b, "scope", *i).as_deref() == Some("network"))
                .filter_map(move |(b, i)| {
                    let v = b.column_by_name("value").filter(|c| c.is_valid(i))?;
                    let v = v.as_primitive::<arrow::datatypes::Float64Type>().value(i);
                    let kpi = cell(b, "kpi", i)?;
                    Some((vec![date(), ("table", t.to_string()), ("kpi", kpi)], v))
                })
        })
        .collect();
    let mut families = vec![
        Family {
            name: "flywheel_stage_duration_seconds",
            help: "Wall time of each stage of the run.",
            samples: stage(&|s| Some(s.seconds)),
        },
        Family {
            name: "flywheel_stage_cpu_seconds",
            help: "CPU time (user + system) of the process during each stage.",
            samples: stage(&|s| s.cpu_seconds),
        },
        Family {
            name: "flywheel_stage_peak_rss_bytes",
            help: "Peak resident memory sampled during each stage.",
            samples: stage(&|s| s.peak_rss_mib.map(|m| (m * 1024 * 1024) as f64)),
        },
    ];
    families.extend(counts(m, tables, run_date));
    families.push(Family {
        name: "flywheel_kpi_value",
        help: "The network's value of each KPI (referral dashboard and lifecycle health).",
        samples: kpis,
    });
    families
}

/// Rows per table and input, rejects, list sizes, drift and the realised AUC of past scores.
fn counts(m: &Manifest, tables: &BTreeMap<String, Table>, run_date: &str) -> Vec<Family> {
    let date = || ("run_date", run_date.to_string());
    vec![
        Family {
            name: "flywheel_table_rows",
            help: "Rows of each published table.",
            samples: m
                .tables
                .iter()
                .map(|t| (vec![date(), ("table", t.table.clone())], t.rows as f64))
                .collect(),
        },
        Family {
            name: "flywheel_input_rows",
            help: "Rows read from each input.",
            samples: m
                .contract_checks
                .iter()
                .map(|c| (vec![date(), ("input", c.input.clone())], c.rows as f64))
                .collect(),
        },
        Family {
            name: "flywheel_input_rejected_rows",
            help: "Rows of each input quarantined by the contract's row rules.",
            samples: m
                .contract_checks
                .iter()
                .map(|c| (vec![date(), ("input", c.input.clone())], c.rejected as f64))
                .collect(),
        },
        Family {
            name: "flywheel_list_size",
            help: "Customers on each CRM list.",
            samples: ["ambassador_candidates", "churn_alerts"]
                .iter()
                .map(|l| {
                    let n = tables.get(*l).map_or(0, |t| t.rows());
                    (vec![date(), ("list", l.to_string())], n as f64)
                })
                .collect(),
        },
        Family {
            name: "flywheel_model_drift_psi",
            help: "PSI of each feature and score of the champions against their training snapshot.",
            samples: m
                .drift
                .iter()
                .map(|d| {
                    let labels = vec![
                        date(),
                        ("target", d.target.clone()),
                        ("kind", d.kind.clone()),
                        ("variable", d.variable.clone()),
                    ];
                    (labels, d.psi)
                })
                .collect(),
        },
        Family {
            name: "flywheel_model_realised_auc",
            help: "ROC AUC of the scores of the latest earlier run date whose horizon has passed, against the outcome.",
            samples: m
                .outcomes
                .iter()
                .filter_map(|o| {
                    let labels = vec![
                        date(),
                        ("target", o.target.clone()),
                        ("scored_date", o.scored_date.clone()),
                    ];
                    o.realised_auc.map(|auc| (labels, auc))
                })
                .collect(),
        },
    ]
}

/// A label value as the exposition format wants it: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, others as Rust prints them (shortest round trip).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_gives_the_run_series_with_escaped_labels() {
        let text = prometheus(&Outcome {
            run_date: "2026-06-01\"x\\",
            exit_code: 4,
            seconds: 1.5,
            ended_at: 1_780_000_000.25,
            published: None,
        });
        assert!(text.contains("# TYPE flywheel_run_success gauge\n"));
        assert!(text.contains("flywheel_run_success{run_date=\"2026-06-01\\\"x\\\\\"} 0\n"));
        assert!(text.contains("flywheel_run_exit_code{run_date=\"2026-06-01\\\"x\\\\\"} 4\n"));
        assert!(
            text.contains("flywheel_run_duration_seconds{run_date=\"2026-06-01\\\"x\\\\\"} 1.5\n")
        );
        assert!(text.contains("} 1780000000.25\n"));
        assert!(!text.contains("flywheel_table_rows"));
    }
}
