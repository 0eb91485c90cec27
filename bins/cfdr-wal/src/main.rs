//! cfdr-wal: thin wiring from flags to `cfdr_wal_archive`.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use cfdr_cli::Outcome;
use cfdr_wal_archive::{FetchOptions, Fetched, PushOptions, WalArchive, spool, stream};

mod cli;
use cli::{Cli, Command};

fn main() -> ExitCode {
    // A mistyped restore_command must stop recovery too (see below).
    let fetch_words = std::env::args().skip(1).any(|a| a == "fetch");
    let cli: Cli = cfdr_cli::parse_args(if fetch_words { 128 } else { 2 });
    let fetching = matches!(cli.command, Command::Fetch { .. });
    cfdr_cli::main(cli.common.verbose, async move {
        match run(cli).await {
            // PostgreSQL ends recovery on a small exit code: fail hard instead.
            Err(e) if fetching => {
                eprintln!("error: {}", cfdr_cli::error_chain(&e));
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
        Ok(PushOptions {
            encode,
            data_dir,
            cluster: None,
        })
    };
    let fetch = || -> Result<FetchOptions> {
        let identities = config.identities()?.map(Arc::new);
        let data_dir = Some(data_dir.clone());
        Ok(FetchOptions {
            identities,
            data_dir,
        })
    };
    // Background workers run this binary with the same config and repository.
    let worker = |subcommand: &str| {
        let mut global: Vec<std::ffi::OsString> = Vec::new();
        if let Some(c) = &cli.common.config {
            global.extend(["--config".into(), c.clone().into()]);
        }
        if let Some(r) = &cli.common.repository {
            global.extend(["--repository".into(), r.into()]);
        }
        let spool = &config.wal.spool_dir;
        spool::WorkerCommand::current_exe(global, subcommand, &data_dir, spool)
    };
    match &cli.command {
        Command::Push { path, push_async } if *push_async || config.wal.push_async => {
            spool::push_async(path, &config.wal, &worker(spool::PUSH_WORKER)?)?;
        }
        Command::Push { path, .. } => drop(archive().await?.push(path, &push()?).await?),
        Command::PushWorker => {
            spool::run_push_worker(&archive().await?, &data_dir, &config.wal, &push()?).await?
        }
        Command::PrefetchWorker { prefetch } => {
            let mut wal = config.wal.clone();
            wal.prefetch = *prefetch;
            spool::run_prefetch_worker(&archive().await?, &fetch()?, &wal).await?;
        }
        Command::Fetch {
            name,
            dest,
            prefetch,
        } => {
            let mut wal = config.wal.clone();
            wal.prefetch = prefetch.unwrap_or(wal.prefetch);
            let opts = fetch()?;
            let mut prefetcher = worker(spool::PREFETCH_WORKER)?;
            prefetcher
                .args
                .extend(["--prefetch".into(), wal.prefetch.to_string().into()]);
            let archive = archive().await?;
            let got = spool::fetch_prefetch(&archive, name, dest, &opts, &wal, &prefetcher).await?;
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
            let problems = cfdr_wal_archive::preflight(&db, &archive().await?).await?;
            problems.iter().for_each(|p| println!("PROBLEM {p}"));
            if !problems.is_empty() {
                return Ok(Outcome::CheckFailed);
            }
            println!("ok: WAL settings, archiver and identity are in order");
        }
        Command::Stream {
            slot,
            stream_dir,
            allow_unbounded_slot,
        } => {
            let mut opts = config.stream.clone();
            opts.slot = slot.clone().unwrap_or(opts.slot);
            opts.spool_dir = stream_dir.clone().unwrap_or(opts.spool_dir);
            opts.allow_unbounded_slot |= *allow_unbounded_slot;
            let db = cfdr_pg::PgTarget::from_env()?;
            let summary = stream::run(
                &archive().await?,
                &db,
                &opts,
                &config.encode_options()?,
                config.pg.bin_dir.as_deref(),
                stop_requested(),
            )
            .await?;
            let safe = summary.safe.map(|l| l.to_string()).unwrap_or("-".into());
            println!(
                "stopped: {} chunks, {} segments stored, {} repository requests; safe in the repository up to {safe}",
                summary.chunks, summary.segments, summary.requests
            );
        }
        Command::AdoptTimeline { timeline } => {
            let id = archive().await?.adopt_timeline(*timeline).await?;
            println!("timelines allowed to archive: {:?}", id.timelines);
        }
    }
    Ok(Outcome::Ok)
}

/// SIGTERM (systemd, Kubernetes) or Ctrl-C.
async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
