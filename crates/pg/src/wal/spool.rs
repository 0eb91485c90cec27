//! The spool folder: asynchronous push (like pgBackRest's `archive-async`)
//! and fetch prefetch.
//!
//! ```text
//! <spool>/push-worker.lock        flock held by the running worker; holds its pid
//! <spool>/push-worker.log         the worker's stderr
//! <spool>/out/<file>.ok           stored: {"dev","ino","size","mtime-ns","sha256"} of the pushed file
//! <spool>/out/<file>.error        the worker's last error for that file
//! <spool>/in/<file>               prefetched, verified files waiting for restore_command
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

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cfdr_retention::{WalFile, WalSegment};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{FetchOptions, Fetched, PushOptions, WalArchive, WalOptions, write_into_place};
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

/// Whether a worker holds the lock of `spool`.
pub fn worker_running(spool: &Path) -> Result<bool> {
    let lock = open_lock(spool)?;
    match lock.try_lock() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Io {
            what: format!("locking {}", spool.join("push-worker.lock").display()),
            source: e,
        }),
    }
}

fn open_lock(spool: &Path) -> Result<File> {
    std::fs::create_dir_all(out_dir(spool)).map_err(io(format!(
        "creating the spool folder {} (set wal.spool-dir to a folder the PostgreSQL user can write)",
        spool.display()
    )))?;
    let path = spool.join("push-worker.lock");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))
}

fn spawn_worker(spool: &Path, cmd: &WorkerCommand) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log_path = spool.join("push-worker.log");
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
                spawn_worker(spool, worker)?;
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
    let mut lock = open_lock(spool)?;
    if lock.try_lock().is_err() {
        return Ok(());
    }
    {
        use std::io::Write;
        let _ = lock.set_len(0);
        let _ = writeln!(lock, "{}", std::process::id());
    }
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

/// `restore_command` with prefetch: serves `name` from the spool when a
/// previous call fetched it ahead; otherwise fetches it and the next
/// `opts.prefetch` segments of its timeline in parallel, verified, into
/// `<spool>/in`. Non-segment files are fetched directly.
pub async fn fetch_prefetch(
    archive: &WalArchive,
    name: &str,
    dest: &Path,
    fetch: &FetchOptions,
    opts: &WalOptions,
) -> Result<Fetched> {
    let seg = match WalFile::parse(name, segment_size(archive).await?) {
        Ok(WalFile::Segment(s)) if opts.prefetch > 0 => s,
        _ => return archive.fetch(name, dest, fetch).await,
    };
    let size = segment_size(archive).await?;
    let dir = opts.spool_dir.join("in");
    std::fs::create_dir_all(&dir).map_err(io(format!(
        "creating the spool folder {} (set wal.spool-dir to a folder the PostgreSQL user can write)",
        dir.display()
    )))?;
    clean_older(&dir, seg, size);
    let spooled = dir.join(name);
    if spooled.exists() {
        let data = std::fs::read(&spooled).map_err(io(format!("reading {}", spooled.display())))?;
        write_into_place(dest, &data).await?;
        let _ = std::fs::remove_file(&spooled);
        return Ok(Fetched::Restored {
            size: data.len() as u64,
        });
    }
    let ahead = (1..=opts.prefetch as u64).map(|i| WalSegment {
        timeline: seg.timeline,
        segno: seg.segno + i,
    });
    let wanted = archive.fetch(name, dest, fetch);
    let prefetch = futures::stream::iter(ahead)
        .map(|s| {
            let file = s.file_name(size);
            let target = dir.join(&file);
            async move {
                match archive.fetch(&file, &target, fetch).await {
                    Ok(_) => {}
                    // Recovery stops at the first real failure anyway.
                    Err(e) => tracing::debug!(file = %file, error = %e, "prefetch failed"),
                }
            }
        })
        .buffer_unordered(opts.prefetch.max(1))
        .collect::<Vec<()>>();
    let (got, _) = futures::join!(wanted, prefetch);
    got
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
