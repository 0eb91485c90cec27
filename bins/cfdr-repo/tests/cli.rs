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
    let words = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("Exit codes: 0 success, 1 a verification failed (an object's size or SHA-256, or a manifest that cannot be read), 2"),
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

/// One torn manifest among three backups: `list` and `info` go on with the
/// rest and name it, `verify --all` verifies the rest and exits 1.
#[test]
fn a_damaged_manifest_is_reported_and_the_rest_listed_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    for _ in 0..3 {
        let out = cfdr_repo(&repo, &["selftest", "--init", "--size-mib", "1", "--keep"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let list = cfdr_repo(&repo, &["list", "--json"]);
    let backups: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let ids: Vec<String> = backups
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    let key = format!("backups/{}/manifest.json", ids[1]);
    let path = repo.join(&key);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let list = cfdr_repo(&repo, &["list"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let table = String::from_utf8_lossy(&list.stdout);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(
        rows[0].starts_with(&ids[0]) && rows[2].starts_with(&ids[2]),
        "{table}"
    );
    assert!(
        rows[1].starts_with(&ids[1]) && rows[1].contains("DAMAGED: manifest cannot be read"),
        "{table}"
    );
    let warned = String::from_utf8_lossy(&list.stderr);
    assert!(
        warned.contains(&format!("backup {}: manifest {key} cannot be read", ids[1]))
            && warned.contains("restore the manifest from a copy of the repository"),
        "{warned}"
    );
    let json = cfdr_repo(&repo, &["list", "--json"]);
    assert_eq!(json.status.code(), Some(0), "{}", text(&json));
    let listed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(String::from_utf8_lossy(&json.stderr).contains(&key));

    let info = cfdr_repo(&repo, &["info"]);
    assert_eq!(info.status.code(), Some(0), "{}", text(&info));
    assert!(
        text(&info).contains("1 backups with a damaged manifest"),
        "{}",
        text(&info)
    );

    let verify = cfdr_repo(&repo, &["verify", "--all"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    let out = String::from_utf8_lossy(&verify.stdout);
    for good in [&ids[0], &ids[2]] {
        let line = out.lines().find(|l| l.starts_with(good.as_str())).unwrap();
        assert!(line.ends_with("objects ok, 0 failed"), "{out}");
    }
    assert!(
        out.contains(&format!("{}: FAILED: manifest cannot be read", ids[1]))
            && out.contains(&format!("FAILED {key}: ")),
        "{out}"
    );
    // Asked for by id, the damaged backup is a failed verification too.
    let one = cfdr_repo(&repo, &["verify", &ids[1]]);
    assert_eq!(one.status.code(), Some(1), "{}", text(&one));
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
