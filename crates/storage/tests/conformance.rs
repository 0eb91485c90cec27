//! One storage conformance suite, run against memory, a local folder, the S3
//! server, Azurite and the GCS emulator (the last three started by
//! `scripts/test`; see cfdr-testing for how a missing one is reported).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::Duration;

use bytes::Bytes;
use cfdr_storage::{
    Compression, EncodeOptions, Error, Lease, ObjectInfo, Repository, SINGLE_REQUEST_MAX,
    StorageOptions, Store, decode_to, encode_to,
};
use cfdr_testing::{Backend, FaultLayer, FaultMode, FaultOp, TestLocation};
use futures::StreamExt;
use sha2::{Digest, Sha256};

fn sample(len: usize, seed: u64) -> Vec<u8> {
    cfdr_storage::sample_data(len, seed)
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn repo_for(loc: &TestLocation) -> Repository {
    Repository::init(loc.options.build().unwrap())
        .await
        .unwrap()
}

async fn round_trip_64mib(loc: TestLocation) {
    let store = loc.options.build().unwrap();
    let data = sample(64 << 20, 1);
    let want = sha(&data);
    let data = Bytes::from(data);

    // Raw (no compression): 8 parts of 8 MiB on multipart backends.
    let raw = encode_to(
        &store,
        "big/raw.bin",
        std::io::Cursor::new(data.clone()),
        &EncodeOptions::new(Compression::None),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        raw.stored,
        ObjectInfo {
            size: 64 << 20,
            sha256: want.clone()
        }
    );
    let meta = store.stat("big/raw.bin").await.unwrap().unwrap();
    assert_eq!(meta.size, 64 << 20);

    // zstd, streamed both ways.
    let enc = encode_to(
        &store,
        "big/data.zst",
        std::io::Cursor::new(data.clone()),
        &EncodeOptions::default(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(enc.raw_size, 64 << 20);
    assert!(
        enc.stored.size < 40 << 20,
        "zstd stored {} bytes",
        enc.stored.size
    );
    let mut out = Vec::new();
    let n = decode_to(&store, &enc, None, &mut out).await.unwrap();
    assert_eq!(n, 64 << 20);
    assert_eq!(sha(&out), want);
}

async fn flipped_byte_is_detected(loc: TestLocation) {
    let store = loc.options.build().unwrap();
    let data = sample(300_000, 2);
    let info = store.put("obj/a", data.clone()).await.unwrap();
    assert_eq!(store.get_verified("obj/a", &info).await.unwrap(), data);

    let mut bad = data.clone();
    bad[123_456] ^= 0x01;
    store.put("obj/a", bad).await.unwrap();
    let err = store.get_verified("obj/a", &info).await.unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { ref key, .. } if key == "obj/a"),
        "{err}"
    );
    assert!(err.to_string().contains("SHA-256"), "{err}");

    store.put("obj/a", data[..200_000].to_vec()).await.unwrap();
    let err = store.get_verified("obj/a", &info).await.unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

async fn lists_2500_keys(loc: TestLocation) {
    let store = loc.options.build().unwrap();
    let keys: Vec<String> = (0..2500)
        .map(|i| format!("many/{:03}/k{i:05}", i % 7))
        .collect();
    futures::stream::iter(keys.clone())
        .map(|k| {
            let store = store.clone();
            async move { store.put(&k, Bytes::from(k.clone())).await.unwrap() }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    store
        .put("other/x", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let mut listed: Vec<String> = store
        .list("many/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    listed.sort();
    let mut want = keys;
    want.sort();
    assert_eq!(listed.len(), 2500);
    assert_eq!(listed, want);
}

async fn conditional_create_race(loc: TestLocation) {
    let store = loc.options.build().unwrap();
    // Sequential: the second create is refused and the first value stays.
    store
        .create_if_absent("cc/one", Bytes::from_static(b"first"))
        .await
        .unwrap();
    let err = store
        .create_if_absent("cc/one", Bytes::from_static(b"second"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(store.get("cc/one").await.unwrap(), "first");

    if !loc.backend.has_atomic_create() {
        eprintln!(
            "NOTE {:?}: the emulator ignores create-only conditions; the concurrent race is not checked (see CompatOptions)",
            loc.backend
        );
        return;
    }
    for round in 0..10 {
        let key = format!("cc/race-{round}");
        let (a, b) = tokio::join!(
            store.create_if_absent(&key, Bytes::from_static(b"task-a")),
            store.create_if_absent(&key, Bytes::from_static(b"task-b")),
        );
        assert!(
            a.is_ok() != b.is_ok(),
            "round {round}: exactly one create must win: {a:?} {b:?}"
        );
        let (loser, winner_body) = match (a, b) {
            (Ok(_), Err(e)) => (e, "task-a"),
            (Err(e), Ok(_)) => (e, "task-b"),
            _ => unreachable!("checked above"),
        };
        assert!(matches!(loser, Error::AlreadyExists { .. }), "{loser}");
        // The stored value is the winner's, untouched by the loser.
        assert_eq!(store.get(&key).await.unwrap(), winner_body);
    }
}

async fn lock_contention_and_stale_takeover(loc: TestLocation) {
    let store = loc.options.build().unwrap();
    let held = Lease::acquire(&store, "prune", "cfdr-prune", Duration::from_secs(60))
        .await
        .unwrap();
    let err = Lease::acquire(&store, "prune", "second", Duration::from_secs(60))
        .await
        .unwrap_err();
    match &err {
        Error::Locked { holder, pid, .. } => {
            assert_eq!(holder, "cfdr-prune");
            assert_eq!(*pid, std::process::id());
        }
        other => panic!("expected Locked, got {other}"),
    }
    held.release().await.unwrap();
    let again = Lease::acquire(&store, "prune", "second", Duration::from_secs(60))
        .await
        .unwrap();
    again.release().await.unwrap();

    // A holder that stops renewing loses the lock to the next taker.
    let mut stale = Lease::acquire(&store, "drill", "crashed", Duration::from_millis(500))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let taker = Lease::acquire(&store, "drill", "taker", Duration::from_secs(60))
        .await
        .unwrap();
    let err = stale.renew().await.unwrap_err();
    assert!(matches!(err, Error::LockLost { .. }), "{err}");
    std::mem::forget(stale);
    taker.release().await.unwrap();

    if loc.backend.has_atomic_create() {
        // Two fresh takers at once: exactly one holds it.
        let (a, b) = tokio::join!(
            Lease::acquire(&store, "race", "a", Duration::from_secs(60)),
            Lease::acquire(&store, "race", "b", Duration::from_secs(60)),
        );
        assert!(
            a.is_ok() != b.is_ok(),
            "exactly one lock taker must win: {a:?} {b:?}"
        );
    }
}

async fn manifest_last_commit(loc: TestLocation) {
    let repo = repo_for(&loc).await;
    let mut done = repo.begin_backup("logical", Some("hourly")).unwrap();
    done.put_encoded(
        "dump.zst",
        std::io::Cursor::new(sample(10_000, 3)),
        &EncodeOptions::default(),
    )
    .await
    .unwrap();
    let committed = done.commit(Default::default()).await.unwrap();

    let mut dropped = repo.begin_backup("logical", Some("hourly")).unwrap();
    dropped
        .put_encoded(
            "dump.zst",
            std::io::Cursor::new(sample(10_000, 4)),
            &EncodeOptions::default(),
        )
        .await
        .unwrap();
    let dropped_id = dropped.id().clone();
    drop(dropped);

    assert_eq!(repo.backup_ids().await.unwrap(), vec![committed.id.clone()]);
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let leftovers = repo.leftovers(later).await.unwrap();
    assert_eq!(leftovers.len(), 1);
    assert_eq!(leftovers[0].id, dropped_id);
    let earlier = dropped_id.time() - jiff::SignedDuration::from_secs(3600);
    assert!(
        repo.leftovers(earlier).await.unwrap().is_empty(),
        "grace period must protect young leftovers"
    );

    // Re-opening sees the same, and the committed one verifies.
    let reopened = Repository::open(loc.options.build().unwrap())
        .await
        .unwrap();
    let manifest = reopened.manifest(&committed.id).await.unwrap();
    assert_eq!(manifest, committed);
    assert!(reopened.verify(&manifest).await.unwrap().is_ok());
    let err = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RepositoryExists { .. }), "{err}");
}

/// Commits under a seeded fault plan, then checks with a clean store that
/// every listed backup is whole and correct and every reported success is listed.
async fn commits_under_faults(loc: TestLocation, mode: FaultMode, seed: u64) {
    let clean = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let faults = FaultLayer::new(
        seed,
        0.2,
        mode,
        &[
            FaultOp::Read,
            FaultOp::Write,
            FaultOp::List,
            FaultOp::Stat,
            FaultOp::Delete,
        ],
    );
    let mut opts = loc.options.clone();
    opts.retry.max_retries = 1;
    opts.retry.min_delay_ms = 1;
    opts.retry.max_delay_ms = 5;
    let layer = faults.clone();
    let faulty_store: Store = opts.build_with(move |op| op.layer(layer)).unwrap();
    let faulty = Repository::open(faulty_store.clone()).await;
    let faulty = match faulty {
        Ok(r) => r,
        // Opening itself may hit a fault; the clean handle shares the data.
        Err(_) => Repository::open(faulty_store)
            .await
            .unwrap_or_else(|_| clean.clone()),
    };

    let mut sources = std::collections::HashMap::new();
    let mut succeeded = Vec::new();
    let mut failed = 0;
    for i in 0..20u64 {
        let Ok(mut w) = faulty.begin_backup("logical", Some("hourly")) else {
            continue;
        };
        let a = sample(20_000 + (i as usize) * 1_000, i);
        let b = sample(9 << 20, 100 + i); // above one part: exercises multipart
        sources.insert(w.id().clone(), (a.clone(), b.clone()));
        let result = async {
            w.put_encoded("a.zst", std::io::Cursor::new(a), &EncodeOptions::default())
                .await?;
            w.put_encoded(
                "b.raw",
                std::io::Cursor::new(b),
                &EncodeOptions::new(Compression::None),
            )
            .await?;
            w.commit(Default::default()).await
        }
        .await;
        match result {
            Ok(m) => succeeded.push(m.id),
            Err(_) => failed += 1,
        }
    }
    assert!(faults.injected() > 0, "the fault plan injected nothing");
    eprintln!(
        "{:?} {mode:?}: {} committed, {failed} failed, {} faults",
        loc.backend,
        succeeded.len(),
        faults.injected()
    );

    let listed = clean.backup_ids().await.unwrap();
    for id in &succeeded {
        assert!(listed.contains(id), "successful commit {id} is not listed");
    }
    for id in &listed {
        let m = clean.manifest(id).await.unwrap();
        let report = clean.verify(&m).await.unwrap();
        assert!(
            report.is_ok(),
            "listed backup {id} does not verify: {:?}",
            report.failures
        );
        let (a, b) = &sources[id];
        let mut out = Vec::new();
        decode_to(clean.store(), &m.objects[0], None, &mut out)
            .await
            .unwrap();
        assert_eq!(&out, a);
        out.clear();
        decode_to(clean.store(), &m.objects[1], None, &mut out)
            .await
            .unwrap();
        assert_eq!(&out, b);
    }
}

async fn wrong_credentials_fail_fast(loc: TestLocation) {
    let mut opts = loc.options.clone();
    let expected_hint = match loc.backend {
        Backend::S3 => {
            opts.s3.secret_access_key = Some("wrong-secret".into());
            "AWS_ACCESS_KEY_ID"
        }
        Backend::Azblob => {
            // A valid base64 key that is not the account's.
            opts.azblob.account_key =
                Some("d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5".into());
            "AZURE_STORAGE_KEY"
        }
        other => {
            eprintln!("NOTE {other:?}: the emulator accepts any credentials; not checked here");
            return;
        }
    };
    let started = std::time::Instant::now();
    let err = Repository::open(opts.build().unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }), "{err}");
    assert!(err.to_string().contains(expected_hint), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

async fn missing_bucket_is_named(loc: TestLocation) {
    let mut opts = loc.options.clone();
    let url = opts.url.clone().unwrap();
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, tail) = rest.split_once('/').unwrap();
    opts.url = Some(format!("{scheme}://no-such-bucket-cfdr/{tail}"));
    let started = std::time::Instant::now();
    let err = Repository::open(opts.build().unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::MissingBucket { .. }), "{err}");
    assert!(err.to_string().contains("no-such-bucket-cfdr"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

async fn unreachable_endpoint_fails_bounded(loc: TestLocation) {
    let mut opts = loc.options.clone();
    let dead = format!("http://127.0.0.1:{}", cfdr_testing::closed_port());
    opts.s3.endpoint = Some(dead.clone());
    opts.azblob.endpoint = Some(format!("{dead}/devstoreaccount1"));
    opts.gcs.endpoint = Some(dead.clone());
    let started = std::time::Instant::now();
    let err = Repository::open(opts.build().unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&dead), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// A source that yields `ok_bytes` and then fails, as a killed pg_dump would.
struct FailingSource {
    left: usize,
}

impl tokio::io::AsyncRead for FailingSource {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("pg_dump was killed")));
        }
        let n = self.left.min(buf.remaining()).min(64 << 10);
        let fill: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
        buf.put_slice(&fill);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

async fn aborted_upload_leaves_no_object(loc: TestLocation) {
    let store = loc.options.build().unwrap();
    // 12 MiB first: past the first multipart part, so an upload is in flight.
    let err = encode_to(
        &store,
        "aborted/object",
        FailingSource { left: 12 << 20 },
        &EncodeOptions::new(Compression::None),
        true,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Source { .. }), "{err}");
    assert!(err.to_string().contains("nothing was stored"), "{err}");
    assert!(
        store.stat("aborted/object").await.unwrap().is_none(),
        "a failed upload must not be visible"
    );
    assert!(store.list("aborted/").await.unwrap().is_empty());
}

/// Writers told the object's size (copies): one request up to
/// SINGLE_REQUEST_MAX, and a stated size that turns out too small still
/// stores every byte (as a multipart upload).
async fn sized_writes_store_every_byte(loc: TestLocation) {
    let store = loc.options.build().unwrap();
    let cases = [
        ("sized/exact-9mib", 9 << 20, 9 << 20),
        ("sized/at-the-limit", SINGLE_REQUEST_MAX, SINGLE_REQUEST_MAX),
        ("sized/understated", 20 << 20, 1 << 20),
        ("sized/empty", 0, 0),
    ];
    for (key, len, stated) in cases {
        let data = sample(len, len as u64);
        let mut w = store.writer_sized(key, true, stated as u64).await.unwrap();
        for chunk in data.chunks(1 << 20) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let info = w.finish().await.unwrap();
        assert_eq!(info.size, len as u64, "{key}");
        assert_eq!(info.sha256, sha(&data), "{key}");
        let back = store.get(key).await.unwrap();
        assert_eq!(sha(&back), sha(&data), "{key}");
    }
}

macro_rules! conformance {
    ($($module:ident => $backend:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            fn loc(test: &str) -> Option<TestLocation> {
                TestLocation::new($backend, test)
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn round_trip_64mib_with_checksum() {
                if let Some(l) = loc("round-trip") { super::round_trip_64mib(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sized_writes_store_every_byte() {
                if let Some(l) = loc("sized") { super::sized_writes_store_every_byte(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn flipped_byte_is_detected_on_read() {
                if let Some(l) = loc("flip") { super::flipped_byte_is_detected(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn aborted_upload_leaves_no_visible_object() {
                if let Some(l) = loc("abort") { super::aborted_upload_leaves_no_object(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lists_2500_keys() {
                if let Some(l) = loc("list") { super::lists_2500_keys(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn conditional_create_exactly_one_wins() {
                if let Some(l) = loc("cc") { super::conditional_create_race(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lock_contention_and_stale_takeover() {
                if let Some(l) = loc("lock") { super::lock_contention_and_stale_takeover(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn uncommitted_backup_is_not_listed() {
                if let Some(l) = loc("commit") { super::manifest_last_commit(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn commits_under_20_percent_failures() {
                if let Some(l) = loc("faults") { super::commits_under_faults(l, FaultMode::Fail, 7).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn commits_under_20_percent_truncation() {
                if let Some(l) = loc("truncate") { super::commits_under_faults(l, FaultMode::Truncate, 11).await }
            }
        }
    )*};
}

conformance! {
    memory => Backend::Memory,
    fs => Backend::Fs,
    s3 => Backend::S3,
    s3_moto => Backend::S3Moto,
    azblob => Backend::Azblob,
    gcs => Backend::Gcs,
}

macro_rules! bad_input {
    ($($module:ident => $backend:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn missing_bucket_is_named() {
                if let Some(l) = TestLocation::new($backend, "nobucket") { super::missing_bucket_is_named(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unreachable_endpoint_fails_in_bounded_time() {
                if let Some(l) = TestLocation::new($backend, "dead") { super::unreachable_endpoint_fails_bounded(l).await }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn wrong_credentials_fail_fast() {
                if let Some(l) = TestLocation::new($backend, "creds") { super::wrong_credentials_fail_fast(l).await }
            }
        }
    )*};
}

bad_input! {
    s3_bad_input => Backend::S3,
    azblob_bad_input => Backend::Azblob,
    gcs_bad_input => Backend::Gcs,
}

#[tokio::test]
async fn malformed_and_unknown_urls_are_refused_before_any_io() {
    for (url, needle) in [
        ("ftp://host/path", "unsupported repository scheme"),
        ("s3:///no-bucket", "bucket name is missing"),
        ("azblob:///x", "container name is missing"),
        ("gs://bucket/p?multipart=perhaps", "multipart"),
        ("http//missing-colon", "invalid"),
    ] {
        let result = StorageOptions::from_url(url).build();
        let Err(err) = result else {
            // A string without "://" is a local path; it must then fail to open.
            let store = result.unwrap();
            let err = Repository::open(store).await.unwrap_err();
            assert!(
                err.to_string().contains("cfdr-repo init")
                    || err.to_string().contains("does not exist"),
                "{url}: {err}"
            );
            continue;
        };
        assert!(
            err.to_string().to_lowercase().contains(needle),
            "{url}: {err}"
        );
    }
}

#[tokio::test]
async fn missing_fs_repository_says_how_to_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = StorageOptions::from_url(format!("file://{}/nothing-here", dir.path().display()))
        .build()
        .unwrap();
    let err = Repository::open(store.clone()).await.unwrap_err();
    assert!(err.to_string().contains("cfdr-repo init"), "{err}");
    assert!(!err.to_string().contains("--init"), "{err}");
    // Building the store and failing to open it wrote nothing.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    Repository::init(store.clone()).await.unwrap();
    Repository::open(store).await.unwrap();
}

#[tokio::test]
async fn reading_a_folder_repository_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let url = format!("file://{}", root.display());
    let repo = Repository::init(StorageOptions::from_url(url.clone()).build().unwrap())
        .await
        .unwrap();
    let mut backup = repo.begin_backup("logical", None).unwrap();
    backup
        .put_encoded(
            "dump.zst",
            std::io::Cursor::new(sample(1000, 1)),
            &EncodeOptions::default(),
        )
        .await
        .unwrap();
    backup.commit(Default::default()).await.unwrap();
    std::fs::remove_dir_all(root.join(".cfdr-tmp")).unwrap();

    // What list, info and verify-style reads do, on a fresh store.
    let repo = Repository::open(StorageOptions::from_url(url).build().unwrap())
        .await
        .unwrap();
    let manifests = repo.backups().await.unwrap();
    repo.latest_checks().await.unwrap();
    repo.leftovers(jiff::Timestamp::MAX).await.unwrap();
    assert!(repo.verify(&manifests[0]).await.unwrap().is_ok());
    assert!(
        !root.join(".cfdr-tmp").exists(),
        "a read created .cfdr-tmp/"
    );

    // Neither building nor reading a store on a missing folder creates it.
    let missing = dir.path().join("missing");
    let store = StorageOptions::from_url(format!("file://{}", missing.display()))
        .build()
        .unwrap();
    assert!(store.list("backups/").await.unwrap().is_empty());
    assert!(store.stat("cfdr.json").await.unwrap().is_none());
    assert!(matches!(
        store.get("cfdr.json").await.unwrap_err(),
        Error::NotFound { .. }
    ));
    assert!(!missing.exists(), "a read created {missing:?}");
    // The first write does.
    store.put("a", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Bytes::from_static(b"x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_calls_time_out_instead_of_hanging() {
    let loc = TestLocation::new(Backend::Memory, "stall").unwrap();
    let clean = loc.options.build().unwrap();
    clean.put("k", Bytes::from_static(b"v")).await.unwrap();
    let mut opts = loc.options.clone();
    opts.timeout.call_secs = 1;
    opts.timeout.io_secs = 1;
    opts.retry.max_retries = 1;
    opts.retry.min_delay_ms = 10;
    let stall = FaultLayer::new(
        1,
        1.0,
        FaultMode::Stall(Duration::from_secs(30)),
        &[FaultOp::Stat],
    );
    let store = opts.build_with(move |op| op.layer(stall)).unwrap();
    let started = std::time::Instant::now();
    let err = store.stat("k").await.unwrap_err();
    // Two 1 s calls and a retry delay; well under the 30 s stall even on a
    // loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("timeout"), "{err}");
}
