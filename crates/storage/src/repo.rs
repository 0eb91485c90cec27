//! The repository format.
//!
//! ```text
//! cfdr.json                          format version, id, creation time
//! backups/<id>/<object>...           data objects of one backup
//! backups/<id>/manifest.json         written last, create-only: the commit
//! backups/<id>/checks/<time>-...json check records (see crate::checks)
//! locks/<name>/<generation>.json     lease locks (see crate::lock)
//! ```
//!
//! A backup id is `YYYYMMDDTHHMMSS.mmmZ-<kind>-<4 hex>`: its UTC start time
//! first, so ids sort by time as plain strings. "No manifest, not a backup":
//! listing, restore and retention see only backups whose manifest exists;
//! objects without one are leftovers of a crashed or failed writer.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::codec::{EncodeOptions, StoredObject, encode_to};
use crate::error::{Error, Result};
use crate::object::{ObjectInfo, Store};

/// The repository format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Key of the repository descriptor.
pub const CONFIG_KEY: &str = "cfdr.json";
/// Prefix of all backups.
pub const BACKUPS_PREFIX: &str = "backups/";
/// Name of the commit object inside a backup folder.
pub const MANIFEST_NAME: &str = "manifest.json";
/// How many manifests [`Repository::manifests`] reads at once.
const MANIFEST_READS: usize = 32;
/// Version of cfdr recorded in documents it writes.
pub const TOOL_VERSION: &str = concat!("cfdr ", env!("CARGO_PKG_VERSION"));

/// The repository descriptor stored at `cfdr.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Repository format version.
    pub format_version: u32,
    /// Random id of this repository.
    pub id: String,
    /// Creation time (UTC).
    pub created: Timestamp,
    /// cfdr version that created it.
    pub created_by: String,
}

/// A backup id: UTC start time, kind and a random suffix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

impl BackupId {
    /// A new id for a backup of `kind` started at `started`.
    pub fn new(started: Timestamp, kind: &str) -> Result<Self> {
        if kind.is_empty()
            || !kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(Error::InvalidOption {
                option: "backup kind".into(),
                reason: format!("{kind:?} must be lower-case letters and digits"),
            });
        }
        let suffix: u16 = rand::random();
        let time = started.strftime("%Y%m%dT%H%M%S.%3fZ");
        Ok(Self(format!("{time}-{kind}-{suffix:04x}")))
    }

    /// Parses and validates an id.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::InvalidBackupId { id: s.to_owned() };
        let mut parts = s.splitn(3, '-');
        let (time, kind, suffix) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        if kind.is_empty() || suffix.len() != 4 || !suffix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        parse_id_time(time).ok_or_else(bad)?;
        Ok(Self(s.to_owned()))
    }

    /// The start time encoded in the id.
    pub fn time(&self) -> Timestamp {
        // Validated on construction.
        parse_id_time(self.0.split('-').next().unwrap_or_default()).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// The kind encoded in the id.
    pub fn kind(&self) -> &str {
        self.0.split('-').nth(1).unwrap_or_default()
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folder holding this backup's objects.
    pub fn prefix(&self) -> String {
        format!("{BACKUPS_PREFIX}{}/", self.0)
    }

    /// The key of this backup's manifest.
    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_NAME}", self.prefix())
    }
}

pub(crate) fn parse_id_time(s: &str) -> Option<Timestamp> {
    let t = s.strip_suffix('Z')?;
    let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S%.f", t).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

impl std::fmt::Display for BackupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // pad, not write_str: listings align ids with `{:<40}`.
        f.pad(&self.0)
    }
}

impl TryFrom<String> for BackupId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> Self {
        id.0
    }
}

/// The commit record of a backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Repository format version.
    pub format_version: u32,
    /// Backup id.
    pub id: BackupId,
    /// Kind (logical, physical, secrets, config, ...).
    pub kind: String,
    /// Schedule class for retention (hourly, daily, weekly, manual), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Start time (UTC).
    pub started: Timestamp,
    /// Commit time (UTC).
    pub finished: Timestamp,
    /// cfdr version that wrote it.
    pub tool_version: String,
    /// Every data object, with stored size, SHA-256 and codec.
    pub objects: Vec<StoredObject>,
    /// Kind-specific facts (source cluster, server version, LSNs, row counts...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Manifest {
    /// Total stored bytes (saturating: a damaged manifest's sizes must not
    /// overflow a listing).
    pub fn stored_size(&self) -> u64 {
        self.objects
            .iter()
            .fold(0, |total, o| total.saturating_add(o.stored.size))
    }

    /// Duration from start to commit.
    pub fn duration(&self) -> jiff::SignedDuration {
        self.finished.duration_since(self.started)
    }
}

/// A committed backup whose manifest cannot be read (corrupt, truncated or
/// naming another backup): it cannot be restored, verified or pruned until
/// the manifest is repaired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DamagedManifest {
    /// The backup (the folder name).
    pub id: BackupId,
    /// The manifest's key.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl DamagedManifest {
    /// What to do about it.
    pub const ADVICE: &str = "restore the manifest from a copy of the repository (bucket \
versioning, a replica) and run `cfdr-repo verify` on the backup; until then it cannot be \
restored and prune leaves its objects alone";
}

impl std::fmt::Display for DamagedManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backup {}: manifest {} cannot be read: {}",
            self.id, self.key, self.reason
        )
    }
}

/// Committed backups as listed: readable manifests and damaged ones apart,
/// so one damaged manifest does not hide the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// Readable manifests, in the order asked for (oldest first).
    pub backups: Vec<Manifest>,
    /// Manifests that cannot be read, in the same order.
    pub damaged: Vec<DamagedManifest>,
}

impl Catalog {
    /// Warnings for a listing: each damaged manifest, then what to do.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.damaged.iter().map(ToString::to_string).collect();
        if !out.is_empty() {
            out.push(DamagedManifest::ADVICE.to_owned());
        }
        out
    }
}

/// Objects of a backup that never committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// The id of the uncommitted backup.
    pub id: BackupId,
    /// Its objects.
    pub keys: Vec<String>,
    /// Their total size.
    pub size: u64,
}

/// One folder under `backups/`: a committed backup or a leftover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupFolder {
    /// The backup id (the folder name).
    pub id: BackupId,
    /// Every object key in the folder, manifest included, sorted.
    pub keys: Vec<String>,
    /// Their total stored size.
    pub size: u64,
    /// Whether `manifest.json` exists.
    pub committed: bool,
}

/// Result of verifying one backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The backup.
    pub id: BackupId,
    /// Objects read back and matching.
    pub verified: usize,
    /// Objects that failed, with the error text.
    pub failures: Vec<(String, String)>,
}

impl VerifyReport {
    /// Whether every object verified.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The record of this verification, to store beside the backup.
    pub fn check_record(&self) -> crate::CheckRecord {
        crate::CheckRecord {
            backup: self.id.clone(),
            kind: crate::CheckKind::Checksums,
            time: Timestamp::now(),
            passed: self.is_ok(),
            summary: format!(
                "{} objects ok, {} failed{}",
                self.verified,
                self.failures.len(),
                self.failures
                    .iter()
                    .map(|(key, why)| format!("; {key}: {why}"))
                    .collect::<String>()
            ),
        }
    }
}

/// An opened repository.
#[derive(Clone, Debug)]
pub struct Repository {
    store: Store,
    config: RepoConfig,
}

impl Repository {
    /// Creates a repository. Refuses to overwrite an existing one.
    pub async fn init(store: Store) -> Result<Self> {
        store.check_access().await.or_else(|e| match e {
            // A local folder that does not exist yet is created.
            Error::MissingBucket {
                what: "folder",
                name,
                ..
            } => std::fs::create_dir_all(&name).map_err(|io| Error::InvalidOption {
                option: "repository folder".into(),
                reason: format!("cannot create {name}: {io}"),
            }),
            other => Err(other),
        })?;
        let config = RepoConfig {
            format_version: FORMAT_VERSION,
            id: format!("{:032x}", rand::random::<u128>()),
            created: Timestamp::now(),
            created_by: TOOL_VERSION.into(),
        };
        let body = to_json(&config);
        match store.create_if_absent(CONFIG_KEY, body).await {
            Ok(_) => Ok(Self { store, config }),
            Err(Error::AlreadyExists { .. }) => {
                let existing = Self::open(store.clone()).await?;
                Err(Error::RepositoryExists {
                    location: store.location().display(),
                    id: existing.config.id,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Opens an existing repository.
    pub async fn open(store: Store) -> Result<Self> {
        store.check_access().await?;
        let raw = match store.get(CONFIG_KEY).await {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => {
                return Err(Error::NotARepository {
                    location: store.location().display(),
                });
            }
            Err(e) => return Err(e),
        };
        let config: RepoConfig = from_json(CONFIG_KEY, &raw)?;
        if config.format_version > FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                location: store.location().display(),
                found: config.format_version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(Self { store, config })
    }

    /// Opens the repository, creating it first if absent.
    pub async fn open_or_init(store: Store) -> Result<Self> {
        match Self::open(store.clone()).await {
            Err(Error::NotARepository { .. })
            | Err(Error::MissingBucket { what: "folder", .. }) => {
                match Self::init(store.clone()).await {
                    // Lost a race with another init: use theirs.
                    Err(Error::RepositoryExists { .. }) => Self::open(store).await,
                    other => other,
                }
            }
            other => other,
        }
    }

    /// The storage under this repository.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The descriptor.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Starts a backup of `kind`. Nothing is listed until
    /// [`BackupWriter::commit`] writes the manifest.
    pub fn begin_backup(&self, kind: &str, class: Option<&str>) -> Result<BackupWriter> {
        let started = Timestamp::now();
        Ok(BackupWriter {
            store: self.store.clone(),
            id: BackupId::new(started, kind)?,
            kind: kind.to_owned(),
            class: class.map(str::to_owned),
            started,
            objects: Vec::new(),
        })
    }

    /// Ids of committed backups, oldest first.
    pub async fn backup_ids(&self) -> Result<Vec<BackupId>> {
        let (complete, _) = self.scan().await?;
        Ok(complete)
    }

    /// Manifests of committed backups, oldest first.
    pub async fn backups(&self) -> Result<Vec<Manifest>> {
        self.manifests(&self.backup_ids().await?).await
    }

    /// Reads the manifests of `ids`, in that order. Reads run concurrently:
    /// one at a time, 10,000 manifests on S3 take minutes.
    pub async fn manifests(&self, ids: &[BackupId]) -> Result<Vec<Manifest>> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(ids)
            .map(|id| self.manifest(id))
            .buffered(MANIFEST_READS)
            .try_collect()
            .await
    }

    /// Committed backups, readable and damaged apart, oldest first. Storage
    /// errors (unreachable, denied) still fail the call: only a manifest
    /// that was read and is not a valid manifest of its backup is damaged.
    pub async fn catalog(&self) -> Result<Catalog> {
        self.catalog_of(&self.backup_ids().await?).await
    }

    /// [`Repository::catalog`] of `ids`, in that order.
    pub async fn catalog_of(&self, ids: &[BackupId]) -> Result<Catalog> {
        use futures::StreamExt;
        let read: Vec<Result<Manifest>> = futures::stream::iter(ids)
            .map(|id| self.manifest(id))
            .buffered(MANIFEST_READS)
            .collect()
            .await;
        let mut catalog = Catalog::default();
        for (id, r) in ids.iter().zip(read) {
            match r {
                Ok(m) => catalog.backups.push(m),
                Err(Error::InvalidDocument { key, reason }) => {
                    catalog.damaged.push(DamagedManifest {
                        id: id.clone(),
                        key,
                        reason,
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(catalog)
    }

    /// Reads one manifest.
    pub async fn manifest(&self, id: &BackupId) -> Result<Manifest> {
        let key = id.manifest_key();
        let raw = self.store.get(&key).await.map_err(|e| match e {
            Error::NotFound { .. } => Error::NoSuchBackup {
                id: id.to_string(),
                location: self.store.location().display(),
            },
            other => other,
        })?;
        let m: Manifest = from_json(&key, &raw)?;
        if &m.id != id {
            return Err(Error::InvalidDocument {
                key,
                reason: format!("it names backup {} instead", m.id),
            });
        }
        Ok(m)
    }

    /// Uncommitted backups whose id time is older than `older_than`.
    pub async fn leftovers(&self, older_than: Timestamp) -> Result<Vec<Leftover>> {
        let (_, incomplete) = self.scan().await?;
        Ok(incomplete
            .into_iter()
            .filter(|l| l.id.time() < older_than)
            .collect())
    }

    /// Every backup folder, committed or not, with all its object keys, from
    /// one listing of `backups/`, oldest first. Folders whose name is not a
    /// backup id are skipped (and logged).
    pub async fn folders(&self) -> Result<Vec<BackupFolder>> {
        let mut by_id: BTreeMap<String, BackupFolder> = BTreeMap::new();
        let mut foreign = BTreeSet::new();
        for meta in self.store.list(BACKUPS_PREFIX).await? {
            let rest = &meta.key[BACKUPS_PREFIX.len().min(meta.key.len())..];
            let Some((raw_id, name)) = rest.split_once('/') else {
                continue;
            };
            if !by_id.contains_key(raw_id) {
                let Ok(id) = BackupId::parse(raw_id) else {
                    foreign.insert(raw_id.to_owned());
                    continue;
                };
                let folder = BackupFolder {
                    id,
                    keys: Vec::new(),
                    size: 0,
                    committed: false,
                };
                by_id.insert(raw_id.to_owned(), folder);
            }
            if let Some(folder) = by_id.get_mut(raw_id) {
                folder.keys.push(meta.key.clone());
                folder.size += meta.size;
                folder.committed |= name == MANIFEST_NAME;
            }
        }
        if !foreign.is_empty() {
            tracing::warn!(
                ?foreign,
                "ignoring folders under backups/ that are not cfdr backup ids"
            );
        }
        Ok(by_id.into_values().collect())
    }

    /// Reads every object of a backup back and checks size and SHA-256.
    pub async fn verify(&self, manifest: &Manifest) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            id: manifest.id.clone(),
            verified: 0,
            failures: Vec::new(),
        };
        for obj in &manifest.objects {
            match self.store.read_verified(&obj.key, &obj.stored).await {
                Ok(mut stream) => {
                    let mut failed = None;
                    while let Some(item) = futures::StreamExt::next(&mut stream).await {
                        if let Err(e) = item {
                            failed = Some(crate::object::io_to_error(e, &obj.key).to_string());
                            break;
                        }
                    }
                    match failed {
                        None => report.verified += 1,
                        Some(f) => report.failures.push((obj.key.clone(), f)),
                    }
                }
                Err(e) => report.failures.push((obj.key.clone(), e.to_string())),
            }
        }
        Ok(report)
    }

    /// Lists `backups/` once and splits it into committed ids and leftovers.
    async fn scan(&self) -> Result<(Vec<BackupId>, Vec<Leftover>)> {
        let mut complete = Vec::new();
        let mut incomplete = Vec::new();
        for folder in self.folders().await? {
            if folder.committed {
                complete.push(folder.id);
            } else {
                incomplete.push(Leftover {
                    id: folder.id,
                    keys: folder.keys,
                    size: folder.size,
                });
            }
        }
        Ok((complete, incomplete))
    }
}

/// Writes the objects of one backup, then commits its manifest.
#[derive(Debug)]
pub struct BackupWriter {
    store: Store,
    id: BackupId,
    kind: String,
    class: Option<String>,
    started: Timestamp,
    objects: Vec<StoredObject>,
}

impl BackupWriter {
    /// The id the backup will have.
    pub fn id(&self) -> &BackupId {
        &self.id
    }

    /// Objects written so far.
    pub fn objects(&self) -> &[StoredObject] {
        &self.objects
    }

    fn object_key(&self, name: &str) -> Result<String> {
        if name.is_empty() || name == MANIFEST_NAME || name.starts_with('/') || name.contains("..")
        {
            return Err(Error::InvalidOption {
                option: "object name".into(),
                reason: format!("{name:?} is reserved or not a relative name"),
            });
        }
        Ok(format!("{}{name}", self.id.prefix()))
    }

    /// Streams `src` through the codec into object `name` of this backup.
    pub async fn put_encoded<R>(
        &mut self,
        name: &str,
        src: R,
        opts: &EncodeOptions,
    ) -> Result<StoredObject>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let key = self.object_key(name)?;
        let obj = encode_to(&self.store, &key, src, opts, true).await?;
        self.objects.push(obj.clone());
        Ok(obj)
    }

    /// Stores `bytes` as is (already encoded, or small plain metadata).
    pub async fn put_raw(
        &mut self,
        name: &str,
        bytes: impl Into<bytes::Bytes>,
    ) -> Result<StoredObject> {
        let key = self.object_key(name)?;
        let bytes = bytes.into();
        let raw_size = bytes.len() as u64;
        let stored: ObjectInfo = self.store.create_if_absent(&key, bytes).await?;
        let obj = StoredObject {
            key,
            stored,
            raw_size,
            codec: crate::codec::CodecInfo {
                compression: crate::codec::Compression::None,
                encrypted_to: Vec::new(),
            },
        };
        self.objects.push(obj.clone());
        Ok(obj)
    }

    /// Writes the manifest (create-only, last): from now on the backup is listed.
    pub async fn commit(
        self,
        details: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Manifest> {
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            id: self.id.clone(),
            kind: self.kind,
            class: self.class,
            started: self.started,
            finished: Timestamp::now(),
            tool_version: TOOL_VERSION.into(),
            objects: self.objects,
            details,
        };
        let key = self.id.manifest_key();
        self.store
            .create_if_absent(&key, to_json(&manifest))
            .await?;
        Ok(manifest)
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail; fall back to "{}" rather than panic.
    let mut v = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(key: &str, raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| Error::InvalidDocument {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let a = BackupId::new("2026-01-02T03:04:05.006Z".parse().unwrap(), "logical").unwrap();
        let b = BackupId::new("2026-01-02T03:04:05.007Z".parse().unwrap(), "physical").unwrap();
        assert!(a < b);
        assert!(a.as_str().starts_with("20260102T030405.006Z-logical-"));
        assert_eq!(
            a.time(),
            "2026-01-02T03:04:05.006Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(a.kind(), "logical");
        assert_eq!(BackupId::parse(a.as_str()).unwrap(), a);
        assert!(BackupId::parse("yesterday-logical-0000").is_err());
        assert!(BackupId::new(Timestamp::now(), "Bad Kind").is_err());
        // Listings align columns with width specifiers.
        assert_eq!(format!("{a:<40}|").len(), 41);
        assert_eq!(
            format!("{a:<40}|").trim_end_matches('|').trim_end(),
            a.as_str()
        );
    }

    #[tokio::test]
    async fn an_unknown_backup_id_says_so_and_how_to_list() {
        let repo = Repository::init(
            crate::StorageOptions::from_url("memory://unknown-id")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
        let id = BackupId::new(Timestamp::now(), "logical").unwrap();
        let err = repo.manifest(&id).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("there is no backup {id} in the repository")),
            "{err}"
        );
        assert!(err.contains("cfdr-repo list"), "{err}");
        assert!(!err.contains("manifest.json"), "{err}");
    }
}
