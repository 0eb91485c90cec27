//! cfdr-replica against real PostgreSQL 15 clusters: a SCRAM replication
//! role, a standby made with a slot, its lag, and a promotion that takes
//! writes.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use cfdr_pg::LocalCluster;
use sqlx::Row;

fn replica(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cfdr-replica"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("CFDR_REPLICATION_PASSWORD", "s3cret-repl")
        .env_remove("CFDR_CONFIG")
        .output()
        .unwrap()
}

use cfdr_testing::output_text as text;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_a_standby_reports_its_lag_and_promotes_it() {
    let primary = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 5, 200).await {
        Ok(c) => c,
        Err(e) => {
            return cfdr_testing::missing::<()>(
                &format!("PostgreSQL 15 ({e})"),
                "cfdr-replica cli",
            )
            .unwrap_or(());
        }
    };
    let dir = tempfile::tempdir().unwrap();
    // The standby's folder must be reachable by the postgres OS user.
    let base = dir.path().join("standby-home");
    std::fs::create_dir(&base).unwrap();
    if cfdr_pg::server_user().unwrap().is_some() {
        assert!(
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .arg(&base)
                .status()
                .unwrap()
                .success()
        );
    }
    let standby_dir = base.join("data");
    let url = primary.url("postgres");

    let out = replica(
        &url,
        &[
            "create",
            "--role",
            "replicator",
            "--slot",
            "standby1",
            "--data-dir",
            standby_dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("s3cret-repl"),
        "the password is never printed"
    );
    let mut conn = primary.target("postgres").connect().await.unwrap();
    let row = sqlx::query(
        "SELECT rolreplication, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'replicator'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        row.get::<bool, _>(0) && row.get::<bool, _>(1),
        "a REPLICATION role with a SCRAM verifier"
    );
    assert!(standby_dir.join("standby.signal").exists());
    let slot: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'standby1'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(slot, 1);

    let mut standby = LocalCluster::existing(primary.bin(), &standby_dir, &standby_dir).unwrap();
    standby.start(&[]).await.unwrap();
    sqlx::query("CREATE TABLE written_after_create AS SELECT 42 AS x")
        .execute(&mut conn)
        .await
        .unwrap();
    let listed = cfdr_testing::eventually(
        "the standby streams with no lag",
        cfdr_testing::PATIENCE,
        || async {
            let out = replica(&url, &["status", "--json"]);
            assert!(out.status.success(), "{}", text(&out));
            let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if listed[0]["state"] == "streaming" && listed[0]["lag_bytes"] == 0 {
                Ok(listed)
            } else {
                Err(listed.to_string())
            }
        },
    )
    .await;
    assert_eq!(listed[0]["state"], "streaming", "{listed}");
    assert_eq!(listed[0]["lag_bytes"], 0, "{listed}");
    // A lag limit of -1 byte cannot be met: exit 1, for cron.
    assert_eq!(
        replica(&url, &["status", "--max-lag-bytes=-1"])
            .status
            .code(),
        Some(1)
    );

    // Promoting the primary is refused; promoting the standby works.
    let out = replica(&url, &["promote"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a standby"), "{}", text(&out));
    // The promoted server is production now: its timeline may archive.
    let repo_url = format!("file://{}/repo", dir.path().display());
    let store = cfdr_storage::StorageOptions::from_url(repo_url.clone())
        .build()
        .unwrap();
    cfdr_storage::Repository::init(store.clone()).await.unwrap();
    let archive = cfdr_wal_archive::WalArchive::new(store.clone());
    // One archived segment of the primary makes the archive its own.
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let pushed = archive
        .push(
            &primary.data_dir.join("pg_wal").join(&segment),
            &cfdr_wal_archive::PushOptions {
                data_dir: Some(primary.data_dir.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(pushed, cfdr_wal_archive::Pushed::Stored { .. }));
    let out = replica(
        &standby.url("postgres"),
        &[
            "-r",
            &repo_url,
            "promote",
            "--wait",
            "30",
            "--adopt-timeline",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("to timeline 2 and accepts writes"),
        "{}",
        text(&out)
    );
    // The failover was recorded in the repository while it ran (the trading
    // gate holds Halted then) and the record is gone now that it is over.
    assert!(
        !text(&out).contains("without an operation marker"),
        "{}",
        text(&out)
    );
    let markers = cfdr_storage::operations::markers(&store).await.unwrap();
    assert!(markers.is_empty(), "{markers:?}");
    let mut promoted = standby.target("postgres").connect().await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut promoted)
        .await
        .unwrap();
    assert!(!in_recovery);
    let x: i32 = sqlx::query_scalar("SELECT x FROM written_after_create")
        .fetch_one(&mut promoted)
        .await
        .unwrap();
    assert_eq!(
        x, 42,
        "what the primary wrote after create reached the standby"
    );
}
