//! Presenting a run to people and platforms: the self-contained HTML morning report
//! (`reports/dt=D/index.html`), the summary the command line prints, the Prometheus metrics
//! (`--metrics-file`) and the OpenLineage events (`--lineage-file`).

pub mod lineage;
pub mod metrics;
pub mod page;
pub mod report;
pub mod summary;
pub mod trends;

/// The SQL tables the report, the summary and the metrics read from memory (small: KPI rows,
/// diagnoses, the CRM lists); a run holds these and stores every other table in its scratch area.
pub const READS: [&str; 8] = [
    "int_kpi_bands",
    "referral_kpis",
    "lifecycle_health",
    "lifecycle_diagnosis",
    "channel_funnel",
    "kpi_trends",
    "ambassador_candidates",
    "churn_alerts",
];
