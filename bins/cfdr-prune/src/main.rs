//! cfdr-prune: thin wiring from flags to cfdr-prune.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use cfdr_cli::{Outcome, human_bytes};
use clap::Parser;
use jiff::Timestamp;

/// Apply the retention policies of the config file's [retention] section to
/// the repository: plan which backups, WAL files and leftovers of failed
/// backups go (with the rules that decided each), print the plan, and
/// delete under the repository's prune lock. Manifests go first, so an
/// interrupted prune never leaves a backup listed without its data; running
/// it again finishes the job. WAL goes only when no kept backup needs it and
/// it lies before the point-in-time-recovery window. A backup whose
/// manifest cannot be read is reported as DAMAGED and never deleted (with
/// a damaged physical backup, no WAL is deleted either).
///
/// Exit codes: 0 success (or dry run printed), 1 the prune stopped part-way
/// (what was deleted is consistent; run it again to finish), 2 usage,
/// configuration or runtime error (nothing deleted), 3 another prune holds
/// the lock (nothing deleted; retry later or pass --wait).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    cfdr-prune --dry-run                               # what would go, and why\n  \
    cfdr-prune --quiet                                 # cron: silent on success\n  \
    cfdr-prune --class audit-logs --at 2026-01-01T00:00:00Z --dry-run\n  \
    cfdr-prune --json > prune-report.json"
)]
struct Cli {
    #[command(flatten)]
    common: cfdr_cli::Common,
    /// Plan and print only: delete nothing, take no lock.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Prune only this data class (repeatable): database, database-archive,
    /// application-logs, audit-logs, trading-records, configuration, secrets.
    /// WAL is pruned only when both database classes are.
    #[arg(long = "class", value_name = "CLASS")]
    classes: Vec<String>,
    /// Evaluate the policies as of TIME (RFC 3339, e.g. 2026-01-31T00:00:00Z)
    /// instead of now.
    #[arg(long, value_name = "TIME")]
    at: Option<Timestamp>,
    /// Print the report as JSON (plan, keys deleted, what was left alone).
    #[arg(long)]
    json: bool,
    /// List kept backups and WAL too, not only what goes.
    #[arg(long)]
    show_kept: bool,
    /// Print nothing on success (errors still go to stderr).
    #[arg(short, long, conflicts_with = "json")]
    quiet: bool,
    /// Wait up to SECS for another prune to finish instead of exiting 3.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    wait: u64,
    /// Lease time of the lock in seconds (renewed every quarter); a killed
    /// prune blocks the next one at most this long.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    lock_ttl: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::main(cli.common.verbose, run(cli))
}

async fn run(cli: Cli) -> Result<Outcome> {
    let config = cli.common.config()?;
    let options = cfdr_prune::Options {
        dry_run: cli.dry_run,
        classes: cli
            .classes
            .iter()
            .map(|c| cfdr_prune::parse_class(c))
            .collect::<Result<_, _>>()?,
        at: cli.at,
        lock_wait: Duration::from_secs(cli.wait),
        lock_ttl: Duration::from_secs(cli.lock_ttl),
    };
    // Bad policy input fails here, before the repository is even opened.
    cfdr_prune::check(&config.retention, &options)?;
    let repo = cfdr_cli::open_repository(&config).await?;
    let report = match cfdr_prune::prune(&repo, &config.retention, &options).await {
        Ok(report) => report,
        Err(e) if e.is_locked() => {
            eprintln!("error: {e}");
            return Ok(Outcome::Code(3));
        }
        Err(e) if e.is_partial() => {
            eprintln!("error: {e}");
            return Ok(Outcome::CheckFailed);
        }
        Err(e) => return Err(e.into()),
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !cli.quiet {
        print!("{}", report.render(cli.show_kept, human_bytes));
    }
    if cli.json || cli.quiet {
        // Damage is never silent, not even in cron mode.
        for d in &report.damaged {
            eprintln!("warning: DAMAGED: backup {}: {}", d.id, d.reason);
        }
    }
    Ok(Outcome::Ok)
}
