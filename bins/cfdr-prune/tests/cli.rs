//! cfdr-prune as cron and an operator run it: dry run, JSON, exit codes,
//! bad policy input, the lock, and SIGKILL at random points.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cfdr_storage::{Lease, Repository, StorageOptions, Store};
use cfdr_testing::history::{HistorySpec, write_history};
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_cfdr-prune");

/// A policy that reaches into the WAL of a short synthetic history.
const POLICY: &str = "[retention.classes.database]\nkeep-last = 20\n";

fn prune(url: &str, config: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["-r", url])
        .args(args)
        .env_remove("CFDR_CONFIG")
        .env_remove("CFDR_REPOSITORY");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.output().unwrap()
}

use cfdr_testing::output_text as text;

struct Fixture {
    _dir: tempfile::TempDir,
    url: String,
    config: std::path::PathBuf,
    store: Store,
    repo: Repository,
    at: String,
}

async fn fixture(backups: usize, wal: usize) -> Fixture {
    // Memory-backed /dev/shm when there is one: this disk creates ~1,000
    // files/s, which would make the trials time the disk.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let url = format!("file://{}/repo", dir.path().display());
    let store = StorageOptions::from_url(url.clone()).build().unwrap();
    let repo = Repository::init(store.clone()).await.unwrap();
    let history = write_history(&store, &HistorySpec::new(backups, wal))
        .await
        .unwrap();
    let at = history.at.to_string();
    let config = dir.path().join("cfdr.toml");
    std::fs::write(&config, POLICY).unwrap();
    Fixture {
        _dir: dir,
        url,
        config,
        store,
        repo,
        at,
    }
}

async fn keys(store: &Store) -> BTreeSet<String> {
    let all = store.list("").await.unwrap();
    all.into_iter().map(|m| m.key).collect()
}

fn planned(out: &Output) -> (BTreeSet<String>, serde_json::Value) {
    assert!(out.status.success(), "{}", text(out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &report["deletions"];
    let keys = ["manifests", "objects", "wal", "leftovers"]
        .iter()
        .flat_map(|k| d[k].as_array().unwrap().iter())
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    (keys, report)
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = text(&out);
    assert!(out.status.success());
    assert!(help.contains("cfdr-prune --dry-run"), "{help}");
    assert!(
        help.contains("Exit codes: 0 success (or dry run printed), 1 the prune stopped part-way"),
        "{help}"
    );
    assert!(help.contains("3 another prune holds"), "{help}");
}

#[tokio::test]
async fn dry_run_json_and_prune() {
    let f = fixture(300, 3_000).await;
    let before = keys(&f.store).await;

    let out = prune(&f.url, Some(&f.config), &["--dry-run", "--at", &f.at]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("(dry run: nothing deleted)"), "{shown}");
    assert!(shown.contains("delete "), "{shown}");
    assert!(shown.contains("unmatched"), "lines say why: {shown}");
    assert!(shown.contains("before-pitr-window"), "{shown}");
    assert!(shown.contains("left alone: wal/README.txt"), "{shown}");
    assert_eq!(keys(&f.store).await, before, "a dry run deletes nothing");

    let (gone, report) = planned(&prune(
        &f.url,
        Some(&f.config),
        &["--dry-run", "--json", "--at", &f.at],
    ));
    assert_eq!(report["dry-run"], true);
    assert!(gone.len() > 300, "{}", gone.len());
    let deleted_backups = report["summary"]["delete"]["count"].as_u64().unwrap();
    assert!(deleted_backups > 100);
    assert_eq!(keys(&f.store).await, before);

    // --quiet: silent on success, and exactly the planned keys go.
    let out = prune(&f.url, Some(&f.config), &["--quiet", "--at", &f.at]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out), "", "cron mails any output");
    let expected: BTreeSet<String> = before.difference(&gone).cloned().collect();
    assert!(keys(&f.store).await == expected);
    for m in f.repo.backups().await.unwrap() {
        assert!(f.repo.verify(&m).await.unwrap().is_ok());
    }
    // Nothing left to do.
    let (again, report) = planned(&prune(&f.url, Some(&f.config), &["--json", "--at", &f.at]));
    assert!(again.is_empty());
    assert_eq!(report["deleted"], 0);
}

#[tokio::test]
async fn bad_input_exits_2_before_reading_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    // No repository here: reading it would fail with "no cfdr repository".
    let url = format!("file://{}/none", dir.path().display());
    for (toml, cause) in [
        ("[retention.classes.database]\nkeep-daily = -5\n", "-5"),
        (
            "[retention.classes.database]\nkeep-fortnightly = 2\n",
            "keep-fortnightly",
        ),
        (
            "[retention.classes.audit-logs]\nkeep-within = \"7 years\"\n",
            "7 years",
        ),
        (
            "[retention]\ntime-zone = \"Mars/Olympus_Mons\"\n",
            "unknown time zone",
        ),
        ("[retention]\nincomplete-grace = \"soon\"\n", "soon"),
    ] {
        let path = dir.path().join("cfdr.toml");
        std::fs::write(&path, toml).unwrap();
        let out = prune(&url, Some(&path), &[]);
        assert_eq!(out.status.code(), Some(2), "{toml}: {}", text(&out));
        assert!(text(&out).contains(cause), "{toml}: {}", text(&out));
        assert!(!text(&out).contains("no cfdr repository"), "{}", text(&out));
    }
    let out = prune(&url, None, &["--class", "databse"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("use one of database, database-archive"),
        "{}",
        text(&out)
    );
    let out = prune(&url, None, &["--at", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--at"), "{}", text(&out));
    // A good policy reaches the repository, which is missing.
    let out = prune(&url, None, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("cfdr-repo init"), "{}", text(&out));
}

#[tokio::test]
async fn class_filter_leaves_other_classes_and_wal_alone() {
    let f = fixture(200, 1_000).await;
    let (gone, report) = planned(&prune(
        &f.url,
        None,
        &["--dry-run", "--json", "--class", "database", "--at", &f.at],
    ));
    assert_eq!(report["wal-included"], false);
    assert!(!gone.is_empty());
    for d in report["plan"]["decisions"].as_array().unwrap() {
        assert_eq!(d["data-class"], "database", "{d}");
    }
    // Database backups only; WAL waits until database-archive is pruned too.
    let database = |k: &String| k.contains("-logical-") || k.contains("-physical-");
    assert!(gone.iter().all(database), "{gone:?}");
    assert!(report["plan"]["wal"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_held_lock_exits_3_and_wait_gets_through() {
    let f = fixture(50, 500).await;
    let before = keys(&f.store).await;
    let lease = Lease::acquire(
        &f.store,
        cfdr_prune::LOCK_NAME,
        "test",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let out = prune(&f.url, Some(&f.config), &["--at", &f.at]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("held by test"), "{}", text(&out));
    let mut now = keys(&f.store).await;
    now.retain(|k| !k.starts_with("locks/"));
    let mut was = before.clone();
    was.retain(|k| !k.starts_with("locks/"));
    assert_eq!(now, was, "nothing deleted while locked");

    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        lease.release().await.unwrap();
    });
    let (url, config, at) = (f.url.clone(), f.config.clone(), f.at.clone());
    let out = tokio::task::spawn_blocking(move || {
        prune(&url, Some(&config), &["--wait", "120", "--at", &at])
    })
    .await
    .unwrap();
    releaser.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("deleted "), "{}", text(&out));
}

/// Runs killed with SIGKILL at random points (at least 10, 3 of them
/// mid-deletion; 50 and 10 in the long form, `CFDR_TEST_LONG=1`): each
/// re-run finishes the job, and no kept backup is damaged at any point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_prunes_finish_on_the_next_run() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_251_126);
    let (min_trials, min_mid_run) = if cfdr_testing::long_tests() {
        (50, 10)
    } else {
        (10, 3)
    };
    let max_trials = min_trials * 3;
    let mut killed_mid_run = 0;
    // Kill times follow this machine's speed: a timed full prune of the same
    // fixture, then kills spread over its later part (reading and planning
    // come first and delete nothing). The speed drifts under load, so the
    // window moves: earlier after a run that finished before its kill,
    // later after one killed before it deleted anything.
    let mut window = 1.0_f64;
    let calibration = fixture(200, 2_000).await;
    let t = Instant::now();
    let out = prune(
        &calibration.url,
        Some(&calibration.config),
        &["--quiet", "--at", &calibration.at],
    );
    assert!(out.status.success(), "{}", text(&out));
    let full_ms = (t.elapsed().as_millis() as u64).max(50);
    for trial in 0..max_trials {
        if trial >= min_trials && killed_mid_run >= min_mid_run {
            break;
        }
        let f = fixture(200, 2_000).await;
        let (gone, report) = planned(&prune(
            &f.url,
            Some(&f.config),
            &["--dry-run", "--json", "--at", &f.at],
        ));
        let before = keys(&f.store).await;
        let expected: BTreeSet<String> = before.difference(&gone).cloned().collect();
        let kept: usize = report["summary"]["keep"]["count"].as_u64().unwrap() as usize;

        let start = Instant::now();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&f.config)
            .args(["-r", &f.url, "--quiet", "--lock-ttl", "2", "--at", &f.at])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let scaled = ((full_ms as f64) * window) as u64;
        let delay = Duration::from_millis(rng.random_range(scaled * 3 / 10..scaled.max(2)));
        tokio::time::sleep(delay).await;
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        let deleted = keys(&f.store).await != before;
        match (finished, deleted) {
            (true, _) => window *= 0.8,
            (false, false) => window *= 1.25,
            (false, true) => killed_mid_run += 1,
        }
        // Whatever was deleted, every listed backup is whole.
        for m in f.repo.backups().await.unwrap() {
            assert!(
                f.repo.verify(&m).await.unwrap().is_ok(),
                "trial {trial}: {} damaged",
                m.id
            );
        }
        let out = prune(
            &f.url,
            Some(&f.config),
            &["--quiet", "--wait", "120", "--at", &f.at],
        );
        assert!(
            out.status.success(),
            "trial {trial} after {delay:?}: {}",
            text(&out)
        );
        assert!(
            keys(&f.store).await == expected,
            "trial {trial} (killed after {:?}): repository differs from the plan",
            start.elapsed()
        );
        let in_grace = report["plan"]["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["reasons"][0] == "incomplete-in-grace")
            .count();
        let listed = f.repo.backups().await.unwrap().len();
        assert_eq!(listed, kept - in_grace, "trial {trial}");
    }
    assert!(
        killed_mid_run >= min_mid_run,
        "only {killed_mid_run} kills of {max_trials} landed mid-run"
    );
}

#[test]
fn the_deploy_examples_use_real_flags() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in ["deploy/crontab", "deploy/kubernetes-cronjobs.yaml"] {
        let body = std::fs::read_to_string(root.join(file)).unwrap();
        let line = body
            .lines()
            .find(|l| l.contains("cfdr-prune") && l.contains("--"))
            .unwrap();
        let args: Vec<String> = line
            .split("cfdr-prune")
            .nth(1)
            .unwrap()
            .split(|c: char| c.is_whitespace() || "\",[]".contains(c))
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        assert!(args.contains(&"--quiet".to_owned()), "{file}: {args:?}");
        // clap rejects unknown flags even with --help.
        let out = Command::new(BIN)
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {args:?}: {}", text(&out));
    }
}
