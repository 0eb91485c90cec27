//! cfdr-secrets as a user runs it: round trips through every file source
//! and stdout sink, exit codes, clear errors, keygen, diff and rekey.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use cfdr_secrets::formats::{parse_env, parse_json};
use common::{Setup, bin, text};

const ENV_FILE: &str = "# exchange keys\nBINANCE_API_KEY=bk-123\nexport KRAKEN_SECRET='kr/+=='\nTLS_KEY=\"-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBg\n-----END PRIVATE KEY-----\n\"\nQUOTED=\"it's \\\"x\\\" $HOME\"\n";

fn k8s_data(manifest: &str) -> Vec<(String, Vec<u8>)> {
    let data = manifest.split("\ndata:\n").nth(1).unwrap();
    data.lines()
        .map(|l| {
            let (k, v) = l.trim().split_once(": ").unwrap();
            let v = base64::engine::general_purpose::STANDARD.decode(v).unwrap();
            (k.trim_matches('"').to_owned(), v)
        })
        .collect()
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = bin().arg("--help").output().unwrap();
    let help = text(&out);
    assert!(out.status.success());
    assert!(
        help.contains("cfdr-secrets -b cryptofunk backup --from vault:secret/cryptofunk"),
        "{help}"
    );
    assert!(
        help.contains("Exit codes: 0 success, 1 a check failed"),
        "{help}"
    );
    let out = bin().args(["restore", "--to", "yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn env_file_round_trips_to_env_json_and_kubernetes() {
    let s = Setup::new();
    let src = s.write("app.env", ENV_FILE.as_bytes());
    let from = format!("env:{}", src.display());
    let out = s.run(
        &["-b", "cryptofunk", "backup", "--init", "--from", &from],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stored cryptofunk@"), "{}", text(&out));
    let original = parse_env(ENV_FILE.as_bytes(), "orig").unwrap();

    let env = s.run(&["-b", "cryptofunk", "restore", "--to", "env"], None);
    assert!(env.status.success(), "{}", text(&env));
    assert!(
        original
            .diff(&parse_env(&env.stdout, "out").unwrap())
            .is_empty()
    );

    let json = s.run(
        &["-b", "cryptofunk", "restore", "latest", "--to", "json"],
        None,
    );
    assert!(
        original
            .diff(&parse_json(&json.stdout, "out").unwrap())
            .is_empty()
    );

    let k8s = s.run(
        &[
            "-b",
            "cryptofunk",
            "restore",
            "--to",
            "k8s:cryptofunk-secrets:cryptofunk",
        ],
        None,
    );
    let manifest = String::from_utf8(k8s.stdout).unwrap();
    assert!(
        manifest.contains("  name: cryptofunk-secrets\n  namespace: cryptofunk\n"),
        "{manifest}"
    );
    for (k, v) in k8s_data(&manifest) {
        assert_eq!(
            original.get(&k).unwrap().value.expose(),
            v.as_slice(),
            "{k}"
        );
    }
    // The manifest in the repository names keys, never values.
    let list = s.run(&["list", "--json"], None);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed[0]["count"], 4);
    assert_eq!(
        listed[0]["encryption"]["recipients"][0],
        cfdr_secrets::fingerprint(&s.recipient)
    );
    assert!(!String::from_utf8_lossy(&list.stdout).contains("bk-123"));
}

#[test]
fn json_on_stdin_with_binary_values_round_trips() {
    let s = Setup::new();
    let input = br#"{"API": "v\u0000al\nue", "BLOB": {"base64": "AP8Q/w=="}, "LIMIT": 25}"#;
    let out = s.run(&["backup", "--init", "--from", "-", "--armor"], Some(input));
    assert!(out.status.success(), "{}", text(&out));
    let json = s.run(&["restore", "--to", "json"], None);
    let original = parse_json(input, "in").unwrap();
    let back = parse_json(&json.stdout, "out").unwrap();
    assert!(original.diff(&back).is_empty(), "{}", original.diff(&back));
    // The restored JSON is itself a source: back up json:FILE, compare.
    let file = s.write("restored.json", &json.stdout);
    let from = format!("json:{}", file.display());
    assert!(s.run(&["backup", "--from", &from], None).status.success());
    let d = s.run(&["diff", "-", "latest"], Some(input));
    assert_eq!(d.status.code(), Some(0), "{}", text(&d));
    assert_eq!(back.get("BLOB").unwrap().value.expose(), [0, 255, 16, 255]);
    let k8s = s.run(&["restore", "--to", "k8s:x"], None);
    let data = k8s_data(&String::from_utf8(k8s.stdout).unwrap());
    assert_eq!(data[1], ("BLOB".to_owned(), vec![0, 255, 16, 255]));
    // .env cannot hold NUL or binary: a clear error, and nothing on stdout.
    let env = s.run(&["restore", "--to", "env"], None);
    assert_eq!(env.status.code(), Some(2));
    assert!(env.stdout.is_empty());
    assert!(text(&env).contains("binary"), "{}", text(&env));
}

#[test]
fn diff_reports_names_and_exits_1_on_differences() {
    let s = Setup::new();
    assert!(
        s.run(&["backup", "--init", "--from", "-"], Some(b"A=1\nB=2\n"))
            .status
            .success()
    );
    assert!(
        s.run(&["backup", "--from", "-"], Some(b"A=1\nB=changed\nC=3\n"))
            .status
            .success()
    );
    let versions: serde_json::Value =
        serde_json::from_slice(&s.run(&["list", "--json"], None).stdout).unwrap();
    let first = versions[0]["version"].as_str().unwrap().to_owned();
    let d = s.run(&["diff", &first, "latest"], None);
    assert_eq!(d.status.code(), Some(1), "{}", text(&d));
    assert_eq!(String::from_utf8_lossy(&d.stdout), "+ C\n~ B\n");
    let same = s.run(&["diff", "latest", "-"], Some(b"A=1\nB=changed\nC=3\n"));
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(same.stdout.is_empty());
}

#[test]
fn failures_are_clear_and_write_nothing_to_the_sink() {
    let s = Setup::new();
    assert!(
        s.run(
            &["backup", "--init", "--from", "-"],
            Some(b"SECRET=v4lue\n")
        )
        .status
        .success()
    );
    let expect_fail = |out: std::process::Output, needle: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            out.stdout.is_empty(),
            "nothing reaches the sink: {}",
            text(&out)
        );
        assert!(text(&out).contains(needle), "{needle}: {}", text(&out));
        assert!(!text(&out).contains("v4lue"));
    };
    // Wrong identity.
    let other = s.dir.path().join("other.txt");
    assert!(
        bin()
            .args(["keygen", "-o"])
            .arg(&other)
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut c = s.cmd();
    c.env("CFDR_AGE_IDENTITY_FILE", &other);
    expect_fail(
        common::run_with(c, &["restore", "--to", "env"], None),
        "other recipients",
    );
    // Identity file readable by others.
    let loose = s.write("loose.txt", &std::fs::read(&s.key).unwrap());
    let mut c = s.cmd();
    c.env("CFDR_AGE_IDENTITY_FILE", &loose);
    expect_fail(
        common::run_with(c, &["restore", "--to", "env"], None),
        "chmod 600",
    );
    let mut c = s.cmd();
    c.env("CFDR_AGE_IDENTITY_FILE", &loose);
    let forced = common::run_with(
        c,
        &["--allow-insecure-identity", "restore", "--to", "env"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&forced.stdout), "SECRET=v4lue\n");
    assert!(
        text(&forced).contains("chmod 600"),
        "warned: {}",
        text(&forced)
    );
    // Corrupted ciphertext: first the checksum catches it...
    let list: serde_json::Value =
        serde_json::from_slice(&s.run(&["list", "--json"], None).stdout).unwrap();
    let object = s.repo.join(list[0]["object"].as_str().unwrap());
    let manifest_path = object.with_extension("json");
    let sealed = std::fs::read(&object).unwrap();
    let mut bad = sealed.clone();
    let n = bad.len() - 3;
    bad[n] ^= 0x40;
    std::fs::write(&object, &bad).unwrap();
    expect_fail(s.run(&["restore", "--to", "env"], None), "corrupt");
    // ...and with the checksum forged to match, age's authentication does.
    let forge = |bytes: &[u8]| {
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        let info = cfdr_storage::ObjectInfo::of(bytes);
        m["size"] = info.size.into();
        m["sha256"] = info.sha256.into();
        std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
    };
    forge(&bad);
    expect_fail(s.run(&["restore", "--to", "env"], None), "damaged");
    // Truncated object, checksum forged too.
    std::fs::write(&object, &sealed[..sealed.len() - 10]).unwrap();
    forge(&sealed[..sealed.len() - 10]);
    expect_fail(s.run(&["restore", "--to", "env"], None), "truncated");
    // Passphrase typo on a break-glass copy.
    let mut c = s.cmd();
    c.env("CFDR_SECRETS_PASSPHRASE", "correct horse battery");
    let out = common::run_with(
        c,
        &[
            "-b",
            "glass",
            "--passphrase",
            "backup",
            "--from",
            "-",
            "--work-factor",
            "12",
        ],
        Some(b"SECRET=v4lue\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut c = s.cmd();
    c.env("CFDR_SECRETS_PASSPHRASE", "correct horse batery");
    expect_fail(
        common::run_with(
            c,
            &["-b", "glass", "--passphrase", "restore", "--to", "env"],
            None,
        ),
        "wrong passphrase",
    );
    expect_fail(
        s.run(&["-b", "glass", "restore", "--to", "env"], None),
        "--passphrase",
    );
    let mut c = s.cmd();
    c.env("CFDR_SECRETS_PASSPHRASE", "correct horse battery");
    let ok = common::run_with(
        c,
        &["-b", "glass", "--passphrase", "restore", "--to", "env"],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "SECRET=v4lue\n",
        "{}",
        text(&ok)
    );
}

#[test]
fn keygen_writes_0600_refuses_to_overwrite_and_shows_recipients() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    let mode = std::fs::metadata(&s.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = bin().args(["keygen", "-o"]).arg(&s.key).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).contains("refusing to overwrite"),
        "{}",
        text(&again)
    );
    let shown = s.run(&["keygen", "-y"], None);
    let line = String::from_utf8(shown.stdout).unwrap();
    assert!(
        line.starts_with(&s.recipient) && line.contains(&cfdr_secrets::fingerprint(&s.recipient)),
        "{line}"
    );
    assert!(!line.contains("AGE-SECRET-KEY"));
}

#[test]
fn rekey_moves_every_version_to_the_new_key() {
    let s = Setup::new();
    for body in [&b"A=1\n"[..], b"A=2\n"] {
        assert!(
            s.run(&["backup", "--init", "--from", "-"], Some(body))
                .status
                .success()
        );
    }
    let new_key = s.dir.path().join("new.txt");
    let out = bin().args(["keygen", "-o"]).arg(&new_key).output().unwrap();
    let new_recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let new_id = new_key.to_str().unwrap();
    let dry = s.run(
        &[
            "rekey",
            "-R",
            &new_recipient,
            "--new-identity",
            new_id,
            "--dry-run",
        ],
        None,
    );
    assert!(text(&dry).contains("2 would rekey"), "{}", text(&dry));
    // Without the new identity the copies could not be verified: refused.
    let refused = s.run(&["rekey", "-R", &new_recipient], None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused).contains("--new-identity"),
        "{}",
        text(&refused)
    );
    let done = s.run(
        &["rekey", "-R", &new_recipient, "--new-identity", new_id],
        None,
    );
    assert!(done.status.success(), "{}", text(&done));
    assert!(
        text(&done).contains("2 rekeyed, 0 already current"),
        "{}",
        text(&done)
    );
    let mut c = s.cmd();
    c.env("CFDR_AGE_IDENTITY_FILE", &new_key);
    let restored = common::run_with(c, &["restore", "--to", "env"], None);
    assert_eq!(
        String::from_utf8_lossy(&restored.stdout),
        "A=2\n",
        "{}",
        text(&restored)
    );
    let old = s.run(&["restore", "--to", "env"], None);
    assert_eq!(old.status.code(), Some(2), "the old key no longer opens it");
    let objects: Vec<_> = common::files(&s.repo)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
        .collect();
    assert_eq!(objects.len(), 2, "old objects deleted: {objects:?}");
    assert!(
        objects
            .iter()
            .all(|p| p.to_string_lossy().ends_with(".r1.age"))
    );
}
