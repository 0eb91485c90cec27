//! The copy lock on the secondary, renewed in the background.

use std::time::Duration;

use cfdr_storage::{HeldLease, Store};

use crate::{Error, LOCK_NAME, Result};

/// The held copy lock ([`HeldLease`]): work stops once a renewal is
/// overdue, well before another copy could take the lock over.
pub(crate) struct Keeper(HeldLease);

impl Keeper {
    pub(crate) async fn acquire(store: &Store, ttl: Duration, wait: Duration) -> Result<Self> {
        let holder = format!("cfdr-copy {}", env!("CARGO_PKG_VERSION"));
        let ttl = ttl.max(Duration::from_secs(1));
        HeldLease::acquire(store, LOCK_NAME, &holder, ttl, wait)
            .await
            .map(Keeper)
            .map_err(|e| match e {
                e @ cfdr_storage::Error::Locked { .. } => Error::Locked {
                    secondary: store.location().display(),
                    source: Box::new(e),
                },
                e => Error::storage("taking the copy lock on the secondary")(e),
            })
    }

    /// Fails when the lock may no longer be ours.
    pub(crate) fn check(&self, store: &Store) -> Result<()> {
        self.0.check().map_err(|reason| Error::LockLost {
            secondary: store.location().display(),
            reason,
        })
    }

    /// Stops renewing and releases the lock (best effort: an unreleased
    /// lock expires by itself).
    pub(crate) async fn release(self) {
        self.0.release().await;
    }
}
