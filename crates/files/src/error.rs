//! The one error type of cfdr-files.

/// Everything that can stop a file archive or a restore. Each message names
/// the entry or path and the next step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Repository I/O or codec failure.
    #[error(transparent)]
    Storage(#[from] cfdr_storage::Error),
    /// Local file system I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A path given to back up is unusable.
    #[error("cannot archive {path}: {reason}")]
    BadSource {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// An archive entry is unsafe or malformed; nothing of it was written.
    #[error(
        "refused archive entry {entry:?}: {reason}; nothing was written outside the target folder"
    )]
    Refused {
        /// The entry name as stored (lossy UTF-8).
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A restored file does not match the archive's index.
    #[error(
        "{entry:?} does not match the archive index: {reason}; the archive is damaged, restore another one"
    )]
    Mismatch {
        /// The entry.
        entry: String,
        /// What differs.
        reason: String,
    },
    /// The restore would replace something that exists.
    #[error("{path} already exists: pass --force to overwrite it, or restore into an empty folder")]
    Exists {
        /// The existing path.
        path: String,
    },
    /// The backup is not a file archive.
    #[error("backup {id} is a {kind} backup, not a file archive (see cfdr-backup list)")]
    NotAnArchive {
        /// The backup id.
        id: String,
        /// Its kind.
        kind: String,
    },
    /// Nothing in the archive matched the `--path` filter.
    #[error("no entry of archive {id} is at or under {paths}; see cfdr-restore files {id} --list")]
    NoMatch {
        /// The backup id.
        id: String,
        /// The paths asked for.
        paths: String,
    },
    /// A git command failed while tagging the configuration checkout.
    #[error("git {what} in {path} failed: {reason}")]
    Git {
        /// The checkout.
        path: String,
        /// The command.
        what: String,
        /// Its message.
        reason: String,
    },
    /// An option is invalid.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an I/O error at `path`.
pub(crate) fn io(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.as_ref().display().to_string();
    move |source| Error::Io { path, source }
}
