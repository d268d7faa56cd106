//! slipway: a self-hosted, git-native CI/CD server.
pub mod access;
