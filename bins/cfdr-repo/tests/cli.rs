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

use cfdr_testing::output_text as text;

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
    let missing = dir.path().join("empty");
    let out = cfdr_repo(&missing, &["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("cfdr-repo init"), "{}", text(&out));
    // `list` has no --init: the advice names only what works.
    assert!(!text(&out).contains("--init"), "{}", text(&out));
    assert!(!missing.exists(), "a read-only command created {missing:?}");
    let empty = dir.path().join("not-a-repo");
    std::fs::create_dir(&empty).unwrap();
    let out = cfdr_repo(&empty, &["info"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no cfdr repository") && text(&out).contains("cfdr-repo init"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("--init"), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing written"
    );

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

/// uid and gid of the `postgres` OS user, which the tests (run as root)
/// use as a user without write access to a root-owned repository.
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == "postgres").then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .expect("the tests need a `postgres` OS user (scripts/test creates it)")
}

/// cfdr-repo run as `postgres` against a repository owned by root.
fn cfdr_repo_as_postgres(repo: &Path, args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = postgres_user();
    Command::new(env!("CARGO_BIN_EXE_cfdr-repo"))
        .arg("-r")
        .arg(format!("file://{}", repo.display()))
        .args(args)
        .env_remove("CFDR_CONFIG")
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap()
}

/// A repository made by root (mode 0755: others may read, not write)
/// holding one kept self-test backup.
fn root_owned_repository(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap(),
        0,
        "this test runs as root"
    );
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = dir.join("repo");
    let out = cfdr_repo(&repo, &["selftest", "--init", "--size-mib", "1", "--keep"]);
    assert!(out.status.success(), "{}", text(&out));
    let tmp = repo.join(".cfdr-tmp");
    if tmp.exists() {
        std::fs::remove_dir(&tmp).unwrap();
    }
    repo
}

#[test]
fn a_folder_postgres_cannot_write_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let repo = root_owned_repository(dir.path());
    let out = cfdr_repo_as_postgres(&repo, &["selftest", "--size-mib", "1"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains(&format!("cannot write {}/.cfdr-tmp", repo.display())),
        "{msg}"
    );
    assert!(msg.contains("postgres, uid"), "{msg}");
    assert!(
        msg.contains(&format!("chown -R postgres: {}", repo.display())),
        "{msg}"
    );
    // Each cause once.
    assert_eq!(msg.matches("Permission denied").count(), 1, "{msg}");
}

#[test]
fn verify_with_read_only_access_verifies_and_says_the_record_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = root_owned_repository(dir.path());
    let out = cfdr_repo_as_postgres(&repo, &["verify", "--all"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(msg.contains("1 objects ok, 0 failed"), "{msg}");
    assert!(msg.contains("could not be recorded"), "{msg}");
    let list = cfdr_repo(&repo, &["list", "--json"]);
    let backups: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = backups[0]["id"].as_str().unwrap();
    assert!(
        !repo.join("backups").join(id).join("checks").exists(),
        "no record was written"
    );
}

#[test]
fn read_only_commands_leave_the_folder_alone() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let out = cfdr_repo(&repo, &["selftest", "--init", "--size-mib", "1", "--keep"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_dir_all(repo.join(".cfdr-tmp")).unwrap();
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["info"],
        &["info", "--json"],
    ] {
        let out = cfdr_repo(&repo, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(
            !repo.join(".cfdr-tmp").exists(),
            "{args:?} wrote .cfdr-tmp/"
        );
    }
}

#[test]
fn list_pads_the_id_column() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let out = cfdr_repo(&repo, &["selftest", "--init", "--size-mib", "1", "--keep"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cfdr_repo(&repo, &["list"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        lines[0].find("KIND"),
        lines[1].find("selftest "),
        "columns do not line up:\n{stdout}"
    );
}

#[test]
fn age_errors_name_the_setting_and_print_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = cfdr_secrets::generate_identity();
    let (other_secret, _) = cfdr_secrets::generate_identity();
    let selftest = |identity: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfdr-repo"));
        cmd.args(["-r", &format!("file://{}/repo", dir.path().display())])
            .args(["selftest", "--init", "--size-mib", "1"])
            .env_remove("CFDR_CONFIG")
            .env_remove("CFDR_AGE_IDENTITY_FILE")
            .env_remove("CFDR_AGE_IDENTITY")
            .env("CFDR_AGE_RECIPIENTS", &public);
        if let Some(id) = identity {
            cmd.env("CFDR_AGE_IDENTITY", id);
        }
        cmd.output().unwrap()
    };
    let out = selftest(None);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains(".zst.age is age-encrypted"), "{msg}");
    assert!(msg.contains("CFDR_AGE_IDENTITY_FILE"), "{msg}");
    assert!(msg.contains("encryption.identity-file"), "{msg}");
    assert_eq!(msg.matches("no identity is configured").count(), 1, "{msg}");

    let out = selftest(Some(other_secret.as_str()));
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("cannot decrypt backups/"), "{msg}");
    assert!(!msg.contains("encryption failed"), "{msg}");
    assert_eq!(
        msg.matches("none of the age identities").count(),
        1,
        "{msg}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-repo"))
        .args(["-r", &format!("file://{}/repo", dir.path().display())])
        .args(["selftest", "--size-mib", "1"])
        .env_remove("CFDR_CONFIG")
        .env_remove("CFDR_AGE_IDENTITY")
        .env("CFDR_AGE_RECIPIENTS", &public)
        .env(
            "CFDR_AGE_IDENTITY_FILE",
            dir.path().join("no-such-identity.txt"),
        )
        .output()
        .unwrap();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("no-such-identity.txt"), "{msg}");
    assert_eq!(msg.matches("No such file or directory").count(), 1, "{msg}");
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    assert!(cfdr_repo(&repo, &["init"]).status.success());
    let out = cfdr_repo(&repo, &["-vv", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.is_empty(), "-vv logs something to check");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[test]
fn every_command_is_in_the_readme_commands_table() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/commands.md"
    ))
    .unwrap();
    let section = &page[page.find("\n## cfdr-repo\n").unwrap() + 1..];
    let section = &section[..section[1..].find("\n## ").unwrap()];
    let commands = cfdr_testing::subcommands(env!("CARGO_BIN_EXE_cfdr-repo"));
    assert!(commands.len() >= 5, "{commands:?}");
    for c in commands {
        assert!(
            section.contains(&format!("| `{c}")),
            "docs/commands.md \"cfdr-repo\" lacks cfdr-repo {c}"
        );
    }
}
