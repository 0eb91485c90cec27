//! WAL archiving: `archive_command` / `restore_command` for a cfdr repository.
//! Built on `cfdr-pg` (connections, client tools); `cfdr-pg` keeps the
//! PostgreSQL side (clusters, logical and physical backups, replicas).
//!
//! - [`WalArchive::push`]: compress (+ age) and store one file from `pg_wal`
//!   create-only; returns only once the object is stored (and read back by
//!   size). Same content already stored is success, different content is
//!   [`Error::WalConflict`] and nothing is overwritten.
//! - [`WalArchive::fetch`]: download, verify size and SHA-256 of the decoded
//!   file, write it under a temp name and rename it into place;
//!   [`Fetched::NotFound`] for a file the archive does not hold.
//! - [`ClusterIdentity`] (`wal/cluster.json`): the system identifier, major
//!   version, segment size and adopted timelines; every push and fetch is
//!   checked against it.
//! - [`WalArchive::continuity`]: gaps from a start segment to the newest.
//! - [`spool`]: the asynchronous push worker and fetch prefetch.
//! - [`preflight`]: a running server's WAL settings, archiver and identity.
//! - [`stream`]: `cfdr-wal stream`, WAL shipped within about a second
//!   through `pg_receivewal` and [`chunks`] of a segment in progress, which
//!   [`WalArchive::fetch`] assembles when the segment itself is not stored.
//!
//! Every stored object is `CFDR-WAL/1 {json}\n` followed by the encoded
//! file ([`WalObjectHeader`]): it verifies itself without a manifest.
//!
//! ```no_run
//! # async fn demo() -> cfdr_wal_archive::Result<()> {
//! use cfdr_wal_archive::{Fetched, PushOptions, WalArchive};
//! use cfdr_storage::StorageOptions;
//!
//! let archive = WalArchive::new(StorageOptions::from_url("s3://backups/cfdr").build()?);
//! let opts = PushOptions::default();
//! // archive_command = 'cfdr-wal push %p' runs this in the data directory:
//! archive.push("pg_wal/000000010000000000000003".as_ref(), &opts).await?;
//! // restore_command = 'cfdr-wal fetch %f %p':
//! let got = archive
//!     .fetch("000000010000000000000003", "pg_wal/RECOVERYXLOG".as_ref(), &Default::default())
//!     .await?;
//! assert!(matches!(got, Fetched::Restored { .. }));
//! let report = archive.continuity_from(Some("000000010000000000000003")).await?;
//! assert!(report.is_continuous());
//! # Ok(()) }
//! ```

pub mod chunks;
mod continuity;
mod error;
mod format;
mod preflight;
pub mod spool;
pub mod stream;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use cfdr_secrets::Identities;
use cfdr_storage::wal_archive::wal_key;
use cfdr_storage::{EncodeOptions, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// WAL file names and positions, as parsed by `cfdr-retention`.
pub use cfdr_retention::{Lsn, WalFile, WalItem, WalRange, WalSegment};
/// The archive's identity (`wal/cluster.json`), defined with the archive
/// layout in `cfdr-storage` because base backups check it too.
pub use cfdr_storage::wal_archive::{CLUSTER_KEY, ClusterIdentity};
pub use continuity::{ContinuityReport, TimelineSpan, check_continuity, parse_history};
pub use error::{Error, Result};
pub use format::{DataDirIdentity, SegmentHeader, WalObjectHeader};
pub use preflight::preflight;

/// Settings of `cfdr-wal` (the `[wal]` table of the config file).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct WalOptions {
    /// Push through the background worker (`archive-async`).
    pub push_async: bool,
    /// Folder for the asynchronous queue and prefetched segments; one per
    /// cluster, writable by the PostgreSQL OS user, outside the data directory.
    pub spool_dir: PathBuf,
    /// Segments the asynchronous worker uploads in parallel.
    pub push_processes: usize,
    /// How long an asynchronous push waits for its segment before failing
    /// (PostgreSQL then retries).
    pub push_timeout_secs: u64,
    /// How long the worker waits for new `.ready` files before exiting.
    pub worker_idle_secs: u64,
    /// Segments fetched ahead, in parallel, by `fetch` (0 = off).
    pub prefetch: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            push_async: false,
            spool_dir: PathBuf::from("/var/spool/cfdr/wal"),
            push_processes: 2,
            push_timeout_secs: 60,
            worker_idle_secs: 10,
            prefetch: 0,
        }
    }
}

/// How to push.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// Compression and encryption of the stored object.
    pub encode: EncodeOptions,
    /// The data directory (for the identity of `.history` / `.backup`
    /// files); default: the current directory, where PostgreSQL runs
    /// `archive_command`.
    pub data_dir: Option<PathBuf>,
    /// The cluster's identity for `.history` / `.backup` files, when there
    /// is no data directory to read it from (the WAL stream asks the server).
    pub cluster: Option<DataDirIdentity>,
}

/// What [`WalArchive::push`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Stored now.
    Stored {
        /// Object key.
        key: String,
        /// Stored bytes (header + encoded body).
        stored_size: u64,
    },
    /// The archive already held this exact file (verified).
    AlreadyStored {
        /// Object key.
        key: String,
    },
}

/// How to fetch.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// Identities for age-encrypted archives.
    pub identities: Option<Arc<Identities>>,
    /// The data directory being recovered (its identity must match the
    /// archive's); default: the current directory. Skipped when it holds no
    /// `global/pg_control`.
    pub data_dir: Option<PathBuf>,
}

/// What [`WalArchive::fetch`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Verified and renamed into place.
    Restored {
        /// Bytes written.
        size: u64,
    },
    /// The archive does not hold the file (the normal end of recovery).
    NotFound,
}

/// A file in the WAL archive; displayed as `name  stored-size  time`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchivedFile {
    /// Object key.
    pub key: String,
    /// Parsed name and stored size.
    #[serde(flatten)]
    pub item: WalItem,
    /// When it was stored, when the backend says.
    pub modified: Option<jiff::Timestamp>,
}

impl std::fmt::Display for ArchivedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = self.modified.map(|t| t.to_string()).unwrap_or_default();
        write!(f, "{:<42} {:>10}  {when}", self.item.name, self.item.size)
    }
}

/// The WAL archive of one repository.
#[derive(Clone, Debug)]
pub struct WalArchive {
    store: Store,
}

/// What to do about a damaged object found while restoring.
pub(crate) const FETCH_HINT: &str = "Nothing was handed to PostgreSQL: restore this object from another copy of the repository, or recover to a point before it";
/// What to do about a damaged object found while pushing the same file.
const PUSH_HINT: &str = "PostgreSQL keeps its copy and retries: after checking, delete the damaged object and the next retry stores the file again";

/// SHA-256 in lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The first page (or less), size and SHA-256 of the file at `path`,
/// read in 64 KiB blocks.
fn file_digest(path: &Path) -> std::io::Result<(Vec<u8>, u64, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut first, mut size) = (Vec::new(), 0u64);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((first, size, hex::encode(hasher.finalize())));
        }
        if first.len() < 8192 {
            let take = n.min(8192 - first.len());
            first.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

fn file_name_of(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::WalFile {
            file: path.display().to_string(),
            reason: "the path has no WAL file name".into(),
        })
}

fn parse_name(name: &str, segment_size: u64) -> Result<WalFile> {
    WalFile::parse(name, segment_size).map_err(|e| Error::WalFile {
        file: name.to_owned(),
        reason: e.to_string(),
    })
}

impl WalArchive {
    /// The archive in the repository `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The repository's storage.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn repository(&self) -> String {
        self.store.location().display()
    }

    /// The archive's identity, or `None` before the first push.
    pub async fn identity(&self) -> Result<Option<ClusterIdentity>> {
        ClusterIdentity::read(&self.store)
            .await
            .map_err(|e| match e {
                cfdr_storage::Error::Corrupt { key, reason } => Error::WalCorrupt {
                    key,
                    reason,
                    hint: FETCH_HINT,
                },
                other => other.into(),
            })
    }

    /// The archive's identity, created from `first` when there is none yet
    /// (create-only: of two first pushers, one writes and both compare).
    async fn identity_or_init(&self, first: Option<ClusterIdentity>) -> Result<ClusterIdentity> {
        if let Some(found) = self.identity().await? {
            return Ok(found);
        }
        let Some(first) = first else {
            return Err(Error::WalFile {
                file: CLUSTER_KEY.into(),
                reason: format!(
                    "the WAL archive at {} is empty and a history or backup file cannot start it: push a segment first",
                    self.repository()
                ),
            });
        };
        let body = serde_json::to_vec_pretty(&first).unwrap_or_default();
        match self.store.create_if_absent(CLUSTER_KEY, body).await {
            Ok(_) => Ok(first),
            // Another first pusher won. On a backend whose create-only
            // writes are not atomic (some S3 servers) both writes land and
            // the upload check sees the other's bytes: the stored identity
            // counts either way, and the caller compares it with this
            // cluster (a torn one reads as corrupt, and the push is retried).
            Err(
                e @ (cfdr_storage::Error::AlreadyExists { .. }
                | cfdr_storage::Error::Corrupt { .. }),
            ) => match self.identity().await? {
                Some(found) => Ok(found),
                // Our own upload came out short and was removed: say so
                // (PostgreSQL retries the push).
                None if matches!(e, cfdr_storage::Error::Corrupt { .. }) => Err(e.into()),
                None => Err(Error::WalCorrupt {
                    key: CLUSTER_KEY.into(),
                    reason: "it vanished right after another writer created it".into(),
                    hint: FETCH_HINT,
                }),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn check_same(
        &self,
        what: &str,
        archive: &ClusterIdentity,
        sysid: u64,
        major: u32,
    ) -> Result<()> {
        if archive.is_cluster(sysid, major) {
            return Ok(());
        }
        Err(Error::WalIdentityMismatch {
            what: what.to_owned(),
            repository: self.repository(),
            archive: archive.describe(),
            local: format!("system identifier {sysid} (PostgreSQL {major})"),
        })
    }

    /// Lets `timeline` archive here: run once when a promoted cluster is
    /// the production cluster from now on (failover, production PITR).
    pub async fn adopt_timeline(&self, timeline: u32) -> Result<ClusterIdentity> {
        let mut id = self.identity().await?.ok_or_else(|| Error::WalFile {
            file: CLUSTER_KEY.into(),
            reason: format!(
                "the WAL archive at {} is empty: nothing to adopt a timeline into",
                self.repository()
            ),
        })?;
        if !id.timelines.contains(&timeline) {
            id.timelines.push(timeline);
            id.timelines.sort_unstable();
            let body = serde_json::to_vec_pretty(&id).unwrap_or_default();
            self.store.put(CLUSTER_KEY, body).await?;
        }
        Ok(id)
    }

    /// Archives the file at `path` (`pg_wal/<name>`), as `archive_command`.
    ///
    /// The file is read twice in 64 KiB blocks (its SHA-256, then the
    /// upload), never whole: whole 16 MiB segments made a long-running
    /// `cfdr-wal stream` grow to 130 MiB. A completed segment does not
    /// change (PostgreSQL and pg_receivewal only rename it).
    pub async fn push(&self, path: &Path, opts: &PushOptions) -> Result<Pushed> {
        let name = file_name_of(path)?;
        let owned = path.to_owned();
        let (first, size, sha256) = tokio::task::spawn_blocking(move || file_digest(&owned))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            .map_err(Error::io(format!("reading {}", path.display())))?;
        let header = self.header_for(&name, &first, size, sha256, opts).await?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(Error::io(format!("reading {}", path.display())))?;
        self.store_object(wal_key(&name), &header, file, &opts.encode)
            .await
    }

    /// Archives `data` as the WAL file `name` (see [`WalArchive::push`]).
    pub async fn push_bytes(&self, name: &str, data: Bytes, opts: &PushOptions) -> Result<Pushed> {
        let header = self
            .header_for(name, &data, data.len() as u64, sha256_hex(&data), opts)
            .await?;
        self.store_object(wal_key(name), &header, Cursor::new(data), &opts.encode)
            .await
    }

    /// Checks the WAL file `name` (`first`: its first bytes, at least a
    /// page) against the archive and returns the header it is stored with.
    async fn header_for(
        &self,
        name: &str,
        data: &[u8],
        size: u64,
        sha256: String,
        opts: &PushOptions,
    ) -> Result<WalObjectHeader> {
        let what = format!("push of {name}");
        // Segments (and .partial ones) say who wrote them in their first
        // page; history and backup files take the data directory's identity.
        let is_segment = !name.ends_with(".history") && !name.ends_with(".backup");
        let (sysid, major, first) = if is_segment {
            let h = SegmentHeader::parse(name, data)?;
            let file = parse_name(name, h.segment_size)?;
            let seg = match file {
                WalFile::Segment(s) | WalFile::Partial(s) => s,
                _ => unreachable_segment(name)?,
            };
            if h.page_address != seg.start_lsn(h.segment_size).0 {
                return Err(Error::WalFile {
                    file: name.to_owned(),
                    reason: format!(
                        "its first page is at LSN {}, the name says {}",
                        cfdr_retention::Lsn(h.page_address),
                        seg.start_lsn(h.segment_size)
                    ),
                });
            }
            if size != h.segment_size && !name.ends_with(".partial") {
                return Err(Error::WalFile {
                    file: name.to_owned(),
                    reason: format!(
                        "{} bytes, a segment of this cluster is {}",
                        size, h.segment_size
                    ),
                });
            }
            let first = ClusterIdentity::new(
                h.system_identifier,
                h.pg_major,
                h.segment_size,
                seg.timeline,
            );
            (h.system_identifier, h.pg_major, Some(first))
        } else if let Some(cluster) = opts.cluster {
            (cluster.system_identifier, cluster.pg_major, None)
        } else {
            let dir = opts.data_dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let local = DataDirIdentity::read(&dir)?.ok_or_else(|| Error::WalFile {
                file: name.to_owned(),
                reason: format!(
                    "{} is not a data directory (no global/pg_control): run in the data directory, as archive_command does, or pass --pg-data",
                    dir.display()
                ),
            })?;
            (local.system_identifier, local.pg_major, None)
        };
        let archive = self.identity_or_init(first).await?;
        self.check_same(&what, &archive, sysid, major)?;
        let file = parse_name(name, archive.wal_segment_size)?;
        if !archive.accepts_timeline(file.timeline()) {
            return Err(Error::WalNewTimeline {
                file: name.to_owned(),
                timeline: file.timeline(),
                repository: self.repository(),
                adopted: archive.timelines.clone(),
            });
        }
        Ok(WalObjectHeader {
            file: name.to_owned(),
            size,
            sha256,
            compression: opts.encode.compression,
            encrypted_to: opts.encode.info().encrypted_to,
            system_identifier: sysid,
            pg_major: major,
        })
    }

    /// Stores `header` + encoded `data` at `key`, create-only; the same
    /// file already there (verified) is success, another is a conflict.
    pub(crate) async fn store_object<R>(
        &self,
        key: String,
        header: &WalObjectHeader,
        data: R,
        encode: &EncodeOptions,
    ) -> Result<Pushed>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
    {
        let stored = async {
            let mut writer = self.store.writer(&key, true).await?;
            writer.write(Bytes::from(header.to_line())).await?;
            cfdr_storage::encode_into(writer, data, encode).await
        }
        .await;
        match stored {
            Ok(obj) if obj.raw_size != header.size => Err(Error::WalFile {
                file: header.file.clone(),
                reason: format!(
                    "{} bytes were read for it, {} when its SHA-256 was taken: it changed while it was archived",
                    obj.raw_size, header.size
                ),
            }),
            Ok(obj) => Ok(Pushed::Stored {
                key,
                stored_size: obj.stored.size,
            }),
            Err(cfdr_storage::Error::AlreadyExists { .. }) => {
                self.compare_existing(&key, header).await?;
                Ok(Pushed::AlreadyStored { key })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A push found `key` taken: success only if it holds this very file
    /// and that copy verifies (PostgreSQL deletes its copy after success).
    async fn compare_existing(&self, key: &str, ours: &WalObjectHeader) -> Result<()> {
        let raw = self.store.get(key).await?;
        let (theirs, _) = WalObjectHeader::split(key, &raw)?;
        if theirs.sha256 != ours.sha256 || theirs.size != ours.size {
            return Err(Error::WalConflict {
                file: ours.file.clone(),
                key: key.to_owned(),
                stored: theirs.sha256,
                local: ours.sha256.clone(),
            });
        }
        if theirs.is_encrypted() {
            // Without an identity the body cannot be decoded here; the
            // header matched and age authenticates the body on fetch.
            return Ok(());
        }
        match decode_verified(key, raw, None).await {
            Err(Error::WalCorrupt { key, reason, .. }) => Err(Error::WalCorrupt {
                key,
                reason,
                hint: PUSH_HINT,
            }),
            other => other.map(|_| ()),
        }
    }

    /// Restores the WAL file `name` to `dest`, as `restore_command`.
    pub async fn fetch(&self, name: &str, dest: &Path, opts: &FetchOptions) -> Result<Fetched> {
        let key = wal_key(name);
        let (header, data) = match self.store.get(&key).await {
            Ok(raw) => {
                let (header, data) = decode_verified(&key, raw, opts.identities.clone()).await?;
                if header.file != name {
                    return Err(Error::WalCorrupt {
                        key,
                        reason: format!("it holds {}, not {name}", header.file),
                        hint: FETCH_HINT,
                    });
                }
                (header, data)
            }
            // A segment the WAL stream shipped only in chunks so far.
            Err(cfdr_storage::Error::NotFound { .. }) => {
                match chunks::assemble(self, name, opts.identities.clone()).await? {
                    Some(found) => found,
                    None => return Ok(Fetched::NotFound),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let dir = opts.data_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        if let Some(local) = DataDirIdentity::read(&dir)?
            && (local.system_identifier, local.pg_major)
                != (header.system_identifier, header.pg_major)
        {
            return Err(Error::WalIdentityMismatch {
                what: format!("fetch of {name}"),
                repository: self.repository(),
                archive: format!(
                    "system identifier {} (PostgreSQL {})",
                    header.system_identifier, header.pg_major
                ),
                local: format!(
                    "data directory {} with system identifier {} (PostgreSQL {})",
                    dir.display(),
                    local.system_identifier,
                    local.pg_major
                ),
            });
        }
        write_into_place(dest, &data).await?;
        Ok(Fetched::Restored {
            size: data.len() as u64,
        })
    }

    /// Every WAL file in the archive, sorted by key.
    pub async fn list(&self) -> Result<Vec<ArchivedFile>> {
        let segment_size = self
            .identity()
            .await?
            .map_or(cfdr_retention::DEFAULT_SEGMENT_SIZE, |i| i.wal_segment_size);
        let mut out = Vec::new();
        for meta in self.store.list("wal/").await? {
            let Some(name) = meta.key.rsplit('/').next() else {
                continue;
            };
            if meta.key == CLUSTER_KEY {
                continue;
            }
            match WalItem::parse(name, meta.size, segment_size) {
                Ok(item) => out.push(ArchivedFile {
                    key: meta.key.clone(),
                    item,
                    modified: meta.modified,
                }),
                Err(e) => tracing::warn!(key = %meta.key, error = %e, "not a WAL file name"),
            }
        }
        Ok(out)
    }

    /// Continuity from `start` (a segment name, e.g. a base backup's first
    /// segment; default the oldest archived) to the newest pushed segment;
    /// see [`check_continuity`].
    pub async fn continuity_from(&self, start: Option<&str>) -> Result<ContinuityReport> {
        let segment_size = self
            .identity()
            .await?
            .map_or(cfdr_retention::DEFAULT_SEGMENT_SIZE, |i| i.wal_segment_size);
        let oldest;
        let start = match start {
            Some(s) => s,
            None => {
                oldest = self
                    .list()
                    .await?
                    .into_iter()
                    .find(|f| matches!(f.item.file, WalFile::Segment(_)))
                    .ok_or_else(|| Error::WalFile {
                        file: "wal/".into(),
                        reason: format!(
                            "the WAL archive at {} holds no segment yet",
                            self.repository()
                        ),
                    })?;
                &oldest.item.name
            }
        };
        let start = match parse_name(start, segment_size)? {
            WalFile::Segment(s) | WalFile::Partial(s) => s,
            WalFile::BackupLabel { segment, .. } => segment,
            WalFile::History { .. } => unreachable_segment(start)?,
        };
        self.continuity(start).await
    }

    /// Continuity from the segment `start`; see [`check_continuity`].
    pub async fn continuity(&self, start: WalSegment) -> Result<ContinuityReport> {
        let segment_size = self
            .identity()
            .await?
            .map_or(cfdr_retention::DEFAULT_SEGMENT_SIZE, |i| i.wal_segment_size);
        let files = self.list().await?;
        let mut histories = BTreeMap::new();
        for f in &files {
            if let WalFile::History { timeline } = f.item.file {
                let text = self.fetch_bytes(&f.item.name).await?;
                histories.insert(timeline, String::from_utf8_lossy(&text).into_owned());
            }
        }
        let items: Vec<WalItem> = files.into_iter().map(|f| f.item).collect();
        Ok(check_continuity(&items, &histories, start, segment_size))
    }

    /// The verified content of an unencrypted archive file (history files).
    async fn fetch_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let key = wal_key(name);
        let raw = self.store.get(&key).await?;
        Ok(decode_verified(&key, raw, None).await?.1)
    }
}

fn unreachable_segment<T>(name: &str) -> Result<T> {
    Err(Error::WalFile {
        file: name.to_owned(),
        reason: "expected a segment name".into(),
    })
}

impl WalObjectHeader {
    fn is_encrypted(&self) -> bool {
        !self.encrypted_to.is_empty()
    }
}

/// Checks a stored WAL object as read from a repository, writing nothing:
/// its header, and that its body decodes to the size and SHA-256 the header
/// records (an encrypted body only with `identities`; without them age
/// authenticates it on fetch). Copies between repositories use it so a
/// damaged object is refused, not spread.
pub async fn verify_stored(
    key: &str,
    raw: Bytes,
    identities: Option<Arc<Identities>>,
) -> Result<WalObjectHeader> {
    let (header, _) = WalObjectHeader::split(key, &raw)?;
    if header.is_encrypted() && identities.is_none() {
        return Ok(header);
    }
    Ok(decode_verified(key, raw, identities).await?.0)
}

/// Splits, decodes and verifies a stored object; returns the header and the
/// original file.
pub(crate) async fn decode_verified(
    key: &str,
    raw: Bytes,
    identities: Option<Arc<Identities>>,
) -> Result<(WalObjectHeader, Vec<u8>)> {
    let (header, body_at) = WalObjectHeader::split(key, &raw)?;
    let body = raw.slice(body_at..);
    let mut out = Vec::with_capacity(usize::try_from(header.size).unwrap_or(0));
    cfdr_storage::decode_reader(
        key,
        Cursor::new(body),
        &header.codec(),
        identities,
        &mut out,
    )
    .await
    .map_err(|e| match e {
        cfdr_storage::Error::Corrupt { reason, .. } => Error::WalCorrupt {
            key: key.to_owned(),
            reason,
            hint: FETCH_HINT,
        },
        other => other.into(),
    })?;
    if out.len() as u64 != header.size {
        return Err(Error::WalCorrupt {
            key: key.to_owned(),
            reason: format!(
                "it decodes to {} bytes, its header says {}",
                out.len(),
                header.size
            ),
            hint: FETCH_HINT,
        });
    }
    let sha = sha256_hex(&out);
    if sha != header.sha256 {
        return Err(Error::WalCorrupt {
            key: key.to_owned(),
            reason: format!(
                "it decodes to SHA-256 {sha}, its header says {}",
                header.sha256
            ),
            hint: FETCH_HINT,
        });
    }
    Ok((header, out))
}

/// Writes `data` to a temp name beside `dest` and renames it into place,
/// so PostgreSQL never sees a partial file.
/// Where [`write_into_place`] writes `path` before the rename.
pub(crate) fn temp_name(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".cfdr-tmp");
    PathBuf::from(tmp)
}

pub(crate) async fn write_into_place(dest: &Path, data: &[u8]) -> Result<()> {
    let tmp = temp_name(dest);
    tokio::fs::write(&tmp, data)
        .await
        .map_err(Error::io(format!("writing {}", tmp.display())))?;
    if let Err(e) = tokio::fs::rename(&tmp, dest).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(Error::Io {
            what: format!("renaming {} to {}", tmp.display(), dest.display()),
            source: e,
        });
    }
    Ok(())
}
