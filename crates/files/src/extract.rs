//! Restoring a file archive into a folder, checking every entry.
//!
//! The `tar` crate only frames the stream here (raw mode): long-name and
//! pax extension headers are read with a size limit and applied by this
//! module, and each entry is checked before anything of it is written.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cfdr_secrets::Identities;
use cfdr_storage::{Manifest, Repository, StoredObject, decode_to};
use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use crate::error::{Error, Result, io};
use crate::index::{EntryKind, Index, IndexEntry, TAR_NAME, object, read_index};

/// Largest long-name or pax extension header accepted.
const MAX_EXTENSION: u64 = 64 << 10;
/// Longest entry or link name accepted (Linux PATH_MAX).
const MAX_NAME: usize = 4096;
/// Write granularity; all-zero blocks become holes, so sparse files stay sparse.
const BLOCK: usize = 64 << 10;

/// What to restore and where.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// The folder to restore into (created if missing); nothing is written
    /// outside it.
    pub into: PathBuf,
    /// Only entries at or under these archive paths (empty: all).
    pub paths: Vec<String>,
    /// Replace existing files and symlinks (never folders).
    pub force: bool,
    /// Restore symlinks whose target lies outside `into` (as links; they
    /// are never followed during the restore). Refused by default.
    pub allow_outside_links: bool,
}

impl RestoreRequest {
    /// Everything into `into`, nothing overwritten, outside links refused.
    pub fn new(into: impl Into<PathBuf>) -> Self {
        RestoreRequest {
            into: into.into(),
            paths: Vec::new(),
            force: false,
            allow_outside_links: false,
        }
    }
}

/// What a restore wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Files written (each verified against the index).
    pub files: u64,
    /// Folders created or already there.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Normalises `--path` values to archive paths.
pub(crate) fn normalize_filter(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.trim_start_matches('/').trim_end_matches('/').to_owned())
        .collect()
}

/// Whether archive path `name` is selected by `filter`.
pub(crate) fn selected(filter: &[String], name: &str) -> bool {
    filter.is_empty()
        || filter.iter().any(|p| {
            p.is_empty()
                || name == p
                || (name.starts_with(p.as_str()) && name.as_bytes().get(p.len()) == Some(&b'/'))
        })
}

/// Restores archive `m` into `req.into`.
///
/// Entries are checked as they stream in and the restore stops at the first
/// refused one (what came before it is complete and verified, inside the
/// folder). The stored object's SHA-256 is checked at the end; a damaged
/// object fails the restore.
pub async fn restore(
    repo: &Repository,
    m: &Manifest,
    req: &RestoreRequest,
    identities: Option<Arc<Identities>>,
) -> Result<RestoreReport> {
    let index = read_index(repo, m, identities.clone()).await?;
    let filter = normalize_filter(&req.paths);
    if !index.entries.iter().any(|e| selected(&filter, &e.path)) {
        return Err(Error::NoMatch {
            id: m.id.to_string(),
            paths: req.paths.join(", "),
        });
    }
    // What the (verified) index already shows is refused before anything
    // is written; the stream is checked again entry by entry.
    for e in index.entries.iter().filter(|e| selected(&filter, &e.path)) {
        check_name(e.path.as_bytes())?;
        if let (EntryKind::Symlink, Some(target)) = (e.kind, &e.target)
            && !req.allow_outside_links
            && leaves_root(&e.path, target)
        {
            return Err(outside_link(e.path.as_bytes(), target));
        }
    }
    let obj = object(m, TAR_NAME)?.clone();
    check_stored(repo, &obj).await?;
    fs::create_dir_all(&req.into).map_err(io(&req.into))?;
    let into = fs::canonicalize(&req.into).map_err(io(&req.into))?;
    let (rd, wr) = tokio::io::duplex(1 << 20);
    let src = SyncIoBridge::new(rd);
    let opts = Options {
        into,
        filter,
        force: req.force,
        allow_outside_links: req.allow_outside_links,
    };
    let extractor = tokio::task::spawn_blocking(move || extract(src, &opts, &index));
    let store = repo.store().clone();
    let decoder = async move {
        let mut wr = wr;
        let r = decode_to(&store, &obj, identities, &mut wr).await;
        drop(wr);
        r
    };
    let (decoded, extracted) = tokio::join!(decoder, extractor);
    let extracted = extracted.map_err(|e| Error::Io {
        path: "restore".into(),
        source: io::Error::other(e.to_string()),
    })?;
    match decoded {
        // The extractor stopped reading: its error is the cause.
        Err(cfdr_storage::Error::Sink { .. }) => extracted,
        Err(e) => Err(e.into()),
        Ok(_) => extracted,
    }
}

/// Reads the stored archive once through its size and SHA-256 check, so
/// that damage anywhere in it refuses the restore before the first file is
/// written: files checked one by one could otherwise be restored up to the
/// damage, leaving old and restored files mixed (`--into /`). Costs a
/// second read of the archive.
async fn check_stored(repo: &Repository, obj: &StoredObject) -> Result<()> {
    let stream = repo.store().read_verified(&obj.key, &obj.stored).await?;
    let mut reader = tokio_util::io::StreamReader::new(stream);
    tokio::io::copy(&mut reader, &mut tokio::io::sink())
        .await
        .map_err(|e| cfdr_storage::io_to_error(e, &obj.key))?;
    Ok(())
}

struct Options {
    into: PathBuf,
    filter: Vec<String>,
    force: bool,
    allow_outside_links: bool,
}

/// Extension headers seen before the entry they describe.
#[derive(Default)]
struct Pending {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

fn refused(entry: &[u8], reason: impl Into<String>) -> Error {
    Error::Refused {
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason: reason.into(),
    }
}

fn outside_link(entry: &[u8], target: &str) -> Error {
    refused(
        entry,
        format!(
            "symlink to {target:?} points outside the target folder; pass --allow-outside-links to restore it as a link anyway"
        ),
    )
}

fn extract<R: Read>(src: R, opts: &Options, index: &Index) -> Result<RestoreReport> {
    let by_path: HashMap<&str, &IndexEntry> =
        index.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut report = RestoreReport::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut restored_files: HashSet<String> = HashSet::new();
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    // Large reads: each one crosses into the async side (SyncIoBridge).
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(1 << 20, src));
    let stream = || io("archive stream");
    {
        let entries = archive.entries().map_err(stream())?.raw(true);
        let mut pending = Pending::default();
        for entry in entries {
            let mut entry = entry.map_err(stream())?;
            let ty = entry.header().entry_type();
            let size = entry.header().entry_size().map_err(stream())?;
            let ext = ty.is_gnu_longname()
                || ty.is_gnu_longlink()
                || ty.is_pax_local_extensions()
                || ty.is_pax_global_extensions();
            if ext {
                let header_name = entry.path_bytes().into_owned();
                if size > MAX_EXTENSION {
                    return Err(refused(
                        &header_name,
                        format!("oversize extension header: {size} bytes (limit {MAX_EXTENSION})"),
                    ));
                }
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(stream())?;
                if ty.is_gnu_longname() || ty.is_gnu_longlink() {
                    while data.last() == Some(&0) {
                        data.pop();
                    }
                    let slot = if ty.is_gnu_longname() {
                        &mut pending.name
                    } else {
                        &mut pending.link
                    };
                    if slot.replace(data).is_some() {
                        return Err(refused(&header_name, "two long-name headers for one entry"));
                    }
                } else if ty.is_pax_local_extensions() {
                    for ext in tar::PaxExtensions::new(&data) {
                        let ext = ext.map_err(stream())?;
                        match ext.key_bytes() {
                            b"path" => pending.name = Some(ext.value_bytes().to_vec()),
                            b"linkpath" => pending.link = Some(ext.value_bytes().to_vec()),
                            b"size" | b"GNU.sparse.size" | b"GNU.sparse.map" => {
                                return Err(refused(
                                    &header_name,
                                    "pax size and sparse records are not accepted",
                                ));
                            }
                            _ => {}
                        }
                    }
                }
                continue;
            }
            let raw_name = pending
                .name
                .take()
                .unwrap_or_else(|| entry.path_bytes().into_owned());
            let raw_link = pending
                .link
                .take()
                .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
            let name = check_name(&raw_name)?;
            let Some(name) = name else { continue };
            if !selected(&opts.filter, &name) {
                continue;
            }
            let kind = match ty {
                tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => EntryKind::Symlink,
                tar::EntryType::Link => {
                    let target = check_link_name(&raw_name, raw_link.as_deref())?;
                    let target = check_name(target.as_bytes())
                        .map_err(|_| {
                            refused(
                                &raw_name,
                                format!("hardlink to {target:?}, outside the archive"),
                            )
                        })?
                        .unwrap_or_default();
                    if !restored_files.contains(&target) {
                        return Err(refused(
                            &raw_name,
                            format!(
                                "hardlink to {target:?}, which is not a file restored from this archive"
                            ),
                        ));
                    }
                    let (Some(e), Some(t)) =
                        (by_path.get(name.as_str()), by_path.get(target.as_str()))
                    else {
                        return Err(Error::Mismatch {
                            entry: name,
                            reason: "the hardlink is not in the index".into(),
                        });
                    };
                    if e.sha256 != t.sha256 {
                        return Err(Error::Mismatch {
                            entry: name,
                            reason: "the index lists other content".into(),
                        });
                    }
                    let path = prepare(opts, &name, false)?;
                    replace_with(opts, &path, &name, |tmp| {
                        fs::hard_link(opts.into.join(&target), tmp)
                    })?;
                    seen.insert(name);
                    report.hardlinks += 1;
                    continue;
                }
                other => {
                    return Err(refused(
                        &raw_name,
                        format!(
                            "{other:?} entries (devices, fifos, sparse or unknown types) are never restored"
                        ),
                    ));
                }
            };
            // Link targets are judged before the index: a hostile index
            // must not make an escaping link look merely "unlisted".
            let link_target = match kind {
                EntryKind::Symlink => {
                    let target = check_link_name(&raw_name, raw_link.as_deref())?;
                    if !opts.allow_outside_links && leaves_root(&name, &target) {
                        return Err(outside_link(&raw_name, &target));
                    }
                    target
                }
                _ => String::new(),
            };
            no_symlink_on_the_way(opts, &name)?;
            let Some(expected) = by_path.get(name.as_str()).copied() else {
                return Err(Error::Mismatch {
                    entry: name,
                    reason: "the entry is not in the index".into(),
                });
            };
            if expected.kind != kind {
                return Err(Error::Mismatch {
                    entry: name,
                    reason: format!(
                        "the index lists a {}, the archive a {}",
                        expected.kind.name(),
                        kind.name()
                    ),
                });
            }
            let mode = entry.header().mode().map_err(stream())? & 0o1777;
            let mtime = entry.header().mtime().map_err(stream())?;
            match kind {
                EntryKind::Dir => {
                    let path = prepare(opts, &name, true)?;
                    dirs.push((path, mode, mtime));
                    report.dirs += 1;
                }
                EntryKind::Symlink => {
                    let target = link_target;
                    if expected.target.as_deref() != Some(target.as_str()) {
                        return Err(Error::Mismatch {
                            entry: name,
                            reason: format!("link target {target:?} differs"),
                        });
                    }
                    let path = prepare(opts, &name, false)?;
                    replace_with(opts, &path, &name, |tmp| {
                        std::os::unix::fs::symlink(&target, tmp)
                    })?;
                    let t =
                        filetime::FileTime::from_unix_time(i64::try_from(mtime).unwrap_or(0), 0);
                    filetime::set_symlink_file_times(&path, t, t).map_err(io(&path))?;
                    report.symlinks += 1;
                }
                EntryKind::File => {
                    let path = prepare(opts, &name, false)?;
                    let size = entry.size();
                    replace_file(opts, &path, &name, &mut entry, expected, mode, mtime)?;
                    restored_files.insert(name.clone());
                    report.files += 1;
                    report.bytes += size;
                }
            }
            if kind != EntryKind::File {
                // A later hardlink may only name what is still a restored file.
                restored_files.remove(&name);
            }
            seen.insert(name);
        }
        if pending.name.is_some() || pending.link.is_some() {
            return Err(refused(
                b"(end of archive)",
                "an extension header describes no entry",
            ));
        }
    }
    // Read to the end so the stored object's checksum covers every byte.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(stream())?;
    if let Some(missing) = index
        .entries
        .iter()
        .find(|e| selected(&opts.filter, &e.path) && !seen.contains(&e.path))
    {
        return Err(Error::Mismatch {
            entry: missing.path.clone(),
            reason: "listed in the index but missing from the archive".into(),
        });
    }
    // Folder modes and times last: writing their contents changed them,
    // and a read-only folder would have refused the contents.
    for (path, mode, mtime) in dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(*mode)).map_err(io(path))?;
        let t = filetime::FileTime::from_unix_time(i64::try_from(*mtime).unwrap_or(0), 0);
        filetime::set_file_mtime(path, t).map_err(io(path))?;
    }
    Ok(report)
}

/// The archive path of an entry name, or `None` for `.` itself. Refuses
/// NUL, non-UTF-8, absolute names, `..`, empty components and oversize names.
fn check_name(raw: &[u8]) -> Result<Option<String>> {
    if raw.contains(&0) {
        return Err(refused(raw, "the name contains NUL"));
    }
    if raw.len() > MAX_NAME {
        return Err(refused(
            raw,
            format!("the name is longer than {MAX_NAME} bytes"),
        ));
    }
    let s = std::str::from_utf8(raw).map_err(|_| refused(raw, "the name is not UTF-8"))?;
    if s.starts_with('/') {
        return Err(refused(raw, "absolute path"));
    }
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    let mut parts = Vec::new();
    for c in trimmed.split('/') {
        match c {
            "" => return Err(refused(raw, "empty path component (`//`)")),
            "." => {}
            ".." => return Err(refused(raw, "`..` in the path")),
            c => parts.push(c),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

fn check_link_name(entry: &[u8], link: Option<&[u8]>) -> Result<String> {
    let link = link
        .filter(|l| !l.is_empty())
        .ok_or_else(|| refused(entry, "link without a target"))?;
    if link.contains(&0) {
        return Err(refused(entry, "the link target contains NUL"));
    }
    if link.len() > MAX_NAME {
        return Err(refused(
            entry,
            format!("the link target is longer than {MAX_NAME} bytes"),
        ));
    }
    std::str::from_utf8(link)
        .map(str::to_owned)
        .map_err(|_| refused(entry, "the link target is not UTF-8"))
}

/// Whether symlink `name -> target` resolves (lexically) outside the root.
fn leaves_root(name: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut depth = name.split('/').count() - 1;
    let mut descended = false;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            // `..` after a name could climb out of a symlink the name
            // resolves through (`s/..` with `s -> ..`): only leading `..`
            // are judged lexically.
            ".." if descended => return true,
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => descended = true,
        }
    }
    false
}

/// Refuses `name` when an existing parent of it inside the root is a
/// symlink (read-only: checked before anything of the entry is written).
fn no_symlink_on_the_way(opts: &Options, name: &str) -> Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    let mut path = opts.into.clone();
    for (i, part) in parts.iter().enumerate().take(parts.len() - 1) {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let prefix = parts[..=i].join("/");
                return Err(refused(
                    name.as_bytes(),
                    format!("it would be written through the symlink {prefix:?}"),
                ));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// Creates the parent folders of `name` inside the root, refusing to go
/// through a symlink or a file; with `dir`, the folder itself too. Returns
/// the entry's full path.
fn prepare(opts: &Options, name: &str, dir: bool) -> Result<PathBuf> {
    let parts: Vec<&str> = name.split('/').collect();
    let mut path = opts.into.clone();
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        if i == last && !dir {
            break;
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                let prefix = parts[..=i].join("/");
                return Err(refused(
                    name.as_bytes(),
                    format!("it would be written through the symlink {prefix:?}"),
                ));
            }
            Ok(_) if i == last && opts.force => {
                fs::remove_file(&path).map_err(io(&path))?;
                fs::create_dir(&path).map_err(io(&path))?;
            }
            Ok(_) if i == last => {
                return Err(Error::Exists {
                    path: path.display().to_string(),
                });
            }
            Ok(_) => {
                let prefix = parts[..=i].join("/");
                return Err(refused(
                    name.as_bytes(),
                    format!("{prefix:?} is not a folder"),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(io(&path))?
            }
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(path)
}

/// A unique temporary name beside `path`; not derived from the entry's
/// name, which may already be as long as a name can be.
fn temp_beside(path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState has fresh keys: a different name on every call.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    path.with_file_name(format!(".cfdr-restore-{:016x}", h.finish()))
}

/// Checks what is at `path` (a folder is never replaced; anything else
/// only with force), then creates the new entry at a temporary name with
/// `make` and renames it over `path` (rename replaces a symlink, never
/// follows it).
fn replace_with(
    opts: &Options,
    path: &Path,
    name: &str,
    make: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<()> {
    check_existing(opts, path, name)?;
    let tmp = temp_beside(path);
    make(&tmp).map_err(io(path))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io(path)(e)
    })
}

fn check_existing(opts: &Options, path: &Path, name: &str) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(refused(
            name.as_bytes(),
            format!("a folder exists at {}", path.display()),
        )),
        Ok(_) if !opts.force => Err(Error::Exists {
            path: path.display().to_string(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes a file entry to a temporary name (holes for zero blocks),
/// verifies size and SHA-256 against the index, sets mode and mtime, then
/// renames it into place.
fn replace_file(
    opts: &Options,
    path: &Path,
    name: &str,
    src: &mut impl Read,
    expected: &IndexEntry,
    mode: u32,
    mtime: u64,
) -> Result<()> {
    check_existing(opts, path, name)?;
    let tmp = temp_beside(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(path))?;
        let (size, hash) = copy_sparse(src, &mut file).map_err(io("archive stream"))?;
        if size != expected.size {
            return Err(Error::Mismatch {
                entry: name.to_owned(),
                reason: format!("{size} bytes, the index says {}", expected.size),
            });
        }
        if expected.sha256.as_deref() != Some(hash.as_str()) {
            return Err(Error::Mismatch {
                entry: name.to_owned(),
                reason: format!(
                    "SHA-256 {hash}, the index says {}",
                    expected.sha256.as_deref().unwrap_or("none")
                ),
            });
        }
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io(path))?;
        let t = filetime::FileTime::from_unix_time(i64::try_from(mtime).unwrap_or(0), 0);
        filetime::set_file_handle_times(&file, Some(t), Some(t)).map_err(io(path))?;
        fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn copy_sparse(src: &mut impl Read, file: &mut File) -> io::Result<(u64, String)> {
    let mut buf = vec![0u8; BLOCK];
    let mut hash = Sha256::new();
    let mut size = 0u64;
    loop {
        let mut n = 0;
        while n < BLOCK {
            match src.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        if buf[..n].iter().all(|b| *b == 0) {
            file.seek(SeekFrom::Current(n as i64))?;
        } else {
            file.write_all(&buf[..n])?;
        }
        size += n as u64;
    }
    file.set_len(size)?;
    Ok((size, hex::encode(hash.finalize())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name(b"a/b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(check_name(b"./a").unwrap().as_deref(), Some("a"));
        assert_eq!(check_name(b".").unwrap(), None);
        assert!(check_name(b"/etc/passwd").is_err());
        assert!(check_name(b"a/../../x").is_err());
        assert!(check_name(b"a//b").is_err());
        assert!(check_name(b"a\0b").is_err());
    }

    #[test]
    fn link_targets() {
        assert!(!leaves_root("etc/app/l", "../other/x"));
        assert!(!leaves_root("etc/app/l", "x"));
        assert!(leaves_root("etc/l", "../../x"));
        assert!(leaves_root("l", "/etc/passwd"));
        assert!(leaves_root("a/l", "b/../../../x"));
        assert!(leaves_root("a/l", "s/.."));
        assert!(!leaves_root("a/b/l", "../../x/y"));
    }

    #[test]
    fn filters() {
        let f = normalize_filter(&["/etc/app/".into()]);
        assert!(selected(&f, "etc/app"));
        assert!(selected(&f, "etc/app/x"));
        assert!(!selected(&f, "etc/apple"));
        assert!(selected(&[], "anything"));
    }
}
