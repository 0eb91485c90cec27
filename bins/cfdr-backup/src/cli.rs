//! Command-line flags of cfdr-backup.

use clap::{Parser, Subcommand};

/// Take and list PostgreSQL backups. Quiet on success (cron-friendly); the
/// cause and exit 2 on failure.
///
/// Exit codes: 0 success, 2 usage or runtime error.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples (runbook schedule, see deploy/):\n  \
    DATABASE_URL=postgres://backup@db/cryptofunk cfdr-backup logical --class hourly --summary\n  \
    DATABASE_URL=postgres://replicator@db/postgres cfdr-backup physical --class daily\n  \
    cfdr-backup files --class config --path /etc/cryptofunk --git-tag --summary\n  \
    cfdr-backup list --json"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: cfdr_cli::Common,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// pg_dump (custom format) streamed through the codec into the repository.
    Logical {
        /// Database (default: from DATABASE_URL / PGDATABASE).
        #[arg(long)]
        db: Option<String>,
        /// Schedule class, for retention.
        #[arg(long, default_value = "manual", value_parser = ["hourly", "daily", "weekly", "manual"])]
        class: String,
        /// Print one summary line on success.
        #[arg(long)]
        summary: bool,
    },
    /// Base backup (pg_basebackup tar) streamed into the repository; committed
    /// once the WAL it needs is archived (archive_command = cfdr-wal push).
    Physical {
        /// Schedule class, for retention.
        #[arg(long, default_value = "manual", value_parser = ["hourly", "daily", "weekly", "manual"])]
        class: String,
        /// Print one summary line on success.
        #[arg(long)]
        summary: bool,
    },
    /// Files and folders (configuration, logs, audit logs, trading records)
    /// as a tar streamed through the codec, with an index of every file's
    /// size and SHA-256. Retention follows the class (see [retention]).
    Files {
        /// What the paths hold: decides retention (config indefinitely,
        /// logs 90 days, audit and records 7 years by default).
        #[arg(long, value_parser = ["config", "logs", "audit", "records"])]
        class: String,
        /// A file or folder to archive (repeat for more).
        #[arg(long = "path", required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Leave out entries matching this pattern (`*.tmp`: any name;
        /// `var/log/app/**`: by path). Repeatable.
        #[arg(long)]
        exclude: Vec<String>,
        /// Tag HEAD of the git checkout among the paths as
        /// production-config-YYYYMMDD (runbook 2.2) and record the commit.
        #[arg(long)]
        git_tag: bool,
        /// Print one summary line on success.
        #[arg(long)]
        summary: bool,
    },
    /// Backups with id, kind, class, size, age, verified state and database.
    List {
        /// Machine-readable output: the manifests, each with `verified` (its
        /// newest check: kind, time, passed; null when never checked).
        #[arg(long)]
        json: bool,
    },
}
