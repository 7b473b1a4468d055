//! Presenting a published run to people: the self-contained HTML morning report
//! (`reports/dt=D/index.html`) and the summary the command line prints.

pub mod report;
pub mod summary;
