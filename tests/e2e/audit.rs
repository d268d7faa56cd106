//! (tests for audit)
