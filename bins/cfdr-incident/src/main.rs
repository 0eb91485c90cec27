//! cfdr-incident: thin wiring from flags to cfdr-incident.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::process::ExitCode;

use anyhow::Result;
use cfdr_incident::notify::{Credentials, Notifier, Outcome, announce};
use cfdr_incident::{DAMAGE_ADVICE, Journal, Stamp, Status, report};
use clap::Parser;
use cli::{Cli, Command};
use jiff::Timestamp;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::init_logging(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cfdr_cli::error_chain(&e));
            ExitCode::from(2)
        }
    }
}

fn json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut config = cfdr_config::Config::load(cli.config.as_deref())?;
    if let Some(url) = cli.repository {
        config.select_repository(&url);
    }
    let cfg = config.incident;
    cfg.validate()?;
    let repo = cfdr_storage::Repository::open(config.repository.build()?).await?;
    let journal = Journal::new(repo.store().clone());
    let now = Timestamp::now();
    let at = cli.at.unwrap_or(now);
    let (target, change) = match cli.command.into_change(cfg.halt_on_p0) {
        Ok(change) => change,
        Err(query) => return query_command(*query, &journal, &cfg, at).await,
    };
    let author = cli.author.or_else(|| std::env::var("USER").ok());
    let stamp = Stamp::new(author.unwrap_or_default(), now).happened_at(at);
    let appended = match &target {
        None => journal.open(&stamp, change).await?,
        Some(id) => journal.append(id, &stamp, change).await?,
    };
    let (inc, event) = (appended.incident, appended.event);
    println!(
        "{} #{}: {}",
        inc.id,
        event.seq,
        report::entry_text(&inc, event.seq)
    );
    if inc.trading_halted() {
        println!("{}: TRADING HALTED", inc.id);
    }
    if cli.no_notify {
        return Ok(ExitCode::SUCCESS);
    }
    let notifier = Notifier::new(&cfg, Credentials::from_env(&cfg))?;
    let (_, deliveries, _) = announce(&journal, &notifier, inc, &event, Timestamp::now).await;
    for d in deliveries {
        match d.outcome {
            Outcome::Sent { .. } => println!("notified {}", d.channel),
            Outcome::Failed { error, .. } => eprintln!(
                "warning: {} notification failed (recorded in the timeline): {error}",
                d.channel
            ),
            Outcome::NotConfigured { hint } => {
                eprintln!(
                    "warning: {} is routed but not configured: {hint}",
                    d.channel
                )
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn query_command(
    query: Command,
    journal: &Journal,
    cfg: &cfdr_incident::IncidentConfig,
    at: Timestamp,
) -> Result<ExitCode> {
    let warn = |problems: &[cfdr_incident::Problem]| {
        problems
            .iter()
            .for_each(|p| eprintln!("warning: skipped {p}"));
    };
    // Fail closed: a damaged incident may hide the event that halts trading.
    let warn_damaged = |loaded: &cfdr_incident::Loaded| {
        warn(&loaded.problems);
        if loaded.is_damaged() {
            eprintln!("warning: {}: {DAMAGE_ADVICE}", loaded.incident.id);
        }
    };
    match query {
        Command::Show { id, json: as_json } => {
            let loaded = journal.load(&id).await?;
            warn_damaged(&loaded);
            if as_json {
                json(&loaded.incident)?;
            } else {
                print!("{}", report::show(&loaded.incident));
            }
        }
        Command::Report { id } => {
            let loaded = journal.load(&id).await?;
            warn_damaged(&loaded);
            print!("{}", report::render(&loaded.incident));
        }
        Command::List {
            open,
            json: as_json,
        } => {
            let listing = journal.list().await?;
            let damaged = listing.damaged();
            warn(&damaged);
            if !listing.halt_state().damaged.is_empty() {
                eprintln!("warning: {DAMAGE_ADVICE}");
            }
            let shown: Vec<_> = listing
                .incidents
                .iter()
                .filter(|l| !open || l.incident.status != Status::Closed || l.is_damaged())
                .collect();
            if as_json {
                json(&shown.iter().map(|l| &l.incident).collect::<Vec<_>>())?;
            } else {
                shown
                    .iter()
                    .for_each(|l| println!("{}", report::listing_line(l)));
                // Incidents without a readable opening event have no record.
                listing
                    .problems
                    .iter()
                    .filter(|p| p.counts_as_halt())
                    .for_each(|p| println!("{}", report::damaged_line(p)));
            }
        }
        Command::Overdue { json: as_json } => {
            let listing = journal.list().await?;
            warn(&listing.problems);
            let incidents = listing.incidents.iter().map(|l| &l.incident);
            let breaches: Vec<_> = incidents.flat_map(|i| cfg.sla.check(i, at)).collect();
            if as_json {
                json(&breaches)?;
            } else {
                breaches.iter().for_each(|b| println!("OVERDUE {b}"));
            }
            return Ok(ExitCode::from(u8::from(!breaches.is_empty())));
        }
        Command::Halted { json: as_json } => {
            let state = journal.halt_state().await?;
            if as_json {
                json(&serde_json::json!({
                    "halted": state.trading_halted(),
                    "incidents": state.halting,
                    "damaged": state.damaged,
                }))?;
            } else {
                state
                    .halting
                    .iter()
                    .for_each(|i| println!("{}", report::list_line(i)));
                state
                    .damaged
                    .iter()
                    .for_each(|p| println!("{}", report::damaged_line(p)));
            }
            if !state.damaged.is_empty() {
                state
                    .damaged
                    .iter()
                    .for_each(|p| eprintln!("warning: cannot read {p}"));
                eprintln!("warning: {DAMAGE_ADVICE}");
            }
            return Ok(ExitCode::from(u8::from(state.trading_halted())));
        }
        other => anyhow::bail!("internal: {other:?} is not a query"),
    }
    Ok(ExitCode::SUCCESS)
}
