//! Crash consistency: every cfdr command that writes to the repository,
//! SIGKILLed at seeded random moments within its measured clean run time
//! (`cfdr_testing::crash`), then the repository checked: no backup listed
//! that does not verify, every complete backup still verifying (and, once at
//! the end, restoring), the command run again finishing the job, no WAL that
//! PostgreSQL counts as archived missing, and leftovers reclaimed by prune.
//! 10 trials per command; 50 with CFDR_TEST_LONG=1; CFDR_TEST_SEED replays.
//! Each test prints one `reliability: crash ...` figures line.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cfdr_pg::LocalCluster;
use cfdr_storage::{Manifest, Repository, StorageOptions, Store};
use cfdr_testing::bins::workspace_bin;
use cfdr_testing::crash::{Crash, Kill, find_processes, pid_alive, sigkill};
use cfdr_testing::output_text as text;
use cfdr_testing::pg::give_to_postgres;

/// A retention config that keeps every backup and gives unfinished ones no
/// grace: prune then deletes exactly the leftovers of killed writers.
fn keep_all_config() -> String {
    let mut t = String::from("[retention]\nincomplete-grace = \"0h\"\n");
    for class in [
        "database",
        "database-archive",
        "application-logs",
        "audit-logs",
        "trading-records",
        "configuration",
        "secrets",
    ] {
        t.push_str(&format!(
            "[retention.classes.{class}]\nkeep-last = \"unlimited\"\n"
        ));
    }
    t
}

/// A cfdr binary with none of the caller's cfdr settings.
fn cfdr(bin: &str) -> Command {
    let mut c = Command::new(workspace_bin(bin));
    for v in [
        "CFDR_CONFIG",
        "CFDR_REPOSITORY",
        "CFDR_AGE_RECIPIENTS",
        "CFDR_AGE_RECIPIENTS_FILE",
        "CFDR_AGE_IDENTITY",
        "CFDR_AGE_IDENTITY_FILE",
        "CFDR_SECRETS_BUNDLE",
        "CFDR_SECRETS_PASSPHRASE",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}", text(&out));
    out
}

/// A folder on memory-backed /dev/shm when there is one (the trials time
/// the writers, not this machine's disk).
fn work_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// A folder repository, initialised.
struct Repo {
    dir: tempfile::TempDir,
    url: String,
    store: Store,
    repo: Repository,
}

impl Repo {
    async fn new() -> Repo {
        let dir = work_dir();
        let path = dir.path().join("repo");
        let url = format!("file://{}", path.display());
        let store = StorageOptions::from_url(url.clone()).build().unwrap();
        let repo = Repository::init(store.clone()).await.unwrap();
        Repo {
            dir,
            url,
            store,
            repo,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    async fn keys(&self) -> BTreeSet<String> {
        keys(&self.store).await
    }

    /// Every file under the repository folder with its size, temporary
    /// files of a write in progress included: tells a kill that came
    /// before the first write from one that came after.
    fn disk(&self) -> BTreeMap<PathBuf, u64> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = e.path();
                match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&path, out),
                    Ok(m) => {
                        out.insert(path, m.len());
                    }
                    Err(_) => {}
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.path(), &mut out);
        out
    }

    /// Runs cfdr-prune with [`keep_all_config`] and checks that no
    /// unfinished backup folder is left. Returns how many folders it
    /// reclaimed.
    async fn reclaim(&self) -> usize {
        let before = self.repo.folders().await.unwrap();
        let unfinished = before.iter().filter(|f| !f.committed).count();
        let config = self.dir.path().join("keep-all.toml");
        std::fs::write(&config, keep_all_config()).unwrap();
        ok(
            cfdr("cfdr-prune")
                .args(["-r", &self.url, "--quiet", "--wait", "60", "--config"])
                .arg(&config)
                .output()
                .unwrap(),
            "cfdr-prune after the trials",
        );
        let after = self.repo.folders().await.unwrap();
        let left: Vec<_> = after.iter().filter(|f| !f.committed).collect();
        assert!(left.is_empty(), "prune left unfinished backups: {left:?}");
        let committed = |v: &[cfdr_storage::BackupFolder]| {
            v.iter()
                .filter(|f| f.committed)
                .map(|f| f.id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            committed(&after),
            committed(&before),
            "prune kept every backup"
        );
        unfinished
    }
}

async fn keys(store: &Store) -> BTreeSet<String> {
    store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}

/// The complete backups seen so far.
#[derive(Default)]
struct Ledger {
    complete: BTreeMap<String, Manifest>,
}

impl Ledger {
    /// Every listed backup verifies; every backup complete before still is
    /// listed and verifies (else a loss). Returns how many new complete
    /// backups appeared.
    async fn check(&mut self, repo: &Repository, crash: &mut Crash, kill: &Kill) -> usize {
        let listed = repo.backups().await.unwrap();
        let mut seen = BTreeSet::new();
        let mut new = 0;
        for m in listed {
            let report = repo.verify(&m).await.unwrap();
            let id = m.id.to_string();
            if self.complete.contains_key(&id) {
                if !report.is_ok() {
                    crash.lost(
                        kill,
                        format!("complete backup {id} fails to verify: {report:?}"),
                    );
                }
            } else {
                assert!(
                    report.is_ok(),
                    "{}: backup {id} is listed but does not verify: {report:?}",
                    crash.at(kill)
                );
                new += 1;
            }
            seen.insert(id.clone());
            self.complete.insert(id, m);
        }
        let gone: Vec<String> = self
            .complete
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            crash.lost(kill, format!("complete backup {id} is no longer listed"));
            self.complete.remove(&id);
        }
        new
    }
}

/// The calibration run counts as trial "none".
fn calibration() -> Kill {
    Kill {
        trial: usize::MAX,
        after: Duration::ZERO,
        finished: true,
        status: None,
    }
}

/// A writer of backups: kill, check, run again, check.
async fn backup_trials(
    crash: &mut Crash,
    repo: &Repo,
    ledger: &mut Ledger,
    mut command: impl FnMut() -> Command,
) {
    for trial in crash.trials() {
        let before = repo.disk();
        let kill = crash.kill(trial, &mut command());
        let wrote = repo.disk() != before;
        let new = ledger.check(&repo.repo, crash, &kill).await;
        if !kill.finished {
            let out = command().output().unwrap();
            assert!(
                out.status.success(),
                "{}: the run after the kill failed: {}",
                crash.at(&kill),
                text(&out)
            );
            let again = ledger.check(&repo.repo, crash, &kill).await;
            assert!(
                again >= 1,
                "{}: the run after the kill listed no new backup",
                crash.at(&kill)
            );
        } else {
            assert!(
                new >= 1,
                "{}: a finished run listed nothing",
                crash.at(&kill)
            );
        }
        crash.record(&kill, wrote);
    }
}

async fn cluster(test: &str) -> Option<LocalCluster> {
    match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 20, 30_000).await {
        Ok(c) => Some(c),
        Err(e) => cfdr_testing::missing(&format!("PostgreSQL 15 ({e})"), test),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_logical_backups() {
    let Some(cluster) = cluster("killed_logical_backups").await else {
        return;
    };
    let repo = Repo::new().await;
    let mut crash = Crash::new("cfdr-backup logical");
    let url = cluster.url("cryptofunk");
    let backup = || {
        let mut c = cfdr("cfdr-backup");
        c.args(["-r", &repo.url, "logical", "--class", "hourly"])
            .env("DATABASE_URL", &url);
        c
    };
    crash.calibrate_median(3, backup);
    let mut ledger = Ledger::default();
    assert_eq!(
        ledger.check(&repo.repo, &mut crash, &calibration()).await,
        3
    );
    backup_trials(&mut crash, &repo, &mut ledger, backup).await;
    // The oldest complete backup still restores (into a new database).
    let first = ledger.complete.keys().next().unwrap().clone();
    ok(
        cfdr("cfdr-restore")
            .args(["-r", &repo.url, "logical", &first, "--jobs", "1"])
            .env("DATABASE_URL", &url)
            .output()
            .unwrap(),
        "restoring the first backup",
    );
    let reclaimed = repo.reclaim().await;
    println!("crash cfdr-backup logical: prune reclaimed {reclaimed} unfinished backups");
    crash.finish();
}

/// A repository the `postgres` user can write WAL into, a config file for
/// `cfdr-wal`, and a cluster archiving with `archive_command`.
struct Archiving {
    repo: Repo,
    config: PathBuf,
    spool: PathBuf,
    cluster: LocalCluster,
    wal: cfdr_wal_archive::WalArchive,
}

impl Archiving {
    async fn new(test: &str, push_args: &str) -> Option<Archiving> {
        let bin = cfdr_testing::pg::pg_bin(test).await?;
        let repo = Repo::new().await;
        let config = repo.dir.path().join("cfdr.toml");
        let spool = repo.dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        std::fs::write(
            &config,
            format!(
                "[repository]\nurl = {:?}\n[wal]\nspool-dir = {:?}\nworker-idle-secs = 2\npush-timeout-secs = 60\n",
                repo.url,
                spool.display().to_string()
            ),
        )
        .unwrap();
        give_to_postgres(repo.dir.path());
        let mut cluster = LocalCluster::init_temp(&bin).await.unwrap();
        let conf = cluster.data_dir.join("postgresql.conf");
        let mut t = std::fs::read_to_string(&conf).unwrap();
        t.push_str(&format!(
            "\nwal_level = replica\narchive_mode = on\narchive_command = '{} --config {} push {push_args}'\nwal_keep_size = '1GB'\n",
            workspace_bin("cfdr-wal").display(),
            config.display()
        ));
        std::fs::write(&conf, t).unwrap();
        cluster.start(&[]).await.unwrap();
        let wal = cfdr_wal_archive::WalArchive::new(repo.store.clone());
        let a = Archiving {
            repo,
            config,
            spool,
            cluster,
            wal,
        };
        a.sql("CREATE TABLE t (id serial, v text)").await;
        Some(a)
    }

    async fn sql(&self, statement: &str) -> Option<String> {
        use sqlx::Row;
        let mut conn = self.cluster.target("postgres").connect().await.unwrap();
        let row = sqlx::query(statement)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        row.and_then(|r| r.try_get::<String, _>(0).ok())
    }

    /// Writes some rows and completes a segment; returns its name.
    async fn switch(&self) -> String {
        self.sql("INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 500) g")
            .await;
        self.sql("SELECT pg_walfile_name(pg_switch_wal())")
            .await
            .unwrap()
    }

    /// The last file pg_stat_archiver reports archived.
    async fn last_archived(&self) -> Option<String> {
        self.sql("SELECT last_archived_wal FROM pg_stat_archiver")
            .await
    }

    async fn archived(&self, segment: &str) -> bool {
        self.last_archived()
            .await
            .is_some_and(|l| l.get(..24).is_some_and(|l| l >= &segment[..24]))
    }

    async fn wait_archived(&self, segment: &str) {
        let what = format!("{segment} archived");
        cfdr_testing::eventually(&what, cfdr_testing::PATIENCE, || async {
            if self.archived(segment).await {
                Ok(())
            } else {
                let log = std::fs::read_to_string(&self.cluster.log_file).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                Err(format!(
                    "last archived {:?}; server log tail:\n{}",
                    self.last_archived().await,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ))
            }
        })
        .await;
    }

    /// Files of pg_wal that PostgreSQL counts as archived: a `.done` marker.
    fn done(&self) -> Vec<String> {
        let dir = self.cluster.data_dir.join("pg_wal/archive_status");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".done")
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    async fn stored(&self) -> BTreeSet<String> {
        self.wal
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.item.name.to_string())
            .collect()
    }

    /// Every file PostgreSQL counts as archived (`.done`, and every segment
    /// up to pg_stat_archiver's last) is stored and fetches back identical
    /// to pg_wal; a missing or different one is a loss. Returns the count.
    async fn check_archived(&self, crash: &mut Crash, kill: &Kill, segments: &[String]) -> usize {
        // PostgreSQL's view first, then the repository's: a file is stored
        // before it is acknowledged, so whatever PostgreSQL counted as
        // archived before the listing must be in it.
        let last = self.last_archived().await;
        let mut believed: BTreeSet<String> = self.done().into_iter().collect();
        if let Some(last) = &last {
            believed.extend(
                segments
                    .iter()
                    .filter(|s| s.as_str() <= last.as_str())
                    .cloned(),
            );
        }
        let stored = self.stored().await;
        let tmp = tempfile::tempdir().unwrap();
        for file in &believed {
            if !stored.contains(file) {
                crash.lost(kill, format!("{file} counts as archived but is not stored"));
                continue;
            }
            let Ok(original) = std::fs::read(self.cluster.data_dir.join("pg_wal").join(file))
            else {
                continue;
            };
            let dest = tmp.path().join(file);
            let got = self.wal.fetch(file, &dest, &Default::default()).await;
            match got {
                Ok(cfdr_wal_archive::Fetched::Restored { .. })
                    if std::fs::read(&dest).unwrap() == original => {}
                other => crash.lost(
                    kill,
                    format!("{file} counts as archived but fetches as {other:?}"),
                ),
            }
        }
        believed.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_physical_backups() {
    let Some(a) = Archiving::new("killed_physical_backups", "%p").await else {
        return;
    };
    a.switch().await;
    let mut crash = Crash::new("cfdr-backup physical");
    let url = a.cluster.url("postgres");
    let repo_url = a.repo.url.clone();
    let backup = || {
        let mut c = cfdr("cfdr-backup");
        c.args(["-r", &repo_url, "physical", "--class", "daily"])
            .env("DATABASE_URL", &url);
        c
    };
    crash.calibrate(&mut backup());
    let mut ledger = Ledger::default();
    assert_eq!(
        ledger.check(&a.repo.repo, &mut crash, &calibration()).await,
        1
    );
    backup_trials(&mut crash, &a.repo, &mut ledger, backup).await;
    let last = a.switch().await;
    a.wait_archived(&last).await;
    let kill = calibration();
    a.check_archived(&mut crash, &kill, &[]).await;
    let reclaimed = a.repo.reclaim().await;
    println!("crash cfdr-backup physical: prune reclaimed {reclaimed} unfinished backups");
    // The newest base backup plus the archived WAL still restore and start.
    let restored = a.repo.dir.path().join("restored");
    let out = ok(
        cfdr("cfdr-restore")
            .args(["-r", &a.repo.url, "pitr", "--latest", "--data-dir"])
            .arg(&restored)
            .arg("--start")
            .output()
            .unwrap(),
        "PITR from the trials' backups",
    );
    let printed = text(&out);
    let stop = printed
        .split("stop it with: ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap_or_default()
        .to_owned();
    assert!(!stop.is_empty(), "{printed}");
    ok(
        Command::new("sh").args(["-c", &stop]).output().unwrap(),
        "stopping the restored server",
    );
    crash.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_wal_pushes_under_archive_command() {
    // `|| exit 1`: PostgreSQL restarts its archiver when archive_command
    // dies on a signal, and waits up to 10 s before it does; a plain
    // failure is retried within a second. The push itself is what is killed.
    let Some(a) = Archiving::new("killed_wal_pushes_under_archive_command", "%p || exit 1").await
    else {
        return;
    };
    let mut crash = Crash::new("cfdr-wal push (archive_command)");
    let config = a.config.display().to_string();
    // The clean run: a push PostgreSQL runs, from when it is seen to its end.
    let first = a.switch().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = || !find_processes("cfdr-wal", &[&config, "push", &first]).is_empty();
    while !running() && !a.done().contains(&first) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let seen = Instant::now();
    while running() {
        std::thread::sleep(Duration::from_millis(1));
    }
    crash.set_clean(seen.elapsed().max(Duration::from_millis(50)));
    a.wait_archived(&first).await;
    let mut segments = vec![first];
    for trial in crash.trials() {
        let before = a.repo.disk();
        let segment = a.switch().await;
        segments.push(segment.clone());
        // The push PostgreSQL's archiver runs for this segment.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (pid, seen) = loop {
            if let Some(pid) = find_processes("cfdr-wal", &[&config, "push", &segment]).pop() {
                break (Some(pid), Instant::now());
            }
            if a.done().contains(&segment) {
                break (None, Instant::now());
            }
            assert!(Instant::now() < deadline, "no push of {segment} seen");
            std::thread::sleep(Duration::from_millis(1));
        };
        let kill = match pid {
            Some(pid) => crash.kill_pid(trial, pid, seen),
            None => Kill {
                trial,
                after: Duration::ZERO,
                finished: true,
                status: None,
            },
        };
        let wrote = a.repo.disk() != before;
        // Right after the kill: nothing PostgreSQL counts as archived is
        // missing. Then its archiver retries until the segment is stored.
        a.check_archived(&mut crash, &kill, &segments).await;
        let retried = Instant::now();
        a.wait_archived(&segment).await;
        println!(
            "trial {trial}: archived {:?} after the kill",
            retried.elapsed()
        );
        a.check_archived(&mut crash, &kill, &segments).await;
        crash.record(&kill, wrote);
    }
    let continuity = a.wal.continuity_from(Some(&segments[0])).await.unwrap();
    assert!(continuity.is_continuous(), "{continuity:?}");
    crash.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_async_push_workers() {
    let Some(a) = Archiving::new("killed_async_push_workers", "--async %p").await else {
        return;
    };
    let mut crash = Crash::new("cfdr-wal push-worker (async push)");
    // Clean: from a segment's switch to PostgreSQL counting it archived.
    let start = Instant::now();
    let first = a.switch().await;
    a.wait_archived(&first).await;
    crash.set_clean(start.elapsed());
    let mut segments = vec![first];
    let lock = a.spool.join("push-worker.lock");
    for trial in crash.trials() {
        let before = a.repo.disk();
        let started = Instant::now();
        let segment = a.switch().await;
        segments.push(segment.clone());
        let moment = crash.moment();
        std::thread::sleep(moment.saturating_sub(started.elapsed()));
        let worker = std::fs::read_to_string(&lock)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|pid| pid_alive(*pid));
        let finished = a.done().contains(&segment);
        let after = started.elapsed();
        if let Some(pid) = worker.filter(|_| !finished) {
            sigkill(pid);
        }
        let kill = Kill {
            trial,
            after,
            finished: finished || worker.is_none(),
            status: None,
        };
        let wrote = a.repo.disk() != before;
        a.check_archived(&mut crash, &kill, &segments).await;
        // Every acknowledgement the worker left describes a stored file
        // (markers read before the listing: a marker follows its store).
        let markers: Vec<String> = std::fs::read_dir(a.spool.join("out"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|m| m.file_name().to_string_lossy().into_owned())
            .collect();
        let stored = a.stored().await;
        for name in markers {
            if let Some(file) = name.strip_suffix(".ok")
                && !stored.contains(file)
            {
                crash.lost(
                    &kill,
                    format!("{name} acknowledges a file that is not stored"),
                );
            }
        }
        // The next push starts a new worker, which finishes the job.
        a.wait_archived(&segment).await;
        a.check_archived(&mut crash, &kill, &segments).await;
        crash.record(&kill, wrote);
    }
    let continuity = a.wal.continuity_from(Some(&segments[0])).await.unwrap();
    assert!(continuity.is_continuous(), "{continuity:?}");
    crash.finish();
}

/// cfdr-secrets with a repository, a key and its recipient.
struct Secrets {
    repo: Repo,
    keys: Vec<(PathBuf, String)>,
    source: PathBuf,
}

impl Secrets {
    async fn new(keys: usize) -> Secrets {
        let repo = Repo::new().await;
        let keys = (0..keys)
            .map(|i| {
                let key = repo.dir.path().join(format!("key{i}.txt"));
                let out = ok(
                    cfdr("cfdr-secrets")
                        .args(["keygen", "-o"])
                        .arg(&key)
                        .output()
                        .unwrap(),
                    "keygen",
                );
                (
                    key,
                    String::from_utf8(out.stdout).unwrap().trim().to_owned(),
                )
            })
            .collect();
        let source = repo.dir.path().join("app.env");
        let mut body = String::new();
        for i in 0..40 {
            body.push_str(&format!("SECRET_{i}=value-{i}-{}\n", "x".repeat(64)));
        }
        std::fs::write(&source, body).unwrap();
        Secrets { repo, keys, source }
    }

    /// cfdr-secrets decrypting with key `key` and encrypting to it.
    fn cmd(&self, key: usize) -> Command {
        let mut c = cfdr("cfdr-secrets");
        c.env("CFDR_REPOSITORY", &self.repo.url)
            .env("CFDR_AGE_IDENTITY_FILE", &self.keys[key].0)
            .env("CFDR_AGE_RECIPIENTS", &self.keys[key].1);
        c
    }

    fn backup(&self) -> Command {
        let mut c = self.cmd(0);
        c.args(["-b", "app", "backup", "--from"])
            .arg(format!("env:{}", self.source.display()));
        c
    }

    fn identities(&self) -> cfdr_secrets::Identities {
        let text: String = self
            .keys
            .iter()
            .map(|(k, _)| std::fs::read_to_string(k).unwrap())
            .collect();
        cfdr_secrets::Identities::from_text(text).unwrap()
    }

    /// Every listed version decrypts to the source; every version listed
    /// before still does. Returns the versions and the `.age` objects no
    /// manifest names.
    async fn check(
        &self,
        crash: &mut Crash,
        kill: &Kill,
        before: &BTreeSet<String>,
    ) -> (BTreeSet<String>, usize) {
        let store = cfdr_storage::SecretStore::new(&self.repo.repo);
        let ids = self.identities();
        let want = cfdr_secrets::formats::parse_env(&std::fs::read(&self.source).unwrap(), "src")
            .unwrap()
            .to_document();
        let mut versions = BTreeSet::new();
        let mut named = BTreeSet::new();
        for m in store.list(None).await.unwrap() {
            match store.open(&m, &ids).await {
                Ok(b) if b.to_document().expose() == want.expose() => {}
                other => {
                    let what = format!(
                        "{} does not open to the source: {:?}",
                        m.label(),
                        other.err()
                    );
                    if before.contains(&m.label()) {
                        crash.lost(kill, what);
                    } else {
                        panic!("{}: listed but {what}", crash.at(kill));
                    }
                }
            }
            named.insert(m.object.clone());
            versions.insert(m.label());
        }
        for gone in before.difference(&versions) {
            crash.lost(kill, format!("{gone} is no longer listed"));
        }
        let orphans = self
            .repo
            .keys()
            .await
            .into_iter()
            .filter(|k| k.starts_with("secrets/") && k.ends_with(".age") && !named.contains(k))
            .count();
        (versions, orphans)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_secrets_backups() {
    let s = Secrets::new(1).await;
    let mut crash = Crash::new("cfdr-secrets backup");
    crash.calibrate_median(3, || s.backup());
    let (mut versions, _) = s.check(&mut crash, &calibration(), &BTreeSet::new()).await;
    let mut orphans = 0;
    for trial in crash.trials() {
        let before = s.repo.disk();
        let kill = crash.kill(trial, &mut s.backup());
        let wrote = s.repo.disk() != before;
        let (now, left) = s.check(&mut crash, &kill, &versions).await;
        if !kill.finished {
            let out = s.backup().output().unwrap();
            assert!(out.status.success(), "{}: {}", crash.at(&kill), text(&out));
        }
        let (after, left_after) = s.check(&mut crash, &kill, &now).await;
        assert!(
            after.len() > versions.len(),
            "{}: no new version",
            crash.at(&kill)
        );
        versions = after;
        orphans = left.max(left_after);
        crash.record(&kill, wrote);
    }
    // An object of a killed backup has no manifest: never listed, never
    // restored. It holds only ciphertext.
    for key in s.repo.keys().await {
        if key.ends_with(".age") {
            let body = std::fs::read(s.repo.path().join(&key)).unwrap();
            assert!(
                !String::from_utf8_lossy(&body).contains("value-1-"),
                "{key} holds plaintext"
            );
        }
    }
    println!(
        "crash cfdr-secrets backup: {orphans} encrypted objects of killed backups are left (prune does not reclaim secrets/)"
    );
    crash.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_secrets_rekeys() {
    let s = Secrets::new(2).await;
    for _ in 0..6 {
        ok(s.backup().output().unwrap(), "a backup before the rekeys");
    }
    let mut crash = Crash::new("cfdr-secrets rekey");
    // Rekey from key `from` to the other one.
    let rekey = |to: usize| {
        let mut c = s.cmd(1 - to);
        c.args(["rekey", "-R", &s.keys[to].1, "--new-identity"])
            .arg(&s.keys[to].0);
        c
    };
    crash.calibrate(&mut rekey(1));
    let mut to = 0;
    let (mut versions, _) = s.check(&mut crash, &calibration(), &BTreeSet::new()).await;
    let store = cfdr_storage::SecretStore::new(&s.repo.repo);
    let fingerprint = |i: usize| {
        cfdr_secrets::Recipients::parse([s.keys[i].1.as_str()])
            .unwrap()
            .fingerprints()
    };
    for trial in crash.trials() {
        let before = s.repo.disk();
        let kill = crash.kill(trial, &mut rekey(to));
        let wrote = s.repo.disk() != before;
        let (now, _) = s.check(&mut crash, &kill, &versions).await;
        assert_eq!(now, versions, "{}", crash.at(&kill));
        let out = rekey(to).output().unwrap();
        assert!(
            out.status.success(),
            "{}: the rekey after the kill failed: {}",
            crash.at(&kill),
            text(&out)
        );
        let (after, orphans) = s.check(&mut crash, &kill, &versions).await;
        assert_eq!(after, versions, "{}", crash.at(&kill));
        assert_eq!(orphans, 0, "{}: superseded objects left", crash.at(&kill));
        for m in store.list(None).await.unwrap() {
            assert_eq!(
                m.encryption.recipients,
                fingerprint(to),
                "{}: {} not rekeyed",
                crash.at(&kill),
                m.label()
            );
        }
        versions = after;
        to = 1 - to;
        crash.record(&kill, wrote);
    }
    crash.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_incident_writes() {
    let repo = Repo::new().await;
    let config = repo.dir.path().join("cfdr.toml");
    std::fs::write(&config, format!("[repository]\nurl = {:?}\n", repo.url)).unwrap();
    let journal = cfdr_incident::Journal::new(repo.store.clone());
    let incident = |args: &[&str]| {
        let mut c = cfdr("cfdr-incident");
        c.arg("--config")
            .arg(&config)
            .args(args)
            .arg("--no-notify")
            .env("USER", "oncall")
            .env_remove("CFDR_PAGERDUTY_ROUTING_KEY")
            .env_remove("CFDR_SLACK_WEBHOOK_URL");
        c
    };
    let mut crash = Crash::new("cfdr-incident");
    crash.calibrate_median(3, || incident(&["open", "--severity", "P2", "Replica lag"]));
    let mut events = keys(&repo.store).await;
    let id = |events: &BTreeSet<String>| {
        events
            .iter()
            .filter_map(|k| k.strip_prefix("incidents/"))
            .filter_map(|k| k.split('/').next())
            .max()
            .unwrap()
            .to_owned()
    };
    for trial in crash.trials() {
        let current = id(&events);
        let text_arg = format!("trial {trial}");
        let args: Vec<&str> = match trial % 5 {
            0 => vec!["note", &current, &text_arg],
            1 => vec!["status", &current, &text_arg],
            2 => vec!["resolve", &current, &text_arg],
            3 => vec!["reopen", &current, "--reason", &text_arg],
            _ => vec!["open", "--severity", "P3", &text_arg],
        };
        let kill = crash.kill(trial, &mut incident(&args));
        let now = keys(&repo.store).await;
        let wrote = now != events;
        let listing = journal.list().await.unwrap();
        assert!(
            listing.damaged().is_empty(),
            "{}: {:?}",
            crash.at(&kill),
            listing.damaged()
        );
        for gone in events.difference(&now) {
            crash.lost(&kill, format!("event {gone} is gone"));
        }
        // The event is written whole or not at all; when not, the command
        // run again writes it.
        let added = now.len() - events.len().min(now.len());
        assert!(
            added <= 1,
            "{}: {added} events from one command",
            crash.at(&kill)
        );
        if added == 0 {
            let out = incident(&args).output().unwrap();
            assert!(out.status.success(), "{}: {}", crash.at(&kill), text(&out));
            let again = keys(&repo.store).await;
            assert_eq!(again.len(), now.len() + 1, "{}", crash.at(&kill));
            events = again;
        } else {
            events = now;
        }
        let listing = journal.list().await.unwrap();
        assert!(listing.damaged().is_empty(), "{}", crash.at(&kill));
        crash.record(&kill, wrote);
    }
    crash.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_file_backups() {
    let repo = Repo::new().await;
    let tree = repo.dir.path().join("etc-cryptofunk");
    for d in 0..8 {
        let dir = tree.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..60 {
            let body: Vec<u8> = (0..16_384u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> (d + f % 7)) as u8)
                .collect();
            std::fs::write(dir.join(format!("f{f}.conf")), body).unwrap();
        }
    }
    let mut crash = Crash::new("cfdr-backup files");
    let backup = || {
        let mut c = cfdr("cfdr-backup");
        c.args(["-r", &repo.url, "files", "--class", "config", "--path"])
            .arg(&tree);
        c
    };
    crash.calibrate_median(3, backup);
    let mut ledger = Ledger::default();
    assert_eq!(
        ledger.check(&repo.repo, &mut crash, &calibration()).await,
        3
    );
    backup_trials(&mut crash, &repo, &mut ledger, backup).await;
    // The first archive still restores, identical to the folder.
    let first = ledger.complete.keys().next().unwrap().clone();
    let into = repo.dir.path().join("restored");
    ok(
        cfdr("cfdr-restore")
            .args(["-r", &repo.url, "files", &first, "--into"])
            .arg(&into)
            .output()
            .unwrap(),
        "restoring the first archive",
    );
    let back = into.join(tree.strip_prefix("/").unwrap());
    for d in 0..8 {
        for f in 0..60 {
            let name = format!("d{d}/f{f}.conf");
            assert!(
                std::fs::read(back.join(&name)).unwrap()
                    == std::fs::read(tree.join(&name)).unwrap(),
                "{name} restored differently"
            );
        }
    }
    let reclaimed = repo.reclaim().await;
    println!("crash cfdr-backup files: prune reclaimed {reclaimed} unfinished backups");
    crash.finish();
}

/// A synthetic backup of `objects` 128 KiB objects in `repo`.
async fn synthetic_backup(repo: &Repository, objects: usize, seed: u8) {
    let mut w = repo.begin_backup("logical", Some("hourly")).unwrap();
    for i in 0..objects {
        let body: Vec<u8> = (0..128 * 1024u32)
            .map(|b| (b as u8) ^ seed ^ (i as u8))
            .collect();
        w.put_raw(&format!("part-{i:03}.bin"), body).await.unwrap();
    }
    w.commit(Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_copies() {
    let primary = Repo::new().await;
    let secondary = work_dir();
    let secondary_url = format!("file://{}/copy", secondary.path().display());
    let config = primary.dir.path().join("cfdr.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {:?}\n\n[[copy]]\nname = 'dr'\nurl = {:?}\n",
            primary.url, secondary_url
        ),
    )
    .unwrap();
    let copy = || {
        let mut c = cfdr("cfdr-copy");
        c.arg("--config")
            .arg(&config)
            .args(["--lock-ttl", "1", "--wait", "30", "--json"]);
        c
    };
    synthetic_backup(&primary.repo, 12, 0).await;
    let mut crash = Crash::new("cfdr-copy");
    crash.calibrate(&mut copy());
    let store = StorageOptions::from_url(secondary_url.clone())
        .build()
        .unwrap();
    let copied = Repository::open(store.clone()).await.unwrap();
    let mut ledger = Ledger::default();
    assert_eq!(ledger.check(&copied, &mut crash, &calibration()).await, 1);
    for trial in crash.trials() {
        synthetic_backup(&primary.repo, 12, trial as u8 + 1).await;
        let before = keys(&store).await;
        let kill = crash.kill(trial, &mut copy());
        let wrote = keys(&store).await != before;
        ledger.check(&copied, &mut crash, &kill).await;
        let out = copy().output().unwrap();
        assert!(
            out.status.success(),
            "{}: the copy after the kill failed: {}",
            crash.at(&kill),
            text(&out)
        );
        ledger.check(&copied, &mut crash, &kill).await;
        let want: BTreeSet<String> = primary
            .repo
            .backup_ids()
            .await
            .unwrap()
            .iter()
            .map(|i| i.to_string())
            .collect();
        let have: BTreeSet<String> = ledger.complete.keys().cloned().collect();
        assert_eq!(have, want, "{}: the copy is not whole", crash.at(&kill));
        crash.record(&kill, wrote);
    }
    crash.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_prunes() {
    use cfdr_testing::history::{HistorySpec, write_history};
    let policy = "[retention.classes.database]\nkeep-last = 10\n";
    let fixture = || async {
        let repo = Repo::new().await;
        let history = write_history(&repo.store, &HistorySpec::new(60, 400))
            .await
            .unwrap();
        let config = repo.dir.path().join("cfdr.toml");
        std::fs::write(&config, policy).unwrap();
        (repo, config, history.at.to_string())
    };
    let prune = |repo: &Repo, config: &Path, at: &str, extra: &[&str]| {
        let mut c = cfdr("cfdr-prune");
        c.args(["-r", &repo.url, "--lock-ttl", "1", "--at", at])
            .arg("--config")
            .arg(config)
            .args(extra);
        c
    };
    let mut crash = Crash::new("cfdr-prune");
    {
        let (repo, config, at) = fixture().await;
        crash.calibrate(&mut prune(&repo, &config, &at, &["--quiet"]));
    }
    for trial in crash.trials() {
        let (repo, config, at) = fixture().await;
        let plan = ok(
            prune(&repo, &config, &at, &["--dry-run", "--json"])
                .output()
                .unwrap(),
            "dry run",
        );
        let report: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        let gone: BTreeSet<String> = ["manifests", "objects", "wal", "leftovers"]
            .iter()
            .flat_map(|k| report["deletions"][k].as_array().unwrap().iter())
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        let before = repo.keys().await;
        let expected: BTreeSet<String> = before.difference(&gone).cloned().collect();
        let mut ledger = Ledger::default();
        // The backups the plan keeps are the complete ones that must stay.
        for m in repo.repo.backups().await.unwrap() {
            if !gone.contains(&m.id.manifest_key()) {
                ledger.complete.insert(m.id.to_string(), m);
            }
        }
        let kill = crash.kill(trial, &mut prune(&repo, &config, &at, &["--quiet"]));
        let wrote = repo.keys().await != before;
        // Listed backups verify (a half-deleted one is not listed); kept ones
        // are all there.
        for m in repo.repo.backups().await.unwrap() {
            let report = repo.repo.verify(&m).await.unwrap();
            let id = m.id.to_string();
            if ledger.complete.contains_key(&id) {
                if !report.is_ok() {
                    crash.lost(&kill, format!("kept backup {id} damaged"));
                }
            } else {
                assert!(report.is_ok(), "{}: {id} listed, damaged", crash.at(&kill));
            }
        }
        let out = prune(&repo, &config, &at, &["--quiet", "--wait", "30"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", crash.at(&kill), text(&out));
        let after = repo.keys().await;
        for k in expected.difference(&after) {
            crash.lost(&kill, format!("{k} was to be kept but is gone"));
        }
        assert!(
            after.is_subset(&expected),
            "{}: the run after the kill left {:?}",
            crash.at(&kill),
            after.difference(&expected).collect::<Vec<_>>()
        );
        ledger.check(&repo.repo, &mut crash, &kill).await;
        crash.record(&kill, wrote);
    }
    crash.finish();
}

/// The 16 MiB segment holding the byte before `lsn`, and that byte's offset
/// + 1 in it.
fn segment_before(timeline: u32, lsn: u64) -> (String, usize) {
    const SEGMENT: u64 = 16 * 1024 * 1024;
    let last = lsn - 1;
    let seg = last / SEGMENT;
    (
        format!("{timeline:08X}{:08X}{:08X}", seg >> 8, seg & 0xFF),
        (last % SEGMENT + 1) as usize,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_wal_streams() {
    use cfdr_wal_archive::chunks::StreamState;
    let Some(a) = Archiving::new("killed_wal_streams", "%p").await else {
        return;
    };
    a.sql("ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'")
        .await;
    a.sql("SELECT pg_reload_conf()::text").await;
    let mut text_conf = std::fs::read_to_string(&a.config).unwrap();
    text_conf.push_str(&format!(
        "[stream]\nspool-dir = {:?}\n",
        a.repo.dir.path().join("stream").display().to_string()
    ));
    std::fs::write(&a.config, text_conf).unwrap();
    let url = a.cluster.url("postgres");
    let stream = || {
        let mut c = cfdr("cfdr-wal");
        c.arg("--config")
            .arg(&a.config)
            .arg("stream")
            .env("DATABASE_URL", &url);
        // As the archive_command's user: both write the same WAL folders.
        if let Some((uid, gid)) = cfdr_pg::server_user().unwrap() {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(gid);
        }
        c
    };
    let current = || async {
        // Flushed WAL: a record written but not flushed (a partial page of
        // background records) waits for the next commit to be streamed.
        a.sql("SELECT pg_current_wal_flush_lsn()::text")
            .await
            .unwrap()
            .parse::<cfdr_retention::Lsn>()
            .unwrap()
    };
    let safe = || async {
        StreamState::read(&a.wal)
            .await
            .unwrap()
            .map(|s| (s.timeline, s.safe_lsn))
    };
    // Runs the stream until everything written so far is safe, then stops
    // it (SIGTERM); returns how long that took.
    let run_until_safe = || async {
        let start = Instant::now();
        let log = a.repo.dir.path().join("stream.log");
        let child = std::sync::Mutex::new(
            stream()
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        // WAL written after the start: this stream itself must ship it.
        a.sql("INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 200) g")
            .await;
        let target = current().await;
        cfdr_testing::eventually(
            "the stream's safe position",
            cfdr_testing::PATIENCE,
            || async {
                if let Some(status) = child.lock().unwrap().try_wait().unwrap() {
                    panic!(
                        "the stream ended with {status}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                match safe().await {
                    // The safe position is the end of the last record; the
                    // flush position is that end rounded up to 8 bytes.
                    Some((_, lsn)) if lsn.0 + 7 >= target.0 => Ok(()),
                    other => Err(format!("{other:?}, waiting for {target}")),
                }
            },
        )
        .await;
        let took = start.elapsed();
        let mut child = child.into_inner().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "the stream stopped with {status}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        took
    };
    let stream_dir = a.repo.dir.path().join("stream").display().to_string();
    let mut orphans = 0;
    let mut crash = Crash::new("cfdr-wal stream");
    let clean = run_until_safe().await;
    crash.set_clean(clean);
    let tmp = tempfile::tempdir().unwrap();
    for trial in crash.trials() {
        // A steady trickle of commits while the stream starts and is killed.
        let target = a.cluster.target("postgres");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let load = tokio::spawn(async move {
            let mut conn = target.connect().await.unwrap();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                sqlx::query("INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 50) g")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let before = safe().await;
        let disk = a.repo.disk();
        let kill = crash.kill(trial, &mut stream());
        // A killed stream leaves its pg_receivewal running, holding the
        // replication slot; the next stream on the spool stops it (below).
        std::thread::sleep(Duration::from_millis(100));
        orphans += find_processes("pg_receivewal", &[&stream_dir]).len();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        load.await.unwrap();
        let after = safe().await;
        let wrote = after != before || a.repo.disk() != disk;
        // Every byte before the safe position is in the repository and
        // identical to pg_wal.
        if let Some((timeline, lsn)) = after {
            if after < before {
                crash.lost(
                    &kill,
                    format!("safe position went back: {before:?} -> {after:?}"),
                );
            }
            let (segment, upto) = segment_before(timeline, lsn.0);
            let dest = tmp.path().join(&segment);
            let _ = std::fs::remove_file(&dest);
            let got = a.wal.fetch(&segment, &dest, &Default::default()).await;
            let original = std::fs::read(a.cluster.data_dir.join("pg_wal").join(&segment)).unwrap();
            match got {
                Ok(cfdr_wal_archive::Fetched::Restored { .. }) => {
                    let fetched = std::fs::read(&dest).unwrap();
                    if fetched.get(..upto) != original.get(..upto) {
                        crash.lost(
                            &kill,
                            format!("{segment} up to the safe position {lsn} differs from pg_wal"),
                        );
                    }
                }
                other => crash.lost(
                    &kill,
                    format!("{segment} (safe up to {lsn}) fetches as {other:?}"),
                ),
            }
        }
        // Started again, it stops what the killed one left and catches up;
        // stopped, it leaves no receiver behind.
        run_until_safe().await;
        let left = find_processes("pg_receivewal", &[&stream_dir]);
        if !left.is_empty() {
            crash.lost(
                &kill,
                format!("pg_receivewal {left:?} still writes the spool after a restart and stop"),
            );
            for pid in left {
                sigkill(pid);
            }
        }
        crash.record(&kill, wrote);
    }
    let last = a.switch().await;
    a.wait_archived(&last).await;
    a.check_archived(&mut crash, &calibration(), &[]).await;
    println!(
        "crash cfdr-wal stream: {orphans} kills left pg_receivewal running; the restarted stream stopped each"
    );
    crash.finish();
}
