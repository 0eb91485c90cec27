//! cfdr-wal: thin wiring from flags to `cfdr_pg::wal`.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use cfdr_cli::Outcome;
use cfdr_pg::wal::{self, FetchOptions, Fetched, PushOptions, WalArchive, spool};
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
        #[command(flatten)]
        dirs: Dirs,
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
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Archived WAL files: name, stored size, time.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Report missing segments from a start segment to the newest, per timeline.
    Check {
        /// First segment needed (e.g. a base backup's start); default: the oldest archived.
        #[arg(long)]
        from: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
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
    PushWorker {
        #[command(flatten)]
        dirs: Dirs,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct Dirs {
    /// Data directory (default: the current one, where PostgreSQL runs the commands).
    #[arg(long, env = "PGDATA")]
    pg_data: Option<PathBuf>,
    /// Spool folder for async push and prefetch (wal.spool-dir).
    #[arg(long)]
    spool: Option<PathBuf>,
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
    let repo = cfdr_cli::open_repository(&config).await?;
    let archive = WalArchive::new(repo.store().clone());
    let mut apply = |dirs: &Dirs| -> Result<PathBuf> {
        if let Some(s) = &dirs.spool {
            config.wal.spool_dir = s.clone();
        }
        Ok(match &dirs.pg_data {
            Some(d) => d.clone(),
            None => std::env::current_dir()?,
        })
    };
    match cli.command {
        Command::Push {
            path,
            push_async,
            dirs,
        } => {
            let data_dir = apply(&dirs)?;
            if push_async || config.wal.push_async {
                let mut args: Vec<std::ffi::OsString> = Vec::new();
                for (flag, value) in [("--config", &cli.common.config)] {
                    if let Some(v) = value {
                        args.extend([flag.into(), v.clone().into_os_string()]);
                    }
                }
                if let Some(r) = &cli.common.repository {
                    args.extend(["--repository".into(), r.into()]);
                }
                args.extend(["push-worker".into(), "--pg-data".into(), data_dir.into()]);
                args.extend(["--spool".into(), config.wal.spool_dir.clone().into()]);
                let worker = spool::WorkerCommand {
                    program: std::env::current_exe()?,
                    args,
                };
                spool::push_async(&path, &config.wal, &worker)?;
            } else {
                let opts = PushOptions {
                    encode: config.encode_options()?,
                    data_dir: Some(data_dir),
                };
                archive.push(&path, &opts).await?;
            }
        }
        Command::PushWorker { dirs } => {
            let data_dir = apply(&dirs)?;
            let opts = PushOptions {
                encode: config.encode_options()?,
                data_dir: Some(data_dir.clone()),
            };
            spool::run_push_worker(&archive, &data_dir, &config.wal, &opts).await?;
        }
        Command::Fetch {
            name,
            dest,
            prefetch,
            dirs,
        } => {
            let data_dir = apply(&dirs)?;
            if let Some(n) = prefetch {
                config.wal.prefetch = n;
            }
            let opts = FetchOptions {
                identities: config.identities()?.map(Arc::new),
                data_dir: Some(data_dir),
            };
            let got = spool::fetch_prefetch(&archive, &name, &dest, &opts, &config.wal).await?;
            if got == Fetched::NotFound {
                return Ok(Outcome::CheckFailed);
            }
        }
        Command::List { json } => {
            let files = archive.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&files)?);
            } else {
                for f in files {
                    let when = f.modified.map(|t| t.to_string()).unwrap_or_default();
                    println!("{:<42} {:>10}  {when}", f.item.name, f.item.size);
                }
            }
        }
        Command::Check { from, json } => {
            let from = match from {
                Some(f) => f,
                None => match archive
                    .list()
                    .await?
                    .iter()
                    .find(|f| matches!(f.item.file, cfdr_pg::wal::WalFile::Segment(_)))
                {
                    Some(f) => f.item.name.clone(),
                    None => anyhow::bail!("the WAL archive holds no segment yet"),
                },
            };
            let report = archive.continuity_from(&from).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            if !report.is_continuous() {
                return Ok(Outcome::CheckFailed);
            }
        }
        Command::Preflight => {
            let problems = wal::preflight(&cfdr_pg::PgTarget::from_env()?, &archive).await?;
            for p in &problems {
                println!("PROBLEM {p}");
            }
            if !problems.is_empty() {
                return Ok(Outcome::CheckFailed);
            }
            println!("ok: WAL settings, archiver and identity are in order");
        }
        Command::AdoptTimeline { timeline } => {
            let id = archive.adopt_timeline(timeline).await?;
            println!("timelines allowed to archive: {:?}", id.timelines);
        }
    }
    Ok(Outcome::Ok)
}

fn print_report(r: &wal::ContinuityReport) {
    let newest = r.newest.as_deref().unwrap_or("-");
    println!("from {} to {newest}", r.start);
    for t in &r.timelines {
        println!(
            "timeline {}: {} .. {}, {} gap(s)",
            t.timeline,
            t.first,
            t.last,
            t.gaps.len()
        );
        for (a, b) in &t.gaps {
            println!(
                "  MISSING {a}{}",
                if a == b {
                    String::new()
                } else {
                    format!(" .. {b}")
                }
            );
        }
    }
    for p in &r.problems {
        println!("PROBLEM {p}");
    }
}
