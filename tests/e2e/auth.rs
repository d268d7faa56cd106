//! (tests for auth)
