//! `cfdr-wal stream` on real clusters: the primary killed (and its data
//! directory deleted) under a steady workload, then PITR `--latest`;
//! segments identical to archive_command's; a hole or a damaged chunk stops
//! recovery; stalled uploads; an idle database makes no uploads.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cfdr_pg::physical::{self, PhysicalOptions, PitrRequest, RecoveryTarget};
use cfdr_pg::{LocalCluster, PgTarget};
use cfdr_retention::Lsn;
use cfdr_storage::{EncodeOptions, Repository};
use cfdr_testing::Backend;
use cfdr_wal_archive::chunks::{self, StreamState};
use common::*;
use sqlx::Row;

/// A cluster archiving through `cfdr-wal push` with a bounded slot size.
async fn stream_cluster(test: &str, setup: &Setup) -> Option<LocalCluster> {
    let bin = pg_bin(test).await?;
    let cluster = archiving_cluster(&bin, &setup.archive_command("")).await;
    sql(
        &cluster.target("postgres"),
        "ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'",
    )
    .await;
    sql(&cluster.target("postgres"), "SELECT pg_reload_conf()").await;
    sql(
        &cluster.target("postgres"),
        "CREATE TABLE ticks (id bigint NOT NULL, at timestamptz DEFAULT clock_timestamp())",
    )
    .await;
    Some(cluster)
}

async fn sql(target: &PgTarget, statement: &str) {
    let mut conn = target.connect().await.unwrap();
    sqlx::query(statement).execute(&mut conn).await.unwrap();
}

/// Appends a `[stream]` table to the setup's config file.
fn stream_config(setup: &Setup, extra: &str) {
    let mut text = std::fs::read_to_string(&setup.config).unwrap();
    text.push_str(&format!(
        "[stream]\nspool-dir = {:?}\n{extra}",
        setup.dir.path().join("stream").display().to_string()
    ));
    std::fs::write(&setup.config, text).unwrap();
}

/// A running `cfdr-wal stream`; its stderr goes to a file.
struct Stream {
    child: Child,
    log: PathBuf,
}

impl Stream {
    fn start(setup: &Setup, cluster: &LocalCluster, args: &[&str]) -> Stream {
        let log = setup.dir.path().join(format!(
            "stream-{}.log",
            jiff::Timestamp::now().as_millisecond()
        ));
        let child = std::process::Command::new(exe())
            .arg("--config")
            .arg(&setup.config)
            .arg("stream")
            .args(args)
            .env("DATABASE_URL", cluster.url("postgres"))
            .env("RUST_LOG", "info")
            .envs(setup.env())
            .env_remove("CFDR_REPOSITORY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Stream { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit; `None` when it still runs after `limit`.
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, as systemd stops it; returns its log.
    fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.wait(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}: {}",
            self.log()
        );
        self.log()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until the stream's connection is streaming.
async fn wait_streaming(cluster: &LocalCluster, stream: &Stream) {
    let db = cluster.target("postgres");
    cfdr_testing::eventually("the stream connected", Duration::from_secs(60), || async {
        let mut conn = db.connect().await.map_err(|e| e.to_string())?;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'cfdr_wal_stream' AND state = 'streaming'",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        if n == 1 {
            Ok(())
        } else {
            Err(stream.log())
        }
    })
    .await;
}

async fn state(setup: &Setup) -> Option<StreamState> {
    StreamState::read(&setup.archive()).await.unwrap()
}

async fn current_lsn(db: &PgTarget) -> Lsn {
    let mut conn = db.connect().await.unwrap();
    let s: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    s.parse().unwrap()
}

/// Waits until the stream's safe position reaches `lsn`.
async fn wait_safe(setup: &Setup, lsn: Lsn, limit: Duration) -> Duration {
    let started = Instant::now();
    cfdr_testing::eventually("the stream's safe position", limit, || async {
        match state(setup).await {
            Some(s) if s.safe_lsn >= lsn => Ok(()),
            other => Err(format!("{other:?}, waiting for {lsn}")),
        }
    })
    .await;
    started.elapsed()
}

/// Ids with the moment their commit returned.
type Commits = Arc<Mutex<Vec<(i64, Instant)>>>;

/// One small transaction every 20 ms; records each id with the moment its
/// commit returned, until the server goes away or `stop` is set.
fn workload(
    db: PgTarget,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Commits) {
    let committed = Arc::new(Mutex::new(Vec::new()));
    let out = committed.clone();
    let task = tokio::spawn(async move {
        let Ok(mut conn) = db.connect().await else {
            return;
        };
        let mut id = 0i64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            id += 1;
            let done = sqlx::query("INSERT INTO ticks (id) VALUES ($1)")
                .bind(id)
                .execute(&mut conn)
                .await;
            if done.is_err() {
                return;
            }
            out.lock().unwrap().push((id, Instant::now()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (task, committed)
}

/// Kills the postmaster and every process of the cluster with SIGKILL, as
/// a machine dying would.
fn kill_cluster(cluster: &mut LocalCluster) {
    let pid_file = std::fs::read_to_string(cluster.data_dir.join("postmaster.pid")).unwrap();
    let pid = pid_file.lines().next().unwrap().trim().to_owned();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for p in std::iter::once(pid.as_str()).chain(children.split_whitespace()) {
        let _ = std::process::Command::new("kill").args(["-9", p]).status();
    }
    // Dropping it must not try to stop a dead server.
    cluster.detach();
}

fn restore_command(setup: &Setup) -> String {
    setup
        .archive_command("")
        .replace(" push  %p", " fetch %f %p")
}

async fn pitr_latest(
    setup: &Setup,
    dir: &str,
    rto: Duration,
) -> cfdr_pg::Result<physical::PitrReport> {
    let repo = Repository::open(setup.store.clone()).await.unwrap();
    let req = PitrRequest {
        target: RecoveryTarget::Latest,
        data_dir: setup.dir.path().join(dir),
        force: false,
        restore_command: restore_command(setup),
        prefetch_spool: None,
        identities: None,
        start: true,
        archive: false,
        rto,
        bin_dir: None,
    };
    physical::pitr(&repo, &req, |_| {}).await
}

async fn base_backup(setup: &Setup, db: &PgTarget) {
    let repo = Repository::open(setup.store.clone()).await.unwrap();
    physical::backup(
        &repo,
        db,
        "daily",
        &PhysicalOptions::default(),
        &EncodeOptions::default(),
    )
    .await
    .unwrap();
}

/// The kill test: a steady workload, the primary killed (its data
/// directory deleted when `delete_data`), the stream flushes and stops,
/// PITR --latest has every transaction committed more than 2 s before.
async fn killed_primary_loses_at_most_the_last_seconds(
    backend: Backend,
    test: &str,
    delete_data: bool,
) {
    let Some(setup) = Setup::new(backend, test).await else {
        return;
    };
    let Some(mut cluster) = stream_cluster(test, &setup).await else {
        return;
    };
    stream_config(&setup, "");
    let db = cluster.target("postgres");
    base_backup(&setup, &db).await;
    let mut stream = Stream::start(&setup, &cluster, &[]);
    wait_streaming(&cluster, &stream).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (task, committed) = workload(db.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(6)).await;
    kill_cluster(&mut cluster);
    let killed = Instant::now();
    if delete_data {
        std::fs::remove_dir_all(&cluster.data_dir).unwrap();
    }
    let _ = task.await;
    let committed = committed.lock().unwrap().clone();
    assert!(committed.len() > 100, "{} commits", committed.len());

    // The stream ships what it received and stops with a clear message.
    let status = stream.wait(Duration::from_secs(15));
    let stopped_after = killed.elapsed();
    let log = stream.log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?} after {stopped_after:?}: {log}"
    );
    assert!(
        log.contains("the WAL stream from") && log.contains("cfdr-restore pitr --latest"),
        "{log}"
    );
    assert!(
        stopped_after < Duration::from_secs(8),
        "{stopped_after:?}: {log}"
    );

    let report = pitr_latest(&setup, "restored", cfdr_testing::PATIENCE)
        .await
        .unwrap();
    let restored = report.cluster.as_ref().unwrap();
    let mut conn = restored.target("postgres").connect().await.unwrap();
    let row = sqlx::query("SELECT count(*), count(DISTINCT id), coalesce(max(id), 0) FROM ticks")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (count, distinct, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(count, distinct, "no transaction is duplicated");
    assert_eq!(count, max, "ids 1..={max} are all there, none missing");
    let cutoff = killed - Duration::from_secs(2);
    let must = committed
        .iter()
        .filter(|(_, at)| *at < cutoff)
        .map(|(id, _)| *id)
        .max()
        .unwrap();
    assert!(
        max >= must,
        "restored up to {max}, but {must} was committed more than 2 s before the kill"
    );
    let last = committed.last().unwrap().0;
    let in_last = last - must;
    let survived = max - must;
    eprintln!(
        "{test}: {} commits, {survived} of the {in_last} committed in the last 2 s before the kill survived ({} lost); the stream stopped {stopped_after:?} after the kill",
        committed.len(),
        last - max
    );
}

#[tokio::test]
async fn killed_primary_fs() {
    killed_primary_loses_at_most_the_last_seconds(Backend::Fs, "killed_primary_fs", false).await;
}

#[tokio::test]
async fn killed_primary_with_deleted_data_dir_s3() {
    killed_primary_loses_at_most_the_last_seconds(
        Backend::S3,
        "killed_primary_with_deleted_data_dir_s3",
        true,
    )
    .await;
}

/// The segment files in the primary's pg_wal and the WAL stream's copy.
async fn fetched(setup: &Setup, name: &str) -> Vec<u8> {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join(name);
    let got = setup
        .archive()
        .fetch(name, &dest, &Default::default())
        .await
        .unwrap();
    assert!(
        matches!(got, cfdr_wal_archive::Fetched::Restored { .. }),
        "{name}: {got:?}"
    );
    std::fs::read(&dest).unwrap()
}

#[tokio::test]
async fn stream_segments_are_byte_identical_to_archive_command() {
    let test = "stream_segments_are_byte_identical_to_archive_command";
    // archive_command stores into a folder, the stream into the S3 server.
    let Some(archived) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let Some(streamed) = Setup::new(Backend::S3, test).await else {
        return;
    };
    let Some(cluster) = stream_cluster(test, &archived).await else {
        return;
    };
    stream_config(&streamed, "");
    let stream = Stream::start(&streamed, &cluster, &[]);
    wait_streaming(&cluster, &stream).await;
    let names = make_wal(&cluster, 3).await;
    wait_archived(&cluster, names.last().unwrap()).await;
    let end = current_lsn(&cluster.target("postgres")).await;
    wait_safe(&streamed, end, Duration::from_secs(30)).await;
    let log = stream.stop();
    for name in &names {
        let from_archive = fetched(&archived, name).await;
        let from_stream = fetched(&streamed, name).await;
        assert_eq!(from_archive.len(), 16 << 20, "{name}");
        assert!(
            from_archive == from_stream,
            "{name} differs between the two paths"
        );
        let local = std::fs::read(cluster.data_dir.join("pg_wal").join(name)).unwrap();
        assert!(local == from_stream, "{name} differs from pg_wal");
    }
    // Completed segments leave no chunks behind.
    let left: Vec<String> = streamed
        .store
        .list(chunks::STREAM_PREFIX)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .filter(|k| names.iter().any(|n| k.contains(n.as_str())))
        .collect();
    assert!(left.is_empty(), "{left:?}\n{log}");
}

/// A stream that shipped one segment in several chunks, stopped; returns
/// the segment, its chunks and the safe position.
async fn chunked_segment(
    setup: &Setup,
    cluster: &LocalCluster,
) -> (String, Vec<chunks::ChunkRef>, Lsn) {
    let stream = Stream::start(setup, cluster, &[]);
    wait_streaming(cluster, &stream).await;
    let db = cluster.target("postgres");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (task, _) = workload(db.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();
    let end = current_lsn(&db).await;
    wait_safe(setup, end, Duration::from_secs(30)).await;
    let log = stream.stop();
    let safe = state(setup).await.unwrap().safe_lsn;
    let mut conn = db.connect().await.unwrap();
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name($1::text::pg_lsn)")
        .bind(safe.to_string())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let found = chunks::list(&setup.archive(), &segment).await.unwrap();
    assert!(found.len() >= 3, "{found:?}\n{log}");
    (segment, found, safe)
}

#[tokio::test]
async fn a_missing_or_damaged_chunk_stops_recovery() {
    let test = "a_missing_or_damaged_chunk_stops_recovery";
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let Some(cluster) = stream_cluster(test, &setup).await else {
        return;
    };
    stream_config(&setup, "upload-bytes = 8192\ninterval-ms = 200\n");
    base_backup(&setup, &cluster.target("postgres")).await;
    let (segment, found, safe) = chunked_segment(&setup, &cluster).await;

    // Whole: the assembled segment is pg_wal's up to the safe position,
    // zeros after it.
    let assembled = fetched(&setup, &segment).await;
    let local = std::fs::read(cluster.data_dir.join("pg_wal").join(&segment)).unwrap();
    let upto = usize::try_from(safe.0 % (16 << 20)).unwrap();
    assert_eq!(assembled.len(), 16 << 20);
    assert!(
        assembled[..upto] == local[..upto],
        "the chunks differ from pg_wal"
    );
    assert!(assembled[upto..].iter().all(|b| *b == 0), "not zero-filled");

    let work = tempfile::tempdir().unwrap();
    let fetch = |setup: &Setup| {
        let out = setup.run(work.path(), &["fetch", &segment, "pg_wal_RECOVERYXLOG"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A missing chunk in the middle: fetch fails loudly, recovery stops.
    let middle = &found[found.len() / 2];
    let saved = setup.store.get(&middle.key).await.unwrap();
    setup
        .store
        .delete_many([middle.key.as_str()])
        .await
        .unwrap();
    let (code, stderr) = fetch(&setup);
    assert_eq!(code, Some(128), "{stderr}");
    assert!(
        stderr.contains("are missing") && stderr.contains(&segment),
        "{stderr}"
    );
    assert!(!work.path().join("pg_wal_RECOVERYXLOG").exists());
    let err = pitr_latest(&setup, "restored-with-hole", Duration::from_secs(60))
        .await
        .expect_err("recovery must not finish past a hole");
    eprintln!("recovery with a hole: {err}");

    // A damaged chunk: the same.
    let mut bad = saved.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xFF;
    setup.store.put(&middle.key, bad).await.unwrap();
    let (code, stderr) = fetch(&setup);
    assert_eq!(code, Some(128), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    // Put back, it serves again.
    setup.store.put(&middle.key, saved).await.unwrap();
    let (code, stderr) = fetch(&setup);
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn an_idle_database_makes_no_uploads() {
    let test = "an_idle_database_makes_no_uploads";
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let Some(cluster) = stream_cluster(test, &setup).await else {
        return;
    };
    stream_config(&setup, "");
    let stream = Stream::start(&setup, &cluster, &[]);
    wait_streaming(&cluster, &stream).await;
    // A second stream on the same spool is refused, naming it; the first
    // streams on.
    let mut second = Stream::start(&setup, &cluster, &[]);
    let status = second.wait(Duration::from_secs(60));
    let said = second.log();
    assert!(
        status.is_some_and(|s| s.code() == Some(2)),
        "{status:?}: {said}"
    );
    assert!(
        said.contains("another cfdr-wal stream runs with the spool"),
        "{said}"
    );
    drop(second);
    wait_streaming(&cluster, &stream).await;
    let db = cluster.target("postgres");
    sql(&db, "INSERT INTO ticks (id) VALUES (1)").await;
    let end = current_lsn(&db).await;
    wait_safe(&setup, end, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listing = |setup: &Setup| {
        let store = setup.store.clone();
        async move {
            let mut keys: Vec<(String, u64)> = Vec::new();
            for prefix in ["wal/", chunks::STREAM_PREFIX] {
                for m in store.list(prefix).await.unwrap() {
                    keys.push((m.key, m.size));
                }
            }
            let state = store.get(chunks::STATE_KEY).await.unwrap();
            (keys, state)
        }
    };
    // PostgreSQL logs one running-transactions record up to 15 s after
    // the last activity: a window in which the server wrote nothing must
    // see no upload; the second window is quiet for sure.
    let idle = Duration::from_secs(if cfdr_testing::long_tests() { 180 } else { 10 });
    let mut quiet_windows = 0;
    for _ in 0..2 {
        let lsn = current_lsn(&db).await;
        let before = listing(&setup).await;
        tokio::time::sleep(idle).await;
        let wrote = current_lsn(&db).await != lsn;
        let after = listing(&setup).await;
        if wrote {
            let end = current_lsn(&db).await;
            wait_safe(&setup, end, Duration::from_secs(30)).await;
            continue;
        }
        assert!(
            before == after,
            "uploads while idle for {idle:?}:\n{}",
            stream.log()
        );
        quiet_windows += 1;
    }
    let log = stream.stop();
    assert!(quiet_windows >= 1, "the server never stayed idle\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_lose_nothing_and_catch_up() {
    use cfdr_testing::{FaultLayer, FaultMode, FaultOp};
    let test = "stalled_uploads_lose_nothing_and_catch_up";
    let Some(setup) = Setup::new(Backend::S3, test).await else {
        return;
    };
    let Some(cluster) = stream_cluster(test, &setup).await else {
        return;
    };
    let stall = Duration::from_secs(if cfdr_testing::long_tests() { 60 } else { 8 });
    let faults = FaultLayer::new(7, 0.0, FaultMode::Stall(stall), &[FaultOp::Write]);
    let layer = faults.clone();
    let stalling = setup
        .loc
        .options
        .build_with(move |op| op.layer(layer))
        .unwrap();
    let archive = cfdr_wal_archive::WalArchive::new(stalling);
    let db = cluster.target("postgres");
    let opts = cfdr_wal_archive::stream::StreamOptions {
        spool_dir: setup.dir.path().join("stream"),
        ..Default::default()
    };
    let (stop_stream, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let db = db.clone();
        tokio::spawn(async move {
            cfdr_wal_archive::stream::run(
                &archive,
                &db,
                &opts,
                &EncodeOptions::default(),
                None,
                async {
                    let _ = stopped.await;
                },
            )
            .await
        })
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (task, _) = workload(db.clone(), stop.clone());
    let first = current_lsn(&db).await;
    wait_safe(&setup, first, Duration::from_secs(30)).await;

    // Uploads stall: the spool grows, the exposure rises.
    faults.set_rate(1.0);
    cfdr_testing::eventually("an upload stalled", Duration::from_secs(10), || async {
        if faults.injected() > 0 {
            Ok(())
        } else {
            Err("no write yet".to_owned())
        }
    })
    .await;
    faults.set_rate(0.0);
    let stalled_at = state(&setup).await.unwrap().safe_lsn;
    tokio::time::sleep(stall / 2).await;
    let during = current_lsn(&db).await;
    assert_eq!(
        state(&setup).await.unwrap().safe_lsn,
        stalled_at,
        "nothing new is safe"
    );
    assert!(during > stalled_at, "the server kept writing");

    // After the stall: everything catches up.
    let end = current_lsn(&db).await;
    let took = wait_safe(&setup, end, stall + Duration::from_secs(30)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();
    let last = current_lsn(&db).await;
    wait_safe(&setup, last, Duration::from_secs(30)).await;
    let _ = stop_stream.send(());
    let summary = running.await.unwrap().unwrap();
    eprintln!(
        "{test}: exposure {} bytes during a {stall:?} stall, caught up {took:?} after; {summary:?}",
        during.0 - stalled_at.0
    );
    // Nothing lost: the stream's copy of the last segment is pg_wal's.
    let mut conn = db.connect().await.unwrap();
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name($1::text::pg_lsn)")
        .bind(last.to_string())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let copy = fetched(&setup, &segment).await;
    let local = std::fs::read(cluster.data_dir.join("pg_wal").join(&segment)).unwrap();
    let upto = usize::try_from(last.0 % (16 << 20)).unwrap();
    assert!(
        copy[..upto] == local[..upto],
        "the stream's copy differs from pg_wal"
    );
}

/// The stream reads from a standby that is promoted: the new timeline is
/// not adopted, so the stream stops with the adopt-timeline message; once
/// adopted, a restarted stream stores the history file and follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_stops_the_stream_until_the_timeline_is_adopted() {
    let test = "a_promotion_stops_the_stream_until_the_timeline_is_adopted";
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let Some(cluster) = stream_cluster(test, &setup).await else {
        return;
    };
    let bin = cluster.bin().clone();
    let db = cluster.target("postgres");
    let names = make_wal(&cluster, 1).await;
    wait_archived(&cluster, &names[0]).await;
    let standby_dir = setup.dir.path().join("standby");
    cfdr_pg::replica::create(&bin, &db, &standby_dir, "standby1")
        .await
        .unwrap();
    let mut standby = LocalCluster::existing(&bin, &standby_dir, &standby_dir).unwrap();
    standby.start(&[]).await.unwrap();
    stream_config(&setup, "");
    let mut stream = Stream::start(&setup, &standby, &[]);
    wait_streaming(&standby, &stream).await;
    sql(&db, "INSERT INTO ticks (id) VALUES (1)").await;
    let end = current_lsn(&db).await;
    wait_safe(&setup, end, Duration::from_secs(60)).await;

    let promoted = standby.target("postgres");
    cfdr_pg::replica::promote(&promoted, Duration::from_secs(30))
        .await
        .unwrap();
    sql(&promoted, "INSERT INTO ticks (id) VALUES (2)").await;
    let status = stream.wait(Duration::from_secs(30));
    let log = stream.log();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}: {log}");
    assert!(
        log.contains("timeline 2 is new") && log.contains("cfdr-wal adopt-timeline 2"),
        "{log}"
    );
    drop(stream);

    setup.archive().adopt_timeline(2).await.unwrap();
    let stream = Stream::start(&setup, &standby, &[]);
    wait_streaming(&standby, &stream).await;
    sql(&promoted, "INSERT INTO ticks (id) VALUES (3)").await;
    let end = current_lsn(&promoted).await;
    cfdr_testing::eventually(
        "the stream follows timeline 2",
        Duration::from_secs(60),
        || async {
            match state(&setup).await {
                Some(s) if s.timeline == 2 && s.safe_lsn >= end => Ok(()),
                other => Err(format!("{other:?}, waiting for 2/{end}")),
            }
        },
    )
    .await;
    let log = stream.stop();
    let history = setup
        .store
        .stat(&cfdr_storage::wal_archive::wal_key("00000002.history"))
        .await
        .unwrap();
    assert!(history.is_some(), "{log}");
}
