//! The region-loss procedure: the primary repository is gone, and a
//! logical restore and a point-in-time recovery read the secondary only,
//! named with `-r <copy name>`, with no other change.
//!
//! Needs `cfdr-wal` and `cfdr-restore` built beside `cfdr-copy` (the
//! workspace build).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cfdr_pg::LocalCluster;
use cfdr_pg::physical::{self, PhysicalOptions};
use cfdr_storage::{EncodeOptions, Repository, StorageOptions};
use cfdr_testing::pg::{content_fingerprint, give_to_postgres};
use sqlx::Executor;

const TEST: &str = "cfdr-copy region loss";

fn sibling(name: &str) -> PathBuf {
    cfdr_testing::sibling_bin(env!("CARGO_BIN_EXE_cfdr-copy"), name)
}

use cfdr_testing::output_text as text;

fn run(exe: &Path, config: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(exe)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CFDR_REPOSITORY")
        .env_remove("CFDR_CONFIG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// The text after `prefix` on the line that has it.
fn after<'a>(out: &'a str, prefix: &str) -> &'a str {
    let line = out
        .lines()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"));
    line.split_once(prefix).unwrap().1.trim()
}

async fn count_trades(url: &str) -> i64 {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT count(*) FROM trades")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logical_and_pitr_restores_read_the_copy_with_the_primary_deleted() {
    let Some(bin) = cfdr_testing::pg::pg_bin(TEST).await else {
        return;
    };
    let (wal_exe, restore_exe) = (sibling("cfdr-wal"), sibling("cfdr-restore"));
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (primary_dir, secondary_dir) = (work.join("primary"), work.join("region-b"));
    let config = work.join("cfdr.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = 'file://{}'\n\n[[copy]]\nname = 'dr'\nurl = 'file://{}'\n",
            primary_dir.display(),
            secondary_dir.display()
        ),
    )
    .unwrap();
    let repo = Repository::init(
        StorageOptions::from_url(primary_dir.display().to_string())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    give_to_postgres(work);

    // Production: archiving into the primary with `cfdr-wal push`.
    let mut source = LocalCluster::init_temp(&bin).await.unwrap();
    let conf = source.data_dir.join("postgresql.conf");
    let mut settings = std::fs::read_to_string(&conf).unwrap();
    settings.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{} --config {} push %p'\n",
        wal_exe.display(),
        config.display()
    ));
    std::fs::write(&conf, settings).unwrap();
    source.start(&[]).await.unwrap();
    source.create_database("cryptofunk").await.unwrap();
    let db = source.target("cryptofunk");
    let mut conn = db.connect().await.unwrap();
    conn.execute(cfdr_testing::pg::SCHEMA).await.unwrap();
    conn.execute(cfdr_testing::pg::sample_data(5, 300).as_str())
        .await
        .unwrap();
    let logical = cfdr_pg::logical::backup(
        &repo,
        &db,
        "hourly",
        &cfdr_pg::logical::LogicalOptions::default(),
        &EncodeOptions::default(),
    )
    .await
    .unwrap();
    let at_backup = content_fingerprint(&db).await.unwrap();
    physical::backup(
        &repo,
        &source.target("postgres"),
        "daily",
        &PhysicalOptions::default(),
        &EncodeOptions::default(),
    )
    .await
    .unwrap();
    // Trades committed after both backups exist only in the WAL.
    for _ in 0..25 {
        conn.execute("INSERT INTO trades (session_id, symbol, side, qty, price) VALUES (1, 'ETH-USD', 'sell', 2, 3000)")
            .await
            .unwrap();
    }
    let want = count_trades(&source.url("cryptofunk")).await;
    let last: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let done = source
        .data_dir
        .join(format!("pg_wal/archive_status/{last}.done"));
    cfdr_testing::eventually("the last segment archived", cfdr_testing::PATIENCE, || {
        let done = done.clone();
        async move {
            done.exists()
                .then_some(())
                .ok_or(format!("no {}", done.display()))
        }
    })
    .await;

    // The copy to the other region, then the region is lost.
    let out = run(&sibling("cfdr-copy"), &config, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    give_to_postgres(&secondary_dir);
    std::fs::remove_dir_all(&primary_dir).unwrap();

    // A logical restore from the copy, into a new database.
    let env = [("DATABASE_URL", source.url("cryptofunk"))];
    let out = run(
        &restore_exe,
        &config,
        &["-r", "dr", "logical", "--latest"],
        &env,
    );
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("restoring {}", logical.id)),
        "{printed}"
    );
    let restored = after(&printed, "restored into ").to_owned();
    assert_eq!(
        content_fingerprint(&source.target(&restored))
            .await
            .unwrap(),
        at_backup
    );
    drop(conn);
    source.stop().await.unwrap();

    // Point-in-time recovery from the copy: base backup and WAL.
    let data_dir = work.join("restored");
    let dir_arg = data_dir.display().to_string();
    let args = [
        "-r",
        "dr",
        "pitr",
        "--latest",
        "--start",
        "--data-dir",
        &dir_arg,
    ];
    let out = run(&restore_exe, &config, &args, &[]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let auto = std::fs::read_to_string(data_dir.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains(&format!("-r {} fetch", secondary_dir.display())),
        "restore_command reads the copy: {auto}"
    );
    let port: u16 = after(&printed, "psql -h 127.0.0.1 -p ")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{port}/cryptofunk");
    assert_eq!(count_trades(&url).await, want);
    let stop = after(&printed, "stop it with: ").to_owned();
    let stopped = Command::new("sh").args(["-c", &stop]).output().unwrap();
    assert!(stopped.status.success(), "{stop}: {}", text(&stopped));
}
