//! (tests for limits)
