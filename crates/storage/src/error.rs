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
    #[error("{}", missing_bucket(what, name, endpoint))]
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
    #[error("cannot {} {key}: {source}", crypto_verb(*.decrypting))]
    Crypto {
        /// The object key.
        key: String,
        /// Reading (decrypting) rather than writing (encrypting).
        decrypting: bool,
        /// The age error.
        #[source]
        source: cfdr_secrets::Error,
    },
    /// An age-encrypted object and no identity to decrypt it with.
    #[error(
        "{key} is age-encrypted and no identity is configured: point CFDR_AGE_IDENTITY_FILE (config `encryption.identity-file`) at a 0600 identity file, or put the identity text in CFDR_AGE_IDENTITY (config `encryption.identity-env` names the variable)"
    )]
    MissingIdentity {
        /// The object key.
        key: String,
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
        "no cfdr repository at {location}: check the repository URL (-r, CFDR_REPOSITORY or `repository.url`), or create one there with `cfdr-repo init`"
    )]
    NotARepository {
        /// The repository location.
        location: String,
    },
    /// A backup id that names no committed backup.
    #[error(
        "there is no backup {id} in the repository at {location}: list the backups with `cfdr-repo list` (or `cfdr-backup list`)"
    )]
    NoSuchBackup {
        /// The id asked for.
        id: String,
        /// The repository location.
        location: String,
    },
    /// A local repository folder the process cannot write.
    #[error(
        "cannot write {path} ({detail}): the repository folder {root} must be writable by the user cfdr runs as ({user}); WAL archiving runs as the PostgreSQL server's user (postgres): e.g. `chown -R postgres: {root}`, or give that user's group write permission (`chmod -R g+w`)"
    )]
    FolderNotWritable {
        /// The file or folder cfdr tried to create.
        path: String,
        /// The repository folder.
        root: String,
        /// The user this process runs as.
        user: String,
        /// The operating system's message.
        detail: String,
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
    /// An S3 Object Lock call (retention, versioning, lock configuration)
    /// failed.
    #[error("object lock: {operation} on {target} failed: {detail}; {hint}")]
    ObjectLock {
        /// What cfdr asked for (`PutObjectRetention`, ...).
        operation: &'static str,
        /// The key or bucket concerned.
        target: String,
        /// The server's answer (status and error code) or the transport error.
        detail: String,
        /// What to do next.
        hint: String,
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

fn missing_bucket(what: &str, name: &str, endpoint: &str) -> String {
    match what {
        // cfdr creates a local folder itself; buckets are made by their owner.
        "folder" => format!(
            "there is no repository folder {name}: check the repository URL (-r, CFDR_REPOSITORY or `repository.url`), or create a repository there with `cfdr-repo init`"
        ),
        _ => format!(
            "{what} {name:?} does not exist at {endpoint}: create it first or fix the repository URL"
        ),
    }
}

fn crypto_verb(decrypting: bool) -> &'static str {
    if decrypting { "decrypt" } else { "encrypt" }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
