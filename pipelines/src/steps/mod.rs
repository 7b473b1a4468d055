//! The steps the applications compose, each taking and returning plain values. Listed from the
//! top down: a step may use the steps below it, never one above.
//!
//! - `presenting`: the morning report (HTML) and the terminal summary;
//! - `publishing`: output checks against the contracts, staging and commit, the manifest, the
//!   lists of earlier run dates;
//! - `scoring`: the model registry, training sets, training, scoring and reasons in words;
//! - `ingest`: reading, converting and validating the four exports;
//! - `demo_data`: the generator of demo exports.

pub mod demo_data;
pub mod ingest;
pub mod presenting;
pub mod publishing;
pub mod scoring;
