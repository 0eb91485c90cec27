//! cfdr-replica: thin wiring from flags to cfdr-pg's replica module.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use cfdr_cli::Outcome;
use cfdr_pg::{PgBin, PgTarget, replica};
use cfdr_storage::Operation;
use cfdr_wal_archive::WalArchive;
use clap::{Parser, Subcommand};

/// Streaming standbys for failover (runbook 2.1 "Database Replication", 4.1,
/// 6 "Failover Testing"). The server is DATABASE_URL / PG*: the primary for
/// create and status, the standby for promote.
///
/// Exit codes: 0 success, 1 a standby lags more than --max-lag-bytes,
/// 2 usage or runtime error.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    CFDR_REPLICATION_PASSWORD=... cfdr-replica create --role replicator --data-dir /var/lib/postgresql/15/standby\n  \
    cfdr-replica status --max-lag-bytes 16777216\n  \
    DATABASE_URL=postgres://postgres@standby/postgres cfdr-replica promote --adopt-timeline"
)]
struct Cli {
    #[command(flatten)]
    common: cfdr_cli::Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make an empty directory a streaming standby of the primary
    /// (pg_basebackup -X stream -R with a replication slot).
    Create {
        /// Data directory of the new standby (absent or empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// Replication slot (created if absent).
        #[arg(long, default_value = "cfdr_standby")]
        slot: String,
        /// Create or update this REPLICATION role (SCRAM) with the password
        /// in $CFDR_REPLICATION_PASSWORD, and replicate as it.
        #[arg(long)]
        role: Option<String>,
    },
    /// Standbys connected to the primary, with lag in bytes and seconds.
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Exit 1 when any standby lags more than this many bytes.
        #[arg(long)]
        max_lag_bytes: Option<i64>,
    },
    /// Promote the standby, wait, and check it accepts writes.
    Promote {
        /// Seconds to wait for promotion.
        #[arg(long, default_value_t = 60)]
        wait: u64,
        /// The promoted server is production from now on: let its new
        /// timeline archive into the repository (cfdr-wal adopt-timeline).
        #[arg(long)]
        adopt_timeline: bool,
    },
}

/// How long a promotion waits for the repository to record it.
const MARKER_WAIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::main(cli.common.verbose, run(cli))
}

async fn run(cli: Cli) -> Result<Outcome> {
    let config = cli.common.config()?;
    let server = PgTarget::from_env()?;
    match cli.command {
        Command::Create {
            data_dir,
            slot,
            role,
        } => {
            let mut primary = server.clone();
            if let Some(role) = role {
                let password = std::env::var("CFDR_REPLICATION_PASSWORD")
                    .context("--role needs the password in $CFDR_REPLICATION_PASSWORD")?;
                replica::create_replication_role(&server, &role, &password).await?;
                primary.user = role;
                primary.password = Some(password);
            }
            let (version_num, _) = cfdr_pg::admin::server_version(&server).await?;
            let bin =
                PgBin::locate(config.pg.bin_dir.as_deref(), Some(version_num / 10_000)).await?;
            replica::create(&bin, &primary, &data_dir, &slot).await?;
            println!(
                "standby ready in {} (slot {slot}): start it with pg_ctl -D {} start",
                data_dir.display(),
                data_dir.display()
            );
        }
        Command::Status {
            json,
            max_lag_bytes,
        } => {
            let standbys = replica::status(&server).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&standbys)?);
            } else {
                println!(
                    "{:<20} {:<16} {:<10} {:>14} {:>10}  SYNC",
                    "NAME", "ADDRESS", "STATE", "LAG BYTES", "LAG SECS"
                );
                for s in &standbys {
                    println!(
                        "{:<20} {:<16} {:<10} {:>14} {:>10.3}  {}",
                        s.name,
                        s.address.as_deref().unwrap_or("local"),
                        s.state,
                        s.lag_bytes,
                        s.lag_seconds,
                        s.sync_state
                    );
                }
            }
            if let Some(max) = max_lag_bytes
                && standbys.iter().any(|s| s.lag_bytes > max)
            {
                return Ok(Outcome::CheckFailed);
            }
        }
        Command::Promote {
            wait,
            adopt_timeline,
        } => {
            // Recorded in the repository while it runs, so the trading gate
            // holds Halted; a failover never waits long for the repository.
            let repo = async {
                cfdr_cli::open_repository(&config)
                    .await
                    .map(|r| r.store().clone())
            };
            let marker = Operation::begin_within(repo, "promote", &server.to_string(), MARKER_WAIT)
                .await
                .inspect_err(|e| eprintln!("warning: promoting without an operation marker: {e}"))
                .ok();
            let took = replica::promote(&server, Duration::from_secs(wait)).await;
            if let Some(m) = marker
                && let Err(e) = m.finish().await
            {
                eprintln!("warning: the operation marker stays until it goes stale: {e}");
            }
            let took = took?;
            let timeline = replica::current_timeline(&server).await?;
            println!(
                "{server} promoted in {:.1}s to timeline {timeline} and accepts writes",
                took.as_secs_f64()
            );
            if adopt_timeline {
                let repo = cfdr_cli::open_repository(&config).await?;
                WalArchive::new(repo.store().clone())
                    .adopt_timeline(timeline)
                    .await?;
                println!("timeline {timeline} may archive into the repository now");
            }
        }
    }
    Ok(Outcome::Ok)
}
