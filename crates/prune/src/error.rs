//! The one error type of cfdr-prune.

/// Everything that can stop a prune. Each variant says whether anything was
/// deleted and what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--class` names no data class.
    #[error("unknown data class {name:?}: use one of {valid}")]
    UnknownClass {
        /// The name given.
        name: String,
        /// The valid names, comma-separated.
        valid: String,
    },
    /// The retention configuration is invalid (checked before any I/O).
    #[error(
        "invalid retention policy: {0}; fix the [retention] section of the config file (nothing was read or deleted)"
    )]
    Policy(#[from] cfdr_retention::Error),
    /// An option is out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Reading the repository failed; nothing was deleted.
    #[error("{what} failed, nothing was deleted: {source}")]
    Storage {
        /// What prune was doing.
        what: &'static str,
        /// The storage error (names the key and the fix; boxed: it is large).
        #[source]
        source: Box<cfdr_storage::Error>,
    },
    /// Another prune holds the repository lock (after waiting, if asked to).
    #[error(
        "another prune is running, nothing was deleted: {source}; retry later or pass --wait SECS"
    )]
    Locked {
        /// The lock error, naming the holder and expiry (boxed: it is large).
        #[source]
        source: Box<cfdr_storage::Error>,
    },
    /// Physical backups of one repository disagree on the WAL segment size.
    #[error(
        "physical backups record different WAL segment sizes {sizes:?}: one repository's WAL archive belongs to one cluster; nothing was deleted, move the other cluster's backups to their own repository"
    )]
    MixedSegmentSizes {
        /// The sizes found, in bytes.
        sizes: Vec<u64>,
    },
    /// The lock could not be renewed or was taken over: deleting stopped.
    #[error("lost the prune lock ({reason}); stopped deleting")]
    LockLost {
        /// What happened.
        reason: String,
    },
    /// Execution started and then failed. What was deleted is consistent
    /// (manifests go first, so no listed backup lacks data); running prune
    /// again finishes the job.
    #[error(
        "prune stopped after deleting {deleted} objects: {source}; the repository is consistent, run cfdr-prune again to finish"
    )]
    Interrupted {
        /// Objects deleted before the failure.
        deleted: usize,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// True when the prune deleted some objects before it stopped (a re-run
    /// finishes); false when nothing was deleted.
    pub fn is_partial(&self) -> bool {
        matches!(self, Error::Interrupted { .. })
    }

    /// True when another prune holds the lock.
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::Locked { .. })
    }

    pub(crate) fn storage(what: &'static str) -> impl FnOnce(cfdr_storage::Error) -> Error {
        move |source| Error::Storage {
            what,
            source: Box::new(source),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
