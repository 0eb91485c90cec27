//! An end-to-end check of a repository: write a backup through the codec,
//! commit it, verify its checksums, decode it back and compare, then remove
//! it. Proves that the location, credentials, codec and keys all work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;

use crate::codec::{EncodeOptions, decode_to};
use crate::error::{Error, Result};
use crate::repo::{BackupId, Repository};

/// What a self-test measured.
#[derive(Clone, Debug, PartialEq)]
pub struct SelfTestReport {
    /// The temporary backup's id.
    pub id: BackupId,
    /// Bytes generated.
    pub raw_bytes: u64,
    /// Bytes stored after compression and encryption.
    pub stored_bytes: u64,
    /// Time to encode, upload and commit.
    pub write: Duration,
    /// Time to verify the stored checksums.
    pub verify: Duration,
    /// Time to download, decode and compare.
    pub read: Duration,
    /// Whether the backup was kept.
    pub kept: bool,
}

/// Deterministic sample data shaped like a SQL dump (compresses ~3:1).
pub fn sample_data(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let line = format!(
            "INSERT INTO trades VALUES ({}, 'BTC-USD', {}.{:02}, '{:016x}');\n",
            x % 100_000,
            x % 70_000,
            x % 100,
            x
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// A sink that hashes what it receives.
struct HashSink(Sha256);

impl AsyncWrite for HashSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.update(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl Repository {
    /// Runs the self-test with `size` bytes of sample data. Decryption uses
    /// `identities` when the options encrypt (it must match a recipient).
    /// The backup is deleted afterwards unless `keep` is set.
    pub async fn self_test(
        &self,
        size: usize,
        opts: &EncodeOptions,
        identities: Option<Arc<cfdr_secrets::Identities>>,
        keep: bool,
    ) -> Result<SelfTestReport> {
        let data = sample_data(size, 42);
        let want = hex::encode(Sha256::digest(&data));
        let started = Instant::now();
        let mut writer = self.begin_backup("selftest", Some("manual"))?;
        let name = opts.object_name("sample.sql");
        writer
            .put_encoded(&name, std::io::Cursor::new(data), opts)
            .await?;
        let manifest = writer.commit(Default::default()).await?;
        let write = started.elapsed();

        let started = Instant::now();
        let report = self.verify(&manifest).await?;
        if let Some((key, reason)) = report.failures.first() {
            return Err(Error::Corrupt {
                key: key.clone(),
                reason: reason.clone(),
            });
        }
        let verify = started.elapsed();

        let started = Instant::now();
        let obj = &manifest.objects[0];
        let ids = if obj.codec.is_encrypted() {
            identities
        } else {
            None
        };
        let mut sink = HashSink(Sha256::new());
        decode_to(self.store(), obj, ids, &mut sink).await?;
        let got = hex::encode(sink.0.finalize());
        if got != want {
            return Err(Error::Corrupt {
                key: obj.key.clone(),
                reason: format!("decoded data hashes to {got}, the source to {want}"),
            });
        }
        let read = started.elapsed();

        if !keep {
            let mut keys: Vec<String> = manifest.objects.iter().map(|o| o.key.clone()).collect();
            // The manifest goes first so a half-deleted backup is never listed.
            keys.insert(
                0,
                format!("{}{}", manifest.id.prefix(), crate::repo::MANIFEST_NAME),
            );
            for key in keys {
                self.store().delete_many([key]).await?;
            }
        }
        Ok(SelfTestReport {
            id: manifest.id.clone(),
            raw_bytes: size as u64,
            stored_bytes: manifest.stored_size(),
            write,
            verify,
            read,
            kept: keep,
        })
    }
}
