//! cfdr-drill against a configured system: a live cluster archiving with
//! cfdr-wal into a repository holding a physical backup, a logical backup
//! and an encrypted secrets bundle. The drill restores all of them into
//! new targets, validates them, and leaves the live database as it was.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cfdr_drill::sample;
use cfdr_pg::LocalCluster;
use cfdr_pg::physical::{self, PhysicalOptions};
use cfdr_secrets::{Encryption, Recipients, SecretBundle, SecretValue};
use cfdr_storage::{EncodeOptions, Repository, SecretStore, StorageOptions};
use serde_json::Value;
use sqlx::Executor;

const EXE: &str = env!("CARGO_BIN_EXE_cfdr-drill");

/// Databases on the live server.
async fn databases(cluster: &LocalCluster) -> Vec<String> {
    let mut conn = cluster.target("postgres").connect().await.unwrap();
    sqlx::query_scalar("SELECT datname::text FROM pg_database ORDER BY 1")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Runs `cfdr-drill --config CONFIG --json ARGS` against the live cluster as
/// an operator would; it must exit 0. Returns the JSON report.
fn drill(cwd: &Path, config: &Path, live: &LocalCluster, tmp: &Path, args: &[&str]) -> Value {
    let out = Command::new(EXE)
        .current_dir(cwd)
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .env("DATABASE_URL", live.url("cryptofunk"))
        .env("TMPDIR", tmp)
        .env_remove("CFDR_REPOSITORY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_drill_restores_everything_into_new_targets_and_touches_nothing_live() {
    let test = "cfdr-drill configured";
    let wal = Path::new(EXE).with_file_name("cfdr-wal");
    assert!(
        wal.is_file(),
        "{} is missing: cargo build -p cfdr-wal",
        wal.display()
    );
    let Some(bin) = cfdr_testing::pg::pg_bin(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (repo_dir, tmp) = (dir.path().join("repo"), dir.path().join("tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let url = format!("file://{}", repo_dir.display());
    let repo = Repository::init(StorageOptions::from_url(url.clone()).build().unwrap())
        .await
        .unwrap();
    cfdr_testing::pg::give_to_postgres(&repo_dir);

    // The live cluster, archiving every segment into the repository.
    let mut live = LocalCluster::init_temp(&bin).await.unwrap();
    let conf = live.data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{} -r {} push %p'\n",
        wal.display(),
        repo_dir.display()
    ));
    std::fs::write(&conf, text).unwrap();
    live.start(&[]).await.unwrap();
    live.create_database("cryptofunk").await.unwrap();
    let db = live.target("cryptofunk");
    sample::load(&db, 10, 500).await.unwrap();
    physical::backup(
        &repo,
        &live.target("postgres"),
        "daily",
        &PhysicalOptions::default(),
        &EncodeOptions::default(),
    )
    .await
    .unwrap();
    cfdr_pg::logical::backup(
        &repo,
        &db,
        "hourly",
        &Default::default(),
        &EncodeOptions::default(),
    )
    .await
    .unwrap();
    // Trades after the backups reach the repository only as WAL.
    let mut conn = db.connect().await.unwrap();
    conn.execute(sample::workload_sql(10, 501, 530).as_str())
        .await
        .unwrap();
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let deadline = Instant::now() + cfdr_testing::PATIENCE;
    loop {
        let last: Option<String> =
            sqlx::query_scalar("SELECT last_archived_wal FROM pg_stat_archiver")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if last.is_some_and(|l| l >= segment) {
            break;
        }
        assert!(Instant::now() < deadline, "{segment} not archived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A secrets bundle encrypted to an identity kept in a 0600 file.
    let identity = dir.path().join("identity.txt");
    let recipient = cfdr_secrets::write_identity_file(&identity, "test").unwrap();
    // restore_command (cfdr-wal fetch, as the server's user) reads the
    // configuration, identity included, as in production.
    cfdr_testing::pg::give_to_postgres(&identity);
    let mut bundle = SecretBundle::new();
    bundle
        .insert_value("EXCHANGE_API_KEY", SecretValue::text("k-123"))
        .unwrap();
    let to = Encryption::Recipients(Recipients::parse([recipient.as_str()]).unwrap());
    SecretStore::new(&repo)
        .backup(
            "cryptofunk",
            &bundle,
            &to,
            false,
            "test",
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();

    let config = dir.path().join("cfdr.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {url:?}\n[encryption]\nidentity-file = {:?}\n",
            identity.display().to_string()
        ),
    )
    .unwrap();
    let before = sample::content_fingerprint(&db).await.unwrap();
    let dbs_before = databases(&live).await;

    let r = drill(dir.path(), &config, &live, &tmp, &[]);
    assert_eq!(r["mode"], "configured");
    assert_eq!(r["status"], "SUCCESSFUL", "{r}");
    let names: Vec<&str> = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["secrets-loss", "database-loss"]);
    for s in r["scenarios"].as_array().unwrap() {
        assert_eq!(s["verdict"], "PASSED", "{s}");
        assert!(
            s["validations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["passed"] == true),
            "{s}"
        );
    }
    let loss = &r["scenarios"][1];
    // Every trade, including those only in WAL, came back.
    assert_eq!(loss["last_trade_before"], 530, "{loss}");
    assert_eq!(loss["last_trade_after"], 530, "{loss}");
    assert_eq!(loss["rpo_trades"], 0);
    let checks: Vec<&str> = loss["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for what in [
        "amcheck finds no corruption in the physical restore",
        "amcheck finds no corruption in the logical restore",
        "trading invariants hold on the physical restore",
        "trading invariants hold on the logical restore",
    ] {
        assert!(checks.contains(&what), "{what} in {checks:?}");
    }
    assert_eq!(r["cleanup"]["status"], "removed", "{}", r["cleanup"]);

    // Nothing live changed; no scratch database or folder is left.
    assert_eq!(sample::content_fingerprint(&db).await.unwrap(), before);
    assert_eq!(databases(&live).await, dbs_before);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    let id = r["id"].as_str().unwrap();
    assert!(
        repo_dir
            .join("drills")
            .join(id)
            .join("report.json")
            .is_file()
    );

    // --destructive adds accidental-deletion: a canary table of its own in
    // the live database, half deleted, every row back in the PITR copy,
    // the table dropped afterwards; the trading data is untouched.
    let r = drill(
        dir.path(),
        &config,
        &live,
        &tmp,
        &["--destructive", "--scenario", "accidental-deletion"],
    );
    let s = &r["scenarios"][0];
    assert_eq!(s["name"], "accidental-deletion", "{r}");
    assert_eq!(s["verdict"], "PASSED", "{s}");
    assert_eq!(s["rpo_actual_seconds"], 0.0, "{s}");
    let canary = s["validations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "every canary row is in the PITR copy")
        .unwrap_or_else(|| panic!("{s}"));
    assert_eq!(canary["passed"], true, "{canary}");
    assert!(
        canary["detail"]
            .as_str()
            .unwrap()
            .contains("500 deleted in the live database, 1000 of 1000 in the copy"),
        "{canary}"
    );
    assert_eq!(r["cleanup"]["status"], "removed", "{}", r["cleanup"]);
    let canaries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'cfdr_drill_canary_%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(canaries, 0, "the canary table was dropped");
    assert_eq!(sample::content_fingerprint(&db).await.unwrap(), before);
    assert_eq!(databases(&live).await, dbs_before);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

    // --destructive replica-failover: the live primary (its data directory
    // here) is stopped, the configured standby promoted and validated, and
    // archiving goes on from it on timeline 2.
    // The server's user writes the standby's log beside its data directory.
    let standby_home = dir.path().join("standby-home");
    std::fs::create_dir_all(&standby_home).unwrap();
    cfdr_testing::pg::give_to_postgres(&standby_home);
    let standby_dir = standby_home.join("standby");
    cfdr_pg::replica::create(
        &bin,
        &live.target("postgres"),
        &standby_dir,
        "drill_standby",
    )
    .await
    .unwrap();
    let mut standby = LocalCluster::existing(&bin, &standby_dir, &standby_dir).unwrap();
    standby.start(&[]).await.unwrap();
    let deadline = Instant::now() + cfdr_testing::PATIENCE;
    while !cfdr_pg::replica::status(&live.target("postgres"))
        .await
        .unwrap()
        .iter()
        .any(|r| r.state == "streaming")
    {
        assert!(Instant::now() < deadline, "the standby never streamed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {url:?}\n[encryption]\nidentity-file = {:?}\n[drill]\nprimary-data-dir = {:?}\nreplica-url = {:?}\n",
            identity.display().to_string(),
            live.data_dir.display().to_string(),
            standby.url("postgres"),
        ),
    )
    .unwrap();
    let r = drill(
        dir.path(),
        &config,
        &live,
        &tmp,
        &["--destructive", "--scenario", "replica-failover"],
    );
    let s = &r["scenarios"][0];
    assert_eq!(s["name"], "replica-failover", "{r}");
    assert_eq!(s["verdict"], "PASSED", "{s}");
    assert_eq!(s["last_trade_before"], 530, "{s}");
    assert_eq!(s["last_trade_after"], 530, "{s}");
    assert_eq!(s["rpo_trades"], 0, "{s}");
    assert!(
        s["validations"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |v| v["name"] == "the promoted standby writes on a new timeline"
                    && v["passed"] == true
            ),
        "{s}"
    );
    // The standby is the primary now: it takes writes on timeline 2, and
    // the old primary is down.
    assert_eq!(
        cfdr_pg::replica::current_timeline(&standby.target("postgres"))
            .await
            .unwrap(),
        2
    );
    assert!(live.target("postgres").connect().await.is_err());
    standby.stop().await.unwrap();
}
