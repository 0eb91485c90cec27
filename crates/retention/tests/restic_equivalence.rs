//! Replays cases of restic's `TestApplyPolicy` (the timestamps of its
//! fixture and the kept snapshots of its golden files) to check that cfdr
//! decides as restic `forget` does where the rules overlap.

#![allow(clippy::unwrap_used)]

use cfdr_retention::{CalendarDuration, Config, Count, Item, Kind, Policy, plan};

/// restic's fixture: (UTC time, tags), in restic's input order.
const FIXTURE: &[(&str, &[&str])] = &[
    ("2014-09-01 10:20:30", &[]),
    ("2014-09-02 10:20:30", &[]),
    ("2014-09-05 10:20:30", &[]),
    ("2014-09-06 10:20:30", &[]),
    ("2014-09-08 10:20:30", &[]),
    ("2014-09-09 10:20:30", &[]),
    ("2014-09-10 10:20:30", &[]),
    ("2014-09-11 10:20:30", &[]),
    ("2014-09-20 10:20:30", &[]),
    ("2014-09-22 10:20:30", &[]),
    ("2014-08-08 10:20:30", &[]),
    ("2014-08-10 10:20:30", &[]),
    ("2014-08-12 10:20:30", &[]),
    ("2014-08-13 10:20:30", &[]),
    ("2014-08-13 10:20:30.1", &[]),
    ("2014-08-15 10:20:30", &[]),
    ("2014-08-18 10:20:30", &[]),
    ("2014-08-20 10:20:30", &[]),
    ("2014-08-21 10:20:30", &[]),
    ("2014-08-22 10:20:30", &[]),
    ("2014-10-01 10:20:30", &["foo"]),
    ("2014-10-02 10:20:30", &["foo"]),
    ("2014-10-05 10:20:30", &["foo"]),
    ("2014-10-06 10:20:30", &["foo"]),
    ("2014-10-08 10:20:30", &["foo"]),
    ("2014-10-09 10:20:30", &["foo"]),
    ("2014-10-10 10:20:30", &["foo"]),
    ("2014-10-11 10:20:30", &["foo"]),
    ("2014-10-20 10:20:30", &["foo"]),
    ("2014-10-22 10:20:30", &["foo"]),
    ("2014-11-08 10:20:30", &["foo"]),
    ("2014-11-10 10:20:30", &["foo"]),
    ("2014-11-12 10:20:30", &["foo"]),
    ("2014-11-13 10:20:30", &["foo"]),
    ("2014-11-13 10:20:30.1", &["bar"]),
    ("2014-11-15 10:20:30", &["foo", "bar"]),
    ("2014-11-18 10:20:30", &[]),
    ("2014-11-20 10:20:30", &[]),
    ("2014-11-21 10:20:30", &[]),
    ("2014-11-22 10:20:30", &[]),
    ("2015-09-01 10:20:30", &[]),
    ("2015-09-02 10:20:30", &[]),
    ("2015-09-05 10:20:30", &[]),
    ("2015-09-06 10:20:30", &[]),
    ("2015-09-08 10:20:30", &[]),
    ("2015-09-09 10:20:30", &[]),
    ("2015-09-10 10:20:30", &[]),
    ("2015-09-11 10:20:30", &[]),
    ("2015-09-20 10:20:30", &[]),
    ("2015-09-22 10:20:30", &[]),
    ("2015-08-08 10:20:30", &[]),
    ("2015-08-10 10:20:30", &[]),
    ("2015-08-12 10:20:30", &[]),
    ("2015-08-13 10:20:30", &[]),
    ("2015-08-13 10:20:30.1", &[]),
    ("2015-08-15 10:20:30", &[]),
    ("2015-08-18 10:20:30", &[]),
    ("2015-08-20 10:20:30", &[]),
    ("2015-08-21 10:20:30", &[]),
    ("2015-08-22 10:20:30", &[]),
    ("2015-10-01 10:20:30", &[]),
    ("2015-10-02 10:20:30", &[]),
    ("2015-10-05 10:20:30", &[]),
    ("2015-10-06 10:20:30", &[]),
    ("2015-10-08 10:20:30", &[]),
    ("2015-10-09 10:20:30", &[]),
    ("2015-10-10 10:20:30", &[]),
    ("2015-10-11 10:20:30", &[]),
    ("2015-10-20 10:20:30", &[]),
    ("2015-10-22 10:20:30", &[]),
    ("2015-10-22 10:20:30", &[]),
    ("2015-10-22 10:20:30", &["foo", "bar"]),
    ("2015-10-22 10:20:30", &["foo", "bar"]),
    ("2015-10-22 10:20:30", &["foo", "bar"]),
    ("2015-11-08 10:20:30", &[]),
    ("2015-11-10 10:20:30", &[]),
    ("2015-11-12 10:20:30", &[]),
    ("2015-11-13 10:20:30", &[]),
    ("2015-11-13 10:20:30.1", &[]),
    ("2015-11-15 10:20:30", &[]),
    ("2015-11-18 10:20:30", &[]),
    ("2015-11-20 10:20:30", &[]),
    ("2015-11-21 10:20:30", &[]),
    ("2015-11-22 10:20:30", &[]),
    ("2016-01-01 01:02:03", &[]),
    ("2016-01-01 01:03:03", &[]),
    ("2016-01-01 07:08:03", &[]),
    ("2016-01-03 07:02:03", &[]),
    ("2016-01-04 10:23:03", &[]),
    ("2016-01-04 11:23:03", &[]),
    ("2016-01-04 12:23:03", &[]),
    ("2016-01-04 12:24:03", &[]),
    ("2016-01-04 12:28:03", &[]),
    ("2016-01-04 12:30:03", &[]),
    ("2016-01-04 16:23:03", &[]),
    ("2016-01-05 09:02:03", &[]),
    ("2016-01-06 08:02:03", &[]),
    ("2016-01-07 10:02:03", &[]),
    ("2016-01-08 20:02:03", &[]),
    ("2016-01-09 21:02:03", &[]),
    ("2016-01-12 21:02:03", &[]),
    ("2016-01-12 21:08:03", &[]),
    ("2016-01-18 12:02:03", &[]),
];

/// restic sorts with a stable sort, so among equal times the earlier input
/// counts as newer; cfdr breaks ties by id (greater = newer), so ids count
/// down in input order.
fn items() -> Vec<Item> {
    FIXTURE
        .iter()
        .enumerate()
        .map(|(i, (time, tags))| {
            let time = format!("{}Z", time.replace(' ', "T"));
            let mut item = Item::new(
                format!("s{:03}", 999 - i),
                time.parse().unwrap(),
                Kind::Logical,
            );
            for t in *tags {
                item = item.tag(*t);
            }
            item
        })
        .collect()
}

/// The kept items as "time reasons" lines, newest first.
fn kept(policy: Policy) -> Vec<String> {
    let items = items();
    let plan = plan(
        &items,
        &[],
        &Config::with_policy(policy),
        "2016-02-01T00:00:00Z".parse().unwrap(),
    )
    .unwrap();
    assert_eq!(plan.decisions.len(), items.len());
    plan.decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| {
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            format!("{} {}", d.time, reasons.join(","))
        })
        .collect()
}

#[test]
fn keep_hourly_20() {
    // restic policy_keep_snapshots_5: {Hourly: 20}
    let want: Vec<String> = [
        "2016-01-18T12:02:03Z",
        "2016-01-12T21:08:03Z",
        "2016-01-09T21:02:03Z",
        "2016-01-08T20:02:03Z",
        "2016-01-07T10:02:03Z",
        "2016-01-06T08:02:03Z",
        "2016-01-05T09:02:03Z",
        "2016-01-04T16:23:03Z",
        "2016-01-04T12:30:03Z",
        "2016-01-04T11:23:03Z",
        "2016-01-04T10:23:03Z",
        "2016-01-03T07:02:03Z",
        "2016-01-01T07:08:03Z",
        "2016-01-01T01:03:03Z",
        "2015-11-22T10:20:30Z",
        "2015-11-21T10:20:30Z",
        "2015-11-20T10:20:30Z",
        "2015-11-18T10:20:30Z",
        "2015-11-15T10:20:30Z",
        "2015-11-13T10:20:30.1Z",
    ]
    .iter()
    .map(|t| format!("{t} keep-hourly"))
    .collect();
    assert_eq!(
        kept(Policy {
            keep_hourly: Count::Limited(20),
            ..Policy::default()
        }),
        want
    );
}

#[test]
fn keep_daily_2_weekly_2_monthly_6() {
    // restic policy_keep_snapshots_15
    let policy = Policy {
        keep_daily: Count::Limited(2),
        keep_weekly: Count::Limited(2),
        keep_monthly: Count::Limited(6),
        ..Policy::default()
    };
    assert_eq!(
        kept(policy),
        [
            "2016-01-18T12:02:03Z keep-daily,keep-weekly,keep-monthly",
            "2016-01-12T21:08:03Z keep-daily,keep-weekly",
            "2015-11-22T10:20:30Z keep-monthly",
            "2015-10-22T10:20:30Z keep-monthly",
            "2015-09-22T10:20:30Z keep-monthly",
            "2015-08-22T10:20:30Z keep-monthly",
            "2014-11-22T10:20:30Z keep-monthly",
        ]
    );
}

#[test]
fn keep_within_weekly() {
    // restic policy_keep_snapshots_32: {WithinWeekly: 1y2m3d3h}; note
    // 2016-01-03 is in ISO week 2015-W53.
    let policy = Policy {
        keep_within_weekly: "1y2m3d3h".parse().unwrap(),
        ..Policy::default()
    };
    let want: Vec<String> = [
        "2016-01-18T12:02:03Z",
        "2016-01-12T21:08:03Z",
        "2016-01-09T21:02:03Z",
        "2016-01-03T07:02:03Z",
        "2015-11-22T10:20:30Z",
        "2015-11-15T10:20:30Z",
        "2015-11-08T10:20:30Z",
        "2015-10-22T10:20:30Z",
        "2015-10-11T10:20:30Z",
        "2015-10-02T10:20:30Z",
        "2015-09-22T10:20:30Z",
        "2015-09-20T10:20:30Z",
        "2015-09-11T10:20:30Z",
        "2015-09-06T10:20:30Z",
        "2015-08-22T10:20:30Z",
        "2015-08-15T10:20:30Z",
        "2015-08-08T10:20:30Z",
        "2014-11-22T10:20:30Z",
        "2014-11-15T10:20:30Z",
    ]
    .iter()
    .map(|t| format!("{t} keep-within-weekly"))
    .collect();
    assert_eq!(kept(policy), want);
}

#[test]
fn unlimited_monthly_and_yearly_keep_the_oldest() {
    // restic policy_keep_snapshots_39: {Daily: 3, Weekly: 2, Monthly: -1, Yearly: -1}
    let policy = Policy {
        keep_daily: Count::Limited(3),
        keep_weekly: Count::Limited(2),
        keep_monthly: Count::Unlimited,
        keep_yearly: Count::Unlimited,
        ..Policy::default()
    };
    assert_eq!(
        kept(policy),
        [
            "2016-01-18T12:02:03Z keep-daily,keep-weekly,keep-monthly,keep-yearly",
            "2016-01-12T21:08:03Z keep-daily,keep-weekly",
            "2016-01-09T21:02:03Z keep-daily",
            "2015-11-22T10:20:30Z keep-monthly,keep-yearly",
            "2015-10-22T10:20:30Z keep-monthly",
            "2015-09-22T10:20:30Z keep-monthly",
            "2015-08-22T10:20:30Z keep-monthly",
            "2014-11-22T10:20:30Z keep-monthly,keep-yearly",
            "2014-10-22T10:20:30Z keep-monthly",
            "2014-09-22T10:20:30Z keep-monthly",
            "2014-08-22T10:20:30Z keep-monthly",
            "2014-08-08T10:20:30Z keep-monthly:oldest,keep-yearly:oldest",
        ]
    );
}

#[test]
fn within_anchor_is_the_newest_item_not_now() {
    // 7 days back from 2016-01-18 12:02:03, whatever `now` is.
    let policy = Policy {
        keep_within: CalendarDuration::days(7),
        ..Policy::default()
    };
    let items = items();
    for now in ["2016-01-19T00:00:00Z", "2030-01-01T00:00:00Z"] {
        let plan = plan(
            &items,
            &[],
            &Config::with_policy(policy.clone()),
            now.parse().unwrap(),
        )
        .unwrap();
        let kept: Vec<String> = plan
            .decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.time.to_string())
            .collect();
        assert_eq!(
            kept,
            [
                "2016-01-18T12:02:03Z",
                "2016-01-12T21:08:03Z",
                "2016-01-12T21:02:03Z"
            ]
        );
    }
}

#[test]
fn keep_tag_lists() {
    // restic semantics: "foo,bar" needs both tags; two lists are OR-ed;
    // tags are not counted. The newest complete item is kept by safety.
    let count = |lists: &[&str]| {
        let policy = Policy {
            keep_tag: lists.iter().map(|s| (*s).to_owned()).collect(),
            ..Policy::default()
        };
        let items = items();
        let plan = plan(
            &items,
            &[],
            &Config::with_policy(policy),
            "2016-02-01T00:00:00Z".parse().unwrap(),
        )
        .unwrap();
        plan.kept().count()
    };
    // 14 tagged "foo" only, 1 "bar" only, 4 "foo,bar"; + the newest.
    assert_eq!(count(&["foo"]), 18 + 1);
    assert_eq!(count(&["foo,bar"]), 4 + 1);
    assert_eq!(count(&["foo", "bar"]), 19 + 1);
    // Untagged: everything but the 19 tagged ones (the newest is untagged).
    assert_eq!(count(&[""]), FIXTURE.len() - 19);
}
