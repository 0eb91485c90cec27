//! cfdr-backup: thin wiring from flags to cfdr-pg and cfdr-storage.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use anyhow::Result;
use cfdr_cli::{Outcome, human_bytes};
use cfdr_pg::PgTarget;
use cfdr_pg::logical::{self, LogicalDetails};
use cfdr_pg::physical::{self, PhysicalDetails, PhysicalOptions};
use clap::Parser;
use cli::{Cli, Command};

mod cli;

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
            let progress = cfdr_storage::Progress::new();
            let encode = config.encode_options()?.with_progress(progress.clone());
            let bar = cfdr_cli::ProgressBar::bytes("pg_dump", &progress);
            let m = logical::backup(&repo, &target, &class, &config.pg, &encode).await?;
            drop(bar);
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
        Command::Physical { class, summary } => {
            let progress = cfdr_storage::Progress::new();
            let encode = config.encode_options()?.with_progress(progress.clone());
            let bar = cfdr_cli::ProgressBar::bytes("pg_basebackup", &progress);
            let opts = PhysicalOptions {
                bin_dir: config.pg.bin_dir.clone(),
                server_compression: config.pg.server_compression,
                ..PhysicalOptions::default()
            };
            let m = physical::backup(&repo, &PgTarget::from_env()?, &class, &opts, &encode).await?;
            drop(bar);
            if summary || cli.common.verbose > 0 {
                let d = PhysicalDetails::of(&m)?;
                println!(
                    "backup {} ({class}): {} in {:.1}s, timeline {} WAL {}..{}",
                    m.id,
                    human_bytes(m.stored_size()),
                    m.duration().as_secs_f64(),
                    d.wal.timeline,
                    d.start_wal_file,
                    d.stop_wal_file
                );
            }
        }
        Command::Files {
            class,
            paths,
            exclude,
            git_tag,
            summary,
        } => {
            let req = cfdr_files::BackupRequest {
                class: class.parse()?,
                paths,
                excludes: exclude.iter().map(|g| cfdr_files::Glob::new(g)).collect(),
                git_tag,
            };
            let progress = cfdr_storage::Progress::new();
            let encode = config.encode_options()?.with_progress(progress.clone());
            let bar = cfdr_cli::ProgressBar::bytes("files", &progress);
            let a = cfdr_files::backup(&repo, &req, &encode).await?;
            drop(bar);
            if summary || cli.common.verbose > 0 {
                let d = &a.details;
                let git = d
                    .git
                    .as_ref()
                    .map(|g| format!(", tagged {} {}", g.tag, g.commit))
                    .unwrap_or_default();
                println!(
                    "archive {} ({class}): {} files, {} folders, {} symlinks, {} stored in {:.1}s{git}",
                    a.manifest.id,
                    d.files,
                    d.dirs,
                    d.symlinks,
                    human_bytes(a.manifest.stored_size()),
                    a.manifest.duration().as_secs_f64(),
                );
            }
        }
        Command::List { json } => {
            let catalog = repo.catalog().await?;
            // One damaged manifest must not hide the other backups.
            for w in catalog.warnings() {
                eprintln!("warning: {w}");
            }
            let backups = catalog.backups;
            let checks = repo.latest_checks().await?;
            let now = jiff::Timestamp::now();
            if json {
                // Each manifest with one extra field: its newest check.
                let mut rows = Vec::new();
                for m in &backups {
                    let mut row = serde_json::to_value(m)?;
                    row["verified"] = match checks.get(&m.id) {
                        None => serde_json::Value::Null,
                        Some(c) => serde_json::json!({
                            "kind": c.kind, "time": c.time, "passed": c.passed,
                        }),
                    };
                    rows.push(row);
                }
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(Outcome::Ok);
            }
            println!(
                "{:<40} {:<9} {:<7} {:>10} {:>5}  {:<22} SOURCE",
                "ID", "KIND", "CLASS", "SIZE", "AGE", "VERIFIED"
            );
            let mut rows: Vec<(&cfdr_storage::BackupId, String)> = backups
                .iter()
                .map(|m| {
                    // What it restores: a database, or a cluster's WAL range.
                    let db = match (LogicalDetails::of(m), PhysicalDetails::of(m)) {
                        (Ok(d), _) => d.database,
                        (_, Ok(d)) => format!(
                            "timeline {} {}..{}",
                            d.wal.timeline, d.wal.start, d.wal.stop
                        ),
                        _ => "-".into(),
                    };
                    let row = format!(
                        "{:<40} {:<9} {:<7} {:>10} {:>5}  {:<22} {db}",
                        m.id,
                        m.kind,
                        m.class.as_deref().unwrap_or("-"),
                        human_bytes(m.stored_size()),
                        cfdr_cli::human_age(now, m.finished),
                        cfdr_cli::verified_state(now, checks.get(&m.id)),
                    );
                    (&m.id, row)
                })
                .collect();
            // Damaged backups keep their place in time.
            rows.extend(catalog.damaged.iter().map(|d| {
                let row = format!(
                    "{:<40} {:<9} DAMAGED: manifest cannot be read",
                    d.id,
                    d.id.kind()
                );
                (&d.id, row)
            }));
            rows.sort_by(|a, b| a.0.cmp(b.0));
            rows.iter().for_each(|(_, row)| println!("{row}"));
        }
    }
    Ok(Outcome::Ok)
}
