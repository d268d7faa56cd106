//! Pipelines: a repository's `pipeline.yml`, moving every matching push through its
//! stages.
//!
//! - [`spec`]: the file's format and its validation (located errors).
//! - [`triggers`]: which pushes start an execution (branch, tag and path globs).

pub mod spec;
pub mod triggers;

pub use spec::{parse_pipeline, PipelineSpec, PIPELINE_FILE};
