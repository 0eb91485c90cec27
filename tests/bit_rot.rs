//! Bit rot: every kind of object cfdr stores, damaged on disk the two ways
//! storage rots (one byte changed, the end cut off), each in its own copy
//! of a folder repository. For each damaged copy:
//!
//! - `cfdr-repo verify` names the damaged key and exits non-zero;
//! - the command that restores that object refuses before applying
//!   anything: no target database, an empty data directory or restore
//!   folder, no secret on stdout, no WAL file handed to PostgreSQL;
//! - `cfdr-wal fetch` of a damaged segment or stream chunk exits 128, which
//!   stops recovery, never 1 ("not found", which ends it as if the WAL
//!   were complete).
//!
//! The damage is seeded: the seed is printed, `CFDR_TEST_SEED` repeats it.
//! A flip XORs one byte with a random mask whose high bit is set, so that
//! in a JSON document the byte is never a valid character (a JSON document
//! carries no checksum of itself: a change that leaves it valid JSON, a
//! digit of a time, is beyond any reader; see docs). A cut keeps a random
//! length at least two bytes short (a JSON document that lost only its
//! final newline is whole). Short form: one flip and one cut per kind;
//! `CFDR_TEST_LONG=1`: eight of each. Each test prints one line of
//! figures per kind, `reliability: bit-rot <kind> flipped=.. truncated=..
//! detected=.. applied=..`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cfdr_pg::LocalCluster;
use cfdr_pg::physical::{self, PhysicalOptions};
use cfdr_storage::{CheckKind, CheckRecord, Repository, StorageOptions};
use cfdr_testing::bins::workspace_bin;
use cfdr_testing::output_text as text;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The two kinds of damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    Flip,
    Truncate,
}

/// The seed of this test's damage, printed so a failure can be repeated.
fn rng(test: &str) -> StdRng {
    let seed = std::env::var("CFDR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed} (CFDR_TEST_SEED={seed} repeats this run)");
    StdRng::seed_from_u64(seed)
}

/// Trials per kind of damage: one in the short form, eight in the long.
fn trials() -> usize {
    if cfdr_testing::long_tests() { 8 } else { 1 }
}

/// Damages the file at `path`; returns what was done, for messages.
fn damage(path: &Path, how: Damage, rng: &mut StdRng) -> String {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() >= 2,
        "{} is too small to damage",
        path.display()
    );
    match how {
        Damage::Flip => {
            let at = rng.random_range(0..bytes.len());
            let mask = 0x80 | rng.random_range(0..0x80u8);
            bytes[at] ^= mask;
            std::fs::write(path, &bytes).unwrap();
            format!("byte {at} of {} XOR 0x{mask:02x}", bytes.len())
        }
        Damage::Truncate => {
            let keep = rng.random_range(0..bytes.len() - 1);
            std::fs::write(path, &bytes[..keep]).unwrap();
            format!("cut to {keep} of {} bytes", bytes.len())
        }
    }
}

/// A folder repository and the damaged copies made of it.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        Repo { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn url(&self) -> String {
        format!("file://{}", self.root().display())
    }

    async fn init(&self) -> Repository {
        Repository::init(StorageOptions::from_url(self.url()).build().unwrap())
            .await
            .unwrap()
    }

    /// Keys under `prefix` (folder-relative paths), sorted.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.root()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let key = path.strip_prefix(self.root()).unwrap();
                    let key = key.to_string_lossy().into_owned();
                    if key.starts_with(prefix) {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// A copy of the repository with `key` damaged.
    fn damaged_copy(&self, n: usize, key: &str, how: Damage, rng: &mut StdRng) -> Copy {
        let dir = self.dir.path().join(format!("copy-{n}"));
        let ok = Command::new("cp")
            .arg("-a")
            .arg(self.root())
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "copying the repository");
        let what = damage(&dir.join(key), how, rng);
        Copy {
            url: format!("file://{}", dir.display()),
            dir,
            key: key.to_owned(),
            what,
        }
    }
}

/// One damaged copy of a repository.
struct Copy {
    dir: PathBuf,
    url: String,
    key: String,
    what: String,
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A workspace binary with the repository `url` and nothing from the
/// environment that could point elsewhere.
fn cfdr(bin: &str, url: &str) -> Command {
    let mut c = Command::new(workspace_bin(bin));
    c.arg("-r").arg(url);
    for var in [
        "CFDR_CONFIG",
        "CFDR_REPOSITORY",
        "CFDR_AGE_IDENTITY_FILE",
        "CFDR_AGE_RECIPIENTS",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

/// `cfdr-repo verify ARGS` on the copy: non-zero, naming the damaged key.
fn verify_names_the_key(copy: &Copy, args: &[&str]) -> Result<(), String> {
    let out = run(cfdr("cfdr-repo", &copy.url).arg("verify").args(args));
    let said = text(&out);
    if out.status.success() {
        return Err(format!("cfdr-repo verify passed:\n{said}"));
    }
    if !said.contains(&copy.key) {
        return Err(format!(
            "cfdr-repo verify does not name {}:\n{said}",
            copy.key
        ));
    }
    Ok(())
}

/// Tallies the trials of one kind and prints its figures line.
struct Tally {
    kind: &'static str,
    flipped: usize,
    truncated: usize,
    detected: usize,
    applied: usize,
    failures: Vec<String>,
}

impl Tally {
    fn new(kind: &'static str) -> Self {
        Tally {
            kind,
            flipped: 0,
            truncated: 0,
            detected: 0,
            applied: 0,
            failures: Vec::new(),
        }
    }

    /// Records one trial: `checks` are (what, outcome) of its checks;
    /// `applied` whether anything of the damaged object was applied.
    fn record(&mut self, copy: &Copy, how: Damage, applied: bool, checks: Vec<Result<(), String>>) {
        match how {
            Damage::Flip => self.flipped += 1,
            Damage::Truncate => self.truncated += 1,
        }
        self.applied += usize::from(applied);
        let failed: Vec<String> = checks.into_iter().filter_map(Result::err).collect();
        if failed.is_empty() && !applied {
            self.detected += 1;
        }
        for f in failed {
            self.failures
                .push(format!("{} {} ({}): {f}", self.kind, copy.key, copy.what));
        }
    }

    fn finish(self) -> Vec<String> {
        eprintln!(
            "reliability: bit-rot {} flipped={} truncated={} detected={} applied={}",
            self.kind, self.flipped, self.truncated, self.detected, self.applied
        );
        self.failures
    }
}

/// Runs `trial` on `trials()` flipped and as many truncated copies of
/// `repo`, each damaging a key chosen by `pick` among `keys`.
fn each_damage(
    tally: &mut Tally,
    repo: &Repo,
    keys: &[String],
    rng: &mut StdRng,
    counter: &mut usize,
    mut trial: impl FnMut(&Copy, usize) -> (bool, Vec<Result<(), String>>),
) {
    assert!(!keys.is_empty(), "no {} object to damage", tally.kind);
    for how in [Damage::Flip, Damage::Truncate] {
        for _ in 0..trials() {
            *counter += 1;
            let key = &keys[rng.random_range(0..keys.len())];
            let copy = repo.damaged_copy(*counter, key, how, rng);
            let (applied, checks) = trial(&copy, *counter);
            tally.record(&copy, how, applied, checks);
        }
    }
}

fn assert_no_failures(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} damaged object(s) not handled:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A non-zero exit, or the failure to report.
fn refused(what: &str, out: &Output) -> Result<(), String> {
    if out.status.success() {
        Err(format!("{what} succeeded on damaged input:\n{}", text(out)))
    } else {
        Ok(())
    }
}

/// Whether database `name` exists on `cluster`.
async fn database_exists(cluster: &LocalCluster, name: &str) -> bool {
    cfdr_pg::admin::database_exists(&cluster.target("postgres"), name)
        .await
        .unwrap()
}

/// Regular files under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn psql(cluster: &LocalCluster, db: &str, sql: &str) -> String {
    let out = Command::new(cluster.bin().path("psql"))
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(cluster.url(db))
        .arg("-c")
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A logical backup with a restore-test record: the dump, its manifest,
/// the repository descriptor and the check record, each damaged in turn;
/// `cfdr-restore logical` must create no database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_rot_logical_backup_manifest_descriptor_and_check_record() {
    let test = "bit_rot_logical_backup_manifest_descriptor_and_check_record";
    let mut rng = rng(test);
    let cluster = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 10, 500).await {
        Ok(c) => c,
        Err(e) => {
            let _: Option<()> = cfdr_testing::missing(&format!("PostgreSQL 15 ({e})"), test);
            return;
        }
    };
    let repo = Repo::new();
    let r = repo.init().await;
    let m = cfdr_pg::logical::backup(
        &r,
        &cluster.target("cryptofunk"),
        "daily",
        &Default::default(),
        &Default::default(),
    )
    .await
    .unwrap();
    // The record cfdr-verify writes after a passed restore test.
    r.record_check(&CheckRecord {
        backup: m.id.clone(),
        kind: CheckKind::RestoreTest,
        time: jiff::Timestamp::now(),
        passed: true,
        summary: "restored and compared".into(),
    })
    .await
    .unwrap();
    let id = m.id.to_string();
    let dump_keys: Vec<String> = m.objects.iter().map(|o| o.key.clone()).collect();
    let checks = repo.keys(&format!("{}checks/", m.id.prefix()));
    assert_eq!(checks.len(), 1, "{checks:?}");

    let mut failures = Vec::new();
    let mut n = 0;
    // The restore of a damaged copy: refused, and no target database.
    let restore = |copy: &Copy, n: usize| {
        let db = format!("bitrot_{n}");
        let out = run(cfdr("cfdr-restore", &copy.url)
            .args(["logical", &id, "--target-db", &db])
            .env("DATABASE_URL", cluster.url("cryptofunk")));
        (db, out)
    };
    for (kind, keys) in [
        ("logical dump", dump_keys.clone()),
        ("manifest", vec![m.id.manifest_key()]),
        ("cfdr.json", vec![cfdr_storage::CONFIG_KEY.to_owned()]),
    ] {
        let mut tally = Tally::new(kind);
        let mut trials = Vec::new();
        each_damage(&mut tally, &repo, &keys, &mut rng, &mut n, |copy, n| {
            let (db, out) = restore(copy, n);
            trials.push((db.clone(), text(&out)));
            let verify_args: &[&str] = if kind == "cfdr.json" {
                &["--all"]
            } else {
                &[id.as_str()]
            };
            let checks = vec![
                verify_names_the_key(copy, verify_args),
                refused("cfdr-restore logical", &out),
            ];
            (false, checks)
        });
        // Whether a database was created is asked afterwards (async).
        for (db, said) in trials {
            if database_exists(&cluster, &db).await {
                tally.applied += 1;
                tally.detected = tally.detected.saturating_sub(1);
                tally
                    .failures
                    .push(format!("{kind}: database {db} was created:\n{said}"));
            }
        }
        failures.extend(tally.finish());
    }

    // The check record: nothing restores it, verification reads it.
    let mut tally = Tally::new("check record");
    each_damage(&mut tally, &repo, &checks, &mut rng, &mut n, |copy, _| {
        (false, vec![verify_names_the_key(copy, &[id.as_str()])])
    });
    failures.extend(tally.finish());
    assert_no_failures(failures);
}

/// `cfdr-wal fetch NAME` in an empty folder: exit 128, nothing written.
fn fetch_fails_loudly(copy: &Copy, name: &str) -> Vec<Result<(), String>> {
    let work = tempfile::tempdir().unwrap();
    let out = run(cfdr("cfdr-wal", &copy.url).current_dir(work.path()).args([
        "fetch",
        name,
        "RECOVERYXLOG",
    ]));
    let code = if out.status.code() == Some(128) {
        Ok(())
    } else {
        Err(format!(
            "cfdr-wal fetch {name} exited {:?}, not 128 (1 would end recovery as if the WAL were complete):\n{}",
            out.status.code(),
            text(&out)
        ))
    };
    let left = files_under(work.path());
    let written = if left.is_empty() {
        Ok(())
    } else {
        Err(format!("cfdr-wal fetch left {left:?}"))
    };
    vec![code, written]
}

/// The WAL file name of a WAL object key.
fn wal_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap()
}

/// A cluster archiving with `cfdr-wal push` into `repo`, with a physical
/// base backup and WAL after it; then `cfdr-wal stream` ships chunks of
/// the segment in progress. Damaged: the base backup (`cfdr-restore pitr`
/// leaves the data directory empty), a WAL segment and a stream chunk
/// (`cfdr-wal fetch` exits 128).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_rot_base_backup_wal_segment_and_stream_chunk() {
    let test = "bit_rot_base_backup_wal_segment_and_stream_chunk";
    let mut rng = rng(test);
    let Some(bin) = cfdr_testing::pg::pg_bin(test).await else {
        return;
    };
    let repo = Repo::new();
    let r = repo.init().await;
    cfdr_testing::pg::give_to_postgres(repo.dir.path());
    let wal = workspace_bin("cfdr-wal");
    let mut cluster = LocalCluster::init_temp(&bin).await.unwrap();
    let conf = cluster.data_dir.join("postgresql.conf");
    let mut settings = std::fs::read_to_string(&conf).unwrap();
    settings.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{} -r {} push %p'\nwal_keep_size = '1GB'\nmax_slot_wal_keep_size = '1GB'\n",
        wal.display(),
        repo.url()
    ));
    std::fs::write(&conf, settings).unwrap();
    cluster.start(&[]).await.unwrap();
    psql(
        &cluster,
        "postgres",
        "CREATE TABLE trades (id int PRIMARY KEY, v text); INSERT INTO trades SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
    );
    physical::backup(
        &r,
        &cluster.target("postgres"),
        "daily",
        &PhysicalOptions::default(),
        &Default::default(),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        psql(
            &cluster,
            "postgres",
            "INSERT INTO trades SELECT g, md5(g::text) FROM generate_series(100001, 103000) g ON CONFLICT DO NOTHING; SELECT pg_switch_wal()",
        );
    }
    let last = psql(
        &cluster,
        "postgres",
        "SELECT pg_walfile_name(pg_switch_wal())",
    );
    cfdr_testing::eventually(
        &format!("{last} archived"),
        cfdr_testing::PATIENCE,
        || async {
            let archived = psql(
                &cluster,
                "postgres",
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            );
            if archived.as_str() >= last.as_str() {
                Ok(())
            } else {
                Err(format!("last archived {archived:?}"))
            }
        },
    )
    .await;
    // The cluster keeps running: a shutdown completes and archives the
    // segment in progress, whose chunks would then not be read.
    let chunked = stream_chunks(&repo, &cluster).await;

    let mut failures = Vec::new();
    let mut n = 0;

    // The base backup: pitr refuses and leaves the data directory empty.
    let bases: Vec<String> = repo
        .keys("backups/")
        .into_iter()
        .filter(|k| k.contains("/base.tar"))
        .collect();
    let mut tally = Tally::new("base backup");
    each_damage(&mut tally, &repo, &bases, &mut rng, &mut n, |copy, n| {
        let data_dir = copy.dir.with_extension(format!("pitr-{n}"));
        let out = run(cfdr("cfdr-restore", &copy.url).args([
            "pitr",
            "--latest",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ]));
        let left = files_under(&data_dir);
        let _ = std::fs::remove_dir_all(&data_dir);
        let applied = !left.is_empty();
        let mut checks = vec![
            verify_names_the_key(copy, &["--all"]),
            refused("cfdr-restore pitr", &out),
        ];
        if applied {
            checks.push(Err(format!(
                "{} files left in the data directory, e.g. {:?}",
                left.len(),
                left.first()
            )));
        }
        (applied, checks)
    });
    failures.extend(tally.finish());

    // WAL segments: fetch fails with 128, nothing written.
    let segments: Vec<String> = repo
        .keys("wal/")
        .into_iter()
        .filter(|k| wal_name(k).len() == 24)
        .collect();
    let mut tally = Tally::new("WAL segment");
    each_damage(&mut tally, &repo, &segments, &mut rng, &mut n, |copy, _| {
        let mut checks = fetch_fails_loudly(copy, wal_name(&copy.key));
        checks.push(verify_names_the_key(copy, &["--all"]));
        let applied = checks
            .iter()
            .any(|c| c.as_ref().is_err_and(|e| e.contains("left")));
        (applied, checks)
    });
    failures.extend(tally.finish());

    // Stream chunks of the segment in progress: fetch assembles the
    // segment from them, and fails with 128 on a damaged one.
    let (segment, chunk_keys) = chunked;
    let whole = repo.keys(&cfdr_storage::wal_archive::wal_key(&segment));
    assert!(whole.is_empty(), "{segment} is archived whole: {whole:?}");
    let mut tally = Tally::new("WAL stream chunk");
    each_damage(
        &mut tally,
        &repo,
        &chunk_keys,
        &mut rng,
        &mut n,
        |copy, _| {
            let mut checks = fetch_fails_loudly(copy, &segment);
            checks.push(verify_names_the_key(copy, &["--all"]));
            let applied = checks
                .iter()
                .any(|c| c.as_ref().is_err_and(|e| e.contains("left")));
            (applied, checks)
        },
    );
    failures.extend(tally.finish());
    assert_no_failures(failures);
}

/// Runs `cfdr-wal stream` while rows are written until the segment in
/// progress has at least three chunks in the repository, then stops it;
/// returns that segment and its chunk keys.
async fn stream_chunks(repo: &Repo, cluster: &LocalCluster) -> (String, Vec<String>) {
    let work = repo.dir.path().join("stream");
    std::fs::create_dir_all(&work).unwrap();
    let config = repo.dir.path().join("cfdr.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {:?}\n[stream]\nspool-dir = {:?}\nupload-bytes = 8192\ninterval-ms = 200\n",
            repo.url(),
            work.display().to_string()
        ),
    )
    .unwrap();
    cfdr_testing::pg::give_to_postgres(repo.dir.path());
    let log = repo.dir.path().join("stream.log");
    let mut child = Command::new(workspace_bin("cfdr-wal"))
        .arg("--config")
        .arg(&config)
        .args(["stream", "--allow-unbounded-slot"])
        .env("DATABASE_URL", cluster.url("postgres"))
        .env_remove("CFDR_REPOSITORY")
        .env_remove("CFDR_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let found = cfdr_testing::eventually(
        "three chunks of the segment in progress",
        cfdr_testing::PATIENCE,
        || async {
            psql(
                cluster,
                "postgres",
                "INSERT INTO trades SELECT g, md5(g::text) FROM generate_series((SELECT max(id) + 1 FROM trades), (SELECT max(id) + 200 FROM trades)) g",
            );
            let segment = psql(
                cluster,
                "postgres",
                "SELECT pg_walfile_name(pg_current_wal_lsn())",
            );
            let prefix = cfdr_wal_archive::chunks::segment_prefix(&segment);
            let keys = repo.keys(&prefix);
            if keys.len() >= 3 {
                Ok((segment, keys))
            } else {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err(format!(
                    "{} chunks of {segment}; stream log:\n{}",
                    keys.len(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            }
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    // The stream may have uploaded more chunks while it was stopped.
    let keys = repo.keys(&cfdr_wal_archive::chunks::segment_prefix(&found.0));
    assert!(
        repo.keys(&cfdr_storage::wal_archive::wal_key(&found.0))
            .is_empty(),
        "{} is stored whole: the chunks would not be read",
        found.0
    );
    (found.0, keys)
}

/// Objects written without PostgreSQL: a file archive (`cfdr-restore
/// files` writes nothing into the folder), a secret bundle (`cfdr-secrets
/// restore` prints no secret) and an incident's events (`cfdr-incident
/// show` and `report` name the damaged event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_rot_file_archive_secret_bundle_and_incident_event() {
    let test = "bit_rot_file_archive_secret_bundle_and_incident_event";
    let mut rng = rng(test);
    let repo = Repo::new();
    let r = repo.init().await;
    let mut failures = Vec::new();
    let mut n = 0;

    // A file archive of 40 files of 100 KB that do not compress (4 MB
    // stored, past the decoder's buffers): damage anywhere must not leave
    // the files before it restored.
    let src = repo.dir.path().join("records");
    std::fs::create_dir_all(src.join("2026")).unwrap();
    for i in 0..40 {
        let body: Vec<u8> = (0..100_000).map(|_| rng.random::<u8>()).collect();
        std::fs::write(src.join("2026").join(format!("{i:02}.bin")), body).unwrap();
    }
    let req = cfdr_files::BackupRequest::new(cfdr_files::FileClass::Records, vec![src.clone()]);
    let archive = cfdr_files::backup(&r, &req, &Default::default())
        .await
        .unwrap();
    let id = archive.manifest.id.to_string();
    let keys: Vec<String> = archive
        .manifest
        .objects
        .iter()
        .map(|o| o.key.clone())
        .collect();
    let mut tally = Tally::new("file archive");
    each_damage(&mut tally, &repo, &keys, &mut rng, &mut n, |copy, n| {
        let into = copy.dir.with_extension(format!("files-{n}"));
        let out = run(cfdr("cfdr-restore", &copy.url).args([
            "files",
            &id,
            "--into",
            into.to_str().unwrap(),
        ]));
        let left = files_under(&into);
        let _ = std::fs::remove_dir_all(&into);
        let applied = !left.is_empty();
        let mut checks = vec![
            verify_names_the_key(copy, &[id.as_str()]),
            refused("cfdr-restore files", &out),
        ];
        if applied {
            checks.push(Err(format!(
                "{} files written before the damage was found, e.g. {:?}",
                left.len(),
                left.first()
            )));
        }
        (applied, checks)
    });
    failures.extend(tally.finish());

    // A secret bundle: its age object and its manifest.
    let key_file = repo.dir.path().join("age.key");
    let out = run(Command::new(workspace_bin("cfdr-secrets"))
        .args(["keygen", "-o"])
        .arg(&key_file));
    assert!(out.status.success(), "{}", text(&out));
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let env_file = repo.dir.path().join("app.env");
    std::fs::write(
        &env_file,
        "EXCHANGE_API_KEY=bitrot-secret-value-1\nDB_PASSWORD=bitrot-secret-value-2\n",
    )
    .unwrap();
    let secrets = |url: &str| {
        let mut c = cfdr("cfdr-secrets", url);
        c.env("CFDR_AGE_IDENTITY_FILE", &key_file)
            .env("CFDR_AGE_RECIPIENTS", &recipient)
            .args(["-b", "cryptofunk"]);
        c
    };
    let out = run(secrets(&repo.url())
        .args(["backup", "--from"])
        .arg(format!("env:{}", env_file.display())));
    assert!(out.status.success(), "{}", text(&out));
    let bundle_keys = repo.keys("secrets/cryptofunk/");
    assert_eq!(bundle_keys.len(), 2, "{bundle_keys:?}");
    let mut tally = Tally::new("secret bundle");
    each_damage(
        &mut tally,
        &repo,
        &bundle_keys,
        &mut rng,
        &mut n,
        |copy, _| {
            let out = run(secrets(&copy.url).args(["restore", "latest", "--to", "env"]));
            let leaked = String::from_utf8_lossy(&out.stdout).contains("bitrot-secret-value");
            let mut checks = vec![
                verify_names_the_key(copy, &["--all"]),
                refused("cfdr-secrets restore", &out),
            ];
            if !out.stdout.is_empty() {
                checks.push(Err(format!(
                    "cfdr-secrets restore wrote {} bytes to stdout",
                    out.stdout.len()
                )));
            }
            (leaked, checks)
        },
    );
    failures.extend(tally.finish());

    // An incident with three events.
    let incident = |url: &str| {
        let mut c = cfdr("cfdr-incident", url);
        c.args(["--author", "bit-rot test"]);
        c
    };
    let out = run(incident(&repo.url()).args(["open", "--severity", "P2", "Replica lag"]));
    assert!(out.status.success(), "{}", text(&out));
    let events = repo.keys("incidents/");
    let inc = events[0].split('/').nth(1).unwrap().to_owned();
    for args in [["ack", inc.as_str()], ["status", inc.as_str()]] {
        let mut c = incident(&repo.url());
        c.args(args);
        if args[0] == "status" {
            c.arg("Replica rebuilt, watching lag");
        }
        let out = run(&mut c);
        assert!(out.status.success(), "{}", text(&out));
    }
    let events = repo.keys("incidents/");
    assert_eq!(events.len(), 3, "{events:?}");
    let mut tally = Tally::new("incident event");
    each_damage(&mut tally, &repo, &events, &mut rng, &mut n, |copy, _| {
        let mut checks = vec![verify_names_the_key(copy, &["--all"])];
        for cmd in ["show", "report"] {
            let out = run(incident(&copy.url).args([cmd, &inc]));
            let said = text(&out);
            if !said.contains(&copy.key) {
                checks.push(Err(format!(
                    "cfdr-incident {cmd} does not name {}:\n{said}",
                    copy.key
                )));
            }
        }
        (false, checks)
    });
    failures.extend(tally.finish());
    assert_no_failures(failures);
}
