//! Guard benchmarks (see `benches/guard.sh`):
//!
//! - `state`: `Guard::state()` from 2 threads while the refresher runs
//!   every 100 ms against a real PostgreSQL: p50 / p99 / p99.9 in ns and
//!   allocations per call (counted per thread by the global allocator).
//! - `refresh`: the repository part of a refresh cycle (the incremental WAL
//!   view, the WAL stream state, the incident view and the operation
//!   markers) against 10,000 backups, 100,000 WAL objects and an incident
//!   log (10 open incidents, 20 closed) on the folder backend and the S3 servers: time and requests
//!   (counted by an opendal layer) of the first cycle and of steady cycles
//!   that each find one new segment, next to the floor (one bare request
//!   of each kind on an empty prefix), then the background scans.
#![allow(clippy::print_stdout)]

mod alloc;
mod count;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cfdr_guard::{
    BackupView, CopyView, DrillView, Dur, Guard, IncidentView, Settings, TradingState, WalView,
    records,
};
use cfdr_incident::{Change, Journal, PostMortem, Severity, Stamp};
use cfdr_retention::{Lsn, WalSegment};
use cfdr_storage::Repository;
use cfdr_storage::wal_archive::wal_key;
use cfdr_testing::history::{HistorySpec, SEGMENT_SIZE, write_history};
use cfdr_testing::{Backend, TestLocation};
use clap::{Parser, Subcommand};
use count::CountLayer;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// state() latency and allocations.
    State {
        /// Calls per reader thread.
        #[arg(long, default_value_t = 2_000_000)]
        calls: usize,
    },
    /// Refresh cycles on a large repository.
    Refresh {
        /// Backups in the repository.
        #[arg(long, default_value_t = 10_000)]
        backups: usize,
        /// WAL objects in the repository.
        #[arg(long, default_value_t = 100_000)]
        wal: usize,
        /// Steady cycles measured.
        #[arg(long, default_value_t = 50)]
        cycles: usize,
        /// Backends: fs, s3 (the s3s-fs server), moto (the moto S3 server).
        #[arg(long, value_delimiter = ',', default_value = "fs,s3")]
        backends: Vec<String>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.command {
        Cmd::State { calls } => rt.block_on(state(calls)),
        Cmd::Refresh {
            backups,
            wal,
            cycles,
            backends,
        } => {
            for b in backends {
                let backend = match b.as_str() {
                    "fs" => Backend::Fs,
                    "s3" => Backend::S3,
                    "moto" => Backend::S3Moto,
                    other => anyhow::bail!("unknown backend {other:?}: fs, s3 or moto"),
                };
                rt.block_on(refresh(backend, backups, wal, cycles))?;
            }
            Ok(())
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn state(calls: usize) -> Result<()> {
    let bin_dir = std::env::var("CFDR_TEST_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into());
    let bin = cfdr_pg::PgBin::locate(Some(Path::new(&bin_dir)), None).await?;
    let mut cluster = cfdr_pg::LocalCluster::init_temp(&bin).await?;
    cluster.start(&[]).await?;
    let loc = TestLocation::new(Backend::Memory, "guard-bench").context("memory location")?;
    let repo = Repository::init(loc.options.build()?).await?;
    let mut settings = Settings::default();
    settings.guard.refresh_interval = Dur(Duration::from_millis(100));
    settings.guard.incident_interval = Dur(Duration::from_millis(100));
    settings.objectives.backups.clear();
    let guard = Guard::start(settings, repo, cluster.target("postgres")).await?;
    // The clock read each sample pays, measured the same way.
    let clock: u64 = {
        let mut v: Vec<u64> = (0..100_000)
            .map(|_| {
                let t = Instant::now();
                black_box(());
                t.elapsed().as_nanos() as u64
            })
            .collect();
        v.sort_unstable();
        pct(&v, 0.5)
    };
    let cycles_before = guard.cycles();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let g = guard.clone();
            std::thread::spawn(move || {
                let mut ns = Vec::with_capacity(calls);
                let mut active = 0u64;
                // Warm up, then count only the measured calls.
                for _ in 0..10_000 {
                    black_box(g.state());
                }
                let allocs_before = alloc::allocations();
                for _ in 0..calls {
                    let t = Instant::now();
                    let s = black_box(g.state());
                    let d = t.elapsed().as_nanos() as u64;
                    ns.push(d);
                    active += u64::from(s == TradingState::Active);
                }
                // `ns` was sized up front: the loop itself allocates nothing.
                let allocs = alloc::allocations() - allocs_before;
                (ns, allocs, active)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut allocations = 0;
    let mut active = 0;
    for r in readers {
        let (ns, a, act) = r.join().map_err(|_| anyhow::anyhow!("reader panicked"))?;
        all.extend(ns);
        allocations += a;
        active += act;
    }
    all.sort_unstable();
    let total = all.len() as f64;
    let doc = serde_json::json!({
        "bench": "guard-state",
        "threads": 2,
        "calls": all.len(),
        "refresh_cycles_during": guard.cycles() - cycles_before,
        "active_share": active as f64 / total,
        "clock_read_ns_p50": clock,
        "p50_ns": pct(&all, 0.5),
        "p99_ns": pct(&all, 0.99),
        "p999_ns": pct(&all, 0.999),
        "max_ns": all.last(),
        "allocations_per_call": allocations as f64 / total,
    });
    println!("{doc}");
    Ok(())
}

/// Median of `v` in milliseconds.
fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// Closed incidents in the bench's log, beside 10 open ones.
const CLOSED_INCIDENTS: usize = 20;

/// Incidents, drills and copy states beside the history, as a repository
/// in use has them.
async fn write_records(store: &cfdr_storage::Store, at: jiff::Timestamp) -> Result<Journal> {
    let journal = Journal::new(store.clone());
    for i in 0..10 {
        let stamp = Stamp::new("bench", at);
        let inc = journal
            .open(
                &stamp,
                Change::Opened {
                    title: format!("incident {i}"),
                    severity: Severity::P2,
                    commander: None,
                    halt: false,
                    text: None,
                },
            )
            .await?
            .incident;
        for n in 0..5 {
            let text = format!("update {n}");
            journal
                .append(&inc.id, &stamp, Change::Note { text })
                .await?;
        }
    }
    // Most of a log in use is closed incidents: listed one per check.
    for i in 0..CLOSED_INCIDENTS {
        let stamp = Stamp::new("bench", at);
        let inc = journal
            .open(
                &stamp,
                Change::Opened {
                    title: format!("closed incident {i}"),
                    severity: Severity::P3,
                    commander: None,
                    halt: false,
                    text: None,
                },
            )
            .await?
            .incident;
        for change in [
            Change::Resolved { text: None },
            Change::PostMortem(PostMortem {
                root_cause: Some("a disk filled up".into()),
                ..PostMortem::default()
            }),
            Change::Closed { text: None },
        ] {
            journal.append(&inc.id, &stamp, change).await?;
        }
    }
    for d in 0..20 {
        let report = serde_json::json!({
            "version": 1, "status": "SUCCESSFUL",
            "started": "2026-11-01T02:00:00Z", "finished": "2026-11-01T02:08:00Z",
            "rto_actual_seconds": 480.0, "rpo_actual_seconds": 2.0,
        });
        store
            .put(
                &format!("drills/202611{:02}T020000Z/report.json", d + 1),
                serde_json::to_vec(&report)?,
            )
            .await?;
    }
    for name in ["eu-west", "us-east"] {
        let state = serde_json::json!({
            "version": 1, "name": name, "lag_bytes": 0, "lag_seconds": 1.5,
            "updated_at": "2026-12-01T12:00:00Z",
        });
        store
            .put(
                &format!("copy-state/{name}.json"),
                serde_json::to_vec(&state)?,
            )
            .await?;
    }
    Ok(journal)
}

async fn refresh(backend: Backend, backups: usize, wal: usize, cycles: usize) -> Result<()> {
    let loc = TestLocation::new(backend, "guard-refresh-bench")
        .context("no S3 server: run under scripts/with-services")?;
    // The history is written through a store that is not counted; the
    // guard's readers go through `counted`.
    let store = loc.options.build()?;
    let counter = CountLayer::default();
    let layer = counter.clone();
    let counted = loc.options.build_with(move |op| op.layer(layer))?;
    let repo = Repository::init(store.clone()).await?;
    let t = Instant::now();
    let history = write_history(&store, &HistorySpec::new(backups, wal)).await?;
    let journal = write_records(&store, history.at).await?;
    let setup = t.elapsed();
    // The server writes the newest timeline, after the newest segment.
    let newest = history
        .keys
        .iter()
        .filter_map(|k| cfdr_storage::wal_archive::wal_file_name(k))
        .filter_map(|n| WalSegment::parse(n, SEGMENT_SIZE).ok())
        .max()
        .context("no segment")?;
    let tl = newest.timeline;
    let mut next = newest.segno + 1;
    let server = |segno: u64| Some(Lsn(segno * SEGMENT_SIZE + 0x1000));
    let mut view = WalView::new(counted.clone(), SEGMENT_SIZE);
    let mut incidents = IncidentView::default();
    let before = counter.snapshot();
    let t = Instant::now();
    view.refresh(tl, server(next)).await?;
    incidents.refresh(&counted).await?;
    let discovery = t.elapsed();
    let discovery_requests = counter.snapshot().since(&before);
    let stale_after = Duration::from_secs(120);
    let (mut full, mut wal_only) = (Vec::new(), Vec::new());
    let mut requests = Vec::new();
    let incident = journal.list().await?.incidents[0].incident.id.clone();
    for i in 0..cycles {
        // The archiver pushed one more segment since the last cycle, and
        // every fifth cycle someone writes to an incident.
        let seg = WalSegment {
            timeline: tl,
            segno: next,
        };
        store
            .put(&wal_key(&seg.file_name(SEGMENT_SIZE)), b"wal".to_vec())
            .await?;
        next += 1;
        if i % 5 == 4 {
            let text = format!("cycle {i}");
            journal
                .append(
                    &incident,
                    &Stamp::new("bench", history.at),
                    Change::Note { text },
                )
                .await?;
        }
        let before = counter.snapshot();
        let t = Instant::now();
        // What every cycle reads: the WAL archive and the WAL stream state.
        view.refresh(tl, server(next)).await?;
        let stream = records::wal_stream_state(&counted)
            .await
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(stream.is_none());
        wal_only.push(t.elapsed());
        // What a cycle reads every incident-interval (2 s): incidents and
        // operation markers. Measured on every cycle here: the worst case.
        let now = incidents.refresh(&counted).await?;
        let ops = records::operations(&counted, history.at, stale_after).await?;
        full.push(t.elapsed());
        requests.push(counter.snapshot().since(&before));
        anyhow::ensure!(now.halting.is_empty() && now.damaged.is_empty() && ops.is_empty());
        anyhow::ensure!(now.open.len() == 10, "{} open incidents", now.open.len());
        anyhow::ensure!(
            view.highest(tl).map(|s| s.segno) == Some(next - 1),
            "the view missed a segment: {:?} vs {}",
            view.highest(tl),
            next - 1
        );
    }
    let n = requests.len() as f64;
    let avg = |f: fn(&count::Snapshot) -> u64| requests.iter().map(f).sum::<u64>() as f64 / n;
    let max_total = requests.iter().map(count::Snapshot::total).max();

    // The floor: one bare request of each kind the cycle makes, on a
    // prefix that holds nothing.
    let mut floors = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..10 {
        let t = Instant::now();
        counted
            .list_after("guard-bench-empty/", false, None)
            .await?;
        floors[0].push(t.elapsed());
        let t = Instant::now();
        counted.list("guard-bench-empty/").await?;
        floors[1].push(t.elapsed());
        let t = Instant::now();
        let _ = counted.get("guard-bench-empty/none").await;
        floors[2].push(t.elapsed());
    }
    // The journal's full read, which the incident view replaces.
    let mut journal_reads = Vec::new();
    let before = counter.snapshot();
    let counted_journal = Journal::new(counted.clone());
    for _ in 0..3 {
        let t = Instant::now();
        counted_journal.halt_state().await?;
        journal_reads.push(t.elapsed());
    }
    let journal_requests = counter.snapshot().since(&before).total() / 3;

    let counted_repo = Repository::open(counted.clone()).await?;
    let mut backups_view = BackupView::default();
    let t = Instant::now();
    backups_view.scan(&counted_repo, history.at).await?;
    let backup_first = t.elapsed();
    let first_requests = backups_view.requests;
    let t = Instant::now();
    backups_view.scan(&counted_repo, history.at).await?;
    let backup_next = t.elapsed();
    let mut drills = DrillView::default();
    let mut copies = CopyView::default();
    let t = Instant::now();
    drills.refresh(&counted).await?;
    copies.refresh(&counted).await?;
    let records_first = t.elapsed();
    let before = counter.snapshot();
    let t = Instant::now();
    drills.refresh(&counted).await?;
    copies.refresh(&counted).await?;
    let records_next = t.elapsed();
    let records_next_requests = counter.snapshot().since(&before).total();
    anyhow::ensure!(drills.last.is_some() && copies.copies().len() == 2);
    drop(repo);
    let doc = serde_json::json!({
        "bench": "guard-refresh",
        "backend": format!("{backend:?}"),
        "backups": backups,
        "wal_objects": wal,
        "incident_objects": 60 + 4 * CLOSED_INCIDENTS + cycles / 5,
        "incidents_open_closed": [10, CLOSED_INCIDENTS],
        "setup_s": setup.as_secs_f64(),
        "first_cycle_ms": discovery.as_secs_f64() * 1e3,
        "first_cycle_requests": discovery_requests.total(),
        "cycle_p50_ms": median_ms(&mut full),
        "cycle_max_ms": full.last().map(|d| d.as_secs_f64() * 1e3),
        "cycle_wal_and_stream_p50_ms": median_ms(&mut wal_only),
        "cycle_requests_avg": avg(count::Snapshot::total),
        "cycle_requests_max": max_total,
        "cycle_list_requests_avg": avg(|s| s.list),
        "cycle_read_requests_avg": avg(|s| s.read),
        "floor_list_one_level_ms": median_ms(&mut floors[0]),
        "floor_list_recursive_ms": median_ms(&mut floors[1]),
        "floor_read_missing_ms": median_ms(&mut floors[2]),
        "journal_full_read_ms": median_ms(&mut journal_reads),
        "journal_full_read_requests": journal_requests,
        "backup_scan_first_ms": backup_first.as_secs_f64() * 1e3,
        "backup_scan_first_requests": first_requests,
        "backup_scan_incremental_ms": backup_next.as_secs_f64() * 1e3,
        "backup_scan_incremental_requests": backups_view.requests - first_requests,
        "drills_copies_first_ms": records_first.as_secs_f64() * 1e3,
        "drills_copies_next_ms": records_next.as_secs_f64() * 1e3,
        "drills_copies_next_requests": records_next_requests,
        "backups_seen": backups_view.len(),
    });
    println!("{doc}");
    Ok(())
}
