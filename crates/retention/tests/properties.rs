//! Property tests of the invariants every plan must keep.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use cfdr_retention::{
    CalendarDuration, Config, Count, DEFAULT_SEGMENT_SIZE, Decision, Item, Kind, Lsn, Period, Plan,
    Policy, Reason, WalFile, WalItem, WalRange, WalSegment, plan,
};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use proptest::prelude::*;

const SEG: u64 = DEFAULT_SEGMENT_SIZE;
const ZONES: [&str; 5] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
];

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Instants where buckets are easy to get wrong: DST changes (whole-hour
/// and Lord Howe's half-hour) and ISO week-53 year ends.
fn interesting() -> Vec<Timestamp> {
    [
        "2025-03-09T07:00:00Z", // New York springs forward
        "2025-11-02T06:00:00Z", // New York falls back
        "2025-03-30T01:00:00Z", // Berlin springs forward
        "2025-10-26T01:00:00Z", // Berlin falls back
        "2025-04-05T15:00:00Z", // Lord Howe falls back 30 minutes
        "2025-10-04T15:30:00Z", // Lord Howe springs forward 30 minutes
        "2020-12-31T12:00:00Z", // 2020 has ISO week 53
        "2026-12-31T12:00:00Z", // 2026 has ISO week 53
        "2016-01-02T12:00:00Z", // 2015-W53 ends on 2016-01-03
        "2025-06-15T12:00:00Z", // nothing special
    ]
    .iter()
    .map(|s| ts(s))
    .collect()
}

fn now() -> Timestamp {
    ts("2027-01-10T00:00:00Z")
}

/// A time: near an interesting instant (minutes, ±3 days), or anywhere in
/// 2020..2027 (hours), sometimes just after `now`.
fn time() -> impl Strategy<Value = Timestamp> {
    let anchors = interesting();
    prop_oneof![
        6 => (0..anchors.len(), -4320i64..4320).prop_map(move |(a, m)| anchors[a] + SignedDuration::from_mins(m)),
        3 => (0i64..(7 * 365 * 24)).prop_map(|h| ts("2020-01-01T00:00:00Z") + SignedDuration::from_hours(h)),
        1 => (1i64..(10 * 24)).prop_map(|h| now() + SignedDuration::from_hours(h)),
    ]
}

#[derive(Debug, Clone)]
struct Raw {
    time: Timestamp,
    kind: Kind,
    class: &'static str,
    complete: bool,
    pinned: bool,
    tags: Vec<&'static str>,
    size: u64,
}

fn raw() -> impl Strategy<Value = Raw> {
    (
        time(),
        prop::sample::select(vec![Kind::Logical, Kind::Physical, Kind::Logs]),
        prop::sample::select(vec!["hourly", "daily", "archive", "manual"]),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.1),
        prop::sample::subsequence(vec!["a", "b"], 0..=2),
        0u64..1000,
    )
        .prop_map(|(time, kind, class, complete, pinned, tags, size)| Raw {
            time,
            kind,
            class,
            complete,
            pinned,
            tags,
            size,
        })
}

/// Items with unique ids; some share a time (ties are broken by id).
fn items(max: usize) -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec((raw(), prop::bool::weighted(0.1)), 0..max).prop_map(|raws| {
        let mut out: Vec<Item> = Vec::new();
        for (i, (r, dup)) in raws.into_iter().enumerate() {
            let time = match (dup, out.last()) {
                (true, Some(prev)) => prev.time,
                _ => r.time,
            };
            let mut it = Item::new(format!("i{i:03}"), time, r.kind)
                .class(r.class)
                .size(r.size);
            it.complete = r.complete;
            it.pinned = r.pinned;
            for t in r.tags {
                it = it.tag(t);
            }
            if r.kind == Kind::Physical && r.complete {
                let start = Lsn(u64::try_from(i).unwrap() * SEG + 40);
                it = it.wal(WalRange::new(1, start, Lsn(start.0 + 100)));
            }
            out.push(it);
        }
        out
    })
}

fn count() -> impl Strategy<Value = Count> {
    prop_oneof![
        4 => Just(Count::Limited(0)),
        4 => (1u32..6).prop_map(Count::Limited),
        1 => Just(Count::Unlimited),
    ]
}

fn duration() -> impl Strategy<Value = CalendarDuration> {
    prop_oneof![
        4 => Just(CalendarDuration::ZERO),
        1 => (0u32..2, 0u32..4, 0u32..3, 0u32..10, 0u32..30).prop_map(|(years, months, weeks, days, hours)| {
            CalendarDuration { years, months, weeks, days, hours }
        }),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::collection::vec(count(), 6),
        prop::collection::vec(duration(), 6),
        prop::sample::select(vec![
            vec![],
            vec![],
            vec!["a".to_owned()],
            vec!["a,b".to_owned()],
            vec![String::new()],
        ]),
    )
        .prop_map(|(c, d, keep_tag)| Policy {
            keep_last: c[0],
            keep_hourly: c[1],
            keep_daily: c[2],
            keep_weekly: c[3],
            keep_monthly: c[4],
            keep_yearly: c[5],
            keep_within: d[0],
            keep_within_hourly: d[1],
            keep_within_daily: d[2],
            keep_within_weekly: d[3],
            keep_within_monthly: d[4],
            keep_within_yearly: d[5],
            keep_tag,
        })
}

fn config() -> impl Strategy<Value = Config> {
    (policy(), prop::sample::select(ZONES.to_vec())).prop_map(|(p, zone)| {
        let mut c = Config::with_policy(p);
        c.time_zone = zone.to_owned();
        c
    })
}

fn kept_ids(p: &Plan) -> BTreeSet<String> {
    p.kept().map(str::to_owned).collect()
}

fn kept_items(items: &[Item], p: &Plan) -> Vec<Item> {
    let keep = kept_ids(p);
    items
        .iter()
        .filter(|i| keep.contains(&i.id))
        .cloned()
        .collect()
}

/// Newest first, greater id first on ties (the engine's documented order).
fn newest_first(items: &[Item]) -> Vec<&Item> {
    let mut v: Vec<&Item> = items.iter().collect();
    v.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    v
}

/// A bucket label computed with jiff's formatter, independently of the
/// engine's own keys.
fn label(period: Period, t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    let fmt = match period {
        Period::Hourly => "%Y-%m-%dT%H %:z",
        Period::Daily => "%Y-%m-%d",
        Period::Weekly => "%G-W%V",
        Period::Monthly => "%Y-%m",
        Period::Yearly => "%Y",
    };
    z.strftime(fmt).to_string()
}

fn periodic(d: &Decision) -> impl Iterator<Item = (Period, bool)> + '_ {
    d.reasons.iter().filter_map(|r| match r {
        Reason::Periodic { period, oldest } => Some((*period, *oldest)),
        _ => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every item gets exactly one decision with at least one reason, and
    /// keep agrees with the reasons.
    #[test]
    fn partition_and_reasons(items in items(40), config in config()) {
        let p = plan(&items, &[], &config, now()).unwrap();
        let input: BTreeSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let output: BTreeSet<&str> = p.decisions.iter().map(|d| d.id.as_str()).collect();
        prop_assert_eq!(p.decisions.len(), items.len());
        prop_assert_eq!(input, output);
        for d in &p.decisions {
            prop_assert!(!d.reasons.is_empty());
            prop_assert_eq!(d.keep, d.reasons.iter().any(Reason::keeps));
            prop_assert!(!d.keep || d.reasons.iter().all(Reason::keeps));
        }
    }

    /// The newest complete backup of every kind and class, pinned items,
    /// future items and incomplete items inside the grace period are kept.
    #[test]
    fn safety_rules_hold(items in items(40), config in config()) {
        let p = plan(&items, &[], &config, now()).unwrap();
        let keep = kept_ids(&p);
        let mut newest: BTreeMap<(Kind, &str), &Item> = BTreeMap::new();
        for it in newest_first(&items) {
            if it.complete && it.time <= now() {
                newest.entry((it.kind, it.class.as_str())).or_insert(it);
            }
        }
        for it in newest.values() {
            prop_assert!(keep.contains(&it.id), "newest complete {} deleted", it.id);
        }
        let grace = config.incomplete_grace.before(now(), &config.zone().unwrap());
        for it in &items {
            if it.pinned || it.time > now() || (!it.complete && it.time > grace) {
                prop_assert!(keep.contains(&it.id), "{} must be kept", it.id);
            }
        }
    }

    /// An empty policy deletes nothing but expired incomplete backups.
    #[test]
    fn empty_policy_keeps_everything(items in items(40), zone in prop::sample::select(ZONES.to_vec())) {
        let mut config = Config::with_policy(Policy::default());
        config.time_zone = zone.to_owned();
        let p = plan(&items, &[], &config, now()).unwrap();
        for d in &p.decisions {
            prop_assert!(d.keep || d.reasons == [Reason::IncompleteExpired]);
        }
        let complete_past = items.iter().any(|i| i.complete && i.time <= now());
        prop_assert_eq!(p.notes.iter().any(|n| n.to_string().contains("is empty")), complete_past);
    }

    /// Pruning what a plan keeps deletes nothing more (prune twice = once).
    #[test]
    fn idempotent(items in items(40), config in config()) {
        let first = plan(&items, &[], &config, now()).unwrap();
        let kept = kept_items(&items, &first);
        let second = plan(&kept, &[], &config, now()).unwrap();
        prop_assert_eq!(second.deleted().count(), 0, "{}", second);
    }

    /// The plan does not depend on the order of the input.
    #[test]
    fn deterministic_under_shuffle(
        (items, shuffled) in items(40).prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        config in config(),
    ) {
        let a = plan(&items, &[], &config, now()).unwrap();
        let b = plan(&shuffled, &[], &config, now()).unwrap();
        prop_assert_eq!(a, b);
    }

    /// `now` only matters for future and incomplete items.
    #[test]
    fn independent_of_now_for_past_complete_items(items in items(30), config in config(), later in 0i64..100_000) {
        let past: Vec<Item> = items.into_iter().filter(|i| i.complete && i.time <= now()).collect();
        let a = plan(&past, &[], &config, now()).unwrap();
        let b = plan(&past, &[], &config, now() + SignedDuration::from_hours(later)).unwrap();
        prop_assert_eq!(a.decisions, b.decisions);
    }

    /// Raising any count or window of a non-empty policy never deletes
    /// more, neither backups nor WAL.
    #[test]
    fn monotone(
        items in items(40),
        config in config(),
        rule in 0usize..12,
        more in 1u32..5,
        unlimited in prop::bool::weighted(0.2),
    ) {
        prop_assume!(!config.classes.database.is_empty());
        let mut raised = config.clone();
        for class in cfdr_retention::DataClass::ALL {
            let p = raised.classes.get_mut(class);
            let bump = |c: &mut Count| {
                *c = match (*c, unlimited) {
                    (_, true) | (Count::Unlimited, _) => Count::Unlimited,
                    (Count::Limited(n), false) => Count::Limited(n + more),
                };
            };
            match rule {
                0 => bump(&mut p.keep_last),
                1..=5 => bump(p.count_mut(Period::ALL[rule - 1])),
                6 => p.keep_within.days += more,
                _ => p.within_mut(Period::ALL[rule - 7]).months += more,
            }
        }
        let wal: Vec<WalItem> =
            (0..45).map(|n| WalItem::new(WalFile::Segment(WalSegment { timeline: 1, segno: n }), 1, SEG)).collect();
        let before = plan(&items, &wal, &config, now()).unwrap();
        let after = plan(&items, &wal, &raised, now()).unwrap();
        let (kb, ka) = (kept_ids(&before), kept_ids(&after));
        prop_assert!(kb.is_subset(&ka), "lost {:?}", kb.difference(&ka).collect::<Vec<_>>());
        let wb: BTreeSet<&str> = before.wal.iter().filter(|d| d.keep).map(|d| d.name.as_str()).collect();
        let wa: BTreeSet<&str> = after.wal.iter().filter(|d| d.keep).map(|d| d.name.as_str()).collect();
        prop_assert!(wb.is_subset(&wa));
    }

    /// A count rule keeps at most one item per bucket (besides restic's
    /// "oldest" extra), always the newest of its bucket in its group, and
    /// never more buckets than its count; buckets are checked against
    /// jiff's own formatting of hours, days, ISO weeks, months and years in
    /// the configured zone (DST days, half-hour shifts, week 53).
    #[test]
    fn buckets_are_correct(items in items(40), config in config()) {
        let p = plan(&items, &[], &config, now()).unwrap();
        let tz = config.zone().unwrap();
        let by_id: BTreeMap<&str, &Item> = items.iter().map(|i| (i.id.as_str(), i)).collect();
        // The group members as the engine counts them, newest first.
        let mut groups: BTreeMap<_, Vec<&Item>> = BTreeMap::new();
        for it in newest_first(&items) {
            if it.complete && it.time <= now() {
                groups.entry((it.kind, config.data_class(it.kind, &it.class))).or_default().push(it);
            }
        }
        for ((kind, class), members) in &groups {
            let policy = config.classes.get(*class);
            for period in Period::ALL {
                let mut seen = BTreeSet::new();
                let kept: Vec<&Decision> = p
                    .decisions
                    .iter()
                    .filter(|d| d.kind == *kind && d.data_class == *class)
                    .filter(|d| periodic(d).any(|(q, oldest)| q == period && !oldest))
                    .collect();
                for d in &kept {
                    let it = by_id[d.id.as_str()];
                    let l = label(period, it.time, &tz);
                    prop_assert!(seen.insert(l.clone()), "two {} items in bucket {}", period, l);
                    let newest = members.iter().find(|m| label(period, m.time, &tz) == l).unwrap();
                    prop_assert_eq!(&newest.id, &it.id, "not the newest of {}", l);
                }
                if let Count::Limited(n) = policy.count(period) {
                    let with_oldest = p.decisions.iter()
                        .filter(|d| d.kind == *kind && d.data_class == *class)
                        .filter(|d| periodic(d).any(|(q, _)| q == period))
                        .count();
                    prop_assert!(with_oldest <= n as usize);
                }
            }
        }
    }

    /// restic's bound: with only finite count rules, a group keeps at most
    /// the sum of the counts, plus the newest item of each further class.
    #[test]
    fn kept_is_bounded_by_counts(items in items(40), counts in prop::collection::vec(0u32..5, 6)) {
        let policy = Policy {
            keep_last: counts[0].into(),
            keep_hourly: counts[1].into(),
            keep_daily: counts[2].into(),
            keep_weekly: counts[3].into(),
            keep_monthly: counts[4].into(),
            keep_yearly: counts[5].into(),
            ..Policy::default()
        };
        prop_assume!(!policy.is_empty());
        let items: Vec<Item> = items.into_iter().filter(|i| i.complete && !i.pinned && i.time <= now()).collect();
        let p = plan(&items, &[], &Config::with_policy(policy), now()).unwrap();
        let sum: usize = counts.iter().map(|c| *c as usize).sum();
        let mut groups: BTreeMap<_, (usize, BTreeSet<&str>)> = BTreeMap::new();
        for d in &p.decisions {
            let g = groups.entry((d.kind, d.data_class)).or_default();
            g.1.insert(d.class.as_str());
            if d.keep {
                g.0 += 1;
            }
        }
        for (kept, classes) in groups.values() {
            prop_assert!(*kept < sum + classes.len(), "kept {} > {} + {} - 1", kept, sum, classes.len());
        }
    }

    /// Adding items of another kind never changes the decisions about the
    /// first kind's items.
    #[test]
    fn groups_are_isolated(items in items(30), other in items(30), config in config()) {
        let mine: Vec<Item> = items.into_iter().filter(|i| i.kind == Kind::Logical).collect();
        let theirs: Vec<Item> = other
            .into_iter()
            .filter(|i| i.kind != Kind::Logical)
            .map(|mut i| { i.id = format!("o{}", i.id); i })
            .collect();
        let alone = plan(&mine, &[], &config, now()).unwrap();
        let both: Vec<Item> = mine.iter().cloned().chain(theirs).collect();
        let mixed = plan(&both, &[], &config, now()).unwrap();
        let mixed_mine: Vec<&Decision> = mixed.decisions.iter().filter(|d| d.kind == Kind::Logical).collect();
        prop_assert_eq!(alone.decisions.iter().collect::<Vec<_>>(), mixed_mine);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `keep-within D` keeps exactly the items strictly newer than the
    /// group's newest item minus D (calendar arithmetic in the zone): an
    /// item exactly at the cutoff goes, one a second later stays.
    #[test]
    fn within_window_is_exact(
        items in items(20),
        zone in prop::sample::select(ZONES.to_vec()),
        (years, months, days, hours) in (0i64..3, 0i64..13, 0i64..40, 0i64..48),
    ) {
        prop_assume!(years + months + days + hours > 0);
        let d = CalendarDuration {
            years: u32::try_from(years).unwrap(),
            months: u32::try_from(months).unwrap(),
            weeks: 0,
            days: u32::try_from(days).unwrap(),
            hours: u32::try_from(hours).unwrap(),
        };
        let mut config = Config::with_policy(Policy { keep_within: d, ..Policy::default() });
        config.time_zone = zone.to_owned();
        let tz = config.zone().unwrap();
        let latest = now() - SignedDuration::from_hours(1);
        let mut items: Vec<Item> = items
            .into_iter()
            .filter(|i| i.kind == Kind::Logs && i.complete && i.time < latest)
            .map(|mut i| { i.pinned = false; i })
            .collect();
        items.push(Item::new("latest", latest, Kind::Logs));
        let cutoff = latest
            .to_zoned(tz.clone())
            .checked_sub(jiff::Span::new().years(years).months(months))
            .unwrap()
            .checked_sub(jiff::Span::new().days(days))
            .unwrap()
            .checked_sub(jiff::Span::new().hours(hours))
            .unwrap()
            .timestamp();
        items.push(Item::new("at-cutoff", cutoff, Kind::Logs));
        items.push(Item::new("after-cutoff", cutoff + SignedDuration::from_secs(1), Kind::Logs));
        let p = plan(&items, &[], &config, now()).unwrap();
        for d in &p.decisions {
            let inside = d.time > cutoff;
            prop_assert_eq!(d.reasons.contains(&Reason::Within), inside, "{} at {}", d.id, d.time);
        }
        prop_assert!(!p.get("at-cutoff").unwrap().keep);
        prop_assert!(p.get("after-cutoff").unwrap().keep);
    }
}

/// A random cluster history: timelines branching one after another, the old
/// timeline running on for a few segments after each switch (a lost
/// primary), physical backups along the way, and the WAL archive.
#[derive(Debug, Clone)]
struct History {
    items: Vec<Item>,
    wal: Vec<WalItem>,
}

fn history() -> impl Strategy<Value = History> {
    (
        prop::collection::vec((1u64..6, 0u64..3), 1..4), // (segments on timeline, overrun of the old one)
        prop::collection::vec(
            (
                0u64..1000,
                0u64..(3 * SEG),
                prop::bool::weighted(0.85),
                prop::bool::weighted(0.1),
            ),
            1..12,
        ),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(timelines, backups, partials)| {
            // Timeline k runs from segment begin[k] to end[k] (inclusive).
            let mut spans = Vec::new();
            let mut at = 0u64;
            for (i, (len, overrun)) in timelines.iter().enumerate() {
                let tl = u32::try_from(i + 1).unwrap();
                let begin = at;
                let end = at + len;
                spans.push((tl, begin, end, end + overrun));
                at = end;
            }
            let total_end = at;
            let mut wal = Vec::new();
            for (tl, begin, _, stored_end) in &spans {
                for n in *begin..=*stored_end {
                    wal.push(WalItem::new(
                        WalFile::Segment(WalSegment {
                            timeline: *tl,
                            segno: n,
                        }),
                        1,
                        SEG,
                    ));
                }
                if *tl > 1 {
                    wal.push(WalItem::new(WalFile::History { timeline: *tl }, 1, SEG));
                    if partials {
                        let prev = WalSegment {
                            timeline: tl - 1,
                            segno: *begin,
                        };
                        let name = format!("{}.partial", prev.file_name(SEG));
                        if !wal.iter().any(|w: &WalItem| w.name == name) {
                            wal.push(WalItem::new(WalFile::Partial(prev), 1, SEG));
                        }
                    }
                }
            }
            let mut items = Vec::new();
            let base = ts("2025-01-01T00:00:00Z");
            for (i, (pos, length, complete, pinned)) in backups.into_iter().enumerate() {
                // Start somewhere in [0, total_end] segments; the timeline is
                // the one live at that position.
                let start = Lsn(pos * (total_end * SEG + SEG - 1) / 1000);
                let segno = start.0 / SEG;
                let tl = spans
                    .iter()
                    .rev()
                    .find(|(_, b, _, _)| *b <= segno)
                    .map(|s| s.0)
                    .unwrap();
                let stop = Lsn(start.0 + length);
                let time =
                    base + SignedDuration::from_hours(i64::try_from(start.0 / (SEG / 16)).unwrap());
                let mut it = Item::new(format!("b{i:02}"), time, Kind::Physical).class("daily");
                it.pinned = pinned;
                if complete {
                    it = it.wal(WalRange::new(tl, start, stop));
                    let label = WalFile::BackupLabel {
                        segment: WalSegment::containing(tl, start, SEG),
                        offset: start.0 % SEG,
                    };
                    let item = WalItem::new(label, 1, SEG);
                    if !wal.iter().any(|w: &WalItem| w.name == item.name) {
                        wal.push(item);
                    }
                } else {
                    it = it.incomplete();
                }
                items.push(it);
            }
            History { items, wal }
        })
}

fn wal_policy() -> impl Strategy<Value = Policy> {
    (0u32..4, 0u32..4, 0u32..3).prop_map(|(last, daily, weekly)| Policy {
        keep_last: last.into(),
        keep_daily: daily.into(),
        keep_weekly: weekly.into(),
        ..Policy::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// No WAL that a kept backup needs is deleted: its own start..stop
    /// segments, everything from the PITR window start on (any timeline),
    /// and the history files of its timeline and later ones. Whatever goes
    /// is before the window and unneeded.
    #[test]
    fn no_needed_wal_deleted(h in history(), policy in wal_policy()) {
        let config = Config::with_policy(policy);
        let p = plan(&h.items, &h.wal, &config, ts("2027-01-01T00:00:00Z")).unwrap();
        let keep = kept_ids(&p);
        let kept: Vec<&Item> = h.items.iter().filter(|i| keep.contains(&i.id)).collect();
        let ranges: Vec<WalRange> = kept.iter().filter_map(|i| i.wal).collect();
        let wal_kept: BTreeMap<&str, bool> = p.wal.iter().map(|d| (d.name.as_str(), d.keep)).collect();
        prop_assert_eq!(wal_kept.len(), h.wal.len());
        let window = ranges.iter().map(|r| r.start).min();
        let min_tl = ranges.iter().map(|r| r.timeline).min();
        for w in &h.wal {
            let needed = match (w.file, window, min_tl) {
                (_, None, _) | (_, _, None) => true,
                (WalFile::History { timeline }, _, Some(m)) => timeline >= m,
                (WalFile::Segment(s) | WalFile::Partial(s), Some(start), _) => {
                    s.end_lsn(SEG) > start
                        || ranges.iter().any(|r| r.timeline == s.timeline
                            && s.segno >= r.start.0 / SEG && s.segno <= r.stop.0 / SEG)
                }
                (WalFile::BackupLabel { segment, offset }, Some(start), _) => {
                    segment.start_lsn(SEG).0 + offset >= start.0
                }
            };
            prop_assert_eq!(wal_kept[w.name.as_str()], needed, "{} in {}", w.name, p);
        }
        // Every kept backup can be restored: its segments are all there.
        for r in &ranges {
            for n in r.start.0 / SEG..=r.stop.0 / SEG {
                let name = WalSegment { timeline: r.timeline, segno: n }.file_name(SEG);
                if let Some(k) = wal_kept.get(name.as_str()) {
                    prop_assert!(*k, "{} needed by a kept backup", name);
                }
            }
        }
    }

    /// Pruning WAL twice deletes nothing the second time.
    #[test]
    fn wal_idempotent(h in history(), policy in wal_policy()) {
        let config = Config::with_policy(policy);
        let now = ts("2027-01-01T00:00:00Z");
        let first = plan(&h.items, &h.wal, &config, now).unwrap();
        let items = kept_items(&h.items, &first);
        let keep: BTreeSet<&str> = first.wal.iter().filter(|d| d.keep).map(|d| d.name.as_str()).collect();
        let wal: Vec<WalItem> = h.wal.iter().filter(|w| keep.contains(w.name.as_str())).cloned().collect();
        let second = plan(&items, &wal, &config, now).unwrap();
        prop_assert_eq!(second.deleted().count(), 0);
        prop_assert_eq!(second.wal_deleted().count(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Across a DST change in a whole-hour zone, keep-hourly unlimited keeps
    /// one item per real hour: no hour is merged (fall back) and none is
    /// invented (spring forward); keep-daily unlimited keeps one per local
    /// calendar day (23 or 25 hours long).
    #[test]
    fn dst_hours_and_days(
        zone in prop::sample::select(vec!["America/New_York", "Europe/Berlin"]),
        anchor in prop::sample::select(vec![0usize, 1, 2, 3]),
        minutes in prop::collection::btree_set(-720i64..720, 1..60),
    ) {
        let at = interesting()[anchor];
        let items: Vec<Item> = minutes
            .iter()
            .enumerate()
            .map(|(i, m)| Item::new(format!("i{i:03}"), at + SignedDuration::from_mins(*m), Kind::Logical))
            .collect();
        let mut config = Config::with_policy(Policy { keep_hourly: Count::Unlimited, ..Policy::default() });
        config.time_zone = zone.to_owned();
        let tz = config.zone().unwrap();
        let p = plan(&items, &[], &config, now()).unwrap();
        // Whole-hour offsets: local hour buckets are exactly UTC hours.
        let hours: BTreeSet<i64> = items.iter().map(|i| i.time.as_second().div_euclid(3600)).collect();
        let by_rule = p.decisions.iter().filter(|d| periodic(d).any(|(_, oldest)| !oldest)).count();
        prop_assert_eq!(by_rule, hours.len());
        config.classes = cfdr_retention::DataClassPolicies::uniform(Policy { keep_daily: Count::Unlimited, ..Policy::default() });
        let p = plan(&items, &[], &config, now()).unwrap();
        let days: BTreeSet<String> = items.iter().map(|i| label(Period::Daily, i.time, &tz)).collect();
        let by_rule = p.decisions.iter().filter(|d| periodic(d).any(|(_, oldest)| !oldest)).count();
        prop_assert_eq!(by_rule, days.len());
        // Each kept daily is the last item of its local day.
        for d in p.decisions.iter().filter(|d| periodic(d).any(|(_, oldest)| !oldest)) {
            let day = label(Period::Daily, d.time, &tz);
            prop_assert!(items.iter().all(|i| label(Period::Daily, i.time, &tz) != day || i.time <= d.time));
        }
    }

    /// Around the end of a 53-week ISO year in a named zone, keep-weekly
    /// unlimited keeps one item per ISO week of the zone, and week 53 is
    /// one of them when it has items.
    #[test]
    fn iso_week_53_in_named_zone(
        zone in prop::sample::select(vec!["America/New_York", "Asia/Kolkata", "Pacific/Auckland", "UTC"]),
        year_end in prop::sample::select(vec!["2020-12-31T12:00:00Z", "2026-12-31T12:00:00Z", "2015-12-31T12:00:00Z"]),
        hours in prop::collection::btree_set(-240i64..240, 1..40),
    ) {
        let at = ts(year_end);
        let items: Vec<Item> = hours
            .iter()
            .enumerate()
            .map(|(i, h)| Item::new(format!("i{i:03}"), at + SignedDuration::from_hours(*h), Kind::Logical))
            .collect();
        let mut config = Config::with_policy(Policy { keep_weekly: Count::Unlimited, ..Policy::default() });
        config.time_zone = zone.to_owned();
        let tz = config.zone().unwrap();
        let p = plan(&items, &[], &config, ts("2030-01-01T00:00:00Z")).unwrap();
        let weeks: BTreeSet<String> = items.iter().map(|i| label(Period::Weekly, i.time, &tz)).collect();
        let kept: Vec<String> = p
            .decisions
            .iter()
            .filter(|d| periodic(d).any(|(_, oldest)| !oldest))
            .map(|d| label(Period::Weekly, d.time, &tz))
            .collect();
        let kept_weeks: BTreeSet<String> = kept.iter().cloned().collect();
        prop_assert_eq!(kept.len(), kept_weeks.len(), "two items kept for one week");
        prop_assert_eq!(&kept_weeks, &weeks);
        let w53 = items.iter().any(|i| label(Period::Weekly, i.time, &tz).ends_with("-W53"));
        prop_assert_eq!(kept_weeks.iter().any(|w| w.ends_with("-W53")), w53);
    }
}
