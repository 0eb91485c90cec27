//! cfdr-backup: thin wiring from flags to cfdr-pg and cfdr-storage.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use anyhow::Result;
use cfdr_cli::{Outcome, human_bytes};
use cfdr_pg::PgTarget;
use cfdr_pg::logical::{self, LogicalDetails};
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
    cfdr-backup list --json"
)]
struct Cli {
    #[command(flatten)]
    common: cfdr_cli::Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Backups with id, kind, class, size, age and database.
    List {
        /// Machine-readable output (the manifests).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::main(cli.common.verbose, run(cli))
}

async fn run(cli: Cli) -> Result<Outcome> {
    let config = cli.common.config()?;
    let repo = cfdr_cli::open_repository(&config).await?;
    match cli.command {
        Command::Logical { db, class, summary } => {
            let mut target = PgTarget::from_env()?;
            if let Some(db) = db {
                target = target.with_database(&db);
            }
            let m = logical::backup(
                &repo,
                &target,
                &class,
                &config.pg,
                &config.encode_options()?,
            )
            .await?;
            if summary || cli.common.verbose > 0 {
                let d = LogicalDetails::of(&m)?;
                let counts: Vec<String> = d
                    .row_counts
                    .iter()
                    .map(|(t, n)| format!("{t}={n}"))
                    .collect();
                println!(
                    "backup {} of {} ({class}): {} in {:.1}s, rows {}",
                    m.id,
                    d.database,
                    human_bytes(m.stored_size()),
                    m.duration().as_secs_f64(),
                    counts.join(" ")
                );
            }
        }
        Command::List { json } => {
            let backups = repo.backups().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&backups)?);
                return Ok(Outcome::Ok);
            }
            let now = jiff::Timestamp::now();
            println!(
                "{:<40} {:<9} {:<7} {:>10} {:>8}  DATABASE",
                "ID", "KIND", "CLASS", "SIZE", "AGE"
            );
            for m in &backups {
                let age = now.duration_since(m.finished).as_secs() / 60;
                let db = LogicalDetails::of(m)
                    .map(|d| d.database)
                    .unwrap_or_else(|_| "-".into());
                let class = m.class.as_deref().unwrap_or("-");
                println!(
                    "{:<40} {:<9} {:<7} {:>10} {:>7}m  {db}",
                    m.id,
                    m.kind,
                    class,
                    human_bytes(m.stored_size()),
                    age
                );
            }
        }
    }
    Ok(Outcome::Ok)
}
