//! (tests for events)
