//! Pipelines: a repository's `pipeline.yml`, moving every matching push through its
//! stages.
//!
//! - [`spec`]: the file's format and its validation (located errors).
//! - [`triggers`]: which pushes start an execution (branch, tag and path globs).
//! - [`source`]: the implicit source stage: what a push means for the pushed commit's
//!   pipeline, the paths it changed and the `#{source.…}` variables.

pub mod source;
pub mod spec;
pub mod triggers;

pub use spec::{parse_pipeline, PipelineSpec, PIPELINE_FILE};
