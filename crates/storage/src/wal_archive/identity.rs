//! `wal/cluster.json`: which cluster a repository's WAL archive belongs to
//! and which of its timelines may archive into it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::CLUSTER_KEY;
use crate::error::{Error, Result};
use crate::object::Store;

/// The cluster a WAL archive belongs to. Written create-only by the first
/// push; push, fetch (and base backups) refuse a cluster that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterIdentity {
    /// Format of this document (1).
    pub format: u32,
    /// `pg_controldata`'s "Database system identifier" (decimal string).
    #[serde(with = "decimal_u64")]
    pub system_identifier: u64,
    /// PostgreSQL major version.
    pub pg_major: u32,
    /// WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// Timelines allowed to archive here: the first pushed segment's, plus
    /// every timeline adopted since (a promotion of the production cluster).
    /// A promoted clone's new timeline is refused until adopted.
    pub timelines: Vec<u32>,
    /// When the first segment was pushed.
    pub created: Timestamp,
    /// cfdr version and host that pushed it.
    pub created_by: String,
}

impl ClusterIdentity {
    /// The identity of a cluster first seen through one of its segments.
    pub fn new(
        system_identifier: u64,
        pg_major: u32,
        wal_segment_size: u64,
        timeline: u32,
    ) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        ClusterIdentity {
            format: 1,
            system_identifier,
            pg_major,
            wal_segment_size,
            timelines: vec![timeline],
            created: Timestamp::now(),
            created_by: format!("cfdr {} on {host}", crate::TOOL_VERSION),
        }
    }

    /// `sysid 7301... (PostgreSQL 15)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "system identifier {} (PostgreSQL {})",
            self.system_identifier, self.pg_major
        )
    }

    /// Whether this is the cluster with `system_identifier` and `pg_major`.
    pub fn is_cluster(&self, system_identifier: u64, pg_major: u32) -> bool {
        self.system_identifier == system_identifier && self.pg_major == pg_major
    }

    /// The identity stored in `store`, or `None` before the first push; a
    /// document that does not parse is [`Error::Corrupt`].
    pub async fn read(store: &Store) -> Result<Option<Self>> {
        match store.get(CLUSTER_KEY).await {
            Ok(raw) => Self::parse(&raw).map(Some),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The identity in `raw` (the bytes of `wal/cluster.json`); a document
    /// that does not parse is [`Error::Corrupt`].
    pub fn parse(raw: &[u8]) -> Result<Self> {
        serde_json::from_slice(raw).map_err(|e| Error::Corrupt {
            key: CLUSTER_KEY.into(),
            reason: format!("not a cluster identity: {e}"),
        })
    }

    /// Whether `timeline` may archive here.
    pub fn accepts_timeline(&self, timeline: u32) -> bool {
        self.timelines.contains(&timeline)
    }
}

/// A `u64` as a decimal string: system identifiers exceed JSON's exact
/// integers (2^53), and `pg_controldata` prints them in decimal.
pub mod decimal_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `v` as a decimal string.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Reads a decimal string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
