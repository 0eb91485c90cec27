//! A damaged logical backup against a real PostgreSQL 15 cluster: whatever
//! the damage reaches first (pg_restore, a copy session, an early index
//! build, the archive reader, the decoder), the restore ends within
//! seconds, names the damaged object and leaves no database behind.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cfdr_pg::logical::{self, LogicalOptions, RestoreRequest};
use cfdr_pg::{Error, LocalCluster};
use cfdr_storage::{Compression, EncodeOptions, Manifest, Repository};
use cfdr_testing::pg::cryptofunk_cluster;
use cfdr_testing::{Backend, FaultLayer, FaultMode, FaultOp, TestLocation};
use sqlx::{Connection, Executor};

const DB: &str = "cryptofunk";

/// Far above a failing restore of this size on a loaded two-core machine,
/// far below a hang.
const LIMIT: Duration = Duration::from_secs(60);

/// Two tables of 200,000 rows (about 16 MB each, with primary keys, the
/// first with an index) after the CryptoFunk schema: enough rows follow
/// any damage to fill every buffer between the download and the copy
/// sessions.
const BIG_TABLES: &str = "
CREATE TABLE t1 (id bigint PRIMARY KEY, v text);
INSERT INTO t1 SELECT g, md5(g::text) || md5((g * 3)::text) FROM generate_series(1, 200000) g;
CREATE INDEX t1_v ON t1 (v);
CREATE TABLE t2 AS SELECT * FROM t1;
ALTER TABLE t2 ADD PRIMARY KEY (id);
";

async fn backed_up(
    test: &str,
    compression: Compression,
) -> Option<(LocalCluster, TestLocation, Repository, Manifest)> {
    let cluster = match cryptofunk_cluster(DB, 10, 500).await {
        Ok(c) => c,
        Err(e) => {
            return cfdr_testing::missing(
                &format!("a PostgreSQL 15 cluster ({e}; apt-get install postgresql-15)"),
                test,
            );
        }
    };
    let mut conn = cluster.target(DB).connect().await.unwrap();
    conn.execute(BIG_TABLES).await.unwrap();
    let loc = TestLocation::new(Backend::Fs, test)?;
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let encode = EncodeOptions {
        compression,
        ..EncodeOptions::default()
    };
    let manifest = logical::backup(
        &repo,
        &cluster.target(DB),
        "hourly",
        &LogicalOptions::default(),
        &encode,
    )
    .await
    .unwrap();
    Some((cluster, loc, repo, manifest))
}

/// Restores the backup into a new database with `jobs` sessions: it must
/// fail within [`LIMIT`] and leave no database; its error.
async fn failed_restore(
    cluster: &LocalCluster,
    repo: &Repository,
    manifest: &Manifest,
    case: &str,
    jobs: u32,
) -> Error {
    let server = cluster.target("postgres");
    let target_db = format!("damaged_{}_{jobs}", case.replace([' ', '/'], "_"));
    let req = RestoreRequest {
        target_db: Some(target_db.clone()),
        jobs,
        ..RestoreRequest::default()
    };
    let opts = LogicalOptions::default();
    let restored = tokio::time::timeout(
        LIMIT,
        logical::restore(repo, &server, manifest, &opts, &req, |_| {}),
    )
    .await;
    let Ok(restored) = restored else {
        panic!("{case}, {jobs} jobs: the restore hung (no result after {LIMIT:?})");
    };
    let err = restored.unwrap_err();
    assert!(
        !cfdr_pg::admin::database_exists(&server, &target_db)
            .await
            .unwrap(),
        "{case}, {jobs} jobs: the half-restored {target_db} must be dropped ({err})"
    );
    err
}

/// Stores `damaged` in place of the backup's object and restores it with
/// 1, 2 and 3 jobs: each fails within [`LIMIT`] with the object named as
/// corrupt, and its target database is gone.
async fn restore_fails_fast(
    cluster: &LocalCluster,
    repo: &Repository,
    manifest: &Manifest,
    case: &str,
    damaged: Vec<u8>,
) {
    let key = manifest.objects[0].key.clone();
    repo.store().put(&key, damaged).await.unwrap();
    for jobs in [1, 2, 3] {
        let err = failed_restore(cluster, repo, manifest, case, jobs).await;
        assert!(
            matches!(&err, Error::Storage(cfdr_storage::Error::Corrupt { key: k, .. }) if *k == key),
            "{case}, {jobs} jobs: the damaged object must be the error, not its symptom: {err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("object {key} is corrupt")),
            "{case}, {jobs} jobs: {err}"
        );
    }
}

/// The first byte at or after `from` that is a digit or a lowercase hex
/// letter (inside a row of the uncompressed dump).
fn row_byte(bytes: &[u8], from: usize) -> usize {
    from + bytes[from..]
        .iter()
        .position(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_an_uncompressed_dump_ends_the_restore_and_names_the_object() {
    let test = "restore_damage_uncompressed";
    let Some((cluster, _loc, repo, manifest)) = backed_up(test, Compression::None).await else {
        return;
    };
    let stored = repo
        .store()
        .get(&manifest.objects[0].key)
        .await
        .unwrap()
        .to_vec();
    assert!(
        stored.starts_with(b"PGDMP"),
        "stored as pg_dump wrote it, so the flips below land where meant"
    );

    // A byte that is not UTF-8 inside a row: COPY rejects the row while
    // megabytes of rows still follow (at a quarter, half and three
    // quarters of the dump), or pg_restore rejects the schema (near the
    // front, in the table of contents).
    for (case, at) in [
        ("toc", 600),
        ("quarter", stored.len() / 4),
        ("half", stored.len() / 2),
        ("three quarters", stored.len() * 3 / 4),
    ] {
        let mut damaged = stored.clone();
        let i = row_byte(&damaged, at);
        damaged[i] ^= 0x80;
        restore_fails_fast(&cluster, &repo, &manifest, case, damaged).await;
    }

    // A changed digit makes two rows of the first big table share a
    // primary key: the rows load, its early key build fails while the
    // other table still loads. (pg_dump writes each row as a chunk after
    // its length, whose high byte is 0.)
    let mut damaged = stored.clone();
    let row = memchr::memmem::find(&damaged, b"\x00100000\t").unwrap();
    damaged[row + 6] = b'1';
    restore_fails_fast(&cluster, &repo, &manifest, "duplicate key", damaged).await;

    // Cut in half: the archive reader finds a block cut short.
    let cut = stored[..stored.len() / 2].to_vec();
    restore_fails_fast(&cluster, &repo, &manifest, "truncated", cut).await;

    // An intact object and a server that refuses index builds (an event
    // trigger in template0, which a restore's new database is copied
    // from): the index of the first big table fails while the other still
    // loads, and that is the error.
    let key = &manifest.objects[0].key;
    repo.store().put(key, stored).await.unwrap();
    let mut admin = cluster.target("postgres").connect().await.unwrap();
    admin
        .execute("ALTER DATABASE template0 ALLOW_CONNECTIONS true")
        .await
        .unwrap();
    let mut template = cluster.target("template0").connect().await.unwrap();
    template
        .execute(
            "CREATE FUNCTION refuse_index() RETURNS event_trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'index builds are refused here'; END $$;
             CREATE EVENT TRIGGER refuse_index ON ddl_command_start
               WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION refuse_index();",
        )
        .await
        .unwrap();
    // CREATE DATABASE copies a template only when no one is connected to it.
    template.close().await.unwrap();
    admin
        .execute("ALTER DATABASE template0 ALLOW_CONNECTIONS false")
        .await
        .unwrap();
    for jobs in [1, 2, 3] {
        let err = failed_restore(&cluster, &repo, &manifest, "index build", jobs).await;
        let text = err.to_string();
        assert!(
            !matches!(err, Error::Storage(_)) && text.contains("index builds are refused here"),
            "index build, {jobs} jobs: the first failure is the error: {text}"
        );
        assert!(
            jobs == 1 || text.contains("creating INDEX t1_v"),
            "index build, {jobs} jobs: built alongside the data: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_a_zstd_dump_ends_the_restore_and_names_the_object() {
    let test = "restore_damage_zstd";
    let Some((cluster, loc, repo, manifest)) = backed_up(test, Compression::Zstd).await else {
        return;
    };
    let stored = repo
        .store()
        .get(&manifest.objects[0].key)
        .await
        .unwrap()
        .to_vec();
    // The decoder either rejects the frame or passes a changed literal on
    // to COPY (the frame checksum comes at the end).
    for (case, at, flip) in [
        ("zstd quarter", stored.len() / 4, 0x80),
        ("zstd half", stored.len() / 2, 0x01),
        ("zstd three quarters", stored.len() * 3 / 4, 0x20),
    ] {
        let mut damaged = stored.clone();
        damaged[at] ^= flip;
        restore_fails_fast(&cluster, &repo, &manifest, case, damaged).await;
    }

    // The storage failing a read (no retries) somewhere in the download:
    // the restore ends with that error and leaves no database.
    repo.store()
        .put(&manifest.objects[0].key, stored)
        .await
        .unwrap();
    let mut failed = 0;
    for seed in 1..=8u64 {
        let jobs = 1 + (seed % 3) as u32;
        let faults = FaultLayer::new(seed, 0.2, FaultMode::Fail, &[FaultOp::Read]);
        let mut opts = loc.options.clone();
        opts.retry.max_retries = 0;
        let store = opts.build_with(move |op| op.layer(faults)).unwrap();
        // Opening reads too; the plan lets one of a few tries through.
        let mut faulty = None;
        for _ in 0..50 {
            if let Ok(r) = Repository::open(store.clone()).await {
                faulty = Some(r);
                break;
            }
        }
        let faulty = faulty.unwrap();
        let case = format!("storage fault {seed}");
        let server = cluster.target("postgres");
        let target_db = format!("storage_fault_{seed}");
        let req = RestoreRequest {
            target_db: Some(target_db.clone()),
            jobs,
            ..RestoreRequest::default()
        };
        let opts = LogicalOptions::default();
        let restored = tokio::time::timeout(
            LIMIT,
            logical::restore(&faulty, &server, &manifest, &opts, &req, |_| {}),
        )
        .await
        .unwrap_or_else(|_| panic!("{case}, {jobs} jobs: the restore hung"));
        match restored {
            Ok(_) => cfdr_pg::admin::drop_database(&server, &target_db)
                .await
                .unwrap(),
            Err(err) => {
                failed += 1;
                assert!(
                    err.to_string().contains("injected Read fault"),
                    "{case}, {jobs} jobs: {err}"
                );
                assert!(
                    !cfdr_pg::admin::database_exists(&server, &target_db)
                        .await
                        .unwrap(),
                    "{case}, {jobs} jobs: {target_db} must be dropped"
                );
            }
        }
    }
    // The plan fails reads in every pass (schema, script, data) across
    // these seeds; a change in how many reads a pass makes moves them.
    assert!(failed >= 2, "only {failed} restores met a storage fault");
}
