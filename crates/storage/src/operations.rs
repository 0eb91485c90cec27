//! Operation markers: a restore or a failover in progress, recorded in the
//! repository while it runs, so that the trading gate (`cfdr-guard`) holds
//! `Halted` meanwhile.
//!
//! ```text
//! operations/<id>.json   {"version":1,"id":"20261201T201500Z-pitr-4242","kind":"pitr",
//!                         "detail":"...","started":"...","updated":"...","host":"db2","pid":4242}
//! ```
//!
//! [`Operation::around`] writes the marker (create-only), rewrites its
//! `updated` time every [`HEARTBEAT`] while the work runs, and deletes it
//! when the work ends, with success or with an error. A process that is
//! killed leaves its marker behind; [`OperationMarker::stale`] tells such a
//! marker from a running operation: the process is gone (same host, no
//! `/proc/<pid>`), or the marker was not rewritten for [`STALE_AFTER`]. A
//! stale marker is reported, never held forever: deleting it is the
//! operator's call (`operations/<id>.json`).

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::object::Store;

/// Prefix of every operation marker.
pub const OPERATIONS_PREFIX: &str = "operations/";
/// How often a running operation rewrites its marker.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A marker not rewritten for this long stands for no running operation.
pub const STALE_AFTER: Duration = Duration::from_secs(120);
const MARKER_FORMAT: u32 = 1;

/// What a marker says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationMarker {
    /// Format version (1).
    pub version: u32,
    /// Id: start time, kind and process id (sorts by start time).
    pub id: String,
    /// `restore-logical`, `pitr`, `promote`.
    pub kind: String,
    /// What is restored or promoted, in words.
    #[serde(default)]
    pub detail: String,
    /// When it started.
    pub started: Timestamp,
    /// When the running process last rewrote the marker.
    pub updated: Timestamp,
    /// Host name of the process.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

impl OperationMarker {
    /// Why this marker stands for no running operation (`None`: it may be
    /// running): its process is gone (checked only on the same host), or it
    /// was not rewritten for `stale_after`.
    pub fn stale(&self, now: Timestamp, stale_after: Duration) -> Option<String> {
        if self.host == crate::lock::host_name()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
        {
            return Some(format!("its process {} on {} is gone", self.pid, self.host));
        }
        let age = now.duration_since(self.updated);
        let limit =
            jiff::SignedDuration::try_from(stale_after).unwrap_or(jiff::SignedDuration::MAX);
        (age > limit).then(|| {
            format!(
                "not rewritten since {} (a running operation rewrites it every {}s)",
                self.updated,
                HEARTBEAT.as_secs()
            )
        })
    }
}

/// One object under `operations/`, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkerRead {
    /// A marker.
    Marker(OperationMarker),
    /// An object that is not a marker: its key and why.
    Unreadable {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Every object under `operations/` (one one-level listing, one read per
/// object).
pub async fn markers(store: &Store) -> Result<Vec<MarkerRead>> {
    let mut out = Vec::new();
    let listing = store.list_after(OPERATIONS_PREFIX, false, None).await?;
    for meta in listing.into_iter().filter(|m| !m.key.ends_with('/')) {
        let bytes = match store.get(&meta.key).await {
            Ok(b) => b,
            // Finished between the listing and the read.
            Err(crate::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        out.push(match serde_json::from_slice::<OperationMarker>(&bytes) {
            Ok(m) => MarkerRead::Marker(m),
            Err(e) => MarkerRead::Unreadable {
                key: meta.key,
                reason: format!("not an operation marker: {e}"),
            },
        });
    }
    Ok(out)
}

/// A running operation's marker. End it with [`Operation::finish`]; a
/// dropped one deletes its marker in the background, best effort.
#[derive(Debug)]
pub struct Operation {
    store: Store,
    key: String,
    marker: OperationMarker,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    finished: bool,
}

fn encode(marker: &OperationMarker) -> Vec<u8> {
    serde_json::to_vec_pretty(marker).unwrap_or_default()
}

impl Operation {
    /// Records operation `kind` (`restore-logical`, `pitr`, `promote`) as in
    /// progress and starts its heartbeat.
    pub async fn begin(store: &Store, kind: &str, detail: &str) -> Result<Operation> {
        let now = Timestamp::now();
        let pid = std::process::id();
        let id = format!("{}-{kind}-{pid}", now.strftime("%Y%m%dT%H%M%S%.3fZ"));
        let marker = OperationMarker {
            version: MARKER_FORMAT,
            id: id.clone(),
            kind: kind.to_owned(),
            detail: detail.to_owned(),
            started: now,
            updated: now,
            host: crate::lock::host_name(),
            pid,
        };
        let key = format!("{OPERATIONS_PREFIX}{id}.json");
        store.create_if_absent(&key, encode(&marker)).await?;
        let heartbeat = {
            let (store, key, mut marker) = (store.clone(), key.clone(), marker.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    marker.updated = Timestamp::now();
                    if let Err(e) = store.put(&key, encode(&marker)).await {
                        tracing::warn!(%key, error = %e, "cannot rewrite the operation marker");
                    }
                }
            })
        };
        Ok(Operation {
            store: store.clone(),
            key,
            marker,
            heartbeat: Some(heartbeat),
            finished: false,
        })
    }

    /// For work that must not wait for the repository (a failover): writes
    /// the marker if `store` opens and the write succeeds within `within`;
    /// otherwise says why, and the caller goes on without a marker.
    pub async fn begin_within<E: std::fmt::Display>(
        store: impl Future<Output = std::result::Result<Store, E>>,
        kind: &str,
        detail: &str,
        within: Duration,
    ) -> std::result::Result<Operation, String> {
        let attempt = async {
            let store = store.await.map_err(|e| e.to_string())?;
            Operation::begin(&store, kind, detail)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(within, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("the repository did not answer within {within:?}")),
        }
    }

    /// The marker as written.
    pub fn marker(&self) -> &OperationMarker {
        &self.marker
    }

    /// The marker's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Ends the operation: stops the heartbeat and deletes the marker.
    pub async fn finish(mut self) -> Result<()> {
        self.finished = true;
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        self.store.delete_many([self.key.as_str()]).await
    }

    /// Runs `work` with operation `kind` recorded as in progress; the
    /// marker is deleted when `work` ends, with success or an error. A
    /// restore must not fail for want of a marker: when it cannot be
    /// written (a read-only repository), a warning says so and `work` runs
    /// unrecorded; a marker that cannot be deleted is left to go stale.
    pub async fn around<T, E, F>(
        store: &Store,
        kind: &str,
        detail: &str,
        work: F,
    ) -> std::result::Result<T, E>
    where
        F: Future<Output = std::result::Result<T, E>>,
    {
        let op = match Operation::begin(store, kind, detail).await {
            Ok(op) => Some(op),
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the {kind} in the repository: the trading gate does not see it in progress");
                None
            }
        };
        let result = work.await;
        if let Some(op) = op {
            let key = op.key.clone();
            if let Err(e) = op.finish().await {
                tracing::warn!(%key, error = %e, "cannot delete the operation marker; it is reported stale once this process is gone");
            }
        }
        result
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        if self.finished {
            return;
        }
        let (store, key) = (self.store.clone(), self.key.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = store.delete_many([key.as_str()]).await {
                    tracing::warn!(%key, error = %e, "cannot delete a dropped operation marker");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::StorageOptions;

    #[tokio::test]
    async fn a_marker_lives_while_the_work_runs_and_goes_with_it() {
        let store = StorageOptions::from_url("memory://operation-markers")
            .build()
            .unwrap();
        let seen = Operation::around(&store, "pitr", "to 14:29", async {
            let list = markers(&store).await?;
            Ok::<_, crate::Error>(list)
        })
        .await
        .unwrap();
        let [MarkerRead::Marker(m)] = &seen[..] else {
            panic!("{seen:?}")
        };
        assert_eq!((m.kind.as_str(), m.pid), ("pitr", std::process::id()));
        assert_eq!(m.stale(Timestamp::now(), STALE_AFTER), None);
        assert!(markers(&store).await.unwrap().is_empty());
        // An error ends it too.
        let failed: std::result::Result<(), crate::Error> =
            Operation::around(&store, "promote", "", async {
                Err(crate::Error::NotFound { key: "x".into() })
            })
            .await;
        assert!(failed.is_err());
        assert!(markers(&store).await.unwrap().is_empty());
    }

    #[test]
    fn markers_of_gone_processes_or_without_heartbeat_are_stale() {
        let now = Timestamp::now();
        let mut m = OperationMarker {
            version: 1,
            id: "x".into(),
            kind: "pitr".into(),
            detail: String::new(),
            started: now,
            updated: now,
            host: crate::lock::host_name(),
            pid: u32::MAX - 1,
        };
        assert!(m.stale(now, STALE_AFTER).unwrap().contains("is gone"));
        m.host = "another-host".into();
        assert_eq!(m.stale(now, STALE_AFTER), None);
        let later = now
            .checked_add(jiff::SignedDuration::from_secs(121))
            .unwrap();
        assert!(
            m.stale(later, STALE_AFTER)
                .unwrap()
                .contains("not rewritten")
        );
    }
}
