//! Lease locks for writers that must not race (prune, repository init...).
//!
//! A lock is a series of generation objects `locks/<name>/<gen>.json`. To
//! take the lock a process reads the newest generation: if it is held and
//! not expired, it refuses with [`Error::Locked`]; otherwise it creates
//! generation + 1 with a create-only write. Two processes that race for
//! the same generation cannot both win that create, so a stale lock is
//! taken over by exactly one of them. The holder renews by rewriting its
//! own generation, and notices a takeover by a newer generation appearing.
//! A lock whose holder was a process of this machine and pid namespace that
//! no longer runs (killed, crashed) counts as expired at once: running the
//! command again after a crash does not wait out the lease.
//!
//! The exclusion is as strong as the backend's create-only write: see
//! [`Store::create_if_absent`].

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::object::Store;

const LOCKS_PREFIX: &str = "locks/";

/// What a lock object says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Lock name.
    pub name: String,
    /// Who holds it (a command name, e.g. "cfdr-prune").
    pub holder: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// Random token that tells this holder's writes from another's.
    pub token: String,
    /// When it was taken.
    pub acquired: Timestamp,
    /// When it expires unless renewed.
    pub expires: Timestamp,
    /// Where the holder runs: kernel boot id, pid namespace and the
    /// process's start time. A process on the same boot and pid namespace
    /// can tell a killed holder (no process with that pid and start time)
    /// and take the lock over without waiting for it to expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessId>,
}

/// A running process, told apart from any other process of the same
/// machine, before and after a pid is reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot: String,
    /// The `/proc/self/ns/pid` link (`pid:[inode]`).
    pub pid_namespace: String,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

impl ProcessId {
    /// This process, or `None` where `/proc` does not tell.
    fn current() -> Option<Self> {
        Some(ProcessId {
            boot: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()?
                .trim()
                .to_owned(),
            pid_namespace: std::fs::read_link("/proc/self/ns/pid")
                .ok()?
                .to_string_lossy()
                .into_owned(),
            start: start_time(std::process::id())?,
        })
    }
}

/// Start time of process `pid`, `None` when there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; start time is field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the holder of `rec` is a process of this machine and pid
/// namespace that is gone (killed, crashed): its lock can be taken over.
fn holder_is_gone(rec: &LockRecord) -> bool {
    let (Some(theirs), Some(ours)) = (&rec.process, ProcessId::current()) else {
        return false;
    };
    rec.host == host_name()
        && theirs.boot == ours.boot
        && theirs.pid_namespace == ours.pid_namespace
        && start_time(rec.pid) != Some(theirs.start)
}

/// A held lease. Release it with [`Lease::release`]; dropping it releases
/// in the background on a best-effort basis.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    key: String,
    generation: u64,
    record: LockRecord,
    ttl: Duration,
    released: bool,
}

fn generation_key(name: &str, generation: u64) -> String {
    format!("{LOCKS_PREFIX}{name}/{generation:020}.json")
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn expiry(now: Timestamp, ttl: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(ttl)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

impl Lease {
    /// Takes lock `name` for `ttl`, or fails with [`Error::Locked`] naming
    /// the current holder.
    pub async fn acquire(store: &Store, name: &str, holder: &str, ttl: Duration) -> Result<Self> {
        if name.is_empty() || name.contains('/') {
            return Err(Error::InvalidOption {
                option: "lock name".into(),
                reason: format!("{name:?} must be non-empty without '/'"),
            });
        }
        // A lost create race means someone else just took it: look again,
        // which reports them as the holder.
        for _ in 0..3 {
            let newest = Self::newest(store, name).await?;
            let now = Timestamp::now();
            let next = match &newest {
                Some((generation, Some(rec))) if rec.expires > now && !holder_is_gone(rec) => {
                    let remaining = rec.expires.duration_since(now).unsigned_abs();
                    let _ = generation;
                    return Err(Error::Locked {
                        name: name.to_owned(),
                        holder: rec.holder.clone(),
                        host: rec.host.clone(),
                        pid: rec.pid,
                        expires: rec.expires.to_string(),
                        remaining,
                    });
                }
                Some((generation, _)) => generation + 1,
                None => 1,
            };
            let record = LockRecord {
                name: name.to_owned(),
                holder: holder.to_owned(),
                host: host_name(),
                pid: std::process::id(),
                token: format!("{:032x}", rand::random::<u128>()),
                acquired: now,
                expires: expiry(now, ttl),
                process: ProcessId::current(),
            };
            let key = generation_key(name, next);
            match store.create_if_absent(&key, encode(&record)).await {
                Ok(_) => {
                    if let Some((old, _)) = newest {
                        tracing::info!(
                            lock = name,
                            generation = old,
                            "took over an expired lock or one whose holder is gone"
                        );
                        let stale: Vec<String> = (old.saturating_sub(2)..=old)
                            .filter(|g| *g > 0)
                            .map(|g| generation_key(name, g))
                            .collect();
                        if let Err(e) = store.delete_many(stale).await {
                            tracing::debug!(error = %e, "cleanup of old lock generations failed");
                        }
                    }
                    return Ok(Self {
                        store: store.clone(),
                        key,
                        generation: next,
                        record,
                        ttl,
                        released: false,
                    });
                }
                Err(Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Locked {
            name: name.to_owned(),
            holder: "another process (contended)".into(),
            host: "unknown".into(),
            pid: 0,
            expires: "unknown".into(),
            remaining: Duration::ZERO,
        })
    }

    /// The newest generation and its record (None if it vanished meanwhile,
    /// i.e. was released).
    async fn newest(store: &Store, name: &str) -> Result<Option<(u64, Option<LockRecord>)>> {
        let prefix = format!("{LOCKS_PREFIX}{name}/");
        let newest = store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|m| {
                m.key
                    .strip_prefix(&prefix)?
                    .strip_suffix(".json")?
                    .parse::<u64>()
                    .ok()
            })
            .max();
        let Some(generation) = newest else {
            return Ok(None);
        };
        let key = generation_key(name, generation);
        match store.get(&key).await {
            Ok(raw) => {
                let rec = serde_json::from_slice(&raw).map_err(|e| Error::InvalidDocument {
                    key,
                    reason: e.to_string(),
                })?;
                Ok(Some((generation, Some(rec))))
            }
            Err(Error::NotFound { .. }) => Ok(Some((generation, None))),
            Err(e) => Err(e),
        }
    }

    /// What this lease's lock object says.
    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    /// Extends the lease by its ttl from now. Fails with [`Error::LockLost`]
    /// if another process took the lock over meanwhile.
    pub async fn renew(&mut self) -> Result<()> {
        match Self::newest(&self.store, &self.record.name).await? {
            Some((g, Some(rec))) if g == self.generation && rec.token == self.record.token => {}
            _ => {
                return Err(Error::LockLost {
                    name: self.record.name.clone(),
                });
            }
        }
        self.record.expires = expiry(Timestamp::now(), self.ttl);
        self.store.put(&self.key, encode(&self.record)).await?;
        Ok(())
    }

    /// Releases the lock.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        self.store.delete_many([self.key.as_str()]).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let store = self.store.clone();
        let key = self.key.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = store.delete_many([key.as_str()]).await {
                        tracing::warn!(error = %e, "releasing a dropped lock failed; it expires by itself");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(lock = %self.record.name, "lock dropped outside a runtime; it expires by itself")
            }
        }
    }
}

fn encode(record: &LockRecord) -> Vec<u8> {
    serde_json::to_vec_pretty(record).unwrap_or_default()
}

/// A lease held through a long job: taken (waiting up to `wait` while
/// another process holds it), renewed in the background every ttl/4, and
/// checked before each step. Work must stop once a renewal is overdue by
/// half the ttl, well before another process could take the lock over.
pub struct HeldLease {
    state: std::sync::Arc<std::sync::Mutex<Renewals>>,
    ttl: Duration,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Lease>>,
}

struct Renewals {
    renewed: std::time::Instant,
    lost: Option<String>,
}

impl HeldLease {
    /// Takes lock `name` for `holder`; [`Error::Locked`] once `wait` has
    /// passed with the lock held by another process.
    pub async fn acquire(
        store: &Store,
        name: &str,
        holder: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Self> {
        let deadline = std::time::Instant::now() + wait;
        let mut lease = loop {
            match Lease::acquire(store, name, holder, ttl).await {
                Ok(lease) => break lease,
                Err(e @ Error::Locked { .. }) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(e);
                    }
                    tokio::time::sleep(left.min(Duration::from_millis(500))).await;
                }
                Err(e) => return Err(e),
            }
        };
        let state = std::sync::Arc::new(std::sync::Mutex::new(Renewals {
            renewed: std::time::Instant::now(),
            lost: None,
        }));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        let lock = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return lease,
                    () = tokio::time::sleep(ttl / 4) => {}
                }
                let outcome = lease.renew().await;
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(()) => s.renewed = std::time::Instant::now(),
                    Err(Error::LockLost { .. }) => {
                        s.lost = Some("another process took it over".into());
                        return lease;
                    }
                    // Transient: the next tick retries; `check` stops the
                    // work if renewals stay overdue.
                    Err(e) => tracing::warn!(error = %e, lock = %lock, "renewing the lock failed"),
                }
            }
        });
        Ok(Self {
            state,
            ttl,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `Err(reason)` when the lock may no longer be ours: taken over, or
    /// not renewed for half its ttl.
    pub fn check(&self) -> std::result::Result<(), String> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &s.lost {
            return Err(reason.clone());
        }
        let age = s.renewed.elapsed();
        if age > self.ttl / 2 {
            return Err(format!("not renewed for {}s", age.as_secs()));
        }
        Ok(())
    }

    /// Stops renewing and releases the lock (best effort: a lock left
    /// behind expires by itself).
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(lease) => {
                    if let Err(e) = lease.release().await {
                        tracing::warn!(error = %e, "releasing the lock failed; it expires by itself");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the lock's renewal task failed"),
            }
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // An error path: stop renewing; the lease's own drop releases it.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::StorageOptions;

    /// A lock held for an hour by `pid` started at `start`, on this machine.
    async fn held_by(store: &Store, pid: u32, start: u64) {
        let now = Timestamp::now();
        let mut process = ProcessId::current().unwrap();
        process.start = start;
        let record = LockRecord {
            name: "t".into(),
            holder: "killed".into(),
            host: host_name(),
            pid,
            token: "x".into(),
            acquired: now,
            expires: expiry(now, Duration::from_secs(3600)),
            process: Some(process),
        };
        store
            .create_if_absent(&generation_key("t", 1), encode(&record))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lock_of_a_process_that_is_gone_is_taken_over_at_once() {
        let store = StorageOptions::from_url("memory://lock-gone")
            .build()
            .unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        held_by(&store, pid, 1).await;
        let lease = Lease::acquire(&store, "t", "next", Duration::from_secs(60)).await;
        assert!(lease.is_ok(), "{lease:?}");
    }

    #[tokio::test]
    async fn a_lock_of_a_running_process_is_not() {
        let store = StorageOptions::from_url("memory://lock-live")
            .build()
            .unwrap();
        let me = std::process::id();
        held_by(&store, me, start_time(me).unwrap()).await;
        let lease = Lease::acquire(&store, "t", "next", Duration::from_secs(60)).await;
        assert!(matches!(lease, Err(Error::Locked { .. })), "{lease:?}");
    }
}
