//! cfdr-verify (the restore test) against a real PostgreSQL cluster.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_test_passes_then_fails_on_a_damaged_backup() {
    let cluster = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 10, 500).await {
        Ok(c) => c,
        Err(e) => {
            return cfdr_testing::missing::<()>(&format!("PostgreSQL 15 ({e})"), "cfdr-verify cli")
                .unwrap_or(());
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/repo", dir.path().display());
    let repo = cfdr_storage::Repository::init(
        cfdr_storage::StorageOptions::from_url(url.clone())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let opts = cfdr_pg::logical::LogicalOptions::default();
    let m = cfdr_pg::logical::backup(
        &repo,
        &cluster.target("cryptofunk"),
        "weekly",
        &opts,
        &Default::default(),
    )
    .await
    .unwrap();
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_cfdr-verify"))
            .args(["-r", &url, "--latest"])
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

    let key = &m.objects[0].key;
    let path = dir.path().join("repo").join(key);
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
}
