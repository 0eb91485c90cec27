//! The one error type of cfdr-storage.

use std::time::Duration;

/// Errors from building a repository location, object I/O, the codec
/// pipeline, the repository format and locks. Every variant names the object
/// key, URL or setting it concerns and, where useful, what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository URL cannot be parsed.
    #[error(
        "invalid repository URL {url:?}: {reason}; expected e.g. file:///var/backups/cfdr, s3://bucket/prefix, gs://bucket/prefix, azblob://container/prefix or memory://"
    )]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL scheme is not one cfdr supports.
    #[error(
        "unsupported repository scheme {scheme:?} in {url:?}: use file, s3, gs, azblob or memory"
    )]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
        /// The URL as given.
        url: String,
    },
    /// A storage option is invalid.
    #[error("invalid storage option {option}: {reason}")]
    InvalidOption {
        /// The option name.
        option: String,
        /// What is wrong.
        reason: String,
    },
    /// The bucket or container does not exist.
    #[error(
        "{what} {name:?} does not exist at {endpoint}: create it first or fix the repository URL"
    )]
    MissingBucket {
        /// "bucket" or "container".
        what: &'static str,
        /// Its name.
        name: String,
        /// The endpoint that answered.
        endpoint: String,
    },
    /// The backend refused the credentials.
    #[error("{endpoint} rejected the credentials ({detail}): check {hint}")]
    AccessDenied {
        /// The endpoint.
        endpoint: String,
        /// The backend's message.
        detail: String,
        /// Which settings to check.
        hint: &'static str,
    },
    /// The endpoint could not be reached (after retries).
    #[error(
        "cannot reach {endpoint} ({detail}): check the endpoint URL, the network and that the service is running"
    )]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The underlying error.
        detail: String,
    },
    /// An object does not exist.
    #[error("object {key} not found")]
    NotFound {
        /// The object key.
        key: String,
    },
    /// A create-only write found the object already there.
    #[error("object {key} already exists")]
    AlreadyExists {
        /// The object key.
        key: String,
    },
    /// Stored bytes do not match what was recorded: bit rot, truncation or tampering.
    #[error("object {key} is corrupt: {reason}; restore from another backup or repository copy")]
    Corrupt {
        /// The object key.
        key: String,
        /// What did not match.
        reason: String,
    },
    /// Any other backend error, with the operation and key.
    #[error("storage {operation} on {key} failed: {source}")]
    Backend {
        /// The operation (read, write, list, ...).
        operation: &'static str,
        /// The object key or prefix.
        key: String,
        /// The opendal error (boxed: it is large).
        #[source]
        source: Box<opendal::Error>,
    },
    /// Compression or decompression failed.
    #[error("codec failed on {key}: {reason}")]
    Codec {
        /// The object key.
        key: String,
        /// What failed.
        reason: String,
    },
    /// Encryption or decryption failed.
    #[error("encryption failed on {key}: {source}")]
    Crypto {
        /// The object key.
        key: String,
        /// The age error.
        #[source]
        source: cfdr_secrets::Error,
    },
    /// The source stream of an upload failed; nothing was stored.
    #[error("reading the source for {key} failed, nothing was stored: {source}")]
    Source {
        /// The object key.
        key: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing decoded data to its destination failed.
    #[error("writing decoded {key} to its destination failed: {source}")]
    Sink {
        /// The object key.
        key: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No repository at this location.
    #[error(
        "no cfdr repository at {location}: run `cfdr-repo init` (or pass --init) to create one"
    )]
    NotARepository {
        /// The repository location.
        location: String,
    },
    /// `init` found a repository already there.
    #[error("a cfdr repository already exists at {location} (id {id}); refusing to overwrite it")]
    RepositoryExists {
        /// The repository location.
        location: String,
        /// Its id.
        id: String,
    },
    /// The repository was written by a newer cfdr.
    #[error(
        "repository format {found} at {location} is newer than this cfdr supports ({supported}): upgrade cfdr"
    )]
    UnsupportedFormat {
        /// The repository location.
        location: String,
        /// Its format version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A JSON document in the repository is malformed.
    #[error("{key} is not a valid cfdr document: {reason}")]
    InvalidDocument {
        /// The object key.
        key: String,
        /// The parse error.
        reason: String,
    },
    /// A backup id is malformed.
    #[error("invalid backup id {id:?}: expected YYYYMMDDTHHMMSS.mmmZ-<kind>-<suffix>")]
    InvalidBackupId {
        /// The id.
        id: String,
    },
    /// A lease lock is held by someone else.
    #[error(
        "lock {name} is held by {holder} (host {host}, pid {pid}) until {expires}; wait, or if that process is gone the lock expires by itself in {remaining:?}"
    )]
    Locked {
        /// Lock name.
        name: String,
        /// Holder label.
        holder: String,
        /// Holder host.
        host: String,
        /// Holder pid.
        pid: u32,
        /// Expiry time (UTC).
        expires: String,
        /// Time until expiry.
        remaining: Duration,
    },
    /// A lock this process held was taken over after it expired.
    #[error("lock {name} was lost (taken over after expiry); the protected work must be redone")]
    LockLost {
        /// Lock name.
        name: String,
    },
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Locked { .. } => true,
            Error::Backend { source, .. } => source.is_temporary(),
            _ => false,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
