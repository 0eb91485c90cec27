//! The guard's one error type.

/// Errors from starting the guard. Once started, the guard never fails:
/// every later problem becomes a [`crate::Reason`] of the trading state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting of `[guard]` or `[objectives]` is invalid.
    #[error(
        "invalid guard setting {key}: {reason}. Fix it in the [guard]/[objectives] section of the cfdr config file"
    )]
    Config {
        /// The key, e.g. `objectives.rpo`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The repository cannot be reached or read at start.
    #[error("the guard cannot use the repository: {0}")]
    Storage(Box<cfdr_storage::Error>),
}

impl From<cfdr_storage::Error> for Error {
    fn from(e: cfdr_storage::Error) -> Self {
        Error::Storage(Box::new(e))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
