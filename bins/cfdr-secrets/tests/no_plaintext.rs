//! The promise of cfdr-secrets: a full backup and restore leaves no file
//! behind (TMPDIR, HOME and the working directory point at a fresh folder
//! that must stay empty), the repository holds no value in clear, and no
//! log line at debug level shows a value. Vault is FakeVaultKv2, an HTTP
//! server inside the test implementing the documented KV v2 endpoints
//! cfdr uses (list, read, metadata, write with cas).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../../crates/secrets/tests/support/fake_vault.rs"]
mod fake_vault;

use common::{Setup, files, run_with, text};
use fake_vault::FakeVaultKv2;
use serde_json::json;

const VALUES: [&str; 3] = ["S3CRET-ONE-8842", "S3CRET-LINE-2-5519", "S3CRET-VAULT-7731"];

#[test]
fn backup_and_restore_leave_no_plaintext_anywhere() {
    let s = Setup::new();
    let fresh = tempfile::tempdir().unwrap();
    let vault = FakeVaultKv2::start("secret", "s.test-token");
    vault.put("cryptofunk", json!({"DB_PASSWORD": VALUES[2]}));
    vault.put("cryptofunk/binance", json!({"api_key": VALUES[0], "pem": format!("-----BEGIN-----\n{}\n-----END-----\n", VALUES[1])}));
    let run = |args: &[&str], stdin: Option<&[u8]>| {
        let mut c = s.cmd();
        c.current_dir(fresh.path())
            .env("TMPDIR", fresh.path())
            .env("HOME", fresh.path())
            .env("RUST_LOG", "debug")
            .env("VAULT_ADDR", &vault.addr)
            .env("VAULT_TOKEN", &vault.token);
        let out = run_with(c, args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(log.contains("DEBUG"), "debug logging is on: {log}");
        for v in VALUES {
            assert!(!log.contains(v), "{v} in the log of {args:?}: {log}");
        }
        out
    };
    let stdin = format!("ONE={}\nTWO=\"{}\nmore\"\n", VALUES[0], VALUES[1]);
    run(
        &["-vv", "-b", "env", "backup", "--init", "--from", "-"],
        Some(stdin.as_bytes()),
    );
    run(
        &[
            "-vv",
            "-b",
            "vault",
            "backup",
            "--from",
            "vault:secret/cryptofunk",
        ],
        None,
    );
    let env = run(&["-vv", "-b", "env", "restore", "--to", "env"], None);
    assert!(String::from_utf8_lossy(&env.stdout).contains(VALUES[0]));
    run(
        &["-vv", "-b", "env", "restore", "--to", "k8s:app:prod"],
        None,
    );
    run(&["-vv", "-b", "vault", "restore", "--to", "json"], None);
    let written = run(
        &[
            "-vv",
            "-b",
            "vault",
            "restore",
            "--to",
            "vault:secret/restored",
        ],
        None,
    );
    assert!(
        String::from_utf8_lossy(&written.stdout).contains("2 secrets wrote"),
        "{}",
        text(&written)
    );
    assert_eq!(
        vault.current("restored/binance").unwrap().0["api_key"],
        VALUES[0]
    );
    run(
        &[
            "-vv",
            "-b",
            "vault",
            "diff",
            "latest",
            "vault:secret/restored",
        ],
        None,
    );
    run(&["-vv", "list"], None);

    let left = files(fresh.path());
    assert!(left.is_empty(), "files left behind: {left:?}");
    for f in files(&s.repo) {
        let bytes = std::fs::read(&f).unwrap();
        for v in VALUES {
            let found = bytes.windows(v.len()).any(|w| w == v.as_bytes());
            assert!(!found, "{v} in clear in {}", f.display());
        }
    }
}

#[test]
fn vault_restore_refuses_to_overwrite_newer_values_with_exit_1() {
    let s = Setup::new();
    let vault = FakeVaultKv2::start("secret", "s.test-token");
    vault.put("cryptofunk", json!({"api_key": "v1"}));
    let run = |args: &[&str]| {
        let mut c = s.cmd();
        c.env("VAULT_ADDR", &vault.addr)
            .env("VAULT_TOKEN", &vault.token);
        run_with(c, args, None)
    };
    assert!(
        run(&["backup", "--init", "--from", "vault:secret/cryptofunk"])
            .status
            .success()
    );
    vault.put("cryptofunk", json!({"api_key": "v2-rotated"}));
    let out = run(&["restore", "--to", "vault:secret/cryptofunk"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(
        vault.current("cryptofunk").unwrap(),
        (json!({"api_key": "v2-rotated"}), 2)
    );
    let dry = run(&[
        "restore",
        "--to",
        "vault:secret/cryptofunk",
        "--force",
        "--dry-run",
    ]);
    assert!(
        text(&dry).contains("would write secret/cryptofunk (version 2 -> 3)"),
        "{}",
        text(&dry)
    );
    assert_eq!(vault.current("cryptofunk").unwrap().1, 2);
    let forced = run(&["restore", "--to", "vault:secret/cryptofunk", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_eq!(
        vault.current("cryptofunk").unwrap(),
        (json!({"api_key": "v1"}), 3)
    );
    let missing = {
        let mut c = s.cmd();
        c.env_remove("VAULT_ADDR");
        run_with(c, &["restore", "--to", "vault:secret/x"], None)
    };
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("VAULT_ADDR"), "{}", text(&missing));
}
