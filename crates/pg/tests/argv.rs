//! Credentials never reach the argv of the PostgreSQL tools cfdr spawns:
//! `/proc/<pid>/cmdline` is readable by every user of the host. The cluster
//! requires SCRAM passwords on TCP, so the tools only succeed when the
//! password reaches them another way (`PGPASSWORD` in their environment),
//! and a watcher reads the argv of every pg_dump, pg_restore, psql,
//! pg_basebackup and pg_receivewal (under `cfdr-wal stream`) while they
//! run.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cfdr_pg::logical::{self, LogicalOptions, RestoreRequest};
use cfdr_pg::replica;
use cfdr_storage::{EncodeOptions, Repository, StorageOptions};

const TOOLS: [&str; 5] = [
    "pg_dump",
    "pg_restore",
    "psql",
    "pg_basebackup",
    "pg_receivewal",
];

/// Every argv seen per tool, and every process whose argv held `secret`.
#[derive(Default)]
struct Seen {
    argv_by_tool: BTreeMap<String, Vec<String>>,
    leaks: Vec<String>,
}

/// Reads `/proc/*/cmdline` in a loop until `stop` is set.
fn watch(secret: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            let Ok(procs) = std::fs::read_dir("/proc") else {
                break;
            };
            for entry in procs.flatten() {
                let path = entry.path();
                let Ok(raw) = std::fs::read(path.join("cmdline")) else {
                    continue;
                };
                let argv = String::from_utf8_lossy(&raw).replace('\0', " ");
                if argv.contains(&secret) {
                    seen.leaks.push(argv.clone());
                }
                let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
                if let Some(tool) = TOOLS.iter().find(|t| comm.trim() == **t) {
                    let list = seen.argv_by_tool.entry((*tool).to_owned()).or_default();
                    if !argv.is_empty() && !list.contains(&argv) {
                        list.push(argv);
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tools_never_carry_the_password_in_argv() {
    let cluster = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 20, 20_000).await {
        Ok(c) => c,
        Err(e) => {
            return cfdr_testing::missing::<()>(&format!("PostgreSQL 15 ({e})"), "argv scan")
                .unwrap_or(());
        }
    };
    let secret = format!("argv-secret-{:016x}", rand::random::<u64>());
    let mut target = cluster.target("cryptofunk");
    // TCP needs the password from the reload on.
    std::fs::write(
        cluster.data_dir.join("pg_hba.conf"),
        "local all all trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host replication all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    {
        let mut conn = target.connect().await.unwrap();
        for sql in [
            format!("ALTER ROLE postgres PASSWORD '{secret}'"),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            sqlx::query(&sql).execute(&mut conn).await.unwrap();
        }
    }
    target.password = Some(secret.clone());
    let mut without_password = target.clone();
    without_password.password = None;
    let refused = without_password.connect().await;
    assert!(refused.is_err(), "TCP must require the password now");

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(secret.clone(), stop.clone());

    let url = format!("memory://argv-{:x}", rand::random::<u64>());
    let repo = Repository::init(StorageOptions::from_url(url).build().unwrap())
        .await
        .unwrap();
    let opts = LogicalOptions::default();
    let manifest = logical::backup(&repo, &target, "hourly", &opts, &EncodeOptions::default())
        .await
        .unwrap();
    // Two sessions: the parallel restore runs pg_restore for the schema and
    // psql for the rest of post-data.
    let req = RestoreRequest {
        jobs: 2,
        ..Default::default()
    };
    logical::restore(&repo, &target, &manifest, &opts, &req, |_| {})
        .await
        .unwrap();
    let standby = tempfile::tempdir().unwrap();
    let standby_dir = standby.path().join("standby");
    replica::create(cluster.bin(), &target, &standby_dir, "argv_scan")
        .await
        .unwrap();

    // The WAL stream: the binary, as systemd runs it, with the password
    // in DATABASE_URL; stopped (SIGTERM) once its pg_receivewal has run a
    // while.
    {
        let mut conn = target.connect().await.unwrap();
        for sql in [
            "ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'",
            "SELECT pg_reload_conf()",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let repo_url = format!("file://{}", dir.path().join("repo").display());
    Repository::init(StorageOptions::from_url(repo_url.clone()).build().unwrap())
        .await
        .unwrap();
    let config = dir.path().join("cfdr.toml");
    std::fs::write(
        &config,
        format!(
            "[stream]\nspool-dir = {:?}\n",
            dir.path().join("stream").display().to_string()
        ),
    )
    .unwrap();
    let mut stream = std::process::Command::new(cfdr_testing::bins::workspace_bin("cfdr-wal"))
        .args(["-r", &repo_url, "--config"])
        .arg(&config)
        .arg("stream")
        .env(
            "DATABASE_URL",
            format!(
                "postgres://postgres:{secret}@127.0.0.1:{}/postgres",
                cluster.port
            ),
        )
        .env_remove("CFDR_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let receiving =
        cfdr_testing::eventually("pg_receivewal running", cfdr_testing::PATIENCE, || {
            let running = std::fs::read_dir("/proc").ok().and_then(|procs| {
                procs.flatten().find(|p| {
                    std::fs::read_to_string(p.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "pg_receivewal")
                })
            });
            let exited = stream.try_wait().ok().flatten();
            async move {
                match (running, exited) {
                    (Some(_), _) => Ok(()),
                    (None, Some(status)) => Err(format!("cfdr-wal stream exited: {status}")),
                    (None, None) => Err("not yet".to_owned()),
                }
            }
        });
    receiving.await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &stream.id().to_string()])
        .status();
    let out = stream.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains(&secret),
        "the password in the stream's log: {log}"
    );

    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    for tool in TOOLS {
        assert!(
            seen.argv_by_tool.contains_key(tool),
            "{tool} was never seen running (seen: {:?}); the scan proves nothing about it",
            seen.argv_by_tool
        );
    }
    assert!(
        seen.leaks.is_empty(),
        "the password appeared in the argv of: {:#?}",
        seen.leaks
    );
}
