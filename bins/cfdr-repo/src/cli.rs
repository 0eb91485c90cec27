//! Command-line flags of cfdr-repo.

use clap::{Parser, Subcommand};

/// Administer a cfdr repository: create it, inspect it, verify every stored
/// checksum, and prove the whole write/read path with a self-test.
///
/// Exit codes: 0 success, 1 a verification failed (an object's size or
/// SHA-256, or a manifest that cannot be read), 2 usage or runtime error;
/// `check` exits 1 when it finds a problem (not for warnings).
/// `list` and `info` show a backup whose manifest cannot be read as DAMAGED
/// and go on with the rest.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    cfdr-repo selftest --init                       # local ./cfdr-repo, 64 MiB round trip\n  \
    cfdr-repo -r s3://backups/cfdr?region=eu-west-1 list --json\n  \
    cfdr-repo verify --all\n  \
    cfdr-repo check                                 # versioning and object lock of the bucket"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: cfdr_cli::Common,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a repository (refuses to overwrite an existing one).
    Init,
    /// Show the repository descriptor and what it holds.
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List committed backups, oldest first (DAMAGED: the manifest cannot be read).
    List {
        /// Machine-readable output (the manifests).
        #[arg(long)]
        json: bool,
    },
    /// Read back backups and check every object's size and SHA-256 (and
    /// that the backup's check records can be read).
    Verify {
        /// Backup id (default: the latest).
        id: Option<String>,
        /// Verify every backup, then the WAL archive and stream chunks,
        /// secret bundles and incident events.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Report S3 versioning and Object Lock of the repository's bucket and
    /// the retention of its newest backup; warn on GOVERNANCE mode or a
    /// retention shorter than the retention window (exit 1 on a problem).
    Check {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write, commit, verify, read back and delete a sample backup.
    Selftest {
        /// Create the repository first if it does not exist.
        #[arg(long)]
        init: bool,
        /// Sample size in MiB.
        #[arg(long, default_value_t = 64)]
        size_mib: usize,
        /// Keep the sample backup instead of deleting it.
        #[arg(long)]
        keep: bool,
    },
}
