//! Deleting what a plan says, in a crash-safe order, under the lease lock.

use std::time::Duration;

use cfdr_storage::{HeldLease, LockMode, LockedObject, Store};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

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

/// The held prune lock ([`HeldLease`]): deleting stops once a renewal is
/// overdue, well before another process could take the lock over.
pub(crate) struct Guard(HeldLease);

impl Guard {
    pub(crate) async fn acquire(store: &Store, ttl: Duration, wait: Duration) -> Result<Guard> {
        HeldLease::acquire(store, LOCK_NAME, "cfdr-prune", ttl, wait)
            .await
            .map(Guard)
            .map_err(|e| match e {
                e @ cfdr_storage::Error::Locked { .. } => Error::Locked {
                    source: Box::new(e),
                },
                e => Error::storage("taking the prune lock")(e),
            })
    }

    /// Fails when the lock may no longer be ours.
    fn check(&self) -> Result<()> {
        self.0.check().map_err(|reason| Error::LockLost { reason })
    }

    /// Stops renewing and releases the lock: the work is done, and a lock
    /// left behind only delays the next prune until it expires.
    pub(crate) async fn release(self) {
        self.0.release().await;
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
