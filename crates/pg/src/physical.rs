//! Physical base backups and point-in-time recovery.
//!
//! A base backup is `pg_basebackup -Ft -D - -X fetch` streamed through the
//! codec into one repository object. The tar carries the WAL from its start
//! to its stop LSN (so it restores consistent on its own), and the manifest
//! is committed only after those segments are also in the WAL archive
//! (`cfdr-wal push`), from where PITR replays everything after them.
//!
//! PITR restores the newest base backup that ends before the target into an
//! empty data directory, verifying its checksum while unpacking, then writes
//! `recovery.signal` and the recovery settings into `postgresql.auto.conf`
//! (PostgreSQL 12+ has no `recovery.conf`) so the server replays archived WAL
//! through `cfdr-wal fetch` up to the target and promotes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfdr_retention::{Lsn, WalRange, WalSegment};
use cfdr_storage::wal_archive::{self, ClusterIdentity};
use cfdr_storage::{Compression, EncodeOptions, Manifest, Repository, decode_to};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::admin;
use crate::cluster::{LocalCluster, chown_tree};
use crate::error::{Error, Result};
pub use crate::logical::Step;
use crate::logical::Steps;
use crate::target::PgTarget;
use crate::tools::{PgBin, ToolOutput};

/// Kind recorded in manifests of physical base backups.
pub const KIND: &str = "physical";
const BASE_OBJECT: &str = "base.tar";

/// What a physical backup's manifest records beyond the common fields.
/// `wal` and `wal_segment_size` are what retention reads to keep the WAL a
/// backup needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalDetails {
    /// `pg_control_system().system_identifier` of the source cluster.
    pub system_identifier: String,
    /// Server version string.
    pub server_version: String,
    /// Server major version.
    pub pg_major: u32,
    /// Timeline and start/stop LSNs: the WAL this backup needs.
    pub wal: WalRange,
    /// WAL segment size of the cluster in bytes.
    pub wal_segment_size: u64,
    /// First WAL file needed.
    pub start_wal_file: String,
    /// Last WAL file needed.
    pub stop_wal_file: String,
}

impl PhysicalDetails {
    /// Reads the details out of a physical backup's manifest.
    pub fn of(m: &Manifest) -> Result<Self> {
        serde_json::from_value(serde_json::Value::Object(m.details.clone()))
            .map_err(|e| Error::Config(format!("backup {} has no physical details: {e}", m.id)))
    }
}

/// Settings of physical backups (part of the `[pg]` config table).
#[derive(Clone, Debug)]
pub struct PhysicalOptions {
    /// Directory of the PostgreSQL programs; found automatically when unset.
    pub bin_dir: Option<PathBuf>,
    /// How long to wait for the backup's WAL to reach the repository.
    pub archive_wait: Duration,
    /// Have the server compress the tar (`pg_basebackup
    /// --compress=server-zstd`, PostgreSQL 15+, when the codec is zstd):
    /// faster end to end than piping the raw tar out (1 GB: 2.4 vs 3.6 s
    /// here), at one core of the server's CPU. The stored object is a zstd
    /// stream either way.
    pub server_compression: bool,
}

impl Default for PhysicalOptions {
    fn default() -> Self {
        Self {
            bin_dir: None,
            archive_wait: Duration::from_secs(120),
            server_compression: true,
        }
    }
}

/// Facts about a server, as checked before a physical backup.
#[derive(Clone, Debug)]
pub struct ServerFacts {
    /// System identifier.
    pub system_identifier: String,
    /// Version number (e.g. 150018).
    pub version_num: u32,
    /// Version string.
    pub server_version: String,
    /// WAL segment size in bytes.
    pub wal_segment_size: u64,
}

/// Reads identity and settings of `target` and refuses a server that does
/// not archive WAL (a base backup without its WAL restores nothing).
pub async fn archiving_server(target: &PgTarget) -> Result<ServerFacts> {
    let mut conn = target.connect().await?;
    let row = sqlx::query(
        "SELECT current_setting('wal_level'), current_setting('archive_mode'),
                current_setting('archive_command'),
                (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
                (SELECT system_identifier::text FROM pg_control_system()),
                current_setting('server_version_num')::int, current_setting('server_version')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(admin::query_error("reading the archiving settings", target))?;
    let (wal_level, archive_mode, archive_command): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    let server = format!("{}:{}", target.host, target.port);
    if wal_level == "minimal" {
        return Err(Error::NotArchiving {
            setting: "wal_level",
            value: wal_level,
            target: server,
            fix: "set wal_level = replica in postgresql.conf and restart the server",
        });
    }
    if archive_mode == "off" {
        return Err(Error::NotArchiving {
            setting: "archive_mode",
            value: archive_mode,
            target: server,
            fix: "set archive_mode = on and archive_command = 'cfdr-wal push %p' in postgresql.conf and restart the server",
        });
    }
    if archive_command.trim().is_empty() || archive_command.trim() == "(disabled)" {
        return Err(Error::NotArchiving {
            setting: "archive_command",
            value: archive_command,
            target: server,
            fix: "set archive_command = 'cfdr-wal push %p' and reload the server",
        });
    }
    let segment_size: i64 = row.get(3);
    let version_num: i32 = row.get(5);
    Ok(ServerFacts {
        system_identifier: row.get(4),
        version_num: u32::try_from(version_num).unwrap_or_default(),
        server_version: row.get(6),
        wal_segment_size: u64::try_from(segment_size).unwrap_or_default(),
    })
}

/// Takes a base backup of the cluster `target` connects to and commits it
/// once its WAL is archived.
pub async fn backup(
    repo: &Repository,
    target: &PgTarget,
    class: &str,
    opts: &PhysicalOptions,
    encode: &EncodeOptions,
) -> Result<Manifest> {
    let facts = archiving_server(target).await?;
    let major = facts.version_num / 10_000;
    let sysid: u64 = facts.system_identifier.parse().unwrap_or_default();
    let what = format!("base backup of {}:{}", target.host, target.port);
    check_archive_identity(repo, &what, sysid, major).await?;
    let bin = PgBin::locate(opts.bin_dir.as_deref(), Some(major)).await?;
    let mut writer = repo.begin_backup(KIND, Some(class))?;

    let mut cmd = bin.command("pg_basebackup", false)?;
    cmd.args([
        "--format=tar",
        "--pgdata=-",
        "--wal-method=fetch",
        "--checkpoint=fast",
        "--verbose",
        "--no-password",
    ])
    .arg(format!("--label=cfdr {}", writer.id()));
    let mut encode = encode.clone();
    if opts.server_compression && major >= 15 && encode.compression == Compression::Zstd {
        // A manifest cannot be injected into a compressed tar on stdout;
        // the stored object's SHA-256 covers the whole backup instead. One
        // zstd thread: `workers` splits the stream into independent jobs,
        // 0.2-1% larger output, for a small gain in time (1 GB: 1.6-2.9 s
        // against 2.4 s here).
        let level = encode.level.unwrap_or(Compression::Zstd.default_level());
        cmd.arg(format!("--compress=server-zstd:level={level}"))
            .arg("--no-manifest");
        encode.precompressed = true;
    }
    cmd.envs(target.tool_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(Error::io("cannot start pg_basebackup"))?;
    let source = ToolOutput::new(child, "pg_basebackup");
    let stderr = source.stderr();
    // The name tells how to decode it: `.zst`, `.gz`, `.age` last.
    let name = encode.object_name(BASE_OBJECT);
    writer
        .put_encoded(&name, source, &encode)
        .await
        .map_err(|e| match e {
            cfdr_storage::Error::Source { source, .. } => {
                crate::tools::tool_error(source, "pg_basebackup")
            }
            other => Error::Storage(other),
        })?;
    let log = stderr.lock().map(|s| s.clone()).unwrap_or_default();
    let (timeline, start, stop) = parse_basebackup_log(&log).ok_or_else(|| Error::ToolFailed {
        tool: "pg_basebackup".into(),
        status: "exit 0 without start/end points".into(),
        stderr: log.clone(),
    })?;
    let size = facts.wal_segment_size;
    let first = WalSegment::containing(timeline, start, size);
    let last = WalSegment::containing(timeline, stop, size);
    wait_for_archive(
        repo,
        writer.id().as_str(),
        first,
        last,
        size,
        opts.archive_wait,
    )
    .await?;
    // The first push may have created the archive's identity meanwhile.
    check_archive_identity(repo, &what, sysid, major).await?;

    let details = PhysicalDetails {
        system_identifier: facts.system_identifier,
        server_version: facts.server_version,
        pg_major: major,
        wal: WalRange::new(timeline, start, stop),
        wal_segment_size: size,
        start_wal_file: first.file_name(size),
        stop_wal_file: last.file_name(size),
    };
    let serde_json::Value::Object(map) = serde_json::to_value(&details).unwrap_or_default() else {
        return Err(Error::Config(
            "physical backup details are not an object".into(),
        ));
    };
    Ok(writer.commit(map).await?)
}

/// Refuses `what` when the repository's WAL archive belongs to another
/// cluster than `sysid` / `major`.
async fn check_archive_identity(
    repo: &Repository,
    what: &str,
    sysid: u64,
    major: u32,
) -> Result<()> {
    match ClusterIdentity::read(repo.store()).await? {
        Some(archive) if !archive.is_cluster(sysid, major) => Err(Error::WalIdentityMismatch {
            what: what.to_owned(),
            repository: repo.store().location().display(),
            archive: archive.describe(),
            local: format!("system identifier {sysid} (PostgreSQL {major})"),
        }),
        _ => Ok(()),
    }
}

/// `(timeline, start, stop)` from `pg_basebackup --verbose` output.
fn parse_basebackup_log(log: &str) -> Option<(u32, Lsn, Lsn)> {
    let mut start = None;
    let mut stop = None;
    for line in log.lines() {
        if let Some(rest) = line.split("write-ahead log start point: ").nth(1) {
            let mut words = rest.split_whitespace();
            let lsn: Lsn = words.next()?.parse().ok()?;
            let timeline: u32 = words.nth(2)?.parse().ok()?;
            start = Some((timeline, lsn));
        } else if let Some(rest) = line.split("write-ahead log end point: ").nth(1) {
            stop = rest.split_whitespace().next()?.parse().ok();
        }
    }
    let (timeline, start) = start?;
    Some((timeline, start, stop?))
}

/// Waits until every segment from `first` to `last` is in the repository.
async fn wait_for_archive(
    repo: &Repository,
    id: &str,
    first: WalSegment,
    last: WalSegment,
    segment_size: u64,
    limit: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut segment = first;
    while segment <= last {
        let name = segment.file_name(segment_size);
        let key = wal_archive::wal_key(&name);
        loop {
            match repo.store().stat(&key).await {
                Ok(_) => break,
                Err(cfdr_storage::Error::NotFound { .. }) if started.elapsed() < limit => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(cfdr_storage::Error::NotFound { .. }) => {
                    return Err(Error::WalNotArchived {
                        segment: name,
                        id: id.to_owned(),
                        waited_secs: limit.as_secs(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        segment = WalSegment {
            segno: segment.segno + 1,
            ..segment
        };
    }
    Ok(())
}

/// Where recovery stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay all archived WAL.
    Latest,
    /// Up to this commit time.
    Time(Timestamp),
    /// Up to this LSN.
    Lsn(Lsn),
    /// Up to this transaction id.
    Xid(String),
    /// Up to this `pg_create_restore_point` name.
    Name(String),
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::Latest => write!(f, "the end of the archived WAL"),
            RecoveryTarget::Time(t) => write!(f, "time {t}"),
            RecoveryTarget::Lsn(l) => write!(f, "LSN {l}"),
            RecoveryTarget::Xid(x) => write!(f, "transaction {x}"),
            RecoveryTarget::Name(n) => write!(f, "restore point {n:?}"),
        }
    }
}

impl RecoveryTarget {
    /// The `recovery_target_*` setting, if any.
    fn setting(&self) -> Option<(&'static str, String)> {
        match self {
            RecoveryTarget::Latest => None,
            RecoveryTarget::Time(t) => Some((
                "recovery_target_time",
                t.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            )),
            RecoveryTarget::Lsn(l) => Some(("recovery_target_lsn", l.to_string())),
            RecoveryTarget::Xid(x) => Some(("recovery_target_xid", x.clone())),
            RecoveryTarget::Name(n) => Some(("recovery_target_name", n.clone())),
        }
    }
}

/// The `restore_command` a PITR restore writes: `cfdr-wal` (at `wal_exe`)
/// with the same config file and the repository the restore read
/// (`repository`: its URL or path, `None` for the default `./cfdr-repo`),
/// fetching ahead `prefetch` segments into `spool` when `prefetch` > 0.
///
/// The server runs the command inside the new data directory, so a local
/// repository is written as its absolute path, resolved against this
/// process's working directory as the restore itself resolved it (a
/// relative path would name a folder inside the data directory). Paths are
/// quoted for the shell and `%` is doubled, so any path works. Credentials
/// stay in the server's environment, never in the command.
pub fn fetch_command(
    wal_exe: &Path,
    config: Option<&Path>,
    repository: Option<&str>,
    spool: &Path,
    prefetch: u32,
) -> Result<String> {
    let word = |s: &str| sh_quote(&s.replace('%', "%%"));
    let path = |p: &Path| word(&p.display().to_string());
    let raw = repository.unwrap_or(cfdr_storage::DEFAULT_REPOSITORY);
    let location = cfdr_storage::Location::parse(raw)?;
    let repository = match location.kind {
        cfdr_storage::BackendKind::Fs => location.bucket,
        _ => raw.trim().to_owned(),
    };
    let mut cmd = String::new();
    if prefetch > 0 {
        cmd.push_str(&format!("CFDR_WAL_SPOOL={} ", path(spool)));
    }
    cmd.push_str(&path(wal_exe));
    if let Some(config) = config {
        cmd.push_str(&format!(" --config {}", path(config)));
    }
    cmd.push_str(&format!(" -r {}", word(&repository)));
    if prefetch > 0 {
        cmd.push_str(&format!(" fetch --prefetch {prefetch} %f %p"));
    } else {
        cmd.push_str(" fetch %f %p");
    }
    Ok(cmd)
}

/// `s` as one shell word: as is when it holds only safe characters,
/// single-quoted otherwise.
pub fn sh_quote(s: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"/._-:=@+,%".contains(&b);
    if !s.is_empty() && s.bytes().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Where a started PITR server logs, inside the restored data directory
/// (a place cfdr created and the server's user owns).
pub const PITR_LOG: &str = "log/cfdr-pitr.log";

/// Picks the base backup to restore for `target`: the newest that ended
/// before it (any, for targets that cannot be placed in time).
pub async fn choose_backup(
    repo: &Repository,
    target: &RecoveryTarget,
    now: Timestamp,
) -> Result<Manifest> {
    if let RecoveryTarget::Time(t) = target
        && *t > now
    {
        return Err(Error::PitrTarget {
            target: target.to_string(),
            reason: format!("it is in the future (now is {now}); give a past time or --latest"),
        });
    }
    let mut ids = repo.backup_ids().await?;
    ids.retain(|id| id.kind() == KIND);
    let catalog = repo.catalog_of(&ids).await?;
    // An older base backup replays more WAL to the same target.
    for d in &catalog.damaged {
        tracing::warn!("skipping {d}");
    }
    let mut chosen = None;
    for m in catalog.backups {
        let fits = match target {
            RecoveryTarget::Time(t) => m.finished <= *t,
            RecoveryTarget::Lsn(l) => PhysicalDetails::of(&m)?.wal.stop <= *l,
            _ => true,
        };
        if fits {
            chosen = Some(m);
        }
    }
    chosen.ok_or_else(|| Error::PitrTarget {
        target: target.to_string(),
        reason: "no physical base backup ends before it: take one with `cfdr-backup physical` (a logical dump cannot replay WAL)".into(),
    })
}

/// A point-in-time restore request.
#[derive(Clone, Debug)]
pub struct PitrRequest {
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// The new data directory (must be empty unless `force`).
    pub data_dir: PathBuf,
    /// Delete the contents of a non-empty `data_dir` first.
    pub force: bool,
    /// `restore_command` the server runs (e.g. `cfdr-wal -r URL fetch %f %p`).
    pub restore_command: String,
    /// Spool folder the restore command prefetches into: created (owned by
    /// the server's user) before recovery, removed after promotion.
    pub prefetch_spool: Option<PathBuf>,
    /// age identities for encrypted backups.
    pub identities: Option<Arc<cfdr_secrets::Identities>>,
    /// Start the server after the restore and wait for promotion.
    pub start: bool,
    /// Keep WAL archiving on in the started server (off by default, so a
    /// drill copy never archives into the production WAL path).
    pub archive: bool,
    /// How long to wait for promotion after starting.
    pub rto: Duration,
    /// Directory of the PostgreSQL programs; found automatically when unset.
    pub bin_dir: Option<PathBuf>,
}

/// What a PITR restore did.
#[derive(Debug)]
pub struct PitrReport {
    /// The started server's log (when started).
    pub log_file: Option<PathBuf>,
    /// The command that stops the started server, which keeps running
    /// after the restore (when started).
    pub stop_command: Option<String>,
    /// The base backup restored.
    pub backup: Manifest,
    /// Steps with their durations.
    pub steps: Vec<Step>,
    /// Total time.
    pub total: Duration,
    /// The started server (stopped when dropped by the caller's choice).
    pub cluster: Option<LocalCluster>,
    /// LSN reached after promotion (when started).
    pub reached_lsn: Option<Lsn>,
    /// Commit time of the last replayed transaction (when started).
    pub last_replayed: Option<Timestamp>,
    /// Timeline after promotion (when started).
    pub timeline: Option<u32>,
}

/// Restores a base backup into `req.data_dir` and sets up recovery to
/// `req.target`; with `req.start`, starts the server and waits for it to
/// promote.
pub async fn pitr(
    repo: &Repository,
    req: &PitrRequest,
    mut on_step: impl FnMut(&Step),
) -> Result<PitrReport> {
    let started = Instant::now();
    let mut steps = Steps::new(&mut on_step);
    let t = Instant::now();
    let backup = choose_backup(repo, &req.target, Timestamp::now()).await?;
    let details = PhysicalDetails::of(&backup)?;
    prepare_data_dir(&req.data_dir, req.force)?;
    steps.done(format!("choose base backup {}", backup.id), t);

    let t = Instant::now();
    let unpacked = unpack(repo, &backup, &req.data_dir, req.identities.clone()).await;
    if let Err(e) = unpacked {
        // Never leave a half-restored directory that looks like a cluster.
        clear_dir(&req.data_dir)?;
        return Err(e);
    }
    steps.done(format!("download, verify and unpack {}", backup.id), t);

    let t = Instant::now();
    write_recovery_settings(&req.data_dir, &req.target, &req.restore_command)?;
    let log_file = req.data_dir.join(PITR_LOG);
    if req.start
        && let Some(dir) = log_file.parent()
    {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    chown_tree(&req.data_dir)?;
    if let Some(spool) = &req.prefetch_spool {
        std::fs::create_dir_all(spool)
            .map_err(Error::io(format!("creating {}", spool.display())))?;
        chown_tree(spool)?;
    }
    steps.done(
        format!("recovery.signal and settings for {}", req.target),
        t,
    );

    let mut report = PitrReport {
        log_file: None,
        stop_command: None,
        backup,
        steps: Vec::new(),
        total: Duration::ZERO,
        cluster: None,
        reached_lsn: None,
        last_replayed: None,
        timeline: None,
    };
    if req.start {
        let t = Instant::now();
        let recovered = recover(req, details.pg_major, &log_file).await;
        if let Some(spool) = &req.prefetch_spool {
            // Recovery is over (or failed): prefetched segments are of no more use.
            let _ = std::fs::remove_dir_all(spool);
        }
        let recovered = recovered?;
        steps.done("replay WAL and promote".into(), t);
        report.reached_lsn = recovered.reached_lsn;
        report.last_replayed = recovered.last_replayed;
        report.timeline = Some(recovered.timeline);
        report.stop_command = Some(stop_command(&recovered.cluster)?);
        report.cluster = Some(recovered.cluster);
        report.log_file = Some(log_file);
    }
    report.steps = steps.into_vec();
    report.total = started.elapsed();
    Ok(report)
}

/// A started server that reached its recovery target and promoted.
struct Recovered {
    cluster: LocalCluster,
    reached_lsn: Option<Lsn>,
    last_replayed: Option<Timestamp>,
    timeline: u32,
}

/// Starts the server on the restored directory (logging to `log_file`),
/// waits for it to promote and reads where it got. On failure the server
/// is stopped (the handle is dropped) and the directory stays for
/// inspection.
async fn recover(req: &PitrRequest, pg_major: u32, log_file: &Path) -> Result<Recovered> {
    let bin = PgBin::locate(req.bin_dir.as_deref(), Some(pg_major)).await?;
    let mut cluster = LocalCluster::existing(&bin, &req.data_dir, &req.data_dir)?;
    cluster.log_file = log_file.to_owned();
    let archive_mode = if req.archive { "on" } else { "off" };
    let settings = [("fsync", "on"), ("archive_mode", archive_mode)];
    if let Err(e) = cluster.start(&settings).await {
        // Recovery can end before the server ever accepts connections.
        let log = std::fs::read_to_string(log_file).unwrap_or_default();
        return Err(unreached_target(&log, &req.target).unwrap_or(e));
    }
    let server = cluster.target("postgres");
    wait_for_promotion(&server, &req.data_dir, log_file, &req.target, req.rto).await?;
    let mut conn = server.connect().await?;
    let row = sqlx::query(
        "SELECT pg_current_wal_lsn()::text,
                (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000000)::bigint",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| Error::Query {
        what: "reading the recovered position".into(),
        database: "postgres".into(),
        reason: e.to_string(),
    })?;
    let timeline = crate::replica::current_timeline(&server).await?;
    Ok(Recovered {
        reached_lsn: row.get::<String, _>(0).parse().ok(),
        last_replayed: row
            .get::<Option<i64>, _>(1)
            .and_then(|us| Timestamp::from_microsecond(us).ok()),
        timeline,
        cluster,
    })
}

/// The command that stops `cluster` (as the server's user when root).
fn stop_command(cluster: &LocalCluster) -> Result<String> {
    let as_user = if crate::tools::server_user()?.is_some() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    Ok(format!(
        "{as_user}{} -D {} -m fast stop",
        sh_quote(&cluster.bin().path("pg_ctl").display().to_string()),
        sh_quote(&cluster.data_dir.display().to_string())
    ))
}

fn prepare_data_dir(dir: &Path, force: bool) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                if !force {
                    return Err(Error::DataDirNotEmpty {
                        dir: dir.to_owned(),
                    });
                }
                clear_dir(dir)?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()))(e)),
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io(format!("chmod 0700 {}", dir.display())))
}

fn clear_dir(dir: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(Error::io(format!("reading {}", dir.display())))?;
    for entry in entries {
        let path = entry
            .map_err(Error::io(format!("reading {}", dir.display())))?
            .path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(Error::io(format!("removing {}", path.display())))?;
    }
    Ok(())
}

/// Streams the base backup through checksum verification and decoding into
/// a tar extractor writing into `dir`.
async fn unpack(
    repo: &Repository,
    backup: &Manifest,
    dir: &Path,
    identities: Option<Arc<cfdr_secrets::Identities>>,
) -> Result<()> {
    let obj = backup
        .objects
        .iter()
        .find(|o| o.key.contains(BASE_OBJECT))
        .ok_or_else(|| Error::PitrTarget {
            target: backup.id.to_string(),
            reason: "the backup holds no base.tar object".into(),
        })?;
    let (mut tx, rx) = tokio::io::duplex(1 << 20);
    let dest = dir.to_owned();
    let extractor = tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(tokio_util::io::SyncIoBridge::new(rx));
        archive.set_preserve_permissions(true);
        archive.set_overwrite(false);
        archive.unpack(&dest)
    });
    let decoded = decode_to(repo.store(), obj, identities, &mut tx).await;
    drop(tx);
    let extracted = extractor
        .await
        .map_err(|e| Error::io("tar extractor")(std::io::Error::other(e)))?;
    // A storage or checksum error is the cause even when tar also failed on
    // the cut-off stream.
    decoded.map_err(Error::Storage)?;
    extracted.map_err(Error::io(format!("unpacking into {}", dir.display())))
}

fn write_recovery_settings(
    dir: &Path,
    target: &RecoveryTarget,
    restore_command: &str,
) -> Result<()> {
    let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let mut conf = format!(
        "\n# cfdr-restore pitr at {}\nrestore_command = {}\nrecovery_target_timeline = 'latest'\n",
        Timestamp::now(),
        quote(restore_command)
    );
    if let Some((name, value)) = target.setting() {
        conf.push_str(&format!(
            "{name} = {}\nrecovery_target_action = 'promote'\n",
            quote(&value)
        ));
    }
    let auto = dir.join("postgresql.auto.conf");
    let mut existing = std::fs::read_to_string(&auto).unwrap_or_default();
    existing.push_str(&conf);
    std::fs::write(&auto, existing).map_err(Error::io(format!("writing {}", auto.display())))?;
    for stale in ["standby.signal", "backup_manifest"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    std::fs::write(dir.join("recovery.signal"), "").map_err(Error::io("writing recovery.signal"))
}

async fn wait_for_promotion(
    server: &PgTarget,
    dir: &Path,
    log_file: &Path,
    target: &RecoveryTarget,
    limit: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let in_recovery = match server.connect().await {
            Ok(mut conn) => sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
                .fetch_one(&mut conn)
                .await
                .unwrap_or(true),
            Err(_) => true,
        };
        if !in_recovery {
            return Ok(());
        }
        // A server that stopped (a missing or damaged WAL file, a target
        // recovery cannot reach) will not promote: say why at once.
        let stopped = !dir.join("postmaster.pid").exists();
        if stopped || started.elapsed() > limit {
            let log = std::fs::read_to_string(log_file).unwrap_or_default();
            if stopped && let Some(e) = unreached_target(&log, target) {
                return Err(e);
            }
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            let why = if stopped {
                "the server stopped during recovery".to_owned()
            } else {
                format!("still in recovery after {}s (the RTO)", limit.as_secs())
            };
            return Err(Error::Cluster {
                action: "recovery",
                data_dir: dir.to_owned(),
                detail: format!(
                    "{why}; server log {}: {}",
                    log_file.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The error for a target after the end of the archived WAL, read from the
/// server log (PostgreSQL stops with "recovery ended before configured
/// recovery target was reached"), naming the last replayed commit.
fn unreached_target(log: &str, target: &RecoveryTarget) -> Option<Error> {
    if !log.contains("recovery ended before configured recovery target was reached") {
        return None;
    }
    let last = log
        .lines()
        .rev()
        .find_map(|l| {
            l.split("last completed transaction was at log time ")
                .nth(1)
        })
        .map(|t| format!(" (the last archived commit is at {})", t.trim()))
        .unwrap_or_default();
    Some(Error::PitrTarget {
        target: target.to_string(),
        reason: format!(
            "the archived WAL ends before it{last}: restore again with --latest to \
             recover everything archived, or give an earlier target"
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn basebackup_log_gives_timeline_and_lsns() {
        let log = "pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
                   pg_basebackup: checkpoint completed\n\
                   pg_basebackup: write-ahead log start point: 0/2000028 on timeline 1\n\
                   pg_basebackup: write-ahead log end point: 0/2000100\n\
                   pg_basebackup: base backup completed\n";
        let (tli, start, stop) = parse_basebackup_log(log).unwrap();
        assert_eq!(tli, 1);
        assert_eq!(start.to_string(), "0/2000028");
        assert_eq!(stop.to_string(), "0/2000100");
        assert!(parse_basebackup_log("pg_basebackup: error: connection failed").is_none());
    }

    #[test]
    fn recovery_targets_become_settings() {
        let t: Timestamp = "2026-11-26T01:02:03.5Z".parse().unwrap();
        assert_eq!(
            RecoveryTarget::Time(t).setting().unwrap(),
            (
                "recovery_target_time",
                "2026-11-26 01:02:03.500000+00".into()
            )
        );
        assert_eq!(RecoveryTarget::Latest.setting(), None);
    }

    #[test]
    fn fetch_command_keeps_config_and_repository_and_prefetches() {
        let cmd = fetch_command(
            Path::new("/usr/bin/cfdr-wal"),
            Some(Path::new("/etc/cfdr/cfdr.toml")),
            Some("s3://backups/cf"),
            Path::new("/srv/pitr.wal-spool"),
            4,
        )
        .unwrap();
        assert_eq!(
            cmd,
            "CFDR_WAL_SPOOL=/srv/pitr.wal-spool /usr/bin/cfdr-wal --config /etc/cfdr/cfdr.toml -r s3://backups/cf fetch --prefetch 4 %f %p"
        );
    }

    #[test]
    fn fetch_command_names_a_local_repository_by_its_absolute_path() {
        let cwd = std::env::current_dir().unwrap();
        let exe = Path::new("/usr/bin/cfdr-wal");
        // The default ./cfdr-repo, a relative path and a relative file URL
        // resolve against the working directory, never the data directory.
        for (given, expected) in [
            (None, cwd.join("cfdr-repo")),
            (Some("repo"), cwd.join("repo")),
            (Some("./backups/../repo"), cwd.join("backups/../repo")),
            (Some("/srv/cfdr"), PathBuf::from("/srv/cfdr")),
            (Some("file:///srv/cfdr"), PathBuf::from("/srv/cfdr")),
        ] {
            let cmd = fetch_command(exe, None, given, Path::new("/x"), 0).unwrap();
            assert_eq!(
                cmd,
                format!(
                    "/usr/bin/cfdr-wal -r {} fetch %f %p",
                    sh_quote(&expected.display().to_string())
                ),
                "{given:?}"
            );
        }
        // Spaces, quotes and % survive the shell and PostgreSQL's escapes.
        let cmd = fetch_command(
            exe,
            Some(Path::new("/etc/my cfdr/it's.toml")),
            Some("/srv/100% backups"),
            Path::new("/x"),
            0,
        )
        .unwrap();
        assert_eq!(
            cmd,
            r"/usr/bin/cfdr-wal --config '/etc/my cfdr/it'\''s.toml' -r '/srv/100%% backups' fetch %f %p"
        );
    }

    #[test]
    fn a_target_after_the_archive_names_the_last_commit_and_the_way_out() {
        let log = "LOG:  redo done at 0/3000148 system usage: CPU: user: 0.00 s\n\
                   LOG:  last completed transaction was at log time 2026-11-06 14:29:59.123456+00\n\
                   FATAL:  recovery ended before configured recovery target was reached\n";
        let target = RecoveryTarget::Time("2026-11-06T15:00:00Z".parse().unwrap());
        let err = unreached_target(log, &target).unwrap().to_string();
        assert!(
            err.contains("the last archived commit is at 2026-11-06 14:29:59.123456+00")
                && err.contains("--latest")
                && err.contains("earlier target"),
            "{err}"
        );
        assert!(unreached_target("FATAL: could not open file", &target).is_none());
    }

    #[test]
    fn a_non_empty_data_dir_is_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("PG_VERSION"), "15").unwrap();
        let err = prepare_data_dir(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        prepare_data_dir(dir.path(), true).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
