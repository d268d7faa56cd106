//! The rules a deployment follows (reference §3.5 and §3.7), as pure functions.
//!
//! - Targeting: an agent belongs to a group when its tags match every tag set of the
//!   group, and it matches a set when it matches any one filter of it ([`tags_match`]).
//! - Minimum healthy hosts: a deployment configuration becomes, for a group of `n`
//!   hosts, the number that must stay healthy, the most deployed at once and the
//!   successes needed ([`Requirement`]).
//! - Order: hosts whose last deployment failed first, then hosts that never had a
//!   revision of the group, then hosts with an old one, then hosts that already have the
//!   revision ([`order_hosts`]).
//! - Progress: [`Plan::step`] looks at what every host has reported and says which hosts
//!   to start, or that the deployment succeeded or failed and why.
//!
//! A host counts as healthy while it serves a good revision: a host whose last
//! deployment succeeded (or that never had a failed one) and that is not being deployed
//! now, or a host this deployment succeeded on. A host being deployed, or whose
//! deployment failed, is not healthy. Deploying to a host that is already unhealthy
//! therefore costs no health, so such hosts are limited only by the batch size; a
//! healthy host is started only when the hosts still healthy stay at or above the
//! minimum.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::deploy::{DeployConfig, DeploymentConfig, DeploymentGroup, TagFilter, TagSet};

/// Whether an agent with `tags` matches `filter` (exact, case-sensitive).
pub fn filter_matches(filter: &TagFilter, tags: &BTreeMap<String, String>) -> bool {
    match filter {
        TagFilter::KeyOnly(key) => tags.contains_key(key),
        TagFilter::ValueOnly(value) => tags.values().any(|v| v == value),
        TagFilter::KeyAndValue { key, value } => tags.get(key) == Some(value),
    }
}

/// Whether an agent with `tags` belongs to a group with these tag sets: it must match
/// every set, and a set matches when any one of its filters does. No sets match no
/// agent (a group must name its hosts).
pub fn tags_match(sets: &[TagSet], tags: &BTreeMap<String, String>) -> bool {
    !sets.is_empty()
        && sets
            .iter()
            .all(|set| set.filters.iter().any(|f| filter_matches(f, tags)))
}

/// Every group an agent with `tags` belongs to, as (application, group, settings): where
/// a newly registered agent should get the group's current revision.
pub fn groups_for<'a>(
    config: &'a DeployConfig,
    tags: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = (&'a str, &'a str, &'a DeploymentGroup)> + 'a {
    config
        .groups()
        .filter(move |(_, _, group)| tags_match(&group.tags, tags))
}

/// What a host holds of the group's revisions (CodeDeploy's revision health).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RevisionHealth {
    /// No revision of this group was ever installed successfully on the host.
    Unknown,
    /// The host has an older revision than the one being deployed.
    Old,
    /// The host already has the revision being deployed.
    Current,
}

/// One host of a deployment, as it stood when the deployment was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The host's (agent's) name; unique in the deployment.
    pub name: String,
    /// `false` when the group's last deployment to this host failed.
    pub healthy: bool,
    /// What it holds of the group's revisions.
    pub revision: RevisionHealth,
}

/// Puts hosts in the order they are deployed: unhealthy first, then revision health
/// Unknown, Old, Current; by name within each class, so the order never depends on how
/// the hosts were listed.
pub fn order_hosts(hosts: &mut [HostInfo]) {
    hosts.sort_by(|a, b| (a.healthy, a.revision, &a.name).cmp(&(b.healthy, b.revision, &b.name)));
}

/// What a deployment configuration means for a group of `hosts` hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// The configuration it came from.
    pub config: DeploymentConfig,
    /// Hosts in the deployment.
    pub hosts: usize,
    /// Hosts that must stay healthy throughout (a percentage is rounded up).
    pub min_healthy: usize,
    /// The most hosts deployed at once: `hosts - min_healthy`.
    pub batch: usize,
    /// Successful hosts needed for the deployment to succeed: `min_healthy`, and at
    /// least one.
    pub required_successes: usize,
}

/// Why a deployment fails before any host is started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No agent matches the group's tags.
    #[error("no agent matches the deployment group's tags, so there is nothing to deploy to; register an agent with matching tags or change the group's `tags`")]
    NoHosts,
    /// The minimum healthy is the whole group, so no host could ever be taken out.
    #[error("{config} keeps at least {min_healthy} of the group's {} healthy, so no host can be deployed; add hosts or choose a configuration that keeps fewer healthy", hosts_word(*.hosts))]
    Unsatisfiable {
        /// The configuration.
        config: DeploymentConfig,
        /// Hosts in the group.
        hosts: usize,
        /// Hosts it would keep healthy.
        min_healthy: usize,
    },
    /// Two hosts have the same name.
    #[error("host `{0}` is listed twice")]
    DuplicateHost(String),
}

fn hosts_word(n: usize) -> String {
    if n == 1 {
        "1 host".to_string()
    } else {
        format!("{n} hosts")
    }
}

impl Requirement {
    /// The requirement of `config` for `hosts` hosts, or why such a deployment fails at
    /// once: no hosts, or at least as many to keep healthy as there are hosts.
    ///
    /// - one-at-a-time: all but one stay healthy (a one-host group keeps none healthy
    ///   but needs its host to succeed); so if only the last host fails, the deployment
    ///   still succeeds.
    /// - half-at-a-time: half, rounded up, stay healthy; at most half, rounded down, at
    ///   a time. A one-host group fails at once.
    /// - all-at-once: none stay healthy; any one success suffices.
    /// - `hosts: N`: N; `percent: P`: P% of the hosts, rounded up.
    pub fn new(config: DeploymentConfig, hosts: usize) -> Result<Requirement, PlanError> {
        if hosts == 0 {
            return Err(PlanError::NoHosts);
        }
        let min_healthy = match config {
            DeploymentConfig::OneAtATime => hosts - 1,
            DeploymentConfig::HalfAtATime => hosts.div_ceil(2),
            DeploymentConfig::AllAtOnce => 0,
            DeploymentConfig::MinHealthyHosts(n) => usize::try_from(n).unwrap_or(usize::MAX),
            DeploymentConfig::MinHealthyPercent(p) => {
                hosts.saturating_mul(usize::from(p)).div_ceil(100)
            }
        };
        if min_healthy >= hosts {
            return Err(PlanError::Unsatisfiable {
                config,
                hosts,
                min_healthy,
            });
        }
        Ok(Requirement {
            config,
            hosts,
            min_healthy,
            batch: hosts - min_healthy,
            required_successes: min_healthy.max(1),
        })
    }
}

/// What a host has reported in this deployment. A host that was stopped, or whose
/// agent stopped answering, is `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostProgress {
    /// Not started.
    #[default]
    Pending,
    /// Started and not finished.
    InProgress,
    /// Every lifecycle event succeeded.
    Succeeded,
    /// A lifecycle event failed, or the host was lost.
    Failed,
}

impl HostProgress {
    /// The host's health once the deployment is over: succeeded hosts are healthy,
    /// failed ones unhealthy, hosts the deployment never finished keep `before`.
    pub fn health_after(self, before: bool) -> bool {
        match self {
            HostProgress::Succeeded => true,
            HostProgress::Failed => false,
            HostProgress::Pending | HostProgress::InProgress => before,
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The deployment goes on: start these hosts now (in this order). Empty: wait for
    /// the hosts in progress.
    Continue {
        /// Hosts to start.
        start: Vec<String>,
    },
    /// Every host has finished and enough succeeded.
    Succeeded,
    /// The deployment has failed: start nothing more. Hosts in progress may be left to
    /// finish their current event; hosts not started are skipped.
    Failed {
        /// Why, for people (`3 of 9 hosts failed; at least 6 must stay healthy`).
        reason: String,
    },
}

/// A deployment's hosts in deployment order, with its requirement.
#[derive(Debug, Clone)]
pub struct Plan {
    requirement: Requirement,
    hosts: Vec<HostInfo>,
}

impl Plan {
    /// Plans a deployment under `config` to `hosts` (their health when the deployment
    /// was created), or says why it fails at once.
    pub fn new(config: DeploymentConfig, mut hosts: Vec<HostInfo>) -> Result<Plan, PlanError> {
        let requirement = Requirement::new(config, hosts.len())?;
        order_hosts(&mut hosts);
        if let Some(w) = hosts.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(PlanError::DuplicateHost(w[0].name.clone()));
        }
        Ok(Plan { requirement, hosts })
    }

    /// The hosts, in deployment order.
    pub fn hosts(&self) -> &[HostInfo] {
        &self.hosts
    }

    /// What the configuration means for these hosts.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }

    /// Decides the next step from what each host has reported (by name; a host not in
    /// `progress` is Pending, names not in the plan are ignored).
    ///
    /// The deployment fails as soon as the successes needed can no longer be reached,
    /// or when nothing is running and no further host can be started without leaving
    /// fewer healthy hosts than the minimum. It succeeds when every host has finished
    /// and enough succeeded.
    pub fn step(&self, progress: &BTreeMap<String, HostProgress>) -> Decision {
        let req = &self.requirement;
        let of = |h: &HostInfo| progress.get(&h.name).copied().unwrap_or_default();
        let count = |p: HostProgress| self.hosts.iter().filter(|h| of(h) == p).count();
        let succeeded = count(HostProgress::Succeeded);
        let failed = count(HostProgress::Failed);
        let in_progress = count(HostProgress::InProgress);
        let pending = count(HostProgress::Pending);

        if succeeded + in_progress + pending < req.required_successes {
            return Decision::Failed {
                reason: format!(
                    "{failed} of {} failed; at least {} must succeed ({})",
                    hosts_word(req.hosts),
                    req.required_successes,
                    req.config
                ),
            };
        }
        if in_progress == 0 && pending == 0 {
            return Decision::Succeeded;
        }

        // Healthy now: hosts that succeeded, and healthy hosts not yet touched.
        let mut healthy = succeeded
            + self
                .hosts
                .iter()
                .filter(|h| h.healthy && of(h) == HostProgress::Pending)
                .count();
        let mut room = req.batch.saturating_sub(in_progress);
        let mut start = Vec::new();
        for host in self.hosts.iter().filter(|h| of(h) == HostProgress::Pending) {
            if room == 0 {
                break;
            }
            if host.healthy {
                if healthy <= req.min_healthy {
                    // Unhealthy hosts come first, so every later host is healthy too.
                    break;
                }
                healthy -= 1;
            }
            room -= 1;
            start.push(host.name.clone());
        }
        if start.is_empty() && in_progress == 0 {
            return Decision::Failed {
                reason: format!(
                    "{failed} of {} failed; at least {} must stay healthy ({})",
                    hosts_word(req.hosts),
                    req.min_healthy,
                    req.config
                ),
            };
        }
        Decision::Continue { start }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {}: at most {} at a time, at least {} kept healthy, {} must succeed",
            self.config,
            hosts_word(self.hosts),
            self.batch,
            self.min_healthy,
            self.required_successes
        )
    }
}

#[cfg(test)]
mod tests;
