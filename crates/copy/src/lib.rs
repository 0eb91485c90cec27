//! Off-region copies of a cfdr repository.
//!
//! A [`Copier`] copies everything a restore needs from the primary
//! repository to one secondary (any backend to any backend), byte for byte:
//! nothing is decoded or re-encoded, so the secondary restores with the
//! same keys.
//!
//! - complete backups (database dumps, base backups, file archives) with
//!   their check records: data objects first, each streamed from the
//!   primary through [`Store::read_verified`] against the SHA-256 its
//!   manifest records and written create-only to the secondary, whose
//!   writer reports the size and SHA-256 it stored; the manifest last, only
//!   when every object is there and verified, so a half-copied backup is
//!   never listed on the secondary;
//! - the WAL archive (segments, `.partial`, `.backup`, `.history` and
//!   `wal/cluster.json`): each object checked against its own header
//!   (`cfdr_wal_archive::verify_stored`) before it is copied;
//! - secret bundles (the age object against its manifest, then the
//!   manifest) and incident records.
//!
//! Copies never delete and never overwrite on the secondary, with two
//! exceptions that the primary itself rewrites: `wal/cluster.json` (a
//! failover adopts a timeline) and a secret bundle's manifest (a rekey
//! points it at the re-encrypted object). An object that exists on both
//! sides with other content is reported as `differ` and left alone. The
//! secondary's own retention may therefore keep more than the primary's.
//!
//! A run holds the lease lock `copy` on the secondary, is idempotent (a
//! second run reads two listings and transfers nothing) and resumable
//! after a kill: every write is atomic, and on a later run objects of a
//! backup whose manifest is not on the secondary yet are read back and
//! verified before the manifest is written.
//!
//! After each run (and continuously under [`Copier::follow`]) the lag is
//! recorded in the primary at `copy-state/<name>.json` ([`CopyState`]).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use cfdr_copy::{Copier, CopyOptions};
//! use cfdr_storage::{EncodeOptions, Repository, StorageOptions};
//!
//! let primary = Repository::init(StorageOptions::from_url("memory://doc-primary").build()?).await?;
//! let mut backup = primary.begin_backup("logical", Some("hourly"))?;
//! backup.put_encoded("dump.zst", &b"-- dump --"[..], &EncodeOptions::default()).await?;
//! let manifest = backup.commit(Default::default()).await?;
//!
//! let secondary = StorageOptions::from_url("memory://doc-secondary").build()?;
//! let copier = Copier::new(primary.store().clone(), secondary.clone(), "dr", CopyOptions::default())?;
//! let report = copier.run().await?;
//! assert!(report.is_clean());
//! assert_eq!(report.backups_copied, vec![manifest.id.to_string()]);
//! // A second run transfers nothing.
//! assert_eq!(copier.run().await?.copied.objects, 0);
//! assert_eq!(Repository::open(secondary).await?.backup_ids().await?, vec![manifest.id]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod keeper;
mod pass;

use std::sync::Arc;
use std::time::Duration;

use cfdr_secrets::Identities;
use cfdr_storage::Store;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use pass::{Problem, Report, Tally};

/// Name of the lease lock a copy holds on the secondary.
pub const LOCK_NAME: &str = "copy";
/// Folder of the lag records in the primary.
pub const STATE_PREFIX: &str = "copy-state/";
/// Version of the [`CopyState`] document and of the [`Report`].
pub const STATE_VERSION: u32 = 1;

/// Errors of a copy as a whole (problems with single objects are in the
/// [`Report`] instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A storage call failed.
    #[error("{what}: {source}")]
    Storage {
        /// What was being done.
        what: String,
        /// The storage error.
        #[source]
        source: Box<cfdr_storage::Error>,
    },
    /// Another copy to the same secondary holds its lock.
    #[error(
        "another cfdr-copy to {secondary} is running ({source}): nothing was copied; retry later or pass --wait"
    )]
    Locked {
        /// The secondary.
        secondary: String,
        /// The lock error naming the holder.
        #[source]
        source: Box<cfdr_storage::Error>,
    },
    /// The lock was lost part-way.
    #[error(
        "the copy lock on {secondary} was lost ({reason}): stopped before writing more manifests; run cfdr-copy again to finish"
    )]
    LockLost {
        /// The secondary.
        secondary: String,
        /// Why.
        reason: String,
    },
    /// The secondary is another repository.
    #[error(
        "{secondary} holds another cfdr repository (id {found}; the primary's is {primary}): copy into an empty location or into a copy of this repository"
    )]
    Foreign {
        /// The secondary.
        secondary: String,
        /// Its repository id.
        found: String,
        /// The primary's id.
        primary: String,
    },
    /// The secondary is the primary.
    #[error(
        "copy {name} points at the primary repository itself ({location}): give the [[copy]] entry another url"
    )]
    SameLocation {
        /// The copy's name.
        name: String,
        /// The shared location.
        location: String,
    },
}

impl Error {
    pub(crate) fn storage(what: impl Into<String>) -> impl FnOnce(cfdr_storage::Error) -> Self {
        let what = what.into();
        move |source| Self::Storage {
            what,
            source: Box::new(source),
        }
    }

    /// Whether another copy holds the lock.
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::Locked { .. })
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to copy.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Plan and report only: write nothing anywhere, take no lock.
    pub dry_run: bool,
    /// Read every object back from the secondary, also those already
    /// there, and check its SHA-256 (a full audit of the secondary).
    pub verify_secondary: bool,
    /// Objects transferred at once.
    pub concurrency: usize,
    /// Lease time of the lock (renewed every quarter): a killed copy blocks
    /// the next one at most this long.
    pub lock_ttl: Duration,
    /// How long to wait for another copy's lock before failing.
    pub lock_wait: Duration,
    /// Identities that let encrypted WAL bodies be checked too.
    pub identities: Option<Arc<Identities>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            verify_secondary: false,
            concurrency: 8,
            lock_ttl: Duration::from_secs(120),
            lock_wait: Duration::ZERO,
            identities: None,
        }
    }
}

/// How `--follow` paces itself.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// Pause between incremental WAL passes.
    pub interval: Duration,
    /// Time between full passes (backups, secrets, incidents, WAL).
    pub full_every: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            full_every: Duration::from_secs(60),
        }
    }
}

/// The lag record `copy-state/<name>.json` in the primary repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CopyState {
    /// Document version ([`STATE_VERSION`]).
    pub version: u32,
    /// The copy's name.
    pub name: String,
    /// Stored bytes in the primary not yet on the secondary.
    pub lag_bytes: u64,
    /// Age of the oldest such object, 0 when caught up.
    pub lag_seconds: f64,
    /// When this was measured (RFC 3339).
    pub updated_at: Timestamp,
}

/// Key of copy `name`'s lag record.
pub fn state_key(name: &str) -> String {
    format!("{STATE_PREFIX}{name}.json")
}

/// Reads copy `name`'s lag record from the primary, if any.
pub async fn read_state(primary: &Store, name: &str) -> Result<Option<CopyState>> {
    let key = state_key(name);
    match primary.get(&key).await {
        Ok(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| Error::Storage {
                what: format!("reading {key}"),
                source: Box::new(cfdr_storage::Error::InvalidDocument {
                    key: key.clone(),
                    reason: e.to_string(),
                }),
            }),
        Err(cfdr_storage::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::storage(format!("reading {key}"))(e)),
    }
}

/// Copies one primary repository to one secondary.
#[derive(Clone, Debug)]
pub struct Copier {
    primary: Store,
    secondary: Store,
    name: String,
    opts: CopyOptions,
}

impl Copier {
    /// A copier for the copy `name`. Refuses a secondary at the primary's
    /// own location.
    pub fn new(primary: Store, secondary: Store, name: &str, opts: CopyOptions) -> Result<Self> {
        if primary.location() == secondary.location() {
            return Err(Error::SameLocation {
                name: name.to_owned(),
                location: primary.location().display(),
            });
        }
        Ok(Self {
            primary,
            secondary,
            name: name.to_owned(),
            opts: CopyOptions {
                concurrency: opts.concurrency.max(1),
                ..opts
            },
        })
    }

    /// The copy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One complete pass under the secondary's lock (none in a dry run),
    /// then the lag record in the primary (none in a dry run).
    pub async fn run(&self) -> Result<Report> {
        let keeper = self.lock().await?;
        let report = self.pass(keeper.as_ref()).await;
        if let Some(k) = keeper {
            k.release().await;
        }
        let report = report?;
        if !self.opts.dry_run {
            self.record_lag(report.lag_bytes, report.lag_seconds).await;
        }
        Ok(report)
    }

    /// Keeps the secondary close behind until `stop` completes: a full
    /// pass every `full_every`, and in between the WAL listed after what
    /// was seen last, every `interval`. `on_report` sees each full pass and
    /// each incremental pass that found something. The lag record is
    /// rewritten when the lag changes and at least every few seconds.
    pub async fn follow<F>(
        &self,
        follow: &FollowOptions,
        stop: F,
        mut on_report: impl FnMut(&Report),
    ) -> Result<()>
    where
        F: std::future::Future<Output = ()>,
    {
        let keeper = self.lock().await?;
        let result = async {
            tokio::pin!(stop);
            let mut wal = pass::WalCursor::default();
            loop {
                let report = self.pass_with(keeper.as_ref(), Some(&mut wal)).await?;
                on_report(&report);
                let mut last_lag = (report.lag_bytes, report.lag_seconds);
                let mut written = None;
                if !self.opts.dry_run {
                    self.record_lag(last_lag.0, last_lag.1).await;
                    written = Some(std::time::Instant::now());
                }
                let full_at = std::time::Instant::now() + follow.full_every;
                while std::time::Instant::now() < full_at {
                    tokio::select! {
                        () = &mut stop => return Ok(()),
                        () = tokio::time::sleep(follow.interval) => {}
                    }
                    if let Some(k) = &keeper {
                        k.check(&self.secondary)?;
                    }
                    let report = self.wal_tick(&mut wal).await?;
                    let lag = (report.lag_bytes, report.lag_seconds);
                    if report.copied.objects + report.problems() > 0 {
                        on_report(&report);
                    }
                    let stale = written.is_none_or(|w| w.elapsed() >= Duration::from_secs(5));
                    if !self.opts.dry_run && (lag != last_lag || stale) {
                        self.record_lag(lag.0, lag.1).await;
                        written = Some(std::time::Instant::now());
                    }
                    last_lag = lag;
                }
            }
        }
        .await;
        if let Some(k) = keeper {
            k.release().await;
        }
        result
    }

    async fn lock(&self) -> Result<Option<keeper::Keeper>> {
        if self.opts.dry_run {
            return Ok(None);
        }
        keeper::Keeper::acquire(&self.secondary, self.opts.lock_ttl, self.opts.lock_wait)
            .await
            .map(Some)
    }

    async fn pass(&self, keeper: Option<&keeper::Keeper>) -> Result<Report> {
        self.pass_with(keeper, None).await
    }

    /// Writes the lag record; a failure is logged, never fatal (the copy
    /// itself succeeded).
    async fn record_lag(&self, lag_bytes: u64, lag_seconds: f64) {
        let state = CopyState {
            version: STATE_VERSION,
            name: self.name.clone(),
            lag_bytes,
            lag_seconds,
            updated_at: Timestamp::now(),
        };
        let body = serde_json::to_vec_pretty(&state).unwrap_or_default();
        if let Err(e) = self.primary.put(&state_key(&self.name), body).await {
            tracing::warn!(copy = %self.name, error = %e, "recording the copy lag in the primary failed");
        }
    }
}
