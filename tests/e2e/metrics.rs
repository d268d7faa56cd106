//! (tests for metrics)
