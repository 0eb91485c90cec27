//! cfdr-repo: thin wiring from flags to cfdr-storage.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use cfdr_cli::{Outcome, human_bytes as human};
use cfdr_storage::secret_bundles::SecretStore;
use cfdr_storage::{BackupId, Catalog, DamagedManifest, Repository, wal_archive};
use cfdr_wal_archive::{WalArchive, chunks};
use clap::Parser;
use cli::{Cli, Command};

/// Names each damaged manifest and what to do (listings go on with the rest).
fn warn_damaged(catalog: &Catalog) {
    for w in catalog.warnings() {
        eprintln!("warning: {w}");
    }
}

/// `verify --all` beyond the backups: the WAL archive and stream (each
/// object carries its size and SHA-256 in its header), secret bundles
/// (manifest, then the age object against it) and incident events. Prints
/// a line per part and each failure; returns how many failed.
async fn verify_outside_backups(
    repo: &Repository,
    identities: Option<Arc<cfdr_secrets::Identities>>,
) -> Result<usize> {
    let store = repo.store();
    let archive = WalArchive::new(store.clone());
    let mut wal_keys: Vec<String> = wal_archive::list_wal(store)
        .await?
        .files
        .into_iter()
        .map(|f| f.key)
        .collect();
    wal_keys.extend(
        store
            .list(chunks::STREAM_PREFIX)
            .await?
            .into_iter()
            .map(|m| m.key)
            .filter(|k| k != chunks::STATE_KEY),
    );
    let mut wal = Part::new("WAL archive and stream");
    for key in wal_keys {
        let checked = match store.get(&key).await {
            Ok(raw) => cfdr_wal_archive::verify_stored(&key, raw, identities.clone())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        wal.add(key, checked);
    }
    let identity = archive.identity().await.map(drop);
    wal.add(
        wal_archive::CLUSTER_KEY.into(),
        identity.map_err(|e| e.to_string()),
    );
    let state = chunks::StreamState::read(&archive).await.map(drop);
    wal.add(chunks::STATE_KEY.into(), state.map_err(|e| e.to_string()));

    let mut secrets = Part::new("secret bundles");
    let bundles = SecretStore::new(repo);
    for name in bundles.bundles().await? {
        match bundles.versions(&name).await {
            Ok(versions) => {
                for m in versions {
                    let read = store.get_verified(&m.object, &m.stored).await;
                    secrets.add(m.object, read.map(drop).map_err(|e| e.to_string()));
                }
            }
            Err(cfdr_storage::Error::InvalidDocument { key, reason }) => {
                secrets.add(key, Err(reason));
            }
            Err(e) => return Err(e.into()),
        }
    }

    let mut incidents = Part::new("incident events");
    let listing = cfdr_incident::Journal::new(store.clone()).list().await?;
    for problem in listing.damaged() {
        incidents.add(problem.key, Err(problem.reason));
    }
    incidents.ok = listing.incidents.len();
    incidents.unit = "incidents";

    Ok([wal, secrets, incidents].iter().map(Part::print).sum())
}

/// The outcome of one part of `verify --all` beyond the backups.
struct Part {
    name: &'static str,
    unit: &'static str,
    ok: usize,
    failures: Vec<(String, String)>,
}

impl Part {
    fn new(name: &'static str) -> Self {
        Part {
            name,
            unit: "objects",
            ok: 0,
            failures: Vec::new(),
        }
    }

    fn add(&mut self, key: String, checked: std::result::Result<(), String>) {
        match checked {
            Ok(()) => self.ok += 1,
            Err(why) => self.failures.push((key, why)),
        }
    }

    /// Prints the part; returns its failure count.
    fn print(&self) -> usize {
        println!(
            "{}: {} {} ok, {} failed",
            self.name,
            self.ok,
            self.unit,
            self.failures.len()
        );
        for (key, why) in &self.failures {
            println!("  FAILED {key}: {why}");
        }
        self.failures.len()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::main(cli.common.verbose, run(cli))
}

async fn run(cli: Cli) -> Result<Outcome> {
    let config = cli.common.config()?;
    // Before building the store: the check reports settings a store
    // cannot be built with.
    if let Command::Check { json } = cli.command {
        let check = cfdr_storage::check_object_lock(&config.repository).await?;
        // Each off-region copy must hold out as long as the primary.
        let mut copies = Vec::new();
        for copy in &config.copies {
            let storage = config.copy_storage(copy);
            copies.push((copy, cfdr_storage::check_object_lock(&storage).await?));
        }
        if json {
            let mut value = serde_json::to_value(&check)?;
            if !copies.is_empty() {
                value["copies"] = copies
                    .iter()
                    .map(|(copy, check)| {
                        let mut v = serde_json::to_value(check)?;
                        v["name"] = copy.name.clone().into();
                        Ok(v)
                    })
                    .collect::<serde_json::Result<Vec<_>>>()?
                    .into();
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print!("{}", check.render());
            for (copy, check) in &copies {
                println!("\ncopy {}:", copy.name);
                print!("{}", check.render());
            }
        }
        return Ok(if check.is_ok() && copies.iter().all(|(_, c)| c.is_ok()) {
            Outcome::Ok
        } else {
            Outcome::CheckFailed
        });
    }
    let store = config.repository.build()?;
    let location = store.location().display();
    let repo = match &cli.command {
        Command::Init => {
            let repo = Repository::init(store).await?;
            println!("created repository {} at {location}", repo.config().id);
            return Ok(Outcome::Ok);
        }
        Command::Selftest { init: true, .. } => Repository::open_or_init(store).await?,
        _ => Repository::open(store).await?,
    };
    match cli.command {
        Command::Init | Command::Check { .. } => unreachable!("handled above"),
        Command::Info { json } => {
            let catalog = repo.catalog().await?;
            warn_damaged(&catalog);
            let backups = catalog.backups;
            let leftovers = repo.leftovers(jiff::Timestamp::MAX).await?;
            let stored: u64 = backups.iter().map(|m| m.stored_size()).sum();
            let cfg = repo.config();
            if json {
                let value = serde_json::json!({
                    "location": location, "repository": cfg, "backups": backups.len(),
                    "stored_bytes": stored, "uncommitted": leftovers.len(),
                    "damaged": catalog.damaged.len(),
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!(
                    "repository {} (format {}) at {location}",
                    cfg.id, cfg.format_version
                );
                println!("created {} by {}", cfg.created, cfg.created_by);
                println!(
                    "{} backups, {} stored, {} uncommitted leftovers",
                    backups.len(),
                    human(stored),
                    leftovers.len()
                );
                if !catalog.damaged.is_empty() {
                    println!(
                        "{} backups with a damaged manifest (see the warnings)",
                        catalog.damaged.len()
                    );
                }
            }
        }
        Command::List { json } => {
            let catalog = repo.catalog().await?;
            warn_damaged(&catalog);
            let backups = catalog.backups;
            if json {
                println!("{}", serde_json::to_string_pretty(&backups)?);
            } else {
                let now = jiff::Timestamp::now();
                println!(
                    "{:<40} {:<10} {:<8} {:>10} {:>10}",
                    "ID", "KIND", "CLASS", "SIZE", "AGE"
                );
                // Damaged backups keep their place in time.
                let mut rows: Vec<(&BackupId, String)> = backups
                    .iter()
                    .map(|m| {
                        let age = now.duration_since(m.finished).as_secs() / 60;
                        let class = m.class.as_deref().unwrap_or("-");
                        let row = format!(
                            "{:<40} {:<10} {:<8} {:>10} {:>9}m",
                            m.id,
                            m.kind,
                            class,
                            human(m.stored_size()),
                            age
                        );
                        (&m.id, row)
                    })
                    .collect();
                rows.extend(catalog.damaged.iter().map(|d| {
                    let row = format!(
                        "{:<40} {:<10} DAMAGED: manifest cannot be read",
                        d.id,
                        d.id.kind()
                    );
                    (&d.id, row)
                }));
                rows.sort_by(|a, b| a.0.cmp(b.0));
                rows.iter().for_each(|(_, row)| println!("{row}"));
            }
        }
        Command::Verify { id, all } => {
            let ids = match (id, all) {
                (Some(id), _) => vec![BackupId::parse(&id)?],
                (None, true) => repo.backup_ids().await?,
                (None, false) => repo.backup_ids().await?.pop().into_iter().collect(),
            };
            // --all has the WAL archive, secrets and incidents to verify too.
            anyhow::ensure!(
                all || !ids.is_empty(),
                "the repository holds no backup to verify"
            );
            // A damaged manifest is a failed verification of that backup;
            // the others are still verified.
            let catalog = repo.catalog_of(&ids).await?;
            let mut failed = catalog.damaged.len();
            for d in &catalog.damaged {
                println!("{}: FAILED: manifest cannot be read", d.id);
                println!("  FAILED {}: {}", d.key, d.reason);
            }
            if !catalog.damaged.is_empty() {
                eprintln!("warning: {}", DamagedManifest::ADVICE);
            }
            for manifest in &catalog.backups {
                let (id, report) = (&manifest.id, repo.verify(manifest).await?);
                println!(
                    "{id}: {} objects ok, {} failed",
                    report.verified,
                    report.failures.len()
                );
                for (key, why) in &report.failures {
                    println!("  FAILED {key}: {why}");
                }
                // Its earlier check records (read before this one is added):
                // a damaged one misstates when the backup was last proven.
                match repo.checks(id).await {
                    Ok(_) => {}
                    Err(cfdr_storage::Error::InvalidDocument { key, reason }) => {
                        println!("  FAILED {key}: check record cannot be read: {reason}");
                        failed += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
                // Read-only credentials (an auditor, a DR site) still get
                // the verification; only the record is missing.
                if let Err(e) = repo.record_check(&report.check_record()).await {
                    eprintln!(
                        "warning: the verification result could not be recorded in the repository (needs write access to backups/{id}/checks/): {e}"
                    );
                }
                failed += usize::from(!report.is_ok());
            }
            if all {
                let ids = config.identities()?.map(Arc::new);
                failed += verify_outside_backups(&repo, ids).await?;
            }
            return Ok(if failed == 0 {
                Outcome::Ok
            } else {
                Outcome::CheckFailed
            });
        }
        Command::Selftest { size_mib, keep, .. } => {
            let opts = config.encode_options()?;
            let ids = config.identities()?.map(Arc::new);
            let r = repo
                .self_test(size_mib << 20, &opts, ids, keep)
                .await
                .context("self-test failed")?;
            let mib = r.raw_bytes as f64 / f64::from(1 << 20);
            println!(
                "self-test passed on {location} ({:?}, encrypted: {})",
                opts.compression,
                opts.recipients.is_some()
            );
            println!(
                "  wrote  {} -> {} in {:.2}s ({:.0} MiB/s)",
                human(r.raw_bytes),
                human(r.stored_bytes),
                r.write.as_secs_f64(),
                mib / r.write.as_secs_f64()
            );
            println!(
                "  verify {:.2}s, read back and compare {:.2}s",
                r.verify.as_secs_f64(),
                r.read.as_secs_f64()
            );
            println!(
                "  backup {} {}",
                r.id,
                if r.kept { "kept" } else { "deleted" }
            );
        }
    }
    Ok(Outcome::Ok)
}
