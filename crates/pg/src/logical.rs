//! Logical backups (`pg_dump` custom format streamed through the codec into
//! the repository), restores into a new database with verification and an
//! optional name swap, and the restore test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfdr_storage::{BackupId, CheckKind, CheckRecord, EncodeOptions, Manifest, Repository};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Executor, Row};

use crate::admin;
pub use crate::admin::DatabaseLocale;
use crate::db_properties;
use crate::error::{Error, Result};
use crate::restore_stream::Load;
use crate::target::PgTarget;
use crate::tools::{PgBin, ToolOutput};

/// Kind recorded in manifests of logical backups.
pub const KIND: &str = "logical";
const DUMP_OBJECT: &str = "dump.pgdump";

/// Settings of logical backup and restore (the `[pg]` config table).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogicalOptions {
    /// Directory of pg_dump/pg_restore; found automatically when unset.
    pub bin_dir: Option<PathBuf>,
    /// Tables whose exact row counts are recorded and checked on restore.
    pub watched_tables: Vec<String>,
    /// Extensions re-created after a restore where the server has them.
    pub extensions: Vec<String>,
    /// Command run before a swap (the runbook's "stop application services").
    pub before_restore: Option<String>,
    /// Command run after a swap ("restart application services").
    pub after_restore: Option<String>,
    /// Query the restore test runs on the restored database.
    pub smoke_query: String,
    /// Database RTO in seconds (runbook: 10 minutes).
    pub rto_secs: u64,
    /// Server settings for the restore sessions (`name=value`, passed as
    /// PGOPTIONS). The default lets index builds sort in memory, the largest
    /// part of a restore after COPY.
    pub restore_settings: Vec<String>,
    /// Physical backups: the server compresses the base backup (zstd,
    /// PostgreSQL 15+); false pipes the raw tar to this host's codec.
    pub server_compression: bool,
}

impl Default for LogicalOptions {
    fn default() -> Self {
        Self {
            bin_dir: None,
            watched_tables: vec!["trading_sessions".into(), "trades".into()],
            extensions: vec![
                "timescaledb".into(),
                "vector".into(),
                "pg_stat_statements".into(),
            ],
            before_restore: None,
            after_restore: None,
            smoke_query: "SELECT 1".into(),
            rto_secs: 600,
            restore_settings: vec!["maintenance_work_mem=512MB".into()],
            server_compression: true,
        }
    }
}

/// What a logical backup's manifest records beyond the common fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalDetails {
    /// Database dumped.
    pub database: String,
    /// Server version string.
    pub server_version: String,
    /// Major version of pg_dump used.
    pub pg_dump_major: u32,
    /// User tables at dump time.
    pub tables: Vec<String>,
    /// Exact row counts of the watched tables, read in the dump's snapshot.
    pub row_counts: BTreeMap<String, i64>,
    /// Extensions installed in the source database.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// The source database's encoding and locale, which a restore gives
    /// its new database. Absent in backups made before cfdr recorded it:
    /// those restore with the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<DatabaseLocale>,
}

impl LogicalDetails {
    /// Reads the details out of a manifest.
    pub fn of(manifest: &Manifest) -> Result<Self> {
        serde_json::from_value(serde_json::Value::Object(manifest.details.clone())).map_err(|e| {
            Error::Storage(cfdr_storage::Error::InvalidDocument {
                key: format!("{}manifest.json", manifest.id.prefix()),
                reason: format!("logical backup details: {e}"),
            })
        })
    }
}

/// Takes a logical backup of `target.database` of schedule `class`.
///
/// The dump and the watched row counts come from one exported snapshot, so
/// they agree. A failed or killed `pg_dump` aborts the upload: no manifest
/// is written and the error carries pg_dump's stderr.
pub async fn backup(
    repo: &Repository,
    target: &PgTarget,
    class: &str,
    opts: &LogicalOptions,
    encode: &EncodeOptions,
) -> Result<Manifest> {
    let (version_num, server_version) = admin::server_version(target).await?;
    let bin = PgBin::locate(opts.bin_dir.as_deref(), Some(version_num / 10_000)).await?;

    let mut conn = target.connect().await?;
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(admin::query_error(
            "starting the snapshot transaction",
            target,
        ))?;
    let snapshot: String = sqlx::query("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await
        .map_err(admin::query_error("exporting the snapshot", target))?
        .get(0);
    let tables = admin::user_tables(&mut conn, target).await?;
    let row_counts = admin::row_counts(&mut conn, target, &opts.watched_tables).await?;
    let extensions = admin::installed_extensions(&mut conn, target).await?;
    let locale = admin::database_locale(&mut conn, target).await?;

    // A custom-format archive always carries the database's own entries
    // (owner, comment, privileges, per-database and per-role settings),
    // as `pg_dump --create` writes them; restore applies them to its new
    // database (crate::db_properties).
    let mut cmd = bin.command("pg_dump", false)?;
    cmd.args(["--format=custom", "--compress=0", "--no-password"])
        .arg(format!("--snapshot={snapshot}"))
        .envs(target.tool_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().map_err(Error::io("cannot start pg_dump"))?;
    let source = ToolOutput::new(child, "pg_dump");

    let mut writer = repo.begin_backup(KIND, Some(class))?;
    // The name tells how to decode it: `.zst`, `.gz`, `.age` last.
    let name = encode.object_name(DUMP_OBJECT);
    let stored = writer.put_encoded(&name, source, encode).await;
    // The snapshot must stay open until pg_dump is done; end it either way.
    let _ = conn.execute("ROLLBACK").await;
    // Closed now, not whenever the server notices: a swap right after a
    // backup counts the sessions on the live database.
    let _ = conn.close().await;
    if let Err(e) = stored {
        return Err(match e {
            cfdr_storage::Error::Source { source, .. } => {
                crate::tools::tool_error(source, "pg_dump")
            }
            other => Error::Storage(other),
        });
    }
    let details = LogicalDetails {
        database: target.database.clone(),
        server_version,
        pg_dump_major: bin.major,
        tables,
        row_counts,
        extensions,
        locale: Some(locale),
    };
    let serde_json::Value::Object(map) = serde_json::to_value(&details).unwrap_or_default() else {
        unreachable!("LogicalDetails serializes to an object")
    };
    Ok(writer.commit(map).await?)
}

/// Which backup to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The newest.
    Latest,
    /// A given id.
    Id(BackupId),
    /// The newest that finished before this time.
    Before(Timestamp),
}

/// Finds the logical backup `sel` picks (of `database` when given).
pub async fn find(repo: &Repository, sel: &Selector, database: Option<&str>) -> Result<Manifest> {
    if let Selector::Id(id) = sel {
        return Ok(repo.manifest(id).await?);
    }
    let mut candidates = Vec::new();
    for id in repo
        .backup_ids()
        .await?
        .into_iter()
        .rev()
        .filter(|id| id.kind() == KIND)
    {
        let m = repo.manifest(&id).await?;
        let db_ok = database.is_none_or(|d| LogicalDetails::of(&m).is_ok_and(|x| x.database == d));
        let time_ok = match sel {
            Selector::Before(t) => m.finished < *t,
            _ => true,
        };
        if db_ok && time_ok {
            candidates.push(m);
            break;
        }
    }
    candidates.pop().ok_or_else(|| Error::NoBackup {
        what: match sel {
            Selector::Before(t) => format!("before {t}"),
            _ => database.map_or("at all".into(), |d| format!("of database {d}")),
        },
    })
}

/// One timed step of a restore.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What was done.
    pub name: String,
    /// How long it took.
    pub took: Duration,
}

/// Collects timed steps, reporting each to a callback as it completes.
pub(crate) struct Steps<'a, F> {
    list: Vec<Step>,
    on_step: &'a mut F,
}

impl<'a, F: FnMut(&Step)> Steps<'a, F> {
    pub(crate) fn new(on_step: &'a mut F) -> Self {
        Self {
            list: Vec::new(),
            on_step,
        }
    }

    /// Records `name` as done, having started at `since`.
    pub(crate) fn done(&mut self, name: String, since: Instant) {
        let s = Step {
            name,
            took: since.elapsed(),
        };
        (self.on_step)(&s);
        self.list.push(s);
    }

    pub(crate) fn into_vec(self) -> Vec<Step> {
        self.list
    }
}

/// Restore settings beyond [`LogicalOptions`].
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// Database to create (default `<db>_restore_<id>`).
    pub target_db: Option<String>,
    /// Swap names afterwards: live becomes `<db>_before_<id>`.
    pub swap: bool,
    /// Sessions loading rows at once. Above 1 the stored dump is read three
    /// times (schema, data dealt out to the sessions, indexes), never
    /// staged on disk; 0 or 1: one pg_restore reads it once.
    pub jobs: u32,
    /// Identities for encrypted backups.
    pub identities: Option<Arc<cfdr_secrets::Identities>>,
    /// Keep the restored database when verification fails (for inspection).
    pub keep_failed: bool,
}

impl Default for RestoreRequest {
    /// A new database, no swap, one copy session per CPU core.
    fn default() -> Self {
        Self {
            target_db: None,
            swap: false,
            jobs: default_jobs(),
            identities: None,
            keep_failed: false,
        }
    }
}

/// One copy session per CPU core (at most 8): COPY parsing in the server
/// takes a core per session.
pub fn default_jobs() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8) as u32)
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The backup restored.
    pub id: BackupId,
    /// The database holding the restored data now.
    pub database: String,
    /// The previous live database after a swap.
    pub previous: Option<String>,
    /// Steps with durations.
    pub steps: Vec<Step>,
    /// Total time.
    pub total: Duration,
    /// Extensions (re-)created.
    pub extensions: Vec<String>,
}

/// `20261125T231500.123Z-logical-ab12` -> `20261125t231500_ab12`: the
/// unique part of the names cfdr gives databases.
pub fn short_id(id: &BackupId) -> String {
    let s = id.as_str();
    let time: String = s.split('.').next().unwrap_or(s).to_ascii_lowercase();
    let suffix = s.rsplit('-').next().unwrap_or_default();
    format!("{time}_{suffix}")
}

/// `<db>_<role>_<short id>`, with `<db>` cut (at a character boundary) so
/// the whole fits PostgreSQL's 63 bytes: the server would otherwise cut
/// the unique end off.
fn fitted_name(db: &str, role: &str, id: &BackupId) -> String {
    let tail = format!("_{role}_{}", short_id(id));
    let mut keep = db
        .len()
        .min(admin::MAX_NAME_BYTES.saturating_sub(tail.len()));
    while !db.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{tail}", &db[..keep])
}

/// The database a restore of backup `id` of `db` creates by default:
/// `<db>_restore_<short id>`, `<db>` shortened to fit 63 bytes.
pub fn restore_name(db: &str, id: &BackupId) -> String {
    fitted_name(db, "restore", id)
}

/// The name the live database `db` keeps after a swap to backup `id`:
/// `<db>_before_<short id>`, `<db>` shortened to fit 63 bytes.
pub fn before_name(db: &str, id: &BackupId) -> String {
    fitted_name(db, "before", id)
}

/// Restores `manifest` into a new database on the server of `server`, verifies
/// tables and watched row counts, and swaps names if asked. On any failure
/// before the swap the new database is dropped; the live one is never touched.
pub async fn restore(
    repo: &Repository,
    server: &PgTarget,
    manifest: &Manifest,
    opts: &LogicalOptions,
    req: &RestoreRequest,
    mut on_step: impl FnMut(&Step),
) -> Result<RestoreReport> {
    let started = Instant::now();
    // DDL on databases runs from the maintenance database: a database
    // cannot be renamed or dropped over a connection to itself.
    let server = &server.with_database("postgres");
    let details = LogicalDetails::of(manifest)?;
    let live = details.database.clone();
    let target_db = req
        .target_db
        .clone()
        .unwrap_or_else(|| restore_name(&live, &manifest.id));
    let mut steps = Steps::new(&mut on_step);

    let t = Instant::now();
    admin::check_name(&target_db)?;
    if req.swap {
        // Refused now rather than at the rename after a whole restore.
        before_free(server, &live, &target_db, &manifest.id).await?;
    }
    // Read before anything is created: a dump whose table of contents
    // cannot be read leaves nothing to clean up.
    let object = manifest.objects.first().ok_or_else(|| Error::NoBackup {
        what: format!("object in {}", manifest.id),
    })?;
    let properties = db_properties::read(repo.store(), object, req.identities.clone()).await?;
    admin::create_database_like(server, &target_db, details.locale.as_ref()).await?;
    steps.done(
        format!(
            "create database {target_db} ({})",
            details
                .locale
                .as_ref()
                .map_or("server's default encoding and locale".into(), |l| l
                    .to_string())
        ),
        t,
    );

    let restored = server.with_database(&target_db);
    let outcome = async {
        load_dump(repo, &restored, manifest, opts, req, |name, t| {
            steps.done(name, t)
        })
        .await?;
        let t = Instant::now();
        // The runbook's extensions, where the source had them and the
        // server offers them (a dump may lack CREATE EXTENSION when the
        // extension was installed by hand into another schema).
        let wanted: Vec<String> = opts
            .extensions
            .iter()
            .filter(|e| details.extensions.contains(e))
            .cloned()
            .collect();
        let ext = admin::ensure_extensions(&restored, &wanted).await?;
        steps.done(
            format!(
                "extensions ({})",
                if ext.is_empty() {
                    "none available".into()
                } else {
                    ext.join(", ")
                }
            ),
            t,
        );
        let t = Instant::now();
        check(&restored, manifest, &details, opts).await?;
        steps.done("verify tables and row counts".into(), t);
        // Last, once loaded and verified: settings such as
        // default_transaction_read_only or a connection limit would get in
        // the way of the restore sessions.
        let t = Instant::now();
        properties.apply(server, &target_db).await?;
        steps.done(format!("database properties ({})", properties.summary()), t);
        Ok::<_, Error>(ext)
    }
    .await;
    let extensions = match outcome {
        Ok(ext) => ext,
        Err(e) => {
            let keep = req.keep_failed && matches!(e, Error::Mismatch { .. });
            if !keep && let Err(drop_err) = admin::drop_database(server, &target_db).await {
                tracing::warn!(error = %drop_err, database = %target_db, "cleanup of the failed restore target failed");
            }
            return Err(e);
        }
    };

    let mut previous = None;
    let mut database = target_db.clone();
    if req.swap {
        let t = Instant::now();
        previous = swap(
            server,
            manifest,
            &live,
            &target_db,
            req.target_db.is_some(),
            opts,
        )
        .await?;
        database = live.clone();
        steps.done(swapped_step(&live, previous.as_deref()), t);
    }
    Ok(RestoreReport {
        id: manifest.id.clone(),
        database,
        previous,
        steps: steps.into_vec(),
        total: started.elapsed(),
        extensions,
    })
}

/// Makes a database restored earlier from `manifest` the live one, as
/// `--swap` would have: for a swap that was refused (sessions were
/// connected) after the restore and its verification. The tables and
/// watched row counts are checked against the manifest again first.
/// `target_db`: the restored database (default `<db>_restore_<id>`).
pub async fn swap_restored(
    server: &PgTarget,
    manifest: &Manifest,
    opts: &LogicalOptions,
    target_db: Option<&str>,
    mut on_step: impl FnMut(&Step),
) -> Result<RestoreReport> {
    let started = Instant::now();
    let server = &server.with_database("postgres");
    let details = LogicalDetails::of(manifest)?;
    let live = details.database.clone();
    let restored = target_db.map_or_else(|| restore_name(&live, &manifest.id), str::to_owned);
    admin::check_name(&restored)?;
    let refuse = |reason: String| Error::Swap {
        live: live.clone(),
        restored: restored.clone(),
        reason,
    };
    if restored == live {
        return Err(refuse(
            "that is the live database itself; name the restored one with --target-db".into(),
        ));
    }
    if !admin::database_exists(server, &restored).await? {
        return Err(refuse(format!(
            "there is no database {restored}: restore backup {} first (cfdr-restore logical {} --swap)",
            manifest.id, manifest.id
        )));
    }
    let mut steps = Steps::new(&mut on_step);
    let t = Instant::now();
    check(&server.with_database(&restored), manifest, &details, opts).await?;
    steps.done(format!("verify tables and row counts of {restored}"), t);
    let t = Instant::now();
    let previous = swap(
        server,
        manifest,
        &live,
        &restored,
        target_db.is_some(),
        opts,
    )
    .await?;
    steps.done(swapped_step(&live, previous.as_deref()), t);
    Ok(RestoreReport {
        id: manifest.id.clone(),
        database: live,
        previous,
        steps: steps.into_vec(),
        total: started.elapsed(),
        extensions: Vec::new(),
    })
}

fn swapped_step(live: &str, previous: Option<&str>) -> String {
    format!(
        "swap: {live} is live, previous kept as {}",
        previous.unwrap_or("-")
    )
}

/// Renames `live` to `<live>_before_<id>` and `restored` to `live`, between
/// the hooks; the previous name when there was a live database.
/// `named`: the restored database was named by --target-db (the retry
/// advice then names it too).
async fn swap(
    server: &PgTarget,
    manifest: &Manifest,
    live: &str,
    restored: &str,
    named: bool,
    opts: &LogicalOptions,
) -> Result<Option<String>> {
    let refuse = |reason: String| Error::Swap {
        live: live.to_owned(),
        restored: restored.to_owned(),
        reason,
    };
    // Checked before the hook stops anything.
    let before = before_free(server, live, restored, &manifest.id).await?;
    run_hook("before_restore", opts.before_restore.as_deref()).await?;
    let sessions = admin::sessions_on(server, live).await?;
    if sessions > 0 {
        let target = if named {
            format!(" --target-db {}", shell_word(restored))
        } else {
            String::new()
        };
        return Err(refuse(format!(
            "{sessions} sessions are connected to it. {restored} stays restored and verified: stop the applications (before_restore hook) and swap it in without restoring again with `cfdr-restore logical {} --swap-only{target}`",
            manifest.id
        )));
    }
    let mut previous = None;
    if admin::database_exists(server, live).await? {
        admin::rename_database(server, live, &before).await?;
        previous = Some(before);
    }
    if let Err(e) = admin::rename_database(server, restored, live).await {
        // Put the live database back under its name.
        if let Some(before) = &previous
            && let Err(back) = admin::rename_database(server, before, live).await
        {
            tracing::error!(error = %back, "renaming {before} back to {live} failed: rename it by hand");
        }
        return Err(e);
    }
    run_hook("after_restore", opts.after_restore.as_deref()).await?;
    Ok(previous)
}

/// The name the live database will keep, refused when a database has it
/// already (a leftover of an earlier swap to the same backup): the rename
/// would fail.
async fn before_free(
    server: &PgTarget,
    live: &str,
    restored: &str,
    id: &BackupId,
) -> Result<String> {
    let before = before_name(live, id);
    if admin::database_exists(server, &before).await? {
        return Err(Error::Swap {
            live: live.to_owned(),
            restored: restored.to_owned(),
            reason: format!(
                "{before} (where the live database would be kept) exists already; rename or drop it, then run the swap again"
            ),
        });
    }
    Ok(before)
}

/// `name` as one shell word in printed advice.
fn shell_word(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        name.to_owned()
    } else {
        format!("'{}'", name.replace('\'', "'\\''"))
    }
}

async fn load_dump(
    repo: &Repository,
    restored: &PgTarget,
    manifest: &Manifest,
    opts: &LogicalOptions,
    req: &RestoreRequest,
    done: impl FnMut(String, Instant),
) -> Result<()> {
    let object = manifest.objects.first().ok_or_else(|| Error::NoBackup {
        what: format!("object in {}", manifest.id),
    })?;
    let (version_num, _) = admin::server_version(restored).await?;
    let bin = PgBin::locate(opts.bin_dir.as_deref(), Some(version_num / 10_000)).await?;
    Load {
        store: repo.store(),
        object,
        identities: req.identities.clone(),
        bin: &bin,
        target: restored,
        settings: &opts.restore_settings,
        jobs: req.jobs,
    }
    .run(done)
    .await
}

async fn check(
    restored: &PgTarget,
    manifest: &Manifest,
    details: &LogicalDetails,
    opts: &LogicalOptions,
) -> Result<()> {
    let mut conn = restored.connect().await?;
    let tables = admin::user_tables(&mut conn, restored).await?;
    let mut problems: Vec<String> = details
        .tables
        .iter()
        .filter(|t| !tables.contains(t))
        .map(|t| format!("table {t} missing"))
        .collect();
    let counts = admin::row_counts(&mut conn, restored, &opts.watched_tables).await?;
    // Closed before returning: a swap renames this database next, which
    // the server refuses while a session is still on it.
    let _ = conn.close().await;
    for (table, want) in &details.row_counts {
        match counts.get(table) {
            Some(got) if got == want => {}
            got => problems.push(format!(
                "{table}: {} rows, backup recorded {want}",
                got.map_or("no".into(), i64::to_string)
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Mismatch {
            database: restored.database.clone(),
            id: manifest.id.to_string(),
            mismatches: problems.join("; "),
        })
    }
}

async fn run_hook(name: &'static str, command: Option<&str>) -> Result<()> {
    let Some(command) = command else {
        return Ok(());
    };
    let out = tokio::process::Command::new("/bin/sh")
        .args(["-c", command])
        .output()
        .await
        .map_err(Error::io(format!("cannot run hook {name}")))?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_owned();
    tracing::info!(hook = name, %command, %output, "hook ran");
    if !out.status.success() {
        return Err(Error::Hook {
            name,
            command: command.into(),
            status: out.status.to_string(),
            output,
        });
    }
    Ok(())
}

/// Outcome of a restore test.
#[derive(Clone, Debug)]
pub struct RestoreTest {
    /// Backup tested.
    pub id: BackupId,
    /// Checks passed, in order.
    pub passed: Vec<String>,
    /// The failure, if any.
    pub failure: Option<String>,
    /// Restore duration.
    pub restore: Duration,
}

/// The runbook's monthly restore test: restore into a scratch database,
/// verify checksums, tables, row counts and the smoke query, drop it.
pub async fn restore_test(
    repo: &Repository,
    server: &PgTarget,
    manifest: &Manifest,
    opts: &LogicalOptions,
    identities: Option<Arc<cfdr_secrets::Identities>>,
) -> Result<RestoreTest> {
    let scratch = fitted_name("cfdr", "verify", &manifest.id);
    let server = &server.with_database("postgres");
    let req = RestoreRequest {
        target_db: Some(scratch.clone()),
        identities,
        ..RestoreRequest::default()
    };
    let mut result = RestoreTest {
        id: manifest.id.clone(),
        passed: Vec::new(),
        failure: None,
        restore: Duration::ZERO,
    };
    match restore(repo, server, manifest, opts, &req, |_| {}).await {
        Ok(report) => {
            result.restore = report.total;
            result.passed.extend([
                "checksums".to_owned(),
                "pg_restore".into(),
                "tables and row counts".into(),
            ]);
            let smoke = async {
                let mut conn = server.with_database(&scratch).connect().await?;
                conn.execute(opts.smoke_query.as_str())
                    .await
                    .map_err(|e| Error::Query {
                        what: format!("smoke query {:?}", opts.smoke_query),
                        database: scratch.clone(),
                        reason: e.to_string(),
                    })
            }
            .await;
            match smoke {
                Ok(_) => result.passed.push("smoke query".into()),
                Err(e) => result.failure = Some(e.to_string()),
            }
            admin::drop_database(server, &scratch).await?;
        }
        Err(e) => result.failure = Some(e.to_string()),
    }
    // The outcome is kept beside the backup: `cfdr-backup list` shows it.
    repo.record_check(&result.check_record()).await?;
    Ok(result)
}

impl RestoreTest {
    /// The record of this test stored beside the backup.
    pub fn check_record(&self) -> CheckRecord {
        CheckRecord {
            backup: self.id.clone(),
            kind: CheckKind::RestoreTest,
            time: Timestamp::now(),
            passed: self.failure.is_none(),
            summary: match &self.failure {
                None => format!("passed: {}", self.passed.join(", ")),
                Some(why) => format!("failed after [{}]: {why}", self.passed.join(", ")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_names_fit_63_bytes_and_keep_the_unique_part() {
        let id = BackupId::parse("20261125T231500.123Z-logical-ab12").unwrap();
        assert_eq!(
            restore_name("cryptofunk", &id),
            "cryptofunk_restore_20261125t231500_ab12"
        );
        assert_eq!(
            before_name("cryptofunk", &id),
            "cryptofunk_before_20261125t231500_ab12"
        );
        // 63 bytes of source name, and one with a two-byte character
        // across the cut.
        for db in [
            "d".repeat(63),
            format!("{}é{}", "d".repeat(33), "x".repeat(20)),
        ] {
            for name in [restore_name(&db, &id), before_name(&db, &id)] {
                assert!(name.len() <= 63, "{name} is {} bytes", name.len());
                assert!(name.ends_with("_20261125t231500_ab12"), "{name}");
                assert!(name.starts_with("ddd"), "{name}");
            }
        }
        assert_eq!(
            restore_name(&format!("{}é", "d".repeat(33)), &id).len(),
            62,
            "the cut does not split a character"
        );
    }
}
