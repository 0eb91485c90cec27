//! Inputs that made a fuzz target of `fuzz/` fail (docs/reliability.md,
//! "Hostile input"), kept under `tests/fuzz/` and fed to the same parser.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cfdr_incident::{Calendar, Deadline};
use jiff::Timestamp;

/// A deadline of four billion business days: due on the last day of the
/// supported calendar (year 9999), reached in bounded time instead of
/// looping past it.
#[test]
fn a_huge_business_day_deadline_ends_at_the_calendar_end() {
    let text = include_str!("fuzz/deadline-huge-business-days.txt");
    let deadline: Deadline = text.parse().unwrap();
    assert_eq!(deadline, Deadline::BusinessDays(4_000_000_000));
    let from: Timestamp = "2026-06-30T12:00:00Z".parse().unwrap();
    let started = Instant::now();
    let due = deadline.due(from, &Calendar::default());
    assert_eq!(due.strftime("%Y").to_string(), "9999");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// Holidays on the last days of the calendar: the next business day does
/// not exist, so the deadline is the last day rather than a hang.
#[test]
fn holidays_at_the_calendar_end_do_not_hang() {
    let calendar = Calendar {
        timezone: "UTC".into(),
        holidays: vec!["9999-12-30".parse().unwrap(), "9999-12-31".parse().unwrap()],
    };
    let due = Deadline::BusinessDays(1).due(Timestamp::MAX, &calendar);
    assert_eq!(due.strftime("%Y").to_string(), "9999");
}
