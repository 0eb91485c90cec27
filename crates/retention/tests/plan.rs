//! Behaviour of `plan` on small hand-made histories.

#![allow(clippy::unwrap_used)]

use cfdr_retention::{
    CalendarDuration, Config, Count, DataClass, Error, Item, Kind, Lsn, Note, Period, Plan, Policy,
    Reason, WalFile, WalItem, WalRange, WalReason, WalSegment, plan,
};
use jiff::Timestamp;

const SEG: u64 = cfdr_retention::DEFAULT_SEGMENT_SIZE;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn db(id: &str, time: &str) -> Item {
    Item::new(id, t(time), Kind::Logical).class("hourly")
}

fn reasons(plan: &Plan, id: &str) -> Vec<String> {
    plan.get(id)
        .unwrap()
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn database(policy: Policy) -> Config {
    let mut c = Config::default();
    c.classes.database = policy;
    c
}

#[test]
fn empty_policy_keeps_everything_and_says_so() {
    let items = [
        db("a", "2025-01-01T00:00:00Z"),
        db("b", "2025-01-02T00:00:00Z"),
    ];
    for policy in [
        Policy::default(),
        Policy {
            keep_last: Count::Limited(0),
            ..Policy::default()
        },
    ] {
        let p = plan(&items, &[], &database(policy), t("2025-02-01T00:00:00Z")).unwrap();
        assert!(
            p.decisions
                .iter()
                .all(|d| d.keep && d.reasons == [Reason::EmptyPolicy])
        );
        assert_eq!(
            p.notes,
            [Note::EmptyPolicy {
                kind: Kind::Logical,
                data_class: DataClass::Database,
                items: 2
            }]
        );
        assert_eq!(
            p.notes[0].to_string(),
            "policy for logical/database is empty: keeping all 2 items"
        );
    }
}

#[test]
fn oldest_is_kept_while_a_rule_has_count_left() {
    // restic #4806: three items in one hour, keep-hourly 24 keeps two.
    let items = [
        db("a", "2025-01-01T10:05:00Z"),
        db("b", "2025-01-01T10:15:00Z"),
        db("c", "2025-01-01T10:25:00Z"),
    ];
    let p = plan(
        &items,
        &[],
        &database(Policy {
            keep_hourly: 24.into(),
            ..Policy::default()
        }),
        t("2025-01-02T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(reasons(&p, "c"), ["keep-hourly"]);
    assert_eq!(reasons(&p, "b"), ["unmatched"]);
    assert_eq!(reasons(&p, "a"), ["keep-hourly:oldest"]);
    // With the count used up, the oldest goes.
    let p = plan(
        &items,
        &[],
        &database(Policy {
            keep_hourly: 1.into(),
            ..Policy::default()
        }),
        t("2025-01-02T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(p.kept().collect::<Vec<_>>(), ["c"]);
}

#[test]
fn overlapping_counts_like_restic() {
    // keep-daily 2 + keep-weekly 2 over one item a day for 3 weeks: the two
    // newest days, plus the newest of the previous week (the first weekly
    // slot went to the newest item, which is also a daily).
    let items: Vec<Item> = (1..=21)
        .map(|d| db(&format!("d{d:02}"), &format!("2025-09-{d:02}T12:00:00Z")))
        .collect();
    let policy = Policy {
        keep_daily: 2.into(),
        keep_weekly: 2.into(),
        ..Policy::default()
    };
    let p = plan(&items, &[], &database(policy), t("2025-10-01T00:00:00Z")).unwrap();
    assert_eq!(p.kept().collect::<Vec<_>>(), ["d21", "d20", "d14"]);
    assert_eq!(reasons(&p, "d21"), ["keep-daily", "keep-weekly"]);
    assert_eq!(reasons(&p, "d14"), ["keep-weekly"]);
}

#[test]
fn future_items_are_kept_and_not_counted() {
    let items = [
        db("old", "2025-01-01T00:00:00Z"),
        db("new", "2025-01-02T00:00:00Z"),
        db("future", "2025-06-01T00:00:00Z"),
    ];
    let p = plan(
        &items,
        &[],
        &database(Policy {
            keep_last: 1.into(),
            ..Policy::default()
        }),
        t("2025-01-03T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(reasons(&p, "future"), ["future"]);
    assert_eq!(reasons(&p, "new"), ["keep-last"]);
    assert_eq!(reasons(&p, "old"), ["unmatched"]);
}

#[test]
fn incomplete_backups_and_grace() {
    let now = "2025-01-10T12:00:00Z";
    let items = [
        db("done", "2025-01-10T00:00:00Z"),
        db("running", "2025-01-10T11:00:00Z").incomplete(),
        db("crashed", "2025-01-08T00:00:00Z").incomplete(),
        db("held", "2025-01-01T00:00:00Z").incomplete().pinned(),
    ];
    let p = plan(
        &items,
        &[],
        &database(Policy {
            keep_last: 10.into(),
            ..Policy::default()
        }),
        t(now),
    )
    .unwrap();
    assert_eq!(reasons(&p, "running"), ["incomplete-in-grace"]);
    assert_eq!(reasons(&p, "crashed"), ["incomplete-expired"]);
    assert!(!p.get("crashed").unwrap().keep);
    assert_eq!(reasons(&p, "held"), ["pinned"]);
    // Incomplete items are not counted: keep-last 1 keeps the complete one.
    let p = plan(
        &items,
        &[],
        &database(Policy {
            keep_last: 1.into(),
            ..Policy::default()
        }),
        t(now),
    )
    .unwrap();
    assert_eq!(reasons(&p, "done"), ["keep-last"]);
    // A longer grace period spares the crashed one.
    let mut c = database(Policy {
        keep_last: 1.into(),
        ..Policy::default()
    });
    c.incomplete_grace = CalendarDuration::days(3);
    let p = plan(&items, &[], &c, t(now)).unwrap();
    assert_eq!(reasons(&p, "crashed"), ["incomplete-in-grace"]);
}

#[test]
fn newest_complete_of_each_kind_and_class_survives_any_policy() {
    let items = [
        db("h1", "2025-01-01T00:00:00Z"),
        db("h2", "2025-01-02T00:00:00Z"),
        Item::new("d1", t("2025-01-01T00:00:00Z"), Kind::Logical).class("daily"),
        Item::new("p1", t("2025-01-01T00:00:00Z"), Kind::Physical).class("daily"),
        db("h3", "2025-01-03T00:00:00Z").incomplete(),
    ];
    let policy = Policy {
        keep_tag: vec!["never-used".into()],
        ..Policy::default()
    };
    let p = plan(
        &items,
        &[],
        &Config::with_policy(policy),
        t("2025-01-03T01:00:00Z"),
    )
    .unwrap();
    assert_eq!(reasons(&p, "h2"), ["newest-complete"]);
    assert_eq!(reasons(&p, "d1"), ["newest-complete"]);
    assert_eq!(reasons(&p, "p1"), ["newest-complete"]);
    assert_eq!(reasons(&p, "h1"), ["unmatched"]);
    assert_eq!(reasons(&p, "h3"), ["incomplete-in-grace"]);
}

#[test]
fn groups_are_kind_and_data_class() {
    // keep-last 1 per group: the logical and the physical series and the
    // archive class are separate groups; hourly and daily are one series.
    let items = [
        Item::new("lh", t("2025-01-02T00:00:00Z"), Kind::Logical).class("hourly"),
        Item::new("ld", t("2025-01-01T00:00:00Z"), Kind::Logical).class("daily"),
        Item::new("ph", t("2025-01-02T00:00:00Z"), Kind::Physical).class("hourly"),
        Item::new("la", t("2024-12-01T00:00:00Z"), Kind::Logical).class("archive"),
        Item::new("la0", t("2024-11-01T00:00:00Z"), Kind::Logical).class("archive"),
    ];
    let mut c = Config::with_policy(Policy {
        keep_last: 1.into(),
        ..Policy::default()
    });
    c.classes.database_archive = Policy {
        keep_last: 1.into(),
        ..Policy::default()
    };
    let p = plan(&items, &[], &c, t("2025-02-01T00:00:00Z")).unwrap();
    assert_eq!(reasons(&p, "lh"), ["keep-last"]);
    // ld is not kept by the rule but is the newest of logical/daily.
    assert_eq!(reasons(&p, "ld"), ["newest-complete"]);
    assert_eq!(reasons(&p, "ph"), ["keep-last"]);
    assert_eq!(reasons(&p, "la"), ["keep-last"]);
    assert_eq!(reasons(&p, "la0"), ["unmatched"]);
    assert_eq!(p.get("la").unwrap().data_class, DataClass::DatabaseArchive);
}

#[test]
fn runbook_defaults_per_data_class() {
    let now = t("2025-06-01T00:00:00Z");
    let at = |kind, id: &str, time: &str| Item::new(id, t(time), kind);
    let items = [
        at(Kind::Logs, "log-new", "2025-05-31T00:00:00Z"),
        at(Kind::Logs, "log-89d", "2025-03-04T00:00:00Z"),
        at(Kind::Logs, "log-91d", "2025-03-01T00:00:00Z"),
        at(Kind::Audit, "audit-new", "2025-05-31T00:00:00Z"),
        at(Kind::Audit, "audit-6y", "2019-06-01T00:00:00Z"),
        at(Kind::Audit, "audit-8y", "2017-05-01T00:00:00Z"),
        at(Kind::Trading, "trade-new", "2025-05-31T00:00:00Z"),
        at(Kind::Trading, "trade-8y", "2017-05-01T00:00:00Z"),
        at(Kind::Config, "cfg-new", "2025-05-31T00:00:00Z"),
        at(Kind::Config, "cfg-20y", "2005-05-01T00:00:00Z"),
        at(Kind::Secrets, "sec-new", "2025-05-31T00:00:00Z"),
        at(Kind::Secrets, "sec-20y", "2005-05-01T00:00:00Z"),
    ];
    let p = plan(&items, &[], &Config::default(), now).unwrap();
    let kept: Vec<&str> = p.kept().collect();
    let deleted: Vec<&str> = p.deleted().collect();
    for id in [
        "log-new",
        "log-89d",
        "audit-new",
        "audit-6y",
        "trade-new",
        "cfg-new",
        "cfg-20y",
        "sec-new",
        "sec-20y",
    ] {
        assert!(kept.contains(&id), "{id} should be kept: {p}");
    }
    for id in ["log-91d", "audit-8y", "trade-8y"] {
        assert!(deleted.contains(&id), "{id} should be deleted: {p}");
    }
    assert_eq!(reasons(&p, "cfg-20y"), ["keep-last"]);
}

#[test]
fn the_repeated_hour_is_two_buckets() {
    // America/New_York falls back on 2025-11-02: 01:00-02:00 happens twice
    // (05:00-06:00Z as EDT, 06:00-07:00Z as EST).
    let items = [
        db("edt", "2025-11-02T05:30:00Z"),
        db("est", "2025-11-02T06:30:00Z"),
        db("after", "2025-11-02T07:30:00Z"),
    ];
    let mut c = database(Policy {
        keep_hourly: Count::Unlimited,
        ..Policy::default()
    });
    c.time_zone = "America/New_York".into();
    let p = plan(&items, &[], &c, t("2025-11-03T00:00:00Z")).unwrap();
    assert_eq!(p.kept().count(), 3);
    assert!(p.decisions.iter().all(|d| d.reasons
        == [Reason::Periodic {
            period: Period::Hourly,
            oldest: false
        }]));
    // The local day is 25 hours long: one daily bucket.
    let mut c = database(Policy {
        keep_daily: 5.into(),
        ..Policy::default()
    });
    c.time_zone = "America/New_York".into();
    let items = [
        db("early", "2025-11-02T04:30:00Z"),
        db("late", "2025-11-03T04:30:00Z"),
        db("next", "2025-11-03T05:30:00Z"),
    ];
    let p = plan(&items, &[], &c, t("2025-11-04T00:00:00Z")).unwrap();
    assert_eq!(reasons(&p, "late"), ["keep-daily"]);
    assert_eq!(reasons(&p, "early"), ["keep-daily:oldest"]);
    assert_eq!(reasons(&p, "next"), ["keep-daily"]);
}

#[test]
fn iso_week_53_in_a_named_zone() {
    // 2027-01-04T03:00Z is still Sunday 2027-01-03 in New York: ISO week
    // 2026-W53, together with Monday 2026-12-28; in UTC it is 2027-W01.
    let items = [
        db("mon", "2026-12-28T15:00:00Z"),
        db("sun-late", "2027-01-04T03:00:00Z"),
        db("w01", "2027-01-05T15:00:00Z"),
    ];
    let policy = Policy {
        keep_weekly: Count::Unlimited,
        ..Policy::default()
    };
    let mut ny = database(policy.clone());
    ny.time_zone = "America/New_York".into();
    let now = t("2027-02-01T00:00:00Z");
    let p = plan(&items, &[], &ny, now).unwrap();
    assert_eq!(p.kept().collect::<Vec<_>>(), ["w01", "sun-late", "mon"]);
    assert_eq!(reasons(&p, "mon"), ["keep-weekly:oldest"]);
    let p = plan(
        &items,
        &[],
        &database(Policy {
            keep_weekly: 2.into(),
            ..Policy::default()
        }),
        now,
    )
    .unwrap();
    // In UTC "sun-late" is in 2027-W01 with "w01", so the two weeks are
    // W01 (w01) and W53 (mon).
    assert_eq!(p.kept().collect::<Vec<_>>(), ["w01", "mon"]);
    let p = plan(
        &items,
        &[],
        &{
            let mut c = ny.clone();
            c.classes.database.keep_weekly = 2.into();
            c
        },
        now,
    )
    .unwrap();
    assert_eq!(p.kept().collect::<Vec<_>>(), ["w01", "sun-late"]);
}

#[test]
fn input_errors() {
    let now = t("2025-01-01T00:00:00Z");
    let c = Config::default();
    let dup = [
        db("x", "2024-01-01T00:00:00Z"),
        db("x", "2024-01-02T00:00:00Z"),
    ];
    assert!(matches!(plan(&dup, &[], &c, now), Err(Error::DuplicateId { id }) if id == "x"));
    let bad = [
        Item::new("p", t("2024-01-01T00:00:00Z"), Kind::Physical).wal(WalRange::new(
            1,
            Lsn(10),
            Lsn(5),
        )),
    ];
    assert!(matches!(
        plan(&bad, &[], &c, now),
        Err(Error::InvalidWalRange { .. })
    ));
    let w = WalItem::parse("000000010000000000000001", 0, SEG).unwrap();
    assert!(matches!(
        plan(&[], &[w.clone(), w], &c, now),
        Err(Error::DuplicateWal { .. })
    ));
    let zone = Config {
        time_zone: "Nowhere/Land".into(),
        ..Config::default()
    };
    assert!(matches!(
        plan(&[], &[], &zone, now),
        Err(Error::UnknownTimeZone { .. })
    ));
    let e = plan(&dup, &[], &c, now).unwrap_err();
    assert!(e.to_string().contains("duplicate item id \"x\""));
}

fn seg(tl: u32, n: u64) -> WalItem {
    WalItem::new(
        WalFile::Segment(WalSegment {
            timeline: tl,
            segno: n,
        }),
        16,
        SEG,
    )
}

fn history(tl: u32) -> WalItem {
    WalItem::new(WalFile::History { timeline: tl }, 1, SEG)
}

fn lsn(seg_no: u64, off: u64) -> Lsn {
    Lsn(seg_no * SEG + off)
}

fn physical(id: &str, time: &str, tl: u32, start: Lsn, stop: Lsn) -> Item {
    Item::new(id, t(time), Kind::Physical)
        .class("daily")
        .wal(WalRange::new(tl, start, stop))
}

#[test]
fn wal_follows_backups() {
    // Timeline 1 up to segment 5, promotion to timeline 2 in segment 5,
    // timeline 3 from segment 9.
    let items = [
        physical("b1", "2025-01-01T00:00:00Z", 1, lsn(1, 40), lsn(2, 100)),
        physical("b2", "2025-01-02T00:00:00Z", 2, lsn(6, 40), lsn(6, 900)),
        physical("b3", "2025-01-03T00:00:00Z", 3, lsn(10, 40), lsn(11, 10)),
    ];
    let mut wal: Vec<WalItem> = (0..=5).map(|n| seg(1, n)).collect();
    wal.extend((5..=9).map(|n| seg(2, n)));
    wal.extend((9..=12).map(|n| seg(3, n)));
    wal.push(history(2));
    wal.push(history(3));
    wal.push(WalItem::parse("000000020000000000000005.partial", 3, SEG).unwrap());
    wal.push(WalItem::parse("000000010000000000000001.00000028.backup", 1, SEG).unwrap());
    wal.push(WalItem::parse("000000020000000000000006.00000028.backup", 1, SEG).unwrap());
    let now = t("2025-01-04T00:00:00Z");

    // Keep the two newest: the window starts at b2 (timeline 2, segment 6).
    let c = Config::with_policy(Policy {
        keep_last: 2.into(),
        ..Policy::default()
    });
    let p = plan(&items, &wal, &c, now).unwrap();
    assert_eq!(p.kept().collect::<Vec<_>>(), ["b3", "b2"]);
    let deleted: Vec<&str> = p.wal_deleted().collect();
    assert_eq!(
        deleted,
        [
            "000000010000000000000000",
            "000000010000000000000001",
            "000000010000000000000001.00000028.backup",
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000005",
            "000000020000000000000005",
            "000000020000000000000005.partial",
        ]
    );
    let why = |name: &str| -> Vec<String> {
        p.wal
            .iter()
            .find(|d| d.name == name)
            .unwrap()
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        why("000000020000000000000006"),
        ["needed-by:b2", "pitr-window"]
    );
    assert_eq!(
        why("000000020000000000000006.00000028.backup"),
        ["needed-by:b2", "pitr-window"]
    );
    assert_eq!(why("000000020000000000000007"), ["pitr-window"]);
    assert_eq!(why("000000030000000000000009"), ["pitr-window"]);
    assert_eq!(why("00000002.history"), ["timeline-in-use"]);
    assert_eq!(why("000000010000000000000005"), ["before-pitr-window"]);
    assert!(p.notes.contains(&Note::PitrWindow {
        backup: "b2".into(),
        start: lsn(6, 40)
    }));

    // Keep only the newest: timeline 2's history goes too.
    let c = Config::with_policy(Policy {
        keep_last: 1.into(),
        ..Policy::default()
    });
    let p = plan(&items, &wal, &c, now).unwrap();
    let hist: Vec<(String, bool)> = p
        .wal
        .iter()
        .filter(|d| d.name.ends_with(".history"))
        .map(|d| (d.name.clone(), d.keep))
        .collect();
    assert_eq!(
        hist,
        [
            ("00000002.history".to_owned(), false),
            ("00000003.history".to_owned(), true)
        ]
    );

    // Keep all three: nothing before b1's segment 1 is needed except segment 0.
    let c = Config::with_policy(Policy {
        keep_last: 3.into(),
        ..Policy::default()
    });
    let p = plan(&items, &wal, &c, now).unwrap();
    assert_eq!(
        p.wal_deleted().collect::<Vec<_>>(),
        ["000000010000000000000000"]
    );
    let s = p.summary();
    assert_eq!((s.wal_delete.count, s.wal_delete.bytes), (1, 16));
}

#[test]
fn wal_is_kept_when_the_window_is_unknown() {
    let wal = [seg(1, 1), seg(1, 2), history(2)];
    let now = t("2025-01-04T00:00:00Z");
    // Only logical backups.
    let p = plan(
        &[db("l", "2025-01-01T00:00:00Z")],
        &wal,
        &Config::default(),
        now,
    )
    .unwrap();
    assert!(
        p.wal
            .iter()
            .all(|d| d.keep && d.reasons == [WalReason::NoPitrWindow])
    );
    assert!(p.notes.contains(&Note::NoPhysicalBackup));
    // A kept physical backup without a range.
    let items = [
        Item::new("p-old", t("2025-01-01T00:00:00Z"), Kind::Physical).wal(WalRange::new(
            1,
            lsn(3, 0),
            lsn(3, 9),
        )),
        Item::new("p-new", t("2025-01-02T00:00:00Z"), Kind::Physical),
    ];
    let p = plan(&items, &wal, &Config::default(), now).unwrap();
    assert!(p.wal.iter().all(|d| d.keep));
    assert!(p.notes.contains(&Note::MissingWalRange {
        backup: "p-new".into()
    }));
    // No WAL at all: no WAL notes.
    let p = plan(
        &[db("l", "2025-01-01T00:00:00Z")],
        &[],
        &Config::default(),
        now,
    )
    .unwrap();
    assert!(p.notes.is_empty());
}

#[test]
fn plan_serialises_for_audit() {
    let items = [
        physical("b1", "2025-01-01T00:00:00Z", 1, lsn(1, 40), lsn(2, 100))
            .size(100)
            .tag("x"),
        physical("b2", "2025-01-02T00:00:00Z", 1, lsn(3, 40), lsn(3, 100)).size(200),
    ];
    let wal = [seg(1, 1), seg(1, 3)];
    let c = Config::with_policy(Policy {
        keep_last: 1.into(),
        ..Policy::default()
    });
    let p = plan(&items, &wal, &c, t("2025-01-03T00:00:00Z")).unwrap();
    let json = serde_json::to_string(&p).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    assert!(json.contains("\"reasons\":[\"keep-last\"]"));
    let s = p.summary();
    assert_eq!(
        (s.keep.count, s.keep.bytes, s.delete.count, s.delete.bytes),
        (1, 200, 1, 100)
    );
    // Items round-trip through JSON too.
    let item_json = serde_json::to_string(&items[0]).unwrap();
    assert_eq!(serde_json::from_str::<Item>(&item_json).unwrap(), items[0]);
    let minimal: Item =
        serde_json::from_str(r#"{"id":"m","time":"2025-01-01T00:00:00Z","kind":"logical"}"#)
            .unwrap();
    assert!(minimal.complete && !minimal.pinned && minimal.class.is_empty());
}
