//! cfdr-restore: thin wiring from flags to cfdr-pg.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use cfdr_cli::Outcome;
use cfdr_pg::PgTarget;
use cfdr_pg::logical::{self, RestoreRequest, Selector};
use cfdr_storage::BackupId;
use clap::{Parser, Subcommand};

/// Restore a backup into a NEW database, verify it against the manifest, and
/// only with --swap make it the live one (the old one is kept, renamed).
///
/// Exit codes: 0 restored within the RTO, 1 restored but over the RTO,
/// 2 usage or runtime error (nothing live was changed).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    cfdr-restore logical --latest                      # into cryptofunk_restore_<id>\n  \
    cfdr-restore logical --before 2026-11-06T14:30:00Z --swap\n  \
    cfdr-restore logical 20261106T140000.000Z-logical-ab12 --target-db cf_check --jobs 2"
)]
struct Cli {
    #[command(flatten)]
    common: cfdr_cli::Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Restore a logical backup with pg_restore.
    Logical {
        /// Backup id (default: the latest).
        id: Option<String>,
        /// The latest backup (the default).
        #[arg(long, conflicts_with_all = ["id", "before"])]
        latest: bool,
        /// The latest backup finished before this time (RFC 3339).
        #[arg(long, conflicts_with = "id")]
        before: Option<jiff::Timestamp>,
        /// Database to create (default <db>_restore_<id>).
        #[arg(long)]
        target_db: Option<String>,
        /// Make the restored database the live one; keep the old as <db>_before_<id>.
        #[arg(long)]
        swap: bool,
        /// pg_restore parallel jobs (stages the dump in a temp file).
        #[arg(long, default_value_t = 1)]
        jobs: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::main(cli.common.verbose, run(cli))
}

async fn run(cli: Cli) -> Result<Outcome> {
    let config = cli.common.config()?;
    let repo = cfdr_cli::open_repository(&config).await?;
    let Command::Logical {
        id,
        latest: _,
        before,
        target_db,
        swap,
        jobs,
    } = cli.command;
    let server = PgTarget::from_env()?;
    let selector = match (id, before) {
        (Some(id), _) => Selector::Id(BackupId::parse(&id)?),
        (None, Some(t)) => Selector::Before(t),
        (None, None) => Selector::Latest,
    };
    let manifest = logical::find(&repo, &selector, None).await?;
    println!(
        "restoring {} ({} stored)",
        manifest.id,
        cfdr_cli::human_bytes(manifest.stored_size())
    );
    let identities = config.identities()?.map(Arc::new);
    let req = RestoreRequest {
        target_db,
        swap,
        jobs,
        identities,
        keep_failed: false,
    };
    let report = logical::restore(&repo, &server, &manifest, &config.pg, &req, |s| {
        println!("  {:>7.2}s  {}", s.took.as_secs_f64(), s.name);
    })
    .await?;
    let rto = Duration::from_secs(config.pg.rto_secs);
    let within = report.total <= rto;
    println!(
        "restored into {} in {:.1}s ({} the database RTO of {}s)",
        report.database,
        report.total.as_secs_f64(),
        if within { "within" } else { "OVER" },
        rto.as_secs()
    );
    Ok(if within {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
