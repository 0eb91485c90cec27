//! `cfdr-wal stream`: WAL in the repository within about a second of its
//! commit, beside `archive_command`.
//!
//! PostgreSQL's own `pg_receivewal` receives the WAL (replication protocol,
//! slot, timelines, `.partial` files are its job, maintained with the
//! server): it runs with `--slot`, `--synchronous` (it fsyncs what it
//! received before it reports it flushed, so the slot only advances over
//! WAL on disk) and `--no-loop`, writing into `<spool>/wal`. cfdr supervises
//! it and ships what it wrote:
//!
//! - the segment in progress (`<segment>.partial`, which pg_receivewal
//!   pads with zeros) as immutable chunks of the bytes written since the
//!   last chunk ([`crate::chunks`]), at the latest `interval-ms` after the
//!   WAL arrived and at once when `upload-bytes` are pending; an idle
//!   server makes no uploads;
//! - each completed segment as an ordinary WAL object with the code of
//!   `cfdr-wal push` (the same object as `archive_command` stores: the
//!   second one to arrive finds it and succeeds), then its chunks are
//!   deleted and the local file removed;
//! - timeline `.history` files as pg_receivewal writes them, before any
//!   chunk of the new timeline; a timeline the archive has not adopted
//!   stops the stream with the `adopt-timeline` message.
//!
//! After every move of the safe position, `wal-stream/state.json` records
//! it ([`crate::chunks::StreamState`]). When pg_receivewal ends (the
//! primary is gone, the connection broke), the stream ships what it
//! received within `final-flush-secs` and stops with a message that says
//! how far the repository is safe; its service manager restarts it.
//!
//! Slot safety: the stream refuses a server whose `max_slot_wal_keep_size`
//! is unlimited (unless `allow-unbounded-slot`), reports the WAL its slot
//! retains at start and every `report-secs`, and warns at start when it was
//! down longer than `down-warn-secs` (the age of `<spool>/stream.alive`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cfdr_pg::{PgBin, PgTarget};
use cfdr_retention::{Lsn, WalFile, WalSegment};
use cfdr_storage::EncodeOptions;
use cfdr_storage::wal_archive::wal_key;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::io::AsyncBufReadExt;

use crate::chunks::{self, StreamState};
use crate::error::{Error, Result};
use crate::{ClusterIdentity, DataDirIdentity, PushOptions, WalArchive, WalObjectHeader};

/// Settings of `cfdr-wal stream` (the `[stream]` table of the config file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct StreamOptions {
    /// Local folder of the stream (pg_receivewal writes `<spool>/wal`);
    /// one per cluster, on a disk that survives a restart.
    pub spool_dir: PathBuf,
    /// The physical replication slot (created when absent).
    pub slot: String,
    /// `application_name` of the connection: the name to list in
    /// `synchronous_standby_names` for synchronous mode.
    pub application_name: String,
    /// WAL waits at most this long in the spool before it is uploaded.
    pub interval_ms: u64,
    /// Upload at once when this many bytes are pending.
    pub upload_bytes: u64,
    /// How often the spool is looked at.
    pub poll_ms: u64,
    /// Run even when `max_slot_wal_keep_size` is unlimited.
    pub allow_unbounded_slot: bool,
    /// Warn at start when the stream was down longer than this.
    pub down_warn_secs: u64,
    /// Log the WAL the slot retains this often.
    pub report_secs: u64,
    /// After pg_receivewal ends, ship what it received within this long.
    pub final_flush_secs: u64,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            spool_dir: PathBuf::from("/var/spool/cfdr/stream"),
            slot: "cfdr_wal_stream".into(),
            application_name: "cfdr_wal_stream".into(),
            interval_ms: 1000,
            upload_bytes: 1 << 20,
            poll_ms: 100,
            allow_unbounded_slot: false,
            down_warn_secs: 300,
            report_secs: 60,
            final_flush_secs: 5,
        }
    }
}

/// What a stream that ended on request did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// Chunks uploaded.
    pub chunks: u64,
    /// Completed segments stored.
    pub segments: u64,
    /// Repository requests made while shipping (chunks, segments, chunk
    /// listings and deletions, state writes; not the start-up checks).
    pub requests: u64,
    /// End of the WAL safe in the repository.
    pub safe: Option<Lsn>,
}

/// WAL pages are 8 KiB (XLOG_BLCKSZ): a written page never is all zeros.
const PAGE: u64 = 8192;

/// What the server says about itself.
struct ServerFacts {
    system_identifier: u64,
    major: u32,
    segment_size: u64,
    timeline: u32,
    unbounded_slot: bool,
}

async fn server_facts(target: &PgTarget) -> Result<ServerFacts> {
    let mut conn = target.connect().await?;
    let row = sqlx::query(
        "SELECT system_identifier::text, current_setting('server_version_num')::int, \
         (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
         (SELECT setting FROM pg_settings WHERE name = 'max_slot_wal_keep_size'), \
         CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) \
         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END \
         FROM pg_control_system()",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| cfdr_pg::Error::Query {
        what: "reading the server's WAL settings".into(),
        database: target.database.clone(),
        reason: e.to_string(),
    })?;
    let sysid: String = row.get(0);
    let version: i32 = row.get(1);
    let segment_size: i64 = row.get(2);
    let keep: String = row.get(3);
    let timeline: i32 = row.get(4);
    Ok(ServerFacts {
        system_identifier: sysid.parse().unwrap_or_default(),
        major: u32::try_from(version / 10_000).unwrap_or_default(),
        segment_size: u64::try_from(segment_size).unwrap_or_default(),
        timeline: u32::try_from(timeline).unwrap_or_default(),
        unbounded_slot: keep.trim() == "-1",
    })
}

/// Creates the slot when absent, reserving WAL at once.
/// Holds `<spool>/stream.lock` (an exclusive advisory lock, released when
/// the process ends, however it ends) for as long as the stream runs.
fn lock_spool(target: &PgTarget, spool: &Path) -> Result<std::fs::File> {
    let path = spool.join("stream.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::StreamSetup {
            target: target.to_string(),
            reason: format!(
                "another cfdr-wal stream runs with the spool {} (it holds {}): stop it, or give this one its own stream.spool-dir and slot",
                spool.display(),
                path.display()
            ),
        }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", path.display()))(e))
        }
    }
}

/// Stops every `pg_receivewal` writing into `wal_dir`: with the spool lock
/// held, such a receiver is the child of a stream that was killed (SIGKILL
/// ends the stream but not its child), still holding the slot. Returns how
/// many were stopped.
async fn stop_orphaned_receivers(wal_dir: &Path) -> usize {
    let dir = wal_dir.as_os_str().as_encoded_bytes();
    let mut stopped = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let receiver = args.first().is_some_and(|a| a.ends_with(b"pg_receivewal"));
        let ours = args
            .windows(2)
            .any(|w| w[0] == b"--directory" && w[1] == dir);
        if !(receiver && ours) {
            continue;
        }
        signal(pid, "-INT").await;
        let proc_dir = entry.path();
        for _ in 0..50 {
            if !proc_dir.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if proc_dir.exists() {
            signal(pid, "-KILL").await;
        }
        stopped += 1;
    }
    stopped
}

async fn ensure_slot(target: &PgTarget, slot: &str) -> Result<()> {
    let mut conn = target.connect().await?;
    sqlx::query(
        "SELECT pg_create_physical_replication_slot($1, true) \
         WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind(slot)
    .execute(&mut conn)
    .await
    .map_err(|e| cfdr_pg::Error::Query {
        what: format!("creating the replication slot {slot}"),
        database: target.database.clone(),
        reason: e.to_string(),
    })?;
    Ok(())
}

/// What the slot holds back on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotReport {
    /// Bytes of WAL the server keeps for the slot.
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes the server may still write before the slot loses WAL.
    pub safe_wal_size: Option<i64>,
}

/// The slot's retained WAL, as `pg_replication_slots` reports it.
pub async fn slot_report(target: &PgTarget, slot: &str) -> Result<Option<SlotReport>> {
    let mut conn = target.connect().await?;
    let row = sqlx::query(
        "SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
         ELSE pg_current_wal_lsn() END, restart_lsn)::bigint, wal_status, safe_wal_size \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut conn)
    .await
    .map_err(|e| cfdr_pg::Error::Query {
        what: format!("reading the replication slot {slot}"),
        database: target.database.clone(),
        reason: e.to_string(),
    })?;
    Ok(row.map(|r| SlotReport {
        retained_bytes: r.get(0),
        wal_status: r.get(1),
        safe_wal_size: r.get(2),
    }))
}

fn log_slot(slot: &str, report: &SlotReport) {
    let retained_mib = report.retained_bytes.unwrap_or(0) / (1 << 20);
    let status = report.wal_status.clone().unwrap_or_default();
    if status == "lost" || status == "unreserved" {
        tracing::error!(
            slot,
            retained_mib,
            status,
            "the slot has lost (or is about to lose) WAL the stream did not receive: it is not in the repository unless archive_command stored it; take a new base backup"
        );
    } else {
        tracing::info!(
            slot,
            retained_mib,
            status,
            safe_wal_size_mib = report.safe_wal_size.map(|s| s / (1 << 20)),
            "WAL retained by the stream's slot"
        );
    }
}

/// Runs the stream until `shutdown` resolves (then returns what it did)
/// or pg_receivewal ends (then [`Error::StreamStopped`], after shipping
/// what it received).
pub async fn run(
    archive: &WalArchive,
    target: &PgTarget,
    opts: &StreamOptions,
    encode: &EncodeOptions,
    bin_dir: Option<&Path>,
    shutdown: impl Future<Output = ()>,
) -> Result<StreamSummary> {
    let facts = server_facts(target).await?;
    if facts.unbounded_slot && !opts.allow_unbounded_slot {
        return Err(Error::StreamUnboundedSlot {
            target: target.to_string(),
        });
    }
    let first = ClusterIdentity::new(
        facts.system_identifier,
        facts.major,
        facts.segment_size,
        facts.timeline,
    );
    let identity = archive.identity_or_init(Some(first)).await?;
    archive.check_same(
        &format!("WAL stream from {target}"),
        &identity,
        facts.system_identifier,
        facts.major,
    )?;
    let bin = PgBin::locate(bin_dir, Some(facts.major)).await?;
    let wal_dir = opts.spool_dir.join("wal");
    std::fs::create_dir_all(&wal_dir).map_err(Error::io(format!(
        "creating the stream's spool folder {} (set stream.spool-dir)",
        wal_dir.display()
    )))?;
    // One stream per spool: a second one would write the same files.
    let _spool_lock = lock_spool(target, &opts.spool_dir)?;
    warn_if_was_down(opts);
    let orphans = stop_orphaned_receivers(&wal_dir).await;
    if orphans > 0 {
        tracing::warn!(
            spool = %wal_dir.display(),
            "stopped {orphans} pg_receivewal left writing into this spool by a stream that was killed"
        );
    }
    ensure_slot(target, &opts.slot).await?;
    if let Some(report) = slot_report(target, &opts.slot).await? {
        log_slot(&opts.slot, &report);
    }

    let mut shipper = Shipper::new(archive, &facts, opts, encode, wal_dir.clone(), &identity);
    shipper.drop_folded_chunks().await?;
    let (mut child, stderr_tail) = start_receiver(&bin, target, opts, &wal_dir)?;
    tracing::info!(
        slot = %opts.slot,
        application_name = %opts.application_name,
        spool = %wal_dir.display(),
        "streaming WAL from {target}"
    );
    let mut tick = tokio::time::interval(Duration::from_millis(opts.poll_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = Instant::now();
    let mut last_alive = Instant::now() - Duration::from_secs(60);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                stop_receiver(&mut child).await;
                shipper.final_flush(opts).await;
                touch_alive(opts);
                return Ok(shipper.summary());
            }
            status = child.wait() => {
                let reason = match status {
                    Ok(s) => format!("pg_receivewal ended ({s})"),
                    Err(e) => format!("pg_receivewal could not be waited for: {e}"),
                };
                let said = stderr_tail.lock().map(|t| t.join(" / ")).unwrap_or_default();
                shipper.final_flush(opts).await;
                touch_alive(opts);
                return Err(Error::StreamStopped {
                    target: target.to_string(),
                    reason: if said.is_empty() { reason } else { format!("{reason}: {said}") },
                    received: shipper.received,
                    safe: shipper.safe.map_or(Lsn(0), |(_, l)| l),
                });
            }
            _ = tick.tick() => {
                if let Err(e) = shipper.step(false).await {
                    if is_transient(&e) {
                        // The spool keeps the WAL; the next step retries.
                        tracing::warn!(error = %e, "upload failed; retrying");
                    } else {
                        stop_receiver(&mut child).await;
                        return Err(e);
                    }
                }
                if last_alive.elapsed() >= Duration::from_secs(5) {
                    touch_alive(opts);
                    last_alive = Instant::now();
                }
                if last_report.elapsed() >= Duration::from_secs(opts.report_secs.max(1)) {
                    last_report = Instant::now();
                    match slot_report(target, &opts.slot).await {
                        Ok(Some(report)) => log_slot(&opts.slot, &report),
                        Ok(None) => tracing::warn!(slot = %opts.slot, "the stream's slot is gone"),
                        Err(e) => tracing::warn!(error = %e, "cannot read the slot"),
                    }
                }
            }
        }
    }
}

/// Repository and local trouble the next step may get past.
fn is_transient(e: &Error) -> bool {
    matches!(e, Error::Storage(_) | Error::Io { .. })
}

fn alive_file(opts: &StreamOptions) -> PathBuf {
    opts.spool_dir.join("stream.alive")
}

fn touch_alive(opts: &StreamOptions) {
    let _ = std::fs::write(alive_file(opts), jiff::Timestamp::now().to_string());
}

fn warn_if_was_down(opts: &StreamOptions) {
    let Some(age) = std::fs::metadata(alive_file(opts))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
    else {
        return;
    };
    if age > Duration::from_secs(opts.down_warn_secs) {
        tracing::warn!(
            down_secs = age.as_secs(),
            limit_secs = opts.down_warn_secs,
            "the WAL stream was down for {} s (stream.down-warn-secs = {}): meanwhile the RPO was that of archive_command, and the slot kept WAL on the primary",
            age.as_secs(),
            opts.down_warn_secs
        );
    }
}

/// Starts pg_receivewal; returns it and the last lines it printed.
fn start_receiver(
    bin: &PgBin,
    target: &PgTarget,
    opts: &StreamOptions,
    wal_dir: &Path,
) -> Result<(tokio::process::Child, Arc<Mutex<Vec<String>>>)> {
    let mut cmd = bin.command("pg_receivewal", false)?;
    cmd.arg("--directory")
        .arg(wal_dir)
        .args(["--slot", &opts.slot])
        .args(["--synchronous", "--no-loop", "--no-password", "--verbose"])
        .envs(target.tool_env())
        .env("PGAPPNAME", &opts.application_name)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(Error::io(format!(
        "starting {}",
        bin.path("pg_receivewal").display()
    )))?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    if let Some(stderr) = child.stderr.take() {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "pg_receivewal", "{line}");
                if let Ok(mut t) = tail.lock() {
                    t.push(line);
                    let excess = t.len().saturating_sub(3);
                    t.drain(..excess);
                }
            }
        });
    }
    Ok((child, tail))
}

/// Asks pg_receivewal to stop (SIGINT: it flushes and exits), then kills it.
/// Sends `sig` (`-INT`, `-KILL`) to process `pid`; one that is gone
/// already is no error.
async fn signal(pid: u32, sig: &str) {
    let _ = tokio::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .await;
}

async fn stop_receiver(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        signal(pid, "-INT").await;
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// End of the written bytes of a pg_receivewal file (zero-padded), looked
/// for from byte `from`: the last non-zero byte before the first all-zero
/// page.
fn written_end(path: &Path, from: u64) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut pos = from / PAGE * PAGE;
    file.seek(SeekFrom::Start(pos))?;
    let mut end = from;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            return Ok(end);
        }
        for page in buf[..filled].chunks(PAGE as usize) {
            match page.iter().rposition(|b| *b != 0) {
                None => return Ok(end),
                Some(last) => end = end.max(pos + last as u64 + 1),
            }
            pos += page.len() as u64;
        }
        if filled < buf.len() {
            return Ok(end);
        }
    }
}

fn read_range(path: &Path, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut data = vec![0u8; usize::try_from(to - from).unwrap_or(0)];
    file.read_exact(&mut data)?;
    Ok(data)
}

/// Ships what pg_receivewal wrote.
struct Shipper<'a> {
    archive: &'a WalArchive,
    push: PushOptions,
    dir: PathBuf,
    segment_size: u64,
    upload_bytes: u64,
    interval: Duration,
    /// Per segment in progress: shipped up to, and the written end seen
    /// by the previous step (only bytes already there then are shipped:
    /// a write in flight is never read half done).
    cursors: BTreeMap<WalSegment, (Lsn, Lsn)>,
    pending_since: Option<Instant>,
    histories: BTreeSet<String>,
    adopted: Vec<u32>,
    /// `(timeline, end)` safe in the repository, and what state.json says.
    safe: Option<(u32, Lsn)>,
    recorded: Option<(u32, Lsn)>,
    received: Lsn,
    summary: StreamSummary,
}

impl<'a> Shipper<'a> {
    fn new(
        archive: &'a WalArchive,
        facts: &ServerFacts,
        opts: &StreamOptions,
        encode: &EncodeOptions,
        dir: PathBuf,
        identity: &ClusterIdentity,
    ) -> Self {
        Shipper {
            archive,
            push: PushOptions {
                // One zstd thread: multithreaded zstd's buffers would
                // dominate the stream's memory for no gain at WAL rates.
                encode: EncodeOptions {
                    threads: 1,
                    ..encode.clone()
                },
                data_dir: None,
                cluster: Some(DataDirIdentity {
                    system_identifier: facts.system_identifier,
                    pg_major: facts.major,
                }),
            },
            dir,
            segment_size: facts.segment_size,
            upload_bytes: opts.upload_bytes.max(1),
            interval: Duration::from_millis(opts.interval_ms),
            cursors: BTreeMap::new(),
            pending_since: None,
            histories: BTreeSet::new(),
            adopted: identity.timelines.clone(),
            safe: None,
            recorded: None,
            received: Lsn(0),
            summary: StreamSummary::default(),
        }
    }

    fn summary(&self) -> StreamSummary {
        StreamSummary {
            safe: self.safe.map(|(_, l)| l),
            ..self.summary.clone()
        }
    }

    /// Ships everything received, within `final-flush-secs`.
    async fn final_flush(&mut self, opts: &StreamOptions) {
        let limit = Duration::from_secs(opts.final_flush_secs);
        match tokio::time::timeout(limit, self.step(true)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the last upload failed"),
            Err(_) => tracing::error!(
                "the last upload did not finish within {} s (stream.final-flush-secs)",
                limit.as_secs()
            ),
        }
    }

    /// Deletes the chunks of segments already stored whole (a stream that
    /// stopped between storing a segment and deleting its chunks).
    async fn drop_folded_chunks(&self) -> Result<()> {
        let store = self.archive.store();
        let mut by_segment: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for meta in store.list(chunks::STREAM_PREFIX).await? {
            if let Some((segment, _, _)) = chunks::parse_chunk_key(&meta.key) {
                by_segment
                    .entry(segment.to_owned())
                    .or_default()
                    .push(meta.key.clone());
            }
        }
        for (segment, keys) in by_segment {
            if store.stat(&wal_key(&segment)).await?.is_some() {
                store.delete_many(keys).await?;
            }
        }
        Ok(())
    }

    /// Refuses WAL of a timeline the archive has not adopted.
    async fn check_timeline(&mut self, timeline: u32, file: &str) -> Result<()> {
        if self.adopted.contains(&timeline) {
            return Ok(());
        }
        if let Some(id) = self.archive.identity().await? {
            self.adopted = id.timelines;
        }
        if self.adopted.contains(&timeline) {
            return Ok(());
        }
        Err(Error::WalNewTimeline {
            file: file.to_owned(),
            timeline,
            repository: self.archive.store().location().display(),
            adopted: self.adopted.clone(),
        })
    }

    fn advance(&mut self, timeline: u32, end: Lsn) {
        if self.safe.is_none_or(|s| (timeline, end) > s) {
            self.safe = Some((timeline, end));
        }
        self.received = self.received.max(end);
    }

    /// One look at the spool: history files, completed segments, then the
    /// segments in progress; `force` ships every written byte now.
    async fn step(&mut self, force: bool) -> Result<()> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(Error::io(format!("reading {}", self.dir.display())))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        for name in names.iter().filter(|n| n.ends_with(".history")) {
            if self.histories.contains(name) {
                continue;
            }
            let path = self.dir.join(name);
            let data =
                std::fs::read(&path).map_err(Error::io(format!("reading {}", path.display())))?;
            self.archive
                .push_bytes(name, Bytes::from(data), &self.push)
                .await?;
            // The identity read and the create-only write.
            self.summary.requests += 2;
            self.histories.insert(name.clone());
        }
        for name in &names {
            match WalFile::parse(name, self.segment_size) {
                Ok(WalFile::Segment(seg)) => self.store_segment(name, seg).await?,
                Ok(WalFile::Partial(seg)) => self.ship_partial(name, seg, force).await?,
                _ => {}
            }
        }
        if self.safe != self.recorded
            && let Some((timeline, safe_lsn)) = self.safe
        {
            let now = jiff::Timestamp::now();
            StreamState {
                version: 1,
                timeline,
                safe_lsn,
                safe_at: now,
                updated_at: now,
            }
            .write(self.archive)
            .await?;
            self.summary.requests += 1;
            self.recorded = self.safe;
        }
        Ok(())
    }

    /// A completed segment: stored as `cfdr-wal push` stores it, then its
    /// chunks and the local file go.
    async fn store_segment(&mut self, name: &str, seg: WalSegment) -> Result<()> {
        self.check_timeline(seg.timeline, name).await?;
        let path = self.dir.join(name);
        self.archive.push(&path, &self.push).await?;
        let stale: Vec<String> = chunks::list(self.archive, name)
            .await?
            .into_iter()
            .map(|c| c.key)
            .collect();
        // Identity read, write, chunk listing and (when any) the delete.
        self.summary.requests += 3 + u64::from(!stale.is_empty());
        self.archive.store().delete_many(stale).await?;
        std::fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))?;
        self.cursors.remove(&seg);
        self.summary.segments += 1;
        let end = Lsn(seg.start_lsn(self.segment_size).0 + self.segment_size);
        self.advance(seg.timeline, end);
        Ok(())
    }

    /// The segment in progress: a chunk of what was written since the last.
    async fn ship_partial(&mut self, name: &str, seg: WalSegment, force: bool) -> Result<()> {
        self.check_timeline(seg.timeline, name).await?;
        let first = seg.start_lsn(self.segment_size);
        let segment = seg.file_name(self.segment_size);
        let (shipped, seen) = match self.cursors.get(&seg) {
            Some(c) => *c,
            None => {
                self.summary.requests += 1;
                let done =
                    chunks::contiguous_end(&chunks::list(self.archive, &segment).await?, first);
                (done, done)
            }
        };
        let path = self.dir.join(name);
        let now = Lsn(first.0
            + written_end(&path, shipped.0 - first.0)
                .map_err(Error::io(format!("reading {}", path.display())))?);
        self.received = self.received.max(now);
        let end = if force { now } else { now.min(seen) };
        self.cursors.insert(seg, (shipped, now));
        if end <= shipped {
            return Ok(());
        }
        let since = *self.pending_since.get_or_insert_with(Instant::now);
        let due = force
            || end.0 - shipped.0 >= self.upload_bytes
            || since.elapsed() >= self.interval.saturating_sub(Duration::from_millis(1));
        if !due {
            return Ok(());
        }
        let data = read_range(&path, shipped.0 - first.0, end.0 - first.0)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        let header = WalObjectHeader {
            file: segment.clone(),
            size: data.len() as u64,
            sha256: crate::sha256_hex(&data),
            compression: self.push.encode.compression,
            encrypted_to: self.push.encode.info().encrypted_to,
            system_identifier: self.push.cluster.map_or(0, |c| c.system_identifier),
            pg_major: self.push.cluster.map_or(0, |c| c.pg_major),
        };
        self.archive
            .store_object(
                chunks::chunk_key(&segment, shipped, end),
                &header,
                std::io::Cursor::new(data),
                &self.push.encode,
            )
            .await?;
        self.summary.chunks += 1;
        self.summary.requests += 1;
        self.cursors.insert(seg, (end, now));
        self.pending_since = None;
        self.advance(seg.timeline, end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn written_end_finds_the_last_written_byte_before_the_padding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000010000000000000001.partial");
        let mut data = vec![0u8; 16 * PAGE as usize];
        data[..3 * PAGE as usize + 100].fill(7);
        // A zero byte inside the written part does not end it.
        data[PAGE as usize + 5] = 0;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(written_end(&path, 0).unwrap(), 3 * PAGE + 100);
        assert_eq!(written_end(&path, 2 * PAGE + 7).unwrap(), 3 * PAGE + 100);
        // Nothing new after the end.
        assert_eq!(written_end(&path, 3 * PAGE + 100).unwrap(), 3 * PAGE + 100);
        std::fs::write(&path, vec![0u8; 4 * PAGE as usize]).unwrap();
        assert_eq!(written_end(&path, 0).unwrap(), 0);
    }
}
