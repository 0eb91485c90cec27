//! cfdr-backup as cron runs it, against a real PostgreSQL cluster.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logical_backup_is_quiet_then_listed_and_failures_exit_2() {
    let cluster = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 10, 500).await {
        Ok(c) => c,
        Err(e) => {
            return cfdr_testing::missing::<()>(&format!("PostgreSQL 15 ({e})"), "cfdr-backup cli")
                .unwrap_or(());
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("file://{}/repo", dir.path().display());
    let cfdr = |args: &[&str], db: &str| {
        Command::new(env!("CARGO_BIN_EXE_cfdr-backup"))
            .args(["-r", &repo])
            .args(args)
            .env("DATABASE_URL", cluster.url(db))
            .env_remove("CFDR_CONFIG")
            .output()
            .unwrap()
    };
    let help = Command::new(env!("CARGO_BIN_EXE_cfdr-backup"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout)
            .contains("cfdr-backup logical --class hourly --summary")
    );
    let init = cfdr_storage::StorageOptions::from_url(repo.clone())
        .build()
        .unwrap();
    cfdr_storage::Repository::init(init).await.unwrap();

    let out = cfdr(&["logical", "--class", "hourly"], "cryptofunk");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "cron mode must be silent on success"
    );

    let out = cfdr(&["logical", "--class", "daily", "--summary"], "cryptofunk");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        line.starts_with("backup ") && line.contains("trades=500"),
        "{line}"
    );

    let out = cfdr(&["list", "--json"], "cryptofunk");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let classes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["hourly", "daily"]);

    let out = cfdr(&["logical"], "no_such_db");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no_such_db"), "{err}");
    let out = cfdr(&["list", "--json"], "cryptofunk");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "a failed backup adds nothing"
    );
}
