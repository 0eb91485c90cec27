//! cfdr-restore files: --list, --diff exit codes, --into and --force.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn restore(repo: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cfdr-restore"))
        .args(["-r", repo, "files"])
        .args(args)
        .env_remove("CFDR_CONFIG")
        .output()
        .unwrap()
}

use cfdr_testing::output_text as text;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_diff_and_restore_a_config_archive() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/repo", dir.path().display());
    let repo = cfdr_storage::Repository::init(
        cfdr_storage::StorageOptions::from_url(url.clone())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let src = dir.path().join("etc");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("app.toml"), "port = 8080\n").unwrap();
    let req = cfdr_files::BackupRequest::new(cfdr_files::FileClass::Config, vec![src.clone()]);
    let a = cfdr_files::backup(&repo, &req, &cfdr_storage::EncodeOptions::default())
        .await
        .unwrap();
    let id = a.manifest.id.to_string();
    let name = src.join("app.toml");
    let rel = name.to_str().unwrap().trim_start_matches('/');

    let out = restore(&url, &[&id, "--list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(rel) && text(&out).contains(" 12 "),
        "{}",
        text(&out)
    );

    // --diff / compares with the live files: equal, then one change (exit 1).
    let out = restore(&url, &[&id, "--diff", "/"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(&name, "port = 9090\n").unwrap();
    let out = restore(&url, &[&id, "--diff", "/"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("changed  {rel:?}: content")),
        "{}",
        text(&out)
    );

    // In place: refused without --force (exit 2, the file kept), then done.
    let out = restore(&url, &[&id, "--into", "/"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&name).unwrap(), "port = 9090\n");
    let out = restore(&url, &[&id, "--into", "/", "--path", rel, "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&name).unwrap(), "port = 8080\n");

    // Not a file archive, and no mode given: clear refusals.
    let out = restore(&url, &[&id]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = restore(&url, &["20261106T140000.000Z-logical-ab12", "--list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
