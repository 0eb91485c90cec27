//! The embedded default: a whole CryptoFunk system in a temp folder, the
//! scenarios played on it, and its removal.
//!
//! The sandbox holds a PostgreSQL primary archiving every WAL segment with
//! `cfdr-wal push` (the program beside `cfdr-drill`) into a folder
//! repository and a `cfdr-wal stream` shipping its WAL there within about a
//! second, the CryptoFunk sample with a trading workload running
//! throughout, a physical and a logical backup, a streaming replica, an
//! off-region copy of the repository kept close behind by a cfdr-copy
//! follower, and an age-encrypted secrets bundle. It is removed at the end, also when the
//! drill fails or is cancelled: servers stopped (any server found running
//! in it, including one a cancelled restore had started), folder deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cfdr_pg::physical::{self, PhysicalOptions};
use cfdr_pg::{LocalCluster, PgBin, PgTarget, logical, replica};
use cfdr_secrets::{Encryption, Identities, Recipients, SecretBundle, SecretValue};
use cfdr_storage::{EncodeOptions, Manifest, Repository, SecretStore, StorageOptions};
use cfdr_wal_archive::Lsn;
use jiff::Timestamp;
use sqlx::Executor;
use tokio_util::sync::CancellationToken;

use crate::drive::{Plan, Recorder, Stage, drive};
use crate::error::{Error, Result};
use crate::report::{Cleanup, Report, ScenarioReport};
use crate::{Event, Fault, Objectives, Scenario, sample, scenarios};

/// Name of the sample database.
pub const DATABASE: &str = "cryptofunk";
/// Name of the secrets bundle the sandbox stores.
pub const BUNDLE: &str = "cryptofunk";

/// What the sandbox drill runs.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Folder holding `cfdr-wal` (the folder of `cfdr-drill` itself).
    pub programs: PathBuf,
    /// PostgreSQL's bin folder; found as the rest of cfdr finds it when
    /// unset (`/usr/lib/postgresql/15/bin`, newer installed, `PATH`).
    pub pg_bin: Option<PathBuf>,
    /// Scenarios to run (in [`Scenario::ALL`] order).
    pub scenarios: Vec<Scenario>,
    /// Faults to plant, each in its scenario.
    pub inject: Vec<Fault>,
    /// Objectives.
    pub objectives: Objectives,
    /// Trading sessions of the sample.
    pub sessions: u32,
    /// Trades of the sample before the workload starts.
    pub trades: u32,
    /// Pause of the workload between trades.
    pub trade_pause: Duration,
    /// `archive_timeout` of the primary: the most WAL time a lost primary
    /// can take with it when its WAL stream is down too.
    pub archive_timeout: Duration,
}

impl SandboxOptions {
    /// Every scenario, no fault, a small sample (20 sessions, 2,000
    /// trades), a trade every 20 ms, `archive_timeout` 2 s.
    pub fn new(programs: PathBuf, objectives: Objectives) -> Self {
        Self {
            programs,
            pg_bin: None,
            scenarios: Scenario::ALL.to_vec(),
            inject: Vec::new(),
            objectives,
            sessions: 20,
            trades: 2_000,
            trade_pause: Duration::from_millis(20),
            archive_timeout: Duration::from_secs(2),
        }
    }
}

/// Commit times of the workload's trades, by trade number.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    commits: BTreeMap<u64, Timestamp>,
}

impl Ledger {
    /// The last committed trade and its time.
    pub(crate) fn last(&self) -> Option<(u64, Timestamp)> {
        self.commits.last_key_value().map(|(k, v)| (*k, *v))
    }

    /// The last trade committed at or before `t`.
    pub(crate) fn last_at(&self, t: Timestamp) -> Option<(u64, Timestamp)> {
        self.commits
            .iter()
            .rev()
            .find(|(_, at)| **at <= t)
            .map(|(k, v)| (*k, *v))
    }

    /// `(seconds, trades)` lost from `before` (the last trade committed
    /// before the disaster) to `after` (the last one present after
    /// recovery).
    pub(crate) fn loss(&self, before: u64, after: u64) -> (f64, u64) {
        if after >= before {
            return (0.0, 0);
        }
        let time = |id: u64| self.commits.range(..=id).next_back().map(|(_, t)| *t);
        let secs = match (time(before), time(after)) {
            (Some(b), Some(a)) => b.duration_since(a).as_secs_f64().max(0.0),
            _ => 0.0,
        };
        (secs, before - after)
    }
}

/// The trading workload: one trade per transaction against the current
/// primary, reconnecting (and resuming after the primary's last trade)
/// when the primary changes or dies.
pub(crate) struct Workload {
    target: Arc<Mutex<Option<PgTarget>>>,
    generation: Arc<AtomicU64>,
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    task: tokio::task::JoinHandle<()>,
}

impl Workload {
    fn start(target: PgTarget, sessions: u32, first: (u64, Timestamp), pause: Duration) -> Self {
        let target = Arc::new(Mutex::new(Some(target)));
        let generation = Arc::new(AtomicU64::new(0));
        let mut ledger = Ledger::default();
        ledger.commits.insert(first.0, first.1);
        let ledger = Arc::new(Mutex::new(ledger));
        let task = tokio::spawn(trade_loop(
            target.clone(),
            generation.clone(),
            ledger.clone(),
            sessions,
            pause,
        ));
        Self {
            target,
            generation,
            ledger,
            task,
        }
    }

    /// Sends the trades to `target` from now on (`None`: no primary).
    pub(crate) fn switch(&self, target: Option<PgTarget>) {
        if let Ok(mut t) = self.target.lock() {
            *t = target;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The last committed trade.
    pub(crate) fn last(&self) -> Option<(u64, Timestamp)> {
        self.ledger.lock().ok().and_then(|l| l.last())
    }

    /// Waits until a trade commits after `since`; returns it.
    pub(crate) async fn wait_trade_after(&self, since: Timestamp, limit: Duration) -> Result<u64> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((id, at)) = self.last()
                && at > since
            {
                return Ok(id);
            }
            if Instant::now() >= deadline {
                return Err(Error::Check(format!(
                    "no trade committed within {} s",
                    limit.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn trade_loop(
    target: Arc<Mutex<Option<PgTarget>>>,
    generation: Arc<AtomicU64>,
    ledger: Arc<Mutex<Ledger>>,
    sessions: u32,
    pause: Duration,
) {
    let mut conn: Option<(u64, sqlx::PgConnection, u64)> = None;
    loop {
        let current = target.lock().ok().and_then(|t| t.clone());
        let generation_now = generation.load(Ordering::SeqCst);
        let Some(current) = current else {
            conn = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if conn.as_ref().is_none_or(|(g, _, _)| *g != generation_now) {
            conn = None;
            if let Ok(mut c) = current.connect().await {
                let next =
                    match sqlx::query_scalar::<_, i64>("SELECT coalesce(max(id), 0) FROM trades")
                        .fetch_one(&mut c)
                        .await
                    {
                        Ok(n) => u64::try_from(n).unwrap_or(0) + 1,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                conn = Some((generation_now, c, next));
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let Some((_, c, next)) = conn.as_mut() else {
            continue;
        };
        let sql = sample::workload_sql(sessions, *next, *next);
        match c.execute(sql.as_str()).await {
            Ok(_) => {
                if let Ok(mut l) = ledger.lock() {
                    l.commits.insert(*next, Timestamp::now());
                }
                *next += 1;
                tokio::time::sleep(pause).await;
            }
            Err(_) => {
                conn = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The secrets the sandbox stored, kept to compare with the restored copy.
pub(crate) struct Secrets {
    pub(crate) identities: Identities,
    pub(crate) original: SecretBundle,
}

/// Everything the sandbox holds.
pub(crate) struct Sandbox {
    pub(crate) opts: SandboxOptions,
    pub(crate) bin: PgBin,
    pub(crate) wal_exe: PathBuf,
    pub(crate) primary: Option<LocalCluster>,
    pub(crate) replica: Option<LocalCluster>,
    pub(crate) scratch: Vec<LocalCluster>,
    pub(crate) repo: Option<Repository>,
    pub(crate) stale: Option<Repository>,
    pub(crate) workload: Option<Workload>,
    pub(crate) base: Option<Manifest>,
    pub(crate) logical: Option<Manifest>,
    pub(crate) secrets: Option<Secrets>,
    pub(crate) postgres: Option<String>,
    pub(crate) follower: Option<Follower>,
    pub(crate) stream: Option<WalStream>,
    references: u32,
    // Last: fields drop in order, so on a panic the servers above stop
    // before their folder goes.
    root: tempfile::TempDir,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    Error::io(action, path)
}

impl Sandbox {
    /// A path inside the sandbox.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The repository.
    pub(crate) fn repo(&self) -> Result<&Repository> {
        self.repo
            .as_ref()
            .ok_or_else(|| Error::Check("the sandbox has no repository".into()))
    }

    /// The repository URL (`file://...`).
    pub(crate) fn repo_url(&self) -> String {
        format!("file://{}", self.path("repo").display())
    }

    /// The running primary.
    pub(crate) fn primary(&self) -> Result<&LocalCluster> {
        self.primary
            .as_ref()
            .ok_or_else(|| Error::Check("the sandbox has no running primary".into()))
    }

    /// The workload.
    pub(crate) fn workload(&self) -> Result<&Workload> {
        self.workload
            .as_ref()
            .ok_or_else(|| Error::Check("the sandbox runs no workload".into()))
    }

    /// Whether `fault` is planted in `scenario`.
    pub(crate) fn injects(&self, fault: Fault) -> bool {
        self.opts.inject.contains(&fault)
    }

    /// A fresh name for a reference database.
    pub(crate) fn reference_name(&mut self) -> String {
        self.references += 1;
        format!("cfdr_drill_reference_{}", self.references)
    }

    /// `restore_command` fetching from the sandbox repository with the
    /// `cfdr-wal` beside `cfdr-drill`.
    pub(crate) fn restore_command(&self) -> Result<String> {
        Ok(physical::fetch_command(
            &self.wal_exe,
            None,
            Some(&self.repo_url()),
            &self.path("spool"),
            0,
        )?)
    }

    fn needs(&self, s: Scenario) -> bool {
        self.opts.scenarios.contains(&s)
    }

    async fn setup(&mut self, rec: &mut Recorder<'_>) -> Result<()> {
        let needs_db = [
            Scenario::AccidentalDeletion,
            Scenario::ReplicaFailover,
            Scenario::DatabaseLoss,
            Scenario::RegionLoss,
        ]
        .into_iter()
        .any(|s| self.needs(s));
        // The scenarios that recover from the repository's WAL: they need
        // the stream and a base backup.
        let needs_wal = [
            Scenario::AccidentalDeletion,
            Scenario::DatabaseLoss,
            Scenario::RegionLoss,
        ]
        .into_iter()
        .any(|s| self.needs(s));
        rec.step("folder repository", async {
            let dir = self.path("repo");
            let store = StorageOptions::from_url(format!("file://{}", dir.display())).build()?;
            self.repo = Some(Repository::init(store).await?);
            for d in ["spool", "sock"] {
                std::fs::create_dir_all(self.path(d)).map_err(io("creating", &self.path(d)))?;
            }
            // The archiver runs `cfdr-wal push` as the server's user.
            cfdr_pg::chown_tree(self.root.path())?;
            Ok(())
        })
        .await?;
        if self.needs(Scenario::SecretsLoss) {
            rec.step(
                "secrets bundle, age-encrypted, stored",
                self.store_secrets(),
            )
            .await?;
        }
        if !needs_db {
            return Ok(());
        }
        rec.step("PostgreSQL primary archiving with cfdr-wal push", async {
            let mut cluster =
                LocalCluster::init(&self.bin, &self.path("primary"), &self.path("sock")).await?;
            let repo = self.path("repo");
            let command = format!(
                "{} -r {} push %p",
                physical::sh_quote(&self.wal_exe.display().to_string()),
                physical::sh_quote(&repo.display().to_string())
            );
            let conf = cluster.data_dir.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).map_err(io("reading", &conf))?;
            text.push_str(&format!(
                "\n# cfdr drill sandbox\nwal_level = replica\narchive_mode = on\narchive_command = '{}'\narchive_timeout = '{}s'\nmax_wal_senders = 10\nmax_slot_wal_keep_size = '1GB'\nautovacuum = off\n",
                command.replace('\'', "''"),
                self.opts.archive_timeout.as_secs().max(1)
            ));
            std::fs::write(&conf, text).map_err(io("writing", &conf))?;
            cluster.start(&[]).await?;
            let (_, version) = cfdr_pg::admin::server_version(&cluster.target("postgres")).await?;
            self.postgres = Some(version);
            self.primary = Some(cluster);
            Ok(())
        })
        .await?;
        if needs_wal {
            rec.step(
                "WAL stream: cfdr-wal stream shipping to the repository",
                self.start_stream("stream"),
            )
            .await?;
        }
        let (sessions, trades) = (self.opts.sessions, self.opts.trades);
        rec.step(
            &format!("CryptoFunk sample: {sessions} sessions, {trades} trades"),
            async {
                let primary = self.primary()?;
                primary.create_database(DATABASE).await?;
                sample::load(&primary.target(DATABASE), sessions, trades).await?;
                Ok(())
            },
        )
        .await?;
        rec.step("trading workload started", async {
            let target = self.primary()?.target(DATABASE);
            self.workload = Some(Workload::start(
                target,
                sessions,
                (u64::from(trades), Timestamp::now()),
                self.opts.trade_pause,
            ));
            self.workload()?
                .wait_trade_after(Timestamp::now(), Duration::from_secs(60))
                .await?;
            Ok(())
        })
        .await?;
        if needs_wal {
            let manifest = rec
                .step("physical base backup (daily)", async {
                    let opts = PhysicalOptions {
                        bin_dir: self.opts.pg_bin.clone(),
                        ..PhysicalOptions::default()
                    };
                    let target = self.primary()?.target("postgres");
                    Ok(physical::backup(
                        self.repo()?,
                        &target,
                        "daily",
                        &opts,
                        &EncodeOptions::default(),
                    )
                    .await?)
                })
                .await?;
            rec.bytes(manifest.stored_size());
            self.base = Some(manifest);
        }
        if self.needs(Scenario::DatabaseLoss) {
            let manifest = rec
                .step("logical backup (hourly)", async {
                    let opts = logical::LogicalOptions {
                        bin_dir: self.opts.pg_bin.clone(),
                        ..logical::LogicalOptions::default()
                    };
                    let target = self.primary()?.target(DATABASE);
                    Ok(logical::backup(
                        self.repo()?,
                        &target,
                        "hourly",
                        &opts,
                        &EncodeOptions::default(),
                    )
                    .await?)
                })
                .await?;
            rec.bytes(manifest.stored_size());
            self.logical = Some(manifest);
        }
        if self.needs(Scenario::RegionLoss) {
            rec.step(
                "off-region copy: secondary folder repository, cfdr-copy following",
                async {
                    let dir = self.path("secondary");
                    self.follower = Some(Follower::start(self.repo()?, dir).await?);
                    Ok(())
                },
            )
            .await?;
        }
        if self.needs(Scenario::ReplicaFailover) {
            rec.step("streaming replica", async {
                let primary = self.primary()?.target("postgres");
                let dir = self.path("replica");
                replica::create(&self.bin, &primary, &dir, "cfdr_drill_replica").await?;
                let mut standby = LocalCluster::existing(&self.bin, &dir, &self.path("sock"))?;
                // The replica archives what it receives too: a segment the
                // primary had not archived when it died is not lost to the
                // archive (pushing a segment already stored is a no-op).
                standby.start(&[("archive_mode", "always")]).await?;
                self.replica = Some(standby);
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let s = replica::status(&primary).await?;
                    if s.iter().any(|r| r.state == "streaming") {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(Error::Check(format!(
                            "the replica did not stream within 120 s: {s:?}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await?;
        }
        if self.injects(Fault::StaleRepository) {
            rec.step(
                "planted fault: a copy of the repository stops here",
                async {
                    let copy = self.path("stale-repo");
                    copy_tree(&self.path("repo"), &copy)?;
                    let store =
                        StorageOptions::from_url(format!("file://{}", copy.display())).build()?;
                    self.stale = Some(Repository::open(store).await?);
                    Ok(())
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn store_secrets(&mut self) -> Result<()> {
        let (identity, recipient) = cfdr_secrets::generate_identity();
        let identities = Identities::from_text(identity.as_str())?;
        let mut bundle = SecretBundle::new();
        for name in [
            "EXCHANGE_API_KEY",
            "EXCHANGE_API_SECRET",
            "DATABASE_PASSWORD",
            "JWT_SIGNING_KEY",
        ] {
            let (value, _) = cfdr_secrets::generate_identity();
            bundle.insert_value(name, SecretValue::text(value.as_str()))?;
        }
        let encryption = Encryption::Recipients(Recipients::parse([recipient.as_str()])?);
        SecretStore::new(self.repo()?)
            .backup(
                BUNDLE,
                &bundle,
                &encryption,
                false,
                "cfdr-drill sandbox",
                Timestamp::now(),
            )
            .await?;
        self.secrets = Some(Secrets {
            identities,
            original: bundle,
        });
        Ok(())
    }

    /// Starts `cfdr-wal stream` from the primary, spooling in `spool`.
    pub(crate) async fn start_stream(&mut self, spool: &str) -> Result<()> {
        let stream = WalStream::start(self, self.primary()?, &self.path(spool)).await?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Stops every server and removes the folder; says what happened.
    async fn cleanup(mut self) -> Cleanup {
        self.workload = None;
        let mut problems = Vec::new();
        if let Some(s) = self.stream.take()
            && let Err(e) = s.stop().await
        {
            problems.push(e.to_string());
        }
        if let Some(f) = self.follower.take()
            && let Err(e) = f.stop().await
        {
            problems.push(e.to_string());
        }
        let mut clusters: Vec<LocalCluster> = Vec::new();
        clusters.extend(self.primary.take());
        clusters.extend(self.replica.take());
        clusters.append(&mut self.scratch);
        for mut c in clusters {
            if let Err(e) = c.stop().await {
                problems.push(e.to_string());
            }
        }
        // A server a cancelled restore started has no handle: find it by
        // its pid file.
        for dir in pid_dirs(self.root.path()) {
            if let Ok(mut cmd) = self.bin.command("pg_ctl", true) {
                cmd.args(["-m", "immediate", "-w", "-D"])
                    .arg(&dir)
                    .arg("stop");
                let _ = cmd.output().await;
            }
        }
        let left = pid_dirs(self.root.path());
        let path = self.root.path().to_owned();
        let removed = self.root.close();
        match (removed, left.is_empty() && problems.is_empty()) {
            (Ok(()), true) => Cleanup {
                status: "removed".into(),
                detail: format!("servers stopped, {} deleted", path.display()),
            },
            (Ok(()), false) => Cleanup {
                status: "failed".into(),
                detail: format!(
                    "{} deleted, but: {}{}",
                    path.display(),
                    problems.join("; "),
                    if left.is_empty() {
                        String::new()
                    } else {
                        format!(" servers still had pid files in {left:?}")
                    }
                ),
            },
            (Err(e), _) => Cleanup {
                status: "failed".into(),
                detail: format!("{} could not be deleted: {e}", path.display()),
            },
        }
    }
}

/// The off-region copy: a [`cfdr_copy::Copier`] following the sandbox
/// repository into the secondary folder repository, in the background.
pub(crate) struct Follower {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::result::Result<(), cfdr_copy::Error>>,
    pub(crate) dir: PathBuf,
}

/// Pause between the follower's incremental WAL passes: a segment reaches
/// the secondary about this long after it was archived.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

impl Follower {
    /// Copies `primary` to a new folder repository at `dir` once (the
    /// backups so far), then keeps following it.
    async fn start(primary: &Repository, dir: PathBuf) -> Result<Self> {
        let secondary = StorageOptions::from_url(format!("file://{}", dir.display())).build()?;
        let copier = cfdr_copy::Copier::new(
            primary.store().clone(),
            secondary,
            "drill-secondary",
            cfdr_copy::CopyOptions::default(),
        )?;
        let first = copier.run().await?;
        if !first.is_clean() {
            return Err(Error::Check(format!(
                "the first copy pass to the secondary found {} problems",
                first.problems()
            )));
        }
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let follow = cfdr_copy::FollowOptions {
                interval: FOLLOW_INTERVAL,
                ..cfdr_copy::FollowOptions::default()
            };
            copier.follow(&follow, token.cancelled(), |_| {}).await
        });
        Ok(Self { stop, task, dir })
    }

    /// Stops following; an error the follower met is returned.
    pub(crate) async fn stop(self) -> Result<()> {
        self.stop.cancel();
        match self.task.await {
            Ok(r) => Ok(r?),
            Err(e) => Err(Error::Check(format!("the copy follower ended: {e}"))),
        }
    }
}

/// Data directories under `root` (two levels) with a `postmaster.pid`.
fn pid_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(top) = std::fs::read_dir(root) else {
        return out;
    };
    for entry in top.flatten() {
        let p = entry.path();
        if p.join("postmaster.pid").exists() {
            out.push(p.clone());
        }
        if let Ok(inner) = std::fs::read_dir(&p) {
            for e in inner.flatten() {
                if e.path().join("postmaster.pid").exists() {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

/// Copies a folder tree (the stale repository copy).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(io("creating", to))?;
    for entry in std::fs::read_dir(from).map_err(io("reading", from))? {
        let entry = entry.map_err(io("reading", from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(io("copying", &src))?;
        }
    }
    Ok(())
}

impl Stage for Sandbox {
    const MODE: &'static str = "sandbox";

    async fn setup(&mut self, rec: &mut Recorder<'_>) -> Result<()> {
        Sandbox::setup(self, rec).await
    }

    async fn play(
        &mut self,
        scenario: Scenario,
        rec: &mut Recorder<'_>,
        rep: &mut ScenarioReport,
    ) -> Result<()> {
        scenarios::play(scenario, self, rec, rep).await
    }

    async fn cleanup(self) -> Cleanup {
        Sandbox::cleanup(self).await
    }

    fn postgres(&self) -> Option<String> {
        self.postgres.clone()
    }
}

/// Runs the embedded default: builds the sandbox, plays the scenarios of
/// `opts`, removes the sandbox, and returns the report (not yet stored).
///
/// Errors only when the sandbox cannot be built at all (PostgreSQL or
/// `cfdr-wal` missing); everything else is in the report. `cancel` stops
/// the drill (the report says CANCELLED); the full-system RTO bounds it
/// (TIMED_OUT).
pub async fn run(
    opts: &SandboxOptions,
    cancel: CancellationToken,
    mut on_event: impl for<'e> FnMut(&Event<'e>),
) -> Result<Report> {
    let wal_exe = opts.programs.join("cfdr-wal");
    if !wal_exe.is_file() {
        return Err(Error::ProgramMissing { path: wal_exe });
    }
    let bin = PgBin::locate(opts.pg_bin.as_deref(), Some(15))
        .await
        .map_err(|e| Error::PostgresMissing {
            reason: e.to_string(),
        })?;
    let root = tempfile::Builder::new()
        .prefix("cfdr-drill-")
        .tempdir()
        .map_err(io("creating the sandbox in", &std::env::temp_dir()))?;
    let sandbox = Sandbox {
        opts: opts.clone(),
        bin,
        wal_exe,
        primary: None,
        replica: None,
        scratch: Vec::new(),
        repo: None,
        stale: None,
        workload: None,
        base: None,
        logical: None,
        secrets: None,
        postgres: None,
        follower: None,
        stream: None,
        references: 0,
        root,
    };
    let plan = Plan {
        scenarios: opts.scenarios.clone(),
        inject: opts.inject.clone(),
        objectives: opts.objectives,
    };
    Ok(drive(sandbox, &plan, cancel, &mut on_event).await)
}

/// `cfdr-wal stream` (the program beside `cfdr-drill`) shipping a server's
/// WAL into the sandbox repository within about a second, as the server's
/// user, the way a systemd unit runs it beside the database.
pub(crate) struct WalStream {
    child: tokio::process::Child,
    log: PathBuf,
}

/// `application_name` of the drill's stream (the `cfdr-wal stream` default).
const STREAM_NAME: &str = "cfdr_wal_stream";

impl WalStream {
    /// Starts the stream from `server` with its spool in `spool`, and waits
    /// until the server reports it streaming.
    async fn start(sb: &Sandbox, server: &LocalCluster, spool: &Path) -> Result<Self> {
        std::fs::create_dir_all(spool).map_err(io("creating", spool))?;
        cfdr_pg::chown_tree(spool)?;
        let log = spool.with_extension("log");
        let log_file = std::fs::File::create(&log).map_err(io("creating", &log))?;
        cfdr_pg::chown_tree(&log)?;
        let mut cmd = tokio::process::Command::new(&sb.wal_exe);
        cmd.arg("-r")
            .arg(sb.path("repo"))
            .args(["stream", "--stream-dir"])
            .arg(spool)
            .env("DATABASE_URL", server.url("postgres"))
            .env("RUST_LOG", "info")
            .env_remove("CFDR_CONFIG")
            .env_remove("CFDR_REPOSITORY")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        if let Some((uid, gid)) = cfdr_pg::server_user()? {
            cmd.uid(uid).gid(gid).current_dir("/");
        }
        let child = cmd
            .spawn()
            .map_err(io("starting cfdr-wal stream", &sb.wal_exe))?;
        let mut stream = Self { child, log };
        let target = server.target("postgres");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let standbys = replica::status(&target).await?;
            if standbys
                .iter()
                .any(|s| s.name == STREAM_NAME && s.state == "streaming")
            {
                return Ok(stream);
            }
            if let Ok(Some(status)) = stream.child.try_wait() {
                return Err(Error::Check(format!(
                    "cfdr-wal stream ended ({status}): {}",
                    stream.log_tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Check(format!(
                    "cfdr-wal stream did not stream within 60 s: {}",
                    stream.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines the stream logged, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" / ")
    }

    /// After its server is lost: waits until the stream has shipped what it
    /// received and ended (it flushes within 5 s).
    pub(crate) async fn finish(mut self) -> Result<()> {
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::Check(format!("waiting for cfdr-wal stream: {e}"))),
            Err(_) => Err(Error::Check(format!(
                "cfdr-wal stream still runs 30 s after its server was lost: {}",
                self.log_tail()
            ))),
        }
    }

    /// Stops the stream as systemd does (SIGTERM), killing it after 20 s.
    async fn stop(mut self) -> Result<()> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
            return Err(Error::Check(format!(
                "cfdr-wal stream did not stop within 20 s of SIGTERM: {}",
                self.log_tail()
            )));
        }
        Ok(())
    }
}

/// Waits until the stream's safe position in `repo` reaches `lsn`.
pub(crate) async fn stream_safe(repo: &Repository, lsn: Lsn) -> Result<()> {
    let archive = cfdr_wal_archive::WalArchive::new(repo.store().clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = cfdr_wal_archive::chunks::StreamState::read(&archive).await?;
        if state.as_ref().is_some_and(|s| s.safe_lsn >= lsn) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Check(format!(
                "the WAL stream did not make {lsn} safe in the repository within 60 s (its safe position: {})",
                state.map_or_else(|| "none".to_owned(), |s| s.safe_lsn.to_string())
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
