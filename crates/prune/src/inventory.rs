//! What the repository holds, read once, and the engine's view of it.

use std::collections::{BTreeMap, BTreeSet};

use cfdr_retention::{DEFAULT_SEGMENT_SIZE, Item, Kind, WalItem, WalRange};
use cfdr_storage::wal_archive::{WalListing, list_wal};
use cfdr_storage::{BackupFolder, DamagedManifest, Manifest, Repository};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Key of the record of backups whose deletion has started: written before
/// the first manifest goes, removed when the prune finishes. A re-run
/// deletes the leftovers it names at once, inside the grace period too.
pub const PENDING_KEY: &str = "prune/pending.json";

/// The contents of [`PENDING_KEY`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// Ids of the backups being deleted.
    pub(crate) backups: BTreeSet<String>,
}

/// A backup prune leaves alone because retention cannot classify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Skipped {
    /// The backup id.
    pub id: String,
    /// Why it is left alone.
    pub reason: String,
}

/// Everything prune reads before it plans.
#[derive(Debug)]
pub(crate) struct Inventory {
    pub(crate) folders: BTreeMap<String, BackupFolder>,
    pub(crate) manifests: Vec<Manifest>,
    /// Committed backups whose manifest cannot be read: never planned,
    /// never deleted.
    pub(crate) damaged: Vec<DamagedManifest>,
    pub(crate) wal: WalListing,
    pub(crate) pending: Pending,
}

impl Inventory {
    pub(crate) async fn read(repo: &Repository) -> Result<Self> {
        let folders = repo
            .folders()
            .await
            .map_err(Error::storage("listing backups/"))?;
        let committed: Vec<_> = folders
            .iter()
            .filter(|f| f.committed)
            .map(|f| f.id.clone())
            .collect();
        let catalog = repo
            .catalog_of(&committed)
            .await
            .map_err(Error::storage("reading manifests"))?;
        let wal = list_wal(repo.store())
            .await
            .map_err(Error::storage("listing wal/"))?;
        let pending = match repo.store().get(PENDING_KEY).await {
            Ok(raw) => serde_json::from_slice(&raw).unwrap_or_else(|e| {
                tracing::warn!(key = PENDING_KEY, error = %e, "ignoring an unreadable pending-deletion record");
                Pending::default()
            }),
            Err(cfdr_storage::Error::NotFound { .. }) => Pending::default(),
            Err(e) => return Err(Error::storage("reading the pending-deletion record")(e)),
        };
        Ok(Inventory {
            folders: folders
                .into_iter()
                .map(|f| (f.id.as_str().to_owned(), f))
                .collect(),
            manifests: catalog.backups,
            damaged: catalog.damaged,
            wal,
            pending,
        })
    }
}

/// The retention kind of a repository kind name.
fn kind(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.name() == name)
}

/// The engine's input: items, WAL items, the segment size they were parsed
/// with, and what was left out.
#[derive(Debug)]
pub(crate) struct Input {
    pub(crate) items: Vec<Item>,
    pub(crate) wal: Vec<WalItem>,
    pub(crate) segment_size: u64,
    pub(crate) skipped: Vec<Skipped>,
    pub(crate) unknown_wal: Vec<String>,
}

/// Builds the engine's input. Physical backups carry their WAL range from
/// `details.wal` and set the segment size (`details.wal_segment_size`,
/// 16 MiB when absent); `details.pinned` (legal hold) and `details.tags`
/// are read for every kind.
pub(crate) fn input(inv: &Inventory, configured_segment_size: u64) -> Result<Input> {
    let mut items = Vec::with_capacity(inv.folders.len());
    let mut skipped = Vec::new();
    let mut sizes = BTreeSet::new();
    for m in &inv.manifests {
        let id = m.id.as_str();
        let Some(k) = kind(&m.kind) else {
            skipped.push(Skipped {
                id: id.to_owned(),
                reason: format!("kind {:?} has no retention rules", m.kind),
            });
            continue;
        };
        let size = inv.folders.get(id).map_or(m.stored_size(), |f| f.size);
        let mut item = Item::new(id, m.started, k)
            .class(m.class.clone().unwrap_or_default())
            .size(size);
        item.pinned = m.details.get("pinned").and_then(|v| v.as_bool()) == Some(true);
        if let Some(tags) = m.details.get("tags").and_then(|v| v.as_array()) {
            item.tags = tags
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
        }
        if k == Kind::Physical {
            let seg = m.details.get("wal_segment_size").and_then(|v| v.as_u64());
            sizes.insert(seg.unwrap_or(DEFAULT_SEGMENT_SIZE));
            match m
                .details
                .get("wal")
                .cloned()
                .map(serde_json::from_value::<WalRange>)
            {
                Some(Ok(range)) => item.wal = Some(range),
                // Without a range the engine keeps every WAL file and says why.
                Some(Err(e)) => {
                    tracing::warn!(backup = id, error = %e, "unreadable WAL range in manifest")
                }
                None => {}
            }
        }
        items.push(item);
    }
    for folder in inv.folders.values().filter(|f| !f.committed) {
        let id = folder.id.as_str();
        match kind(folder.id.kind()) {
            Some(k) => items.push(
                Item::new(id, folder.id.time(), k)
                    .incomplete()
                    .size(folder.size),
            ),
            None => skipped.push(Skipped {
                id: id.to_owned(),
                reason: format!(
                    "uncommitted, kind {:?} has no retention rules",
                    folder.id.kind()
                ),
            }),
        }
    }
    if sizes.len() > 1 {
        return Err(Error::MixedSegmentSizes {
            sizes: sizes.into_iter().collect(),
        });
    }
    let segment_size = sizes.pop_first().unwrap_or(configured_segment_size);
    cfdr_retention::check_segment_size(segment_size)?;

    let mut wal = Vec::with_capacity(inv.wal.files.len());
    let mut unknown_wal: Vec<String> = inv.wal.unknown.iter().map(|m| m.key.clone()).collect();
    for f in &inv.wal.files {
        match WalItem::parse(&f.name, f.size, segment_size) {
            Ok(w) => wal.push(w),
            Err(_) => unknown_wal.push(f.key.clone()),
        }
    }
    unknown_wal.sort();
    Ok(Input {
        items,
        wal,
        segment_size,
        skipped,
        unknown_wal,
    })
}
