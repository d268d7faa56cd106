//! (tests for git_transport)
