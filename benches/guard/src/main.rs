//! Guard benchmarks (see `benches/guard.sh`):
//!
//! - `state`: `Guard::state()` from 2 threads while the refresher runs
//!   every 100 ms against a real PostgreSQL: p50 / p99 / p99.9 in ns and
//!   allocations per call (counted per thread by the global allocator).
//! - `refresh`: the repository part of a refresh cycle (the incremental WAL
//!   view and the backup view) against 10,000 backups and 100,000 WAL
//!   objects on the folder backend and, with `--s3`, the S3 server: time and
//!   listing requests of the first (discovery) cycle and of steady cycles
//!   that each find one new segment.
#![allow(clippy::print_stdout)]

mod alloc;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cfdr_guard::{BackupView, Dur, Guard, Settings, TradingState, WalView};
use cfdr_retention::{Lsn, WalSegment};
use cfdr_storage::Repository;
use cfdr_storage::wal_archive::wal_key;
use cfdr_testing::history::{HistorySpec, SEGMENT_SIZE, write_history};
use cfdr_testing::{Backend, TestLocation};
use clap::{Parser, Subcommand};

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
                    other => anyhow::bail!("unknown backend {other:?}: fs or s3"),
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

async fn refresh(backend: Backend, backups: usize, wal: usize, cycles: usize) -> Result<()> {
    let loc = TestLocation::new(backend, "guard-refresh-bench")
        .context("no S3 server: run under scripts/with-services")?;
    let store = loc.options.build()?;
    let repo = Repository::init(store.clone()).await?;
    let t = Instant::now();
    let history = write_history(&store, &HistorySpec::new(backups, wal)).await?;
    let setup = t.elapsed();
    // The server writes timeline 2, after the newest segment.
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
    let mut view = WalView::new(store.clone(), SEGMENT_SIZE);
    let t = Instant::now();
    view.refresh(tl, server(next)).await?;
    let discovery = t.elapsed();
    let discovery_requests = view.requests;
    let journal = cfdr_incident::Journal::new(store.clone());
    let mut times = Vec::new();
    let mut wal_times = Vec::new();
    let requests_before = view.requests;
    for _ in 0..cycles {
        // The archiver pushed one more segment since the last cycle.
        let seg = WalSegment {
            timeline: tl,
            segno: next,
        };
        store
            .put(&wal_key(&seg.file_name(SEGMENT_SIZE)), b"wal".to_vec())
            .await?;
        next += 1;
        let t = Instant::now();
        view.refresh(tl, server(next)).await?;
        wal_times.push(t.elapsed());
        let halt = journal.halt_state().await?;
        times.push(t.elapsed());
        anyhow::ensure!(!halt.trading_halted());
        anyhow::ensure!(
            view.highest(tl).map(|s| s.segno) == Some(next - 1),
            "the view missed a segment: {:?} vs {}",
            view.highest(tl),
            next - 1
        );
    }
    let steady_requests = (view.requests - requests_before) as f64 / cycles as f64;
    times.sort();
    wal_times.sort();
    let mut backups_view = BackupView::default();
    let t = Instant::now();
    backups_view.scan(&repo, history.at).await?;
    let backup_first = t.elapsed();
    let first_requests = backups_view.requests;
    let t = Instant::now();
    backups_view.scan(&repo, history.at).await?;
    let backup_next = t.elapsed();
    let doc = serde_json::json!({
        "bench": "guard-refresh",
        "backend": format!("{backend:?}"),
        "backups": backups,
        "wal_objects": wal,
        "setup_s": setup.as_secs_f64(),
        "wal_discovery_ms": discovery.as_secs_f64() * 1e3,
        "wal_discovery_list_requests": discovery_requests,
        "cycle_p50_ms": times[times.len() / 2].as_secs_f64() * 1e3,
        "cycle_max_ms": times.last().map(|d| d.as_secs_f64() * 1e3),
        "cycle_wal_list_requests": steady_requests,
        "cycle_wal_part_p50_ms": wal_times[wal_times.len() / 2].as_secs_f64() * 1e3,
        "backup_scan_first_ms": backup_first.as_secs_f64() * 1e3,
        "backup_scan_first_requests": first_requests,
        "backup_scan_incremental_ms": backup_next.as_secs_f64() * 1e3,
        "backup_scan_incremental_requests": backups_view.requests - first_requests,
        "backups_seen": backups_view.len(),
    });
    println!("{doc}");
    Ok(())
}
