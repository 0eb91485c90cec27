//! Deleting what a plan says, in a crash-safe order, under the lease lock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cfdr_storage::{Lease, LockMode, LockedObject, Store};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::inventory::{PENDING_KEY, Pending};

/// Name of the repository lock prune takes (`locks/prune/...`).
pub const LOCK_NAME: &str = "prune";
/// Keys per batch delete (S3's `DeleteObjects` limit).
const BATCH: usize = 1000;
/// Batches in flight at once.
const PARALLEL_BATCHES: usize = 4;

/// The keys a prune deletes, in the order it deletes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Deletions {
    /// Manifests of the backups to delete (first: from then on they are
    /// not listed as backups).
    pub manifests: Vec<String>,
    /// Their data objects.
    pub objects: Vec<String>,
    /// WAL files below the PITR horizon.
    pub wal: Vec<String>,
    /// Objects of uncommitted backups past the grace period, and of backups
    /// whose deletion an earlier prune started.
    pub leftovers: Vec<String>,
}

impl Deletions {
    /// Every key, in deletion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.manifests
            .iter()
            .chain(&self.objects)
            .chain(&self.wal)
            .chain(&self.leftovers)
            .map(String::as_str)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.manifests.len() + self.objects.len() + self.wal.len() + self.leftovers.len()
    }

    /// True when there is nothing to delete.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct LeaseState {
    renewed: Instant,
    lost: Option<String>,
}

/// The held prune lock, renewed in the background every ttl/4. Deleting
/// stops once a renewal is overdue by half the ttl, well before another
/// process could take the lock over.
pub(crate) struct Guard {
    state: Arc<Mutex<LeaseState>>,
    ttl: Duration,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Lease>>,
}

impl Guard {
    pub(crate) async fn acquire(store: &Store, ttl: Duration, wait: Duration) -> Result<Guard> {
        let deadline = Instant::now() + wait;
        let mut lease = loop {
            match Lease::acquire(store, LOCK_NAME, "cfdr-prune", ttl).await {
                Ok(lease) => break lease,
                Err(e @ cfdr_storage::Error::Locked { .. }) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Locked {
                            source: Box::new(e),
                        });
                    }
                    tokio::time::sleep(left.min(Duration::from_millis(500))).await;
                }
                Err(e) => return Err(Error::storage("taking the prune lock")(e)),
            }
        };
        let state = Arc::new(Mutex::new(LeaseState {
            renewed: Instant::now(),
            lost: None,
        }));
        let (stop, mut stopped) = oneshot::channel();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return lease,
                    () = tokio::time::sleep(ttl / 4) => {}
                }
                let outcome = lease.renew().await;
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(()) => s.renewed = Instant::now(),
                    Err(cfdr_storage::Error::LockLost { .. }) => {
                        s.lost = Some("another process took it over".into());
                        return lease;
                    }
                    // Transient: the next tick retries; `check` stops work
                    // if renewals stay overdue.
                    Err(e) => tracing::warn!(error = %e, "renewing the prune lock failed"),
                }
            }
        });
        Ok(Guard {
            state,
            ttl,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Fails when the lock may no longer be ours.
    fn check(&self) -> Result<()> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &s.lost {
            return Err(Error::LockLost {
                reason: reason.clone(),
            });
        }
        let age = s.renewed.elapsed();
        if age > self.ttl / 2 {
            return Err(Error::LockLost {
                reason: format!("not renewed for {}s", age.as_secs()),
            });
        }
        Ok(())
    }

    /// Stops renewing and releases the lock.
    pub(crate) async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Ok(lease) = task.await
        {
            // The work is done: a lock left behind only delays the next
            // prune until it expires.
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %e, "releasing the prune lock failed; it expires by itself");
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // An error path: stop renewing; the lease's own drop releases it.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Deletes `keys` in parallel batches, checking the lock before each batch;
/// adds each finished batch to `done`. With object lock on, every version
/// of each key goes (a plain delete on a versioned bucket only hides it);
/// versions still locked stay and are added to `locked`.
async fn delete_all(
    store: &Store,
    guard: &Guard,
    keys: &[String],
    done: &mut usize,
    locked: &mut Vec<LockedObject>,
) -> Result<()> {
    let versioned = store.lock_mode() != LockMode::Off;
    let mut batches = futures::stream::iter(keys.chunks(BATCH))
        .map(|chunk| async move {
            guard.check()?;
            if versioned {
                let outcome = store
                    .delete_versions(chunk)
                    .await
                    .map_err(Error::storage("deleting object versions"))?;
                return Ok::<_, Error>((outcome.deleted, outcome.locked));
            }
            store
                .delete_many(chunk)
                .await
                .map_err(Error::storage("deleting objects"))?;
            Ok((chunk.len(), Vec::new()))
        })
        .buffer_unordered(PARALLEL_BATCHES);
    while let Some((n, refused)) = batches.try_next().await? {
        *done += n;
        locked.extend(refused);
    }
    Ok(())
}

/// Runs the deletions: pending record, manifests, data objects, WAL,
/// leftovers, then removes the pending record. Returns the objects deleted
/// and those left because they are still locked.
pub(crate) async fn execute(
    store: &Store,
    guard: &Guard,
    work: &Deletions,
    pending: &Pending,
) -> Result<(usize, Vec<LockedObject>)> {
    let mut done = 0;
    let mut locked = Vec::new();
    let run = async {
        if !pending.backups.is_empty() {
            guard.check()?;
            let body = serde_json::to_vec_pretty(pending).unwrap_or_default();
            store
                .put(PENDING_KEY, body)
                .await
                .map_err(Error::storage("writing the pending-deletion record"))?;
        }
        for (phase, keys) in [
            ("manifests", &work.manifests),
            ("data objects", &work.objects),
            ("WAL files", &work.wal),
            ("leftovers", &work.leftovers),
        ] {
            if !keys.is_empty() {
                tracing::info!(count = keys.len(), "deleting {phase}");
                delete_all(store, guard, keys, &mut done, &mut locked).await?;
            }
        }
        guard.check()?;
        let record = [PENDING_KEY.to_owned()];
        if store.lock_mode() == LockMode::Off {
            store.delete_many(&record).await.map(|_| ())
        } else {
            store.delete_versions(&record).await.map(|_| ())
        }
        .map_err(Error::storage("removing the pending-deletion record"))?;
        Ok::<(), Error>(())
    };
    run.await.map_err(|e| Error::Interrupted {
        deleted: done,
        source: Box::new(e),
    })?;
    Ok((done, locked))
}
