//! (tests for stale_branches)
