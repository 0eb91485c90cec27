//! The guard's incremental readers against objects written in their
//! contract formats: the incident log (same verdict as the journal, reading
//! only new objects), DR drill reports, off-region copy states, the WAL
//! stream state and operation markers.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cfdr_guard::records::{self, COPY_STATE_PREFIX, DRILLS_PREFIX, WAL_STREAM_STATE_KEY};
use cfdr_guard::{BackupView, CopyView, DrillView, IncidentView};
use cfdr_incident::{
    Change, EVENT_FORMAT, Event, IncidentId, Journal, PostMortem, Severity, Stamp, event_key,
};
use cfdr_retention::Lsn;
use cfdr_storage::operations::{Operation, OperationMarker};
use cfdr_storage::{StorageOptions, Store};
use cfdr_testing::{Backend, TestLocation};
use jiff::Timestamp;

fn store(name: &str) -> Store {
    let dir = tempfile::tempdir().unwrap().keep();
    StorageOptions::from_url(format!("file://{}/{name}", dir.display()))
        .build()
        .unwrap()
}

fn now() -> Timestamp {
    "2026-12-01T12:00:00Z".parse().unwrap()
}

/// The view's verdict and the journal's, side by side.
async fn both(view: &mut IncidentView, journal: &Journal) -> (bool, Vec<String>, usize) {
    let mine = view.refresh(journal.store()).await.unwrap();
    let theirs = journal.halt_state().await.unwrap();
    let mut ids: Vec<String> = mine.halting.iter().map(|(id, _)| id.to_string()).collect();
    ids.sort();
    let mut want: Vec<String> = theirs.halting.iter().map(|i| i.id.to_string()).collect();
    want.sort();
    assert_eq!(ids, want, "halting incidents");
    let keys: Vec<&str> = mine.damaged.iter().map(|p| p.key.as_str()).collect();
    let want: Vec<&str> = theirs.damaged.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, want, "damaged objects");
    let halted = !mine.halting.is_empty() || !mine.damaged.is_empty();
    assert_eq!(halted, theirs.trading_halted());
    (halted, ids, mine.open.len())
}

#[tokio::test]
async fn the_incident_view_agrees_with_the_journal_and_reads_only_new_objects() {
    let store = store("incidents");
    let journal = Journal::new(store.clone());
    let mut view = IncidentView::default();
    assert_eq!(both(&mut view, &journal).await, (false, vec![], 0));
    assert_eq!(view.requests, 1, "an empty log costs one listing");

    let stamp = Stamp::new("alice", now());
    let opened = |title: &str, halt: bool| Change::Opened {
        title: title.into(),
        severity: Severity::P1,
        commander: None,
        halt,
        text: None,
    };
    let a = journal
        .open(&stamp, opened("keys leaked", true))
        .await
        .unwrap()
        .incident;
    let b = journal
        .open(&stamp, opened("slow disk", false))
        .await
        .unwrap()
        .incident;
    let (halted, ids, open) = both(&mut view, &journal).await;
    assert!(halted);
    assert_eq!((ids, open), (vec![a.id.to_string()], 2));
    let before = view.requests;
    both(&mut view, &journal).await;
    assert_eq!(
        view.requests - before,
        3,
        "nothing new: `incidents/` and each open incident listed one level deep, no read"
    );

    // A new event: the same listings and one read.
    let before = view.requests;
    journal
        .append(
            &a.id,
            &stamp,
            Change::HaltCleared {
                reason: "rotated".into(),
            },
        )
        .await
        .unwrap();
    assert!(!both(&mut view, &journal).await.0);
    assert_eq!(view.requests - before, 4);

    // A damaged event holds the halt; repaired in place, it no longer does.
    let key = event_key(&b.id, 2);
    store.put(&key, "{\"format\":1,\"inc").await.unwrap();
    let (halted, ..) = both(&mut view, &journal).await;
    assert!(halted, "an unreadable event counts as a halt");
    store.delete_many([key.as_str()]).await.unwrap();
    journal
        .append(
            &b.id,
            &stamp,
            Change::HaltSet {
                reason: "disk full".into(),
            },
        )
        .await
        .unwrap();
    let (halted, ids, _) = both(&mut view, &journal).await;
    assert!(halted);
    assert_eq!(ids, vec![b.id.to_string()]);
    // Resolved, reopened and halted again: seen at once.
    for change in [
        Change::HaltCleared {
            reason: "ok".into(),
        },
        Change::Resolved { text: None },
        Change::Reopened {
            reason: "back".into(),
        },
        Change::HaltSet {
            reason: "again".into(),
        },
    ] {
        journal.append(&b.id, &stamp, change).await.unwrap();
        both(&mut view, &journal).await;
    }
    let (halted, ids, _) = both(&mut view, &journal).await;
    assert!(halted);
    assert_eq!(ids, vec![b.id.to_string()]);
    // A stray object beside the incidents is reported, not a halt; inside
    // a folder it is one.
    journal
        .append(
            &b.id,
            &stamp,
            Change::HaltCleared {
                reason: "fixed".into(),
            },
        )
        .await
        .unwrap();
    store.put("incidents/README", "notes").await.unwrap();
    assert!(!both(&mut view, &journal).await.0);
    store
        .put(&format!("incidents/{}/x.json", a.id), "?")
        .await
        .unwrap();
    assert!(both(&mut view, &journal).await.0);
}

/// Opens an incident and takes it through to closed, the way people do.
async fn closed_incident(journal: &Journal, stamp: &Stamp, title: &str) -> IncidentId {
    let id = journal
        .open(
            stamp,
            Change::Opened {
                title: title.into(),
                severity: Severity::P2,
                commander: None,
                halt: true,
                text: None,
            },
        )
        .await
        .unwrap()
        .incident
        .id;
    for change in [
        Change::HaltCleared {
            reason: "failed over".into(),
        },
        Change::Resolved { text: None },
        Change::PostMortem(PostMortem {
            root_cause: Some("a disk filled up".into()),
            ..PostMortem::default()
        }),
        Change::Closed { text: None },
    ] {
        journal.append(&id, stamp, change).await.unwrap();
    }
    id
}

#[tokio::test]
async fn closed_incidents_are_listed_in_turn_and_still_fail_closed() {
    closed_incidents_on(store("closed-incidents")).await;
}

/// The same on an S3 server, where a one-level listing comes back as
/// common prefixes.
#[tokio::test]
async fn closed_incidents_are_listed_in_turn_on_s3() {
    let test = "closed_incidents_are_listed_in_turn_on_s3";
    let Some(loc) = TestLocation::new(Backend::S3, test) else {
        return;
    };
    closed_incidents_on(loc.options.build().unwrap()).await;
}

async fn closed_incidents_on(store: Store) {
    let journal = Journal::new(store.clone());
    let stamp = Stamp::new("alice", now());
    let mut closed = Vec::new();
    for title in ["disk full", "bad deploy", "lost replica"] {
        closed.push(closed_incident(&journal, &stamp, title).await);
    }
    let open = journal
        .open(
            &stamp,
            Change::Opened {
                title: "slow queries".into(),
                severity: Severity::P3,
                commander: None,
                halt: false,
                text: None,
            },
        )
        .await
        .unwrap()
        .incident
        .id;
    let mut view = IncidentView::default();
    assert_eq!(both(&mut view, &journal).await, (false, vec![], 1));
    assert_eq!(
        view.requests,
        1 + 4 + 5 * 3 + 1,
        "the first check reads all"
    );
    // Steady: `incidents/`, the open incident and one closed incident in
    // turn, whatever the number of closed incidents.
    for _ in 0..4 {
        let before = view.requests;
        assert_eq!(both(&mut view, &journal).await, (false, vec![], 1));
        assert_eq!(view.requests - before, 3);
    }

    // What cfdr may still write to a closed incident does not change the
    // verdict, and the state machine refuses what would: a closed incident
    // cannot be reopened, nor halt trading again.
    journal
        .append(
            &closed[1],
            &stamp,
            Change::Note {
                text: "action item filed".into(),
            },
        )
        .await
        .unwrap();
    assert!(!both(&mut view, &journal).await.0);
    for change in [
        Change::Reopened {
            reason: "it is back".into(),
        },
        Change::HaltSet {
            reason: "it is back".into(),
        },
    ] {
        let err = journal
            .append(&closed[1], &stamp, change)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
    }

    // Written past cfdr's state machine (a forged reopening, then a
    // damaged object): the journal counts it as a halt; the view finds it
    // within as many checks as there are closed incidents, and then
    // agrees with the journal on every check until it is repaired.
    let forged = Event {
        format: EVENT_FORMAT,
        incident: closed[2].clone(),
        seq: 7,
        at: now(),
        recorded: now(),
        author: "mallory".into(),
        change: Change::Reopened {
            reason: "forged".into(),
        },
    };
    let forged_key = event_key(&closed[2], 7);
    store
        .put(&forged_key, serde_json::to_vec(&forged).unwrap())
        .await
        .unwrap();
    assert!(journal.halt_state().await.unwrap().trading_halted());
    let mut checks = 0;
    loop {
        checks += 1;
        let now = view.refresh(&store).await.unwrap();
        if !now.damaged.is_empty() {
            break;
        }
        assert!(
            checks < closed.len(),
            "not found within {} checks",
            closed.len()
        );
    }
    for _ in 0..3 {
        let before = view.requests;
        let (halted, ..) = both(&mut view, &journal).await;
        assert!(halted, "a damaged closed incident counts as a halt");
        assert_eq!(
            view.requests - before,
            4,
            "the damaged incident is listed every check, beside the one in turn"
        );
    }
    let damaged_key = event_key(&closed[0], 6);
    store
        .put(&damaged_key, "{\"format\":1,\"inc")
        .await
        .unwrap();
    let mut checks = 0;
    while view.refresh(&store).await.unwrap().damaged.len() < 2 {
        checks += 1;
        assert!(
            checks < closed.len(),
            "not found within {} checks",
            closed.len()
        );
    }
    both(&mut view, &journal).await;

    // Repaired (the objects moved out of incidents/): settled again.
    store
        .delete_many([forged_key.as_str(), damaged_key.as_str()])
        .await
        .unwrap();
    assert_eq!(both(&mut view, &journal).await, (false, vec![], 1));
    let before = view.requests;
    both(&mut view, &journal).await;
    assert_eq!(view.requests - before, 3);

    // An incident folder removed from the repository is forgotten.
    let gone: Vec<String> = store
        .list(&format!("incidents/{open}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    store.delete_many(&gone).await.unwrap();
    assert_eq!(both(&mut view, &journal).await, (false, vec![], 0));
}

#[tokio::test]
async fn drill_reports_newest_first_a_running_drill_skipped() {
    let store = store("drills");
    let mut view = DrillView::default();
    view.refresh(&store).await.unwrap();
    assert_eq!(view.last, None);
    let report = |status: &str, finished: &str, rto: &str| {
        format!(
            r#"{{"version":1,"status":"{status}","started":"2026-11-20T02:00:00Z","finished":"{finished}","rto_actual_seconds":{rto},"rpo_actual_seconds":null,"environment":"staging"}}"#
        )
    };
    store
        .put(
            &format!("{DRILLS_PREFIX}20261120T020000Z/report.json"),
            report("SUCCESSFUL", "2026-11-20T02:09:00Z", "540.5"),
        )
        .await
        .unwrap();
    store
        .put(
            &format!("{DRILLS_PREFIX}20261127T020000Z/report.json"),
            report("FAILED", "2026-11-27T02:30:00Z", "null"),
        )
        .await
        .unwrap();
    // Running: a folder without a report yet.
    store
        .put(
            &format!("{DRILLS_PREFIX}20261201T020000Z/log.txt"),
            "restoring",
        )
        .await
        .unwrap();
    view.refresh(&store).await.unwrap();
    let last = view.last.clone().unwrap();
    assert_eq!(
        (last.id.as_str(), last.status.as_str()),
        ("20261127T020000Z", "FAILED")
    );
    assert!(!last.successful());
    assert_eq!(last.rto_actual_seconds, None);
    let before = view.requests;
    view.refresh(&store).await.unwrap();
    assert_eq!(
        view.requests - before,
        2,
        "one listing and the running drill's report, looked for again"
    );
    store
        .put(
            &format!("{DRILLS_PREFIX}20261201T020000Z/report.json"),
            report("SUCCESSFUL", "2026-12-01T02:08:00Z", "480"),
        )
        .await
        .unwrap();
    view.refresh(&store).await.unwrap();
    let last = view.last.clone().unwrap();
    assert_eq!(last.id, "20261201T020000Z");
    assert!(last.successful());
    assert_eq!(last.rto_actual_seconds, Some(480.0));
    // A report in another version is named, older ones still count.
    store
        .put(
            &format!("{DRILLS_PREFIX}20261202T020000Z/report.json"),
            r#"{"version":2}"#,
        )
        .await
        .unwrap();
    view.refresh(&store).await.unwrap();
    assert_eq!(view.last.as_ref().unwrap().id, "20261201T020000Z");
    assert!(
        view.problem
            .as_deref()
            .unwrap()
            .contains("20261202T020000Z"),
        "{:?}",
        view.problem
    );
}

#[tokio::test]
async fn copy_states_are_read_when_they_change() {
    let store = store("copies");
    let mut view = CopyView::default();
    let state = |lag: f64| {
        format!(
            r#"{{"version":1,"name":"eu-west","lag_bytes":4096,"lag_seconds":{lag},"updated_at":"2026-12-01T11:59:00Z"}}"#
        )
    };
    store
        .put(&format!("{COPY_STATE_PREFIX}eu-west.json"), state(12.5))
        .await
        .unwrap();
    store
        .put(&format!("{COPY_STATE_PREFIX}us-east.json"), "not json")
        .await
        .unwrap();
    view.refresh(&store).await.unwrap();
    let copies = view.copies();
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0].name, "eu-west");
    assert_eq!(
        (copies[0].lag_bytes, copies[0].lag_seconds),
        (Some(4096), Some(12.5))
    );
    assert_eq!(copies[1].name, "us-east");
    assert!(copies[1].error.as_deref().unwrap().contains("us-east.json"));
    let before = view.requests;
    view.refresh(&store).await.unwrap();
    assert_eq!(
        view.requests - before,
        2,
        "one listing, and the unreadable state read again"
    );
    // A rewrite of a different size is read again.
    store
        .put(&format!("{COPY_STATE_PREFIX}eu-west.json"), state(130.25))
        .await
        .unwrap();
    view.refresh(&store).await.unwrap();
    assert_eq!(view.copies()[0].lag_seconds, Some(130.25));
}

#[tokio::test]
async fn the_wal_stream_state_is_read_and_bad_ones_named() {
    let store = store("stream");
    assert_eq!(records::wal_stream_state(&store).await.unwrap(), None);
    store
        .put(
            WAL_STREAM_STATE_KEY,
            r#"{"version":1,"timeline":2,"safe_lsn":"0/3000060","safe_at":"2026-12-01T11:59:59Z","updated_at":"2026-12-01T12:00:00Z"}"#,
        )
        .await
        .unwrap();
    let st = records::wal_stream_state(&store).await.unwrap().unwrap();
    assert_eq!((st.timeline, st.safe_lsn), (2, Lsn(0x300_0060)));
    store
        .put(
            WAL_STREAM_STATE_KEY,
            r#"{"version":1,"timeline":2,"safe_lsn":"nope","safe_at":"2026-12-01T11:59:59Z","updated_at":"2026-12-01T12:00:00Z"}"#,
        )
        .await
        .unwrap();
    let err = records::wal_stream_state(&store).await.unwrap_err();
    assert!(err.contains("safe_lsn") && err.contains("nope"), "{err}");
}

#[tokio::test]
async fn operation_markers_are_read_and_stale_ones_marked() {
    let store = store("operations");
    let running = Operation::begin(&store, "pitr", "to 11:50").await.unwrap();
    // A marker left by a process that is gone (same host, no such pid).
    let mut gone: OperationMarker = running.marker().clone();
    gone.id = "20261201T000000.000Z-promote-1".into();
    gone.kind = "promote".into();
    gone.pid = u32::MAX - 7;
    store
        .put(
            &format!("operations/{}.json", gone.id),
            serde_json::to_vec(&gone).unwrap(),
        )
        .await
        .unwrap();
    let seen = records::operations(&store, Timestamp::now(), Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(seen.len(), 2);
    let by_kind = |k: &str| seen.iter().find(|o| o.kind == k).unwrap();
    assert_eq!(by_kind("pitr").stale, None);
    assert!(
        by_kind("promote")
            .stale
            .as_deref()
            .unwrap()
            .contains("is gone")
    );
    running.finish().await.unwrap();
    let seen = records::operations(&store, Timestamp::now(), Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn backups_still_being_written_do_not_stop_the_backup_scan() {
    let store = store("backups");
    let repo = cfdr_storage::Repository::init(store.clone()).await.unwrap();
    // Committed backups and leftovers without a manifest (a backup running).
    let spec = cfdr_testing::history::HistorySpec::new(12, 4);
    let history = cfdr_testing::history::write_history(&store, &spec)
        .await
        .unwrap();
    let mut view = BackupView::default();
    view.scan(&repo, history.at).await.unwrap();
    assert_eq!(view.len(), repo.backup_ids().await.unwrap().len());
    assert!(view.len() >= 12, "{}", view.len());
}
