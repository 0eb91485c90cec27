//! Where WAL files live in a repository: the one definition of the archive
//! layout, shared by WAL archiving and pruning.
//!
//! ```text
//! wal/cluster.json                                   cluster identity ([`ClusterIdentity`]; not WAL, never pruned)
//! wal/<TLI>.history                                  timeline history files
//! wal/<first 16 hex of the name>/<PostgreSQL name>   segments, .partial and .backup files
//! ```
//!
//! Grouping segments by their first 16 characters (timeline + log number)
//! keeps folders at most 256 segments (16 MiB WAL) wide and makes a listing
//! come back in WAL order. Names carry no compression extension.
//!
//! ```
//! use cfdr_storage::wal_archive::{wal_file_name, wal_key};
//!
//! let key = wal_key("000000010000000000000003");
//! assert_eq!(key, "wal/0000000100000000/000000010000000000000003");
//! assert_eq!(wal_key("00000002.history"), "wal/00000002.history");
//! assert_eq!(wal_file_name(&key), Some("000000010000000000000003"));
//! assert_eq!(wal_file_name("wal/cluster.json"), None);
//! ```

use crate::error::Result;
use crate::object::{ObjectMeta, Store};

mod identity;
pub use identity::{ClusterIdentity, decimal_u64};

/// Prefix of the WAL archive.
pub const WAL_PREFIX: &str = "wal/";
/// Key of the cluster identity document; not WAL, never pruned.
pub const CLUSTER_KEY: &str = "wal/cluster.json";

const GROUP_LEN: usize = 16;

/// The object key of WAL archive file `file_name` (a segment, `.partial`,
/// `.backup` or `.history` name as PostgreSQL passes it in `%f`):
/// `wal/0000000100000000/000000010000000000000003`, `wal/00000002.history`.
/// A name too short to group lands where [`wal_file_name`] does not
/// recognise it, so a pruner never mistakes it for WAL.
pub fn wal_key(file_name: &str) -> String {
    if file_name.ends_with(".history") {
        return format!("{WAL_PREFIX}{file_name}");
    }
    let group = file_name.get(..GROUP_LEN).unwrap_or(file_name);
    format!("{WAL_PREFIX}{group}/{file_name}")
}

/// The WAL file name stored at `key`, or `None` when the key is not in the
/// archive layout (including [`CLUSTER_KEY`]).
pub fn wal_file_name(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(WAL_PREFIX)?;
    match rest.split_once('/') {
        None => rest
            .ends_with(".history")
            .then_some(rest)
            .filter(|r| r.len() > ".history".len()),
        Some((group, name)) => (group.len() == GROUP_LEN
            && group.bytes().all(|b| b.is_ascii_hexdigit())
            && name.starts_with(group)
            && !name.contains('/'))
        .then_some(name),
    }
}

/// One file of the WAL archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalObject {
    /// The PostgreSQL file name.
    pub name: String,
    /// The object key.
    pub key: String,
    /// Stored size in bytes.
    pub size: u64,
}

/// Everything under `wal/`, sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalListing {
    /// Objects in the archive layout.
    pub files: Vec<WalObject>,
    /// Objects under `wal/` outside the layout (never WAL to a pruner),
    /// not counting [`CLUSTER_KEY`].
    pub unknown: Vec<ObjectMeta>,
    /// Whether [`CLUSTER_KEY`] exists.
    pub has_cluster: bool,
}

/// Lists the WAL archive (one recursive, paged listing of `wal/`).
pub async fn list_wal(store: &Store) -> Result<WalListing> {
    let mut out = WalListing::default();
    for meta in store.list(WAL_PREFIX).await? {
        if meta.key == CLUSTER_KEY {
            out.has_cluster = true;
            continue;
        }
        match wal_file_name(&meta.key) {
            Some(name) => out.files.push(WalObject {
                name: name.to_owned(),
                key: meta.key.clone(),
                size: meta.size,
            }),
            None => out.unknown.push(meta),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_round_trip() {
        for name in [
            "000000010000000000000003",
            "00000001000000000000000A.partial",
            "000000010000000000000002.00000028.backup",
            "0000000A.history",
        ] {
            let key = wal_key(name);
            assert_eq!(wal_file_name(&key), Some(name), "{key}");
        }
        assert_eq!(
            wal_key("000000020000000100000003.partial"),
            "wal/0000000200000001/000000020000000100000003.partial"
        );
    }

    #[test]
    fn bad_names_and_foreign_keys() {
        assert_eq!(wal_file_name(&wal_key("xyz.partial")), None);
        for key in [
            "wal/cluster.json",
            "wal/README",
            "wal/.history",
            "wal/0000000100000000/000000020000000000000003",
            "wal/0000000100000000/x/000000010000000000000003",
            "backups/000000010000000000000003",
            "wal/000000010000000000000003",
        ] {
            assert_eq!(wal_file_name(key), None, "{key}");
        }
    }
}
