//! `cfdr-restore pitr --start` as an operator runs it from a shell, with
//! the repository and data directory given as relative paths (and the
//! default `./cfdr-repo`): the server PostgreSQL starts in the restored
//! directory must still find the repository, the output says how to stop
//! the server that keeps running, and a target after the archived WAL ends
//! with the hint and the exact command that starts over.
//!
//! Needs `cfdr-wal` built beside `cfdr-restore` (the workspace build).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cfdr_pg::physical::{self, PhysicalOptions};
use cfdr_pg::{LocalCluster, PgBin};
use cfdr_storage::{EncodeOptions, Repository, StorageOptions};

const TEST: &str = "cfdr-restore pitr";

fn cfdr_wal() -> PathBuf {
    cfdr_testing::sibling_bin(env!("CARGO_BIN_EXE_cfdr-restore"), "cfdr-wal")
}

use cfdr_testing::output_text as text;

use cfdr_testing::pg::give_to_postgres;

/// Runs SQL with psql on 127.0.0.1:`port`; returns the unaligned output.
fn psql(bin: &PgBin, port: u16, sql: &str) -> String {
    let out = Command::new(bin.path("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-Atc", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `cfdr-restore ARGS` in `cwd`, with no repository from the environment.
fn restore(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cfdr-restore"))
        .current_dir(cwd)
        .args(args)
        .env_remove("CFDR_CONFIG")
        .env_remove("CFDR_REPOSITORY")
        .output()
        .unwrap()
}

/// The text after `prefix` on the line that has it.
fn after<'a>(out: &'a str, prefix: &str) -> &'a str {
    let line = out.lines().find(|l| l.contains(prefix)).unwrap_or_else(|| {
        panic!("no {prefix:?} in:\n{out}");
    });
    line.split_once(prefix).unwrap().1.trim()
}

/// The port a started restore reports.
fn port(out: &str) -> u16 {
    after(out, "psql -h 127.0.0.1 -p ")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn sh(cwd: &Path, command: &str) -> Output {
    Command::new("sh")
        .current_dir(cwd)
        .args(["-c", command])
        .env_remove("CFDR_CONFIG")
        .env_remove("CFDR_REPOSITORY")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_with_relative_paths_finds_the_repository_and_says_how_to_stop() {
    let dir = std::env::var("CFDR_TEST_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into());
    let bin = match PgBin::locate(Some(Path::new(&dir)), None).await {
        Ok(b) => b,
        Err(e) => {
            return cfdr_testing::missing(&format!("PostgreSQL 15 ({e})"), TEST).unwrap_or(());
        }
    };
    let wal_exe = cfdr_wal();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let repo_dir = work.join("cfdr-repo");
    let store = StorageOptions::from_url(repo_dir.display().to_string())
        .build()
        .unwrap();
    let repo = Repository::init(store).await.unwrap();
    std::fs::create_dir(work.join("ops")).unwrap();
    give_to_postgres(work);

    // The primary archives with `cfdr-wal push` into the repository.
    let mut source = LocalCluster::init_temp(&bin).await.unwrap();
    let conf = source.data_dir.join("postgresql.conf");
    let mut text_conf = std::fs::read_to_string(&conf).unwrap();
    text_conf.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{} -r {} push %p'\n",
        wal_exe.display(),
        repo_dir.display()
    ));
    std::fs::write(&conf, text_conf).unwrap();
    source.start(&[]).await.unwrap();
    let sport = source.port;
    psql(&bin, sport, "CREATE TABLE trades (id int PRIMARY KEY)");
    psql(
        &bin,
        sport,
        "INSERT INTO trades SELECT generate_series(1, 10)",
    );
    let db = source.target("postgres");
    physical::backup(
        &repo,
        &db,
        "daily",
        &PhysicalOptions::default(),
        &EncodeOptions::default(),
    )
    .await
    .unwrap();
    // Trades 11..=20 exist only in WAL fetched through restore_command.
    for id in 11..=20 {
        psql(&bin, sport, &format!("INSERT INTO trades VALUES ({id})"));
    }
    let last = psql(&bin, sport, "SELECT pg_walfile_name(pg_switch_wal())");
    let done = source
        .data_dir
        .join(format!("pg_wal/archive_status/{last}.done"));
    for _ in 0..600 {
        if done.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done.exists(), "{last} not archived");
    source.stop().await.unwrap();

    // 1. The default ./cfdr-repo and a relative data directory.
    let out = restore(
        work,
        &["pitr", "--latest", "--data-dir", "restored", "--start"],
    );
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let restored = work.join("restored");
    let auto = std::fs::read_to_string(restored.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains(&format!(" -r {} fetch", repo_dir.display())),
        "restore_command names the repository by absolute path: {auto}"
    );
    assert!(
        !restored.join("cfdr-repo").exists(),
        "no stray repository inside the data directory"
    );
    let log = restored.join("log/cfdr-pitr.log");
    assert!(log.is_file(), "the server log is inside the data directory");
    assert!(!work.join("restored.log").exists());
    assert!(
        printed.contains(&format!(
            "the server keeps running (data directory {}, log {})",
            restored.display(),
            log.display()
        )),
        "{printed}"
    );
    let port1 = port(&printed);
    assert_eq!(
        psql(&bin, port1, "SELECT count(*), max(id) FROM trades"),
        "20|20"
    );
    let stop = after(&printed, "stop it with: ").to_owned();
    let stopped = sh(work, &stop);
    assert!(stopped.status.success(), "{stop}: {}", text(&stopped));
    assert!(
        !restored.join("postmaster.pid").exists(),
        "{stop} stopped it"
    );

    // 2. A relative -r from another directory, to a time after the last
    // archived commit: the hint, and the command that starts over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .unwrap()
        .to_string();
    let ops = work.join("ops");
    let args = [
        "-r",
        "../cfdr-repo",
        "pitr",
        "--to-time",
        late.as_str(),
        "--data-dir",
        "../late",
        "--start",
    ];
    let out = restore(&ops, &args);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(2), "{printed}");
    assert!(
        printed.contains("the archived WAL ends before it (the last archived commit is at ")
            && printed.contains("restore again with --latest"),
        "{printed}"
    );
    let late_dir = work.join("late");
    assert!(
        printed.contains(&format!(
            "{} is kept for inspection",
            ops.join("../late").display()
        )),
        "{printed}"
    );
    assert!(
        !late_dir.join("postmaster.pid").exists(),
        "stopped on failure"
    );
    assert!(!work.join("late.wal-spool").exists(), "spool removed");
    let rerun = after(&printed, "to start over: ").to_owned();
    assert!(
        rerun.ends_with("-r ../cfdr-repo pitr --data-dir ../late --start --latest --force"),
        "{rerun}"
    );
    let again = sh(&ops, &rerun);
    let printed = text(&again);
    assert!(again.status.success(), "{rerun}: {printed}");
    let port2 = port(&printed);
    assert_eq!(
        psql(&bin, port2, "SELECT count(*), max(id) FROM trades"),
        "20|20"
    );
    let stop = after(&printed, "stop it with: ").to_owned();
    assert!(sh(&ops, &stop).status.success(), "{stop}");
}
