//! The guard against a real PostgreSQL 15 cluster archiving into a real
//! repository: broken and repaired archiving under a writing workload, an
//! idle cluster, a stopped primary, an incident halt, a stalled or stopped
//! refresher.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::time::{Duration, Instant};

use cfdr_guard::{Guard, Level, Reason, StaleState, TradingState};
use cfdr_incident::{Change, Journal, Severity, Stamp};
use cfdr_testing::Backend;
use support::{Rig, describe, exposure_of, is, quick_settings, wait_for};

async fn start(rig: &Rig, settings: cfdr_guard::Settings) -> Guard {
    Guard::start(settings, rig.repo.clone(), rig.cluster.target("postgres"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_archiving_grows_exposure_and_halts_then_repair_resumes() {
    let test = "broken_archiving";
    let Some(rig) = Rig::new(Backend::Fs, test).await else {
        return;
    };
    rig.settle().await;
    let (stop, writer) = rig.workload(Duration::from_millis(50));
    // RPO 6 s: Reducing after 6 s + 1 s, Halted past 12 s.
    let guard = start(&rig, quick_settings(6)).await;
    wait_for(&guard, 60, "Active with archiving healthy", |st| {
        st.gate.state == TradingState::Active && exposure_of(st) < 3.0
    })
    .await;

    rig.break_archiving(true).await;
    let broke = Instant::now();
    // Exposure grows one second per second.
    let mut points = Vec::new();
    let mut reducing_at = None;
    let mut halted_at = None;
    let deadline = broke + Duration::from_secs(90);
    while halted_at.is_none() {
        assert!(Instant::now() < deadline, "never Halted; points {points:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let st = guard.status();
        let t = broke.elapsed().as_secs_f64();
        let e = exposure_of(&st);
        points.push((t, e, st.gate.state));
        if st.gate.state == TradingState::Reducing && reducing_at.is_none() {
            reducing_at = Some(t);
            assert!(
                st.gate
                    .reasons
                    .iter()
                    .any(|c| c.reason == Reason::RpoExposureExceeded),
                "{}",
                describe(&st)
            );
        }
        if st.gate.state == TradingState::Halted {
            halted_at = Some(t);
            assert!(
                st.gate
                    .reasons
                    .iter()
                    .any(|c| c.reason == Reason::ArchiveFailing),
                "archiver failures are reported: {}",
                describe(&st)
            );
            let rpo = st
                .checks()
                .into_iter()
                .find(|c| c.name == "rpo-exposure")
                .unwrap();
            assert_eq!(rpo.level, Level::Critical, "{rpo:?}");
        }
    }
    let reducing_at = reducing_at.expect("Reducing before Halted");
    let halted_at = halted_at.unwrap();
    eprintln!("reducing at {reducing_at:.1}s, halted at {halted_at:.1}s; points {points:?}");
    assert!(reducing_at < halted_at);
    // The exposure tracks the time since archiving broke (its true start is
    // the first commit after the last archived segment: up to about a
    // second before the break) within 2 s, once past the first seconds.
    for (t, e, _) in points.iter().filter(|(t, ..)| *t > 3.0) {
        assert!(
            (e - t).abs() <= 2.0 + 1.0,
            "exposure {e:.1}s at {t:.1}s after the break; points {points:?}"
        );
    }
    let (t0, e0, _) = points.iter().find(|(t, ..)| *t > 3.0).unwrap();
    let (t1, e1, _) = points.last().unwrap();
    assert!(
        ((e1 - e0) - (t1 - t0)).abs() <= 2.0,
        "grew {:.1}s in {:.1}s",
        e1 - e0,
        t1 - t0
    );
    assert!(
        *t1 - 12.0 < 4.0 && *t1 >= 12.0 - 2.0,
        "Halted at {t1:.1}s for a 12 s limit"
    );

    rig.break_archiving(false).await;
    let repaired = Instant::now();
    let st = wait_for(
        &guard,
        120,
        "Active again after the repair",
        is(TradingState::Active),
    )
    .await;
    eprintln!(
        "Active {:.1}s after the repair: {}",
        repaired.elapsed().as_secs_f64(),
        describe(&st)
    );
    // Out of Halted directly, or through Reducing when the archiver's
    // catch-up keeps the exposure above the RPO for a few cycles.
    assert!(
        st.transitions.iter().any(|t| t.from == TradingState::Halted
            && matches!(t.to, TradingState::Active | TradingState::Reducing)),
        "{:?}",
        st.transitions
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rows = writer.await.unwrap();
    assert!(rows > 100, "the workload wrote {rows} rows");
    wait_for(
        &guard,
        60,
        "exposure 0 once the last writes are archived",
        |st| exposure_of(st) == 0.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cluster_shows_no_exposure() {
    let test = "idle_cluster";
    let Some(rig) = Rig::new(Backend::Fs, test).await else {
        return;
    };
    // Idle means no transaction commits. Autovacuum's ANALYZE of the rows
    // settle() writes commits (pg_statistic) a minute later: real exposure
    // for the second before its segment is archived, so it is switched off.
    rig.sql("ALTER SYSTEM SET autovacuum = off").await;
    rig.sql("SELECT pg_reload_conf()").await;
    rig.settle().await;
    let secs = if std::env::var("CFDR_TEST_LONG").as_deref() == Ok("1") {
        360
    } else {
        60
    };
    // A tight RPO, so any false exposure would show as a state change.
    let guard = start(&rig, quick_settings(5)).await;
    let started = Instant::now();
    let mut seen = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        let st = guard.status();
        let e = st.wal.exposure.expect("exposure is measured");
        assert_eq!(
            e.seconds,
            0.0,
            "idle for {:?}: {}",
            started.elapsed(),
            describe(&st)
        );
        assert_eq!(st.gate.state, TradingState::Active, "{}", describe(&st));
        assert!(
            st.gate.reasons.is_empty(),
            "no warning on an idle cluster: {}",
            describe(&st)
        );
        seen += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        guard.cycles() >= secs,
        "{} cycles in {secs} s",
        guard.cycles()
    );
    eprintln!(
        "{seen} observations over {secs} s, {} cycles",
        guard.cycles()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_primary_and_incident_halt() {
    let test = "primary_and_incident";
    let Some(mut rig) = Rig::new(Backend::Fs, test).await else {
        return;
    };
    rig.settle().await;
    let settings = quick_settings(30);
    let limit = settings.guard.staleness_limit.0;
    let guard = start(&rig, settings).await;
    wait_for(&guard, 60, "Active", is(TradingState::Active)).await;

    rig.cluster.stop().await.unwrap();
    let stopped = Instant::now();
    while guard.state() == TradingState::Active {
        assert!(
            stopped.elapsed() <= limit,
            "still Active {:?} after the primary stopped: {}",
            stopped.elapsed(),
            describe(&guard.status())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "left Active {:?} after the primary stopped",
        stopped.elapsed()
    );
    let st = wait_for(&guard, 30, "PrimaryDown", |st| {
        st.gate
            .reasons
            .iter()
            .any(|c| c.reason == Reason::PrimaryDown)
    })
    .await;
    assert_eq!(st.gate.state, TradingState::Halted, "{}", describe(&st));

    rig.cluster.start(&[]).await.unwrap();
    wait_for(
        &guard,
        60,
        "Active after the restart",
        is(TradingState::Active),
    )
    .await;

    // A P0 with the halt, as `cfdr-incident open --severity P0 --halt` records it.
    let journal = Journal::new(rig.repo.store().clone());
    let opened = journal
        .open(
            &Stamp::new("alice", jiff::Timestamp::now()),
            Change::Opened {
                title: "Database connection failures".into(),
                severity: Severity::P0,
                commander: Some("alice".into()),
                halt: true,
                text: None,
            },
        )
        .await
        .unwrap();
    let id = opened.incident.id.clone();
    let st = wait_for(
        &guard,
        30,
        "Halted by the incident",
        is(TradingState::Halted),
    )
    .await;
    assert!(
        st.gate
            .reasons
            .iter()
            .any(|c| c.reason == Reason::IncidentHalt && c.detail.contains(id.as_str())),
        "{}",
        describe(&st)
    );
    // Resuming through the incident (`cfdr-incident resume-trading`).
    journal
        .append(
            &id,
            &Stamp::new("bob", jiff::Timestamp::now()),
            Change::HaltCleared {
                reason: "primary healthy".into(),
            },
        )
        .await
        .unwrap();
    wait_for(
        &guard,
        30,
        "Active after resume-trading",
        is(TradingState::Active),
    )
    .await;
    // Both transitions are on the incident's timeline.
    let loaded = journal.load(&id).await.unwrap();
    let notes: Vec<&str> = loaded
        .incident
        .timeline
        .iter()
        .map(|e| e.text.as_str())
        .filter(|t| t.starts_with("cfdr-guard:"))
        .collect();
    assert!(
        notes.iter().any(|t| t.contains("-> halted (IncidentHalt)"))
            && notes.iter().any(|t| t.contains("halted -> active")),
        "{notes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_stalled_refresher_fails_closed() {
    let test = "dead_refresher";
    let Some(rig) = Rig::new(Backend::Fs, test).await else {
        return;
    };
    rig.settle().await;

    // Stopped refresher: the default fail-closed state is Reducing.
    let settings = quick_settings(30);
    let limit = settings.guard.staleness_limit.0;
    let guard = start(&rig, settings.clone()).await;
    wait_for(&guard, 60, "Active", is(TradingState::Active)).await;
    guard.shutdown();
    let stopped = Instant::now();
    while guard.state() == TradingState::Active {
        assert!(
            stopped.elapsed() <= limit + Duration::from_millis(600),
            "still Active after {:?}",
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "fail-closed {:?} after the refresher stopped",
        stopped.elapsed()
    );
    assert_eq!(guard.state(), TradingState::Reducing);
    let gate = guard.gate();
    assert!(
        gate.stale && gate.reasons[0].reason == Reason::GuardStale,
        "{gate:?}"
    );
    drop(guard);

    // Stalled refresher: its PostgreSQL backend is stopped with SIGSTOP
    // and the query limit is longer than the staleness limit. Configured
    // to fail closed as Halted.
    let mut settings = settings;
    settings.guard.stale_state = StaleState::Halted;
    settings.guard.query_timeout = cfdr_guard::Dur(Duration::from_secs(600));
    let guard = start(&rig, settings).await;
    wait_for(&guard, 60, "Active", is(TradingState::Active)).await;
    let mut conn = rig.cluster.target("postgres").connect().await.unwrap();
    // Other sessions of the test close asynchronously: wait until the
    // guard's connection is the only other one.
    let mut pids: Vec<i32> = Vec::new();
    for _ in 0..100 {
        pids = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'cfdr' AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        if pids.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pids.len(), 1, "the guard's one connection: {pids:?}");
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pids[0].to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    let stalled = Instant::now();
    while guard.state() == TradingState::Active {
        assert!(
            stalled.elapsed() <= limit + Duration::from_millis(1500),
            "still Active after {:?}",
            stalled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = stalled.elapsed();
    let state = guard.state();
    signal("-CONT");
    eprintln!("fail-closed ({state}) {after:?} after the refresher stalled");
    assert_eq!(state, TradingState::Halted);
    wait_for(
        &guard,
        60,
        "Active once the refresher runs again",
        is(TradingState::Active),
    )
    .await;
}
