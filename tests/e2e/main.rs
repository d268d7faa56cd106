//! End-to-end tests: the real `slipway` binary on random loopback ports, driven by the
//! real OpenSSH `ssh` and `git` clients (and real peers such as Prometheus).
//!
//! One test binary (see Cargo.toml `[[test]]`), one module per area. `harness` starts
//! servers and holds the identities: `admin`, `alice` (a developer), `bob` (a reader)
//! and `mallory` (a key slipway does not know).

mod harness;
mod peers;

mod access;
mod admin_config;
mod agent_tls;
mod agents;
mod audit;
mod auth;
mod bad_input;
mod builds;
mod cli;
mod deploy_alarms;
mod deploy_appspecs;
mod deploy_configs;
mod deploy_network;
mod deployments;
mod events;
mod git_transport;
mod limits;
mod metrics;
mod notify;
mod pipeline_control;
mod pipeline_modes;
mod pipelines;
mod repos;
mod stale_branches;
