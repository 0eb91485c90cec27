//! Where WAL files live in a repository.
//!
//! ```text
//! wal/cluster.json                         identity of the archived cluster
//! wal/<first 16 hex of name>/<name>        segments, .partial and .backup files
//! wal/<TLI>.history                        timeline history files
//! ```
//!
//! Names are PostgreSQL's own file names, with no compression extension.

/// Prefix of the WAL archive.
pub const WAL_PREFIX: &str = "wal/";

/// The key of the WAL file `file_name` (as PostgreSQL names it).
pub fn wal_key(file_name: &str) -> String {
    if file_name.ends_with(".history") || file_name.len() < 24 {
        format!("{WAL_PREFIX}{file_name}")
    } else {
        format!("{WAL_PREFIX}{}/{file_name}", &file_name[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_group_by_timeline_and_log() {
        assert_eq!(
            wal_key("000000010000000000000003"),
            "wal/0000000100000000/000000010000000000000003"
        );
        assert_eq!(
            wal_key("000000010000000000000003.00000028.backup"),
            "wal/0000000100000000/000000010000000000000003.00000028.backup"
        );
        assert_eq!(wal_key("00000002.history"), "wal/00000002.history");
    }
}
