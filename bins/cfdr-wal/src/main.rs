//! cfdr-wal: thin wiring from flags to `cfdr_pg::wal`.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use cfdr_cli::Outcome;
use cfdr_pg::wal::{FetchOptions, Fetched, PushOptions, WalArchive, spool};
use clap::{Parser, Subcommand};

/// WAL archiving into a cfdr repository: PostgreSQL's archive_command and
/// restore_command, the archive listing and its continuity check.
///
/// Exit codes: push 0 only when stored, else 2 (PostgreSQL retries);
/// fetch 0 restored, 1 not in the archive (quiet: the normal end of
/// recovery), 128 on any real error (PostgreSQL stops recovery rather than
/// end it early); check and preflight 1 when WAL is missing or a setting is
/// wrong; otherwise 2 on errors.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "postgresql.conf:\n  \
    archive_command = 'cfdr-wal --config /etc/cfdr/cfdr.toml push %p'\n  \
    restore_command = 'cfdr-wal --config /etc/cfdr/cfdr.toml fetch %f %p'\n\
    Examples:\n  cfdr-wal list\n  cfdr-wal check --from 000000010000000000000042"
)]
struct Cli {
    #[command(flatten)]
    common: cfdr_cli::Common,
    /// Data directory (default: the current one, where PostgreSQL runs the commands).
    #[arg(long, global = true, env = "PGDATA")]
    pg_data: Option<PathBuf>,
    /// Spool folder for async push and prefetch (wal.spool-dir).
    #[arg(long, global = true)]
    spool: Option<PathBuf>,
    /// JSON output (list, check).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Archive one file of pg_wal (archive_command = '... push %p').
    Push {
        /// The file (%p, relative to the data directory).
        path: PathBuf,
        /// Acknowledge files stored by the background worker (wal.push-async).
        #[arg(long = "async")]
        push_async: bool,
    },
    /// Restore one WAL file (restore_command = '... fetch %f %p').
    Fetch {
        /// The file name (%f).
        name: String,
        /// Where PostgreSQL wants it (%p).
        dest: PathBuf,
        /// Fetch this many following segments ahead, in parallel (wal.prefetch).
        #[arg(long)]
        prefetch: Option<usize>,
    },
    /// Archived WAL files: name, stored size, time.
    List,
    /// Report missing segments from a start segment to the newest, per timeline.
    Check {
        /// First segment needed (e.g. a base backup's start); default: the oldest archived.
        #[arg(long)]
        from: Option<String>,
    },
    /// Check a running server's WAL settings, archiver and identity (DATABASE_URL / PG*).
    Preflight,
    /// Allow a new timeline to archive: after a failover or production PITR.
    AdoptTimeline {
        /// The timeline id (decimal).
        timeline: u32,
    },
    /// The asynchronous push worker (started by `push --async`).
    #[command(hide = true)]
    PushWorker,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fetching = matches!(cli.command, Command::Fetch { .. });
    cfdr_cli::main(cli.common.verbose, async move {
        match run(cli).await {
            // PostgreSQL ends recovery on a small exit code: fail hard instead.
            Err(e) if fetching => {
                eprintln!("error: {e:#}");
                Ok(Outcome::Code(128))
            }
            other => other,
        }
    })
}

async fn run(cli: Cli) -> Result<Outcome> {
    let mut config = cli.common.config()?;
    config.wal.spool_dir = cli.spool.clone().unwrap_or(config.wal.spool_dir);
    let data_dir = cli.pg_data.clone().map_or_else(std::env::current_dir, Ok)?;
    // An asynchronous push only reads the spool: the repository is opened per command.
    let archive = async || -> Result<WalArchive> {
        Ok(WalArchive::new(
            cfdr_cli::open_repository(&config).await?.store().clone(),
        ))
    };
    let push = || -> Result<PushOptions> {
        let (encode, data_dir) = (config.encode_options()?, Some(data_dir.clone()));
        Ok(PushOptions { encode, data_dir })
    };
    match &cli.command {
        Command::Push { path, push_async } if *push_async || config.wal.push_async => {
            let mut global: Vec<std::ffi::OsString> = Vec::new();
            if let Some(c) = &cli.common.config {
                global.extend(["--config".into(), c.clone().into()]);
            }
            if let Some(r) = &cli.common.repository {
                global.extend(["--repository".into(), r.into()]);
            }
            let worker =
                spool::WorkerCommand::current_exe(global, &data_dir, &config.wal.spool_dir)?;
            spool::push_async(path, &config.wal, &worker)?;
        }
        Command::Push { path, .. } => drop(archive().await?.push(path, &push()?).await?),
        Command::PushWorker => {
            spool::run_push_worker(&archive().await?, &data_dir, &config.wal, &push()?).await?
        }
        Command::Fetch {
            name,
            dest,
            prefetch,
        } => {
            let mut wal = config.wal.clone();
            wal.prefetch = prefetch.unwrap_or(wal.prefetch);
            let identities = config.identities()?.map(Arc::new);
            let opts = FetchOptions {
                identities,
                data_dir: Some(data_dir.clone()),
            };
            let got = spool::fetch_prefetch(&archive().await?, name, dest, &opts, &wal).await?;
            if got == Fetched::NotFound {
                return Ok(Outcome::CheckFailed);
            }
        }
        Command::List => {
            let files = archive().await?.list().await?;
            match cli.json {
                true => println!("{}", serde_json::to_string_pretty(&files)?),
                false => files.iter().for_each(|f| println!("{f}")),
            }
        }
        Command::Check { from } => {
            let report = archive().await?.continuity_from(from.as_deref()).await?;
            match cli.json {
                true => println!("{}", serde_json::to_string_pretty(&report)?),
                false => print!("{report}"),
            }
            if !report.is_continuous() {
                return Ok(Outcome::CheckFailed);
            }
        }
        Command::Preflight => {
            let db = cfdr_pg::PgTarget::from_env()?;
            let problems = cfdr_pg::wal::preflight(&db, &archive().await?).await?;
            problems.iter().for_each(|p| println!("PROBLEM {p}"));
            if !problems.is_empty() {
                return Ok(Outcome::CheckFailed);
            }
            println!("ok: WAL settings, archiver and identity are in order");
        }
        Command::AdoptTimeline { timeline } => {
            let id = archive().await?.adopt_timeline(*timeline).await?;
            println!("timelines allowed to archive: {:?}", id.timelines);
        }
    }
    Ok(Outcome::Ok)
}
