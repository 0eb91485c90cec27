//! S3 Object Lock against moto, with buckets created with Object Lock
//! enabled: every write gets its retention, the repository's own
//! credentials cannot delete a locked version, and a repository without
//! `object-lock` set behaves as before.
#![allow(clippy::unwrap_used)]

use cfdr_storage::{LockMode, LockPeriods, Repository, StorageOptions, Store, check_object_lock};
use cfdr_testing::TestLocation;
use jiff::Timestamp;

fn periods() -> LockPeriods {
    LockPeriods {
        kinds: [("logical".to_owned(), "1y".parse().unwrap())].into(),
        wal: "1y".parse().unwrap(),
        other: "7y".parse().unwrap(),
    }
}

fn locked(options: &StorageOptions, mode: LockMode) -> StorageOptions {
    let mut o = options.clone();
    o.object_lock = mode;
    o.object_lock_margin = "30d".parse().unwrap();
    o.lock_periods = periods();
    o
}

/// The newest version id of `key`, through opendal's versioned listing.
async fn versions(store: &Store, key: &str) -> Vec<(String, bool)> {
    use futures::StreamExt;
    let op = store.operator().unwrap();
    let mut lister = op
        .lister_with(key)
        .versions(true)
        .deleted(true)
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(e) = lister.next().await {
        let e = e.unwrap();
        if e.path() == key {
            out.push((
                e.metadata().version().unwrap().to_owned(),
                e.metadata().is_deleted(),
            ));
        }
    }
    out
}

#[tokio::test]
async fn every_write_is_locked_and_the_repository_credentials_cannot_delete_it() {
    let Some(loc) = TestLocation::moto_bucket("lock_write", true) else {
        return;
    };
    let opts = locked(&loc.options, LockMode::Compliance);
    let store = opts.build().unwrap();
    let repo = Repository::init(store.clone()).await.unwrap();
    let before = Timestamp::now();
    let mut w = repo.begin_backup("logical", Some("daily")).unwrap();
    w.put_raw("dump", &b"a pg_dump stream"[..]).await.unwrap();
    let manifest = w.commit(Default::default()).await.unwrap();

    // Each object carries its class's window plus the margin: 1y + 30d
    // for a logical backup, 7y + 30d for cfdr.json.
    let data = &manifest.objects[0].key;
    let r = store
        .retention(data)
        .await
        .unwrap()
        .expect("the data is locked");
    assert_eq!(r.mode, LockMode::Compliance);
    let low = before
        .to_zoned(jiff::tz::TimeZone::UTC)
        .checked_add(jiff::Span::new().years(1).days(30))
        .unwrap()
        .timestamp();
    assert!(
        r.until >= low.checked_sub(jiff::SignedDuration::from_secs(2)).unwrap()
            && r.until
                < low
                    .checked_add(jiff::SignedDuration::from_secs(120))
                    .unwrap(),
        "{r:?} vs {low}"
    );
    let m = store
        .retention(&manifest.id.manifest_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.mode, LockMode::Compliance);
    let cfg = store.retention("cfdr.json").await.unwrap().unwrap();
    assert!(
        cfg.until.duration_since(before).as_hours() > 7 * 365 * 24,
        "{cfg:?}"
    );

    // A versioned DELETE with the repository's own credentials is refused.
    let found = versions(&store, data).await;
    let [(version, false)] = &found[..] else {
        panic!("one version of {data}: {found:?}");
    };
    let version = version.clone();
    let err = store
        .operator()
        .unwrap()
        .delete_with(data)
        .version(&version)
        .await
        .unwrap_err();
    // AWS answers 403, moto 400; both with the code AccessDenied.
    assert!(format!("{err:?}").contains("AccessDenied"), "{err:?}");

    // cfdr's own versioned delete leaves it and names it, without failing.
    let out = store
        .delete_versions(std::slice::from_ref(data))
        .await
        .unwrap();
    assert_eq!(out.deleted, 0);
    assert_eq!(out.locked.len(), 1);
    assert_eq!(out.locked[0].key, *data);
    assert_eq!(
        out.locked[0].retention.as_ref().unwrap().mode,
        LockMode::Compliance
    );

    // A plain delete only hides it: the locked version is still there and
    // the backup restores from it by version.
    store.delete_many([data.as_str()]).await.unwrap();
    assert!(store.stat(data).await.unwrap().is_none());
    let all = versions(&store, data).await;
    assert!(
        all.iter().any(|(v, deleted)| *v == version && !deleted),
        "{all:?}"
    );
    let back = store
        .operator()
        .unwrap()
        .read_with(data)
        .version(&version)
        .await
        .unwrap();
    assert_eq!(back.to_bytes(), &b"a pg_dump stream"[..]);
}

#[tokio::test]
async fn without_object_lock_nothing_is_locked_and_deletes_are_as_before() {
    let Some(loc) = TestLocation::moto_bucket("lock_off", true) else {
        return;
    };
    // Object Lock is on in the bucket, off in cfdr: no retention is sent.
    assert_eq!(loc.options.object_lock, LockMode::Off);
    let store = loc.options.build().unwrap();
    assert_eq!(store.lock_mode(), LockMode::Off);
    store
        .put("wal/000000010000000000000001", &b"wal"[..])
        .await
        .unwrap();
    let probe = locked(&loc.options, LockMode::Compliance).build().unwrap();
    assert_eq!(
        probe
            .retention("wal/000000010000000000000001")
            .await
            .unwrap(),
        None,
        "an object written without object-lock has no retention"
    );
    // `retention` sends nothing when object lock is off.
    assert_eq!(
        store
            .retention("wal/000000010000000000000001")
            .await
            .unwrap(),
        None
    );
    store
        .delete_many(["wal/000000010000000000000001"])
        .await
        .unwrap();
    assert!(
        store
            .stat("wal/000000010000000000000001")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn object_lock_on_a_bucket_without_it_fails_the_write_with_the_fix() {
    let Some(loc) = TestLocation::moto_bucket("lock_missing", false) else {
        return;
    };
    let store = locked(&loc.options, LockMode::Compliance).build().unwrap();
    let err = Repository::init(store).await.unwrap_err().to_string();
    assert!(
        err.contains("PutObjectRetention") && err.contains("Object Lock enabled"),
        "{err}"
    );
    // Only S3 has per-object retention.
    let mut fs = StorageOptions::from_url("memory://lock-on-memory");
    fs.object_lock = LockMode::Governance;
    let err = fs.build().unwrap_err().to_string();
    assert!(err.contains("S3 repositories only"), "{err}");
}

#[tokio::test]
async fn check_reports_versioning_lock_and_weak_settings() {
    let Some(loc) = TestLocation::moto_bucket("lock_check", true) else {
        return;
    };
    let opts = locked(&loc.options, LockMode::Compliance);
    let repo = Repository::init(opts.build().unwrap()).await.unwrap();
    repo.begin_backup("logical", None)
        .unwrap()
        .commit(Default::default())
        .await
        .unwrap();
    let c = check_object_lock(&opts).await.unwrap();
    assert!(c.is_ok(), "{}", c.render());
    assert_eq!(c.versioning.as_deref(), Some("Enabled"));
    assert_eq!(c.bucket_lock, Some(true));
    assert!(c.warnings.is_empty(), "{}", c.render());
    let sample = c.sample.as_ref().unwrap();
    assert!(sample.key.ends_with("manifest.json"), "{sample:?}");
    assert_eq!(
        sample.retention.as_ref().unwrap().mode,
        LockMode::Compliance
    );

    // GOVERNANCE is reported as weaker.
    let gov = check_object_lock(&locked(&loc.options, LockMode::Governance))
        .await
        .unwrap();
    assert!(
        gov.warnings.iter().any(|w| w.contains("governance")),
        "{}",
        gov.render()
    );

    // Configured windows longer than what the newest manifest got.
    let mut longer = opts.clone();
    longer
        .lock_periods
        .kinds
        .insert("logical".into(), "3y".parse().unwrap());
    let short = check_object_lock(&longer).await.unwrap();
    assert!(
        short
            .warnings
            .iter()
            .any(|w| w.contains("before the end of its retention window")),
        "{}",
        short.render()
    );

    // A bucket without Object Lock: a warning, and a problem when cfdr is
    // configured to lock.
    let plain = TestLocation::moto_bucket("lock_check_plain", false).unwrap();
    let c = check_object_lock(&plain.options).await.unwrap();
    assert!(c.is_ok());
    assert_eq!(c.versioning.as_deref(), Some("Off"));
    assert_eq!(c.bucket_lock, Some(false));
    assert!(
        c.warnings.iter().any(|w| w.contains("no Object Lock")),
        "{}",
        c.render()
    );
    let c = check_object_lock(&locked(&plain.options, LockMode::Compliance))
        .await
        .unwrap();
    assert!(!c.is_ok(), "{}", c.render());
}
