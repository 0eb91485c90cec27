//! The one error type of cfdr-drill.

use std::path::PathBuf;

/// Why a drill could not run (a scenario that fails is a verdict in the
/// report, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// PostgreSQL 15's programs are not installed.
    #[error(
        "PostgreSQL 15 is needed for the drill sandbox and was not found ({reason}): install it with `apt-get install postgresql-15` (or point --pg-bin at its bin folder)"
    )]
    PostgresMissing {
        /// What the search saw.
        reason: String,
    },
    /// A cfdr program the sandbox runs is not beside `cfdr-drill`.
    #[error(
        "{} is missing: the sandbox archives WAL with it; build the workspace (`cargo build --release`) so it sits beside cfdr-drill",
        .path.display()
    )]
    ProgramMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Unknown scenario or fault name.
    #[error("unknown {what} {name:?}: expected one of {expected}")]
    Unknown {
        /// `scenario` or `fault`.
        what: &'static str,
        /// The name given.
        name: String,
        /// The accepted names.
        expected: String,
    },
    /// A sandbox file operation failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// PostgreSQL work failed.
    #[error(transparent)]
    Pg(Box<cfdr_pg::Error>),
    /// Repository work failed.
    #[error(transparent)]
    Storage(Box<cfdr_storage::Error>),
    /// WAL archive work failed.
    #[error(transparent)]
    Wal(Box<cfdr_wal_archive::Error>),
    /// Secrets work failed.
    #[error(transparent)]
    Secrets(Box<cfdr_secrets::Error>),
    /// Copying the repository to the secondary failed.
    #[error("copying the repository to the secondary: {0}")]
    Copy(Box<cfdr_copy::Error>),
    /// Opening the drill's incident failed.
    #[error("opening the incident of the failed drill: {0}")]
    Incident(Box<cfdr_incident::Error>),
    /// A check of the drill found something wrong (the message says what).
    #[error("{0}")]
    Check(String),
    /// Rendering the timeline chart failed.
    #[error("drawing the timeline chart: {0}")]
    Chart(String),
}

// Boxed: the libraries' errors are large, and a drill error is rare.
macro_rules! boxed_from {
    ($($variant:ident: $ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(
    Pg: cfdr_pg::Error,
    Storage: cfdr_storage::Error,
    Wal: cfdr_wal_archive::Error,
    Secrets: cfdr_secrets::Error,
    Copy: cfdr_copy::Error,
    Incident: cfdr_incident::Error
);

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
