//! The scenarios, played on the sandbox, and the validation of what each
//! recovered.

use std::time::{Duration, Instant};

use cfdr_pg::physical::{self, PhysicalDetails, PitrRequest, RecoveryTarget};
use cfdr_pg::{LocalCluster, PgTarget, logical, replica};
use cfdr_storage::{Repository, SecretStore};
use cfdr_wal_archive::{Lsn, WalArchive, WalSegment};
use futures::StreamExt as _;
use jiff::Timestamp;
use sqlx::{Executor, Row};

use crate::drive::Recorder;
use crate::error::{Error, Result};
use crate::fault::{MISSING_WAL, STALE};
use crate::report::{ScenarioReport, Validation, Verdict};
use crate::sandbox::{BUNDLE, DATABASE, Sandbox, stream_safe};
use crate::{Fault, Scenario, sample};

/// How long the drill waits for WAL to be archived or a server to answer.
const PATIENCE: Duration = Duration::from_secs(120);

/// Plays `scenario`.
pub(crate) async fn play(
    scenario: Scenario,
    sb: &mut Sandbox,
    rec: &mut Recorder<'_>,
    rep: &mut ScenarioReport,
) -> Result<()> {
    match scenario {
        Scenario::SecretsLoss => secrets_loss(sb, rec, rep).await,
        Scenario::AccidentalDeletion => accidental_deletion(sb, rec, rep).await,
        Scenario::ReplicaFailover => replica_failover(sb, rec, rep).await,
        Scenario::DatabaseLoss => database_loss(sb, rec, rep).await,
        Scenario::RegionLoss => region_loss(sb, rec, rep).await,
    }
}

/// Records a failed step: the message, and the fault it shows.
pub(crate) fn record_failure(rep: &mut ScenarioReport, e: &Error) {
    let text = e.to_string();
    if let Some(f) = Fault::detect(&text)
        && !rep.faults_detected.contains(&f)
    {
        rep.faults_detected.push(f);
    }
    rep.failures.push(text);
}

/// The verdict: failed steps, failed validations, missed objectives, and
/// planted faults seen (a detected fault fails the drill, named) or not.
pub(crate) fn judge(rep: &mut ScenarioReport) {
    for v in &rep.validations {
        if !v.passed {
            rep.failures
                .push(format!("validation failed: {}: {}", v.name, v.detail));
        }
    }
    match rep.rto_actual_seconds {
        Some(rto) if rto > rep.rto_objective_seconds => rep.failures.push(format!(
            "RTO missed: recovery took {rto:.1} s, the objective is {:.0} s",
            rep.rto_objective_seconds
        )),
        _ => {}
    }
    match rep.rpo_actual_seconds {
        Some(rpo) if rpo > rep.rpo_objective_seconds => rep.failures.push(format!(
            "RPO missed: {rpo:.1} s of trades lost ({} trades), the objective is {:.0} s",
            rep.rpo_trades.unwrap_or(0),
            rep.rpo_objective_seconds
        )),
        _ => {}
    }
    for (k, f) in rep.injected.clone().into_iter().enumerate() {
        let line = if rep.faults_detected.contains(&f) {
            format!("injected fault {f} detected")
        } else {
            format!("injected fault {f} was NOT detected: the drill's checks missed it")
        };
        rep.failures.insert(k, line);
    }
    rep.verdict = if rep.failures.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
}

pub(crate) fn query_err(what: &str, target: &PgTarget) -> impl FnOnce(sqlx::Error) -> Error {
    let (what, database) = (what.to_owned(), target.database.clone());
    move |e| {
        Error::from(cfdr_pg::Error::Query {
            what,
            database,
            reason: e.to_string(),
        })
    }
}

/// Stops a server as a crash would: dropping a running cluster stops it
/// in immediate mode (no shutdown checkpoint, no last WAL archived). The
/// stop waits for the server, so it runs off the async threads.
async fn crash(cluster: Option<LocalCluster>) -> Result<()> {
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .map_err(|e| Error::Check(format!("stopping the server: {e}")))
}

fn started(rec: &mut Recorder<'_>) -> Instant {
    let now = Instant::now();
    rec.disaster = Some(now);
    now
}

fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------- secrets

async fn secrets_loss(
    sb: &mut Sandbox,
    rec: &mut Recorder<'_>,
    rep: &mut ScenarioReport,
) -> Result<()> {
    let disaster = started(rec);
    let stored = rec
        .step(
            "secrets store lost; newest bundle version looked up",
            async {
                Ok(SecretStore::new(sb.repo()?)
                    .resolve(BUNDLE, "latest")
                    .await?)
            },
        )
        .await?;
    rec.bytes(stored.stored.size);
    let wrong;
    let identities = if sb.injects(Fault::WrongKey) {
        let (text, _) = cfdr_secrets::generate_identity();
        wrong = cfdr_secrets::Identities::from_text(text.as_str())?;
        &wrong
    } else {
        &sb.secrets
            .as_ref()
            .ok_or_else(|| Error::Check("the sandbox stored no secrets".into()))?
            .identities
    };
    let restored = rec
        .step(
            &format!("bundle {} restored and decrypted", stored.label()),
            async {
                Ok(SecretStore::new(sb.repo()?)
                    .open(&stored, identities)
                    .await?)
            },
        )
        .await?;
    let original = &sb
        .secrets
        .as_ref()
        .ok_or_else(|| Error::Check("the sandbox stored no secrets".into()))?
        .original;
    let diff = rec
        .step("restored bundle compared with the original", async {
            Ok(original.diff(&restored))
        })
        .await?;
    rep.validations.push(Validation {
        name: "secrets bundle equals the original (names and values)".into(),
        passed: diff.is_empty(),
        detail: if diff.is_empty() {
            format!("{} secrets, all equal", restored.len())
        } else {
            format!("differences: {diff:?}")
        },
    });
    rep.rto_actual_seconds = Some(since(disaster));
    // The newest version stored before the loss is the one restored.
    rep.rpo_actual_seconds = Some(0.0);
    Ok(())
}

// ----------------------------------------------------------- WAL helpers

/// The segment the server is writing now, after switching to a new one;
/// waits until the switched-from segment is archived and returns its name.
pub(crate) async fn switch_and_archive(target: &PgTarget) -> Result<String> {
    let mut conn = target.connect().await?;
    let file: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&mut conn)
        .await
        .map_err(query_err("switching WAL", target))?;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let row = sqlx::query("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")
            .fetch_one(&mut conn)
            .await
            .map_err(query_err("reading pg_stat_archiver", target))?;
        let last: Option<String> = row.get(0);
        if last
            .as_deref()
            .is_some_and(|l| l.get(..24) >= file.get(..24))
        {
            return Ok(file);
        }
        if Instant::now() > deadline {
            let failed: Option<String> = row.get(1);
            return Err(Error::Check(format!(
                "WAL segment {file} was not archived within {} s (last archived {last:?}, last failed {failed:?}): see the server log",
                PATIENCE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last segment the server reports archived.
async fn last_archived(target: &PgTarget) -> Result<Option<String>> {
    let mut conn = target.connect().await?;
    sqlx::query_scalar("SELECT last_archived_wal FROM pg_stat_archiver")
        .fetch_one(&mut conn)
        .await
        .map_err(query_err("reading pg_stat_archiver", target))
}

/// The archive holds no gap from the base backup's first segment on.
pub(crate) async fn check_continuity(
    repo: &Repository,
    base: &cfdr_storage::Manifest,
) -> Result<String> {
    let details = PhysicalDetails::of(base)?;
    let report = WalArchive::new(repo.store().clone())
        .continuity_from(Some(&details.start_wal_file))
        .await?;
    if report.is_continuous() {
        Ok(format!(
            "continuous from {} to {}",
            report.start,
            report.newest.as_deref().unwrap_or("-")
        ))
    } else {
        Err(Error::Check(format!(
            "{MISSING_WAL}: {} missing after base backup {}: {}",
            report.missing_segments(),
            base.id,
            report.to_string().replace('\n', "; ")
        )))
    }
}

/// The repository holds `segment`, which the primary reported archived.
pub(crate) async fn check_fresh(repo: &Repository, segment: &str) -> Result<()> {
    let files = WalArchive::new(repo.store().clone()).list().await?;
    if files.iter().any(|f| f.item.name == segment) {
        return Ok(());
    }
    let newest = files
        .iter()
        .map(|f| f.item.name.as_str())
        .filter(|n| n.len() == 24)
        .max()
        .unwrap_or("none");
    Err(Error::Check(format!(
        "{STALE}: it lacks WAL segment {segment}, which the primary reported archived; its newest segment is {newest}. Point the restore at a current copy"
    )))
}

/// Restores the base backup with WAL to `target` into a new data dir of
/// the sandbox.
async fn pitr_into(
    sb: &Sandbox,
    dir: &str,
    target: RecoveryTarget,
) -> Result<(LocalCluster, physical::PitrReport)> {
    let req = pitr_request(
        target,
        sb.path(dir),
        sb.restore_command()?,
        sb.opts.objectives.rto_database,
        sb.opts.pg_bin.clone(),
        None,
    );
    start_pitr(sb.repo()?, &req).await
}

/// A PITR request that starts the restored server, archiving off.
pub(crate) fn pitr_request(
    target: RecoveryTarget,
    data_dir: std::path::PathBuf,
    restore_command: String,
    rto: Duration,
    bin_dir: Option<std::path::PathBuf>,
    identities: Option<std::sync::Arc<cfdr_secrets::Identities>>,
) -> PitrRequest {
    PitrRequest {
        target,
        data_dir,
        force: false,
        restore_command,
        prefetch_spool: None,
        identities,
        start: true,
        archive: false,
        rto,
        bin_dir,
    }
}

/// Runs a PITR restore and takes its started server.
pub(crate) async fn start_pitr(
    repo: &Repository,
    req: &PitrRequest,
) -> Result<(LocalCluster, physical::PitrReport)> {
    let mut report = physical::pitr(repo, req, |_| {}).await?;
    let cluster = report
        .cluster
        .take()
        .ok_or_else(|| Error::Check("the PITR restore did not start a server".into()))?;
    Ok((cluster, report))
}

// ------------------------------------------------------------ validation

/// Validates the database at `target` as the source after trade `last`:
/// amcheck, row counts and content per table against the rebuilt
/// reference, and the trading invariants.
async fn validate(
    sb: &mut Sandbox,
    rec: &mut Recorder<'_>,
    rep: &mut ScenarioReport,
    label: &str,
    target: &PgTarget,
    last: u64,
) -> Result<()> {
    let checks = rec
        .step(&format!("amcheck on {label}"), amcheck(target, label))
        .await?;
    rep.validations.push(checks);
    let reference = target.with_database(&sb.reference_name());
    let (sessions, trades) = (sb.opts.sessions, sb.opts.trades);
    let (expected, actual) = rec
        .step(
            &format!("{label} compared with the source at trade #{last}"),
            async {
                sample::load_reference(&reference, sessions, trades, last).await?;
                let expected = sample::content_fingerprint(&reference).await;
                let _ = cfdr_pg::admin::drop_database(
                    &target.with_database("postgres"),
                    &reference.database,
                )
                .await;
                Ok((expected?, sample::content_fingerprint(target).await?))
            },
        )
        .await?;
    let count = |fp: &[(String, String)], table: &str| {
        fp.iter()
            .find(|(t, _)| t == table)
            .map(|(_, v)| v.split(':').next().unwrap_or("").to_owned())
    };
    let mut counts = Vec::new();
    let mut counts_ok = expected.len() == actual.len();
    for (table, _) in &expected {
        // Tables are `schema.name`; the other entries (large objects,
        // sequence, grants) have no row count.
        if !table.contains('.') {
            continue;
        }
        let (want, got) = (count(&expected, table), count(&actual, table));
        counts_ok &= want == got;
        counts.push(format!(
            "{table} {}{}",
            got.as_deref().unwrap_or("missing"),
            if want == got {
                String::new()
            } else {
                format!(" (source {})", want.unwrap_or_default())
            }
        ));
    }
    rep.validations.push(Validation {
        name: format!("row counts of {label} equal the source at trade #{last}"),
        passed: counts_ok,
        detail: counts.join(", "),
    });
    let differing: Vec<&str> = expected
        .iter()
        .filter(|e| !actual.contains(e))
        .map(|(t, _)| t.as_str())
        .collect();
    rep.validations.push(Validation {
        name: format!("content hash of each table of {label} equals the source at trade #{last}"),
        passed: differing.is_empty() && expected.len() == actual.len(),
        detail: if differing.is_empty() {
            format!("{} tables and objects equal", expected.len())
        } else {
            format!("differ: {}", differing.join(", "))
        },
    });
    invariants(rec, rep, label, target).await
}

/// The trading invariants of the sample schema on `target`, as a validation.
pub(crate) async fn invariants(
    rec: &mut Recorder<'_>,
    rep: &mut ScenarioReport,
    label: &str,
    target: &PgTarget,
) -> Result<()> {
    let violations = rec
        .step(&format!("trading invariants on {label}"), async {
            Ok(sample::check_invariants(target).await?)
        })
        .await?;
    let broken: Vec<String> = violations
        .iter()
        .filter(|(_, n)| *n != 0)
        .map(|(name, n)| format!("{name}: {n} violations"))
        .collect();
    rep.validations.push(Validation {
        name: format!("trading invariants hold on {label}"),
        passed: broken.is_empty(),
        detail: if broken.is_empty() {
            violations
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            broken.join("; ")
        },
    });
    Ok(())
}

/// amcheck over every B-tree index and every heap of the database.
pub(crate) async fn amcheck(target: &PgTarget, label: &str) -> Result<Validation> {
    let mut conn = target.connect().await?;
    conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .await
        .map_err(query_err("installing amcheck", target))?;
    let indexes: i64 = sqlx::query_scalar(
        "SELECT count(bt_index_check(c.oid, true)::text) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND c.relpersistence <> 't' AND i.indisvalid",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(query_err("amcheck bt_index_check", target))?;
    let row = sqlx::query(
        "SELECT count(DISTINCT c.oid), count(v.blkno) FROM pg_class c LEFT JOIN LATERAL verify_heapam(c.oid) v ON true \
         WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence = 'p'",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(query_err("amcheck verify_heapam", target))?;
    let (heaps, corrupt): (i64, i64) = (row.get(0), row.get(1));
    Ok(Validation {
        name: format!("amcheck finds no corruption in {label}"),
        passed: corrupt == 0,
        detail: format!(
            "{indexes} B-tree indexes checked with heapallindexed, {heaps} heaps verified, {corrupt} corrupt tuples"
        ),
    })
}

/// Records the RPO from the ledger.
fn measure_rpo(sb: &Sandbox, rep: &mut ScenarioReport, before: u64, after: u64) -> Result<()> {
    let (secs, trades) = sb
        .workload()?
        .ledger
        .lock()
        .map(|l| l.loss(before, after))
        .map_err(|_| Error::Check("the trade ledger is poisoned".into()))?;
    rep.last_trade_before = Some(before);
    rep.last_trade_after = Some(after);
    rep.rpo_actual_seconds = Some(secs);
    rep.rpo_trades = Some(trades);
    Ok(())
}

// --------------------------------------------------- accidental deletion

/// Runs the bad `delete` and returns the moment the drill records for it,
/// the rows it deleted, and the WAL position after its commit. The moment
/// is the server's clock in the deleting transaction's snapshot, so every
/// row it deletes committed before that moment.
pub(crate) async fn timed_delete(live: &PgTarget, delete: &str) -> Result<(Timestamp, u64, Lsn)> {
    let mut conn = live.connect().await?;
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(query_err("beginning", live))?;
    let micros: i64 =
        sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
            .fetch_one(&mut conn)
            .await
            .map_err(query_err("reading the clock", live))?;
    let deleted = sqlx::query(delete)
        .execute(&mut conn)
        .await
        .map_err(query_err("the bad DELETE", live))?
        .rows_affected();
    conn.execute("COMMIT")
        .await
        .map_err(query_err("committing", live))?;
    let at = Timestamp::from_microsecond(micros)
        .map_err(|e| Error::Check(format!("server clock: {e}")))?;
    let end: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut conn)
        .await
        .map_err(query_err("reading the WAL position", live))?;
    let end: Lsn = end
        .parse()
        .map_err(|e| Error::Check(format!("the server's WAL position: {e}")))?;
    Ok((at, deleted, end))
}

async fn accidental_deletion(
    sb: &mut Sandbox,
    rec: &mut Recorder<'_>,
    rep: &mut ScenarioReport,
) -> Result<()> {
    let live = sb.primary()?.target(DATABASE);
    // The drill's own record of the moment (see timed_delete).
    let (before_time, deleted, delete_end) = rec
        .step(
            "bad DELETE FROM trades WHERE symbol = 'ETH-USD' during live trading",
            timed_delete(&live, "DELETE FROM trades WHERE symbol = 'ETH-USD'"),
        )
        .await?;
    let disaster = started(rec);
    let before = sb
        .workload()?
        .ledger
        .lock()
        .ok()
        .and_then(|l| l.last_at(before_time))
        .map_or(0, |(id, _)| id);
    // With the WAL stream running, the WAL through the DELETE reaches the
    // repository within about a second, with no forced segment switch.
    let segment = if sb.stream.is_some() {
        rec.step(
            "WAL through the DELETE safe in the repository (cfdr-wal stream)",
            stream_safe(sb.repo()?, delete_end),
        )
        .await?;
        None
    } else {
        let postgres = sb.primary()?.target("postgres");
        Some(
            rec.step(
                "WAL through the DELETE archived",
                switch_and_archive(&postgres),
            )
            .await?,
        )
    };
    let base = sb
        .base
        .clone()
        .ok_or_else(|| Error::Check("no base backup".into()))?;
    let repo = sb.repo()?.clone();
    let mut hidden = None;
    if sb.injects(Fault::MissingWal) {
        hidden = Some(
            rec.step("planted fault: an archived WAL segment deleted", async {
                let details = PhysicalDetails::of(&base)?;
                let next = WalSegment {
                    segno: WalSegment::containing(
                        details.wal.timeline,
                        details.wal.stop,
                        details.wal_segment_size,
                    )
                    .segno
                        + 1,
                    timeline: details.wal.timeline,
                };
                let key =
                    cfdr_storage::wal_archive::wal_key(&next.file_name(details.wal_segment_size));
                let bytes = repo.store().get(&key).await?;
                repo.store().delete_many([key.clone()]).await?;
                Ok((key, bytes))
            })
            .await?,
        );
    }
    let fresh = match &segment {
        Some(segment) => {
            rec.step("repository is current", check_fresh(&repo, segment))
                .await
        }
        None => Ok(()),
    };
    let continuous = rec
        .step(
            "WAL continuity from the base backup",
            check_continuity(&repo, &base),
        )
        .await;
    // The planted gap goes away with its scenario: later scenarios see
    // only their own faults.
    if let Some((key, bytes)) = hidden {
        repo.store().put(&key, bytes).await?;
    }
    fresh?;
    continuous?;
    let (restored, report) = rec
        .step(
            &format!("PITR to {before_time}, just before the DELETE"),
            pitr_into(sb, "pitr-before-delete", RecoveryTarget::Time(before_time)),
        )
        .await?;
    rec.bytes(report.backup.stored_size());
    let copy = restored.target(DATABASE);
    sb.scratch.push(restored);
    let after = sample::last_trade(&copy).await?;
    validate(sb, rec, rep, "the PITR copy", &copy, after).await?;
    let present: i64 = {
        let mut conn = copy.connect().await?;
        sqlx::query_scalar("SELECT count(*) FROM trades WHERE symbol = 'ETH-USD'")
            .fetch_one(&mut conn)
            .await
            .map_err(query_err("counting", &copy))?
    };
    rep.validations.push(Validation {
        name: "the deleted trades are in the PITR copy".into(),
        passed: u64::try_from(present).unwrap_or(0) >= deleted,
        detail: format!("{deleted} deleted, {present} ETH-USD trades in the copy"),
    });
    let repaired = rec
        .step(
            "deleted trades copied back into the live database",
            repair(&copy, &live),
        )
        .await?;
    rep.validations.push(Validation {
        name: "live trading data whole again".into(),
        passed: repaired == deleted,
        detail: format!("{repaired} of {deleted} deleted trades restored"),
    });
    rep.rto_actual_seconds = Some(since(disaster));
    measure_rpo(sb, rep, before, after)?;
    rec.step("PITR copy stopped", async {
        if let Some(mut c) = sb.scratch.pop() {
            c.stop().await?;
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// Copies the ETH-USD trades the live database lacks from the PITR copy.
async fn repair(copy: &PgTarget, live: &PgTarget) -> Result<u64> {
    let mut from = copy.connect().await?;
    let mut data = Vec::new();
    let mut stream = from
        .copy_out_raw("COPY (SELECT * FROM trades WHERE symbol = 'ETH-USD') TO STDOUT")
        .await
        .map_err(query_err("reading the copy's trades", copy))?;
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.map_err(query_err("reading the copy's trades", copy))?);
    }
    drop(stream);
    let mut to = live.connect().await?;
    to.execute("CREATE TEMP TABLE cfdr_recovered (LIKE trades)")
        .await
        .map_err(query_err("staging", live))?;
    let mut sink = to
        .copy_in_raw("COPY cfdr_recovered FROM STDIN")
        .await
        .map_err(query_err("staging", live))?;
    sink.send(data).await.map_err(query_err("staging", live))?;
    sink.finish().await.map_err(query_err("staging", live))?;
    let n = sqlx::query(
        "INSERT INTO trades SELECT r.* FROM cfdr_recovered r WHERE NOT EXISTS (SELECT 1 FROM trades t WHERE t.id = r.id)",
    )
    .execute(&mut to)
    .await
    .map_err(query_err("copying back", live))?
    .rows_affected();
    Ok(n)
}

// ------------------------------------------------------ replica failover

async fn replica_failover(
    sb: &mut Sandbox,
    rec: &mut Recorder<'_>,
    rep: &mut ScenarioReport,
) -> Result<()> {
    rec.step("the primary dies (immediate stop)", async {
        crash(sb.primary.take()).await
    })
    .await?;
    let disaster = started(rec);
    let before = sb.workload()?.last().map_or(0, |(id, _)| id);
    let standby = sb
        .replica
        .as_ref()
        .ok_or_else(|| Error::Check("the sandbox has no replica".into()))?
        .target("postgres");
    let promotion = promote_standby(rec, rep, &standby, "replica", PATIENCE).await;
    // The promoted replica is the primary from here on, whatever follows.
    sb.primary = sb.replica.take();
    let timeline = promotion?;
    let promoted = standby.with_database(DATABASE);
    let after = sample::last_trade(&promoted).await?;
    validate(sb, rec, rep, "the promoted replica", &promoted, after).await?;
    measure_rpo(sb, rep, before, after)?;
    let repo = sb.repo()?.clone();
    adopt_timeline(rec, &repo, timeline).await?;
    let resumed = Timestamp::now();
    sb.workload()?.switch(Some(promoted.clone()));
    let first = rec
        .step("writes resume on the new primary", async {
            sb.workload()?.wait_trade_after(resumed, PATIENCE).await
        })
        .await?;
    rep.validations.push(Validation {
        name: "trading resumed after failover".into(),
        passed: first > after,
        detail: format!("trade #{first} committed on timeline {timeline}"),
    });
    let segment = rec
        .step(
            &format!("archiving continues on timeline {timeline}"),
            switch_and_archive(&standby),
        )
        .await?;
    rep.rto_actual_seconds = Some(since(disaster));
    let seen_by = if sb.injects(Fault::StaleRepository) {
        sb.stale.clone().unwrap_or(repo)
    } else {
        repo
    };
    rec.step(
        &format!("repository holds {segment}"),
        check_fresh(&seen_by, &segment),
    )
    .await?;
    // The stream lost its server with the primary; it follows the new
    // primary from a fresh spool (what it had received is in the
    // repository).
    if let Some(stream) = sb.stream.take() {
        rec.step("WAL stream of the lost primary stopped", stream.finish())
            .await?;
        rec.step(
            &format!("WAL stream restarted on the new primary (timeline {timeline})"),
            sb.start_stream(&format!("stream-timeline-{timeline}")),
        )
        .await?;
    }
    Ok(())
}

/// Promotes `standby` (the step "<what> promoted") and records whether it
/// writes on a new timeline, which it returns.
pub(crate) async fn promote_standby(
    rec: &mut Recorder<'_>,
    rep: &mut ScenarioReport,
    standby: &PgTarget,
    what: &str,
    wait: Duration,
) -> Result<u32> {
    rec.step(&format!("{what} promoted"), async {
        replica::promote(standby, wait).await?;
        Ok(())
    })
    .await?;
    let timeline = replica::current_timeline(standby).await?;
    rep.validations.push(Validation {
        name: format!("the promoted {what} writes on a new timeline"),
        passed: timeline > 1,
        detail: format!("timeline {timeline}"),
    });
    Ok(timeline)
}

/// The archive adopts the promoted server's `timeline` (a timed step).
pub(crate) async fn adopt_timeline(
    rec: &mut Recorder<'_>,
    repo: &Repository,
    timeline: u32,
) -> Result<()> {
    rec.step(&format!("archive adopts timeline {timeline}"), async {
        WalArchive::new(repo.store().clone())
            .adopt_timeline(timeline)
            .await?;
        Ok(())
    })
    .await
}

// --------------------------------------------------------- database loss

async fn database_loss(
    sb: &mut Sandbox,
    rec: &mut Recorder<'_>,
    rep: &mut ScenarioReport,
) -> Result<()> {
    let archived = last_archived(&sb.primary()?.target("postgres")).await?;
    rec.step("the primary's data directory destroyed under load", async {
        let primary = sb.primary.take();
        let dir = primary.as_ref().map(|c| c.data_dir.clone());
        crash(primary).await?;
        if let Some(dir) = dir {
            std::fs::remove_dir_all(&dir).map_err(Error::io("deleting", &dir))?;
        }
        sb.workload()?.switch(None);
        Ok(())
    })
    .await?;
    let disaster = started(rec);
    let before = sb.workload()?.last().map_or(0, |(id, _)| id);
    if let Some(stream) = sb.stream.take() {
        rec.step(
            "WAL stream shipped what it had received and stopped",
            stream.finish(),
        )
        .await?;
    }
    let repo = sb.repo()?.clone();

    // Physical: newest base backup and every archived segment.
    let physical = async {
        let base = sb
            .base
            .clone()
            .ok_or_else(|| Error::Check("no base backup".into()))?;
        if let Some(segment) = &archived {
            rec.step("repository is current", check_fresh(&repo, segment))
                .await?;
        }
        rec.step(
            "WAL continuity from the base backup",
            check_continuity(&repo, &base),
        )
        .await?;
        if sb.injects(Fault::TruncatedObject) {
            rec.step(
                "planted fault: the base backup's data object cut short",
                async {
                    let object = base
                        .objects
                        .iter()
                        .max_by_key(|o| o.stored.size)
                        .ok_or_else(|| Error::Check("the base backup has no object".into()))?;
                    let bytes = repo.store().get(&object.key).await?;
                    repo.store()
                        .put(&object.key, bytes.slice(..bytes.len() / 2))
                        .await?;
                    Ok(())
                },
            )
            .await?;
        }
        let (restored, report) = rec
            .step(
                "physical restore: newest base backup + all archived WAL (PITR --latest)",
                pitr_into(sb, "pitr-latest", RecoveryTarget::Latest),
            )
            .await?;
        rec.bytes(report.backup.stored_size());
        let copy = restored.target(DATABASE);
        sb.scratch.push(restored);
        let after = sample::last_trade(&copy).await?;
        validate(sb, rec, rep, "the physical restore", &copy, after).await?;
        measure_rpo(sb, rep, before, after)?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = physical {
        record_failure(rep, &e);
    }

    // Logical: newest dump into another new cluster.
    let logical_part = async {
        let manifest = sb
            .logical
            .clone()
            .ok_or_else(|| Error::Check("no logical backup".into()))?;
        if sb.injects(Fault::CorruptObject) {
            rec.step("planted fault: a byte of the logical dump flipped", async {
                let object = manifest
                    .objects
                    .iter()
                    .max_by_key(|o| o.stored.size)
                    .ok_or_else(|| Error::Check("the dump has no object".into()))?;
                let mut bytes = repo.store().get(&object.key).await?.to_vec();
                let mid = bytes.len() / 2;
                if let Some(b) = bytes.get_mut(mid) {
                    *b ^= 0x40;
                }
                repo.store().put(&object.key, bytes).await?;
                Ok(())
            })
            .await?;
        }
        let cluster = rec
            .step("new cluster for the logical restore, with the cluster's roles", async {
                let mut c = LocalCluster::init(&sb.bin, &sb.path("logical"), &sb.path("sock")).await?;
                c.start(&[("autovacuum", "off")]).await?;
                let target = c.target("postgres");
                sb.scratch.push(c);
                let mut conn = target.connect().await?;
                conn.execute(sample::GLOBALS)
                    .await
                    .map_err(query_err("creating the roles", &target))?;
                Ok(target)
            })
            .await?;
        let opts = logical::LogicalOptions {
            bin_dir: sb.opts.pg_bin.clone(),
            ..logical::LogicalOptions::default()
        };
        let req = logical::RestoreRequest {
            target_db: Some(DATABASE.into()),
            jobs: 2,
            ..logical::RestoreRequest::default()
        };
        rec.step(&format!("logical restore of {}", manifest.id), async {
            logical::restore(&repo, &cluster, &manifest, &opts, &req, |_| {}).await?;
            Ok(())
        })
        .await?;
        rec.bytes(manifest.stored_size());
        let copy = cluster.with_database(DATABASE);
        let last = sample::last_trade(&copy).await?;
        validate(sb, rec, rep, "the logical restore", &copy, last).await?;
        let (secs, trades) = sb
            .workload()?
            .ledger
            .lock()
            .map(|l| l.loss(before, last))
            .map_err(|_| Error::Check("the trade ledger is poisoned".into()))?;
        rep.validations.push(Validation {
            name: "the logical restore holds the dump's snapshot (a fallback: it loses what came after the dump)".into(),
            passed: true,
            detail: format!("last trade #{last}: {trades} trades / {secs:.1} s behind the disaster"),
        });
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = logical_part {
        record_failure(rep, &e);
    }
    if rep.failures.is_empty() {
        rep.rto_actual_seconds = Some(since(disaster));
    }
    Ok(())
}

// ----------------------------------------------------------- region loss

async fn region_loss(
    sb: &mut Sandbox,
    rec: &mut Recorder<'_>,
    rep: &mut ScenarioReport,
) -> Result<()> {
    let secondary_dir = rec
        .step(
            "the region is lost: primary server and primary repository destroyed",
            async {
                // The copy stops with the region: what the follower had
                // not copied yet is lost with the primary repository.
                let follower = sb
                    .follower
                    .take()
                    .ok_or_else(|| Error::Check("the sandbox has no off-region copy".into()))?;
                let dir = follower.dir.clone();
                let copied = follower.stop().await;
                let primary = sb.primary.take();
                let data = primary.as_ref().map(|c| c.data_dir.clone());
                crash(primary).await?;
                // The stream ships into the primary repository: it goes
                // with the region.
                if let Some(stream) = sb.stream.take() {
                    stream.finish().await?;
                }
                if let Some(data) = data {
                    std::fs::remove_dir_all(&data).map_err(Error::io("deleting", &data))?;
                }
                sb.workload()?.switch(None);
                let repo = sb.path("repo");
                sb.repo = None;
                std::fs::remove_dir_all(&repo).map_err(Error::io("deleting", &repo))?;
                copied?;
                Ok(dir)
            },
        )
        .await?;
    let disaster = started(rec);
    let before = sb.workload()?.last().map_or(0, |(id, _)| id);
    let spool = sb.path("spool-secondary");
    let secondary = rec
        .step("secondary repository opened", async {
            std::fs::create_dir_all(&spool).map_err(Error::io("creating", &spool))?;
            // The restored server's user runs `cfdr-wal fetch` on it.
            cfdr_pg::chown_tree(&secondary_dir)?;
            cfdr_pg::chown_tree(&spool)?;
            let store = cfdr_storage::StorageOptions::from_url(format!(
                "file://{}",
                secondary_dir.display()
            ))
            .build()?;
            Ok(Repository::open(store).await?)
        })
        .await?;
    let base = sb
        .base
        .clone()
        .ok_or_else(|| Error::Check("no base backup".into()))?;
    rec.step(
        "WAL continuity from the base backup on the secondary",
        check_continuity(&secondary, &base),
    )
    .await?;
    let req = pitr_request(
        RecoveryTarget::Latest,
        sb.path("pitr-secondary"),
        physical::fetch_command(
            &sb.wal_exe,
            None,
            Some(&format!("file://{}", secondary_dir.display())),
            &spool,
            0,
        )?,
        sb.opts.objectives.rto_database,
        sb.opts.pg_bin.clone(),
        None,
    );
    let (restored, report) = rec
        .step(
            "restore from the secondary: newest base backup + all copied WAL (PITR --latest)",
            start_pitr(&secondary, &req),
        )
        .await?;
    rec.bytes(report.backup.stored_size());
    let copy = restored.target(DATABASE);
    sb.scratch.push(restored);
    let after = sample::last_trade(&copy).await?;
    validate(sb, rec, rep, "the restore from the secondary", &copy, after).await?;
    measure_rpo(sb, rep, before, after)?;
    rep.validations.push(Validation {
        name: "restored from the secondary repository only".into(),
        passed: true,
        detail: format!(
            "the primary repository was deleted before the restore; base backup {} and its WAL read from {}",
            report.backup.id,
            secondary_dir.display()
        ),
    });
    if rep.failures.is_empty() {
        rep.rto_actual_seconds = Some(since(disaster));
    }
    Ok(())
}
