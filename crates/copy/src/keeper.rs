//! The copy lock on the secondary, renewed in the background.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cfdr_storage::{Lease, Store};
use tokio::sync::oneshot;

use crate::{Error, LOCK_NAME, Result};

struct State {
    renewed: Instant,
    lost: Option<String>,
}

/// A held lease renewed every ttl/4. Work stops once a renewal is overdue
/// by half the ttl, well before another copy could take the lock over.
pub(crate) struct Keeper {
    state: Arc<Mutex<State>>,
    ttl: Duration,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Lease>,
}

impl Keeper {
    pub(crate) async fn acquire(store: &Store, ttl: Duration, wait: Duration) -> Result<Self> {
        let ttl = ttl.max(Duration::from_secs(1));
        let deadline = Instant::now() + wait;
        let holder = format!("cfdr-copy {}", env!("CARGO_PKG_VERSION"));
        let mut lease = loop {
            match Lease::acquire(store, LOCK_NAME, &holder, ttl).await {
                Ok(lease) => break lease,
                Err(e @ cfdr_storage::Error::Locked { .. }) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Locked {
                            secondary: store.location().display(),
                            source: Box::new(e),
                        });
                    }
                    tokio::time::sleep(left.min(Duration::from_millis(500))).await;
                }
                Err(e) => return Err(Error::storage("taking the copy lock on the secondary")(e)),
            }
        };
        let state = Arc::new(Mutex::new(State {
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
                    Err(e) => tracing::warn!(error = %e, "renewing the copy lock failed"),
                }
            }
        });
        Ok(Self {
            state,
            ttl,
            stop,
            task,
        })
    }

    /// Fails when the lock may no longer be ours.
    pub(crate) fn check(&self, store: &Store) -> Result<()> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let reason = match &s.lost {
            Some(r) => Some(r.clone()),
            None if s.renewed.elapsed() > self.ttl / 2 => Some(format!(
                "not renewed for {}s",
                s.renewed.elapsed().as_secs()
            )),
            None => None,
        };
        match reason {
            Some(reason) => Err(Error::LockLost {
                secondary: store.location().display(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Stops renewing and releases the lock (best effort: an unreleased
    /// lock expires by itself).
    pub(crate) async fn release(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(lease) => {
                if let Err(e) = lease.release().await {
                    tracing::warn!(error = %e, "releasing the copy lock failed; it expires by itself");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the copy lock's renewal task failed"),
        }
    }
}
