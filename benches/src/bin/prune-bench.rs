//! Retention benchmarks (see `benches/prune.sh`): planning time at 10k, 100k
//! and 1M backups (alone, then with as many WAL files), and a prune of ~10,000 objects
//! on the S3 server with batch deletes.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use anyhow::Result;
use cfdr_prune::{Options, prune};
use cfdr_retention::{
    Config, Count, DEFAULT_SEGMENT_SIZE, Item, Kind, Lsn, Policy, WalFile, WalItem, WalRange,
    WalSegment,
};
use cfdr_storage::Repository;
use cfdr_testing::history::{HistorySpec, write_history};
use cfdr_testing::{Backend, TestLocation};
use clap::Parser;
use jiff::{SignedDuration, Timestamp};

#[derive(Parser)]
struct Args {
    /// Item counts to plan.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    plan: Vec<usize>,
    /// Also prune on the S3 server (needs the CFDR_TEST_S3_* variables).
    #[arg(long)]
    s3: bool,
}

/// `n` hourly backups (a quarter physical, with WAL ranges) and `n` WAL segments.
fn history(n: usize) -> (Vec<Item>, Vec<WalItem>, Timestamp) {
    let start = Timestamp::from_second(1_600_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let t = start
            .saturating_add(SignedDuration::from_hours(i as i64))
            .unwrap_or(start);
        let kind = [Kind::Physical, Kind::Logical, Kind::Logical, Kind::Logs][i % 4];
        let mut item = Item::new(format!("b{i:08}"), t, kind).class("hourly");
        if kind == Kind::Physical {
            let seg = i as u64 + 1;
            let lsn = Lsn(seg * DEFAULT_SEGMENT_SIZE + 0x28);
            item = item.wal(WalRange::new(1, lsn, Lsn(lsn.0 + 0x1000)));
        }
        items.push(item);
    }
    let wal = (0..n as u64)
        .map(|s| {
            let seg = WalSegment {
                timeline: 1,
                segno: s + 1,
            };
            WalItem::new(WalFile::Segment(seg), 16, DEFAULT_SEGMENT_SIZE)
        })
        .collect();
    let at = start
        .saturating_add(SignedDuration::from_hours(n as i64 + 1))
        .unwrap_or(start);
    (items, wal, at)
}

async fn s3_prune() -> Result<()> {
    let Some(mut loc) = TestLocation::new(Backend::S3, "bench-prune") else {
        anyhow::bail!("the S3 server is not running: use benches/prune.sh");
    };
    loc.options.compat.list_page_size = Some(200_000);
    let store = loc.options.build()?;
    let repo = Repository::init(store.clone()).await?;
    let history = write_history(&store, &HistorySpec::new(2_700, 6_000)).await?;
    // Keep little, so about 10,000 objects go: backups and the WAL before
    // the newest archive (the oldest kept physical backup).
    let mut config = Config::with_policy(Policy {
        keep_last: Count::Limited(10),
        ..Policy::default()
    });
    config.classes.database_archive.keep_last = Count::Limited(1);
    let options = Options {
        at: Some(history.at),
        ..Options::default()
    };
    let t = Instant::now();
    let dry = prune(
        &repo,
        &config,
        &Options {
            dry_run: true,
            ..options.clone()
        },
    )
    .await?;
    let read = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let report = prune(&repo, &config, &options).await?;
    let total = t.elapsed().as_secs_f64();
    let n = report.deleted as f64;
    println!(
        "s3 prune: {} objects ({} backups, {} WAL) in {total:.2}s = {:.0} objects/s end to end",
        report.deleted,
        report.summary.delete.count,
        report.deletions.wal.len(),
        n / total
    );
    println!(
        "  reading + planning {read:.2}s (dry run), deleting {:.2}s = {:.0} objects/s",
        total - read,
        n / (total - read).max(1e-9)
    );
    anyhow::ensure!(
        dry.deletions == report.deletions,
        "the dry run planned the same"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let config = Config::default();
    println!(
        "{:>10} {:>12} {:>12} {:>14}",
        "backups", "WAL files", "plan ms", "ns per input"
    );
    for n in args.plan {
        let (items, wal, at) = history(n);
        for wal in [&[][..], &wal[..]] {
            let t = Instant::now();
            let plan = cfdr_retention::plan(&items, wal, &config, at)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            std::hint::black_box(&plan);
            let inputs = (n + wal.len()) as f64;
            println!(
                "{n:>10} {:>12} {ms:>12.1} {:>14.0}",
                wal.len(),
                ms * 1e6 / inputs
            );
        }
    }
    if args.s3 {
        s3_prune().await?;
    }
    Ok(())
}
