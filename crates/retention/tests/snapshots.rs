//! Snapshot tests: the full plan for one rule at a time over a fixed history
//! of about a hundred backups. Review changes to `tests/snapshots/*.snap`
//! like code: each line is one keep/delete decision and its reasons.

#![allow(clippy::unwrap_used)]

use cfdr_retention::{
    CalendarDuration, Config, Count, DEFAULT_SEGMENT_SIZE, Item, Kind, Lsn, Plan, Policy, WalFile,
    WalItem, WalRange, WalSegment, plan,
};
use jiff::{SignedDuration, Timestamp};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    ts("2026-03-15T12:00:00Z")
}

/// One logical database series, ~100 backups over two years: hourly ones
/// for the last 30 hours (two in one hour), dailies for 25 days, weekly
/// ones on Sundays for 20 weeks, monthly manual ones for two years, a tie,
/// tags, a pinned one, two incomplete ones and one dated in the future.
fn history() -> Vec<Item> {
    let mut raw: Vec<(Timestamp, &str)> = Vec::new();
    let hour0 = ts("2026-03-15T11:05:00Z");
    for h in 0..30i64 {
        let jitter = (h * 7) % 13;
        raw.push((
            hour0 - SignedDuration::from_hours(h) + SignedDuration::from_mins(jitter),
            "hourly",
        ));
    }
    raw.push((ts("2026-03-15T09:40:00Z"), "hourly"));
    for d in 2..27i64 {
        raw.push((
            ts("2026-03-15T00:10:00Z") - SignedDuration::from_hours(24 * d),
            "daily",
        ));
    }
    // 2026-03-08 is a Sunday.
    for w in 1..21i64 {
        raw.push((
            ts("2026-03-08T02:00:00Z") - SignedDuration::from_hours(24 * 7 * w),
            "weekly",
        ));
    }
    for m in 0..24 {
        let (y, mo) = (2024 + (m + 2) / 12, (m + 2) % 12 + 1);
        raw.push((ts(&format!("{y}-{mo:02}-01T06:00:00Z")), "manual"));
    }
    raw.sort();
    let mut items: Vec<Item> = raw
        .iter()
        .enumerate()
        .map(|(i, (t, class))| {
            Item::new(format!("b{i:03}"), *t, Kind::Logical)
                .class(*class)
                .size(1000 + i as u64)
        })
        .collect();
    // A tie: same time as b050, greater id, so it counts as the newer.
    let tie_time = items[50].time;
    items.push(
        Item::new("b050x", tie_time, Kind::Logical)
            .class("manual")
            .size(7),
    );
    for (id, tag) in [
        ("b010", "release"),
        ("b020", "release"),
        ("b020", "verified"),
        ("b075", "verified"),
    ] {
        let it = items.iter_mut().find(|i| i.id == id).unwrap();
        it.tags.insert(tag.to_owned());
    }
    items.iter_mut().find(|i| i.id == "b005").unwrap().pinned = true;
    items.push(
        Item::new("run-new", ts("2026-03-15T11:50:00Z"), Kind::Logical)
            .class("hourly")
            .incomplete(),
    );
    items.push(
        Item::new("run-old", ts("2026-03-10T03:00:00Z"), Kind::Logical)
            .class("hourly")
            .incomplete(),
    );
    items.push(Item::new("skewed", ts("2026-03-16T00:00:00Z"), Kind::Logical).class("hourly"));
    items
}

fn run(policy: Policy) -> String {
    let mut config = Config::default();
    config.classes.database = policy;
    run_with(&config)
}

fn run_with(config: &Config) -> String {
    let p: Plan = plan(&history(), &[], config, now()).unwrap();
    p.to_string()
}

macro_rules! rule {
    ($name:ident, $policy:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), run($policy));
        }
    };
}

fn p() -> Policy {
    Policy::default()
}

rule!(
    keep_last_10,
    Policy {
        keep_last: 10.into(),
        ..p()
    }
);
rule!(
    keep_hourly_24,
    Policy {
        keep_hourly: 24.into(),
        ..p()
    }
);
rule!(
    keep_daily_7,
    Policy {
        keep_daily: 7.into(),
        ..p()
    }
);
rule!(
    keep_weekly_4,
    Policy {
        keep_weekly: 4.into(),
        ..p()
    }
);
rule!(
    keep_monthly_6,
    Policy {
        keep_monthly: 6.into(),
        ..p()
    }
);
rule!(
    keep_yearly_3,
    Policy {
        keep_yearly: 3.into(),
        ..p()
    }
);
rule!(
    keep_monthly_unlimited,
    Policy {
        keep_monthly: Count::Unlimited,
        ..p()
    }
);
rule!(
    keep_within_3d,
    Policy {
        keep_within: CalendarDuration::days(3),
        ..p()
    }
);
rule!(
    keep_within_hourly_12h,
    Policy {
        keep_within_hourly: CalendarDuration::hours(12),
        ..p()
    }
);
rule!(
    keep_within_daily_2w,
    Policy {
        keep_within_daily: CalendarDuration::weeks(2),
        ..p()
    }
);
rule!(
    keep_within_weekly_3m,
    Policy {
        keep_within_weekly: CalendarDuration::months(3),
        ..p()
    }
);
rule!(
    keep_within_monthly_1y,
    Policy {
        keep_within_monthly: CalendarDuration::years(1),
        ..p()
    }
);
rule!(
    keep_within_yearly_5y,
    Policy {
        keep_within_yearly: CalendarDuration::years(5),
        ..p()
    }
);
rule!(
    keep_tag,
    Policy {
        keep_tag: vec!["release".into(), "verified,release".into()],
        ..p()
    }
);
rule!(
    keep_daily_7_weekly_5_monthly_12,
    Policy {
        keep_daily: 7.into(),
        keep_weekly: 5.into(),
        keep_monthly: 12.into(),
        ..p()
    }
);
rule!(runbook_database, Config::default().classes.database);
rule!(empty_policy, p());

#[test]
fn new_york_daily_7_weekly_4() {
    let mut config = Config {
        time_zone: "America/New_York".into(),
        ..Config::default()
    };
    config.classes.database = Policy {
        keep_daily: 7.into(),
        keep_weekly: 4.into(),
        ..p()
    };
    insta::assert_snapshot!("new_york_daily_7_weekly_4", run_with(&config));
}

/// Every data class under the runbook defaults.
#[test]
fn data_class_defaults() {
    let mut items = Vec::new();
    let mut add = |kind: Kind, class: &str, every_days: i64, n: i64| {
        for i in 0..n {
            let t = ts("2026-03-14T03:00:00Z") - SignedDuration::from_hours(24 * every_days * i);
            items.push(Item::new(format!("{kind}-{class}-{i:02}"), t, kind).class(class));
        }
    };
    add(Kind::Logs, "export", 30, 6);
    add(Kind::Audit, "export", 365, 9);
    add(Kind::Trading, "daily", 400, 9);
    add(Kind::Config, "commit", 500, 4);
    add(Kind::Secrets, "version", 200, 4);
    add(Kind::Logical, "archive", 60, 8);
    add(Kind::Logical, "daily", 7, 8);
    let p = plan(&items, &[], &Config::default(), now()).unwrap();
    insta::assert_snapshot!("data_class_defaults", p.to_string());
}

/// WAL follows the kept physical backups across three timelines.
#[test]
fn wal_follows_backups() {
    let seg = DEFAULT_SEGMENT_SIZE;
    let mut items = Vec::new();
    let mut wal = Vec::new();
    // Timeline 1: segments 0..=9, timeline 2 from 10 (old primary wrote up
    // to 11), timeline 3 from 16.
    for n in 0..=11 {
        wal.push(WalItem::new(
            WalFile::Segment(WalSegment {
                timeline: 1,
                segno: n,
            }),
            16 << 20,
            seg,
        ));
    }
    for n in 10..=16 {
        wal.push(WalItem::new(
            WalFile::Segment(WalSegment {
                timeline: 2,
                segno: n,
            }),
            16 << 20,
            seg,
        ));
    }
    for n in 16..=20 {
        wal.push(WalItem::new(
            WalFile::Segment(WalSegment {
                timeline: 3,
                segno: n,
            }),
            16 << 20,
            seg,
        ));
    }
    wal.push(WalItem::parse("00000002.history", 42, seg).unwrap());
    wal.push(WalItem::parse("00000003.history", 84, seg).unwrap());
    // The old primary's last segment on timeline 1, cut at the promotion.
    wal.push(WalItem::new(
        WalFile::Partial(WalSegment {
            timeline: 1,
            segno: 10,
        }),
        16 << 20,
        seg,
    ));
    for (day, tl, start_seg) in [
        (1, 1, 1u64),
        (2, 1, 4),
        (3, 1, 7),
        (4, 2, 12),
        (5, 2, 14),
        (6, 3, 18),
    ] {
        let start = Lsn(start_seg * seg + 0x28);
        let stop = Lsn(start.0 + seg + 0x100);
        let t = ts(&format!("2026-03-{:02}T01:00:00Z", 8 + day));
        items.push(
            Item::new(format!("base-{day}"), t, Kind::Physical)
                .class("daily")
                .size(1 << 30)
                .wal(WalRange::new(tl, start, stop)),
        );
        let label = WalFile::BackupLabel {
            segment: WalSegment::containing(tl, start, seg),
            offset: 0x28,
        };
        wal.push(WalItem::new(label, 300, seg));
    }
    let mut config = Config::default();
    config.classes.database = Policy {
        keep_last: 3.into(),
        ..p()
    };
    let p = plan(&items, &wal, &config, now()).unwrap();
    insta::assert_snapshot!("wal_follows_backups", p.to_string());
}

/// The serialised form of a plan (what an audit log stores).
#[test]
fn plan_as_yaml() {
    let seg = DEFAULT_SEGMENT_SIZE;
    let items = [
        Item::new("old", ts("2026-03-01T00:00:00Z"), Kind::Physical)
            .class("daily")
            .size(10)
            .wal(WalRange::new(1, Lsn(seg + 0x28), Lsn(seg + 0x200))),
        Item::new("new", ts("2026-03-02T00:00:00Z"), Kind::Physical)
            .class("daily")
            .size(20)
            .tag("release")
            .wal(WalRange::new(1, Lsn(3 * seg + 0x28), Lsn(3 * seg + 0x200))),
        Item::new("gone", ts("2026-03-01T00:00:00Z"), Kind::Logical)
            .class("hourly")
            .incomplete(),
    ];
    let wal: Vec<WalItem> = (1..=3)
        .map(|n| {
            WalItem::new(
                WalFile::Segment(WalSegment {
                    timeline: 1,
                    segno: n,
                }),
                5,
                seg,
            )
        })
        .collect();
    let mut config = Config::default();
    config.classes.database = Policy {
        keep_last: 1.into(),
        ..p()
    };
    let p = plan(&items, &wal, &config, now()).unwrap();
    insta::assert_yaml_snapshot!("plan_as_yaml", p);
}
