//! cfdr-backup files: the archive is committed with the class's kind.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_archives_with_the_class_kind_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/repo", dir.path().display());
    let repo = cfdr_storage::Repository::init(
        cfdr_storage::StorageOptions::from_url(url.clone())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let logs = dir.path().join("audit");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("audit.log"), "login admin\n").unwrap();
    std::fs::write(logs.join("audit.log.tmp"), "partial\n").unwrap();
    let backup = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cfdr-backup"))
            .args(["-r", &url, "files"])
            .args(args)
            .env_remove("CFDR_CONFIG")
            .output()
            .unwrap()
    };

    let path = logs.to_str().unwrap();
    let out = backup(&[
        "--class",
        "records",
        "--path",
        path,
        "--exclude",
        "*.tmp",
        "--summary",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ms = repo.backups().await.unwrap();
    assert_eq!(ms.len(), 1);
    assert_eq!(
        (ms[0].kind.as_str(), ms[0].class.as_deref()),
        ("trading", Some("records"))
    );
    assert!(
        text.contains(&format!(
            "archive {} (records): 1 files, 1 folders",
            ms[0].id
        )),
        "{text}"
    );

    let out = backup(&["--class", "secrets", "--path", path]);
    assert_eq!(out.status.code(), Some(2));
    let out = backup(&["--class", "logs", "--path", "/nonexistent/cfdr-files"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent"));
    let out = backup(&["--class", "config", "--path", path, "--git-tag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("git checkout"));
    assert_eq!(repo.backups().await.unwrap().len(), 1);
}
