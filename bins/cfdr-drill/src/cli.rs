//! Flags of cfdr-drill.

use std::path::PathBuf;

use clap::Parser;

/// DR drills that measure real RTO and RPO (runbook sections 4 and 6).
///
/// With no configuration (no --config, no $CFDR_CONFIG, no
/// /etc/cfdr/cfdr.toml) it builds a sandbox in a temp folder: a PostgreSQL 15
/// primary archiving with cfdr-wal into a folder repository, the CryptoFunk
/// sample with a trading workload running throughout, backups, a streaming
/// replica and a secrets bundle. It plays every scenario on it, prints the
/// report, stores it (with a timeline chart) under drills/<id>/ in the
/// repository (default ./cfdr-repo) and removes the sandbox, also on Ctrl-C
/// and on failure. A failed drill opens an incident.
///
/// With a configuration it drills the configured system, safely: the newest
/// physical backup with its WAL restored into a scratch server, the newest
/// logical backup into a new database beside the live one (DATABASE_URL /
/// PG*), each secrets bundle decrypted in memory; nothing live is touched.
///
/// Exit codes: 0 every scenario passed within its objectives, 1 a scenario
/// failed, an objective was missed or the drill timed out, 2 usage or
/// runtime error, 130 cancelled (Ctrl-C).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    cfdr-drill\n  \
    cfdr-drill --scenario accidental-deletion --scenario database-loss\n  \
    cfdr-drill --scenario secrets-loss --inject wrong-key\n  \
    cfdr-drill --json > drill.json"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: cfdr_cli::Common,
    /// Scenario to run (repeatable): all, secrets-loss, accidental-deletion,
    /// replica-failover, database-loss, region-loss. Against a configured
    /// system, all
    /// means the safe ones: secrets-loss and database-loss.
    #[arg(long = "scenario", value_name = "NAME", default_value = "all")]
    pub(crate) scenarios: Vec<String>,
    /// Plant a fault the drill must detect and fail on, naming it
    /// (repeatable): missing-wal, corrupt-object, truncated-object,
    /// wrong-key, stale-repository. Each goes into its scenario.
    #[arg(long = "inject", value_name = "FAULT")]
    pub(crate) inject: Vec<String>,
    /// Run the sandbox even when a configuration exists (its objectives,
    /// incident severity and repository for the report still apply).
    #[arg(long)]
    pub(crate) sandbox: bool,
    /// Against a configured system, also run accidental-deletion (a canary
    /// table written into the live database, half deleted, restored to just
    /// before into a scratch server, dropped) and, with [drill]
    /// primary-data-dir and replica-url, replica-failover (stops the live
    /// primary, promotes the standby, which stays the primary).
    #[arg(long)]
    pub(crate) destructive: bool,
    /// PostgreSQL bin folder (default: /usr/lib/postgresql/15/bin, newer
    /// installed versions, then PATH).
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin: Option<PathBuf>,
    /// Print the JSON report instead of the Markdown one.
    #[arg(long)]
    pub(crate) json: bool,
}
