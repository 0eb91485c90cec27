//! Interrupted prunes finish on the next run, and two prunes never both
//! delete.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use cfdr_prune::{Options, PENDING_KEY, prune};
use cfdr_retention::{Config, Count, Policy};
use cfdr_storage::{Repository, Store};
use cfdr_testing::history::{HistorySpec, write_history};
use cfdr_testing::{Backend, FaultLayer, FaultMode, FaultOp, TestLocation};

async fn keys(store: &Store) -> BTreeSet<String> {
    let all = store.list("").await.unwrap();
    all.into_iter().map(|m| m.key).collect()
}

async fn all_kept_backups_verify(repo: &Repository, expected: usize) {
    let backups = repo.backups().await.unwrap();
    assert_eq!(backups.len(), expected);
    for m in &backups {
        assert!(repo.verify(m).await.unwrap().is_ok(), "{} damaged", m.id);
    }
}

/// Seeded delete failures (the memory backend behind a fault layer) stop
/// prunes part-way at many different points; clean re-runs finish each
/// time. Recent backups are deleted too, so the pending-deletion record
/// must finish backups whose manifest went inside the grace period.
#[tokio::test]
async fn interrupted_prunes_finish_on_the_next_run() {
    for seed in 0..20u64 {
        let loc = TestLocation::new(Backend::Memory, "prune_resume").unwrap();
        let clean = loc.options.build().unwrap();
        let repo = Repository::init(clean.clone()).await.unwrap();
        let mut spec = HistorySpec::new(120, 1_200);
        // Start 5 hours before now's hour: the last backups are recent.
        spec.start = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_hours(125))
            .unwrap();
        let history = write_history(&clean, &spec).await.unwrap();
        let config = Config::with_policy(Policy {
            keep_last: Count::Limited(3),
            ..Policy::default()
        });
        // A short lease: a lock the faulty run failed to release expires
        // quickly, and the clean run waits for it.
        let options = Options {
            at: Some(history.at),
            lock_ttl: Duration::from_secs(3),
            lock_wait: Duration::from_secs(60),
            ..Options::default()
        };
        let dry = Options {
            dry_run: true,
            ..options.clone()
        };
        let planned = prune(&repo, &config, &dry).await.unwrap();
        let before = keys(&clean).await;
        let gone: BTreeSet<String> = planned.deletions.keys().map(str::to_owned).collect();
        let expected: BTreeSet<String> = before.difference(&gone).cloned().collect();

        // Mean failure points from 20 to 2,000 deletes: every phase is hit.
        let rate = [0.05, 0.01, 0.002, 0.0005][seed as usize % 4];
        let faults = FaultLayer::new(seed, rate, FaultMode::Fail, &[FaultOp::Delete]);
        let mut faulty_opts = loc.options.clone();
        faulty_opts.retry.max_retries = 0;
        let faulty = faulty_opts.build_with(move |op| op.layer(faults)).unwrap();
        let faulty_repo = Repository::open(faulty).await.unwrap();
        let first = prune(&faulty_repo, &config, &options).await;
        if let Err(e) = &first {
            assert!(e.is_partial(), "seed {seed}: {e}");
            // No listed backup lacks data at any point.
            for m in repo.backups().await.unwrap() {
                assert!(repo.verify(&m).await.unwrap().is_ok(), "seed {seed}");
            }
        }
        let second = prune(&repo, &config, &options).await.unwrap();
        assert!(
            keys(&clean).await == expected,
            "seed {seed}: repository differs from the plan"
        );
        assert!(!keys(&clean).await.contains(PENDING_KEY));
        if first.is_err() {
            assert!(second.deleted > 0, "seed {seed}");
        }
        let kept = planned.plan.decisions.iter().filter(|d| d.keep).count();
        let in_grace = planned
            .plan
            .decisions
            .iter()
            .filter(|d| {
                d.reasons
                    .iter()
                    .any(|r| r.to_string() == "incomplete-in-grace")
            })
            .count();
        all_kept_backups_verify(&repo, kept - in_grace).await;
    }
}

async fn two_prunes_at_once(backend: Backend, test: &str) {
    let Some(loc) = TestLocation::new(backend, test) else {
        return;
    };
    let store = loc.options.build().unwrap();
    let repo = Repository::init(store.clone()).await.unwrap();
    let history = write_history(&store, &HistorySpec::new(600, 3_000))
        .await
        .unwrap();
    let config = Config::default();
    let options = Options {
        at: Some(history.at),
        ..Options::default()
    };
    let (a, b) = tokio::join!(
        prune(&repo, &config, &options),
        prune(&repo, &config, &options)
    );
    let deleted: Vec<usize> = [&a, &b]
        .iter()
        .map(|r| r.as_ref().map_or(0, |r| r.deleted))
        .collect();
    assert!(
        deleted.iter().filter(|d| **d > 0).count() == 1,
        "exactly one prune deletes: {deleted:?}"
    );
    for r in [&a, &b] {
        if let Err(e) = r {
            assert!(e.is_locked(), "{e}");
            assert!(e.to_string().contains("--wait"), "{e}");
        }
    }
    // Waiting instead: the second runs after the first, finding nothing.
    let waiting = Options {
        lock_wait: Duration::from_secs(30),
        ..options.clone()
    };
    let (c, d) = tokio::join!(
        prune(&repo, &config, &waiting),
        prune(&repo, &config, &waiting)
    );
    assert_eq!(c.unwrap().deleted + d.unwrap().deleted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_prunes_at_once_on_fs() {
    two_prunes_at_once(Backend::Fs, "prune_two_fs").await;
}

/// moto decides create-only writes atomically (s3s-fs does not, see
/// `Backend::has_atomic_create`), so the lock holds between processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_prunes_at_once_on_s3_moto() {
    two_prunes_at_once(Backend::S3Moto, "prune_two_moto").await;
}

#[tokio::test]
async fn bad_policy_is_refused_before_any_io() {
    let bad_zone = Config {
        time_zone: "Mars/Olympus_Mons".into(),
        ..Config::default()
    };
    let err = cfdr_prune::check(&bad_zone, &Options::default()).unwrap_err();
    assert!(err.to_string().contains("unknown time zone"), "{err}");
    assert!(err.to_string().contains("[retention]"), "{err}");
    let err = cfdr_prune::parse_class("databse").unwrap_err().to_string();
    assert!(err.contains("database, database-archive"), "{err}");
    let err = cfdr_prune::check(
        &Config::default(),
        &Options {
            lock_ttl: Duration::ZERO,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("lock ttl"), "{err}");
}
