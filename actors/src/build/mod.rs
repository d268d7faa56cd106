//! Builds: the `buildspec.yml` engine and its executors.
//!
//! - [`spec`]: parsing and validating buildspec version 0.2.
//! - [`engine`]: the phases with CodeBuild's transitions (a failed install or pre_build
//!   goes to finalizing; a failed build still runs post_build; `on-failure` overrides),
//!   `finally`, exported variables, secret masking, timeouts and stops.
//! - [`shell`]: the executors (local and Docker): a session shell per build that runs
//!   each command in a subshell of its own.
//! - [`carry`]: what carries from command to command and phase to phase, as in
//!   CodeBuild: the working directory and exported variables.
//! - [`state_dir`]: the files between the server and the build's shell, laid out so
//!   that a build cannot make the server write through its links.
//! - [`guard`]: guarded branches: moving a branch back when the commit pushed to it
//!   fails its build (compare-and-swap), keeping the commit under `refs/slipway/rejected/`.
//! - [`reports`]: reading a `reports` group's files (JUnit, TestNG, NUnit 3 XML) into a
//!   [`reports::ReportSummary`].

pub mod artifacts;
pub mod builder;
pub mod cache;
pub mod carry;
pub mod checkout;
pub mod engine;
pub mod guard;
pub mod inputs;
pub mod reports;
pub mod shell;
pub mod spec;
pub mod state_dir;

pub use engine::{run_build, BuildContext, BuildReport, BuildStatus, LogSink, PhaseReport};
pub use spec::{parse_buildspec, BuildSpec};

#[cfg(test)]
mod tests;
