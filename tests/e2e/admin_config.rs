//! (tests for admin_config)
