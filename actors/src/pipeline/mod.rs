//! Pipelines: a repository's `pipeline.yml`, moving every matching push through its
//! stages.
//!
//! - [`spec`]: the file's format and its validation (located errors).
//! - [`triggers`]: which pushes start an execution (branch, tag and path globs).
//! - [`source`]: the implicit source stage: what a push means for the pushed commit's
//!   pipeline, the paths it changed and the `#{source.…}` variables.
//! - [`conductor`]: the actor that starts executions for pushes and moves them on
//!   whenever something happens (a build ends, a person decides, a timer expires).
//! - [`advance`]: one pass of moving executions through their stages (all state in
//!   sqlite, one transaction per pass).
//! - [`control`]: approve/reject, stop, retry, rollback and transitions.
//! - [`vars`]: `#{namespace.NAME}` substitution.

pub mod actions;
pub mod advance;
pub mod conductor;
pub mod control;
pub mod effects;
pub mod lifecycle;
pub mod source;
pub mod spec;
pub mod triggers;
pub mod vars;
pub mod view;

pub use spec::{parse_pipeline, PipelineSpec, PIPELINE_FILE};
