//! WAL continuity: is every segment from a start point to the newest pushed
//! one in the archive, following the timeline history?

use std::collections::{BTreeMap, BTreeSet};

use cfdr_retention::{Lsn, WalFile, WalItem, WalSegment};
use serde::Serialize;

/// One timeline's stretch of the path from the start segment to the newest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TimelineSpan {
    /// The timeline.
    pub timeline: u32,
    /// First segment recovery reads on it.
    pub first: String,
    /// Last segment recovery reads on it (the newest pushed on the last timeline).
    pub last: String,
    /// Segments that are needed and missing, as inclusive ranges of names.
    pub gaps: Vec<(String, String)>,
}

/// What [`check_continuity`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ContinuityReport {
    /// The segment checked from.
    pub start: String,
    /// The newest segment in the archive on the newest timeline.
    pub newest: Option<String>,
    /// Spans per timeline, oldest first.
    pub timelines: Vec<TimelineSpan>,
    /// Problems beyond gaps (unreachable start, missing history file).
    pub problems: Vec<String>,
}

impl ContinuityReport {
    /// True when nothing is missing.
    pub fn is_continuous(&self) -> bool {
        self.problems.is_empty() && self.timelines.iter().all(|t| t.gaps.is_empty())
    }

    /// Number of missing segments.
    pub fn missing_segments(&self) -> usize {
        self.timelines.iter().map(|t| t.gaps.len()).sum()
    }
}

impl std::fmt::Display for ContinuityReport {
    /// One line per timeline, `MISSING a .. b` per gap, `PROBLEM ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let newest = self.newest.as_deref().unwrap_or("-");
        writeln!(f, "from {} to {newest}", self.start)?;
        for t in &self.timelines {
            let (first, last, n) = (&t.first, &t.last, t.gaps.len());
            writeln!(f, "timeline {}: {first} .. {last}, {n} gap(s)", t.timeline)?;
            for (a, b) in &t.gaps {
                match a == b {
                    true => writeln!(f, "  MISSING {a}")?,
                    false => writeln!(f, "  MISSING {a} .. {b}")?,
                }
            }
        }
        for p in &self.problems {
            writeln!(f, "PROBLEM {p}")?;
        }
        Ok(())
    }
}

/// Parses a timeline history file: each line `parent-tli  switch-lsn  reason`
/// says where an ancestor timeline ended. Returns `(timeline, end LSN)`,
/// oldest first.
pub fn parse_history(text: &str) -> Vec<(u32, Lsn)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let tli = f.next()?.parse().ok()?;
            let lsn = f.next()?.parse().ok()?;
            Some((tli, lsn))
        })
        .collect()
}

/// Checks that the archive holds every segment recovery needs from `start`
/// to the newest segment of the newest timeline. `items` is the archive
/// listing; `histories` maps a timeline to its history file's text.
///
/// The path follows the newest timeline's history: on an ancestor the span
/// ends before the segment holding the switch point (the child timeline
/// has its own copy of that segment; either copy counts).
pub fn check_continuity(
    items: &[WalItem],
    histories: &BTreeMap<u32, String>,
    start: WalSegment,
    segment_size: u64,
) -> ContinuityReport {
    let mut present: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for item in items {
        if let WalFile::Segment(s) = item.file {
            present.entry(s.timeline).or_default().insert(s.segno);
        }
    }
    let name = |timeline, segno| WalSegment { timeline, segno }.file_name(segment_size);
    let mut report = ContinuityReport {
        start: name(start.timeline, start.segno),
        newest: None,
        timelines: Vec::new(),
        problems: Vec::new(),
    };
    let newest_tli = present
        .keys()
        .chain(histories.keys())
        .copied()
        .filter(|t| *t >= start.timeline)
        .max()
        .unwrap_or(start.timeline);
    // The path: ancestors of the newest timeline with their end points.
    let mut path: Vec<(u32, Option<Lsn>)> = match histories.get(&newest_tli) {
        Some(text) => parse_history(text)
            .into_iter()
            .map(|(t, end)| (t, Some(end)))
            .collect(),
        None if newest_tli > 1 && newest_tli != start.timeline => {
            report.problems.push(format!(
                "history file {newest_tli:08X}.history is missing: cannot tell how timeline {newest_tli} follows {}",
                start.timeline
            ));
            Vec::new()
        }
        None => Vec::new(),
    };
    path.push((newest_tli, None));
    let Some(from) = path.iter().position(|(t, _)| *t == start.timeline) else {
        report.problems.push(format!(
            "timeline {} of the start segment is not an ancestor of the newest timeline {newest_tli}",
            start.timeline
        ));
        return report;
    };
    let newest_segno = present
        .get(&newest_tli)
        .and_then(|s| s.iter().next_back().copied());
    report.newest = newest_segno.map(|n| name(newest_tli, n));
    let mut lo = start.segno;
    for (i, (tli, end)) in path.iter().enumerate().skip(from) {
        let hi = match end {
            // Up to the segment before the one holding the switch point.
            Some(end) => (end.0 / segment_size).checked_sub(1),
            None => newest_segno,
        };
        let Some(hi) = hi.filter(|h| *h >= lo) else {
            // Nothing needed from this timeline (switch inside the first segment).
            if let Some(end) = end {
                lo = lo.max(end.0 / segment_size);
            }
            continue;
        };
        let here = present.get(tli);
        let child = path.get(i + 1).and_then(|(c, _)| present.get(c));
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        for segno in lo..=hi {
            let has = here.is_some_and(|s| s.contains(&segno))
                || (i + 1 < path.len() && segno == hi && child.is_some_and(|s| s.contains(&segno)));
            if has {
                continue;
            }
            match gaps.last_mut() {
                Some((_, last)) if *last + 1 == segno => *last = segno,
                _ => gaps.push((segno, segno)),
            }
        }
        report.timelines.push(TimelineSpan {
            timeline: *tli,
            first: name(*tli, lo),
            last: name(*tli, hi),
            gaps: gaps
                .into_iter()
                .map(|(a, b)| (name(*tli, a), name(*tli, b)))
                .collect(),
        });
        if let Some(end) = end {
            lo = end.0 / segment_size;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SEG: u64 = cfdr_retention::DEFAULT_SEGMENT_SIZE;

    fn items(names: &[&str]) -> Vec<WalItem> {
        names
            .iter()
            .map(|n| WalItem::parse(n, 1, SEG).unwrap())
            .collect()
    }

    fn seg(t: u32, n: u64) -> WalSegment {
        WalSegment {
            timeline: t,
            segno: n,
        }
    }

    #[test]
    fn a_deleted_segment_is_a_gap() {
        let all = items(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000005",
            "000000010000000000000006",
        ]);
        let r = check_continuity(&all, &BTreeMap::new(), seg(1, 2), SEG);
        assert!(!r.is_continuous());
        assert_eq!(r.newest.as_deref(), Some("000000010000000000000006"));
        assert_eq!(
            r.timelines[0].gaps,
            vec![(
                "000000010000000000000004".to_owned(),
                "000000010000000000000004".to_owned()
            )]
        );
        let r = check_continuity(&all, &BTreeMap::new(), seg(1, 5), SEG);
        assert!(r.is_continuous(), "{r:?}");
    }

    #[test]
    fn follows_the_newest_timeline_history() {
        // Timeline 2 branched from 1 at 0/5000100: segment 5 exists on 2.
        let all = items(&[
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000005",
            "000000010000000000000006",
            "000000020000000000000005",
            "000000020000000000000006",
            "000000020000000000000007",
        ]);
        let mut h = BTreeMap::new();
        h.insert(2, "1\t0/5000100\tno recovery target specified\n".to_owned());
        let r = check_continuity(&all, &h, seg(1, 3), SEG);
        assert!(r.is_continuous(), "{r:?}");
        assert_eq!(r.timelines.len(), 2);
        assert_eq!(r.timelines[0].last, "000000010000000000000004");
        assert_eq!(r.timelines[1].first, "000000020000000000000005");
        assert_eq!(r.newest.as_deref(), Some("000000020000000000000007"));
        // Without timeline 2's segment 6 there is a gap on timeline 2 even
        // though timeline 1 has a segment 6 (it is another history).
        let fewer: Vec<WalItem> = all
            .iter()
            .filter(|i| i.name != "000000020000000000000006")
            .cloned()
            .collect();
        let r = check_continuity(&fewer, &h, seg(1, 3), SEG);
        assert_eq!(r.missing_segments(), 1);
        assert_eq!(r.timelines[1].gaps[0].0, "000000020000000000000006");
        // A missing history file is reported, not guessed.
        let r = check_continuity(&all, &BTreeMap::new(), seg(1, 3), SEG);
        assert!(!r.is_continuous());
        assert!(r.problems[0].contains("00000002.history"), "{r:?}");
    }
}
