//! (tests for access)
