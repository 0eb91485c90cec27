//! The things a plan decides about: backups and their kinds.

use std::collections::BTreeSet;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::wal::WalRange;

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Kind {
    /// A logical dump (`pg_dump`).
    Logical,
    /// A physical base backup; restoring it needs WAL.
    Physical,
    /// An encrypted secrets bundle.
    Secrets,
    /// A configuration snapshot.
    Config,
    /// An application log export.
    Logs,
    /// An audit log export.
    Audit,
    /// A trading records export.
    Trading,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 7] = [
        Kind::Logical,
        Kind::Physical,
        Kind::Secrets,
        Kind::Config,
        Kind::Logs,
        Kind::Audit,
        Kind::Trading,
    ];

    /// The configuration name (`logical`, `physical`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Logical => "logical",
            Kind::Physical => "physical",
            Kind::Secrets => "secrets",
            Kind::Config => "config",
            Kind::Logs => "logs",
            Kind::Audit => "audit",
            Kind::Trading => "trading",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One backup in the repository, as retention sees it.
///
/// ```
/// use cfdr_retention::{Item, Kind, Lsn, WalRange};
///
/// let b = Item::new("20250101T000000Z-physical", "2025-01-01T00:00:00Z".parse()?, Kind::Physical)
///     .class("daily")
///     .size(1 << 30)
///     .wal(WalRange::new(1, "0/2000028".parse()?, "0/2000100".parse()?));
/// assert!(b.complete && !b.pinned);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Item {
    /// Unique id; also the tie-breaker between items with equal times (the
    /// greater id counts as the newer).
    pub id: String,
    /// When the backup was taken (its start time).
    pub time: Timestamp,
    /// What it holds.
    pub kind: Kind,
    /// The schedule that made it (`hourly`, `daily`, `weekly`, `archive`,
    /// `manual`, ...). Free text; see [`Config::archive_classes`](crate::Config::archive_classes).
    #[serde(default)]
    pub class: String,
    /// False when the backup has no manifest (still running, or crashed).
    #[serde(default = "yes")]
    pub complete: bool,
    /// Legal hold: never deleted, whatever the policy says.
    #[serde(default)]
    pub pinned: bool,
    /// Free tags, matched by `keep-tag`.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Stored size in bytes (for the plan's summary).
    #[serde(default)]
    pub size: u64,
    /// For physical backups: the WAL they need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalRange>,
}

fn yes() -> bool {
    true
}

impl Item {
    /// A complete, unpinned, untagged item with no class.
    pub fn new(id: impl Into<String>, time: Timestamp, kind: Kind) -> Self {
        Item {
            id: id.into(),
            time,
            kind,
            class: String::new(),
            complete: true,
            pinned: false,
            tags: BTreeSet::new(),
            size: 0,
            wal: None,
        }
    }

    /// Sets the schedule class.
    #[must_use]
    pub fn class(mut self, class: impl Into<String>) -> Self {
        self.class = class.into();
        self
    }

    /// Marks the item as incomplete (no manifest).
    #[must_use]
    pub fn incomplete(mut self) -> Self {
        self.complete = false;
        self
    }

    /// Puts the item under legal hold.
    #[must_use]
    pub fn pinned(mut self) -> Self {
        self.pinned = true;
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.insert(tag.into());
        self
    }

    /// Sets the stored size.
    #[must_use]
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = bytes;
        self
    }

    /// Sets the WAL range of a physical backup.
    #[must_use]
    pub fn wal(mut self, range: WalRange) -> Self {
        self.wal = Some(range);
        self
    }
}
