//! The newest committed backup per kind and class, kept up to date without
//! reading every manifest each time.
//!
//! A scan lists `backups/` one level deep (starting after the ids older
//! than a look-back window, on backends that can) and reads the manifest
//! of each folder not seen committed yet. Every tenth scan starts from the
//! beginning, so pruned backups leave the view.

use std::collections::BTreeMap;

use cfdr_storage::{BACKUPS_PREFIX, BackupId, Error as StorageError, Repository};
use futures::StreamExt;
use jiff::Timestamp;
use serde::Serialize;

/// Backups whose folder appeared this long ago may still be committing.
const LOOK_BACK: jiff::SignedDuration = jiff::SignedDuration::from_hours(48);
const FULL_SCAN_EVERY: u64 = 10;
const MANIFEST_READS: usize = 16;

/// A committed backup, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupSeen {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Schedule class.
    pub class: Option<String>,
    /// Commit time.
    pub finished: Timestamp,
}

/// The view.
#[derive(Clone, Debug, Default)]
pub struct BackupView {
    committed: BTreeMap<BackupId, BackupSeen>,
    scans: u64,
    /// Listing and manifest requests made so far.
    pub requests: u64,
}

impl BackupView {
    /// Brings the view up to date.
    pub async fn scan(&mut self, repo: &Repository, now: Timestamp) -> cfdr_storage::Result<()> {
        let full = self.scans.is_multiple_of(FULL_SCAN_EVERY);
        self.scans += 1;
        let after = (!full)
            .then(|| now.checked_sub(LOOK_BACK).ok())
            .flatten()
            .map(|t| format!("{BACKUPS_PREFIX}{}", t.strftime("%Y%m%dT%H%M%S.%3fZ")));
        self.requests += 1;
        let entries = repo
            .store()
            .list_after(BACKUPS_PREFIX, false, after.as_deref())
            .await?;
        let mut present = Vec::new();
        for e in entries {
            let Some(name) = e
                .key
                .strip_prefix(BACKUPS_PREFIX)
                .and_then(|r| r.strip_suffix('/'))
            else {
                continue;
            };
            if let Ok(id) = BackupId::parse(name) {
                present.push(id);
            }
        }
        if full {
            let keep: std::collections::BTreeSet<&BackupId> = present.iter().collect();
            self.committed.retain(|id, _| keep.contains(id));
        }
        let unknown: Vec<BackupId> = present
            .into_iter()
            .filter(|id| !self.committed.contains_key(id))
            .collect();
        self.requests += unknown.len() as u64;
        let read: Vec<_> = futures::stream::iter(unknown)
            .map(|id| async move { (repo.manifest(&id).await, id) })
            .buffer_unordered(MANIFEST_READS)
            .collect()
            .await;
        for (result, id) in read {
            match result {
                Ok(m) => {
                    self.committed.insert(
                        id,
                        BackupSeen {
                            id: m.id.to_string(),
                            kind: m.kind,
                            class: m.class,
                            finished: m.finished,
                        },
                    );
                }
                // Not committed (yet): looked at again next scan.
                Err(StorageError::NotFound { .. } | StorageError::NoSuchBackup { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The newest committed backup matching `objective` (`kind` or
    /// `kind/class`).
    pub fn newest(&self, objective: &str) -> Option<&BackupSeen> {
        let (kind, class) = match objective.split_once('/') {
            Some((k, c)) => (k, Some(c)),
            None => (objective, None),
        };
        self.committed
            .values()
            .filter(|b| b.kind == kind && class.is_none_or(|c| b.class.as_deref() == Some(c)))
            .max_by_key(|b| b.finished)
    }

    /// How many committed backups the view holds.
    pub fn len(&self) -> usize {
        self.committed.len()
    }

    /// Whether the view holds none.
    pub fn is_empty(&self) -> bool {
        self.committed.is_empty()
    }
}
