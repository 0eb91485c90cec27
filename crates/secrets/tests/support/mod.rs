//! Shared test support.
pub(crate) mod fake_vault;
