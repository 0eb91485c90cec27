//! Writing a file archive: walk, tar, index, manifest.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use cfdr_storage::{EncodeOptions, Manifest, Repository};
use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use crate::error::{Error, Result, io};
use crate::index::{
    ArchiveDetails, EntryKind, INDEX_NAME, Index, IndexEntry, TAR_NAME, stored_name,
};
use crate::{FileClass, Glob, git};

/// How errors on the tar stream itself name it.
const STREAM: &str = "archive stream";

/// What to archive.
#[derive(Clone, Debug)]
pub struct BackupRequest {
    /// What the paths hold (decides retention).
    pub class: FileClass,
    /// Files or folders to archive.
    pub paths: Vec<PathBuf>,
    /// Entries to leave out.
    pub excludes: Vec<Glob>,
    /// Tag the git checkout among `paths` (runbook 2.2) and record it.
    pub git_tag: bool,
}

impl BackupRequest {
    /// Archive `paths` as `class`, nothing excluded, no git tag.
    pub fn new(class: FileClass, paths: Vec<PathBuf>) -> Self {
        BackupRequest {
            class,
            paths,
            excludes: Vec::new(),
            git_tag: false,
        }
    }
}

/// A committed file archive.
#[derive(Clone, Debug)]
pub struct Archive {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its facts (also in the manifest).
    pub details: ArchiveDetails,
}

/// Archives `req.paths` into `repo`: the tar and the index through the
/// codec, then the manifest. Nothing is listed unless every step succeeded.
pub async fn backup(
    repo: &Repository,
    req: &BackupRequest,
    encode: &EncodeOptions,
) -> Result<Archive> {
    if req.paths.is_empty() {
        return Err(Error::InvalidOption {
            option: "--path",
            reason: "name at least one file or folder to archive".into(),
        });
    }
    let roots = req
        .paths
        .iter()
        .map(|p| archive_root(p))
        .collect::<Result<Vec<_>>>()?;
    let git = match req.git_tag {
        false => None,
        true => {
            let (dir, name) = git::find_checkout(&roots).ok_or_else(|| Error::InvalidOption {
                option: "--git-tag",
                reason: "none of the --path folders is the top of a git checkout (has .git)".into(),
            })?;
            let day = jiff::Timestamp::now().strftime("%Y%m%d").to_string();
            Some(git::tag(dir, name, &day)?)
        }
    };

    let mut writer = repo.begin_backup(req.class.kind(), Some(req.class.name()))?;
    let (rd, wr) = tokio::io::duplex(1 << 20);
    let sink = SyncIoBridge::new(wr);
    let walk_roots = roots.clone();
    let excludes = req.excludes.clone();
    let walker = tokio::task::spawn_blocking(move || write_tar(sink, &walk_roots, &excludes));
    let stored = writer
        .put_encoded(&stored_name(TAR_NAME, encode), rd, encode)
        .await;
    let walked = walker.await.map_err(|e| Error::BadSource {
        path: "archive writer".into(),
        reason: e.to_string(),
    })?;
    let (index, skipped) = match (walked, stored) {
        (Ok(walked), Ok(_)) => walked,
        // The upload stopped first; the walker only saw the stream close.
        (Err(Error::Io { source, .. }), Err(upload))
            if source.kind() == io::ErrorKind::BrokenPipe =>
        {
            return Err(upload.into());
        }
        // The walker stopped first: its error explains the short stream.
        (Err(walk), _) => return Err(walk),
        (Ok(_), Err(upload)) => return Err(upload.into()),
    };

    let index_json = serde_json::to_vec(&index).map_err(|e| Error::InvalidOption {
        option: "index",
        reason: e.to_string(),
    })?;
    let mut index_opts = encode.clone();
    index_opts.progress = None;
    writer
        .put_encoded(
            &stored_name(INDEX_NAME, &index_opts),
            std::io::Cursor::new(index_json),
            &index_opts,
        )
        .await?;

    let count = |k: EntryKind| index.entries.iter().filter(|e| e.kind == k).count() as u64;
    let details = ArchiveDetails {
        file_class: req.class,
        roots: roots.iter().map(|(_, n)| n.clone()).collect(),
        excludes: req
            .excludes
            .iter()
            .map(|g| g.pattern().to_owned())
            .collect(),
        files: count(EntryKind::File),
        dirs: count(EntryKind::Dir),
        symlinks: count(EntryKind::Symlink),
        bytes: index.entries.iter().map(|e| e.size).sum(),
        skipped,
        git,
    };
    let manifest = writer.commit(details.to_map()).await?;
    Ok(Archive { manifest, details })
}

/// The absolute source path and its archive name (no leading `/`). The
/// last component is not resolved: a symlink given as a path is archived
/// as a link.
fn archive_root(p: &Path) -> Result<(PathBuf, String)> {
    let bad = |reason: &str| Error::BadSource {
        path: p.display().to_string(),
        reason: reason.to_owned(),
    };
    let abs = match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            fs::canonicalize(parent).map_err(io(p))?.join(name)
        }
        _ => fs::canonicalize(p).map_err(io(p))?,
    };
    fs::symlink_metadata(&abs).map_err(io(p))?;
    let name = abs
        .to_str()
        .ok_or_else(|| bad("the path is not UTF-8"))?
        .trim_start_matches('/')
        .to_owned();
    if name.is_empty() {
        return Err(bad(
            "archiving / is not supported: name the folders to keep",
        ));
    }
    Ok((abs, name))
}

/// Reads a file, counting and hashing; pads with zeros (and says so) when
/// the file shrank after its size went into the header.
struct Hashing<R> {
    inner: R,
    left: u64,
    hash: Sha256,
    short: bool,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut n = if self.short {
            0
        } else {
            self.inner.read(&mut buf[..want])?
        };
        if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            n = want;
        }
        self.hash.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

struct Walk<'a, W: Write> {
    tar: tar::Builder<io::BufWriter<W>>,
    excludes: &'a [Glob],
    index: Index,
    seen: BTreeSet<String>,
    skipped: Vec<String>,
}

fn write_tar<W: Write>(
    sink: W,
    roots: &[(PathBuf, String)],
    excludes: &[Glob],
) -> Result<(Index, Vec<String>)> {
    let mut w = Walk {
        // Large writes: each one crosses into the async side (SyncIoBridge).
        tar: tar::Builder::new(io::BufWriter::with_capacity(1 << 20, sink)),
        excludes,
        index: Index::default(),
        seen: BTreeSet::new(),
        skipped: Vec::new(),
    };
    w.tar.follow_symlinks(false);
    for (path, name) in roots {
        w.entry(path, name)?;
    }
    let sink = w.tar.into_inner().map_err(io(STREAM))?;
    let mut sink = sink.into_inner().map_err(|e| io(STREAM)(e.into_error()))?;
    sink.flush().map_err(io(STREAM))?;
    Ok((w.index, w.skipped))
}

impl<W: Write> Walk<'_, W> {
    fn entry(&mut self, path: &Path, name: &str) -> Result<()> {
        if self.excludes.iter().any(|g| g.matches(name)) || !self.seen.insert(name.to_owned()) {
            return Ok(());
        }
        let meta = fs::symlink_metadata(path).map_err(io(path))?;
        let ft = meta.file_type();
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        let mode = meta.mode() & 0o7777;
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        let mut entry = IndexEntry {
            path: name.to_owned(),
            kind: EntryKind::File,
            size: 0,
            sha256: None,
            mode,
            mtime,
            target: None,
        };
        let fail = io(path);
        if ft.is_file() {
            let file = File::open(path).map_err(io(path))?;
            let size = file.metadata().map_err(io(path))?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            let mut data = Hashing {
                inner: file,
                left: size,
                hash: Sha256::new(),
                short: false,
            };
            self.tar
                .append_data(&mut header, name, &mut data)
                .map_err(fail)?;
            if data.short {
                tracing::warn!(path = %path.display(), "file shrank while being archived; the missing tail is stored as zeros");
            }
            entry.size = size;
            entry.sha256 = Some(hex::encode(data.hash.finalize()));
        } else if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            self.tar
                .append_data(&mut header, name, io::empty())
                .map_err(fail)?;
            entry.kind = EntryKind::Dir;
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io(path))?;
            let target = target.to_str().ok_or_else(|| Error::BadSource {
                path: path.display().to_string(),
                reason: "the symlink target is not UTF-8".into(),
            })?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            // Stored byte for byte (set_link_name would drop `.` components).
            if target.len() < 100 {
                header.set_link_name_literal(target).map_err(io(path))?;
                self.tar
                    .append_data(&mut header, name, io::empty())
                    .map_err(fail)?;
            } else {
                self.tar
                    .append_link(&mut header, name, target)
                    .map_err(fail)?;
            }
            entry.kind = EntryKind::Symlink;
            entry.target = Some(target.to_owned());
        } else {
            let what = if ft.is_socket() {
                "socket"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "device"
            };
            tracing::warn!(path = %path.display(), "left out a {what}: only files, folders and symlinks are archived");
            self.skipped.push(name.to_owned());
            return Ok(());
        }
        let is_dir = entry.kind == EntryKind::Dir;
        self.index.entries.push(entry);
        if is_dir {
            let mut children = fs::read_dir(path)
                .map_err(io(path))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
                .map_err(io(path))?;
            children.sort();
            for child in children {
                let child_path = path.join(&child);
                let Some(child_name) = child.to_str() else {
                    // Excludes see the name with U+FFFD for the bad bytes.
                    let lossy = format!("{name}/{}", child.to_string_lossy());
                    if self.excludes.iter().any(|g| g.matches(&lossy)) {
                        continue;
                    }
                    return Err(Error::BadSource {
                        path: child_path.display().to_string(),
                        reason: "the name is not UTF-8; rename it or --exclude it".into(),
                    });
                };
                self.entry(&child_path, &format!("{name}/{child_name}"))?;
            }
        }
        Ok(())
    }
}
