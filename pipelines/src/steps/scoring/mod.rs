//! Scoring: the model registry in object storage (`registry`), point-in-time training sets
//! (`training_set`), training with out-of-time validation and promotion (`train`), nightly
//! scoring of every customer with the champions (`score`) and each score's reasons in words
//! (`reasons`), each model version's card (`card`), the drift of the champions' inputs and scores
//! (`drift`) and how past scores turned out (`outcome`). The model mathematics and the model file format are the `flywheel-models`
//! crate's; this step adds storage, SQL and the business's words.

pub mod card;
pub mod drift;
pub mod outcome;
pub mod reasons;
pub mod registry;
pub mod score;
pub mod target;
pub mod train;
pub mod training_set;

pub use flywheel_models::ModelFile;
pub use registry::{Champion, Registry};
pub use target::{feature_spec, fingerprint, Target};
