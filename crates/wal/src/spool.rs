//! The spool folder: asynchronous push (like pgBackRest's `archive-async`)
//! and fetch prefetch.
//!
//! ```text
//! <spool>/push-worker.lock        flock held by the running worker; holds its pid
//! <spool>/push-worker.log         the worker's stderr
//! <spool>/out/<file>.ok           stored: {"dev","ino","size","mtime-ns","sha256"} of the pushed file
//! <spool>/out/<file>.error        the worker's last error for that file
//! <spool>/in/<file>               prefetched, verified files waiting for restore_command
//! <spool>/in/.want                 the segment restore_command asked for last
//! <spool>/prefetch-worker.lock     flock held by the running prefetch worker
//! <spool>/prefetch-worker.log      its stderr
//! ```
//!
//! **Asynchronous push.** `cfdr-wal push %p` with `wal.push-async` does not
//! upload: it looks for `out/<file>.ok`. When present and it describes the
//! very file in `pg_wal` (same device, inode, size and mtime), it removes
//! the marker and exits 0. When `out/<file>.error` is present it removes it
//! and fails with that error (PostgreSQL retries; the worker tries again).
//! Otherwise it makes sure a worker runs and waits for one of the two, up
//! to `wal.push-timeout-secs`, then fails (PostgreSQL retries).
//!
//! The worker is the same binary (`cfdr-wal push-worker`), started detached
//! (own process group, stdio to the log) by a push that finds
//! `push-worker.lock` unlocked; a second worker that loses the lock race
//! exits at once. It scans `pg_wal/archive_status/*.ready` (history files
//! first, then by name), pushes up to `wal.push-processes` files at a time
//! with the same code as a synchronous push, writes `.ok` only after the
//! object is stored, and exits after `wal.worker-idle-secs` without work.
//! A marker is only written after a successful store, and only a marker that
//! matches the file on disk acknowledges it: a segment is never reported
//! archived unless it is stored.
//!
//! **Prefetch.** `cfdr-wal fetch %f %p` with `wal.prefetch = N` serves the
//! segment from `in/` when it is there (a rename), else fetches it itself;
//! then it records the segment in `in/.want` and makes sure a prefetch
//! worker (`cfdr-wal prefetch-worker`, detached like the push worker) runs.
//! The worker keeps the N segments after `.want` in `in/`, fetched in
//! parallel and verified before they get their name, while PostgreSQL
//! replays: downloads and decompression overlap replay instead of
//! stalling it. It exits after `wal.worker-idle-secs` without work.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cfdr_retention::{WalFile, WalSegment};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{
    FetchOptions, Fetched, PushOptions, WalArchive, WalOptions, temp_name, write_into_place,
};
use crate::error::{Error, Result};

/// What `.ok` records about the pushed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Marker {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
}

impl Marker {
    fn of(path: &Path) -> Result<Self> {
        let m = std::fs::metadata(path).map_err(Error::io(format!("stat {}", path.display())))?;
        Ok(Marker {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        })
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    Error::io(what)
}

fn out_dir(spool: &Path) -> PathBuf {
    spool.join("out")
}

/// Writes `text` to `path` via a temp name and rename.
fn write_atomic(path: &Path, text: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming {}", tmp.display())))
}

/// How the push command starts a worker: the program and its arguments.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    /// The `cfdr-wal` executable.
    pub program: PathBuf,
    /// Arguments (`push-worker --pg-data DIR ...`); never secrets.
    pub args: Vec<std::ffi::OsString>,
}

impl WorkerCommand {
    /// This executable with `global` flags (`--config FILE`, never secrets),
    /// then `<subcommand> --pg-data DIR --spool DIR` (`push-worker` or
    /// `prefetch-worker`).
    pub fn current_exe(
        mut global: Vec<std::ffi::OsString>,
        subcommand: &str,
        data_dir: &Path,
        spool: &Path,
    ) -> Result<Self> {
        let program =
            std::env::current_exe().map_err(io("finding the cfdr-wal executable".into()))?;
        global.extend([
            subcommand.into(),
            "--pg-data".into(),
            data_dir.into(),
            "--spool".into(),
            spool.into(),
        ]);
        Ok(WorkerCommand {
            program,
            args: global,
        })
    }
}

/// Subcommand of the asynchronous push worker.
pub const PUSH_WORKER: &str = "push-worker";
/// Subcommand of the prefetch worker.
pub const PREFETCH_WORKER: &str = "prefetch-worker";

/// Whether a push worker holds the lock of `spool`.
pub fn worker_running(spool: &Path) -> Result<bool> {
    running(spool, PUSH_WORKER)
}

fn running(spool: &Path, worker: &str) -> Result<bool> {
    let lock = open_lock(spool, worker)?;
    match lock.try_lock() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Io {
            what: format!("locking {}", spool.join(format!("{worker}.lock")).display()),
            source: e,
        }),
    }
}

/// Takes `worker`'s lock (and writes the pid into it); None when another
/// worker holds it.
fn take_lock(spool: &Path, worker: &str) -> Result<Option<File>> {
    let mut lock = open_lock(spool, worker)?;
    if lock.try_lock().is_err() {
        return Ok(None);
    }
    use std::io::Write;
    let _ = lock.set_len(0);
    let _ = writeln!(lock, "{}", std::process::id());
    Ok(Some(lock))
}

fn open_lock(spool: &Path, worker: &str) -> Result<File> {
    spool_folder(spool, "out")?;
    let path = spool.join(format!("{worker}.lock"));
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))
}

fn spawn_worker(spool: &Path, worker: &str, cmd: &WorkerCommand) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log_path = spool.join(format!("{worker}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(format!("opening {}", log_path.display())))?;
    let err = log
        .try_clone()
        .map_err(io(format!("opening {}", log_path.display())))?;
    std::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        // Its own process group: PostgreSQL signals the archiver's group.
        .process_group(0)
        .spawn()
        .map_err(io(format!("starting {}", cmd.program.display())))?;
    Ok(())
}

/// `archive_command` in asynchronous mode: acknowledges `path` once the
/// worker stored it, starting the worker when none runs.
pub fn push_async(path: &Path, opts: &WalOptions, worker: &WorkerCommand) -> Result<()> {
    let name = super::file_name_of(path)?;
    let spool = &opts.spool_dir;
    let ok = out_dir(spool).join(format!("{name}.ok"));
    let error = out_dir(spool).join(format!("{name}.error"));
    let deadline = Instant::now() + Duration::from_secs(opts.push_timeout_secs);
    let mut pause = Duration::from_millis(1);
    let mut next_worker_check = Instant::now();
    loop {
        if let Ok(text) = std::fs::read(&ok) {
            let stored: Option<Marker> = serde_json::from_slice(&text).ok();
            let _ = std::fs::remove_file(&ok);
            if stored.as_ref() == Some(&Marker::of(path)?) {
                return Ok(());
            }
            // A marker of another file by this name (a restored data
            // directory reusing the spool): push this one again.
            tracing::warn!(file = %name, "stale acknowledgement removed");
        }
        if let Ok(text) = std::fs::read_to_string(&error) {
            let _ = std::fs::remove_file(&error);
            return Err(Error::WalAsync {
                file: name,
                reason: text.trim().to_owned(),
            });
        }
        if Instant::now() >= next_worker_check {
            if !worker_running(spool)? {
                spawn_worker(spool, PUSH_WORKER, worker)?;
            }
            next_worker_check = Instant::now() + Duration::from_secs(1);
        }
        if Instant::now() >= deadline {
            return Err(Error::WalAsync {
                file: name,
                reason: format!(
                    "not stored within {} s (wal.push-timeout-secs); see {}",
                    opts.push_timeout_secs,
                    spool.join("push-worker.log").display()
                ),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Files PostgreSQL marked ready, history files first, then by name.
fn ready_files(pg_wal: &Path) -> Result<Vec<String>> {
    let status = pg_wal.join("archive_status");
    let mut names: Vec<String> = std::fs::read_dir(&status)
        .map_err(io(format!("reading {}", status.display())))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".ready")
                .map(str::to_owned)
        })
        .collect();
    names.sort_by_key(|n| (!n.ends_with(".history"), n.clone()));
    Ok(names)
}

/// The asynchronous worker: pushes every `.ready` file of `data_dir`,
/// `opts.push_processes` at a time, until idle for `opts.worker_idle_secs`.
/// Returns at once when another worker holds the lock.
pub async fn run_push_worker(
    archive: &WalArchive,
    data_dir: &Path,
    opts: &WalOptions,
    push: &PushOptions,
) -> Result<()> {
    let spool = &opts.spool_dir;
    let Some(_lock) = take_lock(spool, PUSH_WORKER)? else {
        return Ok(());
    };
    let pg_wal = data_dir.join("pg_wal");
    let out = out_dir(spool);
    let mut push = push.clone();
    push.data_dir = Some(data_dir.to_owned());
    if opts.push_processes > 1 {
        // Parallel files keep the cores busy; one zstd thread each.
        push.encode.threads = 1;
    }
    let mut idle_since = Instant::now();
    loop {
        let ready = ready_files(&pg_wal)?;
        let todo: Vec<String> = ready
            .iter()
            .filter(|n| {
                !out.join(format!("{n}.ok")).exists() && !out.join(format!("{n}.error")).exists()
            })
            .cloned()
            .collect();
        remove_stale_markers(&out, &ready);
        if todo.is_empty() {
            if idle_since.elapsed() >= Duration::from_secs(opts.worker_idle_secs) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        futures::stream::iter(todo)
            .map(|name| {
                let path = pg_wal.join(&name);
                let push = &push;
                let out = &out;
                async move {
                    // Stat before reading: a marker must never describe a
                    // newer file than the one stored.
                    let result = match Marker::of(&path) {
                        Ok(marker) => archive.push(&path, push).await.map(|_| marker),
                        Err(e) => Err(e),
                    };
                    let written = match result {
                        Ok(marker) => write_atomic(
                            &out.join(format!("{name}.ok")),
                            &serde_json::to_vec(&marker).unwrap_or_default(),
                        ),
                        Err(e) => {
                            tracing::error!(file = %name, error = %e, "push failed");
                            write_atomic(
                                &out.join(format!("{name}.error")),
                                e.to_string().as_bytes(),
                            )
                        }
                    };
                    if let Err(e) = written {
                        tracing::error!(file = %name, error = %e, "cannot write the spool marker");
                    }
                }
            })
            .buffer_unordered(opts.push_processes.max(1))
            .collect::<Vec<()>>()
            .await;
        idle_since = Instant::now();
    }
}

/// Removes `.ok` markers of files PostgreSQL no longer lists as ready and
/// that are older than a minute (acknowledged by a push that crashed, or
/// archived by hand).
fn remove_stale_markers(out: &Path, ready: &[String]) {
    let ready: BTreeSet<&str> = ready.iter().map(String::as_str).collect();
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(file) = name.to_str().and_then(|n| n.strip_suffix(".ok")) else {
            continue;
        };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(60));
        if old && !ready.contains(file) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `restore_command` with prefetch: serves `name` from the spool when the
/// prefetch worker has it, else fetches it directly; then has the worker
/// fetch the next `opts.prefetch` segments of its timeline in the
/// background (started with `worker` when none runs). Non-segment files
/// are fetched directly.
pub async fn fetch_prefetch(
    archive: &WalArchive,
    name: &str,
    dest: &Path,
    fetch: &FetchOptions,
    opts: &WalOptions,
    worker: &WorkerCommand,
) -> Result<Fetched> {
    let size = segment_size(archive).await?;
    let seg = match WalFile::parse(name, size) {
        Ok(WalFile::Segment(s)) if opts.prefetch > 0 => s,
        _ => return archive.fetch(name, dest, fetch).await,
    };
    let dir = in_dir(&opts.spool_dir)?;
    clean_older(&dir, seg, size);
    let spooled = dir.join(name);
    // The worker may be writing this very segment: wait for it briefly
    // rather than download it twice.
    let partial = temp_name(&spooled);
    let deadline = Instant::now() + Duration::from_secs(5);
    while partial.exists() && !spooled.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = if spooled.exists() {
        move_into_place(&spooled, dest).await?
    } else {
        archive.fetch(name, dest, fetch).await?
    };
    if matches!(got, Fetched::Restored { .. }) {
        // The segment is in place: a failure to start prefetching must not
        // fail recovery, only slow it.
        let prefetching = write_atomic(&dir.join(".want"), name.as_bytes()).and_then(|()| {
            match running(&opts.spool_dir, PREFETCH_WORKER)? {
                true => Ok(()),
                false => spawn_worker(&opts.spool_dir, PREFETCH_WORKER, worker),
            }
        });
        if let Err(e) = prefetching {
            tracing::warn!(error = %e, "prefetch not started");
        }
    }
    Ok(got)
}

fn in_dir(spool: &Path) -> Result<PathBuf> {
    spool_folder(spool, "in")
}

/// Creates `<spool>/<name>` (and the spool) if needed.
fn spool_folder(spool: &Path, name: &str) -> Result<PathBuf> {
    let dir = spool.join(name);
    std::fs::create_dir_all(&dir).map_err(io(format!(
        "creating the spool folder {} (set wal.spool-dir to a folder the PostgreSQL user can write)",
        dir.display()
    )))?;
    Ok(dir)
}

/// Moves a verified spooled segment to `dest`: a rename on the same file
/// system, else a copy through a temporary name.
async fn move_into_place(spooled: &Path, dest: &Path) -> Result<Fetched> {
    if tokio::fs::rename(spooled, dest).await.is_ok() {
        let size = std::fs::metadata(dest).map(|m| m.len()).unwrap_or_default();
        return Ok(Fetched::Restored { size });
    }
    let data = tokio::fs::read(spooled)
        .await
        .map_err(io(format!("reading {}", spooled.display())))?;
    write_into_place(dest, &data).await?;
    let _ = std::fs::remove_file(spooled);
    Ok(Fetched::Restored {
        size: data.len() as u64,
    })
}

/// The prefetch worker: keeps the `opts.prefetch` segments after the one
/// in `in/.want` fetched and verified in `in/`, until idle for
/// `opts.worker_idle_secs`. Returns at once when another worker runs.
pub async fn run_prefetch_worker(
    archive: &WalArchive,
    fetch: &FetchOptions,
    opts: &WalOptions,
) -> Result<()> {
    let Some(_lock) = take_lock(&opts.spool_dir, PREFETCH_WORKER)? else {
        return Ok(());
    };
    let size = segment_size(archive).await?;
    let dir = in_dir(&opts.spool_dir)?;
    let mut idle_since = Instant::now();
    loop {
        let want = std::fs::read_to_string(dir.join(".want"))
            .ok()
            .and_then(|w| WalSegment::parse(w.trim(), size).ok());
        let missing: Vec<String> = want
            .map(|w| {
                (1..=opts.prefetch as u64)
                    .map(|i| {
                        WalSegment {
                            timeline: w.timeline,
                            segno: w.segno + i,
                        }
                        .file_name(size)
                    })
                    .filter(|f| !dir.join(f).exists())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(w) = want {
            clean_older(&dir, w, size);
        }
        let mut fetched = 0;
        if !missing.is_empty() {
            let results: Vec<Result<Fetched>> = futures::stream::iter(missing)
                .map(|file| {
                    let target = dir.join(&file);
                    async move { archive.fetch(&file, &target, fetch).await }
                })
                .buffer_unordered(opts.prefetch.max(1))
                .collect()
                .await;
            for r in results {
                match r {
                    Ok(Fetched::Restored { .. }) => fetched += 1,
                    Ok(Fetched::NotFound) => {}
                    // restore_command fetches it itself and reports why.
                    Err(e) => tracing::warn!(error = %e, "prefetch failed"),
                }
            }
        }
        if fetched > 0 {
            idle_since = Instant::now();
            continue;
        }
        if idle_since.elapsed() >= Duration::from_secs(opts.worker_idle_secs) {
            return Ok(());
        }
        // Nothing to do, or the archive ends here for now.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn segment_size(archive: &WalArchive) -> Result<u64> {
    Ok(archive
        .identity()
        .await?
        .map_or(cfdr_retention::DEFAULT_SEGMENT_SIZE, |i| i.wal_segment_size))
}

/// Removes prefetched segments recovery has passed (or another timeline's).
fn clean_older(dir: &Path, current: WalSegment, size: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = match WalSegment::parse(name, size) {
            Ok(s) => s.timeline != current.timeline || s.segno < current.segno,
            Err(_) => true,
        };
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
