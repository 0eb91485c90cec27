//! The incident state machine: every change against every state (table),
//! and folds of random event sequences (proptest).
#![allow(clippy::unwrap_used)]

use cfdr_incident::{
    Change, EVENT_FORMAT, EntryKind, Error, Event, Incident, IncidentId, PostMortem, Severity,
    Status,
};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

fn t0() -> Timestamp {
    "2025-11-06T14:30:00Z".parse().unwrap()
}

fn id() -> IncidentId {
    IncidentId::parse("INC-20251106-001").unwrap()
}

fn event(seq: u64, minutes: i64, change: Change) -> Event {
    Event {
        format: EVENT_FORMAT,
        incident: id(),
        seq,
        at: t0() + SignedDuration::from_mins(minutes),
        recorded: t0() + SignedDuration::from_mins(minutes),
        author: "alice".into(),
        change,
    }
}

fn opened(halt: bool) -> Change {
    Change::Opened {
        title: "Database connection failures".into(),
        severity: Severity::P0,
        commander: None,
        halt,
        text: None,
    }
}

fn ack() -> Change {
    Change::Acknowledged { text: None }
}

fn post_mortem() -> Change {
    Change::PostMortem(PostMortem {
        root_cause: Some("max_connections exhausted".into()),
        lessons: Some(vec!["watch connection counts".into()]),
        ..PostMortem::default()
    })
}

/// Builds a record by applying `changes` after the opening (which halts
/// trading when `halt`); every state starts with one open action item.
fn state(halt: bool, changes: Vec<Change>) -> Incident {
    let mut inc = Incident::open(&event(1, 0, opened(halt))).unwrap();
    let mut all = vec![Change::ActionAdded {
        text: "add monitoring".into(),
        owner: None,
    }];
    all.extend(changes);
    for (n, c) in all.into_iter().enumerate() {
        inc.apply(&event(n as u64 + 2, n as i64 + 1, c)).unwrap();
    }
    inc
}

fn states() -> Vec<(&'static str, Incident)> {
    let resolved = || Change::Resolved { text: None };
    vec![
        ("investigating", state(false, vec![])),
        ("acked", state(false, vec![ack()])),
        (
            "identified",
            state(
                false,
                vec![Change::Identified {
                    root_cause: None,
                    text: None,
                }],
            ),
        ),
        (
            "mitigated",
            state(false, vec![ack(), Change::Mitigated { text: None }]),
        ),
        ("resolved", state(false, vec![resolved()])),
        ("resolved+pm", state(false, vec![resolved(), post_mortem()])),
        (
            "closed",
            state(
                false,
                vec![resolved(), post_mortem(), Change::Closed { text: None }],
            ),
        ),
        ("halted", state(true, vec![])),
        (
            "resolved+pm+halted",
            state(true, vec![resolved(), post_mortem()]),
        ),
    ]
}

fn changes() -> Vec<(&'static str, Change)> {
    vec![
        ("opened", opened(false)),
        ("acknowledged", ack()),
        ("note", Change::Note { text: "n".into() }),
        ("status-update", Change::StatusUpdate { text: "u".into() }),
        (
            "identified",
            Change::Identified {
                root_cause: Some("leak".into()),
                text: None,
            },
        ),
        ("mitigated", Change::Mitigated { text: None }),
        ("resolved", Change::Resolved { text: None }),
        (
            "reopened",
            Change::Reopened {
                reason: "errors again".into(),
            },
        ),
        ("closed", Change::Closed { text: None }),
        (
            "severity",
            Change::SeverityChanged {
                to: Severity::P2,
                reason: None,
            },
        ),
        ("commander", Change::CommanderChanged { to: "bob".into() }),
        ("halt-set", Change::HaltSet { reason: "r".into() }),
        ("halt-cleared", Change::HaltCleared { reason: "r".into() }),
        (
            "action-added",
            Change::ActionAdded {
                text: "t".into(),
                owner: None,
            },
        ),
        ("action-done", Change::ActionDone { number: 1 }),
        ("post-mortem", post_mortem()),
        (
            "linked",
            Change::Linked {
                backups: vec!["b1".into()],
                drills: vec![],
            },
        ),
        (
            "notification-failed",
            Change::NotificationFailed {
                channel: "slack".into(),
                about_seq: 1,
                attempts: 3,
                error: "HTTP 500".into(),
            },
        ),
    ]
}

/// Rows: changes; columns: the states above, in order. `y` legal, `n` not.
const TABLE: &[(&str, &str)] = &[
    //                        inv ack idf mit res rpm clo hlt rph
    ("opened", "nnnnnnnnn"),
    ("acknowledged", "ynynnnnyn"),
    ("note", "yyyyyyyyy"),
    ("status-update", "yyyyyynyy"),
    ("identified", "yynnnnnyn"),
    ("mitigated", "yyynnnnyn"),
    ("resolved", "yyyynnnyn"),
    ("reopened", "nnnnyynny"),
    ("closed", "nnnnnynnn"),
    ("severity", "yyyyyynyy"),
    ("commander", "yyyyyynyy"),
    ("halt-set", "yyyyyynnn"),
    ("halt-cleared", "nnnnnnnyy"),
    ("action-added", "yyyyyyyyy"),
    ("action-done", "yyyyyyyyy"),
    ("post-mortem", "yyyyyynyy"),
    ("linked", "yyyyyyyyy"),
    ("notification-failed", "yyyyyyyyy"),
];

fn status_after(change: &str, before: Status) -> Status {
    match change {
        "identified" => Status::Identified,
        "mitigated" => Status::Mitigated,
        "resolved" => Status::Resolved,
        "reopened" => Status::Investigating,
        "closed" => Status::Closed,
        _ => before,
    }
}

#[test]
fn every_change_against_every_state() {
    let states = states();
    let changes = changes();
    assert_eq!(TABLE.len(), changes.len(), "one row per change kind");
    let mut checked = 0;
    for ((name, change), (row, legal)) in changes.iter().zip(TABLE) {
        assert_eq!(name, row);
        for ((state_name, inc), expect) in states.iter().zip(legal.chars()) {
            let mut after = inc.clone();
            let ev = event(inc.last_seq + 1, 60, change.clone());
            let result = after.apply(&ev);
            match (expect, &result) {
                ('y', Ok(())) => {
                    assert_eq!(
                        after.status,
                        status_after(name, inc.status),
                        "{name} in {state_name}"
                    );
                    assert_eq!(after.last_seq, ev.seq);
                    assert_eq!(after.timeline.len(), inc.timeline.len() + 1);
                }
                ('n', Err(Error::IllegalTransition { reason, .. })) => {
                    assert_eq!(&after, inc, "a rejected change leaves the record as it was");
                    assert!(!reason.is_empty());
                }
                _ => panic!("{name} in state {state_name}: expected {expect}, got {result:?}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 18 * 9);
}

#[test]
fn rejections_say_why() {
    let closed = &states()[6].1;
    let mut c = closed.clone();
    let err = c
        .apply(&event(
            99,
            90,
            Change::Reopened {
                reason: "again".into(),
            },
        ))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "INC-20251106-001: cannot reopen: the incident is closed (post-mortem done); open a new incident if the problem is back"
    );

    let mut resolved = states()[4].1.clone();
    let err = resolved
        .apply(&event(99, 90, Change::Closed { text: None }))
        .unwrap_err();
    assert!(err.to_string().contains("no root cause recorded"), "{err}");

    let mut halted = states()[8].1.clone();
    let err = halted
        .apply(&event(99, 90, Change::Closed { text: None }))
        .unwrap_err();
    assert!(err.to_string().contains("resume trading"), "{err}");

    let mut inv = states()[0].1.clone();
    let err = inv
        .apply(&event(99, 90, Change::HaltCleared { reason: " ".into() }))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the reason for resuming trading must not be empty"
    );
    let err = inv
        .apply(&event(99, -5, Change::Note { text: "x".into() }))
        .unwrap_err();
    assert!(
        err.to_string().contains("before the incident was detected"),
        "{err}"
    );
    let err = inv
        .apply(&event(99, 5, Change::ActionDone { number: 0 }))
        .unwrap_err();
    assert!(err.to_string().contains("no action item 0"), "{err}");
}

#[test]
fn p0_needs_lessons_to_close_but_p3_does_not() {
    let rc_only = Change::PostMortem(PostMortem {
        root_cause: Some("typo".into()),
        ..PostMortem::default()
    });
    let mut p0 = state(
        false,
        vec![Change::Resolved { text: None }, rc_only.clone()],
    );
    assert!(
        p0.apply(&event(10, 30, Change::Closed { text: None }))
            .is_err()
    );
    let mut p3 = state(
        false,
        vec![
            Change::SeverityChanged {
                to: Severity::P3,
                reason: None,
            },
            Change::Resolved { text: None },
            rc_only,
        ],
    );
    p3.apply(&event(10, 30, Change::Closed { text: None }))
        .unwrap();
    assert_eq!(p3.status, Status::Closed);
    assert_eq!(p3.peak_severity, Severity::P0);
}

#[test]
fn halt_periods_add_up() {
    let mut inc = state(true, vec![]);
    let clear = |seq, m| {
        event(
            seq,
            m,
            Change::HaltCleared {
                reason: "ok".into(),
            },
        )
    };
    inc.apply(&clear(3, 13)).unwrap();
    inc.apply(&event(
        4,
        20,
        Change::HaltSet {
            reason: "again".into(),
        },
    ))
    .unwrap();
    assert!(inc.trading_halted());
    inc.apply(&clear(5, 22)).unwrap();
    assert_eq!(
        inc.trading_stopped(),
        (SignedDuration::from_mins(15), false)
    );
    assert_eq!(inc.halts[1].cleared_by.as_deref(), Some("alice"));
    // A resume recorded as happening before the halt is refused.
    inc.apply(&event(
        6,
        30,
        Change::HaltSet {
            reason: "3rd".into(),
        },
    ))
    .unwrap();
    assert!(inc.apply(&clear(7, 25)).is_err());
}

fn arb_change() -> impl Strategy<Value = Change> {
    // Mostly usable text, sometimes empty or blank (which must be refused).
    let text = prop_oneof![
        1 => Just(String::new()),
        1 => Just(" ".to_owned()),
        6 => "[a-z]{1,8}",
    ];
    let sev = prop_oneof![
        Just(Severity::P0),
        Just(Severity::P1),
        Just(Severity::P2),
        Just(Severity::P3)
    ];
    let opt = proptest::option::of(text.clone());
    // Lifecycle changes weigh more so that random runs reach resolved,
    // closed and reopened states.
    prop_oneof![
        1 => (text.clone(), sev.clone(), any::<bool>()).prop_map(|(title, severity, halt)| {
            Change::Opened {
                title,
                severity,
                commander: None,
                halt,
                text: None,
            }
        }),
        2 => opt.clone().prop_map(|text| Change::Acknowledged { text }),
        1 => text.clone().prop_map(|text| Change::Note { text }),
        1 => text.clone().prop_map(|text| Change::StatusUpdate { text }),
        2 => (opt.clone(), opt.clone())
            .prop_map(|(root_cause, text)| Change::Identified { root_cause, text }),
        2 => opt.clone().prop_map(|text| Change::Mitigated { text }),
        4 => opt.clone().prop_map(|text| Change::Resolved { text }),
        3 => text.clone().prop_map(|reason| Change::Reopened { reason }),
        4 => opt.clone().prop_map(|text| Change::Closed { text }),
        1 => (sev, opt.clone()).prop_map(|(to, reason)| Change::SeverityChanged { to, reason }),
        1 => text.clone().prop_map(|to| Change::CommanderChanged { to }),
        2 => text.clone().prop_map(|reason| Change::HaltSet { reason }),
        3 => text.clone().prop_map(|reason| Change::HaltCleared { reason }),
        1 => (text.clone(), opt.clone()).prop_map(|(text, owner)| Change::ActionAdded { text, owner }),
        1 => (0usize..4).prop_map(|number| Change::ActionDone { number }),
        4 => (opt.clone(), opt.clone(), any::<bool>()).prop_map(|(root_cause, summary, lessons)| {
            Change::PostMortem(PostMortem {
                root_cause,
                summary,
                lessons: lessons.then(|| vec!["l".into()]),
                ..PostMortem::default()
            })
        }),
        1 => proptest::collection::vec("[a-z]{1,4}", 0..2).prop_map(|backups| Change::Linked {
            backups,
            drills: vec![]
        }),
        1 => Just(Change::NotificationFailed {
            channel: "slack".into(),
            about_seq: 1,
            attempts: 1,
            error: "e".into()
        }),
    ]
}

fn arb_events() -> impl Strategy<Value = Vec<Event>> {
    // Mostly a valid opening first, so that the rest is checked against a
    // live record; sometimes none, or a random first event.
    let first = proptest::option::weighted(
        0.9,
        (any::<bool>(), any::<bool>()).prop_map(|(halt, p0)| Change::Opened {
            title: "t".into(),
            severity: if p0 { Severity::P0 } else { Severity::P3 },
            commander: None,
            halt,
            text: None,
        }),
    );
    let rest =
        proptest::collection::vec((arb_change(), -30i64..600, 0u64..3, any::<bool>()), 0..60);
    (first, rest).prop_map(|(first, rest)| {
        let head = first.map(|c| (c, 0, 1, false));
        let raw: Vec<_> = head.into_iter().chain(rest).collect();
        {
            let mut seq = 0;
            raw.into_iter()
                .map(|(change, minutes, step, blank_author)| {
                    seq += step; // 0 repeats a number: must be rejected
                    let mut e = event(seq, minutes, change);
                    if blank_author {
                        e.author = String::new();
                    }
                    e
                })
                .collect()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Folding never panics; rejected events leave no trace; the timeline
    /// is ordered by time then sequence; nothing but follow-ups happens
    /// after closing; the halt flag matches the halt periods.
    #[test]
    fn fold_of_random_events(events in arb_events()) {
        let (inc, rejected) = Incident::fold(&events);
        let Some(inc) = inc else {
            prop_assert_eq!(rejected.len(), events.len());
            return Ok(());
        };
        prop_assert_eq!(inc.timeline.len() + rejected.len(), events.len());
        prop_assert!(inc.timeline.windows(2).all(|w| (w[0].at, w[0].seq) < (w[1].at, w[1].seq)));
        prop_assert!(inc.timeline.iter().all(|e| e.at >= inc.detected && !e.author.is_empty()));
        if let Some(close) = inc.timeline.iter().find(|e| e.kind == EntryKind::Closed) {
            prop_assert_eq!(inc.status, Status::Closed);
            prop_assert!(!inc.trading_halted());
            prop_assert!(inc.root_cause.is_some());
            prop_assert!(inc.timeline.iter().filter(|e| e.seq > close.seq).all(|e| matches!(
                e.kind,
                EntryKind::Note | EntryKind::ActionItem | EntryKind::Link | EntryKind::NotificationFailed
            )));
        }
        prop_assert_eq!(inc.trading_halted(), inc.halts.last().is_some_and(|h| h.to.is_none()));
        prop_assert!(inc.halts.iter().all(|h| h.to.is_none_or(|to| to >= h.from)));
        prop_assert!(inc.halts.iter().rev().skip(1).all(|h| h.to.is_some()));
        prop_assert!(inc.peak_severity <= inc.severity);
        // Acknowledgements: at most one, never after resolution.
        let acks = inc.timeline.iter().filter(|e| e.kind == EntryKind::Acknowledged).count();
        prop_assert!(acks <= 1);
        prop_assert_eq!(acks == 1, inc.acknowledged.is_some());
        // Folding is the same as applying one by one.
        let mut again: Option<Incident> = None;
        for e in &events {
            match &mut again {
                None => again = Incident::open(e).ok(),
                Some(i) => { let _ = i.apply(e); }
            }
        }
        prop_assert_eq!(again.as_ref(), Some(&inc));
    }
}
