//! Physical backups and PITR on real PostgreSQL 15 clusters: the refusals
//! an operator meets before any WAL is involved. The archive-backed round
//! trips (PITR by time, LSN and name; timelines after a failover) run with
//! `cfdr-wal` in bins/cfdr-wal/tests/pitr.rs.
#![allow(clippy::unwrap_used)]

use cfdr_pg::LocalCluster;
use cfdr_pg::physical::{self, PhysicalOptions, PitrRequest, RecoveryTarget};
use cfdr_storage::{EncodeOptions, Repository, StorageOptions};
use cfdr_testing::pg::pg_bin;

async fn repo() -> Repository {
    let url = format!("memory://physical-{:x}", rand::random::<u64>());
    Repository::init(StorageOptions::from_url(url).build().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backup_refuses_servers_that_do_not_archive() {
    let Some(bin) = pg_bin("physical refusals").await else {
        return;
    };
    let repo = repo().await;
    let opts = PhysicalOptions::default();
    let encode = EncodeOptions::default();

    // initdb's defaults: wal_level replica, archive_mode off.
    let mut cluster = LocalCluster::init_temp(&bin).await.unwrap();
    cluster.start(&[]).await.unwrap();
    let err = physical::backup(&repo, &cluster.target("postgres"), "daily", &opts, &encode)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("archive_mode is \"off\"") && err.contains("cfdr-wal push %p"),
        "{err}"
    );
    cluster.stop().await.unwrap();

    cluster
        .start(&[("wal_level", "minimal"), ("max_wal_senders", "0")])
        .await
        .unwrap();
    let err = physical::backup(&repo, &cluster.target("postgres"), "daily", &opts, &encode)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wal_level is \"minimal\"") && err.contains("wal_level = replica"),
        "{err}"
    );
    assert!(
        repo.backup_ids().await.unwrap().is_empty(),
        "a refused backup leaves no manifest"
    );
}

#[tokio::test]
async fn pitr_refuses_targets_it_cannot_reach() {
    let repo = repo().await;
    let dir = tempfile::tempdir().unwrap();
    let request = |target| PitrRequest {
        target,
        data_dir: dir.path().join("restored"),
        force: false,
        restore_command: "cfdr-wal fetch %f %p".into(),
        prefetch_spool: None,
        identities: None,
        start: false,
        archive: false,
        rto: std::time::Duration::from_secs(60),
        bin_dir: None,
    };
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let err = physical::pitr(&repo, &request(RecoveryTarget::Time(future)), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("in the future"), "{err}");

    // A logical dump is not a base backup: PITR still finds nothing.
    let w = repo.begin_backup("logical", Some("hourly")).unwrap();
    w.commit(Default::default()).await.unwrap();
    let err = physical::pitr(&repo, &request(RecoveryTarget::Latest), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no physical base backup") && err.contains("cfdr-backup physical"),
        "{err}"
    );
    assert!(
        !dir.path().join("restored").exists(),
        "nothing is created when no backup fits"
    );
}

/// A damaged manifest of the newest base backup does not stop a PITR: the
/// older base backup is chosen (it replays more WAL to the same target).
#[tokio::test]
async fn a_damaged_base_backup_manifest_falls_back_to_an_older_one() {
    let repo = repo().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let w = repo.begin_backup(physical::KIND, Some("daily")).unwrap();
        ids.push(w.commit(Default::default()).await.unwrap().id);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let now = jiff::Timestamp::now();
    let newest = physical::choose_backup(&repo, &RecoveryTarget::Latest, now)
        .await
        .unwrap();
    assert_eq!(newest.id, ids[1]);
    repo.store()
        .put(&ids[1].manifest_key(), "{\"format_version\":1,")
        .await
        .unwrap();
    let chosen = physical::choose_backup(&repo, &RecoveryTarget::Latest, now)
        .await
        .unwrap();
    assert_eq!(chosen.id, ids[0]);
}
