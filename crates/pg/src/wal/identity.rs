//! `wal/cluster.json`: which cluster a repository's WAL archive belongs to
//! and which of its timelines may archive into it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::format::decimal_u64;

/// Key of the identity object.
pub const CLUSTER_KEY: &str = "wal/cluster.json";

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
            created_by: format!("cfdr {} on {host}", cfdr_storage::TOOL_VERSION),
        }
    }

    /// `sysid 7301... (PostgreSQL 15)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "system identifier {} (PostgreSQL {})",
            self.system_identifier, self.pg_major
        )
    }

    /// Whether `timeline` may archive here.
    pub fn accepts_timeline(&self, timeline: u32) -> bool {
        self.timelines.contains(&timeline)
    }
}
