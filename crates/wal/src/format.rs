//! Byte formats: the one-line header that makes each stored WAL object
//! self-verifying, the WAL long page header at the start of every segment,
//! and the start of `global/pg_control`.

use std::path::Path;

use cfdr_storage::wal_archive::decimal_u64;
use cfdr_storage::{CodecInfo, Compression};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// First bytes of every stored WAL object.
pub(crate) const MAGIC: &[u8] = b"CFDR-WAL/1 ";
/// The header line is small; anything longer is not ours.
const MAX_HEADER: usize = 4096;

/// The header line of a stored WAL object: what the decoded file must be.
/// Stored as `CFDR-WAL/1 {json}\n` in clear before the encoded body, so a
/// fetch verifies without a manifest and `tail -n +2` leaves a plain
/// `.zst`/`.gz`/age stream for stock tools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WalObjectHeader {
    /// PostgreSQL file name (`000000010000000000000003`, `00000002.history`).
    pub file: String,
    /// Size of the original file in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the original file.
    pub sha256: String,
    /// How the body is encoded.
    pub compression: Compression,
    /// Fingerprints of the age recipients the body is encrypted to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encrypted_to: Vec<String>,
    /// System identifier of the cluster that wrote it (decimal, as
    /// `pg_controldata` prints it).
    #[serde(with = "decimal_u64")]
    pub system_identifier: u64,
    /// PostgreSQL major version.
    pub pg_major: u32,
}

impl WalObjectHeader {
    /// The codec of the body.
    pub fn codec(&self) -> CodecInfo {
        CodecInfo {
            compression: self.compression,
            encrypted_to: self.encrypted_to.clone(),
        }
    }

    /// The header line, newline included.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let mut line = MAGIC.to_vec();
        // Serializing a plain struct of strings and numbers cannot fail.
        line.extend(serde_json::to_vec(self).unwrap_or_default());
        line.push(b'\n');
        line
    }

    /// Splits a stored object into its header and the offset of its encoded
    /// body; `key` is for errors. Public so that hostile objects can be fed
    /// to the parser directly (fuzzing).
    pub fn split(key: &str, stored: &[u8]) -> Result<(Self, usize)> {
        let corrupt = |reason: String| Error::WalCorrupt {
            key: key.to_owned(),
            reason,
            hint: super::FETCH_HINT,
        };
        if !stored.starts_with(MAGIC) {
            return Err(corrupt(
                "it does not start with the cfdr WAL header (damaged, or not written by cfdr-wal)"
                    .into(),
            ));
        }
        let end = stored
            .iter()
            .take(MAX_HEADER)
            .position(|&b| b == b'\n')
            .ok_or_else(|| corrupt("its header line has no end".into()))?;
        let header: Self = serde_json::from_slice(&stored[MAGIC.len()..end])
            .map_err(|e| corrupt(format!("its header is not valid: {e}")))?;
        Ok((header, end + 1))
    }
}

/// `XLOG_PAGE_MAGIC` of each PostgreSQL major version (src/include/access/xlog_internal.h).
const PAGE_MAGIC: &[(u16, u32)] = &[
    (0xD097, 10),
    (0xD098, 11),
    (0xD101, 12),
    (0xD106, 13),
    (0xD10D, 14),
    (0xD110, 15),
    (0xD113, 16),
    (0xD116, 17),
    (0xD118, 18),
];

/// `XLP_LONG_HEADER`: the first page of a segment has the long header.
const XLP_LONG_HEADER: u16 = 0x0002;

/// What the long page header at the start of a WAL segment says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The cluster's system identifier.
    pub system_identifier: u64,
    /// PostgreSQL major version (from the page magic).
    pub pg_major: u32,
    /// WAL segment size of the cluster.
    pub segment_size: u64,
    /// LSN of the first byte of the segment.
    pub page_address: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(a)
}

impl SegmentHeader {
    /// Parses `XLogLongPageHeaderData` (native byte order, as the server
    /// wrote it on this machine). `name` is for errors.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::WalFile {
            file: name.to_owned(),
            reason,
        };
        if bytes.len() < 40 {
            return Err(bad(format!(
                "{} bytes is too short for a WAL segment",
                bytes.len()
            )));
        }
        let magic = u16_at(bytes, 0);
        let pg_major = PAGE_MAGIC
            .iter()
            .find(|(m, _)| *m == magic)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                bad(format!(
                    "page magic 0x{magic:04X} is not that of PostgreSQL 10 to 18 (not a WAL segment?)"
                ))
            })?;
        if u16_at(bytes, 2) & XLP_LONG_HEADER == 0 {
            return Err(bad("its first page lacks the long header".into()));
        }
        let header = SegmentHeader {
            system_identifier: u64_at(bytes, 24),
            pg_major,
            segment_size: u64::from(u32_at(bytes, 32)),
            page_address: u64_at(bytes, 8),
        };
        cfdr_retention::check_segment_size(header.segment_size).map_err(|e| bad(e.to_string()))?;
        Ok(header)
    }
}

/// Identity of a data directory: `global/pg_control` starts with the system
/// identifier in every version; `PG_VERSION` holds the major version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataDirIdentity {
    /// The cluster's system identifier.
    pub system_identifier: u64,
    /// PostgreSQL major version.
    pub pg_major: u32,
}

impl DataDirIdentity {
    /// Reads the identity of the data directory `dir`, or `None` when it
    /// has no `global/pg_control` (not a data directory).
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let control = dir.join("global/pg_control");
        let bytes = match std::fs::read(&control) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    what: format!("reading {}", control.display()),
                    source: e,
                });
            }
        };
        let version_file = dir.join("PG_VERSION");
        let version = std::fs::read_to_string(&version_file)
            .map_err(Error::io(format!("reading {}", version_file.display())))?;
        let pg_major = version.trim().parse().map_err(|_| Error::WalFile {
            file: version_file.display().to_string(),
            reason: format!("{:?} is not a major version", version.trim()),
        })?;
        if bytes.len() < 16 {
            return Err(Error::WalFile {
                file: control.display().to_string(),
                reason: "too short for pg_control".into(),
            });
        }
        Ok(Some(DataDirIdentity {
            system_identifier: u64_at(&bytes, 0),
            pg_major,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header() -> WalObjectHeader {
        WalObjectHeader {
            file: "000000010000000000000003".into(),
            size: 16 << 20,
            sha256: "ab".repeat(32),
            compression: Compression::Zstd,
            encrypted_to: Vec::new(),
            system_identifier: u64::MAX - 1,
            pg_major: 15,
        }
    }

    #[test]
    fn header_line_round_trips_and_rejects_damage() {
        let h = header();
        let mut stored = h.to_line();
        stored.extend_from_slice(b"\x28\xb5\x2f\xfdbody");
        let (back, at) = WalObjectHeader::split("k", &stored).unwrap();
        assert_eq!(back, h);
        assert_eq!(&stored[at..at + 4], b"\x28\xb5\x2f\xfd");
        // The system identifier is a decimal string, exact beyond 2^53.
        let line = String::from_utf8(h.to_line()).unwrap();
        assert!(
            line.contains("\"system-identifier\":\"18446744073709551614\""),
            "{line}"
        );
        for damaged in [
            &b"CFDR-WAL/2 {}\n"[..],
            b"CFDR-WAL/1 {\"file\":1}\n",
            b"CFDR-WAL/1 no newline",
        ] {
            assert!(WalObjectHeader::split("k", damaged).is_err());
        }
    }

    #[test]
    fn segment_header_parses_and_refuses_other_files() {
        let mut page = vec![0u8; 8192];
        page[0..2].copy_from_slice(&0xD110u16.to_ne_bytes());
        page[2..4].copy_from_slice(&0x0002u16.to_ne_bytes());
        page[4..8].copy_from_slice(&1u32.to_ne_bytes());
        page[8..16].copy_from_slice(&0x0300_0000u64.to_ne_bytes());
        page[24..32].copy_from_slice(&7_301_234_567_890u64.to_ne_bytes());
        page[32..36].copy_from_slice(&(16u32 << 20).to_ne_bytes());
        let h = SegmentHeader::parse("x", &page).unwrap();
        assert_eq!(h.pg_major, 15);
        assert_eq!(h.system_identifier, 7_301_234_567_890);
        assert_eq!(h.segment_size, 16 << 20);
        assert_eq!(h.page_address, 0x0300_0000);
        let mut short = page.clone();
        short[2] = 0;
        assert!(
            SegmentHeader::parse("x", &short)
                .unwrap_err()
                .to_string()
                .contains("long header")
        );
        let mut alien = page.clone();
        alien[0] = 0;
        assert!(
            SegmentHeader::parse("x", &alien)
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        assert!(SegmentHeader::parse("x", &page[..20]).is_err());
        let mut odd = page;
        odd[32..36].copy_from_slice(&3u32.to_ne_bytes());
        assert!(SegmentHeader::parse("x", &odd).is_err());
    }
}
