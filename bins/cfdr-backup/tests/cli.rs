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
    // zstd, not encrypted: the name says so.
    let key = list[0]["objects"][0]["key"].as_str().unwrap();
    assert!(key.ends_with("/dump.pgdump.zst"), "{key}");
    assert!(list[0]["verified"].is_null(), "{list}");

    // A recorded check becomes the backup's verified state in both listings.
    let hourly = cfdr_storage::BackupId::parse(list[0]["id"].as_str().unwrap()).unwrap();
    let repository = cfdr_storage::Repository::open(
        cfdr_storage::StorageOptions::from_url(repo.clone())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    repository
        .record_check(&cfdr_storage::CheckRecord {
            backup: hourly.clone(),
            kind: cfdr_storage::CheckKind::RestoreTest,
            time: jiff::Timestamp::now(),
            passed: true,
            summary: "passed".into(),
        })
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&cfdr(&["list"], "cryptofunk").stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("VERIFIED"), "{text}");
    assert!(
        lines[1].starts_with(hourly.as_str()) && lines[1].contains("restore-test ok 0s"),
        "{text}"
    );
    assert!(lines[2].contains("never"), "{text}");
    // The ID column is padded: the columns line up under their headings.
    for line in &lines[1..] {
        assert_eq!(
            line.find(" logical "),
            lines[0].find(" KIND "),
            "columns do not line up:\n{text}"
        );
    }
    let out = cfdr(&["list", "--json"], "cryptofunk");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["verified"]["passed"], true, "{list}");
    assert_eq!(list[0]["verified"]["kind"], "restore-test", "{list}");

    // A physical backup needs WAL archiving: refused with the fix, nothing stored.
    let out = cfdr(&["physical", "--class", "daily"], "postgres");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("archive_mode") && err.contains("cfdr-wal push %p"),
        "{err}"
    );

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

/// A torn manifest does not hide the other backups: `list` shows it as
/// DAMAGED in its place, names the key and says what to do.
#[tokio::test]
async fn list_goes_on_past_a_damaged_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let url = format!("file://{}", root.display());
    let store = cfdr_storage::StorageOptions::from_url(url.clone())
        .build()
        .unwrap();
    let repo = cfdr_storage::Repository::init(store).await.unwrap();
    let mut ids = Vec::new();
    for class in ["hourly", "daily", "weekly"] {
        let writer = repo.begin_backup("logical", Some(class)).unwrap();
        ids.push(writer.commit(Default::default()).await.unwrap().id);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let key = ids[1].manifest_key();
    let bytes = std::fs::read(root.join(&key)).unwrap();
    std::fs::write(root.join(&key), &bytes[..bytes.len() / 2]).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-backup"))
        .args(["-r", &url, "list"])
        .env_remove("CFDR_CONFIG")
        .output()
        .unwrap();
    let (table, warned) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{table}{warned}");
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[0].starts_with(ids[0].as_str()) && rows[0].contains("hourly"));
    assert!(rows[2].starts_with(ids[2].as_str()) && rows[2].contains("weekly"));
    assert!(
        rows[1].starts_with(ids[1].as_str()) && rows[1].contains("DAMAGED"),
        "{table}"
    );
    assert!(
        warned.contains(&key) && warned.contains("restore the manifest from a copy"),
        "{warned}"
    );
}
