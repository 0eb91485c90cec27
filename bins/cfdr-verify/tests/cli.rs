//! cfdr-verify (the restore test) against a real PostgreSQL cluster.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_test_passes_then_fails_on_a_damaged_backup() {
    let Some(setup) = cfdr_testing::pg::backed_up("weekly", "cfdr-verify cli").await else {
        return;
    };
    let (cluster, url, m) = (&setup.cluster, setup.url.as_str(), &setup.manifest);
    let repo_root = std::path::Path::new(url.trim_start_matches("file://"));
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_cfdr-verify"))
            .args(["-r", url, "--latest"])
            .env("DATABASE_URL", cluster.url("postgres"))
            .env_remove("CFDR_CONFIG")
            .output()
            .unwrap()
    };
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("{}: ok", m.id)), "{text}");
    let repo = cfdr_storage::Repository::open(
        cfdr_storage::StorageOptions::from_url(url).build().unwrap(),
    )
    .await
    .unwrap();
    let passed = repo.latest_checks().await.unwrap()[&m.id];
    assert!(
        passed.passed && passed.kind == cfdr_storage::CheckKind::RestoreTest,
        "the passed test is recorded beside the backup: {passed:?}"
    );

    let key = &m.objects[0].key;
    let path = repo_root.join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED") && text.contains(key.as_str()),
        "{text}"
    );
    // When the restore itself fails no check has passed: no empty list.
    assert!(!text.contains("after []"), "{text}");
    assert!(!text.contains("after passing :"), "{text}");
    let failed = repo.latest_checks().await.unwrap()[&m.id];
    assert!(
        !failed.passed && failed.time > passed.time,
        "the failed test is now the backup's verified state: {failed:?}"
    );
    let records = repo.checks(&m.id).await.unwrap();
    assert_eq!(records.len(), 2);
    assert!(records[1].summary.contains(key.as_str()), "{records:?}");

    // An id that is not in the repository says so and how to list them.
    let unknown = cfdr_storage::BackupId::parse("20200101T000000.000Z-logical-abcd").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-verify"))
        .args(["-r", url, unknown.as_str()])
        .env("DATABASE_URL", cluster.url("postgres"))
        .env_remove("CFDR_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("there is no backup {unknown} in the repository")),
        "{err}"
    );
    assert!(err.contains("cfdr-repo list"), "{err}");
    assert!(!err.contains("manifest.json"), "{err}");
}
