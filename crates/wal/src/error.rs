//! The one error type of cfdr-wal-archive.

/// Errors of WAL archiving, restoring and streaming.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A WAL file belongs to another cluster than the repository's archive.
    #[error(
        "refusing {what}: the WAL archive at {repository} belongs to {archive}, this is {local}. Point archive_command/restore_command at this cluster's own repository; on a restored clone or test copy set archive_mode = off"
    )]
    WalIdentityMismatch {
        /// What was refused (`push of 000000010000000000000003`).
        what: String,
        /// The repository.
        repository: String,
        /// The archive's cluster.
        archive: String,
        /// The local cluster or file.
        local: String,
    },
    /// The archive holds different content under the same WAL file name.
    #[error(
        "refusing to overwrite {key}: the archive holds a different {file} (SHA-256 {stored}, this one {local}). Two clusters or a clone are archiving into one repository: find the second writer (cfdr-wal list) and stop it; nothing was overwritten"
    )]
    WalConflict {
        /// The file name.
        file: String,
        /// The object key.
        key: String,
        /// SHA-256 recorded in the stored object.
        stored: String,
        /// SHA-256 of the local file.
        local: String,
    },
    /// A timeline that the archive has not adopted tried to archive.
    #[error(
        "refusing {file}: timeline {timeline} is new to the WAL archive at {repository} (adopted: {adopted:?}). A promoted clone or PITR test copy must not archive here: set archive_mode = off on it. If this cluster is now production (failover, production PITR), run `cfdr-wal adopt-timeline {timeline}` once and PostgreSQL's next retry archives it"
    )]
    WalNewTimeline {
        /// The file refused.
        file: String,
        /// Its timeline.
        timeline: u32,
        /// The repository.
        repository: String,
        /// Timelines the archive accepts.
        adopted: Vec<u32>,
    },
    /// A stored WAL object fails verification.
    #[error("WAL object {key} is damaged: {reason}. {hint}")]
    WalCorrupt {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
        /// What to do, for the command that found it.
        hint: &'static str,
    },
    /// A local file is not what its WAL name says.
    #[error("{file} is not a usable WAL file: {reason}")]
    WalFile {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The asynchronous archiver could not store a file, or did not in time.
    #[error("asynchronous archiving of {file}: {reason}")]
    WalAsync {
        /// The file.
        file: String,
        /// The worker's error or the timeout.
        reason: String,
    },
    /// A local I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A segment held only as stream chunks has a hole.
    #[error(
        "WAL segment {segment} is held only as WAL stream chunks, and the chunks from {from} to {to} are missing. Nothing was handed to PostgreSQL, so recovery stops here instead of replaying past the hole: restore the missing chunk from another copy of the repository, or recover to a point before {from}"
    )]
    WalStreamHole {
        /// The segment.
        segment: String,
        /// First missing position.
        from: cfdr_retention::Lsn,
        /// Where the next chunk starts.
        to: cfdr_retention::Lsn,
    },
    /// The server lets a replication slot keep WAL without limit.
    #[error(
        "max_slot_wal_keep_size is -1 (unlimited) on {target}: while the stream is down its slot makes the primary keep WAL until the disk fills. Set max_slot_wal_keep_size (e.g. '50GB') and reload, or accept the risk with --allow-unbounded-slot (stream.allow-unbounded-slot = true)"
    )]
    StreamUnboundedSlot {
        /// The server.
        target: String,
    },
    /// The WAL stream cannot run against this server.
    #[error("cannot stream WAL from {target}: {reason}")]
    StreamSetup {
        /// The server.
        target: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The WAL stream stopped (the primary is gone, or pg_receivewal failed).
    #[error(
        "the WAL stream from {target} stopped: {reason}. Received up to {received}, safe in the repository up to {safe}. If the primary is lost, restore with `cfdr-restore pitr --latest`: it replays everything up to {safe}. Otherwise start the stream again (its systemd unit and Kubernetes Deployment restart it)"
    )]
    StreamStopped {
        /// The server.
        target: String,
        /// What pg_receivewal said.
        reason: String,
        /// End of the WAL in the local spool.
        received: cfdr_retention::Lsn,
        /// End of the WAL safe in the repository.
        safe: cfdr_retention::Lsn,
    },
    /// The repository failed.
    #[error(transparent)]
    Storage(#[from] cfdr_storage::Error),
    /// Connecting to or querying the server, or running a client tool, failed.
    /// (Boxed: cfdr-pg's error is large, and most results here are small.)
    #[error(transparent)]
    Pg(Box<cfdr_pg::Error>),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<cfdr_pg::Error> for Error {
    fn from(e: cfdr_pg::Error) -> Self {
        Error::Pg(Box::new(e))
    }
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
