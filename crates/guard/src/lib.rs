//! The recovery-objectives guard: RPO exposure, backup ages, and the trading
//! gate the orchestrator checks before every order (DR runbook sections 1,
//! 2.1, 4.1, 4.5 and 5.1).
//!
//! [`Guard::start`] spawns a refresher on the caller's tokio runtime that,
//! every `refresh-interval` (1 s), samples the server's WAL position and
//! transaction snapshot, looks at the WAL archive and the WAL stream state
//! incrementally, reads new incident events and operation markers (every
//! `incident-interval`) and, in the background, the newest backups, DR
//! drill reports and off-region copy states. [`Guard::state`] returns
//! the trading state from atomics: no I/O, no lock, no allocation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cfdr_guard::{Guard, Settings, TradingState};
//! use cfdr_storage::{Repository, StorageOptions};
//!
//! let repo = Repository::open(StorageOptions::from_url("s3://backups/cfdr").build()?).await?;
//! let pg = cfdr_pg::PgTarget::from_env()?;
//! let guard = Guard::start(Settings::default(), repo, pg).await?;
//! match guard.state() {
//!     TradingState::Active => { /* place the order */ }
//!     TradingState::Reducing => { /* only orders that reduce positions */ }
//!     TradingState::Halted => { /* no orders */ }
//! }
//! let gate = guard.gate(); // reasons and since: allocates
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **`Active` promises** that, as of the last completed cycle (at most
//!   `staleness-limit` ago), PostgreSQL answered as a writable primary, the
//!   repository answered, the RPO exposure (the age of the oldest committed
//!   change not yet in the repository, see [`exposure`]) was within the RPO,
//!   no open incident held the trading halt, and the state had been healthy
//!   for `healthy-cycles` cycles in a row.
//! - **Fail closed.** `state()` compares the time of the last completed
//!   cycle with the clock on every call: when the refresher is stalled,
//!   panicked, aborted or shut down ([`Guard::shutdown`]), readers see
//!   `stale-state` (`Reducing`, or `Halted` if configured) within the
//!   staleness limit, without the refresher running. It never shows a
//!   stale `Active`.
//! - **PostgreSQL down** (no answer within `query-timeout`): `Halted`
//!   (`PrimaryDown`): trades cannot be persisted before they are
//!   acknowledged (runbook 2.1). **In recovery** (restore or failover in
//!   progress): `Halted` (`PrimaryInRecovery`).
//! - **Restores and failovers recorded as in progress** (an operation
//!   marker under `operations/`, written by `cfdr-restore` and
//!   `cfdr-replica promote`, see [`cfdr_storage::operations`]): `Halted`
//!   (`OperationInProgress`) while the marker is there. A marker whose
//!   process is gone (same host) or that was not rewritten for
//!   `operation-stale-after` is reported (check `operations`), not held; an
//!   object there that is not a marker is held (fail closed).
//! - **Safe positions** other than the archive count on the server's
//!   current timeline only: the WAL stream's `safe_lsn`
//!   (`wal-stream/state.json`) and the flushed position of a streaming
//!   standby named in `safe-replicas`.
//! - **Repository down**: `Reducing` (`RepositoryUnreachable`); exposure
//!   keeps being computed against the last safe position seen, so it only
//!   over-states and reaches `Halted` when it passes `rpo x halt-multiple`.
//! - **RPO:** exposure above the RPO for `reduce-after`: `Reducing`; above
//!   `rpo x halt-multiple`: `Halted`.
//! - **Incidents:** an open incident with the halt set (`cfdr-incident`)
//!   holds `Halted` (`IncidentHalt`) until it is cleared through the
//!   incident (`cfdr-incident resume-trading`); an unreadable incident log
//!   counts as a halt.
//! - **Warnings** that do not restrict trading: `ArchiveFailing` (the
//!   exposure shows what it costs) and `BackupStale`.
//! - Worse states are entered at once; better ones only after
//!   `healthy-cycles` healthy cycles in a row. Every transition is logged,
//!   counted ([`Guard::status`]'s `transitions`) and, when an incident
//!   caused it, written to that incident's timeline.
//! - A process that asks `cfdr-status serve`'s `/gate` and gets no answer
//!   must treat it as not `Active`.

mod backups;
pub mod config;
mod error;
pub mod exposure;
mod incidents;
pub mod metrics;
pub mod page;
mod probe;
pub mod records;
mod state;
mod status;
pub mod text;
mod wal_view;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cfdr_incident::{Change, IncidentId, Journal, Stamp};
use cfdr_pg::PgTarget;
use cfdr_retention::{Lsn, WalSegment};
use cfdr_storage::Repository;
use jiff::Timestamp;

pub use backups::{BackupSeen, BackupView};
pub use config::{Dur, GuardConfig, Objectives, Settings, StaleState};
pub use error::{Error, Result};
pub use exposure::Exposure;
pub use incidents::{IncidentView, IncidentsNow};
pub use probe::{ArchiverStats, Replica};
pub use records::{CopyLag, CopyView, DrillSeen, DrillView, OperationSeen, WalStreamState};
pub use state::{Condition, Hysteresis, Reason, TradingState, Transition};
pub use status::{
    BackupAge, Check, Gate, Level, Objective, OpenIncident, Status, TransitionCount, WalStatus,
    words_for,
};
pub use wal_view::WalView;

/// Samples kept at most (a day at one per second); older ones are dropped
/// and the exposure becomes a lower bound.
const MAX_SAMPLES: usize = 86_400;
/// Ambiguous WAL stretches longer than this are not read: the commit is
/// assumed to be in them.
const MAX_WAL_READ: u64 = 64 * 1024;
/// The author of incident timeline entries.
const AUTHOR: &str = "cfdr-guard";

/// What readers share with the refresher.
#[derive(Debug)]
struct Shared {
    state: AtomicU8,
    last_cycle_ns: AtomicU64,
    base: Instant,
    stale_ns: u64,
    stale_state: TradingState,
    cycles: AtomicU64,
    detail: Mutex<Detail>,
}

#[derive(Debug, Clone)]
struct Detail {
    status: Status,
    last_refresh: Timestamp,
    transitions: BTreeMap<(TradingState, TradingState, String), u64>,
}

#[derive(Debug)]
struct Owner {
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Ok(mut t) = self.task.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
    }
}

/// A cheap, cloneable handle to a running guard. The refresher stops when
/// the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Guard {
    shared: Arc<Shared>,
    owner: Arc<Owner>,
}

impl Guard {
    /// Validates `settings`, checks that the repository answers, runs one
    /// cycle, then spawns the refresher on the current tokio runtime.
    /// PostgreSQL being down is not an error: the guard starts `Halted`.
    pub async fn start(settings: Settings, repository: Repository, pg: PgTarget) -> Result<Guard> {
        settings.validate()?;
        let timeout = settings.guard.storage_timeout.0;
        match tokio::time::timeout(timeout, repository.store().check_access()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(cfdr_storage::Error::Unreachable {
                    endpoint: repository.store().location().display(),
                    detail: format!("no answer within {}", settings.guard.storage_timeout),
                }
                .into());
            }
        }
        let shared = Arc::new(Shared {
            state: AtomicU8::new(TradingState::Halted as u8),
            last_cycle_ns: AtomicU64::new(0),
            base: Instant::now(),
            stale_ns: settings.guard.staleness_limit.0.as_nanos() as u64,
            stale_state: settings.guard.stale_state.state(),
            cycles: AtomicU64::new(0),
            detail: Mutex::new(Detail {
                status: empty_status(&repository),
                last_refresh: Timestamp::now(),
                transitions: BTreeMap::new(),
            }),
        });
        let mut refresher = Refresher::new(settings, repository, pg, shared.clone());
        refresher.cycle(true).await;
        let task = tokio::spawn(refresher.run());
        Ok(Guard {
            shared,
            owner: Arc::new(Owner {
                task: Mutex::new(Some(task.abort_handle())),
            }),
        })
    }

    /// The trading state now: two atomic loads and a clock read.
    #[inline]
    pub fn state(&self) -> TradingState {
        let s = TradingState::from_u8(self.shared.state.load(Ordering::Acquire));
        if self.is_stale() {
            s.max(self.shared.stale_state)
        } else {
            s
        }
    }

    #[inline]
    fn is_stale(&self) -> bool {
        let last = self.shared.last_cycle_ns.load(Ordering::Acquire);
        let now = self.shared.base.elapsed().as_nanos() as u64;
        now.saturating_sub(last) > self.shared.stale_ns
    }

    /// The state with its reasons and since when (allocates).
    pub fn gate(&self) -> Gate {
        self.status().gate
    }

    /// Everything the guard knows (allocates).
    pub fn status(&self) -> Status {
        let detail = match self.shared.detail.lock() {
            Ok(d) => d.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let mut status = detail.status;
        status.generated_at = Timestamp::now();
        status.cycles = self.shared.cycles.load(Ordering::Acquire);
        status.gate.last_refresh = detail.last_refresh;
        status.transitions = detail
            .transitions
            .iter()
            .map(|((from, to, reason), count)| TransitionCount {
                from: *from,
                to: *to,
                reason: reason.clone(),
                count: *count,
            })
            .collect();
        if self.is_stale() {
            let state = self.state();
            status.gate.stale = true;
            if state != status.gate.state {
                status.gate.since = detail
                    .last_refresh
                    .checked_add(Duration::from_nanos(self.shared.stale_ns))
                    .unwrap_or(detail.last_refresh);
            }
            status.gate.state = state;
            status.gate.reasons.insert(
                0,
                Condition {
                    reason: Reason::GuardStale,
                    effect: self.shared.stale_state,
                    detail: format!(
                        "no refresh completed since {} (limit {:?})",
                        detail.last_refresh,
                        Duration::from_nanos(self.shared.stale_ns)
                    ),
                },
            );
        }
        status
    }

    /// Completed refresh cycles.
    pub fn cycles(&self) -> u64 {
        self.shared.cycles.load(Ordering::Acquire)
    }

    /// Stops the refresher. Readers then see the fail-closed state once the
    /// staleness limit passes.
    pub fn shutdown(&self) {
        if let Ok(mut t) = self.owner.task.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
    }
}

fn empty_status(repo: &Repository) -> Status {
    Status {
        generated_at: Timestamp::now(),
        repository: repo.store().location().display(),
        gate: Gate {
            state: TradingState::Halted,
            reasons: Vec::new(),
            since: Timestamp::now(),
            stale: false,
            last_refresh: Timestamp::now(),
        },
        objectives: Vec::new(),
        backups: Vec::new(),
        wal: WalStatus::default(),
        replicas: Vec::new(),
        incidents: Vec::new(),
        incidents_open: cfdr_incident::Severity::ALL
            .iter()
            .map(|s| (format!("{s:?}"), 0))
            .collect(),
        operations: Vec::new(),
        drill: None,
        copies: Vec::new(),
        transitions: Vec::new(),
        cycles: 0,
    }
}

/// What a background scan of backups, drills and copies brings back.
struct Scan {
    view: BackupView,
    error: Option<String>,
    drills: DrillView,
    drill_error: Option<String>,
    copies: CopyView,
}

/// A safe position beyond the archive: `(timeline, position, source)`.
type ExtraSafe = (u32, Lsn, String);

/// The safe position of `timeline`: the archive's, or a further one (the
/// WAL stream, a standby that counts as safe) on that timeline.
fn safe_with(view: &WalView, extra: &[ExtraSafe], timeline: u32) -> Option<(Lsn, String)> {
    let mut best = view.safe(timeline).map(|l| (l, "archive".to_owned()));
    for (tl, lsn, by) in extra {
        if *tl == timeline && best.as_ref().is_none_or(|(b, _)| lsn > b) {
            best = Some((*lsn, by.clone()));
        }
    }
    best
}

/// A repository call with the cycle's time limit; errors in words.
async fn within<T, E: std::fmt::Display>(
    limit: Dur,
    repo: &Repository,
    f: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(limit.0, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{}: no answer within {limit}",
            repo.store().location().display()
        )),
    }
}

/// The refresher's own state.
struct Refresher {
    settings: Settings,
    repo: Repository,
    journal: Journal,
    probe: probe::Probe,
    shared: Arc<Shared>,
    wal: Option<WalView>,
    samples: Vec<exposure::Sample>,
    /// The ambiguous step already read (sample time), so it is read once.
    resolved_step: Option<Duration>,
    backups: BackupView,
    /// Whether a backup scan completed (before, backup ages are unknown).
    backups_scanned: bool,
    scan_task: Option<tokio::task::JoinHandle<Scan>>,
    incidents: IncidentView,
    operations: std::result::Result<Vec<OperationSeen>, String>,
    stream: Option<WalStreamState>,
    stream_error: Option<String>,
    extra_safe: Vec<ExtraSafe>,
    drills: DrillView,
    drill_error: Option<String>,
    copies: CopyView,
    last_backup_scan: Option<Instant>,
    backup_error: Option<String>,
    last_incident_check: Option<Instant>,
    halting: Result<Vec<(IncidentId, String)>, String>,
    open_incidents: Vec<OpenIncident>,
    above_rpo_since: Option<Duration>,
    hysteresis: Option<Hysteresis>,
    since: Timestamp,
    last_reading: Option<probe::Reading>,
    /// The incidents whose halt put the state where it is.
    halted_by: Vec<IncidentId>,
}

impl Refresher {
    fn new(settings: Settings, repo: Repository, pg: PgTarget, shared: Arc<Shared>) -> Self {
        let timeout = settings.guard.query_timeout.0;
        Self {
            journal: Journal::new(repo.store().clone()),
            probe: probe::Probe::new(pg, timeout),
            settings,
            repo,
            shared,
            wal: None,
            samples: Vec::new(),
            resolved_step: None,
            backups: BackupView::default(),
            backups_scanned: false,
            scan_task: None,
            incidents: IncidentView::default(),
            operations: Ok(Vec::new()),
            stream: None,
            stream_error: None,
            extra_safe: Vec::new(),
            drills: DrillView::default(),
            drill_error: None,
            copies: CopyView::default(),
            last_backup_scan: None,
            backup_error: None,
            last_incident_check: None,
            halting: Ok(Vec::new()),
            open_incidents: Vec::new(),
            above_rpo_since: None,
            hysteresis: None,
            since: Timestamp::now(),
            last_reading: None,
            halted_by: Vec::new(),
        }
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.settings.guard.refresh_interval.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.cycle(false).await;
        }
    }

    fn now(&self) -> Duration {
        self.shared.base.elapsed()
    }

    async fn with_storage_timeout<T, E: std::fmt::Display>(
        &self,
        f: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, String> {
        within(self.settings.guard.storage_timeout, &self.repo, f).await
    }

    /// One cycle: read, decide, publish.
    async fn cycle(&mut self, first: bool) {
        let at = self.now();
        let wall = Timestamp::now();
        let g = self.settings.guard.clone();
        let mut conditions = Vec::new();

        // PostgreSQL.
        let mut reading = match self.probe.read(at).await {
            Ok((reading, anchor)) => {
                if let Some(a) = anchor
                    && self.samples.iter().all(|s| s.at.is_none())
                {
                    self.samples.retain(|s| s.at.is_some());
                    self.samples.insert(0, a);
                }
                if let Some(s) = &reading.sample {
                    self.samples.push(s.clone());
                }
                Some(reading)
            }
            Err(e) => {
                conditions.push(Condition {
                    reason: Reason::PrimaryDown,
                    effect: TradingState::Halted,
                    detail: e,
                });
                None
            }
        };
        if let Some(r) = &mut reading {
            for rep in &mut r.replicas {
                rep.counts_as_safe = rep.state == "streaming"
                    && rep.flush_lsn.is_some()
                    && g.safe_replicas.contains(&rep.name);
            }
            if r.in_recovery {
                conditions.push(Condition {
                    reason: Reason::PrimaryInRecovery,
                    effect: TradingState::Halted,
                    detail: "the server is in recovery (restore or failover in progress)".into(),
                });
            }
            if r.archiver.failing() {
                conditions.push(Condition {
                    reason: Reason::ArchiveFailing,
                    effect: TradingState::Active,
                    detail: format!(
                        "archive_command failed for {} ({} failures since the statistics reset)",
                        r.archiver.last_failed_wal.as_deref().unwrap_or("?"),
                        r.archiver.failed_count
                    ),
                });
            }
            self.last_reading = Some(r.clone());
        }

        // The WAL archive.
        if self.wal.is_none()
            && let Some(f) = self.probe.facts
        {
            self.wal = Some(WalView::new(self.repo.store().clone(), f.segment_size));
        }
        let timeline = self
            .samples
            .iter()
            .rev()
            .find(|s| s.at.is_some())
            .map(|s| (s.timeline, s.lsn));
        if let (Some(mut view), Some((tl, lsn))) = (self.wal.take(), timeline) {
            let r = self
                .with_storage_timeout(view.refresh(tl, reading.as_ref().map(|_| lsn)))
                .await;
            // Older timelines still in the sample log need their positions too.
            let older: Vec<u32> = {
                let mut v: Vec<u32> = self
                    .samples
                    .iter()
                    .map(|s| s.timeline)
                    .filter(|t| *t != tl)
                    .collect();
                v.dedup();
                v
            };
            let mut r = r;
            for t in older {
                if r.is_ok() && view.highest(t).is_none() {
                    r = self.with_storage_timeout(view.refresh(t, None)).await;
                }
            }
            if let Err(e) = r {
                conditions.push(Condition {
                    reason: Reason::RepositoryUnreachable,
                    effect: TradingState::Reducing,
                    detail: e,
                });
            }
            self.wal = Some(view);
        }

        // Beyond the archive: the WAL stream's safe position and standbys
        // that count as safe, on the timeline the server writes.
        match self
            .with_storage_timeout(records::wal_stream_state(self.repo.store()))
            .await
        {
            Ok(state) => {
                self.stream = state;
                self.stream_error = None;
            }
            Err(e) => {
                if self.stream_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "cannot read the WAL stream state; counting the archive only");
                }
                self.stream = None;
                self.stream_error = Some(e);
            }
        }
        self.extra_safe.clear();
        if let Some((tl, _)) = timeline {
            if let Some(st) = &self.stream
                && st.timeline == tl
            {
                self.extra_safe
                    .push((tl, st.safe_lsn, "wal-stream".to_owned()));
            }
            for r in reading.iter().flat_map(|r| &r.replicas) {
                if let (true, Some(lsn)) = (
                    r.counts_as_safe,
                    r.flush_lsn.as_deref().and_then(|l| l.parse::<Lsn>().ok()),
                ) {
                    self.extra_safe
                        .push((tl, lsn, format!("replica:{}", r.name)));
                }
            }
        }

        // Exposure.
        let exposure = self.exposure(at).await;
        let rpo = self.settings.objectives.rpo.0;
        if let Some(e) = exposure {
            let d = e.duration();
            if d > rpo {
                self.above_rpo_since.get_or_insert(at);
            } else {
                self.above_rpo_since = None;
            }
            let above_for = self
                .above_rpo_since
                .map_or(Duration::ZERO, |s| at.saturating_sub(s));
            let effect = state::rpo_effect(
                d,
                above_for,
                rpo,
                g.reduce_after.0,
                self.settings.halt_exposure(),
            );
            if effect > TradingState::Active {
                conditions.push(Condition {
                    reason: Reason::RpoExposureExceeded,
                    effect,
                    detail: format!(
                        "{}committed work {} old is not yet in the repository (RPO {})",
                        if e.lower_bound { "at least: " } else { "" },
                        words_for(e.seconds),
                        self.settings.objectives.rpo
                    ),
                });
            }
        }

        // Incidents.
        let due =
            |last: Option<Instant>, every: Duration| last.is_none_or(|l| l.elapsed() >= every);
        if due(self.last_incident_check, g.incident_interval.0) {
            self.last_incident_check = Some(Instant::now());
            let store = self.repo.store().clone();
            let limit = g.storage_timeout;
            match within(limit, &self.repo, self.incidents.refresh(&store)).await {
                Ok(now) => {
                    // An object that cannot be read may be the halt: fail closed.
                    self.halting = if now.damaged.is_empty() {
                        Ok(now.halting)
                    } else {
                        Err(now
                            .damaged
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "))
                    };
                    self.open_incidents = now.open;
                }
                Err(e) => self.halting = Err(e),
            }
            let stale_after = g.operation_stale_after.0;
            self.operations = within(
                limit,
                &self.repo,
                records::operations(&store, wall, stale_after),
            )
            .await;
        }
        match &self.operations {
            Ok(list) => {
                for o in list.iter().filter(|o| o.stale.is_none()) {
                    conditions.push(Condition {
                        reason: Reason::OperationInProgress,
                        effect: TradingState::Halted,
                        detail: format!(
                            "{} in progress since {} on {} (pid {}): {}",
                            o.kind, o.started, o.host, o.pid, o.detail
                        ),
                    });
                }
            }
            Err(e) => conditions.push(Condition {
                reason: Reason::OperationInProgress,
                effect: TradingState::Halted,
                detail: format!(
                    "cannot read operation markers, so a restore or failover in progress cannot be ruled out: {e}"
                ),
            }),
        }
        match &self.halting {
            Ok(list) if !list.is_empty() => conditions.push(Condition {
                reason: Reason::IncidentHalt,
                effect: TradingState::Halted,
                detail: format!(
                    "trading halted by {}",
                    list.iter()
                        .map(|(id, t)| format!("{id} ({t})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            Ok(_) => {}
            Err(e) => conditions.push(Condition {
                reason: Reason::IncidentHalt,
                effect: TradingState::Halted,
                detail: format!("cannot read open incidents, so a halt cannot be ruled out: {e}"),
            }),
        }

        // Backups and the list of open incidents: scanned in the background
        // (a first scan reads every manifest), never holding up a cycle.
        if self.scan_task.as_ref().is_some_and(|t| t.is_finished())
            && let Some(task) = self.scan_task.take()
        {
            match task.await {
                Ok(scan) => {
                    self.backups = scan.view;
                    self.backup_error = scan.error;
                    self.drills = scan.drills;
                    self.drill_error = scan.drill_error;
                    self.copies = scan.copies;
                    self.backups_scanned = true;
                }
                Err(e) => self.backup_error = Some(format!("the backup scan stopped: {e}")),
            }
        }
        if self.scan_task.is_none() && due(self.last_backup_scan, g.backup_interval.0) {
            self.last_backup_scan = Some(Instant::now());
            let repo = self.repo.clone();
            let mut view = self.backups.clone();
            let mut drills = self.drills.clone();
            let mut copies = self.copies.clone();
            let limit = Dur(g.backup_interval.0.max(g.storage_timeout.0) * 5);
            self.scan_task = Some(tokio::spawn(async move {
                let error = within(limit, &repo, view.scan(&repo, wall)).await.err();
                let drill_error = within(limit, &repo, drills.refresh(repo.store()))
                    .await
                    .err();
                if let Err(e) = within(limit, &repo, copies.refresh(repo.store())).await {
                    tracing::warn!(error = %e, "cannot read the off-region copy states");
                }
                Scan {
                    view,
                    error,
                    drills,
                    drill_error,
                    copies,
                }
            }));
        }
        let (objectives, backup_ages) = self.objectives(exposure, wall);
        for o in &objectives {
            if o.name.starts_with("backup:") && o.level == Level::Critical {
                conditions.push(Condition {
                    reason: Reason::BackupStale,
                    effect: TradingState::Active,
                    detail: o.words.clone(),
                });
            }
        }

        // Decide and publish.
        conditions.sort_by(|a, b| b.effect.cmp(&a.effect).then(a.reason.cmp(&b.reason)));
        let (target, reason) = state::target_of(&conditions);
        let hysteresis = self
            .hysteresis
            .get_or_insert_with(|| Hysteresis::new(target, g.healthy_cycles));
        let before = TradingState::from_u8(self.shared.state.load(Ordering::Acquire));
        let changed = if first {
            Some(target)
        } else {
            hysteresis.step(target)
        };
        let state = hysteresis.current();
        if let Some(to) = changed
            && (to != before || first)
        {
            self.since = wall;
            if !first {
                self.transition(before, to, reason, &conditions).await;
            }
        }
        let wal_status = self.wal_status(exposure);
        let status = Status {
            generated_at: wall,
            repository: self.repo.store().location().display(),
            gate: Gate {
                state,
                reasons: conditions,
                since: self.since,
                stale: false,
                last_refresh: wall,
            },
            objectives,
            backups: backup_ages,
            wal: wal_status,
            replicas: self
                .last_reading
                .as_ref()
                .map(|r| r.replicas.clone())
                .unwrap_or_default(),
            incidents_open: cfdr_incident::Severity::ALL
                .iter()
                .map(|s| {
                    let label = format!("{s:?}");
                    let n = self
                        .open_incidents
                        .iter()
                        .filter(|i| i.severity == label)
                        .count();
                    (label, n as u64)
                })
                .collect(),
            incidents: self.open_incidents.clone(),
            operations: self.operations.clone().unwrap_or_default(),
            drill: self.drills.last.clone(),
            copies: self.copies.copies(),
            transitions: Vec::new(),
            cycles: 0,
        };
        if let Ok(mut d) = self.shared.detail.lock() {
            d.status = status;
            d.last_refresh = Timestamp::now();
        }
        self.shared.state.store(state as u8, Ordering::Release);
        self.shared
            .last_cycle_ns
            .store(self.now().as_nanos() as u64, Ordering::Release);
        self.shared.cycles.fetch_add(1, Ordering::AcqRel);
    }

    /// Logs, counts and, for incident halts, records a transition.
    async fn transition(
        &mut self,
        from: TradingState,
        to: TradingState,
        reason: Option<Reason>,
        conditions: &[Condition],
    ) {
        let reason_name = reason.map_or("none".to_owned(), |r| r.name().to_owned());
        let why: Vec<String> = conditions
            .iter()
            .filter(|c| c.effect > TradingState::Active)
            .map(|c| format!("{}: {}", c.reason, c.detail))
            .collect();
        if to > from {
            tracing::warn!(%from, %to, reason = %reason_name, why = ?why, "trading state changed");
        } else {
            tracing::info!(%from, %to, reason = %reason_name, "trading state changed");
        }
        if let Ok(mut d) = self.shared.detail.lock() {
            *d.transitions
                .entry((from, to, reason_name.clone()))
                .or_default() += 1;
        }
        // The incidents that hold the halt now, or held it until now.
        let involved: Vec<IncidentId> = if reason == Some(Reason::IncidentHalt) {
            match &self.halting {
                Ok(list) => list.iter().map(|(id, _)| id.clone()).collect(),
                Err(_) => Vec::new(),
            }
        } else {
            std::mem::take(&mut self.halted_by)
        };
        for id in &involved {
            let text = format!("cfdr-guard: trading state {from} -> {to} ({reason_name})");
            let stamp = Stamp::new(AUTHOR, Timestamp::now());
            let appended = self
                .with_storage_timeout(self.journal.append(id, &stamp, Change::Note { text }))
                .await;
            if let Err(e) = appended {
                tracing::warn!(incident = %id, error = %e, "cannot record the trading state change on the incident");
            }
        }
        if reason == Some(Reason::IncidentHalt) {
            self.halted_by = involved;
        }
    }

    /// The exposure now, resolving an ambiguous step by reading the WAL.
    async fn exposure(&mut self, at: Duration) -> Option<Exposure> {
        let view = self.wal.as_ref()?;
        let extra = &self.extra_safe;
        let safe = |tl: u32| safe_with(view, extra, tl).map(|(l, _)| l);
        let e = exposure::exposure(&self.samples, safe, at)?;
        if (e.seconds > 0.0 || e.lower_bound)
            && let Some(i) = exposure::ambiguous_step(&self.samples, safe)
            && self.resolved_step != self.samples[i].at
            && let Some(facts) = self.probe.facts
        {
            self.resolved_step = self.samples[i].at;
            let s = self.samples[i].clone();
            if let Some(p) = safe(s.timeline)
                && s.lsn.0.saturating_sub(p.0) <= MAX_WAL_READ
                && p.0 % facts.segment_size == 0
            {
                let file = WalSegment::containing(s.timeline, p, facts.segment_size)
                    .file_name(facts.segment_size);
                let len = s.lsn.0 - p.0 + facts.page_size;
                // Only a page header past the segment start: no record, and
                // the file may not even exist yet.
                let answer = if s.lsn.0 - p.0 <= exposure::LONG_PAGE_HEADER {
                    Some(false)
                } else {
                    match self.probe.read_wal(&file, 0, len).await {
                        Some(bytes) => exposure::has_xact_records(
                            &bytes,
                            p,
                            s.lsn,
                            facts.segment_size,
                            facts.page_size,
                        ),
                        None => None,
                    }
                };
                // Unknown (not written yet, unreadable): asked again next cycle.
                if answer.is_none() {
                    self.resolved_step = None;
                }
                if answer == Some(false) {
                    // No commit between the safe position and this sample:
                    // its snapshot anchors at the safe position.
                    let anchor = exposure::Sample { lsn: p, ..s };
                    self.samples.insert(i + 1, anchor);
                }
            }
        }
        let view = self.wal.as_ref()?;
        let extra = &self.extra_safe;
        let safe = |tl: u32| safe_with(view, extra, tl).map(|(l, _)| l);
        let e = exposure::exposure(&self.samples, safe, at)?;
        // Drop what no longer matters: everything before the anchor.
        if let Some(anchor) = self
            .samples
            .iter()
            .rposition(|s| safe(s.timeline).is_some_and(|p| s.lsn <= p))
            && anchor > 0
        {
            self.samples.drain(..anchor);
        }
        if self.samples.len() > MAX_SAMPLES {
            let extra = self.samples.len() - MAX_SAMPLES;
            self.samples.drain(..extra);
        }
        Some(e)
    }

    fn objectives(
        &self,
        exposure: Option<Exposure>,
        now: Timestamp,
    ) -> (Vec<Objective>, Vec<BackupAge>) {
        let o = &self.settings.objectives;
        let rpo = o.rpo.0.as_secs_f64();
        let mut out = vec![match exposure {
            Some(e) => {
                let level = if e.seconds > rpo {
                    Level::Critical
                } else if e.seconds > rpo / 2.0 {
                    Level::Warn
                } else {
                    Level::Ok
                };
                Objective {
                    name: "rpo".into(),
                    value_seconds: Some(e.seconds),
                    limit_seconds: rpo,
                    level,
                    words: if e.seconds == 0.0 {
                        "every committed change is in the repository".into()
                    } else {
                        format!(
                            "{}{} of committed work ({} bytes of WAL) not yet in the repository",
                            if e.lower_bound { "at least " } else { "" },
                            words_for(e.seconds),
                            e.bytes
                        )
                    },
                }
            }
            None => Objective {
                name: "rpo".into(),
                value_seconds: None,
                limit_seconds: rpo,
                level: Level::Unknown,
                words: "not measured: no reading from PostgreSQL or the repository yet".into(),
            },
        }];
        out.extend(self.drill_objectives(now));
        let mut ages = Vec::new();
        for (name, limit) in &o.backups {
            let newest = self.backups.newest(name).cloned();
            let age = newest
                .as_ref()
                .map(|b| now.duration_since(b.finished).as_secs_f64().max(0.0));
            let limit_s = limit.0.as_secs_f64();
            let (level, words) = match (&self.backup_error, age) {
                (Some(e), _) if self.backups.is_empty() => {
                    (Level::Unknown, format!("cannot list backups: {e}"))
                }
                _ if !self.backups_scanned => (
                    Level::Unknown,
                    "reading the repository's backups (first scan)".into(),
                ),
                (_, None) => (
                    Level::Critical,
                    format!("no {name} backup in the repository"),
                ),
                (_, Some(a)) if a > limit_s => (
                    Level::Critical,
                    format!(
                        "newest {name} backup is {} old (limit {limit})",
                        words_for(a)
                    ),
                ),
                (_, Some(a)) => (
                    Level::Ok,
                    format!("newest {name} backup is {} old", words_for(a)),
                ),
            };
            out.push(Objective {
                name: format!("backup:{name}"),
                value_seconds: age,
                limit_seconds: limit_s,
                level,
                words,
            });
            ages.push(BackupAge {
                objective: name.clone(),
                newest,
                age_seconds: age,
                limit_seconds: limit_s,
            });
        }
        (out, ages)
    }

    /// `rto` (as the newest successful drill measured it) and `drill` (how
    /// long ago the newest drill ran, and how it ended).
    fn drill_objectives(&self, now: Timestamp) -> [Objective; 2] {
        let o = &self.settings.objectives;
        let rto = o.rto.0.as_secs_f64();
        let last = self.drills.last.as_ref();
        let measured = last
            .filter(|d| d.successful())
            .and_then(|d| Some((d, d.rto_actual_seconds?)));
        let rto_objective = match measured {
            Some((d, secs)) => Objective {
                name: "rto".into(),
                value_seconds: Some(secs),
                limit_seconds: rto,
                level: if secs <= rto {
                    Level::Ok
                } else {
                    Level::Critical
                },
                words: format!(
                    "the DR drill {} recovered in {} (limit {})",
                    d.id,
                    words_for(secs),
                    o.rto
                ),
            },
            None => Objective {
                name: "rto".into(),
                value_seconds: None,
                limit_seconds: rto,
                level: Level::NotMeasured,
                words: "measured by DR drills: no successful drill reported a recovery time".into(),
            },
        };
        let max = o.drill_max_age.0.as_secs_f64();
        let age = last.map(|d| now.duration_since(d.finished).as_secs_f64().max(0.0));
        let (level, words) = match (last, age) {
            (None, _) if !self.backups_scanned => (
                Level::Unknown,
                "reading the DR drill reports (first scan)".to_owned(),
            ),
            (None, _) => match &self.drill_error {
                Some(e) => (Level::Unknown, format!("cannot list DR drills: {e}")),
                None => (
                    Level::Warn,
                    match &self.drills.problem {
                        Some(p) => format!("no readable DR drill report ({p})"),
                        None => "no DR drill report in the repository".to_owned(),
                    },
                ),
            },
            (Some(d), Some(a)) if !d.successful() => (
                Level::Warn,
                format!(
                    "the last DR drill {} ended {} {} ago",
                    d.id,
                    d.status,
                    words_for(a)
                ),
            ),
            (Some(d), Some(a)) if a > max => (
                Level::Warn,
                format!(
                    "the last DR drill {} ran {} ago (limit {})",
                    d.id,
                    words_for(a),
                    o.drill_max_age
                ),
            ),
            (Some(d), a) => (
                Level::Ok,
                format!(
                    "the last DR drill {} succeeded {} ago",
                    d.id,
                    words_for(a.unwrap_or_default())
                ),
            ),
        };
        [
            rto_objective,
            Objective {
                name: "drill".into(),
                value_seconds: age,
                limit_seconds: max,
                level,
                words,
            },
        ]
    }

    fn wal_status(&self, exposure: Option<Exposure>) -> WalStatus {
        let latest = self.samples.iter().rev().find(|s| s.at.is_some());
        let tl = latest.map(|s| s.timeline);
        let view = self.wal.as_ref();
        let safe = tl.and_then(|t| safe_with(view?, &self.extra_safe, t));
        let seg = view
            .map(|v| v.segment_size())
            .unwrap_or(cfdr_retention::DEFAULT_SEGMENT_SIZE);
        WalStatus {
            timeline: tl,
            server_lsn: latest.map(|s| s.lsn.to_string()),
            safe_lsn: safe.as_ref().map(|(l, _)| l.to_string()),
            safe_by: safe.map(|(_, by)| by),
            highest_segment: tl.and_then(|t| view?.highest(t)).map(|s| s.file_name(seg)),
            exposure,
            archiver: self.last_reading.as_ref().map(|r| r.archiver.clone()),
        }
    }
}
