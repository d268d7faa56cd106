//! (tests for cli)
