//! The index of an archive and the archive facts in its manifest.

use std::sync::Arc;

use cfdr_secrets::Identities;
use cfdr_storage::{BackupId, Manifest, Repository, StoredObject, decode_to};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{FileClass, GitSnapshot};

/// Object name (before the codec extension) of the tar stream.
pub(crate) const TAR_NAME: &str = "files.tar";
/// Object name (before the codec extension) of the index.
pub(crate) const INDEX_NAME: &str = "index.json";

/// What an archive entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link (stored as a link, never followed).
    Symlink,
}

impl EntryKind {
    /// A short name for listings.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
        }
    }
}

/// One entry of an archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Path inside the archive: the source path without its leading `/`.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (files; 0 otherwise).
    pub size: u64,
    /// SHA-256 of the content, hex (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Link target (symlinks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Every entry of an archive, in archive order; stored beside the tar
/// through the same codec (names can be sensitive too).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The entries.
    pub entries: Vec<IndexEntry>,
}

impl Index {
    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&IndexEntry> {
        self.entries.iter().find(|e| e.path == path)
    }
}

/// The archive facts recorded in the manifest's `details`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveDetails {
    /// What the archive holds.
    pub file_class: FileClass,
    /// The archived paths, as archive paths (no leading `/`).
    pub roots: Vec<String>,
    /// Exclude patterns used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// Regular files archived.
    pub files: u64,
    /// Folders archived.
    pub dirs: u64,
    /// Symlinks archived.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Sockets, devices and fifos found and left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// The git checkout tagged with `--git-tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSnapshot>,
}

impl ArchiveDetails {
    /// Reads the details of a file archive's manifest.
    pub fn of(m: &Manifest) -> Result<Self> {
        if FileClass::from_kind(&m.kind).is_none() {
            return Err(not_archive(m));
        }
        serde_json::from_value(serde_json::Value::Object(m.details.clone())).map_err(|_| {
            Error::NotAnArchive {
                id: m.id.to_string(),
                kind: m.kind.clone(),
            }
        })
    }

    pub(crate) fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}

fn not_archive(m: &Manifest) -> Error {
    Error::NotAnArchive {
        id: m.id.to_string(),
        kind: m.kind.clone(),
    }
}

/// The manifest of file archive `id`.
pub async fn find_archive(repo: &Repository, id: &str) -> Result<Manifest> {
    let id = BackupId::parse(id)?;
    let m = repo.manifest(&id).await?;
    ArchiveDetails::of(&m)?;
    Ok(m)
}

/// The object of a manifest whose name starts with `name`.
pub(crate) fn object<'a>(m: &'a Manifest, name: &str) -> Result<&'a StoredObject> {
    let prefix = format!("{}{name}", m.id.prefix());
    m.objects
        .iter()
        .find(|o| o.key.starts_with(&prefix))
        .ok_or_else(|| not_archive(m))
}

/// Reads (and verifies) the index of a file archive.
pub async fn read_index(
    repo: &Repository,
    m: &Manifest,
    identities: Option<Arc<Identities>>,
) -> Result<Index> {
    ArchiveDetails::of(m)?;
    let obj = object(m, INDEX_NAME)?;
    let mut raw = Vec::new();
    decode_to(repo.store(), obj, identities, &mut raw).await?;
    serde_json::from_slice(&raw).map_err(|e| {
        Error::Storage(cfdr_storage::Error::InvalidDocument {
            key: obj.key.clone(),
            reason: e.to_string(),
        })
    })
}

/// The object name with the codec's extension.
pub(crate) fn stored_name(name: &str, opts: &cfdr_storage::EncodeOptions) -> String {
    opts.object_name(name)
}
