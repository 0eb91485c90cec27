//! The one error type of cfdr-pg.

use std::path::PathBuf;

/// Errors from PostgreSQL tools, connections, clusters, backup and restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A client tool was not found.
    #[error(
        "{tool} not found (searched {searched}): install the PostgreSQL client tools (apt-get install postgresql-client-{major}) or set pg.bin-dir"
    )]
    ToolNotFound {
        /// The tool.
        tool: String,
        /// Where it was looked for.
        searched: String,
        /// The server's major version (the package to install).
        major: u32,
    },
    /// The client tools are older than the server.
    #[error(
        "{tool} is version {client} but the server is {server}: a dump from an older pg_dump is not guaranteed to restore; install postgresql-client-{server} or set pg.bin-dir"
    )]
    ToolTooOld {
        /// The tool.
        tool: PathBuf,
        /// Its major version.
        client: u32,
        /// The server's major version.
        server: u32,
    },
    /// A tool ran and failed.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        /// The tool.
        tool: String,
        /// Exit status.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// Connecting to the server failed.
    #[error(
        "cannot connect to PostgreSQL at {target}: {reason}; check DATABASE_URL or PGHOST/PGPORT/PGUSER/PGPASSWORD and that the server is running"
    )]
    Connect {
        /// host:port/database (never the password).
        target: String,
        /// The driver's message.
        reason: String,
    },
    /// A query failed.
    #[error("{what} failed on {database}: {reason}")]
    Query {
        /// What was being done.
        what: String,
        /// The database.
        database: String,
        /// The server's message.
        reason: String,
    },
    /// The stored dump is not a well-formed custom-format archive.
    #[error(
        "the stored dump cannot be read: {0}; check the backup with `cfdr-repo verify` and restore an earlier one"
    )]
    Archive(String),
    /// A dump entry holds SQL that a dump of one database never does and
    /// that could reach past the restored database.
    #[error(
        "refusing to restore: the dump's entry {entry} holds {what}, which pg_dump of one database never writes and which could reach beyond the restored database (another database, the server's settings or roles). The backup was altered or crafted: restore an earlier backup, and inspect this one with `pg_restore -l`"
    )]
    ForeignSql {
        /// The entry: id, kind and name as `pg_restore -l` shows them.
        entry: String,
        /// What was found.
        what: String,
    },
    /// A connection setting is invalid.
    #[error("invalid PostgreSQL connection setting: {0}")]
    Config(String),
    /// Local cluster control failed.
    #[error("{action} of the cluster at {data_dir} failed: {detail}")]
    Cluster {
        /// initdb, start, stop...
        action: &'static str,
        /// The data directory.
        data_dir: PathBuf,
        /// Output or reason.
        detail: String,
    },
    /// A local I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
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
    /// The repository failed.
    #[error(transparent)]
    Storage(#[from] cfdr_storage::Error),
    /// The restore target exists already.
    #[error(
        "database {name} already exists: pick another --target-db, or drop it yourself if it is a leftover (cfdr never drops a database it did not create)"
    )]
    DatabaseExists {
        /// Its name.
        name: String,
    },
    /// The backup's encoding or locale cannot be used on this server.
    #[error(
        "cannot create database {database} with the backup's encoding and locale ({locale}): {reason}; install that locale on the server's host (`locale -a` lists those it has) and restart PostgreSQL, or restore on a server that has it"
    )]
    Locale {
        /// The database being created.
        database: String,
        /// Encoding and locale recorded in the backup.
        locale: String,
        /// The server's message.
        reason: String,
    },
    /// A database name longer than the server keeps.
    #[error(
        "database name {name} is {bytes} bytes; PostgreSQL keeps only 63 and would silently cut it: pick a shorter name"
    )]
    NameTooLong {
        /// The name as given.
        name: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// No backup matches.
    #[error(
        "no logical backup {what} in the repository: run `cfdr-backup logical` first, or check the repository URL"
    )]
    NoBackup {
        /// Which one was asked for.
        what: String,
    },
    /// Restored data does not match the manifest.
    #[error("restored database {database} does not match backup {id}: {mismatches}")]
    Mismatch {
        /// The restored database.
        database: String,
        /// The backup.
        id: String,
        /// What differs.
        mismatches: String,
    },
    /// A hook command failed.
    #[error("hook {name} ({command}) failed with {status}: {output}")]
    Hook {
        /// before_restore or after_restore.
        name: &'static str,
        /// The command.
        command: String,
        /// Exit status.
        status: String,
        /// Its output (trimmed).
        output: String,
    },
    /// Swapping database names is not possible now.
    #[error("cannot swap {live} for {restored}: {reason}")]
    Swap {
        /// The live database.
        live: String,
        /// The restored database.
        restored: String,
        /// Why.
        reason: String,
    },
    /// The server is not set up for physical backups or PITR.
    #[error("{setting} is {value:?} on {target}: {fix}")]
    NotArchiving {
        /// The setting (wal_level, archive_mode, archive_command).
        setting: &'static str,
        /// Its value.
        value: String,
        /// host:port of the server.
        target: String,
        /// What to change.
        fix: &'static str,
    },
    /// WAL a base backup needs did not reach the repository in time.
    #[error(
        "WAL segment {segment} needed by base backup {id} was not archived within {waited_secs}s: check archive_command and SELECT * FROM pg_stat_archiver; the backup was not committed"
    )]
    WalNotArchived {
        /// The missing segment.
        segment: String,
        /// The backup.
        id: String,
        /// How long cfdr waited.
        waited_secs: u64,
    },
    /// A point-in-time restore cannot reach its target.
    #[error("point-in-time restore to {target}: {reason}")]
    PitrTarget {
        /// The target as given.
        target: String,
        /// Why not.
        reason: String,
    },
    /// The restore target directory holds files.
    #[error(
        "data directory {dir} is not empty: restore into an empty or new directory, or pass --force to delete its contents first"
    )]
    DataDirNotEmpty {
        /// The directory.
        dir: PathBuf,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
