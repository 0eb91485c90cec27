//! SLA checks with an exact clock, around business-day and weekend edges.
#![allow(clippy::unwrap_used)]

mod support;

use cfdr_incident::{BreachKind, Calendar, Change, Deadline, Severity, SlaPolicy};
use jiff::SignedDuration;
use support::ts;

/// 2025-11-07 is a Friday.
#[test]
fn one_business_day_skips_weekends_and_holidays() {
    let cal = Calendar::default();
    let due = |from: &str| cal.add_business_days(ts(from), 1).to_string();
    assert_eq!(
        due("2025-11-06T17:00:00Z"),
        "2025-11-07T17:00:00Z",
        "Thu -> Fri"
    );
    assert_eq!(
        due("2025-11-07T17:00:00Z"),
        "2025-11-10T17:00:00Z",
        "Fri -> Mon"
    );
    assert_eq!(
        due("2025-11-07T23:59:59Z"),
        "2025-11-10T23:59:59Z",
        "late Fri -> Mon"
    );
    assert_eq!(
        due("2025-11-08T10:00:00Z"),
        "2025-11-11T00:00:00Z",
        "Sat counts from Mon 00:00"
    );
    assert_eq!(
        due("2025-11-09T23:59:00Z"),
        "2025-11-11T00:00:00Z",
        "Sun counts from Mon 00:00"
    );
    assert_eq!(
        due("2025-11-10T00:00:00Z"),
        "2025-11-11T00:00:00Z",
        "Mon 00:00 is a business day"
    );
    assert_eq!(
        cal.add_business_days(ts("2025-11-07T09:00:00Z"), 3)
            .to_string(),
        "2025-11-12T09:00:00Z"
    );

    let holidays = Calendar {
        holidays: vec!["2025-11-10".parse().unwrap()],
        ..Calendar::default()
    };
    assert_eq!(
        holidays
            .add_business_days(ts("2025-11-07T17:00:00Z"), 1)
            .to_string(),
        "2025-11-11T17:00:00Z",
        "Fri -> Tue over a Monday holiday"
    );
    // In New York, Friday 17:00 local is 22:00 UTC; the weekend is local.
    let ny = Calendar {
        timezone: "America/New_York".into(),
        ..Calendar::default()
    };
    assert_eq!(
        ny.add_business_days(ts("2025-11-07T22:00:00Z"), 1)
            .to_string(),
        "2025-11-10T22:00:00Z"
    );
    // Saturday 01:00 UTC is still Friday evening in New York.
    assert_eq!(
        ny.add_business_days(ts("2025-11-08T01:00:00Z"), 1)
            .to_string(),
        "2025-11-11T01:00:00Z"
    );
}

#[tokio::test]
async fn p3_acknowledgement_is_due_one_business_day_later() {
    let j = support::memory_journal("sla-p3");
    let a = support::open(&j, Severity::P3, ts("2025-11-07T17:00:00Z")).await;
    let sla = SlaPolicy::default();
    assert_eq!(
        sla.acknowledge_due(&a.incident).to_string(),
        "2025-11-10T17:00:00Z"
    );
    assert!(
        sla.check(&a.incident, ts("2025-11-09T12:00:00Z"))
            .is_empty(),
        "weekend"
    );
    assert!(
        sla.check(&a.incident, ts("2025-11-10T17:00:00Z"))
            .is_empty(),
        "due, not yet late"
    );
    let b = sla.check(&a.incident, ts("2025-11-10T17:00:01Z"));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].kind, BreachKind::Acknowledgement);
    assert_eq!(b[0].overdue_by, SignedDuration::from_secs(1));
    assert_eq!(
        b[0].to_string(),
        "INC-20251107-001 (P3): acknowledgement overdue by 1s (due 2025-11-10T17:00:00Z)"
    );
}

#[tokio::test]
async fn acknowledgement_deadlines_per_severity() {
    let j = support::memory_journal("sla-ack");
    let sla = SlaPolicy::default();
    let t0 = ts("2025-11-06T14:30:00Z");
    for (s, mins) in [(Severity::P0, 5), (Severity::P1, 60), (Severity::P2, 240)] {
        let a = support::open(&j, s, t0).await;
        let due = t0 + SignedDuration::from_mins(mins);
        assert_eq!(sla.acknowledge_due(&a.incident), due, "{s}");
        let late = sla.check(&a.incident, due + SignedDuration::from_secs(1));
        assert!(
            late.iter().any(|b| b.kind == BreachKind::Acknowledgement),
            "{s}"
        );
        // Acknowledged in time: no acknowledgement breach, ever.
        let acked =
            support::append(&j, &a.incident.id, due, Change::Acknowledged { text: None }).await;
        let later = sla.check(&acked.incident, due + SignedDuration::from_hours(1));
        assert!(
            later.iter().all(|b| b.kind != BreachKind::Acknowledgement),
            "{s}"
        );
    }
    // Resolved before anyone acknowledged: nothing left to acknowledge.
    let a = support::open(&j, Severity::P2, t0).await;
    let r = support::append(&j, &a.incident.id, t0, Change::Resolved { text: None }).await;
    assert!(
        sla.check(&r.incident, t0 + SignedDuration::from_hours(48))
            .is_empty()
    );
}

#[tokio::test]
async fn status_updates_every_15_minutes_for_p0_and_p1_only() {
    let j = support::memory_journal("sla-updates");
    let sla = SlaPolicy::default();
    let t0 = ts("2025-11-06T14:30:00Z");
    let m = |n| t0 + SignedDuration::from_mins(n);
    let p0 = support::open(&j, Severity::P0, t0).await;
    let id = p0.incident.id.clone();
    support::append(&j, &id, m(1), Change::Acknowledged { text: None }).await;
    // A note is not a status update.
    let inc = support::append(
        &j,
        &id,
        m(10),
        Change::Note {
            text: "checking logs".into(),
        },
    )
    .await
    .incident;
    assert!(sla.check(&inc, m(16)).is_empty());
    let b = sla.check(&inc, m(17));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].kind, BreachKind::StatusUpdate);
    assert_eq!(b[0].due, m(16));
    let inc = support::append(
        &j,
        &id,
        m(17),
        Change::StatusUpdate {
            text: "failing over".into(),
        },
    )
    .await
    .incident;
    assert!(sla.check(&inc, m(32)).is_empty());
    assert_eq!(sla.check(&inc, m(33)).len(), 1);

    // P2: no regular updates required.
    let p2 = support::open(&j, Severity::P2, t0).await;
    let p2 = support::append(
        &j,
        &p2.incident.id,
        m(1),
        Change::Acknowledged { text: None },
    )
    .await;
    assert!(sla.check(&p2.incident, m(200)).is_empty());
}

#[tokio::test]
async fn post_mortem_within_24_hours_for_p0_and_p1() {
    let j = support::memory_journal("sla-pm");
    let sla = SlaPolicy::default();
    let t0 = ts("2025-11-06T14:30:00Z");
    let h = |n| t0 + SignedDuration::from_hours(n);
    let id = support::runbook_example(&j).await; // P0, resolved 14:50
    let inc = j.load(&id).await.unwrap().incident;
    let resolved = inc.resolved.unwrap();
    assert!(
        sla.check(&inc, resolved + SignedDuration::from_hours(24))
            .is_empty()
    );
    let b = sla.check(&inc, resolved + SignedDuration::from_hours(25));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].kind, BreachKind::PostMortem);
    // Closing records the post-mortem as done.
    let closed = support::append(&j, &id, h(30), Change::Closed { text: None }).await;
    assert!(sla.check(&closed.incident, h(100)).is_empty());

    // P2 needs no post-mortem.
    let p2 = support::open(&j, Severity::P2, t0).await;
    let p2 = support::append(&j, &p2.incident.id, t0, Change::Resolved { text: None }).await;
    assert!(sla.check(&p2.incident, h(100)).is_empty());
}

#[test]
fn deadlines_and_policy_are_configurable() {
    let cfg: cfdr_incident::IncidentConfig = toml::from_str(
        r#"
        halt-on-p0 = false
        [sla]
        acknowledge = ["1m", "30m", "2h", "2 business days"]
        update-every = "10m"
        postmortem-within = "3 business days"
        postmortem-severities = ["P0", "P1", "P2"]
        [sla.calendar]
        timezone = "Europe/Zurich"
        holidays = ["2025-12-25"]
        "#,
    )
    .unwrap();
    cfg.validate().unwrap();
    assert!(!cfg.halt_on_p0);
    assert_eq!(cfg.sla.acknowledge[3], Deadline::BusinessDays(2));
    assert_eq!(
        cfg.sla.acknowledge[1],
        Deadline::Duration(SignedDuration::from_mins(30))
    );
    assert_eq!(cfg.sla.postmortem_within.to_string(), "3 business days");
    assert_eq!(
        Deadline::Duration(SignedDuration::from_mins(5)).to_string(),
        "5m"
    );

    for (text, want) in [
        (
            "[sla]\nacknowledge = [\"5m\", \"1h\", \"4h\", \"soon\"]",
            "soon",
        ),
        ("[sla]\nupdate-every = \"-5m\"", "negative"),
        (
            "[sla.calendar]\ntimezone = \"Mars/Olympus\"",
            "Mars/Olympus",
        ),
        ("[routes]\nP0 = [\"pager\"]", "pager"),
        (
            "[slack]\nwebhook-url = \"https://hooks.slack.com/x\"",
            "webhook-url",
        ),
        ("[pagerduty]\nrouting-key = \"abc\"", "routing-key"),
    ] {
        let err = toml::from_str::<cfdr_incident::IncidentConfig>(text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map_err(|e| e.to_string()))
            .unwrap_err();
        assert!(err.contains(want), "{text}: {err}");
    }
}
