//! Presenting a run to people and platforms: the self-contained HTML morning report
//! (`reports/dt=D/index.html`), the summary the command line prints, the Prometheus metrics
//! (`--metrics-file`) and the OpenLineage events (`--lineage-file`).

pub mod lineage;
pub mod metrics;
pub mod page;
pub mod report;
pub mod summary;
pub mod trends;
