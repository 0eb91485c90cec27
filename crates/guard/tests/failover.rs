//! The guard around restores and failovers, on real PostgreSQL 15 clusters
//! archiving into a real repository: operation markers hold the halt, a
//! streaming standby and the WAL stream count as safe when they should,
//! and a promotion moves the exposure onto the new timeline.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use cfdr_guard::records::WAL_STREAM_STATE_KEY;
use cfdr_guard::{Guard, Level, Reason, Settings, TradingState};
use cfdr_pg::{LocalCluster, PgTarget, replica};
use cfdr_storage::Operation;
use cfdr_storage::operations::OperationMarker;
use cfdr_testing::Backend;
use cfdr_wal_archive::WalArchive;
use support::{Rig, describe, exposure_of, is, quick_settings, wait_for};

async fn start(rig: &Rig, settings: Settings, pg: PgTarget) -> Guard {
    Guard::start(settings, rig.repo.clone(), pg).await.unwrap()
}

fn has(st: &cfdr_guard::Status, reason: Reason) -> bool {
    st.gate.reasons.iter().any(|c| c.reason == reason)
}

/// A streaming standby of the rig's primary, named `name` in
/// `pg_stat_replication`, in a folder the postgres OS user can reach.
async fn standby(rig: &Rig, name: &str) -> (LocalCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("standby-home");
    std::fs::create_dir(&base).unwrap();
    if cfdr_pg::server_user().unwrap().is_some() {
        let ok = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .arg(&base)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let data: PathBuf = base.join("data");
    let primary = rig.cluster.target("postgres");
    replica::create(rig.cluster.bin(), &primary, &data, name)
        .await
        .unwrap();
    let mut cluster = LocalCluster::existing(rig.cluster.bin(), &data, &data).unwrap();
    cluster.start(&[("cluster_name", name)]).await.unwrap();
    (cluster, dir)
}

async fn sql(target: &PgTarget, statement: &str) {
    let mut conn = target.connect().await.unwrap();
    sqlx::raw_sql(statement).execute(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_markers_hold_halted_and_stale_ones_are_reported() {
    let test = "operation_markers";
    let Some(rig) = Rig::new(Backend::Fs, test).await else {
        return;
    };
    rig.settle().await;
    let guard = start(&rig, quick_settings(30), rig.cluster.target("postgres")).await;
    wait_for(&guard, 30, "Active", is(TradingState::Active)).await;
    let store = rig.repo.store().clone();

    // A restore in progress: Halted, with the marker named.
    let op = Operation::begin(&store, "pitr", "to 14:29 into /srv/pitr")
        .await
        .unwrap();
    let st = wait_for(&guard, 10, "Halted by the marker", is(TradingState::Halted)).await;
    assert!(has(&st, Reason::OperationInProgress), "{}", describe(&st));
    let check = st
        .checks()
        .into_iter()
        .find(|c| c.name == "operations")
        .unwrap();
    assert_eq!(check.level, Level::Critical);
    assert!(check.words.contains("pitr in progress"), "{check:?}");
    // Its end: Active again after the hysteresis.
    let mut dead: OperationMarker = op.marker().clone();
    op.finish().await.unwrap();
    wait_for(
        &guard,
        15,
        "Active after the restore",
        is(TradingState::Active),
    )
    .await;

    // A marker left by a process that is gone: reported, not held.
    dead.id = "20261201T000000.000Z-promote-1".into();
    dead.kind = "promote".into();
    dead.pid = u32::MAX - 3;
    store
        .put(
            &format!("operations/{}.json", dead.id),
            serde_json::to_vec(&dead).unwrap(),
        )
        .await
        .unwrap();
    let st = wait_for(&guard, 10, "the stale marker reported", |st| {
        st.operations.iter().any(|o| o.stale.is_some())
    })
    .await;
    assert_eq!(st.gate.state, TradingState::Active, "{}", describe(&st));
    let check = st
        .checks()
        .into_iter()
        .find(|c| c.name == "operations")
        .unwrap();
    assert_eq!(check.level, Level::Warn, "{check:?}");
    assert!(check.words.contains("is gone"), "{check:?}");
    // Something under operations/ that is not a marker: held, fail closed.
    store.put("operations/garbage.json", "{").await.unwrap();
    let st = wait_for(
        &guard,
        10,
        "Halted by an unreadable marker",
        is(TradingState::Halted),
    )
    .await;
    assert!(has(&st, Reason::OperationInProgress), "{}", describe(&st));
    guard.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_standby_and_the_wal_stream_count_as_safe() {
    let test = "safe_standby";
    let Some(rig) = Rig::new(Backend::Fs, test).await else {
        return;
    };
    rig.settle().await;
    let (mut standby, _dir) = standby(&rig, "guard_standby").await;
    let pg = rig.cluster.target("postgres");
    let mut with_standby = quick_settings(300);
    with_standby.guard.safe_replicas = vec!["guard_standby".into()];
    let counted = start(&rig, with_standby, pg.clone()).await;
    let archive_only = start(&rig, quick_settings(300), pg.clone()).await;
    wait_for(
        &counted,
        60,
        "the standby streams and counts as safe",
        |st| st.replicas.iter().any(|r| r.counts_as_safe),
    )
    .await;

    // Archiving breaks under writes: the archive falls behind, the standby
    // does not.
    rig.break_archiving(true).await;
    let (stop, writer) = rig.workload(Duration::from_millis(50));
    let st = wait_for(&archive_only, 30, "exposure without the standby", |st| {
        exposure_of(st) > 5.0
    })
    .await;
    assert_eq!(
        st.wal.safe_by.as_deref(),
        Some("archive"),
        "{}",
        describe(&st)
    );
    let st = counted.status();
    assert!(exposure_of(&st) < 2.0, "{}", describe(&st));
    assert_eq!(
        st.wal.safe_by.as_deref(),
        Some("replica:guard_standby"),
        "{}",
        describe(&st)
    );

    // The standby goes away: its position no longer counts.
    standby.stop().await.unwrap();
    let st = wait_for(&counted, 30, "exposure once the standby is gone", |st| {
        exposure_of(st) > 3.0
    })
    .await;
    assert!(
        !st.replicas.iter().any(|r| r.counts_as_safe),
        "{}",
        describe(&st)
    );

    // The WAL stream reports the server's position on its timeline: safe.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let mut conn = pg.connect().await.unwrap();
    let (lsn, file): (String, String) = sqlx::query_as(
        "SELECT pg_current_wal_insert_lsn()::text, pg_walfile_name(pg_current_wal_insert_lsn())",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let timeline = u32::from_str_radix(&file[..8], 16).unwrap();
    let state = |tl: u32| {
        serde_json::json!({
            "version": 1, "timeline": tl, "safe_lsn": lsn,
            "safe_at": jiff::Timestamp::now(), "updated_at": jiff::Timestamp::now(),
        })
        .to_string()
    };
    let store = rig.repo.store();
    store
        .put(WAL_STREAM_STATE_KEY, state(timeline))
        .await
        .unwrap();
    let st = wait_for(&archive_only, 20, "safe through the WAL stream", |st| {
        st.wal.safe_by.as_deref() == Some("wal-stream") && exposure_of(st) < 1.0
    })
    .await;
    assert_eq!(st.wal.safe_lsn.as_deref(), Some(lsn.as_str()));
    // On another timeline it does not count.
    store
        .put(WAL_STREAM_STATE_KEY, state(timeline + 1))
        .await
        .unwrap();
    let st = wait_for(
        &archive_only,
        20,
        "the other timeline's stream ignored",
        |st| exposure_of(st) > 3.0,
    )
    .await;
    assert_eq!(
        st.wal.safe_by.as_deref(),
        Some("archive"),
        "{}",
        describe(&st)
    );
    counted.shutdown();
    archive_only.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_moves_the_exposure_to_the_new_timeline() {
    let test = "promotion";
    let Some(mut rig) = Rig::new(Backend::Fs, test).await else {
        return;
    };
    rig.settle().await;
    let (standby, _dir) = standby(&rig, "guard_failover").await;
    let new_primary = standby.target("postgres");
    // The guard follows the standby: a server in recovery is no primary.
    let guard = start(&rig, quick_settings(300), new_primary.clone()).await;
    let st = wait_for(&guard, 30, "Halted on a standby", is(TradingState::Halted)).await;
    assert!(has(&st, Reason::PrimaryInRecovery), "{}", describe(&st));

    // Failover, recorded as in progress while it runs (as cfdr-replica
    // promote does): the old primary stops, the standby is promoted and its
    // timeline adopted by the archive.
    let store = rig.repo.store().clone();
    let op = Operation::begin(&store, "promote", &new_primary.to_string())
        .await
        .unwrap();
    rig.cluster.stop().await.unwrap();
    replica::promote(&new_primary, Duration::from_secs(60))
        .await
        .unwrap();
    let timeline = replica::current_timeline(&new_primary).await.unwrap();
    assert_eq!(timeline, 2);
    WalArchive::new(store.clone())
        .adopt_timeline(timeline)
        .await
        .unwrap();
    let st = wait_for(&guard, 10, "held by the failover's marker", |st| {
        !has(st, Reason::PrimaryInRecovery) && has(st, Reason::OperationInProgress)
    })
    .await;
    assert_eq!(st.gate.state, TradingState::Halted, "{}", describe(&st));
    op.finish().await.unwrap();

    // Writes on the new timeline: safe once its segments are archived.
    sql(&new_primary, "CREATE TABLE fills (id bigserial, v text)").await;
    let target = new_primary.clone();
    let writer = tokio::spawn(async move {
        let mut conn = target.connect().await.unwrap();
        for _ in 0..400 {
            sqlx::query("INSERT INTO fills (v) VALUES ('sell 1 ETH-USD')")
                .execute(&mut conn)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let st = wait_for(
        &guard,
        60,
        "Active on timeline 2 with its WAL archived",
        |st| {
            st.gate.state == TradingState::Active
                && st.wal.timeline == Some(2)
                && st
                    .wal
                    .highest_segment
                    .as_deref()
                    .is_some_and(|s| s.starts_with("00000002"))
                && exposure_of(st) < 3.0
        },
    )
    .await;
    assert_eq!(
        st.wal.safe_by.as_deref(),
        Some("archive"),
        "{}",
        describe(&st)
    );

    // Archiving breaks on the new primary: the exposure grows on timeline 2
    // (the old timeline's WAL, safe up to the switch, does not hide it).
    sql(&new_primary, "ALTER SYSTEM SET archive_command = 'exit 1'").await;
    sql(&new_primary, "SELECT pg_reload_conf()").await;
    let broke = std::time::Instant::now();
    let st = wait_for(&guard, 40, "exposure grows on timeline 2", |st| {
        exposure_of(st) > 6.0
    })
    .await;
    let elapsed = broke.elapsed().as_secs_f64();
    assert!(
        exposure_of(&st) <= elapsed + 2.0,
        "exposure {} after {elapsed:.1} s: {}",
        exposure_of(&st),
        describe(&st)
    );
    assert_eq!(st.wal.timeline, Some(2), "{}", describe(&st));
    writer.abort();
    guard.shutdown();
}
