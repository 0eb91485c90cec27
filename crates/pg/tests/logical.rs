//! Logical backup and restore against a real PostgreSQL 15 cluster (started
//! in a temp dir by the test) and real storage endpoints.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cfdr_pg::logical::{self, LogicalDetails, LogicalOptions, RestoreRequest};
use cfdr_pg::{Error, LocalCluster, PgBin};
use cfdr_secrets::{Identities, Recipients};
use cfdr_storage::{Compression, EncodeOptions, Repository};
use cfdr_testing::pg::{content_fingerprint, cryptofunk_cluster};
use cfdr_testing::{Backend, TestLocation};

const DB: &str = "cryptofunk";

async fn cluster(test: &str) -> Option<LocalCluster> {
    match cryptofunk_cluster(DB, 50, 5_000).await {
        Ok(c) => Some(c),
        Err(e) => cfdr_testing::missing(
            &format!("a PostgreSQL 15 cluster ({e}; apt-get install postgresql-15)"),
            test,
        ),
    }
}

/// A loaded cluster and an initialised repository in a temp folder.
async fn setup(test: &str) -> Option<(LocalCluster, TestLocation, Repository)> {
    let cluster = cluster(test).await?;
    let loc = TestLocation::new(Backend::Fs, test)?;
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    Some((cluster, loc, repo))
}

async fn schema_only(cluster: &LocalCluster, db: &str) -> String {
    let out = tokio::process::Command::new(cluster.bin().path("pg_dump"))
        .args(["--schema-only", "--no-password"])
        .envs(cluster.target(db).tool_env())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // \restrict lines carry a random key per dump (PostgreSQL 15.14+).
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn keys() -> (Recipients, Arc<Identities>) {
    let (secret, public) = cfdr_secrets::generate_identity();
    (
        Recipients::parse([public.as_str()]).unwrap(),
        Arc::new(Identities::from_text(secret.as_str()).unwrap()),
    )
}

async fn round_trip(backend: Backend, test: &str) {
    let Some(loc) = TestLocation::new(backend, test) else {
        return;
    };
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let source = cluster.target(DB);
    // A table several times the 1 MiB slice a parallel restore deals out
    // per session, so its rows really are split between sessions.
    sqlx::query(
        "CREATE TABLE public.fills AS SELECT g AS id, repeat(md5(g::text), 2) || E'\\\\.\\t\\n' AS note FROM generate_series(1, 60000) g",
    )
    .execute(&mut source.connect().await.unwrap())
    .await
    .unwrap();
    let want_schema = schema_only(&cluster, DB).await;
    let want_data = content_fingerprint(&source).await.unwrap();
    let opts = LogicalOptions::default();
    let (recipients, identities) = keys();

    // One session (a single pg_restore) and the parallel passes, across
    // the codecs.
    let mut jobs = [1, 3, 2, 1].into_iter();
    for compression in [Compression::Gzip, Compression::Zstd] {
        for encrypted in [false, true] {
            let jobs = jobs.next().unwrap_or(2);
            let mut encode = EncodeOptions::new(compression);
            encode.recipients = encrypted.then(|| recipients.clone());
            let manifest = logical::backup(&repo, &source, "hourly", &opts, &encode)
                .await
                .unwrap();
            let details = LogicalDetails::of(&manifest).unwrap();
            assert_eq!(details.row_counts["trades"], 5_000);
            assert_eq!(details.row_counts["trading_sessions"], 50);
            assert_eq!(manifest.class.as_deref(), Some("hourly"));
            assert_eq!(manifest.objects[0].codec.is_encrypted(), encrypted);

            let req = RestoreRequest {
                identities: encrypted.then(|| identities.clone()),
                jobs,
                ..Default::default()
            };
            let report = logical::restore(&repo, &source, &manifest, &opts, &req, |_| {})
                .await
                .unwrap();
            assert_ne!(report.database, DB, "restore goes to a new database");
            // Parallel restores read cfdr's dumps in-process (not through
            // pg_restore's script) and build the schema's indexes and keys
            // while later tables load.
            let data_step = report.steps.iter().find(|s| s.name.starts_with("data ("));
            match data_step {
                Some(step) => {
                    let want = format!("data ({jobs} copy sessions; ");
                    assert!(jobs > 1 && step.name.starts_with(&want), "{step:?}");
                    assert!(!step.name.contains("; 0 indexes"), "{step:?}");
                }
                None => assert_eq!(jobs, 1, "{:?}", report.steps),
            }
            let restored = cluster.target(&report.database);
            assert_eq!(
                schema_only(&cluster, &report.database).await,
                want_schema,
                "{compression:?} encrypted={encrypted} jobs={jobs}"
            );
            assert_eq!(
                content_fingerprint(&restored).await.unwrap(),
                want_data,
                "{compression:?} encrypted={encrypted} jobs={jobs}"
            );
            cfdr_pg::admin::drop_database(&source, &report.database)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_fs_every_codec() {
    round_trip(Backend::Fs, "round_trip_on_fs_every_codec").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_s3_every_codec() {
    round_trip(Backend::S3, "round_trip_on_s3_every_codec").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_writes_is_consistent_and_swap_keeps_the_old_database() {
    let test = "backup_during_writes";
    let Some((cluster, _repo_dir, repo)) = setup(test).await else {
        return;
    };
    let source = cluster.target(DB);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(cfdr_testing::pg::write_workload(
        source.clone(),
        stop.clone(),
        Duration::from_millis(2),
    ));
    // The backup starts while rows are arriving, and more arrive after its
    // snapshot: wait for both rather than for a fixed time.
    let rows_beyond = |floor: i64| {
        let source = source.clone();
        move || {
            let source = source.clone();
            async move {
                let mut conn = source.connect().await.map_err(|e| e.to_string())?;
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM trades")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                if n > floor {
                    Ok(())
                } else {
                    Err(format!("{n} trades"))
                }
            }
        }
    };
    cfdr_testing::eventually(
        "the workload writes",
        cfdr_testing::PATIENCE,
        rows_beyond(5_010),
    )
    .await;
    let opts = LogicalOptions::default();
    let manifest = logical::backup(&repo, &source, "daily", &opts, &EncodeOptions::default())
        .await
        .unwrap();
    let recorded = LogicalDetails::of(&manifest).unwrap().row_counts["trades"];
    cfdr_testing::eventually(
        "rows written after the backup's snapshot",
        cfdr_testing::PATIENCE,
        rows_beyond(recorded),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let inserted = writer.await.unwrap().unwrap();
    assert!(
        inserted > 10,
        "the workload must have been writing ({inserted} rows)"
    );

    assert!(
        recorded > 5_000 && recorded < 5_000 + inserted as i64,
        "snapshot count {recorded}"
    );
    // restore() itself checks restored counts against the manifest.
    let req = RestoreRequest {
        swap: true,
        ..Default::default()
    };
    let report = logical::restore(&repo, &source, &manifest, &opts, &req, |_| {})
        .await
        .unwrap();
    assert_eq!(report.database, DB);
    let previous = report.previous.clone().unwrap();
    assert!(previous.starts_with("cryptofunk_before_"), "{previous}");
    let live = content_fingerprint(&source).await.unwrap();
    let old = content_fingerprint(&cluster.target(&previous))
        .await
        .unwrap();
    assert_ne!(
        live, old,
        "the old database keeps the rows written after the backup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_clear_and_leave_no_manifest_or_damage() {
    let test = "failures_are_clear";
    let Some((cluster, _repo_dir, repo)) = setup(test).await else {
        return;
    };
    let source = cluster.target(DB);
    let opts = LogicalOptions::default();
    let encode = EncodeOptions::default();

    // Missing database.
    let err = logical::backup(&repo, &cluster.target("nosuchdb"), "hourly", &opts, &encode)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nosuchdb"), "{err}");

    // pg_dump killed mid-stream: a wrapper that cuts the dump short and dies by SIGKILL.
    let dir = tempfile::tempdir().unwrap();
    let real = cluster.bin().path("pg_dump");
    let wrapper = dir.path().join("pg_dump");
    std::fs::write(&wrapper, format!("#!/bin/sh\nif [ \"$1\" = --version ]; then exec {} --version; fi\n{} \"$@\" | head -c 20000\nkill -9 $$\n", real.display(), real.display())).unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let killed = LogicalOptions {
        bin_dir: Some(dir.path().to_owned()),
        ..LogicalOptions::default()
    };
    let err = logical::backup(&repo, &source, "hourly", &killed, &encode)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ToolFailed { .. }), "{err}");
    assert!(err.to_string().contains("pg_dump failed"), "{err}");
    assert!(
        repo.backup_ids().await.unwrap().is_empty(),
        "a failed backup must leave no manifest"
    );

    let manifest = logical::backup(&repo, &source, "hourly", &opts, &encode)
        .await
        .unwrap();
    let before = content_fingerprint(&source).await.unwrap();

    // Target database already exists.
    let req = RestoreRequest {
        target_db: Some(DB.into()),
        ..Default::default()
    };
    let err = logical::restore(&repo, &source, &manifest, &opts, &req, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DatabaseExists { .. }), "{err}");

    // Flipped byte, then truncation: restore fails, the new database is gone,
    // the live one is untouched.
    let key = manifest.objects[0].key.clone();
    let stored = repo.store().get(&key).await.unwrap().to_vec();
    let mut flipped = stored.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    for (damaged, jobs) in [
        (flipped.clone(), 1),
        (flipped, 2),
        (stored[..stored.len() / 2].to_vec(), 1),
        (stored[..stored.len() / 2].to_vec(), 2),
    ] {
        repo.store().put(&key, damaged).await.unwrap();
        let req = RestoreRequest {
            target_db: Some("cryptofunk_damaged".into()),
            jobs,
            ..Default::default()
        };
        let err = logical::restore(&repo, &source, &manifest, &opts, &req, |_| {})
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&key),
            "the error must name the object: {err}"
        );
        assert!(
            !cfdr_pg::admin::database_exists(&source, "cryptofunk_damaged")
                .await
                .unwrap()
        );
        assert_eq!(content_fingerprint(&source).await.unwrap(), before);
    }

    // Wrong age identity.
    let (recipients, _) = keys();
    let (_, wrong) = keys();
    let sealed = logical::backup(
        &repo,
        &source,
        "hourly",
        &opts,
        &EncodeOptions::default().encrypt_to(recipients),
    )
    .await
    .unwrap();
    let req = RestoreRequest {
        identities: Some(wrong),
        target_db: Some("cryptofunk_wrongkey".into()),
        ..Default::default()
    };
    let err = logical::restore(&repo, &source, &sealed, &opts, &req, |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("encrypted to other recipients"),
        "{err}"
    );
    assert!(
        !cfdr_pg::admin::database_exists(&source, "cryptofunk_wrongkey")
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_test_passes_and_cleans_up() {
    let test = "restore_test";
    let Some((cluster, _repo_dir, repo)) = setup(test).await else {
        return;
    };
    let source = cluster.target(DB);
    let opts = LogicalOptions {
        smoke_query: "SELECT notional(qty, price) FROM trades LIMIT 1".into(),
        ..Default::default()
    };
    let manifest = logical::backup(&repo, &source, "weekly", &opts, &EncodeOptions::default())
        .await
        .unwrap();
    let result = logical::restore_test(&repo, &source, &manifest, &opts, None)
        .await
        .unwrap();
    assert!(result.failure.is_none(), "{:?}", result.failure);
    assert_eq!(result.passed.len(), 4);
    let scratch = format!("cfdr_verify_{}", logical::short_id(&manifest.id));
    assert!(
        !cfdr_pg::admin::database_exists(&source, &scratch)
            .await
            .unwrap()
    );
    let bad = LogicalOptions {
        smoke_query: "SELECT * FROM no_such_table".into(),
        ..Default::default()
    };
    let result = logical::restore_test(&repo, &source, &manifest, &bad, None)
        .await
        .unwrap();
    assert!(result.failure.unwrap().contains("no_such_table"));
}

#[tokio::test]
async fn client_tools_are_found_and_checked() {
    let bin = PgBin::locate(None, Some(15)).await.unwrap();
    assert!(bin.major >= 15);
    let err = PgBin::locate(None, Some(99)).await.unwrap_err();
    assert!(matches!(err, Error::ToolTooOld { .. }), "{err}");
    assert!(err.to_string().contains("postgresql-client-99"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_failing_storage_leave_nothing() {
    let test = "wrong_password_and_failing_storage";
    let Some((cluster, _repo_dir, repo)) = setup(test).await else {
        return;
    };
    let source = cluster.target(DB);
    let opts = LogicalOptions::default();
    let encode = EncodeOptions::default();

    // A password-authenticated role: the right password reaches pg_dump
    // through PGPASSWORD, a wrong one is a clear connection error.
    let mut conn = source.connect().await.unwrap();
    sqlx::Executor::execute(
        &mut conn,
        "CREATE ROLE backup LOGIN SUPERUSER PASSWORD 'right-password'",
    )
    .await
    .unwrap();
    let hba = cluster.data_dir.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all backup 127.0.0.1/32 scram-sha-256\n{old}"),
    )
    .unwrap();
    sqlx::Executor::execute(&mut conn, "SELECT pg_reload_conf()")
        .await
        .unwrap();
    let mut user = source.clone();
    user.user = "backup".into();
    user.password = Some("wrong-password".into());
    let err = logical::backup(&repo, &user, "hourly", &opts, &encode)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("wrong-password"),
        "the password must not be shown"
    );
    user.password = Some("right-password".into());
    logical::backup(&repo, &user, "hourly", &opts, &encode)
        .await
        .unwrap();

    // Storage failing mid-upload (through opendal: a memory repository, as
    // fs create-only writes bypass the operator): no manifest appears.
    let mem = TestLocation::new(Backend::Memory, test).unwrap();
    let clean = Repository::init(mem.options.build().unwrap())
        .await
        .unwrap();
    let faults = cfdr_testing::FaultLayer::new(
        3,
        1.0,
        cfdr_testing::FaultMode::Fail,
        &[cfdr_testing::FaultOp::Write],
    );
    let mut failing = mem.options.clone();
    failing.retry.max_retries = 0;
    let failing_repo = Repository::open(failing.build_with(move |op| op.layer(faults)).unwrap())
        .await
        .unwrap();
    let err = logical::backup(&failing_repo, &source, "hourly", &opts, &encode)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert!(
        clean.backup_ids().await.unwrap().is_empty(),
        "a failed upload must not be listed"
    );
    assert!(
        clean
            .leftovers(jiff::Timestamp::MAX)
            .await
            .unwrap()
            .is_empty(),
        "nothing half-written is visible"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_tools_restore_a_backup_by_hand() {
    let test = "stock_tools_restore_a_backup_by_hand";
    let (Some(_), Some(_), Some(_)) = (
        cfdr_testing::tool("gunzip", "gzip", test),
        cfdr_testing::tool("zstd", "zstd", test),
        cfdr_testing::tool("age", "age", test),
    ) else {
        return;
    };
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let loc = TestLocation::new(Backend::Fs, test).unwrap();
    let root = loc
        .options
        .url
        .clone()
        .unwrap()
        .trim_start_matches("file://")
        .to_owned();
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let source = cluster.target(DB);
    let want = content_fingerprint(&source).await.unwrap();
    let opts = LogicalOptions::default();
    let (secret, public) = cfdr_secrets::generate_identity();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("identity.txt");
    std::fs::write(&key_file, secret.as_bytes()).unwrap();

    let gz = logical::backup(
        &repo,
        &source,
        "manual",
        &opts,
        &EncodeOptions::new(Compression::Gzip),
    )
    .await
    .unwrap();
    let sealed_opts = EncodeOptions::new(Compression::Zstd)
        .encrypt_to(Recipients::parse([public.as_str()]).unwrap());
    let sealed = logical::backup(&repo, &source, "manual", &opts, &sealed_opts)
        .await
        .unwrap();
    let pg_restore = cluster.bin().path("pg_restore");
    for (db, manifest, pipeline) in [
        ("by_hand_gzip", &gz, "gunzip -c \"$OBJ\"".to_owned()),
        (
            "by_hand_age",
            &sealed,
            format!("age -d -i {} \"$OBJ\" | zstd -dc", key_file.display()),
        ),
    ] {
        cluster.create_database(db).await.unwrap();
        let object = format!("{root}/{}", manifest.objects[0].key);
        let script = format!(
            "set -e; {pipeline} | {} --exit-on-error --dbname {db}",
            pg_restore.display()
        );
        let out = tokio::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .env("OBJ", &object)
            .envs(cluster.target(db).tool_env())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            content_fingerprint(&cluster.target(db)).await.unwrap(),
            want,
            "{db}"
        );
    }
}

/// An archive the in-process reader does not take (pg_dump's own
/// compression here, as in archives of a format version newer than the
/// reader) still restores in parallel, through pg_restore's script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_the_reader_does_not_take_restore_through_pg_restore() {
    let Some((cluster, _loc, repo)) = setup("logical_fallback").await else {
        return;
    };
    let real = cluster.bin().path("pg_dump");
    let bin = tempfile::tempdir().unwrap();
    for tool in ["pg_restore", "psql"] {
        let target = real.parent().unwrap().join(tool);
        std::os::unix::fs::symlink(target, bin.path().join(tool)).unwrap();
    }
    // The real pg_dump, told to compress its data blocks (the last
    // --compress wins over cfdr's --compress=0).
    let wrapper = bin.path().join("pg_dump");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec '{}' \"$@\" --compress=6\n", real.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let opts = LogicalOptions {
        bin_dir: Some(bin.path().to_owned()),
        ..Default::default()
    };
    let source = cluster.target(DB);
    let encode = EncodeOptions::new(Compression::Zstd);
    let manifest = logical::backup(&repo, &source, "manual", &opts, &encode)
        .await
        .unwrap();
    let req = RestoreRequest {
        jobs: 2,
        ..Default::default()
    };
    let report = logical::restore(&repo, &source, &manifest, &opts, &req, |_| {})
        .await
        .unwrap();
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.name == "data (2 copy sessions, through pg_restore)"),
        "{:?}",
        report.steps
    );
    let restored = cluster.target(&report.database);
    assert_eq!(
        content_fingerprint(&restored).await.unwrap(),
        content_fingerprint(&source).await.unwrap()
    );
    assert_eq!(
        schema_only(&cluster, &report.database).await,
        schema_only(&cluster, DB).await
    );

    // Damage in such an archive ends the script pass too, as damage.
    let plain = logical::backup(
        &repo,
        &source,
        "manual",
        &opts,
        &EncodeOptions::new(Compression::None),
    )
    .await
    .unwrap();
    let key = plain.objects[0].key.clone();
    let mut damaged = repo.store().get(&key).await.unwrap().to_vec();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x80;
    repo.store().put(&key, damaged).await.unwrap();
    for jobs in [2, 3] {
        let req = RestoreRequest {
            target_db: Some("cryptofunk_damaged_script".into()),
            jobs,
            ..Default::default()
        };
        let err = tokio::time::timeout(
            Duration::from_secs(60),
            logical::restore(&repo, &source, &plain, &opts, &req, |_| {}),
        )
        .await
        .expect("the restore of a damaged archive must end")
        .unwrap_err();
        assert!(
            matches!(&err, Error::Storage(cfdr_storage::Error::Corrupt { key: k, .. }) if *k == key),
            "{jobs} jobs: {err}"
        );
        assert!(
            !cfdr_pg::admin::database_exists(&source, "cryptofunk_damaged_script")
                .await
                .unwrap()
        );
    }
}
