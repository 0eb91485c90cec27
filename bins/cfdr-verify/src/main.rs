//! cfdr-verify: thin wiring from flags to the cfdr-pg restore test.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use cfdr_cli::Outcome;
use cfdr_pg::PgTarget;
use cfdr_pg::logical::{self, Selector};
use cfdr_storage::BackupId;
use clap::Parser;

/// The restore test (runbook section 6): restore a backup into a scratch
/// database on the server of DATABASE_URL / PG*, verify checksums, tables,
/// row counts and the smoke query, then drop the scratch database.
///
/// Exit codes: 0 every check passed, 1 a check failed, 2 usage or runtime error.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples (monthly, see deploy/):\n  \
    DATABASE_URL=postgres://verify@staging/postgres cfdr-verify --latest\n  \
    cfdr-verify --all"
)]
struct Cli {
    #[command(flatten)]
    common: cfdr_cli::Common,
    /// Backup id.
    id: Option<String>,
    /// The latest logical backup (the default).
    #[arg(long, conflicts_with_all = ["id", "all"])]
    latest: bool,
    /// Every logical backup.
    #[arg(long, conflicts_with = "id")]
    all: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::main(cli.common.verbose, run(cli))
}

async fn run(cli: Cli) -> Result<Outcome> {
    let config = cli.common.config()?;
    let repo = cfdr_cli::open_repository(&config).await?;
    let server = PgTarget::from_env()?;
    let manifests = if cli.all {
        let mut all = Vec::new();
        for id in repo
            .backup_ids()
            .await?
            .into_iter()
            .filter(|id| id.kind() == logical::KIND)
        {
            all.push(repo.manifest(&id).await?);
        }
        all
    } else {
        let sel = match &cli.id {
            Some(id) => Selector::Id(BackupId::parse(id)?),
            None => Selector::Latest,
        };
        vec![logical::find(&repo, &sel, None).await?]
    };
    let identities = config.identities()?.map(Arc::new);
    let mut failed = 0;
    for m in &manifests {
        let t = logical::restore_test(&repo, &server, m, &config.pg, identities.clone()).await?;
        match &t.failure {
            None => println!(
                "{}: ok ({}; restore {:.1}s)",
                t.id,
                t.passed.join(", "),
                t.restore.as_secs_f64()
            ),
            Some(why) => {
                failed += 1;
                match t.passed.is_empty() {
                    // The restore itself failed: no check ran.
                    true => println!("{}: FAILED: {why}", t.id),
                    false => println!(
                        "{}: FAILED after passing {}: {why}",
                        t.id,
                        t.passed.join(", ")
                    ),
                }
            }
        }
    }
    Ok(if failed == 0 {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
