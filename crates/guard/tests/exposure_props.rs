//! The exposure math against a simulated server: commits and other WAL
//! records written over time, segments switched and archived at random
//! moments, for several WAL segment sizes.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cfdr_guard::exposure::{Sample, Snapshot, ambiguous_step, exposure};
use cfdr_retention::Lsn;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Ev {
    /// A transaction commits, writing this many bytes of WAL.
    Commit(u64),
    /// WAL without a commit (vacuum, checkpoints, running transactions).
    Other(u64),
    /// `pg_switch_wal()` or `archive_timeout`.
    Switch,
    /// The archiver pushes every completed segment.
    Archive,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => (1u64..200_000).prop_map(Ev::Commit),
        2 => (1u64..5_000).prop_map(Ev::Other),
        1 => Just(Ev::Switch),
        2 => Just(Ev::Archive),
    ]
}

struct Server {
    seg: u64,
    lsn: u64,
    xmax: u64,
    /// Commit end positions and times.
    commits: Vec<(u64, u64)>,
    /// Safe position (segment boundary).
    safe: u64,
}

impl Server {
    fn apply(&mut self, e: &Ev, t: u64) {
        match e {
            Ev::Commit(n) => {
                self.lsn += n;
                self.xmax += 1;
                self.commits.push((self.lsn, t));
            }
            Ev::Other(n) => self.lsn += n,
            Ev::Switch => {
                if !self.lsn.is_multiple_of(self.seg) {
                    self.lsn = (self.lsn / self.seg + 1) * self.seg;
                }
            }
            Ev::Archive => self.safe = self.lsn / self.seg * self.seg,
        }
    }

    /// Age at `now` of the oldest commit past the safe position.
    fn truth(&self, now: u64) -> u64 {
        self.commits
            .iter()
            .find(|(end, _)| *end > self.safe)
            .map_or(0, |(_, t)| now - t)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn never_under_reports_and_is_within_one_interval(
        seg_pow in prop::sample::select(vec![20u32, 24, 26, 30]),
        start_seg in 1u64..5000,
        before in prop::collection::vec(ev(), 0..6),
        steps in prop::collection::vec(prop::collection::vec(ev(), 0..4), 1..80),
    ) {
        let seg = 1u64 << seg_pow;
        let mut s = Server {
            seg,
            lsn: start_seg * seg,
            xmax: 1000,
            commits: Vec::new(),
            safe: start_seg * seg,
        };
        // What happened before the guard started (at time 0).
        for e in &before {
            s.apply(e, 0);
        }
        let mut samples = Vec::new();
        for (t, events) in steps.iter().enumerate() {
            let t = t as u64;
            // A sample at the start of each second, then that second's events.
            samples.push(Sample {
                at: Some(Duration::from_secs(t)),
                timeline: 1,
                lsn: Lsn(s.lsn),
                snapshot: Snapshot::quiet(s.xmax),
            });
            let safe = s.safe;
            // As the refresher does: an ambiguous step whose WAL past the
            // safe position holds no commit becomes an anchor there.
            if let Some(i) = ambiguous_step(&samples, |_| Some(Lsn(safe))) {
                let l = samples[i].lsn.0;
                if !s.commits.iter().any(|(end, _)| *end > safe && *end <= l) {
                    let anchor = Sample { lsn: Lsn(safe), ..samples[i].clone() };
                    samples.insert(i + 1, anchor);
                }
            }
            let got = exposure(&samples, |_| Some(Lsn(safe)), Duration::from_secs(t)).unwrap();
            let truth = s.truth(t) as f64;
            prop_assert!(got.seconds >= truth, "under-reported: {got:?} < {truth} at {t}");
            if truth > 0.0 {
                prop_assert!(got.seconds <= truth + 1.0, "{got:?} vs {truth} at {t}");
            } else {
                prop_assert_eq!(got.seconds, 0.0, "false alarm at {}", t);
            }
            for e in events {
                s.apply(e, t);
            }
        }
    }
}

#[test]
fn segment_boundaries_are_exact() {
    for seg in [1u64 << 20, 16 << 20, 64 << 20, 1 << 30] {
        // The last byte of a segment is safe once it is pushed; one byte
        // more is not.
        let p = 7 * seg;
        let at = |s: u64| Some(Duration::from_secs(s));
        let samples = vec![
            Sample {
                at: at(0),
                timeline: 1,
                lsn: Lsn(p),
                snapshot: Snapshot::quiet(10),
            },
            Sample {
                at: at(1),
                timeline: 1,
                lsn: Lsn(p + 1),
                snapshot: Snapshot::quiet(11),
            },
        ];
        let e = exposure(&samples, |_| Some(Lsn(p)), Duration::from_secs(3)).unwrap();
        assert_eq!((e.seconds, e.bytes), (3.0, 1), "segment size {seg}");
        let e = exposure(&samples, |_| Some(Lsn(p + seg)), Duration::from_secs(3)).unwrap();
        assert_eq!(e.seconds, 0.0);
    }
}
