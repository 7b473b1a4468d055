//! The applications: what the command line calls. Peers that nothing else imports, each composing
//! the steps below them:
//! - `run`: the nightly job; `runs`: its ledger and `flywheel recover`;
//! - `train` and `models`: training, the registry's list/show/promote/rollback;
//! - `demo`: demo data and champions, before the command line runs the nightly job;
//! - `check` (`flywheel validate`) and `generate`.

pub mod check;
pub mod demo;
pub mod generate;
pub mod models;
pub mod run;
pub mod runs;
pub mod train;
