//! What changed between an archive and a folder.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::Glob;
use crate::error::{Result, io};
use crate::extract::{normalize_filter, selected};
use crate::index::{ArchiveDetails, EntryKind, Index, IndexEntry};

/// One entry present on both sides that differs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Archive path.
    pub path: String,
    /// What differs (`content`, `mode 0644 -> 0600`, `type file -> dir`, ...).
    pub what: String,
}

/// The differences between an archive and a folder laid out as a restore
/// `--into` that folder would lay it out (`--diff /` compares with the
/// live paths).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Diff {
    /// In the folder, not in the archive.
    pub added: Vec<String>,
    /// In the archive, not in the folder.
    pub removed: Vec<String>,
    /// On both sides, different.
    pub changed: Vec<Change>,
}

impl Diff {
    /// Whether the folder matches the archive.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares `index` (of an archive with `details`) with `dir`, limited to
/// `paths` (archive paths; empty: the archived roots). Modification times
/// are not compared: a restore or checkout changes them without changing
/// anything that matters.
pub fn diff(index: &Index, details: &ArchiveDetails, dir: &Path, paths: &[String]) -> Result<Diff> {
    let filter = normalize_filter(paths);
    let excludes: Vec<Glob> = details.excludes.iter().map(|p| Glob::new(p)).collect();
    let mut folder = BTreeMap::new();
    let starts = if filter.is_empty() {
        details.roots.clone()
    } else {
        filter.clone()
    };
    for start in &starts {
        walk(dir, start, &excludes, &mut folder)?;
    }
    let archived: BTreeMap<&str, &IndexEntry> = index
        .entries
        .iter()
        .filter(|e| selected(&filter, &e.path))
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut out = Diff::default();
    for (path, entry) in &archived {
        let Some(local) = folder.get(*path) else {
            out.removed.push((*path).to_owned());
            continue;
        };
        let what = compare(entry, local, &dir.join(path))?;
        if !what.is_empty() {
            out.changed.push(Change {
                path: (*path).to_owned(),
                what: what.join(", "),
            });
        }
    }
    out.added = folder
        .keys()
        .filter(|p| !archived.contains_key(p.as_str()))
        .cloned()
        .collect();
    Ok(out)
}

struct Local {
    kind: Option<EntryKind>,
    size: u64,
    mode: u32,
}

fn walk(
    dir: &Path,
    name: &str,
    excludes: &[Glob],
    out: &mut BTreeMap<String, Local>,
) -> Result<()> {
    if excludes.iter().any(|g| g.matches(name)) {
        return Ok(());
    }
    let path = dir.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&path)(e)),
    };
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        Some(EntryKind::File)
    } else if ft.is_dir() {
        Some(EntryKind::Dir)
    } else if ft.is_symlink() {
        Some(EntryKind::Symlink)
    } else {
        None
    };
    out.insert(
        name.to_owned(),
        Local {
            kind,
            size: meta.len(),
            mode: meta.mode() & 0o7777,
        },
    );
    if kind == Some(EntryKind::Dir) {
        let mut children = Vec::new();
        for child in fs::read_dir(&path).map_err(io(&path))? {
            children.push(child.map_err(io(&path))?.file_name());
        }
        for child in children {
            // Non-UTF-8 names cannot be in an archive: they are added.
            let child = child.to_string_lossy().into_owned();
            walk(dir, &format!("{name}/{child}"), excludes, out)?;
        }
    }
    Ok(())
}

fn compare(entry: &IndexEntry, local: &Local, path: &Path) -> Result<Vec<String>> {
    let mut what = Vec::new();
    let local_kind = local.kind.map_or("special file", EntryKind::name);
    if local.kind != Some(entry.kind) {
        what.push(format!("type {} -> {local_kind}", entry.kind.name()));
        return Ok(what);
    }
    match entry.kind {
        EntryKind::File => {
            if local.size != entry.size {
                what.push(format!("size {} -> {}", entry.size, local.size));
            } else if entry.sha256.as_deref() != Some(sha256_file(path)?.as_str()) {
                what.push("content".into());
            }
        }
        EntryKind::Symlink => {
            let target = fs::read_link(path).map_err(io(path))?;
            if entry.target.as_deref() != target.to_str() {
                what.push(format!(
                    "target {} -> {}",
                    entry.target.as_deref().unwrap_or("-"),
                    target.display()
                ));
            }
        }
        EntryKind::Dir => {}
    }
    // Symlink modes mean nothing on Linux.
    if entry.kind != EntryKind::Symlink && local.mode & 0o1777 != entry.mode & 0o1777 {
        what.push(format!("mode {:04o} -> {:04o}", entry.mode, local.mode));
    }
    Ok(what)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(io(path))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex::encode(hash.finalize()))
}
