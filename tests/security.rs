//! Reliability suite: security.
//!
//! - **No secret anywhere it should not be.** A realistic workflow runs
//!   through the binaries with known secret values planted: the database
//!   password (in `DATABASE_URL`, as documented; the server requires it on
//!   TCP), an age identity file, S3 access and secret keys (moto accepts
//!   any), the values of a secrets bundle, a passphrase for a break-glass
//!   copy, and the incident notification secrets from the variables
//!   cfdr-incident documents (webhook URL, PagerDuty routing key, SMTP user
//!   and password; the endpoints are closed ports, so every delivery fails
//!   and its error is recorded). Every step logs at trace level. All their
//!   stdout and stderr, every file under the test's folders (config, work
//!   folder that is also TMPDIR and HOME, fetched WAL), the server's log
//!   and every object of the repository are scanned for each value, raw,
//!   base64 and hex. The only places a value may be are listed in
//!   [`EXCEPTIONS`]: the age identity file and the restored secrets'
//!   destination, both mode 0600.
//! - `--help` of every binary and subcommand, run with every secret in the
//!   environment, echoes none; errors for a wrong database password, S3
//!   secret key, age identity and passphrase name the problem without the
//!   value.
//! - A backup cannot reach another database: a real `pg_dump -Fc -Z0`
//!   (what cfdr-backup stores without compression) is rewritten so a table
//!   of contents entry's definition drops or changes another database
//!   (`DROP DATABASE victim`, `\connect victim` + `DROP TABLE`, `ALTER
//!   SYSTEM`), and `cfdr-restore logical` restores it into a new target
//!   with one session and with several: the restore fails naming the
//!   entry before it creates anything, and the other database, its rows
//!   and the server configuration are untouched. A harmless rewrite of the
//!   same entry is restored, so the crafted SQL does reach the server's
//!   path.
//!
//! Credentials never reaching spawned processes' argv is tested by
//! `crates/pg/tests/argv.rs` (pg_dump, pg_restore, psql, pg_basebackup,
//! pg_receivewal).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use cfdr_storage::{ObjectInfo, Repository, StorageOptions};
use cfdr_testing::bins::{binaries, workspace_bin};
use cfdr_testing::output_text as text;
use cfdr_testing::{Backend, TestLocation};
use rand::Rng;
use sqlx::Row;

/// Files allowed to hold a secret value, by file name: the age identity
/// (key material, created 0600 by `cfdr-secrets keygen`) and the file the
/// restored secrets are written to (opened 0600 by the operator's shell,
/// as `cfdr-secrets restore --to env > restored.env` with umask 077).
const EXCEPTIONS: [&str; 2] = ["identity.txt", "restored.env"];

fn random(prefix: &str, n: usize) -> String {
    let tail: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

/// Secret values and the forms they might leak in.
struct Secrets(BTreeMap<&'static str, String>);

impl Secrets {
    /// (what, needle) for every value, raw, base64 and hex.
    fn needles(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (what, value) in &self.0 {
            out.push((format!("{what} (raw)"), value.as_bytes().to_vec()));
            out.push((
                format!("{what} (base64)"),
                base64::engine::general_purpose::STANDARD
                    .encode(value)
                    .trim_end_matches('=')
                    .as_bytes()
                    .to_vec(),
            ));
            out.push((format!("{what} (hex)"), hex::encode(value).into_bytes()));
            if value.starts_with("AGE-SECRET-KEY-") {
                // Bech32 is case-insensitive.
                out.push((
                    format!("{what} (lower case)"),
                    value.to_lowercase().into_bytes(),
                ));
            }
        }
        out
    }

    /// The secrets found in `bytes`.
    fn found_in(&self, bytes: &[u8]) -> Vec<String> {
        self.needles()
            .into_iter()
            .filter(|(_, n)| memchr::memmem::find(bytes, n).is_some())
            .map(|(what, _)| what)
            .collect()
    }
}

/// Every file under `dir` (not following symlinks).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(files(&p));
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A cluster whose TCP connections need `password` for user postgres.
async fn password_cluster(
    password: &str,
    test: &str,
) -> Option<(cfdr_pg::LocalCluster, cfdr_pg::PgTarget)> {
    let cluster = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 5, 500).await {
        Ok(c) => c,
        Err(e) => return cfdr_testing::missing(&format!("PostgreSQL 15 ({e})"), test),
    };
    std::fs::write(
        cluster.data_dir.join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let mut target = cluster.target("cryptofunk");
    let mut conn = target.connect().await.unwrap();
    // The server hashes the password (SCRAM) before storing it; statements
    // are not logged (log_statement = none).
    for sql in [
        format!("ALTER ROLE postgres PASSWORD '{password}'"),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    target.password = Some(password.to_owned());
    Some((cluster, target))
}

/// The binaries, with the whole secret environment.
struct Workflow {
    dir: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
    outputs: Vec<(String, Vec<u8>)>,
}

impl Workflow {
    fn cmd(&self, bin: &str, args: &[&str]) -> Command {
        let mut c = Command::new(workspace_bin(bin));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CFDR_CONFIG", &self.config)
            .envs(self.env.iter().cloned())
            .current_dir(self.work())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Runs a step; keeps its stdout and stderr for the scan.
    fn step(&mut self, bin: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = self.cmd(bin, args);
        let out = match stdin {
            Some(input) => {
                c.stdin(Stdio::piped());
                let mut child = c.spawn().unwrap();
                use std::io::Write;
                child.stdin.take().unwrap().write_all(input).unwrap();
                child.wait_with_output().unwrap()
            }
            None => c.output().unwrap(),
        };
        self.outputs
            .push((format!("{bin} {args:?}: stdout"), out.stdout.clone()));
        self.outputs
            .push((format!("{bin} {args:?}: stderr"), out.stderr.clone()));
        out
    }

    fn ok(&mut self, bin: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.step(bin, args, stdin);
        assert!(out.status.success(), "{bin} {args:?}: {}", text(&out));
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_with_planted_secrets_leaks_none() {
    let test = "security_scan";
    let db_password = random("dbpw", 24);
    let Some((cluster, target)) = password_cluster(&db_password, test).await else {
        return;
    };
    let Some(loc) = TestLocation::new(Backend::S3Moto, test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let closed = cfdr_testing::closed_port();
    let mut secrets = Secrets(BTreeMap::from([
        ("database password", db_password.clone()),
        ("S3 access key id", random("AKIA", 16)),
        ("S3 secret access key", random("", 40)),
        ("secret value EXCHANGE_API_KEY", random("xk-", 32)),
        ("secret value DB_PASSWORD", random("pw-", 32)),
        ("passphrase", random("pass-", 24)),
        ("Slack webhook path", random("T0B1", 24)),
        ("PagerDuty routing key", random("R0", 30)),
        ("SMTP username", random("smtp-user-", 16)),
        ("SMTP password", random("smtp-pw-", 24)),
    ]));
    let o = &loc.options;
    let config = dir.path().join("cfdr.toml");
    let identity = dir.path().join("identity.txt");
    let mut w = Workflow {
        config: config.clone(),
        env: vec![
            ("HOME".into(), dir.path().join("work").display().to_string()),
            (
                "TMPDIR".into(),
                dir.path().join("work").display().to_string(),
            ),
            ("RUST_LOG".into(), "trace".into()),
            ("RUST_BACKTRACE".into(), "1".into()),
            (
                "DATABASE_URL".into(),
                format!(
                    "postgres://postgres:{db_password}@127.0.0.1:{}/cryptofunk",
                    cluster.port
                ),
            ),
            (
                "AWS_ACCESS_KEY_ID".into(),
                secrets.0["S3 access key id"].clone(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                secrets.0["S3 secret access key"].clone(),
            ),
            (
                "CFDR_SECRETS_PASSPHRASE".into(),
                secrets.0["passphrase"].clone(),
            ),
            (
                "CFDR_SLACK_WEBHOOK_URL".into(),
                format!(
                    "http://127.0.0.1:{closed}/services/{}",
                    secrets.0["Slack webhook path"]
                ),
            ),
            (
                "CFDR_PAGERDUTY_ROUTING_KEY".into(),
                secrets.0["PagerDuty routing key"].clone(),
            ),
            (
                "CFDR_SMTP_USERNAME".into(),
                secrets.0["SMTP username"].clone(),
            ),
            (
                "CFDR_SMTP_PASSWORD".into(),
                secrets.0["SMTP password"].clone(),
            ),
            ("CFDR_AUTHOR".into(), "oncall".into()),
        ],
        dir,
        outputs: Vec::new(),
    };
    // The identity first: its recipient goes into the config.
    std::fs::write(&config, "").unwrap();
    let out = w.ok(
        "cfdr-secrets",
        &["keygen", "-o", &identity.display().to_string()],
        None,
    );
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(mode(&identity), 0o600, "the identity file is 0600");
    let key = std::fs::read_to_string(&identity).unwrap();
    let key = key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned();
    secrets.0.insert("age identity", key);
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {url:?}\n[repository.s3]\nendpoint = {endpoint:?}\nregion = \"us-east-1\"\n\
             [encryption]\nrecipients = [{recipient:?}]\nidentity-file = {identity:?}\n\
             [incident.routes]\nP1 = [\"pagerduty\", \"slack\", \"email\"]\n\
             [incident.pagerduty]\nurl = \"http://127.0.0.1:{closed}/v2/enqueue\"\nrouting-key-env = \"CFDR_PAGERDUTY_ROUTING_KEY\"\n\
             [incident.slack]\nwebhook-url-env = \"CFDR_SLACK_WEBHOOK_URL\"\n\
             [incident.email]\nhost = \"127.0.0.1\"\nport = {closed}\ntls = \"none\"\nfrom = \"cfdr <cfdr@example.org>\"\n\
             to = [\"oncall@example.org\"]\nusername-env = \"CFDR_SMTP_USERNAME\"\npassword-env = \"CFDR_SMTP_PASSWORD\"\n\
             [incident.retry]\nattempts = 2\nmin-delay-ms = 10\nmax-delay-ms = 20\ntimeout-secs = 5\n",
            url = o.url.clone().unwrap(),
            endpoint = o.s3.endpoint.clone().unwrap(),
            identity = identity.display().to_string(),
        ),
    )
    .unwrap();

    // The workflow: repository, database backup, verification, restore,
    // secrets backup and restore, an incident with notifications.
    w.ok("cfdr-repo", &["init"], None);
    w.ok(
        "cfdr-backup",
        &["logical", "--class", "hourly", "--summary"],
        None,
    );
    w.ok("cfdr-backup", &["list"], None);
    w.ok("cfdr-verify", &[], None);
    w.ok(
        "cfdr-restore",
        &[
            "logical",
            "--target-db",
            "cryptofunk_restored",
            "--jobs",
            "2",
        ],
        None,
    );
    w.ok("cfdr-repo", &["verify", "--all"], None);
    // WAL archiving (archive_command's push) and a fetch back.
    let segment: String = {
        let mut conn = target.connect().await.unwrap();
        sqlx::query("SELECT pg_walfile_name(pg_switch_wal())")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0)
    };
    let wal_path = cluster.data_dir.join("pg_wal").join(&segment);
    w.ok("cfdr-wal", &["push", &wal_path.display().to_string()], None);
    w.ok("cfdr-wal", &["fetch", &segment, "fetched-segment"], None);
    w.ok("cfdr-wal", &["list"], None);
    let bundle = format!(
        "EXCHANGE_API_KEY={}\nDB_PASSWORD={}\n",
        secrets.0["secret value EXCHANGE_API_KEY"], secrets.0["secret value DB_PASSWORD"]
    );
    w.ok(
        "cfdr-secrets",
        &["-b", "app", "backup", "--from", "-"],
        Some(bundle.as_bytes()),
    );
    w.ok(
        "cfdr-secrets",
        &[
            "-b",
            "breakglass",
            "--passphrase",
            "backup",
            "--work-factor",
            "10",
            "--from",
            "-",
        ],
        Some(bundle.as_bytes()),
    );
    w.ok("cfdr-secrets", &["list"], None);
    w.ok(
        "cfdr-secrets",
        &[
            "-b",
            "breakglass",
            "--passphrase",
            "restore",
            "--to",
            "json",
        ],
        None,
    );
    // The break-glass restore printed the values on stdout, its sink: keep
    // that out of the scan, checking it is there.
    let (_, restored_json) = w.outputs.remove(w.outputs.len() - 2);
    assert!(
        !secrets.found_in(&restored_json).is_empty(),
        "the passphrase copy restores"
    );
    // The operator's restore into a 0600 file.
    let restored = w.work().join("restored.env");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&restored)
            .unwrap();
        let out = w
            .cmd("cfdr-secrets", &["-b", "app", "restore", "--to", "env"])
            .stdout(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        w.outputs
            .push(("cfdr-secrets restore: stderr".into(), out.stderr));
    }
    let restored_text = std::fs::read_to_string(&restored).unwrap();
    assert!(restored_text.contains(&secrets.0["secret value DB_PASSWORD"]));
    w.ok(
        "cfdr-secrets",
        &["-b", "app", "diff", "latest", "-"],
        Some(bundle.as_bytes()),
    );
    let out = w.ok(
        "cfdr-incident",
        &[
            "open",
            "--severity",
            "P1",
            "Exchange API keys rotated",
            "--no-halt",
        ],
        None,
    );
    let id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|t| t.starts_with("INC-"))
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    w.ok(
        "cfdr-incident",
        &["note", &id, "Rotated the keys; old ones revoked"],
        None,
    );
    let shown = w.ok("cfdr-incident", &["show", &id, "--json"], None);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("notification-failed"),
        "the deliveries failed and were recorded: {}",
        text(&shown)
    );
    w.ok("cfdr-incident", &["report", &id], None);
    w.ok("cfdr-prune", &["--dry-run"], None);
    // Exit code aside (objectives may not be met here), what it prints is
    // scanned too.
    w.step("cfdr-status", &[], None);

    // The scan.
    let mut scanned = 0;
    let mut leaks = Vec::new();
    for (what, bytes) in &w.outputs {
        scanned += 1;
        for s in secrets.found_in(bytes) {
            leaks.push(format!("{s} in {what}"));
        }
    }
    // The test's folders (config, identity, work folder = TMPDIR and HOME)
    // and the server's logs (pg_ctl's log file, and log/ in the data
    // folder when the logging collector writes there).
    let mut places = files(w.dir.path());
    places.push(cluster.log_file.clone());
    places.extend(files(&cluster.data_dir.join("log")));
    let mut excepted = Vec::new();
    for f in places {
        let bytes = std::fs::read(&f).unwrap();
        scanned += 1;
        let found = secrets.found_in(&bytes);
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if EXCEPTIONS.contains(&name.as_str()) {
            assert_eq!(mode(&f), 0o600, "{} holds secrets: 0600", f.display());
            assert!(!found.is_empty(), "{} holds what it should", f.display());
            excepted.push(name);
            continue;
        }
        for s in found {
            leaks.push(format!("{s} in {}", f.display()));
        }
    }
    excepted.sort();
    assert_eq!(excepted, EXCEPTIONS, "the exceptions are where they belong");
    let store = loc.options.build().unwrap();
    for meta in store.list("").await.unwrap() {
        let bytes = store.get(&meta.key).await.unwrap();
        scanned += 1;
        for s in secrets.found_in(&bytes) {
            leaks.push(format!("{s} in repository object {}", meta.key));
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    eprintln!(
        "reliability: security scan secrets={} forms={} places-scanned={scanned} leaks=0",
        secrets.0.len(),
        secrets.needles().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_wrong_credentials_never_echo_a_secret() {
    let test = "security_errors";
    let planted = [
        (
            "DATABASE_URL",
            random("postgres://u:dbpw", 20) + "@127.0.0.1:1/db",
        ),
        ("PGPASSWORD", random("pgpw", 20)),
        ("AWS_SECRET_ACCESS_KEY", random("awssk", 30)),
        ("CFDR_SECRETS_PASSPHRASE", random("pass", 20)),
        ("CFDR_AGE_IDENTITY", random("AGE-SECRET-KEY-1", 40)),
        ("CFDR_PAGERDUTY_ROUTING_KEY", random("pd", 20)),
        (
            "CFDR_SLACK_WEBHOOK_URL",
            random("https://hooks.example/", 20),
        ),
        ("CFDR_SMTP_PASSWORD", random("smtp", 20)),
        ("VAULT_TOKEN", random("hvs.", 24)),
    ];
    let mut helps = 0;
    for (_, bin) in binaries() {
        let mut commands = vec![vec!["--help".to_owned()]];
        for sub in cfdr_testing::subcommands(&workspace_bin(&bin).display().to_string()) {
            commands.push(vec![sub, "--help".to_owned()]);
        }
        for args in commands {
            let out = Command::new(workspace_bin(&bin))
                .args(&args)
                .envs(planted.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .unwrap();
            helps += 1;
            for (var, value) in &planted {
                assert!(
                    !text(&out).contains(value.as_str()),
                    "{bin} {args:?} shows ${var}: {}",
                    text(&out)
                );
            }
        }
    }

    // A wrong database password, in DATABASE_URL and in PGPASSWORD.
    let Some((cluster, _)) = password_cluster(&random("right", 20), test).await else {
        return;
    };
    let wrong = random("wrongpw", 20);
    let dir = tempfile::tempdir().unwrap();
    let repo_url = format!("file://{}/repo", dir.path().display());
    Repository::init(StorageOptions::from_url(repo_url.clone()).build().unwrap())
        .await
        .unwrap();
    let backup = |env: &[(&str, String)]| {
        Command::new(workspace_bin("cfdr-backup"))
            .args(["-r", &repo_url, "logical"])
            .env_remove("CFDR_CONFIG")
            .env_remove("DATABASE_URL")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    };
    let port = cluster.port.to_string();
    let by_url = backup(&[(
        "DATABASE_URL",
        format!("postgres://postgres:{wrong}@127.0.0.1:{port}/cryptofunk"),
    )]);
    let by_env = backup(&[
        ("PGHOST", "127.0.0.1".into()),
        ("PGPORT", port.clone()),
        ("PGUSER", "postgres".into()),
        ("PGDATABASE", "cryptofunk".into()),
        ("PGPASSWORD", wrong.clone()),
    ]);
    for out in [&by_url, &by_env] {
        assert_eq!(out.status.code(), Some(2), "{}", text(out));
        assert!(
            text(out).contains("password authentication failed"),
            "names the problem: {}",
            text(out)
        );
        assert!(
            !text(out).contains(&wrong),
            "echoes the password: {}",
            text(out)
        );
    }

    // A wrong S3 secret key (s3s-fs checks signatures).
    let mut s3_checked = false;
    if let Some(loc) = TestLocation::new(Backend::S3, test) {
        let o = &loc.options;
        let config = dir.path().join("s3.toml");
        std::fs::write(
            &config,
            format!(
                "[repository]\nurl = {:?}\n[repository.s3]\nendpoint = {:?}\nregion = \"us-east-1\"\n\
                 [repository.retry]\nmax-retries = 1\nmin-delay-ms = 10\nmax-delay-ms = 20\n",
                o.url.clone().unwrap(),
                o.s3.endpoint.clone().unwrap()
            ),
        )
        .unwrap();
        let wrong_secret = random("wrongsk", 33);
        let out = Command::new(workspace_bin("cfdr-repo"))
            .args(["--config", &config.display().to_string(), "init"])
            .env_remove("CFDR_REPOSITORY")
            .env("AWS_ACCESS_KEY_ID", o.s3.access_key_id.clone().unwrap())
            .env("AWS_SECRET_ACCESS_KEY", &wrong_secret)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let msg = text(&out);
        assert!(
            msg.contains("SignatureDoesNotMatch")
                || msg.contains("credentials")
                || msg.contains("denied"),
            "names the problem: {msg}"
        );
        assert!(!msg.contains(&wrong_secret), "echoes the secret key: {msg}");
        s3_checked = true;
    }

    // A wrong age identity and a wrong passphrase.
    let secrets = |args: &[&str], env: &[(&str, &str)], stdin: &[u8]| {
        use std::io::Write;
        let mut child = Command::new(workspace_bin("cfdr-secrets"))
            .args(["-r", &repo_url])
            .args(args)
            .env_remove("CFDR_CONFIG")
            .env_remove("CFDR_AGE_IDENTITY")
            .env_remove("CFDR_SECRETS_PASSPHRASE")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let (right_key, right) = cfdr_secrets::generate_identity();
    let right_key = right_key.to_string();
    let (other_key, _) = cfdr_secrets::generate_identity();
    let other_key = other_key.to_string();
    let value = random("value", 24);
    let passphrase = random("pass", 24);
    let input = format!("API_KEY={value}\n");
    let out = secrets(
        &["-b", "keys", "backup", "-R", &right, "--from", "-"],
        &[],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = secrets(
        &[
            "-b",
            "glass",
            "--passphrase",
            "backup",
            "--work-factor",
            "10",
            "--from",
            "-",
        ],
        &[("CFDR_SECRETS_PASSPHRASE", &passphrase)],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let wrong_pass = random("wrongpass", 20);
    let wrongs = [
        (
            secrets(
                &["-b", "keys", "restore", "--to", "env"],
                &[("CFDR_AGE_IDENTITY", &other_key)],
                b"",
            ),
            "identity",
        ),
        (
            secrets(
                &["-b", "glass", "--passphrase", "restore", "--to", "env"],
                &[("CFDR_SECRETS_PASSPHRASE", &wrong_pass)],
                b"",
            ),
            "passphrase",
        ),
    ];
    for (out, problem) in &wrongs {
        assert_eq!(out.status.code(), Some(2), "{}", text(out));
        let msg = text(out);
        assert!(msg.contains(problem), "names the problem: {msg}");
        for secret in [&other_key, &right_key, &wrong_pass, &passphrase, &value] {
            assert!(!msg.contains(secret.as_str()), "echoes a secret: {msg}");
        }
    }
    eprintln!(
        "reliability: security help-and-errors helps={helps} wrong-credentials={} leaks=0",
        2 + wrongs.len() + usize::from(s3_checked)
    );
}

/// Rows of `victim_data` in database `victim` (100 unless a restore
/// reached it).
async fn victim_rows(cluster: &cfdr_pg::LocalCluster) -> Result<i64, String> {
    let mut conn = cluster
        .target("victim")
        .connect()
        .await
        .map_err(|e| format!("database victim: {e}"))?;
    sqlx::query("SELECT count(*) FROM victim_data")
        .fetch_one(&mut conn)
        .await
        .map(|r| r.get::<i64, _>(0))
        .map_err(|e| format!("victim_data: {e}"))
}

/// The byte range of the table-of-contents definition string starting
/// with `starts` in a custom-format archive: the string's length prefix
/// (a sign byte, then the archive's int size in little-endian bytes) and
/// its bytes.
fn definition(dump: &[u8], starts: &str) -> (usize, usize) {
    assert_eq!(&dump[..5], b"PGDMP", "a custom-format archive");
    let int_size = usize::from(dump[8]);
    let at = dump
        .windows(starts.len())
        .position(|w| w == starts.as_bytes())
        .unwrap_or_else(|| panic!("no definition starts with {starts:?}"));
    let prefix = at - 1 - int_size;
    assert_eq!(dump[prefix], 0, "a string length is positive");
    let len = dump[prefix + 1..at]
        .iter()
        .rev()
        .fold(0usize, |n, b| (n << 8) | usize::from(*b));
    (prefix, at + len)
}

/// `dump` with the definition starting with `starts` replaced by `sql`,
/// its length prefix rewritten.
fn rewrite(dump: &[u8], starts: &str, sql: &str) -> Vec<u8> {
    let int_size = usize::from(dump[8]);
    let (prefix, end) = definition(dump, starts);
    let mut out = dump[..prefix].to_vec();
    out.push(0);
    let mut len = sql.len();
    for _ in 0..int_size {
        out.push((len & 0xff) as u8);
        len >>= 8;
    }
    out.extend_from_slice(sql.as_bytes());
    out.extend_from_slice(&dump[end..]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_dump_cannot_reach_another_database() {
    let test = "security_crafted_dump";
    let cluster = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 2, 10).await {
        Ok(c) => c,
        Err(e) => {
            return cfdr_testing::missing::<()>(&format!("PostgreSQL 15 ({e})"), test)
                .unwrap_or(());
        }
    };
    cluster.create_database("victim").await.unwrap();
    cluster.create_database("shop").await.unwrap();
    {
        let mut conn = cluster.target("victim").connect().await.unwrap();
        for sql in [
            "CREATE TABLE victim_data (id int PRIMARY KEY, v text)",
            "INSERT INTO victim_data SELECT g, md5(g::text) FROM generate_series(1, 100) g",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        let mut conn = cluster.target("shop").connect().await.unwrap();
        for sql in [
            "CREATE TABLE items (id int PRIMARY KEY, name text)",
            "CREATE TABLE orders (id int PRIMARY KEY, item int REFERENCES items (id))",
            "CREATE INDEX items_name_idx ON items (name)",
            "COMMENT ON TABLE items IS 'what the shop sells'",
            "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g",
            "INSERT INTO orders SELECT g, g FROM generate_series(1, 50) g",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
    let auto_conf = cluster.data_dir.join("postgresql.auto.conf");
    let auto_before = std::fs::read(&auto_conf).unwrap();

    // A real pg_dump -Fc -Z0: cfdr-backup stores it as is without
    // compression or encryption.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/repo", dir.path().display());
    let store = StorageOptions::from_url(url.clone()).build().unwrap();
    let repo = Repository::init(store.clone()).await.unwrap();
    let config = dir.path().join("cfdr.toml");
    std::fs::write(&config, "[codec]\ncompression = \"none\"\n").unwrap();
    let cfdr = |bin: &str, args: &[&str]| {
        Command::new(workspace_bin(bin))
            .args(["--config", &config.display().to_string(), "-r", &url])
            .args(args)
            .env("DATABASE_URL", cluster.url("shop"))
            .env_remove("CFDR_CONFIG")
            .env_remove("CFDR_AGE_RECIPIENTS")
            .output()
            .unwrap()
    };
    let out = cfdr("cfdr-backup", &["logical"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = repo.backup_ids().await.unwrap().pop().unwrap();
    let manifest = repo.manifest(&id).await.unwrap();
    assert_eq!(manifest.objects.len(), 1, "{manifest:?}");
    let object = manifest.objects[0].clone();
    let original = store.get(&object.key).await.unwrap().to_vec();
    assert_eq!(&original[..5], b"PGDMP", "stored as pg_dump wrote it");

    // (entry the definition belongs to, how it starts, crafted SQL).
    let comment = "COMMENT ON TABLE public.items";
    let index = "CREATE INDEX items_name_idx";
    let fk = "ALTER TABLE ONLY public.orders\n    ADD CONSTRAINT orders_item_fkey";
    let cases: [(&str, &str, String); 7] = [
        // The control: a harmless change reaches the restored database, so
        // the crafted entries below do reach the server's SQL path.
        (
            "COMMENT (pre-data)",
            comment,
            "COMMENT ON TABLE public.items IS 'rewritten by the test';\n".into(),
        ),
        ("COMMENT (pre-data)", comment, "DROP DATABASE victim;\n".into()),
        (
            "COMMENT (pre-data)",
            comment,
            "ALTER SYSTEM SET work_mem = '77MB';\n".into(),
        ),
        ("INDEX (post-data)", index, "DROP DATABASE victim;\n".into()),
        (
            "INDEX (post-data, built early)",
            index,
            "CREATE INDEX items_name_idx ON public.items USING btree (name);\nDROP DATABASE victim;\n"
                .into(),
        ),
        ("FK CONSTRAINT (post-data)", fk, "DROP DATABASE victim;\n".into()),
        (
            "FK CONSTRAINT (post-data)",
            fk,
            "\\connect victim\nDROP TABLE victim_data;\n".into(),
        ),
    ];
    let op = store.operator().unwrap().clone();
    let (mut restores, mut refused) = (0, 0);
    for (n, (entry, starts, sql)) in cases.iter().enumerate() {
        let crafted = rewrite(&original, starts, sql);
        let mut m = manifest.clone();
        m.objects[0].stored = ObjectInfo::of(&crafted);
        m.objects[0].raw_size = crafted.len() as u64;
        op.write(&object.key, crafted).await.unwrap();
        op.write(&id.manifest_key(), serde_json::to_vec(&m).unwrap())
            .await
            .unwrap();
        for jobs in ["1", "2"] {
            let target = format!("shop_crafted_{n}_{jobs}");
            let out = cfdr(
                "cfdr-restore",
                &[
                    "logical",
                    id.as_str(),
                    "--target-db",
                    &target,
                    "--jobs",
                    jobs,
                ],
            );
            restores += 1;
            let what = format!("{entry} = {sql:?}, --jobs {jobs}");
            assert_eq!(
                victim_rows(&cluster).await,
                Ok(100),
                "{what} reached database victim: {}",
                text(&out)
            );
            assert_eq!(
                std::fs::read(&auto_conf).unwrap(),
                auto_before,
                "{what} changed the server's configuration: {}",
                text(&out)
            );
            if n == 0 {
                assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
                let mut conn = cluster.target(&target).connect().await.unwrap();
                let comment: String =
                    sqlx::query("SELECT obj_description('public.items'::regclass, 'pg_class')")
                        .fetch_one(&mut conn)
                        .await
                        .unwrap()
                        .get(0);
                assert_eq!(comment, "rewritten by the test", "the rewrite is restored");
                continue;
            }
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what}: the restore fails: {}",
                text(&out)
            );
            let kind = entry.split(" (").next().unwrap();
            assert!(
                text(&out).contains("refusing to restore: the dump's entry")
                    && text(&out).contains(kind),
                "{what}: the error names the entry: {}",
                text(&out)
            );
            refused += 1;
        }
    }
    // Refused before anything was created: only the control's databases.
    let mut conn = cluster.target("postgres").connect().await.unwrap();
    let restored: Vec<String> = sqlx::query(
        "SELECT datname FROM pg_database WHERE datname LIKE 'shop_crafted_%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(restored, ["shop_crafted_0_1", "shop_crafted_0_2"]);
    eprintln!(
        "reliability: security crafted-dump restores={restores} refused={refused} reached-other-database=0"
    );
}
