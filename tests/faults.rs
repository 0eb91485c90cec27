//! Reliability suite: storage faults.
//!
//! Every command that reads or writes the repository runs under a seeded
//! fault plan (`cfdr_testing::FaultLayer`: failures, stalls and truncations
//! on reads, writes, listings, stats and deletes at 5-30 %), and each run
//! must either succeed with correct data (compared with the source: restored
//! rows, fetched segment bytes, copied objects) or fail with an error that
//! names the cause. A run that reports success with wrong data, or leaves a
//! listed backup that does not restore, is a silent corruption: there must
//! be none. Then the disks: a folder repository on a tmpfs that fills in
//! the middle of `cfdr-backup logical`, and the async push spool on a full
//! tmpfs under a real archiving cluster.
//!
//! Short form by default; `CFDR_TEST_LONG=1` runs more rates and repeats.
//! `CFDR_TEST_SEED=<n>` repeats a run's fault plans. Each test prints one
//! `reliability: faults ...` figures line.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use cfdr_pg::LocalCluster;
use cfdr_pg::logical::{self, LogicalOptions, RestoreRequest};
use cfdr_storage::opendal::Operator;
use cfdr_storage::{EncodeOptions, Repository, StorageOptions, Store};
use cfdr_testing::pg::{content_fingerprint, cryptofunk_cluster, give_to_postgres, make_wal};
use cfdr_testing::{Backend, FaultLayer, FaultMode, FaultOp, TestLocation};
use cfdr_wal_archive::{FetchOptions, Fetched, PushOptions, WalArchive};
use futures::FutureExt;
use sqlx::Row;

const ALL_OPS: [FaultOp; 5] = [
    FaultOp::Read,
    FaultOp::Write,
    FaultOp::List,
    FaultOp::Stat,
    FaultOp::Delete,
];

/// The longest one run may take before it counts as a hang.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The seed of this test's fault plans: `CFDR_TEST_SEED`, else random.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("CFDR_TEST_SEED") {
        Ok(s) if !s.is_empty() => s
            .parse()
            .unwrap_or_else(|_| panic!("CFDR_TEST_SEED={s:?} is not a number")),
        _ => rand::random::<u64>() >> 12,
    };
    println!("reliability: faults {test} seed={seed} (CFDR_TEST_SEED={seed} repeats it)");
    seed
}

/// One run's fault plan: one mode at one rate on every operation kind,
/// each kind with its own layer so the figures count faults per kind.
#[derive(Clone, Copy, Debug)]
struct Plan {
    seed: u64,
    mode: FaultMode,
    rate: f64,
    /// Retries of temporary errors (0: the first fault fails the call).
    retries: usize,
}

impl Plan {
    /// A stall long enough for the 1 s timeouts such runs set.
    fn times_out(&self) -> bool {
        matches!(self.mode, FaultMode::Stall(d) if d >= Duration::from_secs(1))
    }
}

/// The runs of one workload: every mode at 5-30 %, half without retries.
/// The long form repeats them at more rates.
fn plans(seed: u64) -> Vec<Plan> {
    let long = cfdr_testing::long_tests();
    let rates: &[f64] = if long {
        &[0.05, 0.1, 0.15, 0.2, 0.3]
    } else {
        &[0.05, 0.15, 0.3]
    };
    let repeats: u32 = if long { 4 } else { 1 };
    let modes = [
        FaultMode::Fail,
        FaultMode::Stall(Duration::from_millis(100)),
        FaultMode::Truncate,
    ];
    let mut out = Vec::new();
    for rep in 0..repeats {
        for mode in modes {
            for &rate in rates {
                let n = out.len() as u64;
                out.push(Plan {
                    seed: seed.wrapping_mul(1_000_003).wrapping_add(n),
                    mode,
                    rate,
                    retries: if n.is_multiple_of(2) { 2 } else { 0 },
                });
            }
        }
        // Stalls past the timeout: the call times out (and is retried).
        let n = out.len() as u64;
        out.push(Plan {
            seed: seed.wrapping_mul(1_000_003).wrapping_add(n),
            mode: FaultMode::Stall(Duration::from_millis(1_500)),
            rate: if rep.is_multiple_of(2) { 0.05 } else { 0.15 },
            retries: 1,
        });
    }
    out
}

fn mode_name(mode: FaultMode) -> &'static str {
    match mode {
        FaultMode::Fail => "fail",
        FaultMode::Stall(d) if d >= Duration::from_secs(1) => "stall-timeout",
        FaultMode::Stall(_) => "stall",
        FaultMode::Truncate => "truncate",
    }
}

fn op_name(op: FaultOp) -> &'static str {
    match op {
        FaultOp::Read => "read",
        FaultOp::Write => "write",
        FaultOp::List => "list",
        FaultOp::Stat => "stat",
        FaultOp::Delete => "delete",
    }
}

/// The layers of one plan.
#[derive(Clone)]
struct Faults {
    plan: Plan,
    layers: Vec<(FaultOp, FaultLayer)>,
}

impl Faults {
    fn new(plan: Plan) -> Self {
        // Truncation only has a meaning for reads and writes: the layer
        // leaves the other kinds alone, so they are not counted as hit.
        let ops: Vec<FaultOp> = match plan.mode {
            FaultMode::Truncate => vec![FaultOp::Read, FaultOp::Write],
            _ => ALL_OPS.to_vec(),
        };
        let layers = ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                let seed = plan.seed.wrapping_mul(31).wrapping_add(i as u64);
                (op, FaultLayer::new(seed, plan.rate, plan.mode, &[op]))
            })
            .collect();
        Self { plan, layers }
    }

    fn apply(&self, mut op: Operator) -> Operator {
        for (_, layer) in &self.layers {
            op = op.layer(layer.clone());
        }
        op
    }

    /// A store at `options`' location that goes through these faults.
    fn store(&self, options: &StorageOptions) -> Store {
        let mut o = options.clone();
        o.retry.max_retries = self.plan.retries;
        o.retry.min_delay_ms = 1;
        o.retry.max_delay_ms = 5;
        if self.plan.times_out() {
            o.timeout.call_secs = 1;
            o.timeout.io_secs = 1;
        }
        let me = self.clone();
        o.build_with(move |op| me.apply(op)).unwrap()
    }

    /// Faults stop (the store is healthy again).
    fn stop(&self) {
        for (_, l) in &self.layers {
            l.set_rate(0.0);
        }
    }
}

/// How one run ended.
#[derive(Debug)]
enum Outcome {
    /// Succeeded, and the data is correct.
    Ok,
    /// Failed with an error that names the cause.
    CleanError(String),
    /// Failed, but the error does not say why (or left things behind).
    Unclear(String),
    /// Failed, and the error does not name the cause, for a reason known
    /// and documented (docs/reliability-faults.md): a read stream that
    /// times out after its last byte is resumed by opendal's retry at the
    /// object's end, which S3 answers with 416 (`RangeNotSatisfied`).
    KnownUnclear(String),
    /// Reported success with wrong data, or left a listed backup that does
    /// not restore: must never happen.
    Silent(String),
}

/// Whether an error message names an injected fault as its cause: the
/// failure itself, a timeout, or the damage a truncation does (a short
/// object, a checksum mismatch, a damaged WAL object, a JSON document that
/// ends early).
fn names_cause(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "injected",
        "timeout",
        "timed out",
        "corrupt",
        "damaged",
        "truncated",
        "bytes after the upload",
        "eof while parsing",
        // A lease not renewed in time (its renewal stalled): the command
        // stops before writing more.
        "was lost (not renewed",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

fn error_outcome(msg: String) -> Outcome {
    if names_cause(&msg) {
        Outcome::CleanError(msg)
    } else if msg.contains("RangeNotSatisfied") {
        Outcome::KnownUnclear(msg)
    } else {
        Outcome::Unclear(msg)
    }
}

/// The figures of one workload.
#[derive(Default)]
struct Tally {
    runs: u64,
    ok: u64,
    clean_errors: u64,
    unclear: Vec<String>,
    known_unclear: Vec<String>,
    silent: Vec<String>,
    injected: BTreeMap<(&'static str, &'static str), u64>,
    /// One example message per distinct first words, for the docs.
    examples: BTreeMap<String, String>,
}

impl Tally {
    fn add(&mut self, faults: &Faults, outcome: Outcome) {
        self.runs += 1;
        for (op, layer) in &faults.layers {
            *self
                .injected
                .entry((mode_name(faults.plan.mode), op_name(*op)))
                .or_default() += layer.injected();
        }
        let plan = faults.plan;
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::CleanError(msg) => {
                self.clean_errors += 1;
                let head: String = msg.chars().take(40).collect();
                self.examples.entry(head).or_insert(msg);
            }
            Outcome::Unclear(msg) => self.unclear.push(format!("{plan:?}: {msg}")),
            Outcome::KnownUnclear(msg) => self.known_unclear.push(format!("{plan:?}: {msg}")),
            Outcome::Silent(msg) => self.silent.push(format!("{plan:?}: {msg}")),
        }
    }

    fn total_injected(&self) -> u64 {
        self.injected.values().sum()
    }

    /// Prints the figures line, then fails on any unclear error or silent
    /// corruption.
    fn report(&self, what: &str) {
        println!(
            "reliability: faults {what} runs={} injected={} ok={} clean_errors={} unclear_errors={} known_unclear={} silent_corruptions={}",
            self.runs,
            self.total_injected(),
            self.ok,
            self.clean_errors,
            self.unclear.len(),
            self.known_unclear.len(),
            self.silent.len()
        );
        for msg in &self.known_unclear {
            println!("  {what} known unclear error: {msg}");
        }
        let by: Vec<String> = self
            .injected
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|((mode, op), n)| format!("{mode}/{op}={n}"))
            .collect();
        println!("  {what} injected by mode/op: {}", by.join(" "));
        for msg in self.examples.values() {
            println!("  {what} error: {msg}");
        }
        assert!(self.total_injected() > 0, "{what}: no fault was injected");
        assert!(
            self.silent.is_empty(),
            "{what}: silent corruption:\n{}",
            self.silent.join("\n")
        );
        assert!(
            self.unclear.is_empty(),
            "{what}: errors that do not name the cause:\n{}",
            self.unclear.join("\n")
        );
    }
}

/// Runs one faulty operation: a panic or a hang fails the test at once.
async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(RUN_LIMIT, AssertUnwindSafe(fut).catch_unwind()).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => panic!("{what}: panicked under storage faults"),
        Err(_) => panic!("{what}: hung for {RUN_LIMIT:?} under storage faults"),
    }
}

fn memory(test: &str) -> TestLocation {
    TestLocation::new(Backend::Memory, test).unwrap()
}

// ---------------------------------------------------------------------------
// Logical backup and restore

const DB: &str = "cryptofunk";

/// Restores `manifest` from a clean `repo` into a new database and compares
/// its content with `want`; `Err` says what differs.
async fn restores_to(
    repo: &Repository,
    cluster: &LocalCluster,
    manifest: &cfdr_storage::Manifest,
    want: &[(String, String)],
    db: &str,
) -> Result<(), String> {
    let server = cluster.target("postgres");
    let req = RestoreRequest {
        target_db: Some(db.to_owned()),
        jobs: 1,
        ..RestoreRequest::default()
    };
    let restored = logical::restore(
        repo,
        &server,
        manifest,
        &LogicalOptions::default(),
        &req,
        |_| {},
    )
    .await
    .map_err(|e| format!("backup {} does not restore: {e}", manifest.id));
    let result = match restored {
        Ok(_) => {
            let got = content_fingerprint(&cluster.target(db)).await.unwrap();
            if got == want {
                Ok(())
            } else {
                Err(format!("backup {} restores other content", manifest.id))
            }
        }
        Err(e) => Err(e),
    };
    cfdr_pg::admin::drop_database(&server, db).await.unwrap();
    result
}

/// Every backup a clean handle lists verifies and restores to `want`.
async fn listed_backups_restore(
    clean: &Repository,
    cluster: &LocalCluster,
    want: &[(String, String)],
    db: &str,
) -> Result<usize, String> {
    let listed = clean.backups().await.map_err(|e| e.to_string())?;
    for m in &listed {
        let report = clean.verify(m).await.map_err(|e| e.to_string())?;
        if !report.is_ok() {
            return Err(format!(
                "listed backup {} does not verify: {:?}",
                m.id, report.failures
            ));
        }
        restores_to(clean, cluster, m, want, db).await?;
    }
    Ok(listed.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logical_backup_and_restore_under_storage_faults() {
    let test = "logical_backup_and_restore_under_storage_faults";
    let seed = seed(test);
    let cluster = match cryptofunk_cluster(DB, 3, 200).await {
        Ok(c) => c,
        Err(e) => {
            return cfdr_testing::missing(&format!("PostgreSQL 15 ({e})"), test).unwrap_or(());
        }
    };
    let source = cluster.target(DB);
    let server = cluster.target("postgres");
    let want = content_fingerprint(&source).await.unwrap();
    let opts = LogicalOptions::default();
    let encode = EncodeOptions::default();

    // Backups: a fresh repository per run, the backup through the faults.
    let mut backups = Tally::default();
    for (i, plan) in plans(seed).into_iter().enumerate() {
        let loc = memory(test);
        let clean = Repository::init(loc.options.build().unwrap())
            .await
            .unwrap();
        let faults = Faults::new(plan);
        let store = faults.store(&loc.options);
        let result = guarded(&format!("backup {plan:?}"), async {
            let repo = Repository::open(store).await.map_err(|e| e.to_string())?;
            logical::backup(&repo, &source, "hourly", &opts, &encode)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        faults.stop();
        let check = listed_backups_restore(&clean, &cluster, &want, &format!("check_{i}")).await;
        let listed = clean.backup_ids().await.unwrap();
        let outcome = match (result, check) {
            (_, Err(e)) => Outcome::Silent(e),
            (Ok(m), Ok(_)) if !listed.contains(&m.id) => {
                Outcome::Silent(format!("backup {} succeeded but is not listed", m.id))
            }
            (Ok(_), Ok(_)) => Outcome::Ok,
            (Err(msg), Ok(_)) => error_outcome(msg),
        };
        backups.add(&faults, outcome);
    }

    // Restores: one good backup, read through the faults.
    let loc = memory(test);
    let clean = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let manifest = logical::backup(&clean, &source, "hourly", &opts, &encode)
        .await
        .unwrap();
    let mut restores = Tally::default();
    for (i, plan) in plans(seed ^ 0x5eed).into_iter().enumerate() {
        let faults = Faults::new(plan);
        let store = faults.store(&loc.options);
        let db = format!("restore_{i}");
        let req = RestoreRequest {
            target_db: Some(db.clone()),
            jobs: 1 + (i as u32 % 2),
            ..RestoreRequest::default()
        };
        let result = guarded(&format!("restore {plan:?}"), async {
            let repo = Repository::open(store).await.map_err(|e| e.to_string())?;
            logical::restore(&repo, &server, &manifest, &opts, &req, |_| {})
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        faults.stop();
        let exists = cfdr_pg::admin::database_exists(&server, &db).await.unwrap();
        let outcome = match result {
            Ok(_) => {
                let got = content_fingerprint(&cluster.target(&db)).await.unwrap();
                if got == want {
                    Outcome::Ok
                } else {
                    Outcome::Silent(format!("{db} restored with other content"))
                }
            }
            Err(msg) if exists => Outcome::Unclear(format!("{db} left behind after: {msg}")),
            Err(msg) => error_outcome(msg),
        };
        cfdr_pg::admin::drop_database(&server, &db).await.unwrap();
        restores.add(&faults, outcome);
    }
    backups.report("logical-backup");
    restores.report("logical-restore");
}

// ---------------------------------------------------------------------------
// WAL push and fetch, and copies

/// A cluster that wrote `n` segments; returns their names and bytes.
async fn real_segments(cluster: &LocalCluster, n: usize) -> Vec<(String, Bytes)> {
    let names = make_wal(cluster, n).await;
    names
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(cluster.data_dir.join("pg_wal").join(&name)).unwrap();
            (name, Bytes::from(bytes))
        })
        .collect()
}

/// Fetches `name` from a clean `archive` and compares it with `want`.
async fn fetches_as(archive: &WalArchive, name: &str, want: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("RECOVERYXLOG");
    let opts = FetchOptions {
        data_dir: Some(dir.path().to_owned()),
        ..FetchOptions::default()
    };
    match archive.fetch(name, &dest, &opts).await {
        Ok(Fetched::Restored { .. }) if std::fs::read(&dest).unwrap() == want => Ok(()),
        Ok(Fetched::Restored { .. }) => Err(format!("{name} fetches with other bytes")),
        Ok(Fetched::NotFound) => Err(format!("{name} is not in the archive")),
        Err(e) => Err(format!("{name} does not fetch: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_push_fetch_and_copy_under_storage_faults() {
    let test = "wal_push_fetch_and_copy_under_storage_faults";
    let seed = seed(test);
    let Some(bin) = cfdr_testing::pg::pg_bin(test).await else {
        return;
    };
    let mut cluster = LocalCluster::init_temp(&bin).await.unwrap();
    cluster.start(&[]).await.unwrap();
    let segments = real_segments(&cluster, 3).await;
    let push = PushOptions::default();

    // Regression: the first push's upload of wal/cluster.json comes out
    // short (every write chunk dropped). The error says so, rather than
    // "it vanished right after another writer created it".
    let loc = memory(test);
    let short = FaultLayer::new(seed, 1.0, FaultMode::Truncate, &[FaultOp::Write]);
    let archive = WalArchive::new(loc.options.build_with(move |op| op.layer(short)).unwrap());
    let (name, data) = &segments[0];
    let err = archive
        .push_bytes(name, data.clone(), &push)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("wal/cluster.json is corrupt: the backend holds 0 bytes after the upload"),
        "{err}"
    );

    // Push: each segment through the faults into a fresh archive; a stored
    // segment must fetch back whole, and once the faults stop, pushing
    // again (PostgreSQL's retry) must succeed for every one.
    let mut pushes = Tally::default();
    for plan in plans(seed) {
        let loc = memory(test);
        let clean = WalArchive::new(loc.options.build().unwrap());
        for (j, (name, data)) in segments.iter().enumerate() {
            let faults = Faults::new(Plan {
                seed: plan.seed.wrapping_add(j as u64 * 7919),
                ..plan
            });
            let archive = WalArchive::new(faults.store(&loc.options));
            let result = guarded(
                &format!("push {plan:?}"),
                archive.push_bytes(name, data.clone(), &push),
            )
            .await;
            faults.stop();
            let outcome = match result {
                Ok(_) => match fetches_as(&clean, name, data).await {
                    Ok(()) => Outcome::Ok,
                    Err(e) => Outcome::Silent(format!("push succeeded, but {e}")),
                },
                Err(e) => match clean.push_bytes(name, data.clone(), &push).await {
                    Err(again) => Outcome::Unclear(format!(
                        "push failed ({e}), and the retry after the faults stopped failed too: {again}"
                    )),
                    Ok(_) => match fetches_as(&clean, name, data).await {
                        Ok(()) => error_outcome(e.to_string()),
                        Err(why) => Outcome::Silent(format!("retried push succeeded, but {why}")),
                    },
                },
            };
            pushes.add(&faults, outcome);
        }
    }

    // Fetch: a clean archive, read through the faults. "Not found" for a
    // stored segment would end recovery early: a silent loss.
    let loc = memory(test);
    let clean = WalArchive::new(loc.options.build().unwrap());
    for (name, data) in &segments {
        clean.push_bytes(name, data.clone(), &push).await.unwrap();
    }
    let mut fetches = Tally::default();
    for plan in plans(seed ^ 0xfe7c) {
        for (j, (name, data)) in segments.iter().enumerate() {
            let faults = Faults::new(Plan {
                seed: plan.seed.wrapping_add(j as u64 * 7919),
                ..plan
            });
            let archive = WalArchive::new(faults.store(&loc.options));
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("RECOVERYXLOG");
            let opts = FetchOptions {
                data_dir: Some(dir.path().to_owned()),
                ..FetchOptions::default()
            };
            let result = guarded(
                &format!("fetch {plan:?}"),
                archive.fetch(name, &dest, &opts),
            )
            .await;
            let outcome = match result {
                Ok(Fetched::Restored { .. }) if std::fs::read(&dest).unwrap() == data[..] => {
                    Outcome::Ok
                }
                Ok(Fetched::Restored { .. }) => {
                    Outcome::Silent(format!("{name} fetched with other bytes"))
                }
                Ok(Fetched::NotFound) => {
                    Outcome::Silent(format!("{name} reported absent (end of WAL)"))
                }
                Err(e) if dest.exists() => {
                    Outcome::Silent(format!("{name} failed ({e}) but was handed over"))
                }
                Err(e) => error_outcome(e.to_string()),
            };
            fetches.add(&faults, outcome);
        }
    }

    // Copy: a primary with backups and WAL to a fresh secondary, both
    // behind the faults. What the secondary lists must equal the primary;
    // a clean run afterwards completes the copy.
    let primary = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    for i in 0..2u64 {
        let mut w = primary.begin_backup("logical", Some("hourly")).unwrap();
        for name in ["a.zst", "b.raw"] {
            let data: Vec<u8> = (0..300_000u64)
                .map(|k| (k.wrapping_mul(2_654_435_761).wrapping_add(i) >> 7) as u8)
                .collect();
            w.put_encoded(name, std::io::Cursor::new(data), &EncodeOptions::default())
                .await
                .unwrap();
        }
        w.commit(Default::default()).await.unwrap();
    }
    // Regression: a read of the primary's wal/cluster.json that ends early
    // (no error) must not replace the secondary's good copy.
    let second = memory(test);
    let secondary = second.options.build().unwrap();
    let copy_opts = cfdr_copy::CopyOptions::default();
    let copier = |primary: Store| {
        cfdr_copy::Copier::new(primary, secondary.clone(), "dr", copy_opts.clone()).unwrap()
    };
    assert!(
        copier(primary.store().clone())
            .run()
            .await
            .unwrap()
            .is_clean()
    );
    let short = FaultLayer::new(seed, 1.0, FaultMode::Truncate, &[FaultOp::Read])
        .only_keys_containing("cluster.json");
    let report = copier(loc.options.build_with(move |op| op.layer(short)).unwrap())
        .run()
        .await
        .unwrap();
    assert!(
        report
            .failed
            .iter()
            .any(|p| p.key == "wal/cluster.json" && p.reason.contains("not a cluster identity")),
        "{report:?}"
    );
    assert_eq!(
        secondary.get("wal/cluster.json").await.unwrap(),
        primary.store().get("wal/cluster.json").await.unwrap()
    );

    let mut copies = Tally::default();
    for plan in plans(seed ^ 0xc0b7) {
        let second = memory(test);
        let faults = Faults::new(plan);
        let copy_opts = cfdr_copy::CopyOptions {
            concurrency: 2,
            lock_ttl: Duration::from_secs(2),
            lock_wait: Duration::from_secs(30),
            ..cfdr_copy::CopyOptions::default()
        };
        let copier = cfdr_copy::Copier::new(
            faults.store(&loc.options),
            faults.store(&second.options),
            "dr",
            copy_opts.clone(),
        )
        .unwrap();
        let result = guarded(&format!("copy {plan:?}"), copier.run()).await;
        faults.stop();
        let secondary = second.options.build().unwrap();
        let same = secondary_matches(primary.store(), &secondary).await;
        let outcome = match (result, same) {
            (_, Err(e)) => Outcome::Silent(e),
            (Ok(r), Ok(complete)) if r.is_clean() && !complete => {
                Outcome::Silent("the copy reported clean, but the secondary lacks objects".into())
            }
            (Ok(r), Ok(_)) if r.is_clean() => Outcome::Ok,
            (Ok(r), Ok(_)) => {
                let reasons: Vec<String> = r
                    .differ
                    .iter()
                    .chain(&r.missing)
                    .chain(&r.failed)
                    .map(|p| format!("{}: {}", p.key, p.reason))
                    .collect();
                // A manifest held back points at the object that failed,
                // whose own reason names the cause.
                let held_back =
                    |m: &String| m.contains("not written") && m.contains("see them in this report");
                match reasons.iter().find(|m| !names_cause(m) && !held_back(m)) {
                    Some(m) => Outcome::Unclear(m.clone()),
                    None if reasons.iter().any(|m| names_cause(m)) => {
                        Outcome::CleanError(reasons.join("; "))
                    }
                    None => Outcome::Unclear(reasons.join("; ")),
                }
            }
            (Err(e), Ok(_)) => error_outcome(e.to_string()),
        };
        // Faults over: the next run finishes the copy.
        let clean_copier = cfdr_copy::Copier::new(
            loc.options.build().unwrap(),
            secondary.clone(),
            "dr",
            copy_opts,
        )
        .unwrap();
        let outcome = match (outcome, clean_copier.run().await) {
            (o @ Outcome::Silent(_), _) => o,
            (o, Ok(r)) if r.is_clean() => {
                match secondary_matches(primary.store(), &secondary).await {
                    Ok(true) => o,
                    Ok(false) => Outcome::Unclear(
                        "a clean run after the faults left the copy incomplete".into(),
                    ),
                    Err(e) => Outcome::Silent(e),
                }
            }
            (_, Ok(r)) => Outcome::Unclear(format!(
                "a clean run after the faults reports problems: {:?} {:?} {:?}",
                r.differ, r.missing, r.failed
            )),
            (_, Err(e)) => Outcome::Unclear(format!("a clean run after the faults failed: {e}")),
        };
        copies.add(&faults, outcome);
    }
    pushes.report("wal-push");
    fetches.report("wal-fetch");
    copies.report("copy");
}

/// Every backup the secondary lists and every WAL object it holds equals
/// the primary's, byte for byte (`Err`: a silent corruption). `Ok(true)`
/// when it holds all of them.
async fn secondary_matches(primary: &Store, secondary: &Store) -> Result<bool, String> {
    let primary_repo = Repository::open(primary.clone()).await.unwrap();
    // Before cfdr.json is copied the secondary lists no backup.
    let (repo, listed) = match secondary.stat(cfdr_storage::CONFIG_KEY).await.unwrap() {
        None => (None, Vec::new()),
        Some(_) => {
            let repo = Repository::open(secondary.clone())
                .await
                .map_err(|e| format!("the secondary does not open: {e}"))?;
            let listed = repo.backups().await.map_err(|e| e.to_string())?;
            (Some(repo), listed)
        }
    };
    let mut complete = repo.is_some();
    for m in &listed {
        let Some(repo) = &repo else { break };
        let report = repo.verify(m).await.map_err(|e| e.to_string())?;
        if !report.is_ok() {
            return Err(format!(
                "backup {} is listed on the secondary but does not verify: {:?}",
                m.id, report.failures
            ));
        }
        for o in &m.objects {
            if secondary.get(&o.key).await.unwrap() != primary.get(&o.key).await.unwrap() {
                return Err(format!("{} differs on the secondary", o.key));
            }
        }
    }
    if listed.len() != primary_repo.backup_ids().await.unwrap().len() {
        complete = false;
    }
    for meta in primary.list("wal/").await.unwrap() {
        if secondary.stat(&meta.key).await.unwrap().is_none() {
            complete = false;
            continue;
        }
        if secondary.get(&meta.key).await.unwrap() != primary.get(&meta.key).await.unwrap() {
            return Err(format!("{} differs on the secondary", meta.key));
        }
    }
    Ok(complete)
}

// ---------------------------------------------------------------------------
// Prune

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_under_storage_faults() {
    use cfdr_prune::{Options, PENDING_KEY, prune};
    use cfdr_retention::{Config, Count, Policy};
    use cfdr_testing::history::{HistorySpec, write_history};

    let test = "prune_under_storage_faults";
    let seed = seed(test);
    let keys = |store: Store| async move {
        let all = store.list("").await.unwrap();
        all.into_iter().map(|m| m.key).collect::<BTreeSet<String>>()
    };
    let config = Config::with_policy(Policy {
        keep_last: Count::Limited(3),
        ..Policy::default()
    });
    let mut tally = Tally::default();
    for plan in plans(seed) {
        let loc = memory(test);
        let clean = loc.options.build().unwrap();
        let repo = Repository::init(clean.clone()).await.unwrap();
        let history = write_history(&clean, &HistorySpec::new(24, 60))
            .await
            .unwrap();
        // A short lease: a lock the faulty run could not release expires
        // quickly, and the clean run waits for it.
        let options = Options {
            at: Some(history.at),
            lock_ttl: Duration::from_secs(2),
            lock_wait: Duration::from_secs(60),
            ..Options::default()
        };
        let dry = Options {
            dry_run: true,
            ..options.clone()
        };
        let planned = prune(&repo, &config, &dry).await.unwrap();
        let gone: BTreeSet<String> = planned.deletions.keys().map(str::to_owned).collect();
        let expected: BTreeSet<String> = keys(clean.clone())
            .await
            .difference(&gone)
            .cloned()
            .collect();

        let faults = Faults::new(plan);
        let store = faults.store(&loc.options);
        let result = guarded(&format!("prune {plan:?}"), async {
            let faulty = Repository::open(store).await.map_err(|e| e.to_string())?;
            prune(&faulty, &config, &options)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        faults.stop();
        let now = keys(clean.clone()).await;
        let lost: Vec<&String> = expected
            .iter()
            .filter(|k| !now.contains(*k) && k.as_str() != PENDING_KEY)
            .collect();
        let mut broken = Vec::new();
        for m in repo.backups().await.unwrap() {
            if !repo.verify(&m).await.unwrap().is_ok() {
                broken.push(m.id.to_string());
            }
        }
        let outcome = if !lost.is_empty() {
            Outcome::Silent(format!("kept objects deleted: {lost:?}"))
        } else if !broken.is_empty() {
            Outcome::Silent(format!("listed backups lack data: {broken:?}"))
        } else {
            match result {
                Ok(r) if r.damaged.is_empty() && now == expected => Outcome::Ok,
                Ok(r) if r.damaged.is_empty() => Outcome::Silent(
                    "prune reported success, the repository differs from its plan".into(),
                ),
                Ok(r) => {
                    let reasons: Vec<String> = r
                        .damaged
                        .iter()
                        .map(|d| format!("{}: {}", d.id, d.reason))
                        .collect();
                    match reasons.iter().find(|m| !names_cause(m)) {
                        Some(m) => Outcome::Unclear(format!("reported damaged: {m}")),
                        None => Outcome::CleanError(reasons.join("; ")),
                    }
                }
                Err(msg) => error_outcome(msg),
            }
        };
        // Faults over: the next run finishes the plan.
        let outcome = match (outcome, prune(&repo, &config, &options).await) {
            (o @ Outcome::Silent(_), _) => o,
            (o, Ok(_)) if keys(clean.clone()).await == expected => o,
            (_, Ok(_)) => {
                Outcome::Unclear("a clean prune after the faults did not finish the plan".into())
            }
            (_, Err(e)) => Outcome::Unclear(format!("a clean prune after the faults failed: {e}")),
        };
        tally.add(&faults, outcome);
    }
    tally.report("prune");
}

// ---------------------------------------------------------------------------
// Full disks

/// A tmpfs mounted by the test (root only), unmounted when dropped, also
/// when the test panics.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str, test: &str) -> Tmpfs {
        assert!(
            cfdr_pg::is_root(),
            "{test} mounts a small tmpfs to fill it and needs root: run it as root (the CI container does)"
        );
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs on {}: {}",
            path.display(),
            cfdr_testing::output_text(&out)
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Bytes free.
    fn free(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        it.next().unwrap() * it.next().unwrap()
    }

    /// Writes a file of `size` bytes (or until the disk is full).
    fn fill(&self, name: &str, size: Option<u64>) -> PathBuf {
        use std::io::Write;
        let path = self.path.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0x5au8; 4096];
        let mut left = size.unwrap_or(u64::MAX);
        while left > 0 {
            let n = left.min(4096) as usize;
            if f.write_all(&block[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // A process still holds a file there (a worker, a server).
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Files (not folders) under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn run(bin: &str, config: &Path, args: &[&str], envs: &[(&str, String)]) -> Output {
    Command::new(cfdr_testing::bins::workspace_bin(bin))
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("CFDR_REPOSITORY")
        .env_remove("CFDR_CONFIG")
        .output()
        .unwrap()
}

/// The backups `cfdr-backup list --json` shows.
fn listed(config: &Path) -> Vec<serde_json::Value> {
    let out = run("cfdr-backup", config, &["list", "--json"], &[]);
    assert!(out.status.success(), "{}", cfdr_testing::output_text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The failure of a command that ran out of disk: exit 2, one error that
/// says the disk is full, no panic.
fn assert_disk_full_error(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    assert!(
        stderr.contains("No space left on device"),
        "{what}: the error must name the full disk: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    stderr
}

/// Rows of incompressible bytes (about `kib` KiB) in table `r` of `db`.
async fn random_table(cluster: &LocalCluster, db: &str, kib: u32) {
    cluster.create_database(db).await.unwrap();
    let mut conn = cluster.target(db).connect().await.unwrap();
    sqlx::query(&format!(
        "CREATE TABLE r AS SELECT g AS id, \
           (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex') \
              FROM generate_series(1, 64) i) AS b \
         FROM generate_series(1, {kib}) g"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_mid_backup_is_a_clean_error_and_prune_reclaims_it() {
    let test = "full_disk_mid_backup_is_a_clean_error_and_prune_reclaims_it";
    let Some(bin) = cfdr_testing::pg::pg_bin(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("disk"), "4m", test);
    let mut cluster = LocalCluster::init_temp(&bin).await.unwrap();
    cluster.start(&[]).await.unwrap();
    random_table(&cluster, "small", 160).await;
    random_table(&cluster, "big", 6_000).await;
    cluster.create_database("tiny").await.unwrap();

    let root = disk.path.join("repo");
    let config = dir.path().join("cfdr.toml");
    std::fs::write(
        &config,
        format!("[repository]\nurl = \"file://{}\"\n", root.display()),
    )
    .unwrap();
    Repository::init(
        StorageOptions::from_url(format!("file://{}", root.display()))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let backup = |db: &str| {
        run(
            "cfdr-backup",
            &config,
            &["logical", "--db", db],
            &[("DATABASE_URL", cluster.url(db))],
        )
    };
    let first = backup("small");
    assert!(
        first.status.success(),
        "{}",
        cfdr_testing::output_text(&first)
    );
    let listed_first = listed(&config);
    assert_eq!(listed_first.len(), 1);
    let dump_size = listed_first[0]["objects"][0]["size"].as_u64().unwrap();
    let tmp = root.join(".cfdr-tmp");

    // 1. The disk fills while the dump streams in (6 MB of random rows
    // into 4 MB): a clean error, nothing listed, and the upload's space is
    // given back at once.
    let free_before = disk.free();
    let out = backup("big");
    let big_error = assert_disk_full_error(&out, "backup of 6 MB into 4 MB");
    assert_eq!(
        listed(&config).len(),
        1,
        "the failed backup must not be listed"
    );
    assert!(
        files_under(&tmp).is_empty(),
        "staged upload left: {:?}",
        files_under(&tmp)
    );
    assert_eq!(
        disk.free(),
        free_before,
        "the failed upload's space is not given back"
    );

    // 2. The disk fills at the very end: the dump fits, its manifest does
    // not. The dump stays as a leftover (not listed) until prune.
    let page = 4096;
    let pages = dump_size.div_ceil(page);
    let mut leftover = None;
    let mut manifest_error = String::new();
    for extra in 0..2 {
        let filler = disk.fill("filler", Some(disk.free() - (pages + extra) * page));
        let before: BTreeSet<PathBuf> = files_under(&root.join("backups")).into_iter().collect();
        let out = backup("small");
        manifest_error = assert_disk_full_error(&out, "backup whose manifest does not fit");
        assert_eq!(
            listed(&config).len(),
            1,
            "the failed backup must not be listed"
        );
        let new: Vec<PathBuf> = files_under(&root.join("backups"))
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if !new.is_empty() {
            leftover = Some((new, filler));
            break;
        }
        // The dump came out a page larger than the first one: again.
        std::fs::remove_file(filler).unwrap();
    }
    let (leftover, filler) = leftover.expect("the dump never fitted without its manifest");
    assert!(
        leftover.iter().all(|p| !p.ends_with("manifest.json")),
        "{leftover:?}"
    );
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(49))
        .unwrap()
        .to_string();
    // Full to the last page, prune cannot write its lock: it says so and
    // deletes nothing.
    let locked_out = run("cfdr-prune", &config, &["--at", &at], &[]);
    let prune_error = assert_disk_full_error(&locked_out, "prune on a full disk");
    assert!(prune_error.contains("nothing was deleted"), "{prune_error}");
    assert!(leftover.iter().all(|p| p.exists()));
    // A few KiB freed elsewhere on the disk (the operator's first step):
    // prune takes its lock and reclaims the leftover.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(std::fs::metadata(&filler).unwrap().len() - 4 * page)
        .unwrap();
    let full = disk.free();
    let pruned = run("cfdr-prune", &config, &["--at", &at], &[]);
    assert!(
        pruned.status.success(),
        "{}",
        cfdr_testing::output_text(&pruned)
    );
    for p in &leftover {
        assert!(!p.exists(), "prune left {}", p.display());
    }
    let reclaimed = disk.free() - full;
    assert!(
        reclaimed >= pages * page,
        "prune gave back {reclaimed} bytes, the leftover held {}",
        pages * page
    );
    // The filler stays: the space prune gave back holds a new small backup.
    let after = backup("tiny");
    assert!(
        after.status.success(),
        "{}",
        cfdr_testing::output_text(&after)
    );
    assert_eq!(listed(&config).len(), 2);
    drop(filler);

    println!(
        "reliability: faults disk-full runs=3 clean_errors=3 listed_after_failure=0 leftover_objects={} reclaimed_by_prune={reclaimed} new_backup_fits=yes silent_corruptions=0",
        leftover.len()
    );
    println!("  disk-full error (mid-dump): {}", big_error.trim());
    println!("  disk-full error (manifest): {}", manifest_error.trim());
    println!(
        "  disk-full error (prune, full to the last page): {}",
        prune_error.trim()
    );
    drop(cluster);
    drop(disk);
}

// ---------------------------------------------------------------------------
// Full spool for the async push

/// `(archived_count, failed_count, last_archived_wal)` of pg_stat_archiver.
async fn archiver(cluster: &LocalCluster) -> (i64, i64, Option<String>) {
    let mut conn = cluster.target("postgres").connect().await.unwrap();
    let row =
        sqlx::query("SELECT archived_count, failed_count, last_archived_wal FROM pg_stat_archiver")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Waits until the archiver reports `file` archived (it archives in order
/// and retries a failed file before any later one).
async fn wait_archived(cluster: &LocalCluster, file: &str) {
    cfdr_testing::eventually(
        &format!("{file} archived"),
        cfdr_testing::PATIENCE,
        || async {
            match archiver(cluster).await {
                (_, _, Some(last)) if last.get(..24).is_some_and(|l| l >= &file[..24]) => Ok(()),
                seen => Err(format!("archiver {seen:?}")),
            }
        },
    )
    .await;
}

/// Files PostgreSQL considers archived (`archive_status/*.done`).
fn acknowledged(cluster: &LocalCluster) -> Vec<String> {
    let status = cluster.data_dir.join("pg_wal/archive_status");
    let mut out: Vec<String> = std::fs::read_dir(status)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".done")
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

/// Every acknowledged file is in the archive with pg_wal's bytes; returns
/// how many were compared.
async fn acknowledged_are_stored(archive: &WalArchive, cluster: &LocalCluster) -> usize {
    let mut n = 0;
    for name in acknowledged(cluster) {
        let Ok(local) = std::fs::read(cluster.data_dir.join("pg_wal").join(&name)) else {
            continue; // recycled meanwhile
        };
        if let Err(e) = fetches_as(archive, &name, &local).await {
            panic!("{name} is acknowledged (archive_status/{name}.done) but {e}");
        }
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_acknowledges_nothing_that_is_not_stored() {
    let test = "full_spool_acknowledges_nothing_that_is_not_stored";
    let Some(bin) = cfdr_testing::pg::pg_bin(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spool_disk = Tmpfs::mount(&dir.path().join("spool-disk"), "512k", test);
    let spool = spool_disk.path.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    give_to_postgres(&spool_disk.path);
    let root = dir.path().join("repo");
    let url = format!("file://{}", root.display());
    let store = StorageOptions::from_url(url.clone()).build().unwrap();
    Repository::init(store.clone()).await.unwrap();
    let archive = WalArchive::new(store);
    let config = dir.path().join("cfdr.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {url:?}\n[wal]\npush-async = true\nspool-dir = {:?}\npush-timeout-secs = 2\nworker-idle-secs = 5\n",
            spool.display().to_string()
        ),
    )
    .unwrap();
    give_to_postgres(dir.path());

    let mut cluster = LocalCluster::init_temp(&bin).await.unwrap();
    let conf = cluster.data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{} --config {} push %p'\nwal_keep_size = '1GB'\n",
        cfdr_testing::bins::workspace_bin("cfdr-wal").display(),
        config.display()
    ));
    std::fs::write(&conf, text).unwrap();
    cluster.start(&[]).await.unwrap();

    let first = make_wal(&cluster, 1).await;
    wait_archived(&cluster, &first[0]).await;

    // The spool's disk fills up: the worker can store segments but not
    // record it, so the archive command must fail and acknowledge nothing.
    let filler = spool_disk.fill("filler", None);
    assert!(spool_disk.free() < 4096, "the spool's disk is not full");
    let (_, failed_before, _) = archiver(&cluster).await;
    let during = make_wal(&cluster, 3).await;
    cfdr_testing::eventually(
        "two failed archive attempts",
        cfdr_testing::PATIENCE,
        || async {
            match archiver(&cluster).await {
                (_, failed, _) if failed >= failed_before + 2 => Ok(()),
                seen => Err(format!("archiver {seen:?}")),
            }
        },
    )
    .await;
    let acked = acknowledged(&cluster);
    for name in &during {
        assert!(
            !acked.contains(name),
            "{name} acknowledged while the spool is full"
        );
    }
    let compared_during = acknowledged_are_stored(&archive, &cluster).await;
    let stored_unacked = {
        let mut n = 0;
        for name in &during {
            if archive
                .list()
                .await
                .unwrap()
                .iter()
                .any(|f| &f.item.name == name)
            {
                n += 1;
            }
        }
        n
    };
    let (_, failed_during, last) = archiver(&cluster).await;
    assert!(
        last.as_deref().is_some_and(|l| l < during[0].as_str()),
        "the archiver moved past {} while the spool was full: {last:?}",
        during[0]
    );

    // Space returns: a new segment wakes the archiver and it catches up.
    std::fs::remove_file(&filler).unwrap();
    let after = make_wal(&cluster, 1).await;
    for name in during.iter().chain(&after) {
        wait_archived(&cluster, name).await;
    }
    let compared = acknowledged_are_stored(&archive, &cluster).await;
    for name in first.iter().chain(&during).chain(&after) {
        let local = std::fs::read(cluster.data_dir.join("pg_wal").join(name)).unwrap();
        fetches_as(&archive, name, &local).await.unwrap();
    }
    let report = archive.continuity_from(Some(&first[0])).await.unwrap();
    assert!(report.is_continuous(), "{report:?}");
    println!(
        "reliability: faults full-spool segments={} archive_failures={} acknowledged_while_full=0 stored_but_unacknowledged={stored_unacked} acknowledged_checked={} caught_up=yes silent_corruptions=0",
        first.len() + during.len() + after.len(),
        failed_during - failed_before,
        compared_during.max(compared)
    );
    drop(cluster);
    drop(spool_disk);
}

// ---------------------------------------------------------------------------
// Physical backup

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_backup_under_storage_faults() {
    use cfdr_pg::physical::{self, PhysicalDetails, PhysicalOptions};

    let test = "physical_backup_under_storage_faults";
    let seed = seed(test);
    let Some(bin) = cfdr_testing::pg::pg_bin(test).await else {
        return;
    };
    // The S3 server: archive_command (another process) and this test's
    // faulty handle must reach the same objects.
    let Some(loc) = TestLocation::new(Backend::S3, test) else {
        return;
    };
    let clean = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfdr.toml");
    let o = &loc.options;
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {:?}\n[repository.s3]\nendpoint = {:?}\nregion = {:?}\n",
            o.url.clone().unwrap(),
            o.s3.endpoint.clone().unwrap(),
            o.s3.region.clone().unwrap_or("us-east-1".into())
        ),
    )
    .unwrap();
    give_to_postgres(dir.path());
    let creds = format!(
        "AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}",
        o.s3.access_key_id.clone().unwrap_or_default(),
        o.s3.secret_access_key.clone().unwrap_or_default()
    );
    let mut cluster = LocalCluster::init_temp(&bin).await.unwrap();
    let conf = cluster.data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = 'env {creds} {} --config {} push %p'\n",
        cfdr_testing::bins::workspace_bin("cfdr-wal").display(),
        config.display()
    ));
    std::fs::write(&conf, text).unwrap();
    cluster.start(&[]).await.unwrap();
    let target = cluster.target("postgres");
    let opts = PhysicalOptions {
        archive_wait: Duration::from_secs(60),
        ..PhysicalOptions::default()
    };
    let archive = WalArchive::new(clean.store().clone());

    // One run per mode in the short form (a base backup takes seconds).
    let all = plans(seed);
    let runs: Vec<Plan> = if cfdr_testing::long_tests() {
        all
    } else {
        let mut seen = BTreeSet::new();
        all.into_iter()
            .filter(|p| p.rate > 0.1 || p.times_out())
            .filter(|p| seen.insert(mode_name(p.mode)))
            .collect()
    };
    let mut tally = Tally::default();
    for plan in runs {
        let faults = Faults::new(plan);
        let store = faults.store(&loc.options);
        let result = guarded(&format!("physical backup {plan:?}"), async {
            let repo = Repository::open(store).await.map_err(|e| e.to_string())?;
            physical::backup(&repo, &target, "daily", &opts, &EncodeOptions::default())
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        faults.stop();
        // Every listed backup verifies and has its WAL in the archive.
        let mut broken = Vec::new();
        for m in clean.backups().await.unwrap() {
            let report = clean.verify(&m).await.unwrap();
            let details = PhysicalDetails::of(&m).unwrap();
            let wal = archive
                .continuity_from(Some(&details.start_wal_file))
                .await
                .unwrap();
            if !report.is_ok() || !wal.is_continuous() {
                broken.push(format!("{}: {:?} {wal:?}", m.id, report.failures));
            }
        }
        let listed = clean.backup_ids().await.unwrap();
        let outcome = match result {
            _ if !broken.is_empty() => {
                Outcome::Silent(format!("listed backups broken: {broken:?}"))
            }
            Ok(m) if listed.contains(&m.id) => Outcome::Ok,
            Ok(m) => Outcome::Silent(format!("backup {} succeeded but is not listed", m.id)),
            Err(msg) => error_outcome(msg),
        };
        tally.add(&faults, outcome);
    }
    tally.report("physical-backup");
}
