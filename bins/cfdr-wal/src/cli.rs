//! Flags of cfdr-wal.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// WAL archiving into a cfdr repository: PostgreSQL's archive_command and
/// restore_command, the archive listing and its continuity check.
///
/// Exit codes: push 0 only when stored, else 2 (PostgreSQL retries);
/// fetch 0 restored, 1 not in the archive (quiet: the normal end of
/// recovery), 128 on any real error (PostgreSQL stops recovery rather than
/// end it early); check and preflight 1 when WAL is missing or a setting is
/// wrong; otherwise 2 on errors.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "postgresql.conf:\n  \
    archive_command = 'cfdr-wal --config /etc/cfdr/cfdr.toml push %p'\n  \
    restore_command = 'cfdr-wal --config /etc/cfdr/cfdr.toml fetch %f %p'\n\
    Examples:\n  cfdr-wal list\n  cfdr-wal check --from 000000010000000000000042\n  \
    DATABASE_URL=postgres://cfdr@db/postgres cfdr-wal stream"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: cfdr_cli::Common,
    /// Data directory (default: the current one, where PostgreSQL runs the commands).
    #[arg(long, global = true, env = "PGDATA")]
    pub(crate) pg_data: Option<PathBuf>,
    /// Spool folder for async push and prefetch (wal.spool-dir).
    #[arg(long, global = true)]
    pub(crate) spool: Option<PathBuf>,
    /// JSON output (list, check).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Archive one file of pg_wal (archive_command = '... push %p').
    Push {
        /// The file (%p, relative to the data directory).
        path: PathBuf,
        /// Acknowledge files stored by the background worker (wal.push-async).
        #[arg(long = "async")]
        push_async: bool,
    },
    /// Restore one WAL file (restore_command = '... fetch %f %p').
    Fetch {
        /// The file name (%f).
        name: String,
        /// Where PostgreSQL wants it (%p).
        dest: PathBuf,
        /// Fetch this many following segments ahead, in parallel (wal.prefetch).
        #[arg(long)]
        prefetch: Option<usize>,
    },
    /// Archived WAL files: name, stored size, time.
    List,
    /// Report missing segments from a start segment to the newest, per timeline.
    Check {
        /// First segment needed (e.g. a base backup's start); default: the oldest archived.
        #[arg(long)]
        from: Option<String>,
    },
    /// Check a running server's WAL settings, archiver and identity (DATABASE_URL / PG*).
    Preflight,
    /// Allow a new timeline to archive: after a failover or production PITR.
    AdoptTimeline {
        /// The timeline id (decimal).
        timeline: u32,
    },
    /// Stream WAL into the repository continuously (DATABASE_URL / PG*):
    /// pg_receivewal through a replication slot, chunks within a second,
    /// completed segments as `push` stores them. Runs until stopped.
    Stream {
        /// Replication slot (stream.slot; created when absent).
        #[arg(long)]
        slot: Option<String>,
        /// Local folder of the stream (stream.spool-dir).
        #[arg(long)]
        stream_dir: Option<PathBuf>,
        /// Run even when max_slot_wal_keep_size is unlimited (stream.allow-unbounded-slot).
        #[arg(long)]
        allow_unbounded_slot: bool,
    },
    /// The asynchronous push worker (started by `push --async`).
    #[command(hide = true)]
    PushWorker,
    /// The prefetch worker (started by `fetch` with prefetch).
    #[command(hide = true)]
    PrefetchWorker {
        #[arg(long)]
        prefetch: usize,
    },
}
