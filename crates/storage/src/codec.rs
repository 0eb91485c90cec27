//! The codec pipeline: compression (gzip or zstd) then optional age
//! encryption on the way in; the reverse, with SHA-256 verification of the
//! stored bytes, on the way out.
//!
//! Compression and encryption run on a blocking thread and hand the
//! upload loop 512 KiB chunks over a channel of depth 4, so memory stays
//! bounded whatever the object size and compression overlaps with upload.
//! Every stage writes a standard format: the stored object is a plain
//! `.gz` / `.zst` file, or an age file of one, readable with `gunzip`,
//! `zstd -d` and `age -d`.

use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use cfdr_secrets::{Identities, Recipients};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::{Error, Result};
use crate::object::{ObjectInfo, ObjectWriter, Store, io_to_error};

/// Size of the chunks handed between pipeline stages.
const CHUNK: usize = 512 << 10;
/// Chunks in flight between the codec thread and the async side.
const DEPTH: usize = 4;
/// zstd multithreaded job size.
const ZSTD_JOB: u32 = 2 << 20;

/// Compression of a stored object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as is.
    None,
    /// gzip (RFC 1952), for `.gz` habits and tools.
    Gzip,
    /// zstd (RFC 8878) with frame checksums: faster and smaller; the default.
    #[default]
    Zstd,
}

impl Compression {
    /// The usual file extension (without dot), empty for none.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "gz",
            Compression::Zstd => "zst",
        }
    }

    fn level_range(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Compression::None => 0..=0,
            Compression::Gzip => 0..=9,
            Compression::Zstd => 1..=22,
        }
    }

    /// The level used when none is configured.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 6,
            // Level 1 keeps a backup within a few percent of the dump's own
            // time on two cores; on dump data it is about as small as 3.
            Compression::Zstd => 1,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            other => Err(Error::InvalidOption {
                option: "compression".into(),
                reason: format!("{other:?} is not one of none, gzip, zstd"),
            }),
        }
    }
}

/// How an object was encoded, as recorded in manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecInfo {
    /// Compression applied first.
    pub compression: Compression,
    /// Fingerprints of the age recipients it was encrypted to; empty when
    /// not encrypted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encrypted_to: Vec<String>,
}

impl CodecInfo {
    /// Whether the object is an age file.
    pub fn is_encrypted(&self) -> bool {
        !self.encrypted_to.is_empty()
    }

    /// The name suffix that tells the tools to undo the encoding, outermost
    /// last: `.zst`, `.gz`, `.zst.age`, `.age` (encrypted, not compressed)
    /// or nothing.
    pub fn suffix(&self) -> String {
        let mut suffix = String::new();
        if self.compression != Compression::None {
            suffix = format!(".{}", self.compression.extension());
        }
        if self.is_encrypted() {
            suffix.push_str(".age");
        }
        suffix
    }
}

/// An object written through the codec: where, what was stored, how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// Key relative to the repository root.
    pub key: String,
    /// Size and SHA-256 of the stored (encoded) bytes.
    #[serde(flatten)]
    pub stored: ObjectInfo,
    /// Bytes before encoding.
    pub raw_size: u64,
    /// Encoding.
    pub codec: CodecInfo,
}

/// Encoding settings.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// Compression algorithm.
    pub compression: Compression,
    /// Level (gzip 0-9, zstd 1-22); the algorithm's default when `None`.
    pub level: Option<i32>,
    /// Encrypt to these recipients when set.
    pub recipients: Option<Recipients>,
    /// zstd worker threads (0 = single-threaded in the codec thread).
    pub threads: u32,
    /// Counts source bytes as they are consumed (for progress bars).
    pub progress: Option<Progress>,
    /// The source is already compressed with `compression` (by the
    /// PostgreSQL server, say): stored as it comes, still encrypted and
    /// checksummed, and recorded as `compression` so reads decompress it.
    pub precompressed: bool,
}

/// A shared count of the source bytes [`encode_to`] has consumed so far.
///
/// Cloning shares the count: hand one clone to [`EncodeOptions::progress`]
/// and read the other from a progress bar.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// A count starting at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Zstd,
            level: None,
            recipients: None,
            threads: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(1))
                .unwrap_or(1),
            progress: None,
            precompressed: false,
        }
    }
}

impl EncodeOptions {
    /// Options for `compression` at its default level.
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            ..Self::default()
        }
    }

    /// Counts consumed source bytes into `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Adds age recipients.
    pub fn encrypt_to(mut self, recipients: Recipients) -> Self {
        self.recipients = Some(recipients);
        self
    }

    fn checked_level(&self) -> Result<i32> {
        let level = self.level.unwrap_or(self.compression.default_level());
        let range = self.compression.level_range();
        if !range.contains(&level) {
            return Err(Error::InvalidOption {
                option: "compression level".into(),
                reason: format!(
                    "{level} is outside {}..={} for {:?}",
                    range.start(),
                    range.end(),
                    self.compression
                ),
            });
        }
        Ok(level)
    }

    /// `base` with the suffix of the objects these options write
    /// ([`CodecInfo::suffix`]): `dump.pgdump` becomes `dump.pgdump.zst.age`.
    pub fn object_name(&self, base: &str) -> String {
        format!("{base}{}", self.info().suffix())
    }

    /// What will be recorded for objects written with these options.
    pub fn info(&self) -> CodecInfo {
        CodecInfo {
            compression: self.compression,
            encrypted_to: self
                .recipients
                .as_ref()
                .map(Recipients::fingerprints)
                .unwrap_or_default(),
        }
    }
}

/// Streams `src` through compression and encryption into `key`.
///
/// With `create_only` the object must not exist yet. On any error the upload
/// is aborted and nothing is visible under `key`.
pub async fn encode_to<R>(
    store: &Store,
    key: &str,
    src: R,
    opts: &EncodeOptions,
    create_only: bool,
) -> Result<StoredObject>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let writer = store.writer(key, create_only).await?;
    encode_into(writer, src, opts).await
}

/// Streams `src` through compression and encryption into an open writer,
/// after whatever the caller already wrote to it (e.g. a small plain header),
/// and finishes it. `raw_size` counts `src` only; `stored` covers every byte.
///
/// On any error the upload is aborted and nothing is visible under the key.
pub async fn encode_into<R>(
    mut writer: ObjectWriter,
    src: R,
    opts: &EncodeOptions,
) -> Result<StoredObject>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let key = writer.key().to_owned();
    let key = key.as_str();
    let level = match opts.checked_level() {
        Ok(level) => level,
        Err(e) => {
            writer.abort().await;
            return Err(e);
        }
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
    let bridge = SyncIoBridge::new(src);
    let (compression, threads, recipients) =
        (opts.compression, opts.threads, opts.recipients.clone());
    let compression = match opts.precompressed {
        true => Compression::None,
        false => compression,
    };
    let progress = opts.progress.clone();
    let producer = tokio::task::spawn_blocking(move || {
        encode_blocking(
            Counting {
                inner: bridge,
                progress,
            },
            ChannelWriter::new(tx),
            compression,
            level,
            threads,
            recipients.as_ref(),
        )
    });
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = writer.write(chunk).await {
            drop(rx);
            writer.abort().await;
            let _ = producer.await;
            return Err(e);
        }
    }
    let raw_size = match producer.await {
        Ok(Ok(n)) => n,
        Ok(Err(failure)) => {
            writer.abort().await;
            return Err(failure.into_error(key));
        }
        Err(join) => {
            writer.abort().await;
            return Err(Error::Codec {
                key: key.to_owned(),
                reason: format!("encoder thread failed: {join}"),
            });
        }
    };
    let stored = writer.finish().await?;
    Ok(StoredObject {
        key: key.to_owned(),
        stored,
        raw_size,
        codec: opts.info(),
    })
}

/// Reads `obj`, verifies its stored bytes, decrypts and decompresses into
/// `sink`. Returns the decoded byte count.
///
/// Data reaches `sink` as it is decoded; the SHA-256 check completes at the
/// end, so a caller that must not act on damaged data writes to a staging
/// place (a new database, a temp name) and commits only on `Ok`.
pub async fn decode_to<W>(
    store: &Store,
    obj: &StoredObject,
    identities: Option<Arc<Identities>>,
    sink: &mut W,
) -> Result<u64>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    if obj.codec.is_encrypted() && identities.is_none() {
        // Checked before the read too, so a missing key costs no download.
        return decode_reader(&obj.key, tokio::io::empty(), &obj.codec, None, sink).await;
    }
    let stream = store.read_verified(&obj.key, &obj.stored).await?;
    decode_reader(
        &obj.key,
        StreamReader::new(stream),
        &obj.codec,
        identities,
        sink,
    )
    .await
}

/// Decrypts and decompresses an encoded byte stream (whose integrity the
/// caller checks) into `sink`; `key` names it in errors. Returns the decoded
/// byte count.
pub async fn decode_reader<R, W>(
    key: &str,
    src: R,
    codec: &CodecInfo,
    identities: Option<Arc<Identities>>,
    sink: &mut W,
) -> Result<u64>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Unpin + ?Sized,
{
    let key = key.to_owned();
    if codec.is_encrypted() && identities.is_none() {
        return Err(Error::MissingIdentity { key });
    }
    let bridge = SyncIoBridge::new(src);
    let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
    let compression = codec.compression;
    let encrypted = codec.is_encrypted();
    let producer = tokio::task::spawn_blocking(move || {
        let ids = if encrypted { identities } else { None };
        decode_blocking(bridge, ChannelWriter::new(tx), compression, ids.as_deref())
    });
    let mut written = 0u64;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = sink.write_all(&chunk).await {
            drop(rx);
            let _ = producer.await;
            return Err(Error::Sink { key, source: e });
        }
        written += chunk.len() as u64;
    }
    match producer.await {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => return Err(failure.into_error(&key)),
        Err(join) => {
            return Err(Error::Codec {
                key,
                reason: format!("decoder thread failed: {join}"),
            });
        }
    }
    sink.flush()
        .await
        .map_err(|e| Error::Sink { key, source: e })?;
    Ok(written)
}

/// Why a codec thread stopped.
enum Failure {
    Source(io::Error),
    /// An age failure, and whether it happened while decrypting.
    Crypto(cfdr_secrets::Error, bool),
    Stream(io::Error),
}

impl Failure {
    fn into_error(self, key: &str) -> Error {
        match self {
            Failure::Source(e) => Error::Source {
                key: key.to_owned(),
                source: e,
            },
            Failure::Crypto(source, decrypting) => Error::Crypto {
                key: key.to_owned(),
                decrypting,
                source,
            },
            Failure::Stream(e) if e.get_ref().is_some_and(|i| i.is::<Error>()) => {
                io_to_error(e, key)
            }
            Failure::Stream(e) if e.kind() == io::ErrorKind::BrokenPipe => Error::Codec {
                key: key.to_owned(),
                reason: "the consumer stopped reading".into(),
            },
            Failure::Stream(e) => Error::Corrupt {
                key: key.to_owned(),
                reason: format!("cannot decode the stored stream: {e}"),
            },
        }
    }
}

fn encode_blocking(
    mut src: impl Read,
    out: ChannelWriter,
    compression: Compression,
    level: i32,
    threads: u32,
    recipients: Option<&Recipients>,
) -> std::result::Result<u64, Failure> {
    match recipients {
        Some(r) => {
            let sealed =
                cfdr_secrets::encrypt_writer(r, out).map_err(|e| Failure::Crypto(e, false))?;
            let (sealed, n) = compress_all(&mut src, sealed, compression, level, threads)?;
            let mut out = sealed.finish().map_err(Failure::Stream)?;
            out.flush().map_err(Failure::Stream)?;
            Ok(n)
        }
        None => {
            let (mut out, n) = compress_all(&mut src, out, compression, level, threads)?;
            out.flush().map_err(Failure::Stream)?;
            Ok(n)
        }
    }
}

fn compress_all<W: Write>(
    src: &mut impl Read,
    dst: W,
    compression: Compression,
    level: i32,
    threads: u32,
) -> std::result::Result<(W, u64), Failure> {
    match compression {
        Compression::None => {
            let mut dst = dst;
            let n = copy_all(src, &mut dst)?;
            Ok((dst, n))
        }
        Compression::Gzip => {
            let level = u32::try_from(level).unwrap_or(6);
            let mut enc = flate2::write::GzEncoder::new(dst, flate2::Compression::new(level));
            let n = copy_all(src, &mut enc)?;
            Ok((enc.finish().map_err(Failure::Stream)?, n))
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(dst, level).map_err(Failure::Stream)?;
            enc.include_checksum(true).map_err(Failure::Stream)?;
            if threads > 1 {
                enc.multithread(threads).map_err(Failure::Stream)?;
                // Small jobs keep each worker's buffers small: memory stays
                // flat (the default job is 4x the window, tens of MiB in all).
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB))
                    .map_err(Failure::Stream)?;
            }
            let n = copy_all(src, &mut enc)?;
            Ok((enc.finish().map_err(Failure::Stream)?, n))
        }
    }
}

fn decode_blocking(
    src: impl Read,
    mut out: ChannelWriter,
    compression: Compression,
    identities: Option<&Identities>,
) -> std::result::Result<(), Failure> {
    let plain: Box<dyn Read> = match identities {
        Some(ids) => {
            Box::new(cfdr_secrets::decrypt_reader(ids, src).map_err(|e| Failure::Crypto(e, true))?)
        }
        None => Box::new(src),
    };
    let mut decoded: Box<dyn Read> = match compression {
        Compression::None => plain,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(plain))),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(plain).map_err(Failure::Stream)?)
        }
    };
    copy_all(&mut decoded, &mut out).map_err(|f| match f {
        // In decode the source is the stored stream: its errors are stream errors.
        Failure::Source(e) => Failure::Stream(e),
        other => other,
    })?;
    out.flush().map_err(Failure::Stream)
}

/// Copies until EOF with a large buffer, telling source errors from sink errors.
fn copy_all(src: &mut impl Read, dst: &mut impl Write) -> std::result::Result<u64, Failure> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Source(e)),
        };
        dst.write_all(&buf[..n]).map_err(Failure::Stream)?;
        total += n as u64;
    }
}

/// A `Read` that adds what it reads to an optional [`Progress`].
struct Counting<R> {
    inner: R,
    progress: Option<Progress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = &self.progress {
            p.add(n);
        }
        Ok(n)
    }
}

/// A blocking `Write` that hands full chunks to an async receiver.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "pipeline consumer stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
