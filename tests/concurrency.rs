//! Reliability suite: concurrency. Writers that cron, PostgreSQL and an
//! operator may start at the same moment, run as separate processes (the
//! real binaries) against a folder repository and an S3 server:
//!
//! - two `cfdr-backup logical` at once;
//! - two `cfdr-prune` at once (the loser exits 3 naming the holder, or
//!   waits with `--wait`);
//! - `cfdr-backup logical` + `cfdr-prune`;
//! - `cfdr-wal push` + `cfdr-prune`;
//! - one WAL segment pushed by two processes at once (the first push of an
//!   archive, which also creates `wal/cluster.json`, and a later one);
//! - `cfdr-secrets rekey` + `cfdr-secrets backup`;
//! - two `cfdr-incident` writers adding events to one incident.
//!
//! After every round: the prunes deleted exactly what the retention plan
//! (a dry run taken before the race) names, so no kept object is removed;
//! every backup listed verifies (its objects read back against its manifest); every secrets
//! version and incident event written is there and reads back. The second
//! process starts at a seeded offset after the first; `CFDR_TEST_LONG=1`
//! runs more rounds.
//!
//! The S3 server is s3s-fs where only the outcome is compared, and moto
//! where the test relies on create-only writes deciding a race: s3s-fs
//! checks `If-None-Match` before it writes, so two racing creates can both
//! pass there (`Backend::has_atomic_create`), which real S3 and moto do not
//! allow.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use cfdr_retention::{Lsn, WalRange, WalSegment};
use cfdr_storage::codec::{CodecInfo, Compression, StoredObject};
use cfdr_storage::{BackupId, FORMAT_VERSION, Manifest, ObjectInfo, Repository, Store};
use cfdr_testing::bins::workspace_bin;
use cfdr_testing::history::{HistorySpec, write_history};
use cfdr_testing::output_text as text;
use cfdr_testing::{Backend, TestLocation};
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// WAL segment size of the test clusters.
const SEGMENT: u64 = 16 * 1024 * 1024;

/// Rounds per backend: a few in the short form, more with CFDR_TEST_LONG=1.
fn rounds() -> usize {
    if cfdr_testing::long_tests() { 12 } else { 3 }
}

/// Milliseconds between the first process's start and the second's.
fn offset(rng: &mut StdRng) -> Duration {
    Duration::from_millis(rng.random_range(0..400))
}

/// A repository for one round, a config file naming it, and the
/// environment the binaries need to reach it.
struct Repo {
    loc: TestLocation,
    dir: tempfile::TempDir,
    config: PathBuf,
    store: Store,
    repo: Repository,
    env: Vec<(String, String)>,
}

impl Repo {
    /// An initialised repository on `backend` with `extra` appended to the
    /// config file; `None` (a failure under scripts/test) without the
    /// backend's server.
    async fn new(backend: Backend, test: &str, extra: &str) -> Option<Self> {
        let loc = TestLocation::new(backend, test)?;
        let store = loc.options.build().unwrap();
        let repo = Repository::init(store.clone()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cfdr.toml");
        let o = &loc.options;
        let mut toml = format!("[repository]\nurl = {:?}\n", o.url.clone().unwrap());
        let mut env = Vec::new();
        if let Some(endpoint) = &o.s3.endpoint {
            toml.push_str(&format!(
                "[repository.s3]\nendpoint = {endpoint:?}\nregion = {:?}\n",
                o.s3.region.clone().unwrap_or_else(|| "us-east-1".into())
            ));
            env.push((
                "AWS_ACCESS_KEY_ID".to_owned(),
                o.s3.access_key_id.clone().unwrap(),
            ));
            env.push((
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                o.s3.secret_access_key.clone().unwrap(),
            ));
        }
        toml.push_str(extra);
        std::fs::write(&config, toml).unwrap();
        Some(Self {
            loc,
            dir,
            config,
            store,
            repo,
            env,
        })
    }

    /// `bin` configured for this repository, with nothing from this
    /// machine's environment choosing another one.
    fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(workspace_bin(bin));
        for var in [
            "CFDR_REPOSITORY",
            "CFDR_AGE_RECIPIENTS",
            "CFDR_AGE_IDENTITY",
            "CFDR_AGE_IDENTITY_FILE",
            "DATABASE_URL",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
            "RUST_LOG",
        ] {
            c.env_remove(var);
        }
        c.env("CFDR_CONFIG", &self.config)
            .envs(self.env.iter().cloned())
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, bin: &str, args: &[&str]) -> Output {
        self.cmd(bin).args(args).output().unwrap()
    }

    /// Every key, without the lock and prune bookkeeping that comes and
    /// goes with each prune.
    async fn keys(&self) -> BTreeSet<String> {
        let all = self.store.list("").await.unwrap();
        all.into_iter()
            .map(|m| m.key)
            .filter(|k| !k.starts_with("locks/") && !k.starts_with("prune/"))
            .collect()
    }

    /// Every committed backup verifies; the number verified.
    async fn verify_all(&self, what: &str) -> usize {
        let ids = self.repo.backup_ids().await.unwrap();
        if ids.is_empty() {
            return 0;
        }
        // Every backup's objects, read back against their manifest (what
        // `cfdr-repo verify <id>` does); the WAL of the synthetic history is
        // not real WAL, so `verify --all` would refuse it.
        for id in &ids {
            let manifest = self.repo.manifest(id).await.unwrap();
            let report = self.repo.verify(&manifest).await.unwrap();
            assert!(report.is_ok(), "{what}: {id}: {:?}", report.failures);
        }
        ids.len()
    }

    /// Keys a `cfdr-prune --dry-run --json` would delete now.
    fn planned(&self) -> BTreeSet<String> {
        let out = self.run("cfdr-prune", &["--dry-run", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = &report["deletions"];
        ["manifests", "objects", "wal", "leftovers"]
            .iter()
            .flat_map(|k| d[k].as_array().unwrap().iter())
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    }

    /// The backend, for the figures lines.
    fn label(&self) -> &'static str {
        match self.loc.backend {
            Backend::Fs => "folder",
            Backend::S3 => "s3",
            Backend::S3Moto => "s3-moto",
            _ => "other",
        }
    }
}

/// Starts `first`, waits `delay`, starts `second`; both outputs.
fn race(mut first: Command, mut second: Command, delay: Duration) -> (Output, Output) {
    let a: Child = first.spawn().unwrap();
    std::thread::sleep(delay);
    let b: Child = second.spawn().unwrap();
    (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
}

/// A prune policy whose decisions do not move while a test runs: database
/// backups are kept for a day, and the synthetic history's backups sit
/// half an hour away from that boundary.
const KEEP_A_DAY: &str = "[retention.classes.database]\nkeep-within = \"1d\"\n";

/// Two days of hourly synthetic backups (and their WAL, leftovers of
/// failed backups) ending half an hour ago.
async fn history(repo: &Repo) {
    let start = Timestamp::now()
        .checked_sub(SignedDuration::from_hours(48))
        .unwrap()
        .checked_add(SignedDuration::from_mins(30))
        .unwrap();
    let mut spec = HistorySpec::new(48, 96);
    spec.start = start;
    spec.concurrency = 16;
    write_history(&repo.store, &spec).await.unwrap();
}

/// Checks the end state of a round with prunes: everything the plan named
/// is gone, everything else from before is still there.
fn assert_pruned_as_planned(
    what: &str,
    before: &BTreeSet<String>,
    planned: &BTreeSet<String>,
    after: &BTreeSet<String>,
) -> usize {
    assert!(!planned.is_empty(), "{what}: the plan deletes something");
    let kept: BTreeSet<&String> = before.difference(planned).collect();
    let lost: Vec<&&String> = kept.iter().filter(|k| !after.contains(**k)).collect();
    assert!(lost.is_empty(), "{what}: kept objects removed: {lost:?}");
    let left: Vec<&String> = planned.intersection(after).collect();
    assert!(left.is_empty(), "{what}: planned deletions left: {left:?}");
    lost.len()
}

/// A started cluster with the CryptoFunk sample, or `None` (a failure under
/// scripts/test) without PostgreSQL.
async fn cluster(test: &str) -> Option<cfdr_pg::LocalCluster> {
    match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 10, 3_000).await {
        Ok(c) => Some(c),
        Err(e) => cfdr_testing::missing(&format!("PostgreSQL 15 ({e})"), test),
    }
}

fn backup_cmd(repo: &Repo, cluster: &cfdr_pg::LocalCluster) -> Command {
    let mut c = repo.cmd("cfdr-backup");
    c.env("DATABASE_URL", cluster.url("cryptofunk"))
        .args(["logical", "--class", "hourly"]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backups_at_once_both_commit_and_verify() {
    let test = "concurrency_two_backups";
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(18_001);
    for backend in [Backend::Fs, Backend::S3] {
        let Some(repo) = Repo::new(backend, test, "").await else {
            continue;
        };
        let n = rounds();
        for round in 0..n {
            let delay = offset(&mut rng);
            let (a, b) = race(
                backup_cmd(&repo, &cluster),
                backup_cmd(&repo, &cluster),
                delay,
            );
            for out in [&a, &b] {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "round {round} ({delay:?}): {}",
                    text(out)
                );
            }
        }
        let listed = repo.repo.backup_ids().await.unwrap().len();
        assert_eq!(listed, 2 * n, "every backup is listed");
        let verified = repo.verify_all("two backups").await;
        // The whole repository, as an operator checks it.
        let out = repo.run("cfdr-repo", &["verify", "--all"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        eprintln!(
            "reliability: concurrency backup+backup {} rounds={n} backups={listed} verified={verified} lost={}",
            repo.label(),
            2 * n - verified
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_prunes_at_once_delete_only_what_retention_lets_go() {
    let test = "concurrency_two_prunes";
    let mut rng = StdRng::seed_from_u64(18_002);
    // moto: the lock's create-only write must decide the race.
    for backend in [Backend::Fs, Backend::S3Moto] {
        let (mut locked_out, mut waited, mut lost) = (0, 0, 0);
        let n = rounds();
        let mut label = "";
        for round in 0..n {
            let Some(repo) = Repo::new(backend, test, KEEP_A_DAY).await else {
                break;
            };
            label = repo.label();
            history(&repo).await;
            let before = repo.keys().await;
            let planned = repo.planned();
            // Every other round the second prune waits for the lock.
            let wait = round % 2 == 1;
            let mut second = repo.cmd("cfdr-prune");
            second.arg("--quiet");
            if wait {
                second.args(["--wait", "120"]);
            }
            let mut first = repo.cmd("cfdr-prune");
            first.arg("--quiet");
            // A prune of this history takes a few hundred milliseconds:
            // start the second well inside it.
            let delay = offset(&mut rng) / 4;
            let (a, b) = race(first, second, delay);
            // The one with --wait always gets through; one without may
            // lose the lock (also the first, when the second was quicker
            // to take it).
            assert!(
                a.status.success() || b.status.success(),
                "round {round}: one prune gets through:\n{}\n{}",
                text(&a),
                text(&b)
            );
            for (out, waits) in [(&a, false), (&b, wait)] {
                match out.status.code() {
                    Some(0) => {}
                    Some(3) if !waits => {
                        assert!(
                            text(out).contains("lock prune is held by"),
                            "the loser names the holder: {}",
                            text(out)
                        );
                        locked_out += 1;
                    }
                    _ => panic!("round {round} ({delay:?}): {}", text(out)),
                }
            }
            if wait {
                waited += 1;
            }
            let after = repo.keys().await;
            lost += assert_pruned_as_planned(
                &format!("round {round} on {label}"),
                &before,
                &planned,
                &after,
            );
            repo.verify_all("after two prunes").await;
        }
        if !label.is_empty() {
            eprintln!(
                "reliability: concurrency prune+prune {label} rounds={n} locked-out={locked_out} rounds-with-wait={waited} lost={lost}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_and_a_prune_at_once_keep_the_new_backup() {
    let test = "concurrency_backup_prune";
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(18_003);
    for backend in [Backend::Fs, Backend::S3] {
        let n = rounds();
        let (mut lost, mut label) = (0, "");
        for round in 0..n {
            let Some(repo) = Repo::new(backend, test, KEEP_A_DAY).await else {
                break;
            };
            label = repo.label();
            history(&repo).await;
            let before = repo.keys().await;
            let ids_before: BTreeSet<BackupId> =
                repo.repo.backup_ids().await.unwrap().into_iter().collect();
            let planned = repo.planned();
            let mut prune = repo.cmd("cfdr-prune");
            prune.arg("--quiet");
            let delay = offset(&mut rng);
            // Either may start first.
            let (backup, prune) = if rng.random_bool(0.5) {
                race(backup_cmd(&repo, &cluster), prune, delay)
            } else {
                let (p, b) = race(prune, backup_cmd(&repo, &cluster), delay);
                (b, p)
            };
            for out in [&backup, &prune] {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "round {round} ({delay:?}): {}",
                    text(out)
                );
            }
            let after = repo.keys().await;
            lost += assert_pruned_as_planned(
                &format!("round {round} on {label}"),
                &before,
                &planned,
                &after,
            );
            let new: Vec<BackupId> = repo
                .repo
                .backup_ids()
                .await
                .unwrap()
                .into_iter()
                .filter(|id| !ids_before.contains(id))
                .collect();
            assert_eq!(new.len(), 1, "round {round}: the new backup is listed");
            let manifest = repo.repo.manifest(&new[0]).await.unwrap();
            for object in &manifest.objects {
                assert!(after.contains(&object.key), "{} was removed", object.key);
            }
            repo.verify_all("after backup and prune").await;
        }
        if !label.is_empty() {
            eprintln!(
                "reliability: concurrency backup+prune {label} rounds={n} lost={lost} new-backups-verified={n}"
            );
        }
    }
}

/// Completed WAL segments of a real cluster, copied out of its pg_wal.
struct Segments {
    _cluster: cfdr_pg::LocalCluster,
    dir: tempfile::TempDir,
    names: Vec<String>,
}

impl Segments {
    async fn make(n: usize, test: &str) -> Option<Self> {
        use sqlx::Row;
        let bin = cfdr_testing::pg::pg_bin(test).await?;
        let mut cluster = cfdr_pg::LocalCluster::init_temp(&bin).await.unwrap();
        cluster
            .start(&[("wal_keep_size", "1GB"), ("archive_mode", "off")])
            .await
            .unwrap();
        let mut conn = cluster.target("postgres").connect().await.unwrap();
        sqlx::query("CREATE TABLE t (id serial, v text)")
            .execute(&mut conn)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut names = Vec::new();
        for _ in 0..n {
            sqlx::query("INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 500) g")
                .execute(&mut conn)
                .await
                .unwrap();
            let row = sqlx::query("SELECT pg_walfile_name(pg_switch_wal())")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            names.push(row.get::<String, _>(0));
        }
        // A switch completes its segment; the file is whole once the next
        // segment is in use, which the last switch guarantees.
        for name in &names {
            std::fs::copy(
                cluster.data_dir.join("pg_wal").join(name),
                dir.path().join(name),
            )
            .unwrap();
        }
        Some(Self {
            _cluster: cluster,
            dir,
            names,
        })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn segment(name: &str) -> WalSegment {
    WalSegment::parse(name, SEGMENT).unwrap()
}

/// A committed physical backup made by hand (the manifest and one data
/// object) whose WAL range starts in segment `start`.
async fn physical_backup(store: &Store, started: Timestamp, start: &str) -> BackupId {
    let seg = segment(start);
    let id = BackupId::new(started, "physical").unwrap();
    let data = format!("{id} base backup\n").into_bytes();
    let key = format!("{}base.tar", id.prefix());
    let range = WalRange::new(
        seg.timeline,
        Lsn(seg.segno * SEGMENT + 0x28),
        Lsn(seg.segno * SEGMENT + 0x100),
    );
    let mut details = serde_json::Map::new();
    details.insert("wal".into(), serde_json::to_value(range).unwrap());
    details.insert("wal_segment_size".into(), SEGMENT.into());
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        id: id.clone(),
        kind: "physical".into(),
        class: Some("hourly".into()),
        started,
        finished: started.checked_add(SignedDuration::from_secs(60)).unwrap(),
        tool_version: cfdr_storage::TOOL_VERSION.into(),
        objects: vec![StoredObject {
            key: key.clone(),
            stored: ObjectInfo::of(&data),
            raw_size: data.len() as u64,
            codec: CodecInfo {
                compression: Compression::None,
                encrypted_to: Vec::new(),
            },
        }],
        details,
    };
    let op = store.operator().unwrap().clone();
    op.write(&key, data).await.unwrap();
    op.write(&id.manifest_key(), serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_pushes_and_a_prune_at_once_keep_every_needed_segment() {
    let test = "concurrency_push_prune";
    let Some(segs) = Segments::make(8, test).await else {
        return;
    };
    let names = segs.names.clone();
    let mut rng = StdRng::seed_from_u64(18_004);
    for backend in [Backend::Fs, Backend::S3] {
        let n = rounds();
        let (mut lost, mut label, mut pushed) = (0, "", 0);
        for round in 0..n {
            let Some(repo) = Repo::new(
                backend,
                test,
                "[retention.classes.database]\nkeep-last = 1\n",
            )
            .await
            else {
                break;
            };
            label = repo.label();
            for name in &names[..4] {
                let out = repo.run("cfdr-wal", &["push", &segs.path(name)]);
                assert!(out.status.success(), "{}", text(&out));
            }
            // An old backup that needs the first segment, and the one
            // retention keeps, which needs the third on: the first two
            // segments and the old backup go.
            let now = Timestamp::now();
            physical_backup(
                &repo.store,
                now.checked_sub(SignedDuration::from_hours(240)).unwrap(),
                &names[0],
            )
            .await;
            physical_backup(
                &repo.store,
                now.checked_sub(SignedDuration::from_hours(1)).unwrap(),
                &names[2],
            )
            .await;
            let before = repo.keys().await;
            let planned = repo.planned();
            let wal_planned: BTreeSet<&str> = planned
                .iter()
                .filter(|k| k.starts_with("wal/"))
                .map(|k| k.rsplit('/').next().unwrap())
                .collect();
            assert_eq!(
                wal_planned,
                names[..2].iter().map(String::as_str).collect(),
                "the plan deletes the WAL before the kept backup"
            );
            // The archiver pushes the next four segments one after another
            // while the prune runs.
            let pusher = {
                let cmds: Vec<(String, Command)> = names[4..]
                    .iter()
                    .map(|name| {
                        let mut c = repo.cmd("cfdr-wal");
                        c.args(["push", &segs.path(name)]);
                        (name.clone(), c)
                    })
                    .collect();
                std::thread::spawn(move || {
                    cmds.into_iter()
                        .map(|(name, mut c)| (name, c.output().unwrap()))
                        .collect::<Vec<_>>()
                })
            };
            std::thread::sleep(offset(&mut rng));
            let prune = repo.run("cfdr-prune", &["--quiet"]);
            assert_eq!(prune.status.code(), Some(0), "{}", text(&prune));
            for (name, out) in pusher.join().unwrap() {
                assert!(out.status.success(), "push {name}: {}", text(&out));
                pushed += 1;
            }
            let after = repo.keys().await;
            lost += assert_pruned_as_planned(
                &format!("round {round} on {label}"),
                &before,
                &planned,
                &after,
            );
            let archived: BTreeSet<&str> = after
                .iter()
                .filter(|k| k.starts_with("wal/") && !k.ends_with(".json"))
                .map(|k| k.rsplit('/').next().unwrap())
                .collect();
            let names_kept: BTreeSet<&str> = names[2..].iter().map(String::as_str).collect();
            assert_eq!(archived, names_kept, "round {round}: the archive after");
            let check = repo.run("cfdr-wal", &["check", "--from", &names[2]]);
            assert_eq!(check.status.code(), Some(0), "{}", text(&check));
            repo.verify_all("after push and prune").await;
        }
        if !label.is_empty() {
            eprintln!(
                "reliability: concurrency push+prune {label} rounds={n} segments-pushed-during-prune={pushed} lost={lost}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_segment_pushed_by_two_processes_is_stored_once() {
    let test = "concurrency_same_segment";
    let Some(segs) = Segments::make(2, test).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(18_005);
    for backend in [Backend::Fs, Backend::S3] {
        let n = rounds();
        let (mut races, mut retried, mut label) = (0, 0, "");
        for round in 0..n {
            let Some(repo) = Repo::new(backend, test, "").await else {
                break;
            };
            label = repo.label();
            // The first push of an archive also creates wal/cluster.json;
            // the second races on a segment alone.
            for name in &segs.names {
                let delay = offset(&mut rng);
                let mut a = repo.cmd("cfdr-wal");
                a.args(["push", &segs.path(name)]);
                let mut b = repo.cmd("cfdr-wal");
                b.args(["push", &segs.path(name)]);
                let (a, b) = race(a, b, delay);
                for out in [&a, &b] {
                    // Exit 2 is a failure PostgreSQL's archiver retries
                    // (the S3 server may drop a connection while two
                    // uploads of one key overlap): the retry must succeed.
                    if out.status.code() == Some(2) {
                        eprintln!(
                            "push exited 2, retried as the archiver would: {}",
                            text(out)
                        );
                        let again = repo.run("cfdr-wal", &["push", &segs.path(name)]);
                        assert_eq!(again.status.code(), Some(0), "{}", text(&again));
                        retried += 1;
                        continue;
                    }
                    assert_eq!(
                        out.status.code(),
                        Some(0),
                        "round {round} {name} ({delay:?}): {}",
                        text(out)
                    );
                }
                races += 1;
                let dest = repo.dir.path().join(format!("{name}.fetched"));
                let out = repo.run("cfdr-wal", &["fetch", name, &dest.display().to_string()]);
                assert_eq!(out.status.code(), Some(0), "{}", text(&out));
                assert!(
                    std::fs::read(&dest).unwrap() == std::fs::read(segs.path(name)).unwrap(),
                    "round {round}: {name} comes back as pushed"
                );
            }
            let stored: Vec<String> = repo
                .keys()
                .await
                .into_iter()
                .filter(|k| k.starts_with("wal/") && !k.ends_with("cluster.json"))
                .collect();
            assert_eq!(
                stored.len(),
                segs.names.len(),
                "one object each: {stored:?}"
            );
            let check = repo.run("cfdr-wal", &["check"]);
            assert_eq!(check.status.code(), Some(0), "{}", text(&check));
        }
        if !label.is_empty() {
            eprintln!(
                "reliability: concurrency push+push {label} rounds={n} races={races} retried-by-the-archiver={retried} lost=0"
            );
        }
    }
}

/// `cfdr-secrets keygen -o FILE`: the new identity's recipient.
fn keygen(repo: &Repo, file: &Path) -> String {
    let out = repo.run(
        "cfdr-secrets",
        &["keygen", "-o", &file.display().to_string()],
    );
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secrets_rekey_and_a_backup_at_once_lose_no_version() {
    let test = "concurrency_rekey_backup";
    let mut rng = StdRng::seed_from_u64(18_006);
    for backend in [Backend::Fs, Backend::S3] {
        let n = rounds();
        let (mut versions_total, mut label) = (0, "");
        for round in 0..n {
            let Some(repo) = Repo::new(backend, test, "").await else {
                break;
            };
            let (old, new) = (
                repo.dir.path().join("old.txt"),
                repo.dir.path().join("new.txt"),
            );
            let old_recipient = keygen(&repo, &old);
            let new_recipient = keygen(&repo, &new);
            // Backups encrypt to the old recipient, which the configured
            // (old) identity opens.
            let mut toml = std::fs::read_to_string(&repo.config).unwrap();
            toml.push_str(&format!(
                "[encryption]\nrecipients = [{old_recipient:?}]\nidentity-file = {:?}\n",
                old.display().to_string()
            ));
            std::fs::write(&repo.config, toml).unwrap();
            label = repo.label();
            let mut expected = BTreeSet::new();
            let source = repo.dir.path().join("source.env");
            for v in 0..6 {
                let value = format!("round{round}-value{v}-{:08x}", rng.random::<u32>());
                std::fs::write(&source, format!("EXCHANGE_KEY={value}\n")).unwrap();
                let from = format!("env:{}", source.display());
                let out = repo.run("cfdr-secrets", &["-b", "app", "backup", "--from", &from]);
                assert!(out.status.success(), "{}", text(&out));
                expected.insert(value);
            }
            // Key rotation as documented: backups encrypt to the new
            // recipient from now on, the old identity still decrypts, and
            // rekey moves the stored versions over while a backup runs.
            let toml = std::fs::read_to_string(&repo.config).unwrap();
            std::fs::write(&repo.config, toml.replace(&old_recipient, &new_recipient)).unwrap();
            let value = format!("round{round}-during-rekey-{:08x}", rng.random::<u32>());
            std::fs::write(&source, format!("EXCHANGE_KEY={value}\n")).unwrap();
            expected.insert(value);
            let mut rekey = repo.cmd("cfdr-secrets");
            rekey.args(["rekey", "--new-identity", &new.display().to_string()]);
            let mut backup = repo.cmd("cfdr-secrets");
            backup.args([
                "-b",
                "app",
                "backup",
                "--from",
                &format!("env:{}", source.display()),
            ]);
            let delay = offset(&mut rng);
            let (a, b) = if rng.random_bool(0.5) {
                race(rekey, backup, delay)
            } else {
                let (b, a) = race(backup, rekey, delay);
                (a, b)
            };
            for out in [&a, &b] {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "round {round} ({delay:?}): {}",
                    text(out)
                );
            }
            // Every version opens with the new identity alone and holds
            // what was backed up.
            let out = repo.run("cfdr-secrets", &["-b", "app", "list", "--json"]);
            assert!(out.status.success(), "{}", text(&out));
            let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let versions: Vec<String> = listed
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["version"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(versions.len(), expected.len(), "{listed}");
            let mut seen = BTreeSet::new();
            for version in &versions {
                let out = repo.run(
                    "cfdr-secrets",
                    &[
                        "-b",
                        "app",
                        "-i",
                        &new.display().to_string(),
                        "restore",
                        version,
                        "--to",
                        "env",
                    ],
                );
                assert!(out.status.success(), "{version}: {}", text(&out));
                let env = String::from_utf8(out.stdout).unwrap();
                let value = env
                    .lines()
                    .find_map(|l| l.strip_prefix("EXCHANGE_KEY="))
                    .unwrap()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_owned();
                seen.insert(value);
            }
            assert_eq!(seen, expected, "round {round}: every version is there");
            versions_total += versions.len();
        }
        if !label.is_empty() {
            eprintln!(
                "reliability: concurrency rekey+backup {label} rounds={n} versions={versions_total} lost=0"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_incident_writers_lose_no_event() {
    let test = "concurrency_incident";
    let mut rng = StdRng::seed_from_u64(18_007);
    let per_writer = if cfdr_testing::long_tests() { 10 } else { 4 };
    // moto: the event's create-only write must decide the race.
    for backend in [Backend::Fs, Backend::S3Moto] {
        let n = rounds();
        let (mut events, mut label) = (0, "");
        for round in 0..n {
            let Some(repo) = Repo::new(backend, test, "").await else {
                break;
            };
            label = repo.label();
            let out = repo.run(
                "cfdr-incident",
                &[
                    "--no-notify",
                    "--author",
                    "test",
                    "open",
                    "--severity",
                    "P3",
                    "Concurrent writers",
                    "--no-halt",
                ],
            );
            assert!(out.status.success(), "{}", text(&out));
            let stdout = String::from_utf8(out.stdout).unwrap();
            let id = stdout
                .split_whitespace()
                .find(|w| w.starts_with("INC-"))
                .unwrap()
                .trim_end_matches(':')
                .to_owned();
            let writer = |name: &'static str, delay: Duration| {
                let cmds: Vec<Command> = (0..per_writer)
                    .map(|k| {
                        let mut c = repo.cmd("cfdr-incident");
                        c.args([
                            "--no-notify",
                            "--author",
                            name,
                            "note",
                            &id,
                            &format!("{name} note {k}"),
                        ]);
                        c
                    })
                    .collect();
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    cmds.into_iter()
                        .map(|mut c| c.output().unwrap())
                        .collect::<Vec<_>>()
                })
            };
            let delay = offset(&mut rng) / 4;
            let a = writer("alice", Duration::ZERO);
            let b = writer("bob", delay);
            for out in a.join().unwrap().into_iter().chain(b.join().unwrap()) {
                assert!(out.status.success(), "round {round}: {}", text(&out));
            }
            let out = repo.run("cfdr-incident", &["show", &id, "--json"]);
            assert!(out.status.success(), "{}", text(&out));
            let shown = String::from_utf8(out.stdout).unwrap();
            for name in ["alice", "bob"] {
                for k in 0..per_writer {
                    assert!(
                        shown.contains(&format!("{name} note {k}")),
                        "round {round}: {name} note {k} lost: {shown}"
                    );
                }
            }
            let stored = repo
                .keys()
                .await
                .into_iter()
                .filter(|k| k.starts_with(&format!("incidents/{id}/")))
                .count();
            assert_eq!(stored, 1 + 2 * per_writer, "one object per event");
            // The incident folds: its report is written from every event.
            let out = repo.run("cfdr-incident", &["report", &id]);
            assert!(out.status.success(), "{}", text(&out));
            events += stored;
        }
        if !label.is_empty() {
            eprintln!(
                "reliability: concurrency incident-writers {label} rounds={n} events={events} lost=0"
            );
        }
    }
}
