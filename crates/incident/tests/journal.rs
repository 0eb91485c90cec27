//! The event log in real repositories: id allocation, concurrent writers,
//! corrupt objects, unknown ids.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use cfdr_incident::{Change, Error, IncidentId, Journal, Severity, Stamp, event_key};
use cfdr_testing::{Backend, TestLocation};
use support::{at, ts};

#[tokio::test]
async fn ids_are_allocated_per_day_and_survive_a_reload() {
    let j = support::memory_journal("ids");
    let a = support::open(&j, Severity::P2, at("10:00")).await;
    let b = support::open(&j, Severity::P3, at("11:00")).await;
    let c = support::open(&j, Severity::P1, ts("2025-11-07T00:00:00Z")).await;
    assert_eq!(a.incident.id.as_str(), "INC-20251106-001");
    assert_eq!(b.incident.id.as_str(), "INC-20251106-002");
    assert_eq!(c.incident.id.as_str(), "INC-20251107-001");
    let listing = j.list().await.unwrap();
    let ids: Vec<_> = listing
        .incidents
        .iter()
        .map(|l| l.incident.id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["INC-20251106-001", "INC-20251106-002", "INC-20251107-001"]
    );
    assert!(listing.problems.is_empty());
    assert_eq!(j.load(&b.incident.id).await.unwrap().incident, b.incident);
}

#[tokio::test]
async fn events_are_create_only_json_objects_in_the_documented_layout() {
    let j = support::memory_journal("layout");
    let a = support::open(&j, Severity::P0, at("14:30")).await;
    let id = a.incident.id;
    support::append(&j, &id, at("14:31"), Change::Acknowledged { text: None }).await;
    let keys: Vec<_> = j
        .store()
        .list("incidents/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(
        keys,
        [
            "incidents/INC-20251106-001/00000001.json",
            "incidents/INC-20251106-001/00000002.json"
        ]
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&j.store().get(&keys[1]).await.unwrap()).unwrap();
    assert_eq!(doc["kind"], "acknowledged");
    assert_eq!(doc["seq"], 2);
    assert_eq!(doc["author"], "bob");
    assert_eq!(doc["at"], "2025-11-06T14:31:00Z");
    // Event objects are never overwritten.
    let again = j.store().create_if_absent(&keys[1], "x").await;
    assert!(matches!(
        again,
        Err(cfdr_storage::Error::AlreadyExists { .. })
    ));
}

#[tokio::test]
async fn bad_input_is_refused_with_a_message() {
    let j = support::memory_journal("bad");
    assert_eq!(
        "P7".parse::<Severity>().unwrap_err().to_string(),
        "unknown severity \"P7\": use P0 (critical), P1 (high), P2 (medium) or P3 (low)"
    );
    assert_eq!("p1".parse::<Severity>().unwrap(), Severity::P1);
    let empty = j
        .open(
            &Stamp::new("alice", at("10:00")),
            support::opened("  ", Severity::P1, false),
        )
        .await
        .unwrap_err();
    assert_eq!(empty.to_string(), "the title must not be empty");
    let no_author = j
        .open(
            &Stamp::new("", at("10:00")),
            support::opened("t", Severity::P1, false),
        )
        .await
        .unwrap_err();
    assert_eq!(no_author.to_string(), "the author must not be empty");

    let unknown = IncidentId::parse("INC-20251106-042").unwrap();
    let err = j.load(&unknown).await.unwrap_err();
    assert!(matches!(err, Error::UnknownIncident { .. }), "{err}");
    let err = j
        .append(
            &unknown,
            &Stamp::new("bob", at("10:00")),
            Change::Note { text: "x".into() },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no incident INC-20251106-042 in the repository: `cfdr-incident list` shows the known ids"
    );
    for bad in [
        "INC-2025116-001",
        "inc-20251106-001",
        "INC-20251306-001",
        "INC-20251106-1",
        "x",
    ] {
        assert!(IncidentId::parse(bad).is_err(), "{bad}");
    }
    // Nothing was stored by the refused calls.
    assert!(j.store().list("incidents/").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_corrupt_event_is_reported_with_its_key_and_the_rest_stays_readable() {
    let j = support::memory_journal("corrupt");
    let a = support::open(&j, Severity::P1, at("10:00")).await;
    let id = a.incident.id;
    support::append(&j, &id, at("10:01"), Change::Acknowledged { text: None }).await;
    support::append(&j, &id, at("10:02"), Change::Note { text: "n".into() }).await;
    let bad = event_key(&id, 2);
    j.store().put(&bad, "{ not json").await.unwrap();
    j.store()
        .put("incidents/README.txt", "stray")
        .await
        .unwrap();

    let loaded = j.load(&id).await.unwrap();
    assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
    assert_eq!(loaded.problems[0].key, bad);
    assert!(
        loaded.problems[0]
            .reason
            .contains("not a valid event document")
    );
    assert_eq!(
        loaded.incident.acknowledged, None,
        "the corrupt ack is skipped"
    );
    assert_eq!(loaded.incident.timeline.len(), 2);

    // Appends continue after the corrupt object instead of colliding with it.
    let next = support::append(&j, &id, at("10:05"), Change::Acknowledged { text: None }).await;
    assert_eq!(next.event.seq, 4);

    let listing = j.list().await.unwrap();
    assert_eq!(listing.incidents.len(), 1);
    assert_eq!(listing.incidents[0].problems.len(), 1);
    assert_eq!(listing.problems.len(), 1, "the stray object");
    assert_eq!(listing.problems[0].key, "incidents/README.txt");

    // An incident whose opening is unreadable is reported, others still list.
    let b = support::open(&j, Severity::P3, at("11:00")).await;
    j.store()
        .put(&event_key(&b.incident.id, 1), "garbage")
        .await
        .unwrap();
    let err = j.load(&b.incident.id).await.unwrap_err();
    assert!(err.to_string().contains("00000001.json"), "{err}");
    let listing = j.list().await.unwrap();
    assert_eq!(listing.incidents.len(), 1);
    assert!(
        listing
            .problems
            .iter()
            .any(|p| p.reason.contains("cannot be read"))
    );
}

#[tokio::test]
async fn an_event_for_another_incident_is_not_mixed_in() {
    let j = support::memory_journal("foreign");
    let a = support::open(&j, Severity::P1, at("10:00")).await;
    let b = support::open(&j, Severity::P1, at("10:00")).await;
    // Copy B's first event under A's third key.
    let foreign = j.store().get(&event_key(&b.incident.id, 1)).await.unwrap();
    support::append(
        &j,
        &a.incident.id,
        at("10:01"),
        Change::Note { text: "n".into() },
    )
    .await;
    j.store()
        .put(&event_key(&a.incident.id, 3), foreign)
        .await
        .unwrap();
    let loaded = j.load(&a.incident.id).await.unwrap();
    assert_eq!(loaded.problems.len(), 1);
    assert!(
        loaded.problems[0]
            .reason
            .contains("holds event 1 of INC-20251106-002")
    );
}

#[tokio::test]
async fn halt_state_lists_only_incidents_that_hold_the_halt() {
    let j = support::memory_journal("halting");
    let a = j
        .open(
            &Stamp::new("alice", at("10:00")),
            support::opened("breach", Severity::P0, true),
        )
        .await
        .unwrap();
    support::open(&j, Severity::P2, at("10:05")).await;
    let state = j.halt_state().await.unwrap();
    assert!(state.trading_halted());
    assert_eq!(state.halting.len(), 1);
    assert_eq!(state.halting[0].id, a.incident.id);
    assert!(state.damaged.is_empty());
    support::append(
        &j,
        &a.incident.id,
        at("11:00"),
        Change::HaltCleared {
            reason: "keys rotated".into(),
        },
    )
    .await;
    let state = j.halt_state().await.unwrap();
    assert!(!state.trading_halted(), "{:?}", state.reasons());
    assert!(state.halting.is_empty());
}

/// The damage a repository can do to the event that holds a halt: a
/// flipped byte, a cut-off object, an empty one. Each keeps trading halted
/// and names the key; other incidents stay readable.
#[tokio::test]
async fn a_damaged_halt_event_keeps_trading_halted_and_names_its_key() {
    for (what, damage) in [
        ("flipped byte", Damage::Flip),
        ("truncated", Damage::Truncate),
        ("empty", Damage::Empty),
    ] {
        let j = support::memory_journal("damaged-halt");
        // A P2 incident (no halt at opening) that halts trading later.
        let inc = support::open(&j, Severity::P2, at("10:00")).await.incident;
        let halt = support::append(
            &j,
            &inc.id,
            at("10:01"),
            Change::HaltSet {
                reason: "odd fills".into(),
            },
        )
        .await;
        support::append(&j, &inc.id, at("10:02"), Change::Note { text: "n".into() }).await;
        let other = support::open(&j, Severity::P3, at("10:03")).await.incident;
        assert!(j.halt_state().await.unwrap().trading_halted());

        let key = event_key(&inc.id, halt.event.seq);
        let bytes = j.store().get(&key).await.unwrap().to_vec();
        j.store().put(&key, damage.apply(bytes)).await.unwrap();

        let state = j.halt_state().await.unwrap();
        assert!(state.trading_halted(), "{what}: {state:?}");
        assert!(
            state.halting.is_empty(),
            "{what}: the halt event is unreadable"
        );
        assert_eq!(state.damaged.len(), 1, "{what}: {:?}", state.damaged);
        assert_eq!(state.damaged[0].key, key, "{what}");
        let reasons = state.reasons().join("\n");
        assert!(
            reasons.contains(&key) && reasons.contains("counts as a trading halt"),
            "{what}: {reasons}"
        );
        // The listing says which incident is damaged; the other is whole.
        let listing = j.list().await.unwrap();
        let damaged: Vec<_> = listing
            .incidents
            .iter()
            .filter(|l| l.is_damaged())
            .map(|l| l.incident.id.clone())
            .collect();
        assert_eq!(damaged, std::slice::from_ref(&inc.id), "{what}");
        assert!(listing.incidents.iter().any(|l| l.incident.id == other.id));
    }
}

#[tokio::test]
async fn an_unreadable_opening_event_that_halts_keeps_trading_halted() {
    let j = support::memory_journal("damaged-open");
    let opened = j
        .open(
            &Stamp::new("alice", at("10:00")),
            support::opened("breach", Severity::P0, true),
        )
        .await
        .unwrap();
    let key = event_key(&opened.incident.id, 1);
    let bytes = j.store().get(&key).await.unwrap().to_vec();
    j.store()
        .put(&key, Damage::Truncate.apply(bytes))
        .await
        .unwrap();
    let state = j.halt_state().await.unwrap();
    assert!(state.trading_halted());
    assert!(state.halting.is_empty());
    assert_eq!(state.damaged.len(), 1, "{:?}", state.damaged);
    assert!(
        state.damaged[0]
            .key
            .starts_with("incidents/INC-20251106-001/")
            && state.damaged[0].reason.contains("00000001.json"),
        "{:?}",
        state.damaged
    );
}

#[tokio::test]
async fn a_stray_object_outside_incident_folders_is_reported_but_does_not_halt() {
    let j = support::memory_journal("stray");
    support::open(&j, Severity::P3, at("10:00")).await;
    j.store()
        .put("incidents/README.txt", "stray")
        .await
        .unwrap();
    let listing = j.list().await.unwrap();
    assert_eq!(listing.damaged().len(), 1);
    assert!(!listing.halt_state().trading_halted());
    // The same object inside an incident's folder may be a misnamed event.
    j.store()
        .put("incidents/INC-20251106-001/3.json", "stray")
        .await
        .unwrap();
    let state = j.halt_state().await.unwrap();
    assert!(state.trading_halted());
    assert_eq!(state.damaged[0].key, "incidents/INC-20251106-001/3.json");
}

#[derive(Clone, Copy)]
enum Damage {
    Flip,
    Truncate,
    Empty,
}

impl Damage {
    fn apply(self, mut bytes: Vec<u8>) -> Vec<u8> {
        match self {
            // A quote in the middle of the document turns into another byte.
            Damage::Flip => {
                let at = bytes.iter().rposition(|b| *b == b'"').unwrap();
                bytes[at] ^= 0x01;
                bytes
            }
            Damage::Truncate => {
                bytes.truncate(bytes.len() / 2);
                bytes
            }
            Damage::Empty => Vec::new(),
        }
    }
}

/// Writers on one incident at once, as tasks with their own store handles:
/// every event lands exactly once, numbered 1..=N without gaps, and the
/// state machine saw each against all earlier ones.
async fn concurrent_writers(backend: Backend, name: &str) {
    let Some(loc) = TestLocation::new(backend, name) else {
        return;
    };
    let journal = || Journal::new(loc.options.build().unwrap());
    let opened = support::open(&journal(), Severity::P1, at("09:00")).await;
    let id = opened.incident.id;
    const WRITERS: usize = 4;
    const EACH: usize = 6;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (j, id) = (journal(), id.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let stamp = Stamp::new(format!("writer{w}"), at("09:30"));
                j.append(
                    &id,
                    &stamp,
                    Change::Note {
                        text: format!("w{w}-{n}"),
                    },
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let loaded = journal().load(&id).await.unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let seqs: Vec<u64> = loaded.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=(WRITERS * EACH + 1) as u64).collect::<Vec<_>>());
    let notes: BTreeSet<String> = loaded
        .incident
        .timeline
        .iter()
        .skip(1)
        .map(|e| e.text.clone())
        .collect();
    assert_eq!(notes.len(), WRITERS * EACH);
    let order: Vec<_> = loaded
        .incident
        .timeline
        .iter()
        .map(|e| (e.at, e.seq))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "time then sequence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing_on_fs() {
    concurrent_writers(Backend::Fs, "incident-concurrent-fs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing_on_s3_moto() {
    concurrent_writers(Backend::S3Moto, "incident-concurrent-moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing_in_memory() {
    concurrent_writers(Backend::Memory, "incident-concurrent-memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_get_distinct_ids() {
    let j = support::memory_journal("concurrent-open");
    let mut tasks = Vec::new();
    for n in 0..8 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            j.open(
                &Stamp::new("a", at("12:00")),
                support::opened(&format!("i{n}"), Severity::P3, false),
            )
            .await
            .unwrap()
            .incident
            .id
        }));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 8);
    assert_eq!(ids.last().unwrap().as_str(), "INC-20251106-008");
}
