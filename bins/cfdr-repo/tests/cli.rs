//! cfdr-repo as a user runs it: exit codes, messages, and the self-test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn cfdr_repo(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cfdr-repo"))
        .arg("-r")
        .arg(format!("file://{}", repo.display()))
        .args(args)
        .env_remove("CFDR_CONFIG")
        .env_remove("CFDR_AGE_RECIPIENTS")
        .env_remove("CFDR_AGE_IDENTITY")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_shows_an_example_and_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-repo"))
        .arg("--help")
        .output()
        .unwrap();
    let help = text(&out);
    assert!(out.status.success());
    assert!(help.contains("cfdr-repo selftest --init"), "{help}");
    assert!(
        help.contains("Exit codes: 0 success, 1 a verification failed, 2"),
        "{help}"
    );
}

#[test]
fn selftest_creates_the_repository_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let out = cfdr_repo(&repo, &["selftest", "--init", "--size-mib", "4"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("self-test passed"), "{}", text(&out));
    assert!(repo.join("cfdr.json").is_file());
    let list = cfdr_repo(&repo, &["list", "--json"]);
    let backups: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        backups.as_array().unwrap().len(),
        0,
        "the sample backup is deleted"
    );
}

#[test]
fn init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    assert!(cfdr_repo(&repo, &["init"]).status.success());
    let again = cfdr_repo(&repo, &["init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
}

#[test]
fn verify_exits_1_and_names_a_damaged_object() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let out = cfdr_repo(&repo, &["selftest", "--init", "--size-mib", "2", "--keep"]);
    assert!(out.status.success(), "{}", text(&out));
    let list = cfdr_repo(&repo, &["list", "--json"]);
    let backups: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let key = backups[0]["objects"][0]["key"].as_str().unwrap().to_owned();
    assert!(cfdr_repo(&repo, &["verify", "--all"]).status.success());

    let path = repo.join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let out = cfdr_repo(&repo, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("FAILED {key}")),
        "{}",
        text(&out)
    );
}

#[test]
fn encrypted_selftest_uses_configured_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = cfdr_secrets::generate_identity();
    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-repo"))
        .args(["-r", &format!("file://{}/repo", dir.path().display())])
        .args(["selftest", "--init", "--size-mib", "2"])
        .env("CFDR_AGE_RECIPIENTS", &public)
        .env("CFDR_AGE_IDENTITY", secret.as_str())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("encrypted: true"), "{}", text(&out));
    assert!(
        !text(&out).contains(secret.as_str()),
        "the identity must never be printed"
    );
}

#[test]
fn runtime_errors_exit_2_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let out = cfdr_repo(&dir.path().join("empty"), &["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("cfdr-repo init"), "{}", text(&out));

    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-repo"))
        .args(["-r", "ftp://host/x", "info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("unsupported repository scheme"),
        "{}",
        text(&out)
    );

    let repo = dir.path().join("fresh");
    assert!(cfdr_repo(&repo, &["init"]).status.success());
    let out = cfdr_repo(&repo, &["verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("holds no backup"), "{}", text(&out));
}
