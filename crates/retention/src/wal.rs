//! PostgreSQL WAL positions and file names.
//!
//! A WAL segment file is named `TTTTTTTTXXXXXXXXYYYYYYYY`: the timeline, then
//! the segment number split in two (`XXXXXXXX` = segno / segments-per-4-GiB,
//! `YYYYYYYY` = segno % segments-per-4-GiB), all in upper-case hexadecimal.
//! With the default 16 MiB segments there are 256 segments per 4 GiB, so
//! `YYYYYYYY` runs from `00000000` to `000000FF`. Timeline history files are
//! `TTTTTTTT.history`; a backup label copy is `<segment>.<offset>.backup`; a
//! segment cut short at promotion is `<segment>.partial`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// PostgreSQL's default WAL segment size, 16 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

const MIN_SEGMENT_SIZE: u64 = 1024 * 1024;
const MAX_SEGMENT_SIZE: u64 = 1024 * 1024 * 1024;
const FOUR_GIB: u64 = 0x1_0000_0000;

/// Checks that `size` is a WAL segment size PostgreSQL accepts (a power of
/// two from 1 MiB to 1 GiB).
pub fn check_segment_size(size: u64) -> Result<()> {
    if size.is_power_of_two() && (MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(Error::InvalidSegmentSize { size })
    }
}

/// A WAL position (log sequence number), shown as PostgreSQL does: `16/B374D848`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidLsn { text: s.to_owned() };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let ok =
            |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok(hi) || !ok(lo) {
            return Err(bad());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn(hi << 32 | lo))
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One WAL segment: a timeline and a segment number. The segment covers the
/// LSN range `[segno × size, (segno + 1) × size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WalSegment {
    /// The timeline id (1 for a cluster that was never promoted or recovered).
    pub timeline: u32,
    /// The segment number: LSN / segment size.
    pub segno: u64,
}

impl WalSegment {
    /// The segment of `timeline` holding `lsn`.
    pub fn containing(timeline: u32, lsn: Lsn, segment_size: u64) -> Self {
        WalSegment {
            timeline,
            segno: lsn.0 / segment_size.max(1),
        }
    }

    /// The first LSN in this segment.
    pub fn start_lsn(&self, segment_size: u64) -> Lsn {
        Lsn(self.segno.saturating_mul(segment_size))
    }

    /// The first LSN after this segment (exclusive end).
    pub fn end_lsn(&self, segment_size: u64) -> Lsn {
        Lsn(self.segno.saturating_add(1).saturating_mul(segment_size))
    }

    /// The 24-character file name of this segment.
    pub fn file_name(&self, segment_size: u64) -> String {
        let per_4gib = FOUR_GIB / segment_size.max(1);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.segno / per_4gib,
            self.segno % per_4gib
        )
    }

    /// Parses a 24-character segment file name for the given segment size.
    pub fn parse(name: &str, segment_size: u64) -> Result<Self> {
        check_segment_size(segment_size)?;
        let bad = |why| Error::InvalidWalName {
            name: name.to_owned(),
            why,
        };
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("a segment name is 24 hexadecimal digits"));
        }
        let timeline = hex32(&name[0..8]).ok_or_else(|| bad("bad timeline"))?;
        let log = u64::from(hex32(&name[8..16]).ok_or_else(|| bad("bad log number"))?);
        let seg = u64::from(hex32(&name[16..24]).ok_or_else(|| bad("bad segment number"))?);
        if timeline == 0 {
            return Err(bad("timeline 0 does not exist"));
        }
        let per_4gib = FOUR_GIB / segment_size;
        if seg >= per_4gib {
            return Err(bad("segment number too large for this WAL segment size"));
        }
        Ok(WalSegment {
            timeline,
            segno: log * per_4gib + seg,
        })
    }
}

fn hex32(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 16).ok()
}

/// A file in the WAL archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum WalFile {
    /// A full segment, `TTTTTTTTXXXXXXXXYYYYYYYY`.
    Segment(WalSegment),
    /// A segment cut short when a standby was promoted, `<segment>.partial`.
    Partial(WalSegment),
    /// The copy of a backup label, `<segment>.<offset>.backup`; it sits at
    /// the backup's start LSN.
    BackupLabel {
        /// The segment holding the backup's start.
        segment: WalSegment,
        /// The start LSN's offset inside that segment.
        offset: u64,
    },
    /// A timeline history file, `TTTTTTTT.history`.
    History {
        /// The timeline it describes.
        timeline: u32,
    },
}

impl WalFile {
    /// Parses any WAL archive file name.
    ///
    /// ```
    /// use cfdr_retention::{WalFile, WalSegment, DEFAULT_SEGMENT_SIZE};
    ///
    /// let f = WalFile::parse("000000020000000100000003", DEFAULT_SEGMENT_SIZE)?;
    /// assert_eq!(f, WalFile::Segment(WalSegment { timeline: 2, segno: 0x103 }));
    /// let h = WalFile::parse("00000002.history", DEFAULT_SEGMENT_SIZE)?;
    /// assert_eq!(h, WalFile::History { timeline: 2 });
    /// # Ok::<(), cfdr_retention::Error>(())
    /// ```
    pub fn parse(name: &str, segment_size: u64) -> Result<Self> {
        check_segment_size(segment_size)?;
        let bad = |why| Error::InvalidWalName {
            name: name.to_owned(),
            why,
        };
        if let Some(tli) = name.strip_suffix(".history") {
            if tli.len() != 8 || !tli.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(
                    "a history file name is 8 hexadecimal digits + .history",
                ));
            }
            let timeline = hex32(tli).ok_or_else(|| bad("bad timeline"))?;
            if timeline == 0 {
                return Err(bad("timeline 0 does not exist"));
            }
            return Ok(WalFile::History { timeline });
        }
        if let Some(seg) = name.strip_suffix(".partial") {
            return WalSegment::parse(seg, segment_size)
                .map(WalFile::Partial)
                .map_err(|_| bad("bad segment before .partial"));
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (seg, off) = rest
                .split_once('.')
                .ok_or_else(|| bad("a backup label is <segment>.<offset>.backup"))?;
            let segment = WalSegment::parse(seg, segment_size)
                .map_err(|_| bad("bad segment before .backup"))?;
            if off.len() != 8 || !off.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("a backup label offset is 8 hexadecimal digits"));
            }
            let offset = u64::from(hex32(off).ok_or_else(|| bad("bad offset"))?);
            if offset >= segment_size {
                return Err(bad("backup label offset beyond the segment"));
            }
            return Ok(WalFile::BackupLabel { segment, offset });
        }
        WalSegment::parse(name, segment_size).map(WalFile::Segment)
    }

    /// The canonical file name.
    pub fn file_name(&self, segment_size: u64) -> String {
        match self {
            WalFile::Segment(s) => s.file_name(segment_size),
            WalFile::Partial(s) => format!("{}.partial", s.file_name(segment_size)),
            WalFile::BackupLabel { segment, offset } => {
                format!("{}.{offset:08X}.backup", segment.file_name(segment_size))
            }
            WalFile::History { timeline } => format!("{timeline:08X}.history"),
        }
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        match self {
            WalFile::Segment(s) | WalFile::Partial(s) | WalFile::BackupLabel { segment: s, .. } => {
                s.timeline
            }
            WalFile::History { timeline } => *timeline,
        }
    }

    /// The LSN range `[start, end)` the file holds WAL for; `None` for a
    /// history file. A backup label is the single point of the backup start.
    pub fn lsn_range(&self, segment_size: u64) -> Option<(Lsn, Lsn)> {
        match self {
            WalFile::Segment(s) | WalFile::Partial(s) => {
                Some((s.start_lsn(segment_size), s.end_lsn(segment_size)))
            }
            WalFile::BackupLabel { segment, offset } => {
                let at = Lsn(segment.start_lsn(segment_size).0.saturating_add(*offset));
                Some((at, Lsn(at.0.saturating_add(1))))
            }
            WalFile::History { .. } => None,
        }
    }
}

/// A file in the WAL archive, as given to [`plan`](crate::plan).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WalItem {
    /// The object name (file name) in the archive.
    pub name: String,
    /// What the name says the file is.
    pub file: WalFile,
    /// Stored size in bytes (for the plan's summary).
    #[serde(default)]
    pub size: u64,
}

impl WalItem {
    /// Parses `name` into a WAL item of `size` stored bytes.
    pub fn parse(name: &str, size: u64, segment_size: u64) -> Result<Self> {
        Ok(WalItem {
            name: name.to_owned(),
            file: WalFile::parse(name, segment_size)?,
            size,
        })
    }

    /// A WAL item for `file`, named canonically.
    pub fn new(file: WalFile, size: u64, segment_size: u64) -> Self {
        WalItem {
            name: file.file_name(segment_size),
            file,
            size,
        }
    }
}

/// The WAL a physical backup needs: its timeline and the LSNs where it
/// started and stopped (`pg_backup_start` / `pg_backup_stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WalRange {
    /// The timeline the backup was taken on.
    pub timeline: u32,
    /// Backup start LSN (the redo point).
    pub start: Lsn,
    /// Backup stop LSN (the minimum recovery point).
    pub stop: Lsn,
}

impl WalRange {
    /// A range on `timeline` from `start` to `stop`.
    pub fn new(timeline: u32, start: Lsn, stop: Lsn) -> Self {
        WalRange {
            timeline,
            start,
            stop,
        }
    }

    /// True when `file` holds WAL inside `[start, stop]` on this range's
    /// timeline, i.e. the backup cannot be restored without it.
    pub fn needs(&self, file: &WalFile, segment_size: u64) -> bool {
        if file.timeline() != self.timeline {
            return false;
        }
        match file.lsn_range(segment_size) {
            Some((lo, hi)) => lo <= self.stop && self.start < hi,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SEG: u64 = DEFAULT_SEGMENT_SIZE;

    #[test]
    fn segment_names_round_trip() {
        let s = WalSegment::parse("0000000100000001000000FF", SEG).unwrap();
        assert_eq!(
            s,
            WalSegment {
                timeline: 1,
                segno: 0x1FF
            }
        );
        assert_eq!(s.file_name(SEG), "0000000100000001000000FF");
        assert_eq!(s.start_lsn(SEG).to_string(), "1/FF000000");
        assert_eq!(s.end_lsn(SEG).to_string(), "2/0");
        assert!(WalSegment::parse("000000010000000100000100", SEG).is_err());
        assert!(WalSegment::parse("00000000000000010000000F", SEG).is_err());
        assert!(WalSegment::parse("0000000100000001000000F", SEG).is_err());
        assert!(WalSegment::parse("0000000100000001000000FG", SEG).is_err());
        // 1 GiB segments: 4 per 4 GiB.
        let big = WalSegment::parse("000000030000000200000003", 1 << 30).unwrap();
        assert_eq!(big.segno, 11);
        assert!(WalSegment::parse("000000030000000200000004", 1 << 30).is_err());
        assert!(WalSegment::parse("000000030000000200000003", 3 << 20).is_err());
    }

    #[test]
    fn other_wal_files() {
        let p = WalFile::parse("000000010000000000000007.partial", SEG).unwrap();
        assert_eq!(
            p,
            WalFile::Partial(WalSegment {
                timeline: 1,
                segno: 7
            })
        );
        let b = WalFile::parse("000000010000000000000002.00000028.backup", SEG).unwrap();
        assert_eq!(
            b,
            WalFile::BackupLabel {
                segment: WalSegment {
                    timeline: 1,
                    segno: 2
                },
                offset: 0x28
            }
        );
        assert_eq!(b.file_name(SEG), "000000010000000000000002.00000028.backup");
        assert_eq!(b.lsn_range(SEG).unwrap().0.to_string(), "0/2000028");
        let h = WalFile::parse("0000000A.history", SEG).unwrap();
        assert_eq!(h, WalFile::History { timeline: 10 });
        assert_eq!(h.file_name(SEG), "0000000A.history");
        for bad in [
            "00000000.history",
            "0000001.history",
            "xyz",
            "000000010000000000000002.backup",
            "000000010000000000000002.01000000.backup",
        ] {
            assert!(WalFile::parse(bad, SEG).is_err(), "{bad}");
        }
    }

    #[test]
    fn lsn_text() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        for bad in ["", "16", "/1", "1/", "123456789/0", "g/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_need_segments_on_their_timeline() {
        let r = WalRange::new(
            2,
            "0/2000028".parse().unwrap(),
            "0/4000100".parse().unwrap(),
        );
        let seg = |tl, n| {
            WalFile::Segment(WalSegment {
                timeline: tl,
                segno: n,
            })
        };
        assert!(!r.needs(&seg(2, 1), SEG));
        assert!(r.needs(&seg(2, 2), SEG));
        assert!(r.needs(&seg(2, 4), SEG));
        assert!(!r.needs(&seg(2, 5), SEG));
        assert!(!r.needs(&seg(1, 3), SEG));
        assert!(!r.needs(&WalFile::History { timeline: 2 }, SEG));
    }

    #[test]
    fn segment_sizes() {
        assert!(check_segment_size(SEG).is_ok());
        assert!(check_segment_size(1 << 20).is_ok());
        assert!(check_segment_size(1 << 30).is_ok());
        assert!(check_segment_size(1 << 19).is_err());
        assert!(check_segment_size(1 << 31).is_err());
        assert!(check_segment_size(3 << 20).is_err());
    }
}
