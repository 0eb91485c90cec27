//! Prune and restore on a repository in an S3 bucket with Object Lock
//! (moto, bucket created with Object Lock enabled): locked backups and
//! objects are skipped and reported, the rest is deleted for good, and a
//! logical backup still restores.
#![allow(clippy::unwrap_used)]

use cfdr_pg::logical::{self, LogicalOptions, RestoreRequest};
use cfdr_prune::{Options, prune};
use cfdr_retention::{Config, Count, Policy};
use cfdr_storage::{LockMode, LockPeriods, Repository, StorageOptions};
use cfdr_testing::TestLocation;
use cfdr_testing::pg::{content_fingerprint, cryptofunk_cluster};
use jiff::{SignedDuration, Timestamp};

fn with_lock(options: &StorageOptions) -> StorageOptions {
    let mut o = options.clone();
    o.object_lock = LockMode::Compliance;
    o.object_lock_margin = "1d".parse().unwrap();
    o.lock_periods = LockPeriods {
        kinds: [("logical".to_owned(), "1y".parse().unwrap())].into(),
        wal: "1y".parse().unwrap(),
        other: "1y".parse().unwrap(),
    };
    o
}

#[tokio::test]
async fn prune_skips_and_reports_locked_objects_and_deletes_the_rest() {
    let Some(loc) = TestLocation::moto_bucket("prune_locked", true) else {
        return;
    };
    // The oldest backup is written before object lock was turned on: it
    // has no retention and can go.
    let plain = loc.options.build().unwrap();
    let repo_plain = Repository::init(plain.clone()).await.unwrap();
    let mut w = repo_plain.begin_backup("logical", Some("daily")).unwrap();
    w.put_raw("dump", &b"old"[..]).await.unwrap();
    let old = w.commit(Default::default()).await.unwrap();

    let locked = with_lock(&loc.options).build().unwrap();
    let repo = Repository::open(locked.clone()).await.unwrap();
    let mut ids = Vec::new();
    for body in [&b"middle"[..], &b"newest"[..]] {
        let mut w = repo.begin_backup("logical", Some("daily")).unwrap();
        w.put_raw("dump", body).await.unwrap();
        ids.push(w.commit(Default::default()).await.unwrap().id);
    }
    // An uncommitted leftover whose object is locked.
    let mut w = repo.begin_backup("logical", Some("daily")).unwrap();
    let leftover = w.put_raw("dump", &b"crashed"[..]).await.unwrap().key;
    drop(w);

    // Two days on, keep one: the old and the middle backup go, and the
    // leftover is past its grace period. Only the old one is unlocked.
    let config = Config::with_policy(Policy {
        keep_last: Count::Limited(1),
        ..Policy::default()
    });
    let options = Options {
        at: Some(
            Timestamp::now()
                .checked_add(SignedDuration::from_hours(48))
                .unwrap(),
        ),
        ..Options::default()
    };
    let dry = prune(
        &repo,
        &config,
        &Options {
            dry_run: true,
            ..options.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        dry.locked_backups.len(),
        1,
        "{}",
        dry.render(false, |b| b.to_string())
    );

    let report = prune(&repo, &config, &options).await.unwrap();
    let text = report.render(false, |b| b.to_string());
    // Planned: the old and the middle backup, and the expired leftover.
    assert_eq!(report.summary.delete.count, 3, "{text}");
    // The locked backup is kept whole and named with its lock date.
    assert_eq!(report.locked_backups.len(), 1, "{text}");
    assert_eq!(report.locked_backups[0].id, ids[0].as_str());
    assert_eq!(
        report.locked_backups[0].retention.mode,
        LockMode::Compliance
    );
    assert!(
        text.contains(&format!("locked: backup {}", ids[0])),
        "{text}"
    );
    // The locked leftover stays and is named; prune did not fail.
    assert_eq!(report.locked_objects.len(), 1, "{text}");
    assert_eq!(report.locked_objects[0].key, leftover);
    assert!(text.contains(&format!("locked: {leftover}")), "{text}");

    let left: Vec<_> = repo.backup_ids().await.unwrap();
    assert_eq!(
        left, ids,
        "the locked backup is still listed and the old one gone"
    );
    // The unlocked backup is gone for good: no version is left behind.
    let op = locked.operator().unwrap();
    for key in [old.id.manifest_key(), old.objects[0].key.clone()] {
        let mut lister = op
            .lister_with(&key)
            .versions(true)
            .deleted(true)
            .await
            .unwrap();
        use futures::StreamExt;
        let mut versions = 0;
        while let Some(e) = lister.next().await {
            versions += usize::from(e.unwrap().path() == key);
        }
        assert_eq!(versions, 0, "{key} has versions left");
    }
    assert!(locked.stat(&leftover).await.unwrap().is_some());
    // A second prune reports the same locks again, still without failing.
    let again = prune(&repo, &config, &options).await.unwrap();
    assert_eq!(
        (again.locked_backups.len(), again.locked_objects.len()),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_backup_restores_from_a_locked_repository() {
    let Some(loc) = TestLocation::moto_bucket("restore_locked", true) else {
        return;
    };
    let cluster = match cryptofunk_cluster("cryptofunk", 10, 300).await {
        Ok(c) => c,
        Err(e) => {
            cfdr_testing::missing::<()>(&format!("PostgreSQL 15 ({e})"), "restore_locked");
            return;
        }
    };
    let store = with_lock(&loc.options).build().unwrap();
    let repo = Repository::init(store.clone()).await.unwrap();
    let source = cluster.target("cryptofunk");
    let opts = LogicalOptions::default();
    let manifest = logical::backup(&repo, &source, "daily", &opts, &Default::default())
        .await
        .unwrap();
    for o in &manifest.objects {
        let r = store.retention(&o.key).await.unwrap();
        assert!(
            r.is_some_and(|r| r.mode == LockMode::Compliance),
            "{} is not locked",
            o.key
        );
    }
    let report = repo.verify(&manifest).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.failures);
    let restored = logical::restore(
        &repo,
        &source,
        &manifest,
        &opts,
        &RestoreRequest::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        content_fingerprint(&cluster.target(&restored.database))
            .await
            .unwrap(),
        content_fingerprint(&source).await.unwrap(),
        "the restored database equals the source"
    );
}
