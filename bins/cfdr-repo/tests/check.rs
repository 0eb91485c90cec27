//! `cfdr-repo check` as a user runs it, against moto buckets with and
//! without Object Lock: what it prints and its exit code.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use cfdr_testing::TestLocation;

/// Runs `cfdr-repo check` with a config file for `loc` plus `extra` lines
/// in `[repository]`; credentials come from the AWS variables, as in
/// production.
fn check(loc: &TestLocation, extra: &str, args: &[&str]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfdr.toml");
    let o = &loc.options;
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {:?}\n{extra}\n[repository.s3]\nendpoint = {:?}\nregion = \"us-east-1\"\n",
            o.url.as_deref().unwrap(),
            o.s3.endpoint.as_deref().unwrap(),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-repo"))
        .arg("--config")
        .arg(&config)
        .arg("check")
        .args(args)
        .env_remove("CFDR_REPOSITORY")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn init(loc: &TestLocation, extra: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfdr.toml");
    let o = &loc.options;
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {:?}\n{extra}\n[repository.s3]\nendpoint = {:?}\nregion = \"us-east-1\"\n",
            o.url.as_deref().unwrap(),
            o.s3.endpoint.as_deref().unwrap(),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-repo"))
        .arg("--config")
        .arg(&config)
        .arg("init")
        .env_remove("CFDR_REPOSITORY")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_on_a_locked_bucket_shows_versioning_lock_and_the_newest_retention() {
    let Some(loc) = TestLocation::moto_bucket("check_locked", true) else {
        return;
    };
    init(&loc, "object-lock = \"compliance\"");
    let (out, text) = check(&loc, "object-lock = \"compliance\"", &[]);
    assert!(out.status.success(), "{text}");
    for line in [
        "versioning: Enabled",
        "bucket object lock: enabled",
        "bucket default retention: none",
        "cfdr object lock: COMPLIANCE (window up to 7y, margin 30d)",
        "newest cfdr.json: COMPLIANCE until ",
        "\nok\n",
    ] {
        assert!(text.contains(line), "{line:?} missing in:\n{text}");
    }

    // GOVERNANCE is a warning, not a failure.
    let (out, text) = check(&loc, "object-lock = \"governance\"", &["--json"]);
    assert!(out.status.success(), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["configured-mode"], "governance");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("governance"), "{text}");
}

#[test]
fn check_on_a_bucket_without_lock_warns_and_fails_when_cfdr_should_lock() {
    let Some(loc) = TestLocation::moto_bucket("check_plain", false) else {
        return;
    };
    init(&loc, "");
    let (out, text) = check(&loc, "", &[]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("versioning: Off"), "{text}");
    assert!(text.contains("bucket object lock: not enabled"), "{text}");
    assert!(
        text.contains("WARNING: bucket ")
            && text.contains("can be deleted with the repository's own credentials"),
        "{text}"
    );

    let (out, text) = check(&loc, "object-lock = \"compliance\"", &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PROBLEM: object-lock = \"compliance\" is set but bucket"),
        "{text}"
    );
}
