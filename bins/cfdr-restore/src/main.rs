//! cfdr-restore: thin wiring from flags to cfdr-pg.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use cfdr_cli::Outcome;
use cfdr_pg::PgTarget;
use cfdr_pg::logical::{self, RestoreRequest, Selector};
use cfdr_pg::physical::{self, PitrRequest};
use cfdr_storage::{BackupId, Operation};
use clap::Parser;
use cli::{Cli, Command};

mod cli;
mod files;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::main(cli.common.verbose, run(cli))
}

async fn run(cli: Cli) -> Result<Outcome> {
    let config = cli.common.config()?;
    let repo = cfdr_cli::open_repository(&config).await?;
    let identities = config.identities()?.map(Arc::new);
    let rto = Duration::from_secs(config.pg.rto_secs);
    let total = match cli.command {
        Command::Files(args) => return files::run(&repo, args, identities).await,
        Command::Logical {
            id,
            latest: _,
            before,
            target_db,
            swap,
            swap_only,
            jobs,
        } => {
            let server = PgTarget::from_env()?;
            let selector = match (id, before) {
                (Some(id), _) => Selector::Id(BackupId::parse(&id)?),
                (None, Some(t)) => Selector::Before(t),
                (None, None) => Selector::Latest,
            };
            let manifest = logical::find(&repo, &selector, None).await?;
            if swap_only {
                // A swap makes another database live: the gate holds Halted.
                let work = logical::swap_restored(
                    &server,
                    &manifest,
                    &config.pg,
                    target_db.as_deref(),
                    print_step,
                );
                let report =
                    Operation::around(repo.store(), "swap-logical", manifest.id.as_str(), work)
                        .await?;
                println!(
                    "{} is live (restored from {}); previous database kept as {}",
                    report.database,
                    manifest.id,
                    report.previous.as_deref().unwrap_or("-")
                );
                return Ok(within_rto(report.total, rto));
            }
            println!(
                "restoring {} ({} stored)",
                manifest.id,
                cfdr_cli::human_bytes(manifest.stored_size())
            );
            let req = RestoreRequest {
                target_db,
                swap,
                jobs,
                identities,
                keep_failed: false,
            };
            // Recorded in the repository while it runs: the trading gate holds Halted.
            let work = logical::restore(&repo, &server, &manifest, &config.pg, &req, print_step);
            let report =
                Operation::around(repo.store(), "restore-logical", manifest.id.as_str(), work)
                    .await?;
            println!("restored into {}", report.database);
            if let Some(previous) = &report.previous {
                println!("previous database kept as {previous}");
            }
            report.total
        }
        Command::Pitr {
            target,
            data_dir,
            force,
            start,
            archive,
            prefetch,
        } => {
            // The server runs in its own working directory: absolute paths only.
            let data_dir = std::path::absolute(&data_dir)?;
            let spool = data_dir.with_extension("wal-spool");
            let req = PitrRequest {
                target: target.recovery_target()?,
                restore_command: restore_command(&cli.common, &config, &spool, prefetch)?,
                prefetch_spool: (prefetch > 0).then_some(spool),
                data_dir,
                force,
                identities,
                start,
                archive,
                rto,
                bin_dir: config.pg.bin_dir.clone(),
            };
            let work = physical::pitr(&repo, &req, print_step);
            let detail = format!("{} into {}", req.target, req.data_dir.display());
            let report = match Operation::around(repo.store(), "pitr", &detail, work).await {
                Ok(report) => report,
                Err(e) => return Err(pitr_failed(e, &req.data_dir)),
            };
            println!(
                "restored base backup {} into {}",
                report.backup.id,
                req.data_dir.display()
            );
            match (&report.cluster, report.reached_lsn) {
                (Some(c), Some(lsn)) => println!(
                    "promoted on timeline {} at LSN {lsn}, last replayed commit {}; server running on port {}",
                    report.timeline.unwrap_or_default(),
                    report
                        .last_replayed
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into()),
                    c.port
                ),
                _ => println!(
                    "start the server on this directory: it replays WAL to {} and promotes",
                    req.target
                ),
            }
            if let Some(mut cluster) = report.cluster {
                // The report is what the caller wanted; the server keeps running.
                cluster.detach();
                println!(
                    "the server keeps running (data directory {}, log {}); connect with \
                     psql -h 127.0.0.1 -p {} -U postgres",
                    req.data_dir.display(),
                    report
                        .log_file
                        .as_deref()
                        .unwrap_or(&req.data_dir)
                        .display(),
                    cluster.port
                );
                if let Some(stop) = &report.stop_command {
                    println!("stop it with: {stop}");
                }
            }
            report.total
        }
    };
    Ok(within_rto(total, rto))
}

/// Prints the total against the RTO; over it is a failed check.
fn within_rto(total: Duration, rto: Duration) -> Outcome {
    let within = total <= rto;
    println!(
        "total {:.1}s ({} the database RTO of {}s)",
        total.as_secs_f64(),
        if within { "within" } else { "OVER" },
        rto.as_secs()
    );
    if within {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    }
}

fn print_step(s: &logical::Step) {
    println!("  {:>7.2}s  {}", s.took.as_secs_f64(), s.name);
}

/// `cfdr-wal fetch` from beside this binary, on the same repository (as
/// opened here, whether from -r, CFDR_REPOSITORY, the config file or the
/// default) and config file.
fn restore_command(
    common: &cfdr_cli::Common,
    config: &cfdr_config::Config,
    spool: &Path,
    prefetch: u32,
) -> Result<String> {
    let config_file = common
        .config
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    Ok(physical::fetch_command(
        &std::env::current_exe()?.with_file_name("cfdr-wal"),
        config_file.as_deref(),
        config.repository.url.as_deref(),
        &std::path::absolute(spool)?,
        prefetch,
    )?)
}

/// A failed PITR restore: when it left a restored directory behind (kept
/// for inspection, its server log inside), the exact command that starts
/// over, with --force, and with --latest when the target lies after the
/// archived WAL.
fn pitr_failed(e: cfdr_pg::Error, data_dir: &Path) -> anyhow::Error {
    let left = std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some());
    if !left || matches!(e, cfdr_pg::Error::DataDirNotEmpty { .. }) {
        return e.into();
    }
    let latest = matches!(e, cfdr_pg::Error::PitrTarget { .. });
    let args: Vec<String> = std::env::args().collect();
    anyhow::anyhow!(
        "{e}\n{} is kept for inspection; to start over: {}",
        data_dir.display(),
        cli::rerun_command(&args, latest)
    )
}
