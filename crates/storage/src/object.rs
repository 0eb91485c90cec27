//! Object I/O with SHA-256: streaming writes that report size and digest of
//! the stored bytes, streaming reads that verify them, paged listing, stat,
//! batch delete and create-only writes.

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use opendal::{Buffer, ErrorKind, Operator};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::location::{BackendKind, CompatOptions, Location};
use crate::object_lock::ObjectLock;
use crate::parts::PartSizer;

/// Folder (relative to an fs repository root) where uploads are staged.
pub(crate) const TMP_DIR: &str = ".cfdr-tmp";

/// Size and SHA-256 of an object's stored bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// Stored size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the stored bytes.
    pub sha256: String,
}

impl ObjectInfo {
    /// Size and digest of an in-memory buffer.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }
}

/// What a listing or stat reports about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the repository root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, when the backend reports it.
    pub modified: Option<jiff::Timestamp>,
}

/// Builds a store's operator on first use.
pub(crate) type MakeOperator = Box<dyn FnOnce() -> Result<Operator> + Send>;

/// An operator built now, or on first use.
struct LazyOperator {
    op: OnceLock<Operator>,
    make: Mutex<Option<MakeOperator>>,
}

impl LazyOperator {
    fn get_or_build(&self) -> Result<&Operator> {
        if let Some(op) = self.op.get() {
            return Ok(op);
        }
        let mut make = self.make.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(op) = self.op.get() {
            return Ok(op);
        }
        let make = make.take().ok_or_else(|| Error::InvalidOption {
            option: "repository".into(),
            reason: "its storage could not be set up (see the first error)".into(),
        })?;
        let op = make()?;
        Ok(self.op.get_or_init(|| op))
    }
}

/// A repository's storage: an operator with layers, its location and the
/// backend's feature switches. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    op: Arc<LazyOperator>,
    location: Location,
    endpoint: String,
    compat: CompatOptions,
    /// Object Lock, when `[repository] object-lock` is set.
    pub(crate) lock: Option<Arc<ObjectLock>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .field("endpoint", &self.endpoint)
            .field("compat", &self.compat)
            .field("object_lock", &self.lock_mode())
            .finish()
    }
}

impl Store {
    pub(crate) fn new(
        op: Operator,
        location: Location,
        endpoint: String,
        compat: CompatOptions,
    ) -> Self {
        let lazy = LazyOperator {
            op: OnceLock::from(op),
            make: Mutex::new(None),
        };
        Self {
            op: Arc::new(lazy),
            location,
            endpoint,
            compat,
            lock: None,
        }
    }

    /// A store whose operator `make` builds on first use (a local folder,
    /// whose operator creates the folder when built).
    pub(crate) fn deferred(
        make: MakeOperator,
        location: Location,
        endpoint: String,
        compat: CompatOptions,
    ) -> Self {
        let lazy = LazyOperator {
            op: OnceLock::new(),
            make: Mutex::new(Some(make)),
        };
        Self {
            op: Arc::new(lazy),
            location,
            endpoint,
            compat,
            lock: None,
        }
    }

    /// The layered operator, for calls this type does not wrap. For a local
    /// folder that does not exist this is [`Error::MissingBucket`]: nothing
    /// is created.
    pub fn operator(&self) -> Result<&Operator> {
        if self.op.op.get().is_none() && self.location.kind == BackendKind::Fs {
            self.check_folder()?;
        }
        self.op.get_or_build()
    }

    /// A local folder that does not exist (yet): it reads as empty, as an
    /// empty bucket does, without being created.
    fn absent_folder(&self) -> bool {
        self.location.kind == BackendKind::Fs
            && self.op.op.get().is_none()
            && !std::path::Path::new(&self.location.bucket).is_dir()
    }

    fn check_folder(&self) -> Result<()> {
        if !std::path::Path::new(&self.location.bucket).is_dir() {
            return Err(Error::MissingBucket {
                what: self.location.kind.bucket_word(),
                name: self.location.bucket.clone(),
                endpoint: self.endpoint.clone(),
            });
        }
        Ok(())
    }

    /// The parsed location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The backend's feature switches.
    pub fn compat(&self) -> CompatOptions {
        self.compat
    }

    /// Turns an opendal error into a cfdr error naming the key and what to do.
    pub fn map_err(&self, operation: &'static str, key: &str, e: opendal::Error) -> Error {
        let kind = self.location.kind;
        match e.kind() {
            ErrorKind::NotFound => Error::NotFound {
                key: key.to_owned(),
            },
            ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists => Error::AlreadyExists {
                key: key.to_owned(),
            },
            ErrorKind::PermissionDenied => Error::AccessDenied {
                endpoint: self.endpoint.clone(),
                detail: short(&e),
                hint: kind.credential_hint(),
            },
            ErrorKind::Unexpected if !e.is_permanent() && looks_unreachable(&e) => {
                Error::Unreachable {
                    endpoint: self.endpoint.clone(),
                    detail: short(&e),
                }
            }
            _ => Error::Backend {
                operation,
                key: key.to_owned(),
                source: Box::new(e),
            },
        }
    }

    /// Checks that the bucket/container exists and the credentials work, by
    /// listing at most one key. Errors say which of the two failed.
    pub async fn check_access(&self) -> Result<()> {
        if self.location.kind == BackendKind::Fs {
            self.check_folder()?;
        }
        let mut lister = self
            .operator()?
            .lister_with("/")
            .limit(1)
            .await
            .map_err(|e| self.access_err(e))?;
        match lister.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(self.access_err(e)),
        }
    }

    fn access_err(&self, e: opendal::Error) -> Error {
        // S3 reports a missing bucket as NoSuchBucket (opendal: ConfigInvalid),
        // Azure as ContainerNotFound.
        let text = format!("{e:?}");
        let missing = [
            "NoSuchBucket",
            "ContainerNotFound",
            "The specified bucket does not exist",
        ]
        .iter()
        .any(|code| text.contains(code));
        if missing {
            return Error::MissingBucket {
                what: self.location.kind.bucket_word(),
                name: self.location.bucket.clone(),
                endpoint: self.endpoint.clone(),
            };
        }
        match self.map_err("list", "/", e) {
            Error::NotFound { .. } => Error::MissingBucket {
                what: self.location.kind.bucket_word(),
                name: self.location.bucket.clone(),
                endpoint: self.endpoint.clone(),
            },
            other => other,
        }
    }

    /// Opens a streaming writer. With `create_only`, the write fails with
    /// [`Error::AlreadyExists`] if the key exists (see [`Store::create_if_absent`]
    /// for the guarantee on each backend).
    pub async fn writer(&self, key: &str, create_only: bool) -> Result<ObjectWriter> {
        ObjectWriter::open(self.clone(), key, create_only).await
    }

    /// A writer for an object whose size is known (a copy): an object up to
    /// [`SINGLE_REQUEST_MAX`] bytes is sent in one request on finish instead
    /// of a multipart upload (four requests for two parts), since it is held
    /// in memory anyway until its first part is full.
    pub async fn writer_sized(
        &self,
        key: &str,
        create_only: bool,
        size: u64,
    ) -> Result<ObjectWriter> {
        let mut w = ObjectWriter::open(self.clone(), key, create_only).await?;
        w.whole = size <= SINGLE_REQUEST_MAX as u64;
        Ok(w)
    }

    /// Writes a whole buffer, replacing any existing object.
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<ObjectInfo> {
        let mut w = self.writer(key, false).await?;
        w.write(bytes.into()).await?;
        w.finish().await
    }

    /// Writes a buffer only if `key` does not exist yet; otherwise returns
    /// [`Error::AlreadyExists`] and leaves the object untouched.
    ///
    /// With `compat.conditional_create` on (the default) the backend decides
    /// atomically (`If-None-Match: *` on S3, GCS and Azure; `O_EXCL`-style on
    /// fs): of two racing writers exactly one wins. With it off, cfdr stats,
    /// writes and reads back its own token: that narrows the race window but
    /// two writers that interleave exactly can both believe they won.
    pub async fn create_if_absent(&self, key: &str, bytes: impl Into<Bytes>) -> Result<ObjectInfo> {
        let bytes = bytes.into();
        if self.compat.conditional_create {
            let mut w = self.writer(key, true).await?;
            w.write(bytes).await?;
            return w.finish().await;
        }
        if self.stat(key).await?.is_some() {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let info = self.put(key, bytes.clone()).await?;
        let back = self.get(key).await?;
        if back != bytes {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        Ok(info)
    }

    /// Reads a whole object without verification (small documents whose own
    /// format is checked by the caller).
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        if self.absent_folder() {
            return Err(Error::NotFound {
                key: key.to_owned(),
            });
        }
        let buf = self
            .operator()?
            .read(key)
            .await
            .map_err(|e| self.map_err("read", key, e))?;
        Ok(buf.to_bytes())
    }

    /// Reads a whole object and verifies it against `expected`.
    pub async fn get_verified(&self, key: &str, expected: &ObjectInfo) -> Result<Bytes> {
        let mut stream = self.read_verified(key, expected).await?;
        let mut out = Vec::with_capacity(usize::try_from(expected.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.map_err(|e| io_to_error(e, key))?);
        }
        Ok(out.into())
    }

    /// Streams an object; the stream's last item is an error naming the key
    /// if the size or SHA-256 differs from `expected` (checked as bytes pass,
    /// so a too-long object fails as soon as it overruns).
    pub async fn read_verified(&self, key: &str, expected: &ObjectInfo) -> Result<VerifiedStream> {
        if self.absent_folder() {
            return Err(Error::NotFound {
                key: key.to_owned(),
            });
        }
        let reader = self
            .operator()?
            .reader_with(key)
            .chunk(4 << 20)
            .await
            .map_err(|e| self.map_err("read", key, e))?;
        let inner = reader
            .into_bytes_stream(..)
            .await
            .map_err(|e| self.map_err("read", key, e))?;
        let store = self.clone();
        let owned_key = key.to_owned();
        let inner = inner
            .map_err(move |e| {
                let err = match e.into_inner().map(|b| b.downcast::<opendal::Error>()) {
                    Some(Ok(oe)) => store.map_err("read", &owned_key, *oe),
                    Some(Err(other)) => Error::Corrupt {
                        key: owned_key.clone(),
                        reason: other.to_string(),
                    },
                    None => Error::Corrupt {
                        key: owned_key.clone(),
                        reason: "read failed".into(),
                    },
                };
                std::io::Error::other(err)
            })
            .boxed();
        Ok(VerifiedStream {
            inner,
            key: key.to_owned(),
            expected: expected.clone(),
            hasher: Sha256::new(),
            seen: 0,
            done: false,
        })
    }

    /// Size and modification time of `key`, or `None` when absent.
    pub async fn stat(&self, key: &str) -> Result<Option<ObjectMeta>> {
        if self.absent_folder() {
            return Ok(None);
        }
        match self.operator()?.stat(key).await {
            Ok(m) => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: m.content_length(),
                modified: m.last_modified().and_then(|t| t.to_string().parse().ok()),
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.map_err("stat", key, e)),
        }
    }

    /// Lists every object under `prefix` (recursively), following the
    /// backend's pages. Keys are relative to the repository root, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        if self.absent_folder() {
            return Ok(Vec::new());
        }
        let mut lister = self.operator()?.lister_with(prefix).recursive(true);
        if let Some(n) = self.compat.list_page_size {
            lister = lister.limit(n.max(1) as usize);
        }
        let mut lister = lister.await.map_err(|e| self.map_err("list", prefix, e))?;
        let mut out = Vec::new();
        while let Some(entry) = lister.next().await {
            let entry = entry.map_err(|e| self.map_err("list", prefix, e))?;
            let meta = entry.metadata();
            if meta.is_dir() || entry.path().starts_with(TMP_DIR) {
                continue;
            }
            out.push(ObjectMeta {
                key: entry.path().to_owned(),
                size: meta.content_length(),
                modified: meta
                    .last_modified()
                    .and_then(|t| t.to_string().parse().ok()),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Lists `prefix` one level deep (folders come back as keys ending in
    /// `/`) or recursively, keeping only keys after `start_after`. Backends
    /// that can start a listing after a key do so (one request for what is
    /// new); the others list the level and filter. Sorted by key.
    pub async fn list_after(
        &self,
        prefix: &str,
        recursive: bool,
        start_after: Option<&str>,
    ) -> Result<Vec<ObjectMeta>> {
        if self.absent_folder() {
            return Ok(Vec::new());
        }
        let op = self.operator()?;
        let mut lister = op.lister_with(prefix).recursive(recursive);
        if let Some(n) = self.compat.list_page_size {
            lister = lister.limit(n.max(1) as usize);
        }
        if let Some(after) = start_after
            && op.info().capability().list_with_start_after
        {
            lister = lister.start_after(after);
        }
        let mut lister = lister.await.map_err(|e| self.map_err("list", prefix, e))?;
        let mut out = Vec::new();
        while let Some(entry) = lister.next().await {
            let entry = entry.map_err(|e| self.map_err("list", prefix, e))?;
            let path = entry.path();
            if path == prefix
                || path.starts_with(TMP_DIR)
                || start_after.is_some_and(|a| path <= a)
                || (recursive && entry.metadata().is_dir())
            {
                continue;
            }
            let meta = entry.metadata();
            out.push(ObjectMeta {
                key: path.to_owned(),
                size: meta.content_length(),
                modified: meta
                    .last_modified()
                    .and_then(|t| t.to_string().parse().ok()),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Deletes objects; absent keys are not an error. Uses the backend's
    /// batch delete unless `compat.batch_delete` is off.
    pub async fn delete_many<I, S>(&self, keys: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys: Vec<String> = keys.into_iter().map(|k| k.as_ref().to_owned()).collect();
        if keys.is_empty() || self.absent_folder() {
            return Ok(());
        }
        let first = keys[0].clone();
        if self.compat.batch_delete {
            self.operator()?
                .delete_iter(keys)
                .await
                .map_err(|e| self.map_err("delete", &first, e))
        } else {
            for k in &keys {
                self.operator()?
                    .delete(k)
                    .await
                    .map_err(|e| self.map_err("delete", k, e))?;
            }
            Ok(())
        }
    }
}

fn short(e: &opendal::Error) -> String {
    let s = e.to_string();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

fn looks_unreachable(e: &opendal::Error) -> bool {
    let text = format!("{e:?}").to_ascii_lowercase();
    [
        "connect",
        "dns",
        "refused",
        "timed out",
        "timeout",
        "unreachable",
        "send http request",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Recovers a storage error carried inside an `io::Error`, or names the key.
pub fn io_to_error(e: std::io::Error, key: &str) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(Ok(err)) = e.into_inner().map(|b| b.downcast::<Error>()) {
            return *err;
        }
        return Error::Corrupt {
            key: key.to_owned(),
            reason: "read failed".into(),
        };
    }
    Error::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

/// A stream of an object's bytes that fails at the end (or on overrun) when
/// size or SHA-256 differ from what was recorded. Errors are `io::Error`s
/// wrapping [`Error`]; [`io_to_error`] unwraps them.
pub struct VerifiedStream {
    inner: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    key: String,
    expected: ObjectInfo,
    hasher: Sha256,
    seen: u64,
    done: bool,
}

impl std::fmt::Debug for VerifiedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedStream")
            .field("key", &self.key)
            .field("seen", &self.seen)
            .finish()
    }
}

impl VerifiedStream {
    fn corrupt(&mut self, reason: String) -> Poll<Option<std::io::Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(std::io::Error::other(Error::Corrupt {
            key: self.key.clone(),
            reason,
        }))))
    }
}

impl Stream for VerifiedStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.expected.size {
                    let reason = format!(
                        "it is longer than the recorded {} bytes",
                        self.expected.size
                    );
                    return self.corrupt(reason);
                }
                self.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if self.seen != self.expected.size {
                    let reason = format!(
                        "size is {} bytes, the manifest recorded {} (truncated?)",
                        self.seen, self.expected.size
                    );
                    return self.corrupt(reason);
                }
                let digest = hex::encode(std::mem::take(&mut self.hasher).finalize());
                if digest != self.expected.sha256 {
                    let reason = format!(
                        "SHA-256 is {digest}, the manifest recorded {}",
                        self.expected.sha256
                    );
                    return self.corrupt(reason);
                }
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

/// A local write failed: a permission problem names the path and the fix
/// (a repository folder created by root and written by postgres is the
/// usual case), anything else names the key.
fn fs_err(store: &Store, key: &str, path: &std::path::Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return Error::FolderNotWritable {
            path: path.display().to_string(),
            root: store.location.bucket.clone(),
            user: current_user(),
            detail: e.to_string(),
        };
    }
    Error::Backend {
        operation: "write",
        key: key.to_owned(),
        source: Box::new(
            opendal::Error::new(ErrorKind::Unexpected, format!("{}", path.display())).set_source(e),
        ),
    }
}

/// The user this process runs as, by name where /etc/passwd has it.
fn current_user() -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown user".into();
    };
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == uid.to_string()).then(|| name.to_owned())
            })
        });
    match name {
        Some(name) => format!("{name}, uid {uid}"),
        None => format!("uid {uid}"),
    }
}

enum Sink {
    Multipart(opendal::Writer),
    /// A local folder: a temp file in `.cfdr-tmp/` (created by the first
    /// write, so read-only commands leave the folder alone), renamed into
    /// place, or hard-linked when create-only, which fails atomically when
    /// the name exists (opendal's fs check is a stat before the write, which
    /// two writers can both pass).
    FsTemp {
        file: tokio::fs::File,
        tmp: std::path::PathBuf,
        dest: std::path::PathBuf,
        exclusive: bool,
    },
    /// Whole object buffered, sent in one request on finish.
    Single {
        chunks: Vec<Bytes>,
        create_only: bool,
    },
}

/// A streaming upload that hashes what it stores.
///
/// Parts grow with [`PartSizer`] so memory stays bounded while a 1 TiB object
/// still fits in 10,000 parts. Nothing is visible under the key until
/// [`ObjectWriter::finish`] succeeds; on error call [`ObjectWriter::abort`]
/// (a dropped writer leaves at most an uncompleted multipart upload or a
/// staged temp file, never a visible object).
pub struct ObjectWriter {
    store: Store,
    key: String,
    sink: Sink,
    hasher: Sha256,
    size: u64,
    pending: Vec<Bytes>,
    pending_len: usize,
    parts: PartSizer,
    /// Hold everything for one request on finish (see [`Store::writer_sized`]).
    whole: bool,
}

/// Largest object [`Store::writer_sized`] sends in one request: bounded so
/// a copy's concurrent writers stay within a small multiple of it.
pub const SINGLE_REQUEST_MAX: usize = 16 << 20;

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("key", &self.key)
            .field("size", &self.size)
            .finish()
    }
}

impl ObjectWriter {
    async fn open(store: Store, key: &str, create_only: bool) -> Result<Self> {
        let sink = if store.location.kind == BackendKind::Fs {
            // The first write creates the folder (a store's writes, like a
            // bucket's, need no set-up); reads never do.
            let root = std::path::Path::new(&store.location.bucket);
            let dest = root.join(key.trim_start_matches('/'));
            if create_only && dest.exists() {
                return Err(Error::AlreadyExists {
                    key: key.to_owned(),
                });
            }
            let dir = root.join(TMP_DIR);
            let tmp = dir.join(format!("{:032x}", rand::random::<u128>()));
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| fs_err(&store, key, &dir, e))?;
            let file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| fs_err(&store, key, &tmp, e))?;
            Sink::FsTemp {
                file,
                tmp,
                dest,
                exclusive: create_only,
            }
        } else if store.compat.multipart {
            let w = store
                .operator()?
                .writer_with(key)
                .if_not_exists(create_only)
                .await
                .map_err(|e| store.map_err("write", key, e))?;
            Sink::Multipart(w)
        } else {
            Sink::Single {
                chunks: Vec::new(),
                create_only,
            }
        };
        Ok(Self {
            store,
            key: key.to_owned(),
            sink,
            hasher: Sha256::new(),
            size: 0,
            pending: Vec::new(),
            pending_len: 0,
            parts: PartSizer::default(),
            whole: false,
        })
    }

    /// The key being written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends bytes.
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.hasher.update(&data);
        self.size += data.len() as u64;
        self.pending_len += data.len();
        self.pending.push(data);
        // Local files take any write size: no part buffering there.
        let direct = self.store.location.kind == BackendKind::Fs;
        if self.whole && self.pending_len > SINGLE_REQUEST_MAX {
            // Larger than its stated size: a multipart upload after all.
            self.whole = false;
        }
        if direct || (!self.whole && self.pending_len >= self.parts.current()) {
            self.flush_part().await?;
        }
        Ok(())
    }

    async fn flush_part(&mut self) -> Result<()> {
        let part = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        match &mut self.sink {
            Sink::Multipart(w) => {
                w.write(Buffer::from(part))
                    .await
                    .map_err(|e| self.store.map_err("write", &self.key, e))?;
                self.parts.advance();
            }
            Sink::Single { chunks, .. } => chunks.extend(part),
            Sink::FsTemp { file, tmp, .. } => {
                for chunk in part {
                    tokio::io::AsyncWriteExt::write_all(file, &chunk)
                        .await
                        .map_err(|e| fs_err(&self.store, &self.key, tmp, e))?;
                }
            }
        }
        Ok(())
    }

    /// Completes the upload and returns the stored size and SHA-256.
    pub async fn finish(mut self) -> Result<ObjectInfo> {
        if !self.pending.is_empty() {
            self.flush_part().await?;
        }
        if let Sink::FsTemp {
            file,
            tmp,
            dest,
            exclusive,
        } = &mut self.sink
        {
            let linked = async {
                // tokio's File writes in the background and reports a failed
                // write (a full disk) to the next write or flush; sync_all
                // swallows it, and a short file would be renamed into place.
                tokio::io::AsyncWriteExt::flush(file).await?;
                file.sync_all().await?;
                if let Some(parent) = dest.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                if *exclusive {
                    tokio::fs::hard_link(&*tmp, &*dest).await?;
                } else {
                    tokio::fs::rename(&*tmp, &*dest).await?;
                }
                // The new name must survive a crash too: callers such as WAL
                // archiving delete their source once this returns.
                if let Some(parent) = dest.parent() {
                    tokio::fs::File::open(parent).await?.sync_all().await?;
                }
                Ok::<(), std::io::Error>(())
            }
            .await;
            let _ = tokio::fs::remove_file(&*tmp).await;
            return match linked {
                Ok(()) => {
                    // These writes bypass opendal, and so its logging layer.
                    tracing::debug!(key = %self.key, size = self.size, "stored in the local folder");
                    Ok(ObjectInfo {
                        size: self.size,
                        sha256: hex::encode(self.hasher.finalize()),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(Error::AlreadyExists {
                        key: self.key.clone(),
                    })
                }
                Err(e) => Err(fs_err(&self.store, &self.key, dest, e)),
            };
        }
        let op = self.store.operator()?.clone();
        let result = match &mut self.sink {
            Sink::FsTemp { .. } => Ok(None),
            Sink::Multipart(w) => w.close().await.map(|m| m.version().map(str::to_owned)),
            Sink::Single {
                chunks,
                create_only,
            } => op
                .write_with(&self.key, Buffer::from(std::mem::take(chunks)))
                .if_not_exists(*create_only)
                .await
                .map(|m| m.version().map(str::to_owned)),
        };
        let version = match result {
            Ok(version) => version,
            Err(e) => {
                let err = self.store.map_err("write", &self.key, e);
                self.abort().await;
                return Err(err);
            }
        };
        // Read the size back: a proxy or server that dropped a chunk while
        // answering 200 must not leave a short object that looks whole.
        match self.store.stat(&self.key).await? {
            Some(meta) if meta.size == self.size => {}
            found => {
                // Remove the damaged object so nothing short stays visible.
                if let Err(e) = op.delete(&self.key).await {
                    tracing::warn!(key = %self.key, error = %e, "removing a short upload failed");
                }
                return Err(Error::Corrupt {
                    key: self.key.clone(),
                    reason: format!(
                        "the backend holds {} bytes after the upload, {} were sent",
                        found.map_or(0, |m| m.size),
                        self.size
                    ),
                });
            }
        }
        // The retention date goes on the version just written; a failure
        // fails the write, so nothing is taken for protected that is not.
        if let Some(lock) = &self.store.lock {
            lock.protect(&self.key, version.as_deref()).await?;
        }
        Ok(ObjectInfo {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }

    /// Abandons the upload; nothing becomes visible. Best effort: failures
    /// are logged, not returned, since the caller is already handling an error.
    pub async fn abort(mut self) {
        match &mut self.sink {
            Sink::Multipart(w) => {
                if let Err(e) = w.abort().await {
                    tracing::debug!(key = %self.key, error = %e, "abort of upload failed");
                }
            }
            Sink::FsTemp { tmp, .. } => {
                let _ = tokio::fs::remove_file(&*tmp).await;
            }
            Sink::Single { .. } => {}
        }
    }
}
