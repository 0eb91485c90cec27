//! cfdr-copy: thin wiring from flags to cfdr-copy.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use cfdr_cli::{Outcome, human_bytes};
use cfdr_copy::{Copier, CopyOptions, FollowOptions, Report};
use clap::Parser;
use cli::Cli;

mod cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::main(cli.common.verbose, run(cli))
}

async fn run(cli: Cli) -> Result<Outcome> {
    let config = cli.common.config()?;
    // The source first: an unreachable or newer primary is the error to
    // see, whatever the copies say.
    cfdr_storage::Repository::open(config.repository.build()?).await?;
    if config.copies.is_empty() {
        bail!(
            "the config has no [[copy]] entry: add one with the secondary's name and url (see docs/copies.md)"
        );
    }
    for name in &cli.to {
        if config.copy(name).is_none() {
            let known: Vec<&str> = config.copies.iter().map(|c| c.name.as_str()).collect();
            bail!(
                "there is no [[copy]] named {name:?} in the config (known: {})",
                known.join(", ")
            );
        }
    }
    let opts = CopyOptions {
        dry_run: cli.dry_run,
        verify_secondary: cli.verify_secondary,
        concurrency: cli.concurrency,
        lock_ttl: Duration::from_secs(cli.lock_ttl),
        lock_wait: Duration::from_secs(cli.wait),
        identities: config.identities()?.map(Arc::new),
    };
    let primary = config.repository.build()?;
    let mut copiers = Vec::new();
    for copy in &config.copies {
        if cli.to.is_empty() || cli.to.contains(&copy.name) {
            let secondary = config.copy_storage(copy).build()?;
            copiers.push(Copier::new(
                primary.clone(),
                secondary,
                &copy.name,
                opts.clone(),
            )?);
        }
    }
    if cli.follow {
        return follow(&cli, &copiers).await;
    }
    let (mut reports, mut errors, mut locked) = (Vec::new(), 0, 0);
    for copier in &copiers {
        match copier.run().await {
            Ok(report) => reports.push(report),
            Err(e) => {
                if e.is_locked() {
                    locked += 1;
                } else {
                    errors += 1;
                }
                let e = anyhow::Error::from(e);
                eprintln!(
                    "error: copy {}: {}",
                    copier.name(),
                    cfdr_cli::error_chain(&e)
                );
            }
        }
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            if !(cli.quiet && r.is_clean()) {
                print!("{}", render(r));
            }
        }
    }
    if cli.json || cli.quiet {
        // Problems are never silent, not even in cron mode.
        for r in reports.iter().filter(|r| !r.is_clean()) {
            eprintln!(
                "warning: copy {}: {} objects differ, are missing or failed",
                r.name,
                r.problems()
            );
        }
    }
    Ok(if errors > 0 {
        Outcome::Code(2)
    } else if locked > 0 {
        Outcome::Code(3)
    } else if reports.iter().all(Report::is_clean) {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

/// Runs every selected copy in follow mode until SIGINT or SIGTERM.
async fn follow(cli: &Cli, copiers: &[Copier]) -> Result<Outcome> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop_tx.send(true);
    });
    let pace = FollowOptions {
        interval: Duration::from_secs_f64(cli.interval.max(0.05)),
        full_every: Duration::from_secs(cli.full_every.max(1)),
    };
    let runs = copiers.iter().map(|copier| {
        let mut stop = stop_rx.clone();
        let pace = pace.clone();
        async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let result = copier
                .follow(&pace, stopped, |r| {
                    if cli.json {
                        println!("{}", serde_json::to_string(r).unwrap_or_default());
                    } else if !(cli.quiet && r.is_clean()) {
                        print!("{}", render(r));
                    }
                })
                .await;
            (copier.name().to_owned(), result)
        }
    });
    let mut outcome = Outcome::Ok;
    for (name, result) in futures::future::join_all(runs).await {
        if let Err(e) = result {
            let code = if e.is_locked() { 3 } else { 2 };
            let e = anyhow::Error::from(e);
            eprintln!("error: copy {name}: {}", cfdr_cli::error_chain(&e));
            outcome = Outcome::Code(code);
        }
    }
    Ok(outcome)
}

/// A report for humans.
fn render(r: &Report) -> String {
    let verb = if r.dry_run { "would copy" } else { "copied" };
    let mut out = format!("copy {}: {} -> {}\n", r.name, r.primary, r.secondary);
    out.push_str(&format!(
        "  {verb:<14}{} objects, {}",
        r.copied.objects,
        human_bytes(r.copied.bytes)
    ));
    if !r.backups_copied.is_empty() {
        out.push_str(&format!(" ({} backups)", r.backups_copied.len()));
    }
    out.push('\n');
    out.push_str(&format!(
        "  {:<14}{} objects, {}\n",
        "already there",
        r.already_there.objects,
        human_bytes(r.already_there.bytes)
    ));
    for (label, list) in [
        ("differ", &r.differ),
        ("missing", &r.missing),
        ("failed", &r.failed),
    ] {
        out.push_str(&format!("  {label:<14}{}\n", list.len()));
        for p in list {
            out.push_str(&format!("    {}: {}\n", p.key, p.reason));
        }
    }
    out.push_str(&format!(
        "  {:<14}{} behind, oldest {:.0}s\n",
        "lag",
        human_bytes(r.lag_bytes),
        r.lag_seconds
    ));
    out
}
