//! Pruning for cfdr: applies a [`cfdr_retention`] plan to a repository.
//!
//! [`prune()`] reads the repository once (backup folders and manifests, the
//! WAL archive under `wal/`, see [`cfdr_storage::wal_archive`]), turns it
//! into retention items (kind, schedule class, start time, size, legal hold
//! from `details.pinned`, tags from `details.tags`, and for physical backups
//! the WAL range from `details.wal`), plans, and — unless [`Options::dry_run`]
//! — deletes under the repository's `prune` lease lock in an order that is
//! safe to interrupt at any point:
//!
//! 1. a pending-deletion record ([`PENDING_KEY`]) naming the backups to go;
//! 2. their manifests, so a half-deleted backup is never listed as complete;
//! 3. their data objects (batch deletes of 1,000 keys);
//! 4. WAL files before the PITR window that no kept backup needs;
//! 5. leftovers of uncommitted backups past the grace period, and those an
//!    interrupted prune had started to delete (named in the record);
//! 6. the record itself.
//!
//! With S3 Object Lock on (`[repository] object-lock`), a backup whose
//! manifest is still locked is kept whole and reported
//! ([`Report::locked_backups`]); every other key is deleted version by
//! version (a plain delete on a versioned bucket only hides an object),
//! and versions the server refuses to delete because they are locked stay
//! and are reported ([`Report::locked_objects`]): never a failed prune.
//! A later prune deletes them once their lock has expired.
//!
//! Running prune again after a crash finishes the job. Of two prunes at
//! once, the second waits up to [`Options::lock_wait`] and then gives up
//! with [`Error::Locked`] having deleted nothing.
//!
//! A committed backup whose manifest cannot be read (corrupt, truncated,
//! naming another backup) is never deleted and takes no part in the plan,
//! so retention keeps its counts of readable backups; its objects stay
//! until the manifest is repaired. When it is a physical backup (its id
//! says so), the WAL it needs is unknown, so no WAL is deleted. The
//! [`Report`] lists it under `damaged` with what to do. Objects under `wal/` that
//! are not WAL files (and `wal/cluster.json`) and backups of kinds without
//! retention rules are never deleted; the [`Report`] lists them.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use cfdr_prune::{Options, prune};
//! use cfdr_retention::{Config, Count, Policy};
//! use cfdr_storage::{Repository, StorageOptions};
//!
//! let repo = Repository::init(StorageOptions::from_url("memory://prune-doc").build()?).await?;
//! for _ in 0..3 {
//!     let w = repo.begin_backup("logical", Some("hourly"))?;
//!     w.commit(Default::default()).await?;
//! }
//! let config = Config::with_policy(Policy { keep_last: Count::Limited(1), ..Policy::default() });
//!
//! let dry = prune(&repo, &config, &Options { dry_run: true, ..Options::default() }).await?;
//! assert_eq!(dry.summary.delete.count, 2);
//! assert_eq!(repo.backups().await?.len(), 3);
//!
//! let done = prune(&repo, &config, &Options::default()).await?;
//! assert_eq!(done.deleted, 2); // two manifests (these backups hold no data objects)
//! assert_eq!(repo.backups().await?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod error;
mod execute;
mod inventory;
mod report;

use std::collections::BTreeSet;
use std::time::Duration;

use cfdr_retention::{Config, DataClass, Policy};
use cfdr_storage::Repository;
use jiff::Timestamp;

pub use error::{Error, Result};
pub use execute::{Deletions, LOCK_NAME};
pub use inventory::{PENDING_KEY, Skipped};
pub use report::{LockedBackup, Report};

use execute::Guard;
use inventory::{Inventory, Pending};

/// How to prune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Plan and report, delete nothing, take no lock.
    pub dry_run: bool,
    /// Prune only these data classes (empty: all). WAL is pruned only when
    /// both database classes are (WAL serves every physical backup).
    pub classes: Vec<DataClass>,
    /// Plan as of this time instead of now.
    pub at: Option<Timestamp>,
    /// How long to wait for another prune to release the lock.
    pub lock_wait: Duration,
    /// Lease time of the lock; renewed every quarter of it. A killed prune
    /// blocks the next one for at most this long.
    pub lock_ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            classes: Vec::new(),
            at: None,
            lock_wait: Duration::ZERO,
            lock_ttl: Duration::from_secs(120),
        }
    }
}

/// Parses a data class name (`database`, `database-archive`,
/// `application-logs`, `audit-logs`, `trading-records`, `configuration`,
/// `secrets`).
pub fn parse_class(name: &str) -> Result<DataClass> {
    DataClass::ALL
        .into_iter()
        .find(|c| c.name() == name.trim())
        .ok_or_else(|| Error::UnknownClass {
            name: name.to_owned(),
            valid: DataClass::ALL.map(DataClass::name).join(", "),
        })
}

/// Checks the retention configuration and options without any I/O; call
/// it before opening the repository so bad input fails before anything is
/// read. [`prune()`] checks again.
pub fn check(config: &Config, options: &Options) -> Result<()> {
    config.validate()?;
    if options.lock_ttl < Duration::from_secs(1) {
        return Err(Error::InvalidOption {
            option: "lock ttl",
            reason: "must be at least 1 second".into(),
        });
    }
    Ok(())
}

fn selected(options: &Options, class: DataClass) -> bool {
    options.classes.is_empty() || options.classes.contains(&class)
}

/// Plans and (unless a dry run) executes retention on `repo`.
///
/// # Errors
///
/// Bad configuration (before any I/O), storage errors while reading
/// (nothing deleted), [`Error::Locked`] when another prune runs, and
/// [`Error::Interrupted`] when deleting stopped part-way (run it again).
pub async fn prune(repo: &Repository, config: &Config, options: &Options) -> Result<Report> {
    check(config, options)?;
    let at = options.at.unwrap_or_else(Timestamp::now);
    if options.dry_run {
        let inventory = Inventory::read(repo).await?;
        let (mut report, mut pending) = decide(&inventory, config, options, at)?;
        keep_locked(repo, &mut report, &mut pending).await?;
        return Ok(report);
    }
    let store = repo.store();
    let guard = Guard::acquire(store, options.lock_ttl, options.lock_wait).await?;
    // Read under the lock: the state an earlier prune left is final.
    let inventory = Inventory::read(repo).await?;
    let (mut report, mut pending) = decide(&inventory, config, options, at)?;
    keep_locked(repo, &mut report, &mut pending).await?;
    let (deleted, locked) = execute::execute(store, &guard, &report.deletions, &pending).await?;
    report.deleted = deleted;
    report.locked_objects = locked;
    guard.release().await;
    Ok(report)
}

/// With object lock on, a backup whose manifest is still locked is kept
/// whole (listed and restorable) rather than losing its manifest while its
/// data cannot go; it is reported with its lock date, and a later prune
/// deletes it once the lock has expired. One HEAD request per backup to
/// delete; none when object lock is off.
async fn keep_locked(repo: &Repository, report: &mut Report, pending: &mut Pending) -> Result<()> {
    let store = repo.store();
    if store.lock_mode() == cfdr_storage::LockMode::Off {
        return Ok(());
    }
    // Lock dates are real time, whatever `--at` plans for.
    let now = Timestamp::now();
    let mut held = Vec::new();
    for manifest in &report.deletions.manifests {
        let retention = store
            .retention(manifest)
            .await
            .map_err(Error::storage("reading the lock of a backup"))?;
        if let Some(r) = retention.filter(|r| r.holds_at(now)) {
            let prefix = manifest
                .trim_end_matches(cfdr_storage::MANIFEST_NAME)
                .to_owned();
            held.push((prefix, r));
        }
    }
    for (prefix, retention) in held {
        let id = prefix
            .trim_start_matches(cfdr_storage::BACKUPS_PREFIX)
            .trim_end_matches('/')
            .to_owned();
        let d = &mut report.deletions;
        d.manifests.retain(|k| !k.starts_with(&prefix));
        d.objects.retain(|k| !k.starts_with(&prefix));
        pending.backups.remove(&id);
        report.locked_backups.push(LockedBackup { id, retention });
    }
    Ok(())
}

/// The plan and the keys it deletes, with the pending-deletion record to
/// write first.
fn decide(
    inv: &Inventory,
    config: &Config,
    options: &Options,
    at: Timestamp,
) -> Result<(Report, Pending)> {
    let input = inventory::input(inv, config.wal_segment_size)?;
    let mut config = config.clone();
    config.wal_segment_size = input.segment_size;
    // Classes not selected keep everything, so WAL their backups need stays.
    for class in DataClass::ALL {
        if !selected(options, class) {
            *config.classes.get_mut(class) = Policy::keep_all();
        }
    }
    let mut plan = cfdr_retention::plan(&input.items, &input.wal, &config, at)?;
    plan.decisions.retain(|d| selected(options, d.data_class));
    let wal_included = [DataClass::Database, DataClass::DatabaseArchive]
        .into_iter()
        .all(|c| selected(options, c));
    if !wal_included {
        plan.wal.clear();
    }

    // A damaged physical backup's WAL range is unknown: keep all WAL.
    let damaged_physical = inv
        .damaged
        .iter()
        .find(|d| d.id.kind() == cfdr_retention::Kind::Physical.name());
    if let Some(d) = damaged_physical.filter(|_| plan.wal.iter().any(|w| !w.keep)) {
        for w in plan.wal.iter_mut().filter(|w| !w.keep) {
            w.keep = true;
            w.reasons = vec![cfdr_retention::WalReason::NoPitrWindow];
        }
        plan.notes.push(cfdr_retention::Note::MissingWalRange {
            backup: d.id.to_string(),
        });
    }

    let mut work = Deletions::default();
    let mut pending = Pending::default();
    let mut resumed = Vec::new();
    for d in &plan.decisions {
        let Some(folder) = inv.folders.get(&d.id) else {
            continue;
        };
        let finish = !folder.committed && inv.pending.backups.contains(&d.id);
        if d.keep && !finish {
            continue;
        }
        if folder.committed {
            let manifest = folder.id.manifest_key();
            work.objects
                .extend(folder.keys.iter().filter(|k| **k != manifest).cloned());
            work.manifests.push(manifest);
            pending.backups.insert(d.id.clone());
        } else {
            work.leftovers.extend(folder.keys.iter().cloned());
            if finish {
                resumed.push(d.id.clone());
                pending.backups.insert(d.id.clone());
            }
        }
    }
    let keys: std::collections::HashMap<&str, &str> = inv
        .wal
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.key.as_str()))
        .collect();
    work.wal = plan
        .wal_deleted()
        .filter_map(|name| keys.get(name).map(|k| (*k).to_owned()))
        .collect();
    let classes: BTreeSet<DataClass> = options.classes.iter().copied().collect();
    let report = Report {
        dry_run: options.dry_run,
        at,
        classes: classes.into_iter().collect(),
        wal_included,
        summary: plan.summary(),
        plan,
        deletions: work,
        resumed,
        skipped: input.skipped,
        damaged: inv
            .damaged
            .iter()
            .map(|d| Skipped {
                id: d.id.to_string(),
                reason: format!(
                    "manifest {} cannot be read ({}); not deleted: {}",
                    d.key,
                    d.reason,
                    cfdr_storage::DamagedManifest::ADVICE
                ),
            })
            .collect(),
        unknown_wal: input.unknown_wal,
        deleted: 0,
        locked_backups: Vec::new(),
        locked_objects: Vec::new(),
    };
    Ok((report, pending))
}
