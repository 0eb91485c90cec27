//! Point-in-time recovery end to end on real clusters archiving with
//! `cfdr-wal push`: a base backup, a workload with known commits, an
//! accidental `DELETE FROM trades`, then PITR (restore_command = `cfdr-wal
//! fetch`) by time, by LSN and by restore point name, on fs and on the S3
//! endpoint; and recovery onto the new timeline after a replica failover.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cfdr_pg::physical::{self, PhysicalOptions, PitrRequest, RecoveryTarget};
use cfdr_pg::{LocalCluster, PgTarget, replica};
use cfdr_storage::{EncodeOptions, Repository};
use cfdr_testing::Backend;
use common::*;
use sqlx::Row;

/// `restore_command` for this setup (test credentials of the local emulator).
fn restore_command(setup: &Setup) -> String {
    setup
        .archive_command("")
        .replace(" push  %p", " fetch %f %p")
}

/// A daily base backup of `target`, zstd-compressed by the server or by
/// cfdr (both must restore).
async fn base_backup(
    repo: &Repository,
    target: &PgTarget,
    server_compression: bool,
) -> cfdr_storage::Manifest {
    let opts = PhysicalOptions {
        server_compression,
        ..PhysicalOptions::default()
    };
    physical::backup(repo, target, "daily", &opts, &EncodeOptions::default())
        .await
        .unwrap()
}

async fn sql(target: &PgTarget, statement: &str) {
    let mut conn = target.connect().await.unwrap();
    sqlx::query(statement).execute(&mut conn).await.unwrap();
}

/// Inserts trades `ids`, one transaction each (each its own commit record).
async fn commit_trades(target: &PgTarget, ids: std::ops::RangeInclusive<i32>) {
    let mut conn = target.connect().await.unwrap();
    for id in ids {
        sqlx::query("INSERT INTO trades VALUES ($1, 'BTC-USD')")
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// Switches WAL and waits until the completed segment is archived.
async fn flush_archive(cluster: &LocalCluster) {
    let mut conn = cluster.target("postgres").connect().await.unwrap();
    let file: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    wait_archived(cluster, &file).await;
}

/// `(count, min id, max id)` of trades on a started restore.
async fn trades(cluster: &LocalCluster) -> (i64, i32, i32) {
    let mut conn = cluster.target("postgres").connect().await.unwrap();
    let row = sqlx::query("SELECT count(*), min(id), max(id) FROM trades")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn restore(
    repo: &Repository,
    setup: &Setup,
    dir: &str,
    target: RecoveryTarget,
) -> physical::PitrReport {
    let req = PitrRequest {
        target: target.clone(),
        data_dir: setup.dir.path().join(dir),
        force: false,
        // By LSN, segments come through the parallel prefetch.
        restore_command: match target {
            RecoveryTarget::Lsn(_) => {
                restore_command(setup).replace(" fetch ", " fetch --prefetch 3 ")
            }
            _ => restore_command(setup),
        },
        prefetch_spool: None,
        identities: None,
        start: true,
        archive: false,
        rto: cfdr_testing::PATIENCE,
        bin_dir: None,
    };
    physical::pitr(repo, &req, |_| {}).await.unwrap()
}

async fn pitr_stops_exactly_before_the_accident(backend: Backend) {
    let test = "pitr_stops_exactly_before_the_accident";
    let Some(bin) = pg_bin(test).await else {
        return;
    };
    let Some(setup) = Setup::new(backend, test).await else {
        return;
    };
    let cluster = archiving_cluster(&bin, &setup.archive_command("")).await;
    let db = cluster.target("postgres");
    sql(&db, "CREATE TABLE trades (id int PRIMARY KEY, symbol text)").await;
    commit_trades(&db, 1..=10).await;
    let repo = Repository::open(setup.store.clone()).await.unwrap();
    let base = base_backup(&repo, &db, true).await;
    let details = physical::PhysicalDetails::of(&base).unwrap();
    assert_eq!(details.wal.timeline, 1);
    assert!(details.wal.start <= details.wal.stop);

    // Trades 11..=40 commit after the base backup: only WAL has them.
    commit_trades(&db, 11..=40).await;
    let mut conn = db.connect().await.unwrap();
    let row = sqlx::query(
        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, pg_current_wal_lsn()::text",
    )
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let before_time = jiff::Timestamp::from_microsecond(row.get(0)).unwrap();
    let before_lsn: String = row.get(1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    sqlx::query("SELECT pg_create_restore_point('before_delete')")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    sqlx::query("DELETE FROM trades")
        .execute(&mut conn)
        .await
        .unwrap();
    commit_trades(&db, 41..=50).await;
    flush_archive(&cluster).await;

    for (dir, target) in [
        ("by-time", RecoveryTarget::Time(before_time)),
        ("by-lsn", RecoveryTarget::Lsn(before_lsn.parse().unwrap())),
        ("by-name", RecoveryTarget::Name("before_delete".into())),
    ] {
        let report = restore(&repo, &setup, dir, target.clone()).await;
        assert_eq!(report.backup.id, base.id);
        let restored = report.cluster.as_ref().unwrap();
        assert_eq!(
            trades(restored).await,
            (40, 1, 40),
            "PITR to {target} keeps exactly the trades committed before the accident"
        );
        assert_eq!(report.timeline, Some(2), "promotion starts a new timeline");
    }
    // The live cluster still shows the accident: PITR touched nothing there.
    assert_eq!(trades(&cluster).await, (10, 41, 50));

    // A flipped byte in a segment recovery needs stops recovery loudly
    // instead of replaying garbage or promoting early.
    if let Some(root) = setup.fs_root() {
        let next = cfdr_retention::WalSegment {
            segno: cfdr_retention::WalSegment::containing(
                1,
                details.wal.stop,
                details.wal_segment_size,
            )
            .segno
                + 1,
            timeline: 1,
        };
        let key = cfdr_storage::wal_archive::wal_key(&next.file_name(details.wal_segment_size));
        let path = root.join(&key);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        let req = PitrRequest {
            target: RecoveryTarget::Name("before_delete".into()),
            data_dir: setup.dir.path().join("damaged"),
            force: false,
            restore_command: restore_command(&setup),
            prefetch_spool: None,
            identities: None,
            start: true,
            archive: false,
            rto: cfdr_testing::PATIENCE,
            bin_dir: None,
        };
        let err = physical::pitr(&repo, &req, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("recovery") && err.contains("server log"),
            "recovery must stop on a damaged segment: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_stops_exactly_before_the_accident_on_fs() {
    pitr_stops_exactly_before_the_accident(Backend::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_stops_exactly_before_the_accident_on_s3() {
    pitr_stops_exactly_before_the_accident(Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_follows_the_new_timeline_after_a_failover() {
    let test = "pitr_follows_the_new_timeline_after_a_failover";
    let Some(bin) = pg_bin(test).await else {
        return;
    };
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let mut primary = archiving_cluster(&bin, &setup.archive_command("")).await;
    let db = primary.target("postgres");
    sql(&db, "CREATE TABLE trades (id int PRIMARY KEY, symbol text)").await;
    commit_trades(&db, 1..=10).await;
    flush_archive(&primary).await;

    // A base backup on timeline 1, which prune removes below.
    let repo = Repository::open(setup.store.clone()).await.unwrap();
    let old_base = base_backup(&repo, &db, false).await;

    // A streaming standby with a slot, created the way cfdr-replica does.
    let standby_dir = setup.dir.path().join("standby");
    replica::create(&bin, &db, &standby_dir, "standby1")
        .await
        .unwrap();
    assert!(standby_dir.join("standby.signal").exists());
    let mut standby = LocalCluster::existing(&bin, &standby_dir, &standby_dir).unwrap();
    standby.start(&[]).await.unwrap();
    commit_trades(&db, 11..=20).await;
    cfdr_testing::eventually(
        "the standby streams with no lag",
        cfdr_testing::PATIENCE,
        || async {
            let s = replica::status(&db).await.unwrap();
            if s.len() == 1 && s[0].state == "streaming" && s[0].lag_bytes == 0 {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;

    // Failover: the primary dies, the standby is promoted to timeline 2,
    // which the operator lets archive (cfdr-wal adopt-timeline 2).
    primary.stop().await.unwrap();
    let new_primary = standby.target("postgres");
    replica::promote(&new_primary, Duration::from_secs(30))
        .await
        .unwrap();
    setup.archive().adopt_timeline(2).await.unwrap();
    commit_trades(&new_primary, 21..=30).await;

    let base = base_backup(&repo, &new_primary, true).await;
    assert_eq!(
        physical::PhysicalDetails::of(&base).unwrap().wal.timeline,
        2
    );
    commit_trades(&new_primary, 31..=40).await;
    sql(&new_primary, "SELECT pg_create_restore_point('tl2_point')").await;
    commit_trades(&new_primary, 41..=45).await;
    flush_archive(&standby).await;

    // Prune to the newest base backup: the timeline-1 backup and the WAL
    // before the PITR window go; what the kept backup needs stays.
    let wal_before = setup.archive().list().await.unwrap().len();
    let config = cfdr_retention::Config::with_policy(cfdr_retention::Policy {
        keep_last: cfdr_retention::Count::Limited(1),
        ..cfdr_retention::Policy::default()
    });
    cfdr_prune::prune(&repo, &config, &cfdr_prune::Options::default())
        .await
        .unwrap();
    let kept: Vec<_> = repo
        .backups()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(kept, vec![base.id.clone()], "{} pruned", old_base.id);
    assert!(
        setup.archive().list().await.unwrap().len() < wal_before,
        "old WAL pruned"
    );

    let report = restore(
        &repo,
        &setup,
        "tl2",
        RecoveryTarget::Name("tl2_point".into()),
    )
    .await;
    assert_eq!(report.backup.id, base.id);
    assert_eq!(trades(report.cluster.as_ref().unwrap()).await, (40, 1, 40));
    assert_eq!(report.timeline, Some(3));
}
