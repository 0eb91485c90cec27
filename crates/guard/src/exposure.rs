//! RPO exposure: the age of the oldest committed change that is not yet
//! safe in the repository.
//!
//! The refresher samples, once per cycle and in one statement,
//! `pg_current_snapshot()` and then `pg_current_wal_insert_lsn()`. A
//! sample `(t, L, S)` therefore proves: every commit record after position
//! `L` belongs to a transaction that had not completed in snapshot `S`. The
//! repository holds the WAL of a timeline up to a *safe position* `P` (the
//! end of the highest segment pushed without a gap before it).
//!
//! - The *anchor* is the newest sample with `L <= P`: everything committed
//!   up to it is safe.
//! - While no transaction has completed since the anchor's snapshot (same
//!   `xmax`, every transaction then running still running), nothing
//!   committed is at risk: exposure is 0, however far WAL moved (an idle
//!   server writes WAL without committing anything, and that must not page
//!   anyone).
//! - Otherwise the first unsafe commit happened after the last sample that
//!   still showed no completion: exposure is `now` minus that sample's time,
//!   at most one refresh interval more than the truth.
//! - A checkpoint (`pg_control_checkpoint()`, redo position, next xid, no
//!   transaction running) is an anchor from before the first sample.
//! - Without any anchor (the guard just started and nothing it saw is safe
//!   yet), exposure counts from the first sample and is flagged as a lower
//!   bound.
//!
//! Positions are compared on the sample's own timeline: its safe position
//! includes the ancestors' WAL up to each switch point.

use std::time::Duration;

use cfdr_retention::Lsn;
use serde::Serialize;

/// A transaction snapshot as `pg_current_snapshot()` prints it:
/// `xmin:xmax:xip,...` (64-bit transaction ids).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Oldest transaction still running.
    pub xmin: u64,
    /// One past the newest completed transaction.
    pub xmax: u64,
    /// Transactions running, sorted.
    pub xip: Vec<u64>,
}

impl Snapshot {
    /// Parses `pg_current_snapshot()::text`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let mut xip = rest
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<std::result::Result<Vec<u64>, _>>()
            .ok()?;
        xip.sort_unstable();
        (xmin <= xmax).then_some(Snapshot { xmin, xmax, xip })
    }

    /// A snapshot with nothing running and `next` as the next transaction.
    pub fn quiet(next: u64) -> Self {
        Snapshot {
            xmin: next,
            xmax: next,
            xip: Vec::new(),
        }
    }

    /// Whether some transaction completed (committed or aborted) between
    /// `earlier` and this snapshot.
    pub fn completed_since(&self, earlier: &Snapshot) -> bool {
        self.xmax != earlier.xmax
            || earlier
                .xip
                .iter()
                .any(|x| self.xip.binary_search(x).is_err())
    }
}

/// One observation of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken (monotonic, since the guard's start); `None` for
    /// an anchor from before the first sample (a checkpoint).
    pub at: Option<Duration>,
    /// The timeline written.
    pub timeline: u32,
    /// WAL insert position, read after the snapshot.
    pub lsn: Lsn,
    /// The transaction snapshot, read first.
    pub snapshot: Snapshot,
}

/// The measured exposure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Exposure {
    /// Age of the oldest unsafe committed change, in seconds (0 when none).
    pub seconds: f64,
    /// WAL bytes past the safe position while something committed is at
    /// risk (0 otherwise).
    pub bytes: u64,
    /// The true age may be larger: the guard has not yet seen a moment at
    /// which everything was safe.
    pub lower_bound: bool,
}

impl Exposure {
    /// The exposure as a duration.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.0))
    }
}

/// Exposure at `now` from `samples` (oldest first; anchors without a time
/// first), given the safe position of each timeline (`None` = nothing of
/// that timeline is safe).
pub fn exposure(
    samples: &[Sample],
    safe: impl Fn(u32) -> Option<Lsn>,
    now: Duration,
) -> Option<Exposure> {
    let latest = samples.iter().rev().find(|s| s.at.is_some())?;
    let is_safe = |s: &Sample| safe(s.timeline).is_some_and(|p| s.lsn <= p);
    let first_time = samples.iter().find_map(|s| s.at).unwrap_or(now);
    let bytes = safe(latest.timeline).map_or(latest.lsn.0, |p| latest.lsn.0.saturating_sub(p.0));
    let unsafe_since = |since: Duration, lower_bound: bool| Exposure {
        seconds: now.saturating_sub(since).as_secs_f64(),
        bytes,
        lower_bound,
    };
    let Some(anchor) = samples.iter().rposition(is_safe) else {
        return Some(unsafe_since(first_time, true));
    };
    let base = &samples[anchor].snapshot;
    let mut quiet_until = samples[anchor].at;
    for s in &samples[anchor + 1..] {
        if s.snapshot.completed_since(base) {
            return Some(match quiet_until {
                Some(t) => unsafe_since(t, false),
                None => unsafe_since(first_time, true),
            });
        }
        if s.at.is_some() {
            quiet_until = s.at;
        }
    }
    Some(Exposure::default())
}

/// The sample whose WAL past the safe position decides the exposure: the
/// one after the anchor when a transaction completed between the two (the
/// commit may lie on either side of the safe position `P`), or the first
/// sample when none is an anchor (the guard just started on a server that
/// wrote something after the last segment). The refresher then reads the
/// WAL between `P` and that sample's position ([`has_xact_records`]); with
/// no commit there, the sample's snapshot becomes an anchor at `P`.
pub fn ambiguous_step(samples: &[Sample], safe: impl Fn(u32) -> Option<Lsn>) -> Option<usize> {
    let is_safe = |s: &Sample| safe(s.timeline).is_some_and(|p| s.lsn <= p);
    let Some(anchor) = samples.iter().rposition(is_safe) else {
        let first = samples.iter().position(|s| s.at.is_some())?;
        return safe(samples[first].timeline).map(|_| first);
    };
    let next = samples.get(anchor + 1)?;
    (next.at.is_some()
        && next.timeline == samples[anchor].timeline
        && next.snapshot.completed_since(&samples[anchor].snapshot))
    .then_some(anchor + 1)
}

const XLOG_PAGE_MAGIC_MIN: u16 = 0xD000;
const SHORT_PAGE_HEADER: u64 = 24;
/// Size of the page header at the start of each WAL segment.
pub const LONG_PAGE_HEADER: u64 = 40;
const RECORD_HEADER: u64 = 24;
const RM_XACT_ID: u8 = 1;

/// Whether the WAL in `bytes` (which starts at `start`, a segment or page
/// boundary where a record begins) holds a transaction commit or abort
/// record that begins before `end`. `None` when the bytes do not parse as
/// WAL (the caller then assumes there is one).
pub fn has_xact_records(
    bytes: &[u8],
    start: Lsn,
    end: Lsn,
    segment_size: u64,
    page_size: u64,
) -> Option<bool> {
    let page_size = page_size.max(SHORT_PAGE_HEADER + 8);
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let header_len = |lsn: u64| -> Option<u64> {
        let off = (lsn - start.0) as usize;
        let magic = u16_at(off)?;
        if magic < XLOG_PAGE_MAGIC_MIN {
            return None;
        }
        let info = u16_at(off + 2)?;
        // XLP_LONG_HEADER marks the first page of a segment.
        Some(if info & 0x0002 != 0 {
            LONG_PAGE_HEADER
        } else {
            SHORT_PAGE_HEADER
        })
    };
    let mut pos = start.0;
    if !pos.is_multiple_of(page_size) {
        return None;
    }
    let first = header_len(pos)?;
    let rem_len = u32_at((pos - start.0) as usize + 16)?;
    if rem_len != 0 {
        // A record continues from the previous page: only page starts where
        // a record begins are supported.
        return None;
    }
    pos += first;
    while pos < end.0 {
        // Records start 8-aligned; a page boundary brings a header.
        pos = pos.div_ceil(8) * 8;
        if pos.is_multiple_of(page_size) {
            let h = header_len(pos)?;
            if pos.is_multiple_of(segment_size) && h != LONG_PAGE_HEADER {
                return None;
            }
            pos += h;
            continue;
        }
        if pos >= end.0 {
            break;
        }
        let off = (pos - start.0) as usize;
        // xl_tot_len is always on this page; the rest of the header may
        // continue on the next one, after its page header.
        let tot_len = u64::from(u32_at(off)?);
        if tot_len == 0 {
            // Zeroed space: inserted records not written to the file yet.
            return None;
        }
        if tot_len < RECORD_HEADER {
            return None;
        }
        let rmid_at = {
            let (mut p, mut left) = (pos, 17u64);
            loop {
                let room = page_size - p % page_size;
                if left < room {
                    break p + left;
                }
                left -= room;
                p += room;
                p += if p.is_multiple_of(segment_size) {
                    LONG_PAGE_HEADER
                } else {
                    SHORT_PAGE_HEADER
                };
            }
        };
        let rmid = *bytes.get((rmid_at - start.0) as usize)?;
        if rmid == RM_XACT_ID {
            return Some(true);
        }
        // Step over the record, page headers included.
        let mut left = tot_len;
        let mut p = pos;
        while left > 0 {
            let room = page_size - p % page_size;
            let take = left.min(room);
            left -= take;
            p += take;
            if left > 0 {
                // Continuation pages hold a header first.
                let h = if p.is_multiple_of(segment_size) {
                    LONG_PAGE_HEADER
                } else {
                    SHORT_PAGE_HEADER
                };
                p += h;
            }
        }
        pos = p;
        if (pos - start.0) as usize > bytes.len() {
            return None;
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MIB16: u64 = 16 * 1024 * 1024;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    fn snap(xmax: u64, xip: &[u64]) -> Snapshot {
        Snapshot {
            xmin: xip.first().copied().unwrap_or(xmax),
            xmax,
            xip: xip.to_vec(),
        }
    }

    fn sample(at: u64, lsn: u64, xmax: u64) -> Sample {
        Sample {
            at: secs(at),
            timeline: 1,
            lsn: Lsn(lsn),
            snapshot: snap(xmax, &[]),
        }
    }

    fn safe_at(p: u64) -> impl Fn(u32) -> Option<Lsn> {
        move |tl| (tl == 1).then_some(Lsn(p))
    }

    #[test]
    fn snapshots_parse() {
        let s = Snapshot::parse("741:745:742,741").unwrap();
        assert_eq!(s, snap(745, &[741, 742]));
        assert_eq!(Snapshot::parse("745:745:").unwrap(), Snapshot::quiet(745));
        assert!(Snapshot::parse("746:745:").is_none());
        assert!(Snapshot::parse("x:745:").is_none());
        // A transaction that was running completes: detected.
        assert!(snap(745, &[]).completed_since(&snap(745, &[741])));
        // A new one starts running: nothing completed.
        assert!(!snap(745, &[741, 744]).completed_since(&snap(745, &[741])));
        assert!(snap(746, &[]).completed_since(&snap(745, &[])));
    }

    #[test]
    fn idle_server_writing_wal_without_commits_has_no_exposure() {
        // Segment 1 archived; the server wrote a few records into segment 2
        // (a running-transactions record, a checkpoint) but committed nothing.
        let samples: Vec<_> = (0..600)
            .map(|t| sample(t, MIB16 + if t < 10 { 0 } else { 104 }, 745))
            .collect();
        let e = exposure(&samples, safe_at(MIB16), Duration::from_secs(600)).unwrap();
        assert_eq!(e, Exposure::default());
    }

    #[test]
    fn exposure_grows_one_second_per_second_from_the_first_unsafe_commit() {
        // Safe up to the end of segment 1; commits continue past it from t=10.
        let mut samples = vec![sample(9, MIB16 - 100, 745), sample(10, MIB16 - 50, 745)];
        for t in 11..=40 {
            samples.push(sample(t, MIB16 + (t - 10) * 1000, 745 + t));
        }
        for now in [11, 20, 40] {
            let e = exposure(&samples, safe_at(MIB16), Duration::from_secs(now)).unwrap();
            assert_eq!(e.seconds, (now - 10) as f64, "now {now}");
            assert!(!e.lower_bound);
        }
        let e = exposure(&samples, safe_at(MIB16), Duration::from_secs(40)).unwrap();
        assert_eq!(e.bytes, 30_000);
        // Segment 2 arrives: safe again.
        let e = exposure(&samples, safe_at(2 * MIB16), Duration::from_secs(41)).unwrap();
        assert_eq!(e, Exposure::default());
    }

    #[test]
    fn no_anchor_counts_from_the_first_sample_as_a_lower_bound() {
        let samples = vec![sample(5, MIB16 + 10, 745), sample(6, MIB16 + 20, 746)];
        let e = exposure(&samples, safe_at(MIB16), Duration::from_secs(9)).unwrap();
        assert_eq!(e.seconds, 4.0);
        assert!(e.lower_bound);
        let e = exposure(&samples, |_| None, Duration::from_secs(9)).unwrap();
        assert_eq!(e.bytes, MIB16 + 20);
        assert!(exposure(&[], |_| None, Duration::ZERO).is_none());
    }

    #[test]
    fn a_quiet_checkpoint_anchors_before_the_first_sample() {
        let ckpt = Sample {
            at: None,
            timeline: 1,
            lsn: Lsn(MIB16 - 4096),
            snapshot: Snapshot::quiet(745),
        };
        let mut samples = vec![ckpt.clone(), sample(3, MIB16 + 200, 745)];
        let e = exposure(&samples, safe_at(MIB16), Duration::from_secs(9)).unwrap();
        assert_eq!(e, Exposure::default());
        // Something completed before the first sample: unknown start.
        samples[1].snapshot = Snapshot::quiet(746);
        let e = exposure(&samples, safe_at(MIB16), Duration::from_secs(9)).unwrap();
        assert!(e.lower_bound && e.seconds == 6.0, "{e:?}");
        // Completed after the first sample: exact.
        samples[1].snapshot = Snapshot::quiet(745);
        samples.push(sample(4, MIB16 + 300, 746));
        let e = exposure(&samples, safe_at(MIB16), Duration::from_secs(9)).unwrap();
        assert!(!e.lower_bound && e.seconds == 6.0, "{e:?}");
    }

    #[test]
    fn a_transaction_running_at_the_anchor_that_commits_later_counts() {
        let mut a = sample(1, MIB16 - 10, 745);
        a.snapshot = snap(745, &[744]);
        let mut b = sample(2, MIB16 + 10, 745);
        b.snapshot = snap(745, &[744]);
        let c = sample(3, MIB16 + 20, 745); // 744 committed: xmax unchanged
        let samples = vec![a, b, c];
        let e = exposure(&samples, safe_at(MIB16), Duration::from_secs(5)).unwrap();
        assert_eq!(e.seconds, 3.0);
    }

    #[test]
    fn timelines_use_their_own_safe_positions() {
        // Timeline 1 safe to segment 3; the server now writes timeline 2,
        // whose WAL is safe only to its switch point.
        let mut samples = vec![sample(1, 3 * MIB16 - 10, 745)];
        let mut on2 = sample(2, 3 * MIB16 + 100, 746);
        on2.timeline = 2;
        samples.push(on2);
        let safe = |tl: u32| match tl {
            1 => Some(Lsn(3 * MIB16)),
            2 => Some(Lsn(3 * MIB16 - 5)),
            _ => None,
        };
        let e = exposure(&samples, safe, Duration::from_secs(4)).unwrap();
        assert_eq!(e.seconds, 3.0);
        assert_eq!(e.bytes, 105);
        // Timeline 2's first segment arrives.
        let safe2 = |tl: u32| (tl <= 2).then_some(Lsn(4 * MIB16));
        assert_eq!(
            exposure(&samples, safe2, Duration::from_secs(4)).unwrap(),
            Exposure::default()
        );
    }

    #[test]
    fn ambiguous_steps_are_found() {
        let samples = vec![sample(1, MIB16 - 10, 745), sample(2, MIB16 + 40, 746)];
        assert_eq!(ambiguous_step(&samples, safe_at(MIB16)), Some(1));
        let samples = vec![sample(1, MIB16 - 10, 745), sample(2, MIB16 + 40, 745)];
        assert_eq!(ambiguous_step(&samples, safe_at(MIB16)), None);
        // No anchor yet: the first sample's WAL decides.
        let samples = vec![sample(1, MIB16 + 10, 745), sample(2, MIB16 + 40, 746)];
        assert_eq!(ambiguous_step(&samples, safe_at(MIB16)), Some(0));
        assert_eq!(ambiguous_step(&samples, |_| None), None);
    }

    /// Builds WAL pages holding records `(rmid, total length)` from `start`.
    fn wal(start: u64, records: &[(u8, u32)], page: u64, seg: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = start;
        let header = |out: &mut Vec<u8>, pos: u64, rem: u32| {
            let long = pos.is_multiple_of(seg);
            out.extend_from_slice(&0xD110u16.to_le_bytes());
            out.extend_from_slice(
                &(if long { 2u16 } else { 0 } | if rem > 0 { 1 } else { 0 }).to_le_bytes(),
            );
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&pos.to_le_bytes());
            out.extend_from_slice(&rem.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            if long {
                out.extend_from_slice(&[0; 16]);
            }
            if long {
                LONG_PAGE_HEADER
            } else {
                SHORT_PAGE_HEADER
            }
        };
        pos += header(&mut out, pos, 0);
        for &(rmid, len) in records {
            while !pos.is_multiple_of(8) {
                out.push(0);
                pos += 1;
            }
            if pos.is_multiple_of(page) {
                pos += header(&mut out, pos, 0);
            }
            let mut rec = vec![0u8; len as usize];
            rec[..4].copy_from_slice(&len.to_le_bytes());
            rec[17] = rmid;
            let mut left = &rec[..];
            while !left.is_empty() {
                let room = (page - pos % page) as usize;
                let take = left.len().min(room);
                out.extend_from_slice(&left[..take]);
                pos += take as u64;
                left = &left[take..];
                if !left.is_empty() {
                    pos += header(&mut out, pos, left.len() as u32);
                }
            }
        }
        out.resize(out.len() + 64, 0);
        out
    }

    #[test]
    fn xact_records_are_found_in_wal_pages() {
        for (page, seg) in [
            (8192u64, MIB16),
            (8192, 1024 * 1024),
            (32768, 64 * 1024 * 1024),
        ] {
            let start = 5 * seg;
            // A running-transactions record (rmid 8) only.
            let bytes = wal(start, &[(8, 50)], page, seg);
            let end = Lsn(start + bytes.len() as u64 - 64);
            assert_eq!(
                has_xact_records(&bytes, Lsn(start), end, seg, page),
                Some(false)
            );
            // Records across a page boundary, then a commit.
            let recs = [(10u8, 3000u32), (10, 7000), (9, 100), (RM_XACT_ID, 40)];
            let bytes = wal(start, &recs, page, seg);
            let end = Lsn(start + bytes.len() as u64 - 64);
            assert_eq!(
                has_xact_records(&bytes, Lsn(start), end, seg, page),
                Some(true)
            );
            // The commit lies past `end`: not counted.
            let before_commit = Lsn(start + 10_000);
            assert_eq!(
                has_xact_records(&bytes, Lsn(start), before_commit, seg, page),
                Some(false)
            );
            // A record header split across a page boundary (8 bytes left).
            let first_len = (page - LONG_PAGE_HEADER - 8) as u32;
            for (rmid, want) in [(RM_XACT_ID, true), (8, false)] {
                let bytes = wal(start, &[(10, first_len), (rmid, 60)], page, seg);
                let end = Lsn(start + bytes.len() as u64 - 64);
                assert_eq!(
                    has_xact_records(&bytes, Lsn(start), end, seg, page),
                    Some(want),
                    "rmid {rmid}"
                );
            }
            // Garbage is not WAL.
            assert_eq!(
                has_xact_records(&[7u8; 100], Lsn(start), end, seg, page),
                None
            );
        }
    }
}
