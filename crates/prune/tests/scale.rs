//! Prune at scale on real storage: synthetic backups and WAL files on a
//! local folder and on the S3 server. After the prune exactly the planned
//! keys are gone, every kept backup verifies, the PITR window is whole, and
//! a second prune finds nothing to do. The long form (`CFDR_TEST_LONG=1`)
//! writes 10,000 hourly backups and 100,000 WAL files; the default 2,000
//! backups five hours apart and 20,000 WAL files, over the same 417 days, so
//! every retention tier and the WAL horizon are exercised as in the long
//! form.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::time::Instant;

use cfdr_prune::{Options, prune};
use cfdr_retention::{Config, Lsn, WalFile};
use cfdr_storage::wal_archive::wal_file_name;
use cfdr_storage::{Repository, Store};
use cfdr_testing::history::{HistorySpec, SEGMENT_SIZE, write_history};
use cfdr_testing::{Backend, TestLocation};
use futures::StreamExt;

/// The history written: backups and WAL files over 417 days.
fn scale() -> HistorySpec {
    if cfdr_testing::long_tests() {
        HistorySpec::new(10_000, 100_000)
    } else {
        let mut spec = HistorySpec::new(2_000, 20_000);
        spec.interval = jiff::SignedDuration::from_hours(5);
        spec
    }
}

async fn all_keys(store: &Store) -> BTreeSet<String> {
    store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}

async fn prune_at_scale(backend: Backend, test: &str) {
    let Some(mut loc) = TestLocation::new(backend, test) else {
        return;
    };
    // On a local folder, put the repository in memory-backed /dev/shm when
    // there is one: this disk creates ~1,000 files/s, which would make the
    // test time the disk rather than prune.
    let shm = std::path::Path::new("/dev/shm");
    let _shm_dir = if backend == Backend::Fs && shm.is_dir() {
        let dir = tempfile::tempdir_in(shm).unwrap();
        loc.options.url = Some(format!("file://{}", dir.path().join("repo").display()));
        Some(dir)
    } else {
        None
    };
    // s3s-fs walks the whole bucket for every listing page: ask for big
    // pages (real S3 caps them at 1,000 and pages as usual).
    loc.options.compat.list_page_size = Some(200_000);
    let store = loc.options.build().unwrap();
    let repo = Repository::init(store.clone()).await.unwrap();
    let spec = scale();
    let (n_backups, n_wal) = (spec.backups, spec.wal_segments);
    let t = Instant::now();
    let history = write_history(&store, &spec).await.unwrap();
    eprintln!(
        "{test}: wrote {} objects in {:.1?}",
        history.keys.len(),
        t.elapsed()
    );
    let mut before = history.keys.clone();
    before.insert(cfdr_storage::CONFIG_KEY.to_owned());

    // The runbook's defaults: database 48 hourly / 30 daily / 52 weekly ...
    let config = Config::default();
    let options = Options {
        at: Some(history.at),
        ..Options::default()
    };
    let dry_options = Options {
        dry_run: true,
        ..options.clone()
    };
    let t = Instant::now();
    let dry = prune(&repo, &config, &dry_options).await.unwrap();
    eprintln!("{test}: dry run in {:.1?}", t.elapsed());
    assert_eq!(dry.deleted, 0, "a dry run deletes nothing");

    let t = Instant::now();
    let report = prune(&repo, &config, &options).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let planned: BTreeSet<String> = report.deletions.keys().map(str::to_owned).collect();
    eprintln!(
        "{test}: pruned {} objects in {secs:.1}s ({:.0} objects/s): {} backups, {} WAL files",
        report.deleted,
        report.deleted as f64 / secs,
        report.summary.delete.count,
        report.deletions.wal.len()
    );
    assert_eq!(
        report.deletions, dry.deletions,
        "the dry run showed this plan"
    );
    assert_eq!(report.deleted, planned.len());
    // A real history: most backups and a good part of the WAL go, not all
    // (audit logs, trading records, configuration and secrets stay years).
    assert!(
        report.summary.delete.count > n_backups * 6 / 10,
        "{:?}",
        report.summary
    );
    assert!(
        report.summary.keep.count > n_backups / 5,
        "{:?}",
        report.summary
    );
    assert!(
        report.deletions.wal.len() > n_wal / 50,
        "{:?}",
        report.summary
    );
    assert!(
        report.summary.wal_keep.count > n_wal / 10,
        "{:?}",
        report.summary
    );

    // Exactly the planned keys are gone; nothing else moved.
    let after = all_keys(&store).await;
    let expected: BTreeSet<String> = before.difference(&planned).cloned().collect();
    assert_eq!(after.len(), expected.len());
    assert!(after == expected, "the repository differs from the plan");
    for key in &history.untouchable {
        assert!(after.contains(key), "{key} must never be pruned");
    }
    assert_eq!(report.unknown_wal.len(), 2, "{:?}", report.unknown_wal);

    // Every kept backup is listed and still verifies.
    let kept: BTreeSet<&str> = report
        .plan
        .decisions
        .iter()
        .filter(|d| {
            d.keep
                && !d
                    .reasons
                    .iter()
                    .any(|r| r.to_string().starts_with("incomplete"))
        })
        .map(|d| d.id.as_str())
        .collect();
    let backups = repo.backups().await.unwrap();
    let listed: BTreeSet<&str> = backups.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(listed, kept);
    let failures: Vec<String> = futures::stream::iter(&backups)
        .map(|m| repo.verify(m))
        .buffer_unordered(16)
        .filter_map(|r| async move {
            let r = r.unwrap();
            (!r.is_ok()).then(|| format!("{}: {:?}", r.id, r.failures))
        })
        .collect()
        .await;
    assert!(failures.is_empty(), "{failures:?}");

    // The PITR window is whole: every segment from the oldest kept physical
    // backup's start on is still there, and each kept backup's own range.
    let kept_physical: Vec<_> = history
        .physical
        .iter()
        .filter(|(id, _)| kept.contains(id.as_str()))
        .collect();
    assert!(
        kept_physical.len() > n_backups / 200,
        "{}",
        kept_physical.len()
    );
    let window = kept_physical.iter().map(|(_, r)| r.start).min().unwrap();
    let mut in_window = 0;
    for key in &history.keys {
        let Some(file) = wal_file_name(key).and_then(|n| WalFile::parse(n, SEGMENT_SIZE).ok())
        else {
            continue;
        };
        let Some((lo, hi)) = file.lsn_range(SEGMENT_SIZE) else {
            assert!(after.contains(key), "history file {key} is still in use");
            continue;
        };
        let needed = kept_physical
            .iter()
            .any(|(_, r)| r.needs(&file, SEGMENT_SIZE));
        if needed || hi > Lsn(window.0 + 1) {
            in_window += 1;
            assert!(
                after.contains(key),
                "{key} ({lo}..{hi}) is in the PITR window"
            );
        }
    }
    assert!(in_window > n_wal / 10, "{in_window}");

    // Pruning again finds nothing to delete.
    let again = prune(&repo, &config, &options).await.unwrap();
    assert_eq!(again.deleted, 0, "{:?}", again.summary);
    assert_eq!(all_keys(&store).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_backups_on_fs() {
    prune_at_scale(Backend::Fs, "prune_scale_fs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_backups_on_s3() {
    prune_at_scale(Backend::S3, "prune_scale_s3").await;
}
