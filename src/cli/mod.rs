//! The `slipway` command line: `init`, `serve`, `check`.

pub mod check;
pub mod dev;
pub mod init;
