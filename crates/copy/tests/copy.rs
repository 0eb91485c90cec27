//! Copies of a primary holding every kind of object (a database backup
//! with a check record, a file archive, WAL segments and a timeline
//! history, a secret bundle, an incident) to each backend: complete,
//! verified, listed on the secondary, idempotent; a dry run writes nothing;
//! damage in the primary is reported and not copied; `follow` copies new
//! WAL within seconds, records the lag and holds the lock.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use cfdr_copy::{Copier, CopyOptions, FollowOptions, Report};
use cfdr_incident::{Change, Journal, Severity, Stamp};
use cfdr_secrets::{Encryption, Recipients, SecretBundle, SecretValue};
use cfdr_storage::secret_bundles::SecretStore;
use cfdr_storage::wal_archive::list_wal;
use cfdr_storage::{EncodeOptions, Manifest, Repository, StorageOptions, Store};
use cfdr_testing::{Backend, TestLocation};
use cfdr_wal_archive::{PushOptions, WalArchive};

const SYSID: u64 = 7_000_000_000_000_000_042;

/// A WAL segment of a synthetic PostgreSQL 15 cluster: a valid long page
/// header, then bytes that vary with `n`.
fn segment(n: u64) -> (String, Vec<u8>) {
    let size: u32 = 16 << 20;
    let mut b = vec![0u8; size as usize];
    b[0..2].copy_from_slice(&0xD110u16.to_ne_bytes());
    b[2..4].copy_from_slice(&2u16.to_ne_bytes());
    b[4..8].copy_from_slice(&1u32.to_ne_bytes());
    b[8..16].copy_from_slice(&(n * u64::from(size)).to_ne_bytes());
    b[24..32].copy_from_slice(&SYSID.to_ne_bytes());
    b[32..36].copy_from_slice(&size.to_ne_bytes());
    b[36..40].copy_from_slice(&8192u32.to_ne_bytes());
    for (i, byte) in b[8192..].iter_mut().enumerate().step_by(97) {
        *byte = (i as u64 ^ n.wrapping_mul(2654435761)) as u8;
    }
    (format!("00000001{:08X}{:08X}", n >> 8, n & 0xFF), b)
}

fn random(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

/// What the primary holds.
struct Fixture {
    logical: Manifest,
    archive: Manifest,
}

async fn fill(repo: &Repository, wal_from: u64, wal_count: u64) -> Fixture {
    // A database backup with a 3 MiB object (several parts on S3) and a
    // check record.
    let mut b = repo.begin_backup("logical", Some("hourly")).unwrap();
    let big: &'static [u8] = Box::leak(random(3 << 20).into_boxed_slice());
    b.put_encoded(
        "dump.pgdump",
        big,
        &EncodeOptions::new(cfdr_storage::Compression::None),
    )
    .await
    .unwrap();
    b.put_raw("toc.json", b"{\"tables\":3}".to_vec())
        .await
        .unwrap();
    let logical = b.commit(Default::default()).await.unwrap();
    let check = repo.verify(&logical).await.unwrap().check_record();
    repo.record_check(&check).await.unwrap();
    // A configuration file archive.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.toml"), "risk = 3\n").unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(dir.path().join("conf.d/limits.toml"), "max = 10\n").unwrap();
    let req =
        cfdr_files::BackupRequest::new(cfdr_files::FileClass::Config, vec![dir.path().into()]);
    let archive = cfdr_files::backup(repo, &req, &EncodeOptions::default())
        .await
        .unwrap()
        .manifest;
    push_wal(repo.store(), wal_from, wal_count).await;
    // A secret bundle and an incident.
    let (_, public) = cfdr_secrets::generate_identity();
    let mut bundle = SecretBundle::new();
    bundle
        .insert_value("EXCHANGE_API_KEY", SecretValue::new(b"k-123".to_vec()))
        .unwrap();
    let recipients = Recipients::parse([public.as_str()]).unwrap();
    SecretStore::new(repo)
        .backup(
            "default",
            &bundle,
            &Encryption::Recipients(recipients),
            false,
            "test",
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
    let opened = Change::Opened {
        title: "replica lag".into(),
        severity: Severity::P2,
        commander: None,
        halt: false,
        text: None,
    };
    Journal::new(repo.store().clone())
        .open(&Stamp::new("test", jiff::Timestamp::now()), opened)
        .await
        .unwrap();
    Fixture { logical, archive }
}

async fn push_wal(store: &Store, from: u64, count: u64) {
    let archive = WalArchive::new(store.clone());
    for n in from..from + count {
        let (name, data) = segment(n);
        archive
            .push_bytes(&name, data.into(), &PushOptions::default())
            .await
            .unwrap();
    }
}

async fn primary() -> (TestLocation, Repository) {
    let loc = TestLocation::new(Backend::Fs, "copy-primary").unwrap();
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    (loc, repo)
}

fn copier(primary: &Repository, secondary: &StorageOptions, opts: CopyOptions) -> Copier {
    Copier::new(
        primary.store().clone(),
        secondary.build().unwrap(),
        "dr",
        opts,
    )
    .unwrap()
}

fn clean(r: &Report) {
    assert!(
        r.is_clean(),
        "differ {:?} missing {:?} failed {:?}",
        r.differ,
        r.missing,
        r.failed
    );
}

async fn nothing_written(store: &Store) {
    for prefix in ["backups/", "wal/", "secrets/", "incidents/", "locks/"] {
        assert!(store.list(prefix).await.unwrap().is_empty(), "{prefix}");
    }
    assert!(store.stat("cfdr.json").await.unwrap().is_none());
}

/// Everything a restore reads is on the secondary and verifies there.
async fn same_content(primary: &Repository, secondary: &Store) {
    let copy = Repository::open(secondary.clone()).await.unwrap();
    assert_eq!(copy.config().id, primary.config().id);
    let ours = primary.backups().await.unwrap();
    let theirs = copy.backups().await.unwrap();
    assert_eq!(theirs, ours);
    for m in &theirs {
        let v = copy.verify(m).await.unwrap();
        assert!(v.is_ok(), "{:?}", v.failures);
        assert_eq!(
            copy.checks(&m.id).await.unwrap(),
            primary.checks(&m.id).await.unwrap()
        );
    }
    let (a, b) = (
        list_wal(primary.store()).await.unwrap(),
        list_wal(secondary).await.unwrap(),
    );
    assert_eq!(b.files, a.files);
    assert!(b.has_cluster);
    for prefix in ["secrets/", "incidents/"] {
        let (a, b) = (
            primary.store().list(prefix).await.unwrap(),
            secondary.list(prefix).await.unwrap(),
        );
        let keys = |l: &[cfdr_storage::ObjectMeta]| {
            l.iter()
                .map(|m| (m.key.clone(), m.size))
                .collect::<Vec<_>>()
        };
        assert!(!a.is_empty(), "{prefix}");
        assert_eq!(keys(&b), keys(&a), "{prefix}");
    }
    // The secret bundle reads back on the secondary.
    let copied = SecretStore::new(&copy).list(None).await.unwrap();
    assert_eq!(copied, SecretStore::new(primary).list(None).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_to_every_backend_completely_and_a_second_run_transfers_nothing() {
    let (_p, repo) = primary().await;
    let fixture = fill(&repo, 1, 2).await;
    for backend in [
        Backend::Fs,
        Backend::S3,
        Backend::S3Moto,
        Backend::Azblob,
        Backend::Gcs,
    ] {
        let Some(loc) = TestLocation::new(backend, "copy-to") else {
            continue;
        };
        let secondary = loc.options.build().unwrap();
        // A dry run lists what would go and writes nothing.
        let dry = copier(
            &repo,
            &loc.options,
            CopyOptions {
                dry_run: true,
                ..Default::default()
            },
        );
        let planned = dry.run().await.unwrap();
        clean(&planned);
        assert!(
            planned.dry_run && planned.copied.objects > 10,
            "{planned:?}"
        );
        assert_eq!(planned.already_there.objects, 0);
        assert!(planned.lag_bytes > 3 << 20, "{planned:?}");
        nothing_written(&secondary).await;

        let c = copier(&repo, &loc.options, CopyOptions::default());
        let first = c.run().await.unwrap();
        clean(&first);
        assert_eq!(first.copied, planned.copied, "{backend:?}");
        let mut ids = first.backups_copied.clone();
        ids.sort();
        let mut want = vec![
            fixture.logical.id.to_string(),
            fixture.archive.id.to_string(),
        ];
        want.sort();
        assert_eq!(ids, want, "{backend:?}");
        assert_eq!(first.lag_bytes, 0);
        same_content(&repo, &secondary).await;

        let second = c.run().await.unwrap();
        clean(&second);
        assert_eq!(second.copied.objects, 0, "{backend:?}: {second:?}");
        assert_eq!(second.already_there, first.copied, "{backend:?}");
        assert!(second.backups_copied.is_empty());
        // The full audit reads everything back and agrees.
        let audit = copier(
            &repo,
            &loc.options,
            CopyOptions {
                verify_secondary: true,
                ..Default::default()
            },
        );
        let audited = audit.run().await.unwrap();
        clean(&audited);
        assert_eq!(audited.already_there, first.copied, "{backend:?}");
    }
    // The lag record the last run left in the primary.
    let state = cfdr_copy::read_state(repo.store(), "dr")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (state.version, state.name.as_str(), state.lag_bytes),
        (1, "dr", 0)
    );
    let raw: serde_json::Value =
        serde_json::from_slice(&repo.store().get("copy-state/dr.json").await.unwrap()).unwrap();
    let mut fields: Vec<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["lag_bytes", "lag_seconds", "name", "updated_at", "version"]
    );
}

/// Flips one byte of the object at `key` in a local repository.
fn flip(root: &std::path::Path, key: &str, at_end: u64) {
    let path = root.join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() - 1 - at_end as usize;
    bytes[i] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
}

fn root(loc: &TestLocation) -> std::path::PathBuf {
    let url = loc.options.url.clone().unwrap();
    url.strip_prefix("file://").unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_in_the_primary_is_reported_and_not_copied_as_good() {
    let (p, repo) = primary().await;
    let fixture = fill(&repo, 1, 2).await;
    let damaged = &fixture.logical.objects[0].key;
    flip(&root(&p), damaged, 100);
    let (bad_wal, _) = segment(2);
    let bad_wal = cfdr_storage::wal_archive::wal_key(&bad_wal);
    flip(&root(&p), &bad_wal, 3);

    let loc = TestLocation::new(Backend::Fs, "copy-damaged").unwrap();
    let secondary = loc.options.build().unwrap();
    let report = copier(&repo, &loc.options, CopyOptions::default())
        .run()
        .await
        .unwrap();
    let failed: Vec<&str> = report.failed.iter().map(|p| p.key.as_str()).collect();
    assert!(failed.contains(&damaged.as_str()), "{:?}", report.failed);
    assert!(failed.contains(&bad_wal.as_str()), "{:?}", report.failed);
    for p in report
        .failed
        .iter()
        .filter(|p| p.key == *damaged || p.key == bad_wal)
    {
        assert!(
            p.reason.contains("damaged in the primary, not copied"),
            "{p:?}"
        );
    }
    // The backup's manifest is held back, so it is not listed; the rest is.
    let manifest = fixture.logical.id.manifest_key();
    assert!(failed.contains(&manifest.as_str()), "{:?}", report.failed);
    assert!(secondary.stat(damaged).await.unwrap().is_none());
    assert!(secondary.stat(&bad_wal).await.unwrap().is_none());
    let copy = Repository::open(secondary.clone()).await.unwrap();
    assert_eq!(
        copy.backup_ids().await.unwrap(),
        vec![fixture.archive.id.clone()]
    );
    assert_eq!(report.backups_copied, vec![fixture.archive.id.to_string()]);
    assert!(report.lag_bytes >= fixture.logical.objects[0].stored.size);
    assert_eq!(report.failed.len(), 3, "{:?}", report.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secondary_that_differs_is_reported_and_left_alone() {
    let (_p, repo) = primary().await;
    fill(&repo, 1, 1).await;
    let loc = TestLocation::new(Backend::Fs, "copy-differ").unwrap();
    let secondary = loc.options.build().unwrap();
    copier(&repo, &loc.options, CopyOptions::default())
        .run()
        .await
        .unwrap();
    // Someone rewrote an incident record on the secondary.
    let key = secondary.list("incidents/").await.unwrap()[0].key.clone();
    secondary
        .put(&key, b"{\"forged\":true}".to_vec())
        .await
        .unwrap();
    let report = copier(&repo, &loc.options, CopyOptions::default())
        .run()
        .await
        .unwrap();
    assert_eq!(report.differ.len(), 1, "{report:?}");
    assert_eq!(report.differ[0].key, key);
    assert_eq!(
        secondary.get(&key).await.unwrap().as_ref(),
        b"{\"forged\":true}"
    );
    // Another repository is refused before anything is written.
    let other = TestLocation::new(Backend::Fs, "copy-foreign").unwrap();
    Repository::init(other.options.build().unwrap())
        .await
        .unwrap();
    let err = copier(&repo, &other.options, CopyOptions::default())
        .run()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("holds another cfdr repository"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_copies_new_wal_within_seconds_records_the_lag_and_holds_the_lock() {
    let (_p, repo) = primary().await;
    fill(&repo, 1, 1).await;
    let loc = TestLocation::new(Backend::Fs, "copy-follow").unwrap();
    let secondary = loc.options.build().unwrap();
    let c = copier(&repo, &loc.options, CopyOptions::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pace = FollowOptions {
        interval: Duration::from_millis(200),
        full_every: Duration::from_secs(600),
    };
    let passes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = passes.clone();
    let follower = tokio::spawn(async move {
        c.follow(&pace, async { drop(stop_rx.await) }, |_| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .await
    });
    let (first, _) = segment(1);
    let first = cfdr_storage::wal_archive::wal_key(&first);
    cfdr_testing::eventually("the first pass", cfdr_testing::PATIENCE, || {
        let s = secondary.clone();
        let k = first.clone();
        async move {
            s.stat(&k)
                .await
                .unwrap()
                .map(|_| ())
                .ok_or("not yet".to_owned())
        }
    })
    .await;
    // A second copy to the same secondary is refused while follow runs.
    let err = copier(&repo, &loc.options, CopyOptions::default())
        .run()
        .await
        .unwrap_err();
    assert!(err.is_locked(), "{err}");

    // New WAL arrives in the primary: on the secondary within seconds.
    push_wal(repo.store(), 2, 2).await;
    let arrived = std::time::Instant::now();
    for n in [2, 3] {
        let key = cfdr_storage::wal_archive::wal_key(&segment(n).0);
        cfdr_testing::eventually("new WAL on the secondary", Duration::from_secs(30), || {
            let s = secondary.clone();
            let k = key.clone();
            async move {
                s.stat(&k)
                    .await
                    .unwrap()
                    .map(|_| ())
                    .ok_or("not yet".to_owned())
            }
        })
        .await;
    }
    assert!(
        arrived.elapsed() < Duration::from_secs(5),
        "{:?}",
        arrived.elapsed()
    );
    let state = cfdr_testing::eventually("the lag record", Duration::from_secs(30), || {
        let store = repo.store().clone();
        async move {
            match cfdr_copy::read_state(&store, "dr").await.unwrap() {
                Some(s) if s.lag_bytes == 0 => Ok(s),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!((state.name.as_str(), state.lag_seconds), ("dr", 0.0));
    stop_tx.send(()).unwrap();
    follower.await.unwrap().unwrap();
    assert!(passes.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    // Stopped: the lock is free again and nothing is left to copy.
    let after = copier(&repo, &loc.options, CopyOptions::default())
        .run()
        .await
        .unwrap();
    clean(&after);
    assert_eq!(after.copied.objects, 0, "{after:?}");
}
