//! The `slipway` command line: `init`, `serve`, `check`.

pub mod build_local;
pub mod check;
pub mod dev;
pub mod init;
