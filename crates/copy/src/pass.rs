//! One pass: list both sides, plan, copy data objects, then manifests,
//! then the check records of backups the secondary now lists.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use cfdr_incident::INCIDENTS_PREFIX;
use cfdr_storage::secret_bundles::SECRETS_PREFIX;
use cfdr_storage::wal_archive::{CLUSTER_KEY, ClusterIdentity, WAL_PREFIX, wal_file_name};
use cfdr_storage::{
    BACKUPS_PREFIX, BackupId, CONFIG_KEY, Manifest, ObjectInfo, ObjectMeta, RepoConfig, Repository,
    SecretManifest, Store, io_to_error,
};
use futures::StreamExt;
use jiff::Timestamp;
use serde::Serialize;

use crate::keeper::Keeper;
use crate::{Copier, Error, Result, STATE_VERSION};

/// Objects and their stored bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Number of objects.
    pub objects: u64,
    /// Their stored bytes.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// One object that was not copied, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object key (the same in both repositories).
    pub key: String,
    /// What is wrong and what happens next.
    pub reason: String,
}

/// What one pass did (or, in a dry run, would do).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Report format version.
    pub version: u32,
    /// The copy's name.
    pub name: String,
    /// The primary repository.
    pub primary: String,
    /// The secondary repository.
    pub secondary: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// Start of the pass.
    pub started_at: Timestamp,
    /// End of the pass.
    pub finished_at: Timestamp,
    /// Objects copied now (in a dry run: that would be copied).
    pub copied: Tally,
    /// Objects the secondary already held.
    pub already_there: Tally,
    /// Objects the secondary holds with other content: left alone.
    pub differ: Vec<Problem>,
    /// Objects the primary should hold but does not (named by a manifest,
    /// or deleted during the pass).
    pub missing: Vec<Problem>,
    /// Objects not copied: damaged in the primary, a storage error, or a
    /// manifest held back because one of its objects was not copied.
    pub failed: Vec<Problem>,
    /// Backups the secondary lists since this pass.
    pub backups_copied: Vec<String>,
    /// Stored bytes of the primary still not on the secondary.
    pub lag_bytes: u64,
    /// Age of the oldest object still not on the secondary (0 when none).
    pub lag_seconds: f64,
}

impl Report {
    /// Nothing differs, is missing or failed.
    pub fn is_clean(&self) -> bool {
        self.problems() == 0
    }

    /// Number of objects that differ, are missing or failed.
    pub fn problems(&self) -> u64 {
        (self.differ.len() + self.missing.len() + self.failed.len()) as u64
    }
}

/// How a planned object is checked in the primary.
#[derive(Clone, Debug)]
enum Check {
    /// Against the size and SHA-256 a manifest recorded.
    Recorded(ObjectInfo),
    /// A WAL object, against its own header.
    Wal,
    /// A JSON record (incident event, check record).
    Json,
}

#[derive(Clone, Debug)]
struct Job {
    key: String,
    size: u64,
    modified: Option<Timestamp>,
    check: Check,
    /// Verify a copy already on the secondary even without
    /// `verify_secondary` (objects of a backup not committed there yet).
    verify_dst: bool,
}

impl Job {
    fn new(meta: &ObjectMeta, check: Check) -> Self {
        Self {
            key: meta.key.clone(),
            size: meta.size,
            modified: meta.modified,
            check,
            verify_dst: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Copied,
    There,
    Differ(String),
    Missing(String),
    Failed(String),
}

impl Outcome {
    fn is_ok(&self) -> bool {
        matches!(self, Outcome::Copied | Outcome::There)
    }
}

/// A document written after its objects: a manifest or `wal/cluster.json`.
struct Commit {
    key: String,
    raw: Bytes,
    modified: Option<Timestamp>,
    /// The primary rewrites it in place, so the secondary's is replaced.
    replace: bool,
    /// Indexes of the data jobs that must succeed first.
    deps: Vec<usize>,
    /// The backup it commits, and that backup's check records.
    backup: Option<(BackupId, Vec<Job>)>,
}

/// Where incremental WAL listing resumes.
#[derive(Debug, Default)]
pub(crate) struct WalCursor {
    /// Primary WAL keys already handled.
    seen: BTreeSet<String>,
}

/// Keys listed again behind the newest one handled: asynchronous pushes
/// may store segments slightly out of order.
const WAL_OVERLAP: usize = 64;

impl WalCursor {
    fn start_after(&self) -> Option<String> {
        self.seen.iter().rev().nth(WAL_OVERLAP).cloned()
    }
}

/// The report being built, plus what is still pending for the lag.
struct Acc {
    report: Report,
    oldest_pending: Option<Timestamp>,
}

impl Acc {
    fn new(c: &Copier) -> Self {
        let now = Timestamp::now();
        Self {
            report: Report {
                version: STATE_VERSION,
                name: c.name.clone(),
                primary: c.primary.location().display(),
                secondary: c.secondary.location().display(),
                dry_run: c.opts.dry_run,
                started_at: now,
                finished_at: now,
                copied: Tally::default(),
                already_there: Tally::default(),
                differ: Vec::new(),
                missing: Vec::new(),
                failed: Vec::new(),
                backups_copied: Vec::new(),
                lag_bytes: 0,
                lag_seconds: 0.0,
            },
            oldest_pending: None,
        }
    }

    fn note(&mut self, key: &str, size: u64, modified: Option<Timestamp>, outcome: Outcome) {
        let r = &mut self.report;
        let problem = |reason: String| Problem {
            key: key.to_owned(),
            reason,
        };
        let pending = match outcome {
            Outcome::There => {
                r.already_there.add(size);
                false
            }
            Outcome::Copied => {
                r.copied.add(size);
                r.dry_run
            }
            Outcome::Differ(why) => {
                tracing::warn!(key, reason = %why, "differs on the secondary");
                r.differ.push(problem(why));
                true
            }
            Outcome::Missing(why) => {
                r.missing.push(problem(why));
                true
            }
            Outcome::Failed(why) => {
                tracing::warn!(key, reason = %why, "not copied");
                r.failed.push(problem(why));
                true
            }
        };
        if pending {
            r.lag_bytes += size;
            let at = modified.unwrap_or_else(Timestamp::now);
            self.oldest_pending = Some(self.oldest_pending.map_or(at, |o| o.min(at)));
        }
    }

    fn finish(mut self) -> Report {
        let now = Timestamp::now();
        self.report.finished_at = now;
        self.report.lag_seconds = self
            .oldest_pending
            .map_or(0.0, |o| now.duration_since(o).as_secs_f64().max(0.0));
        self.report
    }
}

/// Why a transfer did not complete.
enum Stop {
    /// The key exists on the secondary (a create-only write lost).
    Exists,
    /// Finished with this outcome.
    With(Outcome),
}

fn damaged(e: impl std::fmt::Display) -> Stop {
    Stop::With(Outcome::Failed(format!(
        "damaged in the primary, not copied: {e}"
    )))
}

/// A read of the primary failed.
fn source_err(e: cfdr_storage::Error) -> Stop {
    match e {
        cfdr_storage::Error::NotFound { .. } => Stop::With(Outcome::Missing(
            "deleted from the primary during the copy (pruned?)".into(),
        )),
        cfdr_storage::Error::Corrupt { .. } => damaged(e),
        other => Stop::With(Outcome::Failed(format!(
            "reading the primary failed: {other}; the next run retries"
        ))),
    }
}

/// A write to the secondary failed.
fn dest_err(e: cfdr_storage::Error) -> Stop {
    match e {
        cfdr_storage::Error::AlreadyExists { .. } => Stop::Exists,
        other => Stop::With(Outcome::Failed(format!(
            "writing the secondary failed: {other}; the next run retries"
        ))),
    }
}

type Listing = BTreeMap<String, ObjectMeta>;

/// Every object cfdr-copy copies, by key (locks, prune state and lag
/// records are each repository's own).
async fn listing(store: &Store) -> cfdr_storage::Result<Listing> {
    let lists = futures::future::try_join_all(
        [BACKUPS_PREFIX, WAL_PREFIX, SECRETS_PREFIX, INCIDENTS_PREFIX].map(|p| store.list(p)),
    )
    .await?;
    Ok(lists
        .into_iter()
        .flatten()
        .map(|m| (m.key.clone(), m))
        .collect())
}

fn under<'a>(listing: &'a Listing, prefix: &'a str) -> impl Iterator<Item = &'a ObjectMeta> + 'a {
    listing
        .range(prefix.to_owned()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(_, m)| m)
}

impl Copier {
    pub(crate) async fn pass_with(
        &self,
        keeper: Option<&Keeper>,
        cursor: Option<&mut WalCursor>,
    ) -> Result<Report> {
        let mut acc = Acc::new(self);
        Repository::open(self.primary.clone())
            .await
            .map_err(Error::storage("opening the primary repository"))?;
        let (src, dst) = futures::try_join!(
            async {
                listing(&self.primary)
                    .await
                    .map_err(Error::storage("listing the primary"))
            },
            async {
                listing(&self.secondary)
                    .await
                    .map_err(Error::storage("listing the secondary"))
            },
        )?;
        self.descriptor(&mut acc).await?;

        let mut jobs: Vec<Job> = Vec::new();
        let mut commits: Vec<Commit> = Vec::new();
        let mut checks_now: Vec<Job> = Vec::new();

        // The WAL archive: segments are immutable, cluster.json is not.
        for meta in under(&src, WAL_PREFIX) {
            if meta.key == CLUSTER_KEY {
                // Read unverified (it has no recorded checksum): a read that
                // ended early must not replace the secondary's copy.
                let read = self
                    .primary
                    .get(CLUSTER_KEY)
                    .await
                    .and_then(|raw| ClusterIdentity::parse(&raw).map(|_| raw));
                match read {
                    Ok(raw) => commits.push(Commit {
                        key: meta.key.clone(),
                        raw,
                        modified: meta.modified,
                        replace: true,
                        deps: Vec::new(),
                        backup: None,
                    }),
                    Err(e) => {
                        let o = stop_outcome(source_err(e));
                        acc.note(&meta.key, meta.size, meta.modified, o);
                    }
                }
            } else if wal_file_name(&meta.key).is_some() {
                jobs.push(Job::new(meta, Check::Wal));
            }
        }
        for meta in under(&src, INCIDENTS_PREFIX) {
            jobs.push(Job::new(meta, Check::Json));
        }
        self.plan_backups(
            &src,
            &dst,
            &mut acc,
            &mut jobs,
            &mut commits,
            &mut checks_now,
        )
        .await;
        self.plan_secrets(&src, &dst, &mut acc, &mut jobs, &mut commits)
            .await;

        // 1. Data objects.
        let outcomes = self.run_all(&jobs, &dst).await;
        if let Some(cursor) = cursor {
            for (job, o) in jobs.iter().zip(&outcomes) {
                if matches!(job.check, Check::Wal) && !matches!(o, Outcome::Failed(_)) {
                    cursor.seen.insert(job.key.clone());
                }
            }
        }
        for (job, o) in jobs.iter().zip(&outcomes) {
            acc.note(&job.key, job.size, job.modified, o.clone());
        }

        // 2. Manifests, once everything they name is on the secondary.
        if let Some(k) = keeper {
            k.check(&self.secondary)?;
        }
        for c in commits {
            let size = c.raw.len() as u64;
            let held_back = c.deps.iter().filter(|&&i| !outcomes[i].is_ok()).count();
            let outcome = if held_back > 0 {
                Outcome::Failed(format!(
                    "not written: {held_back} of the objects it names were not copied (see them in this report); the next run retries"
                ))
            } else {
                self.commit(&c).await
            };
            if let (Some((id, checks)), true) = (&c.backup, outcome.is_ok()) {
                if outcome == Outcome::Copied {
                    acc.report.backups_copied.push(id.to_string());
                }
                checks_now.extend(checks.iter().cloned());
            }
            acc.note(&c.key, size, c.modified, outcome);
        }

        // 3. Check records of backups the secondary lists.
        if let Some(k) = keeper {
            k.check(&self.secondary)?;
        }
        let outcomes = self.run_all(&checks_now, &dst).await;
        for (job, o) in checks_now.iter().zip(outcomes) {
            acc.note(&job.key, job.size, job.modified, o);
        }
        Ok(acc.finish())
    }

    /// New WAL in the primary since the cursor, copied.
    pub(crate) async fn wal_tick(&self, cursor: &mut WalCursor) -> Result<Report> {
        let mut acc = Acc::new(self);
        let after = cursor.start_after();
        let listed = self
            .primary
            .list_after(WAL_PREFIX, true, after.as_deref())
            .await
            .map_err(Error::storage("listing new WAL in the primary"))?;
        let jobs: Vec<Job> = listed
            .iter()
            .filter(|m| wal_file_name(&m.key).is_some() && !cursor.seen.contains(&m.key))
            .map(|m| Job::new(m, Check::Wal))
            .collect();
        let outcomes = self.run_all(&jobs, &Listing::new()).await;
        for (job, o) in jobs.iter().zip(outcomes) {
            if !matches!(o, Outcome::Failed(_)) {
                cursor.seen.insert(job.key.clone());
            }
            acc.note(&job.key, job.size, job.modified, o);
        }
        Ok(acc.finish())
    }

    /// `cfdr.json`: copied when the secondary has none; a secondary that is
    /// another repository is refused before anything is written.
    async fn descriptor(&self, acc: &mut Acc) -> Result<()> {
        let raw = self
            .primary
            .get(CONFIG_KEY)
            .await
            .map_err(Error::storage("reading the primary's cfdr.json"))?;
        let ours: RepoConfig = parse(CONFIG_KEY, &raw)?;
        let size = raw.len() as u64;
        for _ in 0..2 {
            match self.secondary.get(CONFIG_KEY).await {
                Ok(theirs) => {
                    let theirs: RepoConfig = parse(CONFIG_KEY, &theirs)?;
                    if theirs.id != ours.id {
                        return Err(Error::Foreign {
                            secondary: self.secondary.location().display(),
                            found: theirs.id,
                            primary: ours.id,
                        });
                    }
                    acc.note(CONFIG_KEY, size, None, Outcome::There);
                    return Ok(());
                }
                Err(cfdr_storage::Error::NotFound { .. }) if self.opts.dry_run => {
                    acc.note(CONFIG_KEY, size, None, Outcome::Copied);
                    return Ok(());
                }
                Err(cfdr_storage::Error::NotFound { .. }) => {
                    match self
                        .secondary
                        .create_if_absent(CONFIG_KEY, raw.clone())
                        .await
                    {
                        Ok(_) => {
                            acc.note(CONFIG_KEY, size, None, Outcome::Copied);
                            return Ok(());
                        }
                        // Another writer: compare with theirs.
                        Err(cfdr_storage::Error::AlreadyExists { .. }) => continue,
                        Err(e) => {
                            return Err(Error::storage("writing cfdr.json to the secondary")(e));
                        }
                    }
                }
                Err(e) => return Err(Error::storage("reading the secondary's cfdr.json")(e)),
            }
        }
        Err(Error::storage("writing cfdr.json to the secondary")(
            cfdr_storage::Error::AlreadyExists {
                key: CONFIG_KEY.into(),
            },
        ))
    }

    /// Committed backups of the primary: data objects as jobs, the manifest
    /// as a commit; backups the secondary already lists only by listing.
    async fn plan_backups(
        &self,
        src: &Listing,
        dst: &Listing,
        acc: &mut Acc,
        jobs: &mut Vec<Job>,
        commits: &mut Vec<Commit>,
        checks_now: &mut Vec<Job>,
    ) {
        let mut folders: BTreeMap<&str, Vec<&ObjectMeta>> = BTreeMap::new();
        for meta in under(src, BACKUPS_PREFIX) {
            if let Some((id, _)) = meta.key[BACKUPS_PREFIX.len()..].split_once('/') {
                folders.entry(id).or_default().push(meta);
            }
        }
        for (raw_id, metas) in folders {
            let Ok(id) = BackupId::parse(raw_id) else {
                continue;
            };
            let mkey = id.manifest_key();
            let Some(mmeta) = src.get(&mkey) else {
                // Not committed in the primary (running, or a leftover).
                continue;
            };
            let checks_prefix = format!("{}checks/", id.prefix());
            let checks: Vec<Job> = metas
                .iter()
                .filter(|m| m.key.starts_with(&checks_prefix))
                .map(|m| Job::new(m, Check::Json))
                .collect();
            match dst.get(&mkey) {
                Some(d) if d.size != mmeta.size => {
                    let why = format!(
                        "the secondary's manifest has {} bytes, the primary's {}: left alone",
                        d.size, mmeta.size
                    );
                    acc.note(&mkey, mmeta.size, mmeta.modified, Outcome::Differ(why));
                    continue;
                }
                Some(_) if !self.opts.verify_secondary => {
                    for m in &metas {
                        if !m.key.starts_with(&checks_prefix)
                            && dst.get(&m.key).is_some_and(|d| d.size == m.size)
                        {
                            acc.note(&m.key, m.size, m.modified, Outcome::There);
                        }
                    }
                    checks_now.extend(checks);
                    continue;
                }
                _ => {}
            }
            let committed_there = dst.contains_key(&mkey);
            let raw = match self.primary.get(&mkey).await {
                Ok(raw) => raw,
                Err(e) => {
                    acc.note(
                        &mkey,
                        mmeta.size,
                        mmeta.modified,
                        stop_outcome(source_err(e)),
                    );
                    continue;
                }
            };
            let manifest = match parse::<Manifest>(&mkey, &raw) {
                Ok(m) if m.id == id => m,
                Ok(m) => {
                    let why = format!("it names backup {}", m.id);
                    acc.note(
                        &mkey,
                        mmeta.size,
                        mmeta.modified,
                        stop_outcome(damaged(why)),
                    );
                    continue;
                }
                Err(e) => {
                    acc.note(&mkey, mmeta.size, mmeta.modified, stop_outcome(damaged(e)));
                    continue;
                }
            };
            let absent: Vec<&str> = manifest
                .objects
                .iter()
                .map(|o| o.key.as_str())
                .filter(|k| !src.contains_key(*k))
                .collect();
            if !absent.is_empty() {
                for key in &absent {
                    let why = format!("backup {id} names it but the primary does not hold it");
                    acc.note(key, 0, mmeta.modified, Outcome::Missing(why));
                }
                let why = format!(
                    "backup {id} is not copied: {} of its objects are missing from the primary",
                    absent.len()
                );
                acc.note(&mkey, mmeta.size, mmeta.modified, Outcome::Failed(why));
                continue;
            }
            let mut deps = Vec::new();
            for obj in &manifest.objects {
                deps.push(jobs.len());
                jobs.push(Job {
                    key: obj.key.clone(),
                    size: obj.stored.size,
                    modified: src.get(&obj.key).and_then(|m| m.modified),
                    check: Check::Recorded(obj.stored.clone()),
                    verify_dst: !committed_there,
                });
            }
            commits.push(Commit {
                key: mkey,
                raw,
                modified: mmeta.modified,
                replace: false,
                deps,
                backup: Some((id, checks)),
            });
        }
    }

    /// Secret bundles: the age object against its manifest, then the
    /// manifest (replaced when a rekey changed it in the primary).
    async fn plan_secrets(
        &self,
        src: &Listing,
        dst: &Listing,
        acc: &mut Acc,
        jobs: &mut Vec<Job>,
        commits: &mut Vec<Commit>,
    ) {
        for meta in under(src, SECRETS_PREFIX) {
            let is_manifest = meta.key.ends_with(".json")
                && meta.key[SECRETS_PREFIX.len()..].matches('/').count() == 1;
            if !is_manifest {
                continue;
            }
            let there = dst.get(&meta.key);
            if there.is_some_and(|d| d.size == meta.size) && !self.opts.verify_secondary {
                // Its age object (`<version>.age`, `<version>.r<N>.age`) by listing.
                let stem = meta.key.trim_end_matches("json");
                for m in under(src, stem) {
                    if m.key != meta.key && dst.get(&m.key).is_some_and(|d| d.size == m.size) {
                        acc.note(&m.key, m.size, m.modified, Outcome::There);
                    }
                }
                acc.note(&meta.key, meta.size, meta.modified, Outcome::There);
                continue;
            }
            let raw = match self.primary.get(&meta.key).await {
                Ok(raw) => raw,
                Err(e) => {
                    acc.note(
                        &meta.key,
                        meta.size,
                        meta.modified,
                        stop_outcome(source_err(e)),
                    );
                    continue;
                }
            };
            let m = match parse::<SecretManifest>(&meta.key, &raw) {
                Ok(m) => m,
                Err(e) => {
                    acc.note(
                        &meta.key,
                        meta.size,
                        meta.modified,
                        stop_outcome(damaged(e)),
                    );
                    continue;
                }
            };
            let Some(object) = src.get(&m.object) else {
                let why = format!(
                    "secret bundle {} names it but the primary does not hold it",
                    m.label()
                );
                acc.note(&m.object, 0, meta.modified, Outcome::Missing(why));
                let why = format!(
                    "{} is not copied: its object is missing from the primary",
                    m.label()
                );
                acc.note(&meta.key, meta.size, meta.modified, Outcome::Failed(why));
                continue;
            };
            let deps = vec![jobs.len()];
            jobs.push(Job {
                key: m.object.clone(),
                size: m.stored.size,
                modified: object.modified,
                check: Check::Recorded(m.stored.clone()),
                verify_dst: there.is_none(),
            });
            commits.push(Commit {
                key: meta.key.clone(),
                raw,
                modified: meta.modified,
                replace: true,
                deps,
                backup: None,
            });
        }
    }

    async fn run_all(&self, jobs: &[Job], dst: &Listing) -> Vec<Outcome> {
        // By index: a closure over `&Job` makes the future not `Send` for
        // every lifetime, which spawned callers need.
        futures::stream::iter(0..jobs.len())
            .map(|i| self.run_job(&jobs[i], dst.get(&jobs[i].key).map(|m| m.size)))
            .buffered(self.opts.concurrency)
            .collect()
            .await
    }

    async fn run_job(&self, job: &Job, there: Option<u64>) -> Outcome {
        if let Some(size) = there {
            return self.existing(job, size, job.verify_dst).await;
        }
        if self.opts.dry_run {
            return Outcome::Copied;
        }
        match self.transfer(job).await {
            Ok(()) => Outcome::Copied,
            Err(Stop::With(o)) => o,
            // It appeared meanwhile: whoever wrote it, check it.
            Err(Stop::Exists) => match self.secondary.stat(&job.key).await {
                Ok(Some(m)) => self.existing(job, m.size, true).await,
                Ok(None) => Outcome::Failed(
                    "it appeared on the secondary during the copy and vanished again; the next run retries".into(),
                ),
                Err(e) => Outcome::Failed(format!("reading the secondary failed: {e}")),
            },
        }
    }

    /// An object the secondary already holds with `size` bytes.
    async fn existing(&self, job: &Job, size: u64, verify: bool) -> Outcome {
        if size != job.size {
            return Outcome::Differ(format!(
                "the secondary holds {size} bytes, the primary {}: left alone",
                job.size
            ));
        }
        if !(verify || self.opts.verify_secondary) {
            return Outcome::There;
        }
        match &job.check {
            Check::Recorded(info) => match drain(&self.secondary, &job.key, info).await {
                Ok(()) => Outcome::There,
                Err(e) => Outcome::Differ(format!("the secondary's copy does not verify: {e}")),
            },
            Check::Wal | Check::Json => {
                match futures::try_join!(self.primary.get(&job.key), self.secondary.get(&job.key)) {
                    Ok((ours, theirs)) if ObjectInfo::of(&ours) == ObjectInfo::of(&theirs) => {
                        Outcome::There
                    }
                    Ok((ours, theirs)) => Outcome::Differ(format!(
                        "the secondary's copy has SHA-256 {}, the primary's {}: left alone",
                        ObjectInfo::of(&theirs).sha256,
                        ObjectInfo::of(&ours).sha256
                    )),
                    Err(e) => Outcome::Failed(format!("comparing both copies failed: {e}")),
                }
            }
        }
    }

    /// Copies one object byte for byte, create-only.
    async fn transfer(&self, job: &Job) -> Result<(), Stop> {
        let raw = match &job.check {
            Check::Recorded(info) => return self.stream(&job.key, info).await,
            Check::Wal => {
                let raw = self.primary.get(&job.key).await.map_err(source_err)?;
                let header = cfdr_wal_archive::verify_stored(
                    &job.key,
                    raw.clone(),
                    self.opts.identities.clone(),
                )
                .await
                .map_err(damaged)?;
                if wal_file_name(&job.key) != Some(header.file.as_str()) {
                    return Err(damaged(format!("it holds {}", header.file)));
                }
                raw
            }
            Check::Json => {
                let raw = self.primary.get(&job.key).await.map_err(source_err)?;
                serde_json::from_slice::<serde_json::Value>(&raw)
                    .map_err(|e| damaged(format!("not a JSON record: {e}")))?;
                raw
            }
        };
        let sent = ObjectInfo::of(&raw);
        let mut w = self
            .secondary
            .writer(&job.key, true)
            .await
            .map_err(dest_err)?;
        if let Err(e) = w.write(raw).await {
            w.abort().await;
            return Err(dest_err(e));
        }
        let stored = w.finish().await.map_err(dest_err)?;
        same(&stored, &sent)
    }

    /// Streams an object whose size and SHA-256 a manifest recorded: the
    /// primary's bytes are verified as they pass, and a mismatch at the end
    /// aborts the upload, so nothing damaged becomes visible.
    async fn stream(&self, key: &str, info: &ObjectInfo) -> Result<(), Stop> {
        let mut src = self
            .primary
            .read_verified(key, info)
            .await
            .map_err(source_err)?;
        let mut w = self
            .secondary
            .writer_sized(key, true, info.size)
            .await
            .map_err(dest_err)?;
        while let Some(chunk) = src.next().await {
            let step = match chunk {
                Ok(bytes) => w.write(bytes).await.map_err(dest_err),
                Err(e) => Err(source_err(io_to_error(e, key))),
            };
            if let Err(stop) = step {
                w.abort().await;
                return Err(stop);
            }
        }
        let stored = w.finish().await.map_err(dest_err)?;
        same(&stored, info)
    }

    /// Writes a manifest or `cluster.json`.
    async fn commit(&self, c: &Commit) -> Outcome {
        for _ in 0..2 {
            match self.secondary.get(&c.key).await {
                Ok(theirs) if theirs == c.raw => return Outcome::There,
                Ok(_) if !c.replace => {
                    return Outcome::Differ(
                        "the secondary's copy has other content: left alone".into(),
                    );
                }
                Ok(_) if self.opts.dry_run => return Outcome::Copied,
                Ok(_) => {
                    return match self.secondary.put(&c.key, c.raw.clone()).await {
                        Ok(_) => Outcome::Copied,
                        Err(e) => stop_outcome(dest_err(e)),
                    };
                }
                Err(cfdr_storage::Error::NotFound { .. }) if self.opts.dry_run => {
                    return Outcome::Copied;
                }
                Err(cfdr_storage::Error::NotFound { .. }) => {
                    match self.secondary.create_if_absent(&c.key, c.raw.clone()).await {
                        Ok(_) => return Outcome::Copied,
                        Err(cfdr_storage::Error::AlreadyExists { .. }) => continue,
                        Err(e) => return stop_outcome(dest_err(e)),
                    }
                }
                Err(e) => return Outcome::Failed(format!("reading the secondary failed: {e}")),
            }
        }
        Outcome::Failed("another writer keeps changing it on the secondary".into())
    }
}

fn stop_outcome(stop: Stop) -> Outcome {
    match stop {
        Stop::With(o) => o,
        Stop::Exists => Outcome::Failed("it appeared on the secondary during the copy".into()),
    }
}

/// The secondary's writer must report what was read from the primary.
fn same(stored: &ObjectInfo, expected: &ObjectInfo) -> Result<(), Stop> {
    if stored == expected {
        return Ok(());
    }
    Err(Stop::With(Outcome::Failed(format!(
        "the secondary stored {} bytes with SHA-256 {}, expected {} bytes with {}",
        stored.size, stored.sha256, expected.size, expected.sha256
    ))))
}

/// Reads an object to the end, verifying it.
async fn drain(store: &Store, key: &str, info: &ObjectInfo) -> cfdr_storage::Result<()> {
    let mut s = store.read_verified(key, info).await?;
    while let Some(chunk) = s.next().await {
        chunk.map_err(|e| io_to_error(e, key))?;
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| Error::Storage {
        what: format!("reading {key}"),
        source: Box::new(cfdr_storage::Error::InvalidDocument {
            key: key.to_owned(),
            reason: e.to_string(),
        }),
    })
}
