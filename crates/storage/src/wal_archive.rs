//! Where WAL archive files live in a repository.
//!
//! Segments, `.partial` and `.backup` files go under a folder named by the
//! first 16 hex digits of their name (timeline + log number), so no folder
//! holds more than 256 segments of 16 MiB per timeline and 4 GiB of WAL;
//! timeline history files sit directly under `wal/`. Names carry no
//! compression extension.

/// The object key of a WAL archive file named `file_name`:
/// `wal/0000000100000000/000000010000000000000003`, `wal/00000002.history`.
///
/// ```
/// use cfdr_storage::wal_archive::wal_key;
///
/// assert_eq!(wal_key("000000010000000000000003"), "wal/0000000100000000/000000010000000000000003");
/// assert_eq!(wal_key("00000002.history"), "wal/00000002.history");
/// ```
pub fn wal_key(file_name: &str) -> String {
    if file_name.ends_with(".history") {
        return format!("wal/{file_name}");
    }
    let folder = file_name.get(..16).unwrap_or(file_name);
    format!("wal/{folder}/{file_name}")
}
