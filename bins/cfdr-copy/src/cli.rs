//! Command-line flags of cfdr-copy.

use clap::Parser;

/// Copy the primary repository to the secondary repositories named by the
/// config's [[copy]] entries (any backend to any backend): complete
/// backups (manifest last, so a half-copied backup is never listed on the
/// secondary), WAL and timeline history, secret bundles, file archives and
/// incident records, byte for byte (the secondary restores with the same
/// keys). Every object is checked against its recorded SHA-256 as it is
/// read from the primary and against what the secondary stored; a damaged
/// object is reported and not copied. Nothing on the secondary is deleted
/// or overwritten, so its retention may keep more than the primary's. A
/// second run transfers nothing; a killed run resumes. Each copy holds a
/// lease lock on its secondary and records its lag in the primary at
/// copy-state/<name>.json.
///
/// Restore from a copy by naming it: cfdr-restore -r <copy name> ...
///
/// Exit codes: 0 every copy complete, 1 some objects differ, are missing or
/// failed (see the report; the next run retries), 2 usage, configuration or
/// runtime error, 3 another cfdr-copy holds a secondary's lock.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    cfdr-copy                                  # every [[copy]] once\n  \
    cfdr-copy --to dr-eu --dry-run             # what would be copied\n  \
    cfdr-copy --json > copy-report.json        # the report as JSON\n  \
    cfdr-copy --to dr-eu --verify-secondary    # also re-read the secondary\n  \
    cfdr-copy --follow                         # keep copying new WAL within seconds"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: cfdr_cli::Common,
    /// Copy to this [[copy]] entry only (repeatable; default: all of them).
    #[arg(long = "to", value_name = "NAME")]
    pub(crate) to: Vec<String>,
    /// Compare and report only: write nothing, take no lock.
    #[arg(short = 'n', long)]
    pub(crate) dry_run: bool,
    /// Read every object on the secondary back (those already there too)
    /// and check its SHA-256: a full audit of the copy.
    #[arg(long)]
    pub(crate) verify_secondary: bool,
    /// Keep running: new WAL is copied within seconds of its arrival in the
    /// primary, everything else at each full pass. Stops on SIGINT/SIGTERM.
    #[arg(long)]
    pub(crate) follow: bool,
    /// With --follow: seconds between incremental WAL passes.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, requires = "follow")]
    pub(crate) interval: f64,
    /// With --follow: seconds between full passes.
    #[arg(long, value_name = "SECS", default_value_t = 60, requires = "follow")]
    pub(crate) full_every: u64,
    /// Objects transferred at once, per copy.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub(crate) concurrency: usize,
    /// Print the reports as JSON (an array, one per copy; with --follow one
    /// line per pass).
    #[arg(long)]
    pub(crate) json: bool,
    /// Print nothing when every copy is complete (problems still go to stderr).
    #[arg(short, long, conflicts_with = "json")]
    pub(crate) quiet: bool,
    /// Wait up to SECS for another cfdr-copy's lock instead of exiting 3.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub(crate) wait: u64,
    /// Lease time of the lock in seconds (renewed every quarter); a killed
    /// copy blocks the next one at most this long.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub(crate) lock_ttl: u64,
}
