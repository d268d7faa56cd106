//! Deployments: a build's artifact carried to a deployment group's hosts, host by host,
//! as CodeDeploy does for EC2/on-premises in-place deployments.
//!
//! - [`plan`]: the pure rules: which agents a group's tags select, how many hosts must
//!   stay healthy under a deployment configuration, in which order hosts are deployed,
//!   and a [`plan::Plan`] that, given what the hosts have reported so far, names the
//!   hosts to start next and decides success or failure.
//! - [`advance`]: one pass of the supervisor over every active deployment, in one store
//!   transaction (start, hand out lifecycle events, decide, bake, stop, roll back).
//! - [`supervisor`]: the actor that runs the passes and reads the [`alarms`].
//! - [`wakers`]: waking an agent's long poll when a command is ready for it.
//!
//! The groups and their settings come from `deploy.yaml` in the admin repository
//! ([`crate::config::deploy`]); each deployment keeps a copy of its group's settings.
//!
//! Invariant: no deployment state lives in memory; the supervisor stores a deployment's
//! hosts and their results and asks [`plan::Plan::step`] again after every change, so a
//! restart simply runs the next pass.

pub mod advance;
pub mod alarms;
pub mod plan;
pub mod supervisor;
pub mod wakers;

pub use plan::{Decision, HostInfo, HostProgress, Plan, PlanError, Requirement, RevisionHealth};

#[cfg(test)]
mod tests;
