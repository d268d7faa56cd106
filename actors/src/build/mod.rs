//! Builds: the `buildspec.yml` engine and its executors.
//!
//! - [`spec`]: parsing and validating buildspec version 0.2.
//! - [`engine`]: the phases with CodeBuild's transitions (a failed install or pre_build
//!   goes to finalizing; a failed build still runs post_build; `on-failure` overrides),
//!   `finally`, exported variables, secret masking, timeouts and stops.
//! - [`shell`]: the local executor. Each command runs in its own shell process; the
//!   working directory and the environment are carried from command to command and
//!   phase to phase through a state directory, as CodeBuild does.
//! - [`guard`]: guarded branches: moving a branch back when the commit pushed to it
//!   fails its build (compare-and-swap), keeping the commit under `refs/slipway/rejected/`.
//! - [`reports`]: reading a `reports` group's files (JUnit, TestNG, NUnit 3 XML) into a
//!   [`reports::ReportSummary`].

pub mod artifacts;
pub mod builder;
pub mod cache;
pub mod checkout;
pub mod engine;
pub mod guard;
pub mod reports;
pub mod shell;
pub mod spec;

pub use engine::{run_build, BuildContext, BuildReport, BuildStatus, LogSink, PhaseReport};
pub use spec::{parse_buildspec, BuildSpec};

#[cfg(test)]
mod tests;
