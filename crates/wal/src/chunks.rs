//! Chunks of the WAL stream: the bytes of a segment in progress, shipped
//! within about a second of their commit, and the stream's safe position.
//!
//! ```text
//! wal-stream/state.json                                    the safe position (StreamState)
//! wal-stream/<TLI>/<segment>/<start LSN>-<end LSN>          bytes [start, end) of the segment
//! ```
//!
//! LSNs in keys are 16 hex digits, so a listing comes back in WAL order.
//! Each chunk is an immutable object in the format of every WAL object
//! (`CFDR-WAL/1 {json}\n` + encoded body; `file` is the segment name, `size`
//! and `sha256` those of the chunk's bytes). Once the segment is complete
//! and stored as an ordinary WAL object, its chunks are deleted.
//!
//! [`assemble`] rebuilds a segment held only as chunks: every chunk is
//! verified, the chunks must be contiguous from the segment's first byte,
//! and the rest of the segment is zero-filled, as PostgreSQL expects of a
//! partial segment. A missing or damaged chunk fails loudly.

use std::sync::Arc;

use cfdr_retention::{Lsn, WalFile};
use cfdr_secrets::Identities;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{FETCH_HINT, WalArchive, WalObjectHeader, decode_verified, sha256_hex};

/// Prefix of every object of the WAL stream.
pub const STREAM_PREFIX: &str = "wal-stream/";
/// Key of the stream's safe position.
pub const STATE_KEY: &str = "wal-stream/state.json";

/// Where the chunks of WAL segment `segment` (a 24-hex-digit name) live:
/// `wal-stream/<TLI>/<segment>/`.
pub fn segment_prefix(segment: &str) -> String {
    let timeline = segment.get(..8).unwrap_or(segment);
    format!("{STREAM_PREFIX}{timeline}/{segment}/")
}

/// The key of the chunk holding bytes `[start, end)` of `segment`.
pub fn chunk_key(segment: &str, start: Lsn, end: Lsn) -> String {
    format!("{}{:016X}-{:016X}", segment_prefix(segment), start.0, end.0)
}

/// `(segment, start, end)` of a chunk key, or `None` for another key.
pub fn parse_chunk_key(key: &str) -> Option<(&str, Lsn, Lsn)> {
    let rest = key.strip_prefix(STREAM_PREFIX)?;
    let mut parts = rest.split('/');
    let (_timeline, segment, range) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    (start < end).then_some((segment, Lsn(start), Lsn(end)))
}

/// The stream's safe position, `wal-stream/state.json`: every WAL byte
/// before `safe_lsn` on `timeline` is in the repository (as segments or
/// chunks). Written only when the safe position moves; the guard reads it
/// for the RPO exposure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Format of this document (1).
    pub version: u32,
    /// The timeline of `safe_lsn`.
    pub timeline: u32,
    /// End of the WAL safe in the repository (`X/Y`).
    pub safe_lsn: Lsn,
    /// When `safe_lsn` became safe.
    pub safe_at: Timestamp,
    /// When this document was written.
    pub updated_at: Timestamp,
}

impl StreamState {
    /// Reads the state, `None` when no stream has written one.
    pub async fn read(archive: &WalArchive) -> Result<Option<Self>> {
        match archive.store().get(STATE_KEY).await {
            Ok(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| Error::WalCorrupt {
                    key: STATE_KEY.into(),
                    reason: format!("not a stream state: {e}"),
                    hint: "the next move of the stream's safe position rewrites it",
                }),
            Err(cfdr_storage::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the state (overwriting the previous one).
    pub async fn write(&self, archive: &WalArchive) -> Result<()> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        archive.store().put(STATE_KEY, body).await?;
        Ok(())
    }
}

/// One listed chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// Object key.
    pub key: String,
    /// First byte.
    pub start: Lsn,
    /// End (exclusive).
    pub end: Lsn,
}

/// The chunks of `segment` in the repository, by start LSN.
pub async fn list(archive: &WalArchive, segment: &str) -> Result<Vec<ChunkRef>> {
    let mut out: Vec<ChunkRef> = archive
        .store()
        .list(&segment_prefix(segment))
        .await?
        .into_iter()
        .filter_map(|m| {
            let (seg, start, end) = parse_chunk_key(&m.key)?;
            (seg == segment).then(|| ChunkRef {
                key: m.key.clone(),
                start,
                end,
            })
        })
        .collect();
    out.sort_by_key(|c| (c.start, c.end));
    Ok(out)
}

/// Where the chunks of a segment starting at `first` end without a hole.
pub fn contiguous_end(chunks: &[ChunkRef], first: Lsn) -> Lsn {
    let mut end = first;
    for c in chunks {
        if c.start > end {
            break;
        }
        end = end.max(c.end);
    }
    end
}

/// The segment `name` rebuilt from its chunks (verified, contiguous,
/// zero-filled to the segment size), with a header describing it; `None`
/// when it has no chunks (or `name` is not a segment).
pub async fn assemble(
    archive: &WalArchive,
    name: &str,
    identities: Option<Arc<Identities>>,
) -> Result<Option<(WalObjectHeader, Vec<u8>)>> {
    let segment_size = archive
        .identity()
        .await?
        .map_or(cfdr_retention::DEFAULT_SEGMENT_SIZE, |i| i.wal_segment_size);
    let Ok(WalFile::Segment(seg)) = WalFile::parse(name, segment_size) else {
        return Ok(None);
    };
    let chunks = list(archive, name).await?;
    if chunks.is_empty() {
        return Ok(None);
    }
    let first = seg.start_lsn(segment_size);
    let limit = Lsn(first.0 + segment_size);
    let mut data = vec![0u8; usize::try_from(segment_size).unwrap_or(0)];
    let mut covered = first;
    let mut header: Option<WalObjectHeader> = None;
    for c in &chunks {
        if c.end <= covered {
            continue;
        }
        if c.start > covered {
            return Err(Error::WalStreamHole {
                segment: name.to_owned(),
                from: covered,
                to: c.start,
            });
        }
        if c.end > limit {
            return Err(Error::WalCorrupt {
                key: c.key.clone(),
                reason: format!("it ends at {}, past the end of {name} at {limit}", c.end),
                hint: FETCH_HINT,
            });
        }
        let raw = archive.store().get(&c.key).await?;
        let (h, bytes) = decode_verified(&c.key, raw, identities.clone()).await?;
        if h.file != name || bytes.len() as u64 != c.end.0 - c.start.0 {
            return Err(Error::WalCorrupt {
                key: c.key.clone(),
                reason: format!(
                    "it holds {} bytes of {}, its key says {} bytes of {name}",
                    bytes.len(),
                    h.file,
                    c.end.0 - c.start.0
                ),
                hint: FETCH_HINT,
            });
        }
        let at = |lsn: Lsn| usize::try_from(lsn.0 - first.0).unwrap_or(usize::MAX);
        // An overlap (a stream restarted mid-segment) must repeat the same WAL.
        let overlap = at(covered) - at(c.start);
        if bytes[..overlap] != data[at(c.start)..at(covered)] {
            return Err(Error::WalCorrupt {
                key: c.key.clone(),
                reason: format!("it disagrees with the chunk before it up to {covered}"),
                hint: FETCH_HINT,
            });
        }
        data[at(covered)..at(c.end)].copy_from_slice(&bytes[overlap..]);
        covered = c.end;
        header.get_or_insert(h);
    }
    let Some(mut header) = header else {
        return Ok(None);
    };
    header.size = data.len() as u64;
    header.sha256 = sha256_hex(&data);
    Ok(Some((header, data)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chunk_keys_sort_in_wal_order_and_parse_back() {
        let seg = "000000010000000000000003";
        let a = chunk_key(seg, Lsn(0x300_0000), Lsn(0x300_1A38));
        assert_eq!(
            a,
            "wal-stream/00000001/000000010000000000000003/0000000003000000-0000000003001A38"
        );
        let b = chunk_key(seg, Lsn(0x300_1A38), Lsn(0x301_0000));
        assert!(a < b);
        assert_eq!(
            parse_chunk_key(&b),
            Some((seg, Lsn(0x300_1A38), Lsn(0x301_0000)))
        );
        assert_eq!(parse_chunk_key(STATE_KEY), None);
        assert_eq!(parse_chunk_key("wal-stream/00000001/x/10-5"), None);
        let refs = |r: &[(u64, u64)]| -> Vec<ChunkRef> {
            r.iter()
                .map(|(s, e)| ChunkRef {
                    key: String::new(),
                    start: Lsn(*s),
                    end: Lsn(*e),
                })
                .collect()
        };
        assert_eq!(
            contiguous_end(&refs(&[(0, 10), (5, 20), (30, 40)]), Lsn(0)),
            Lsn(20)
        );
        assert_eq!(contiguous_end(&refs(&[(4, 10)]), Lsn(0)), Lsn(0));
    }

    #[test]
    fn state_document_has_the_fields_the_guard_reads() {
        let t: Timestamp = "2026-12-01T20:00:00Z".parse().unwrap();
        let s = StreamState {
            version: 1,
            timeline: 2,
            safe_lsn: Lsn(0x1_0300_1A38),
            safe_at: t,
            updated_at: t,
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version":1,"timeline":2,"safe_lsn":"1/3001A38",
                "safe_at":"2026-12-01T20:00:00Z","updated_at":"2026-12-01T20:00:00Z"})
        );
    }
}
