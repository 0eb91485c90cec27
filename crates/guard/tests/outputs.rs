//! The stable interfaces of the status: metric names and labels (golden
//! file), JSON field names, named checks, and the page's content.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use cfdr_guard::{
    ArchiverStats, BackupAge, BackupSeen, Condition, CopyLag, DrillSeen, Exposure, Gate, Level,
    Objective, OpenIncident, OperationSeen, Reason, Replica, Status, TradingState, TransitionCount,
    WalStatus,
};

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// A status with something in every part.
pub fn sample_status(state: TradingState) -> Status {
    Status {
        generated_at: t("2026-12-01T12:00:00Z"),
        repository: "s3://backups/cfdr".into(),
        gate: Gate {
            state,
            reasons: vec![
                Condition {
                    reason: Reason::RpoExposureExceeded,
                    effect: TradingState::Reducing,
                    detail: "committed work 6 min 2 s old is not yet in the repository (RPO 5m)"
                        .into(),
                },
                Condition {
                    reason: Reason::ArchiveFailing,
                    effect: TradingState::Active,
                    detail: "archive_command failed for 00000001000000000000002A (7 failures)"
                        .into(),
                },
            ],
            since: t("2026-12-01T11:58:00Z"),
            stale: false,
            last_refresh: t("2026-12-01T11:59:59Z"),
        },
        objectives: vec![
            Objective {
                name: "rpo".into(),
                value_seconds: Some(362.0),
                limit_seconds: 300.0,
                level: Level::Critical,
                words: "6 min 2 s of committed work not yet in the repository".into(),
            },
            Objective {
                name: "rto".into(),
                value_seconds: Some(412.5),
                limit_seconds: 1800.0,
                level: Level::Ok,
                words: "the DR drill 20261128T020000Z recovered in 6 min 53 s (limit 30m)".into(),
            },
            Objective {
                name: "drill".into(),
                value_seconds: Some(280_800.0),
                limit_seconds: 2_678_400.0,
                level: Level::Ok,
                words: "the last DR drill 20261128T020000Z succeeded 3 d 6 h ago".into(),
            },
            Objective {
                name: "backup:logical/hourly".into(),
                value_seconds: Some(1200.0),
                limit_seconds: 3900.0,
                level: Level::Ok,
                words: "newest logical/hourly backup is 20 min 0 s old".into(),
            },
        ],
        backups: vec![BackupAge {
            objective: "logical/hourly".into(),
            newest: Some(BackupSeen {
                id: "20261201T113900.000Z-logical-1a2b".into(),
                kind: "logical".into(),
                class: Some("hourly".into()),
                finished: t("2026-12-01T11:40:00Z"),
            }),
            age_seconds: Some(1200.0),
            limit_seconds: 3900.0,
        }],
        wal: WalStatus {
            timeline: Some(1),
            server_lsn: Some("0/2A0001F0".into()),
            safe_lsn: Some("0/2A000000".into()),
            safe_by: Some("archive".into()),
            highest_segment: Some("000000010000000000000029".into()),
            exposure: Some(Exposure {
                seconds: 362.0,
                bytes: 496,
                lower_bound: false,
            }),
            archiver: Some(ArchiverStats {
                archived_count: 41,
                failed_count: 7,
                last_archived_wal: Some("000000010000000000000029".into()),
                last_archived_time: Some(1_764_589_900.0),
                last_failed_wal: Some("00000001000000000000002A".into()),
                last_failed_time: Some(1_764_590_390.0),
            }),
        },
        replicas: vec![Replica {
            name: "standby-1".into(),
            state: "streaming".into(),
            lag_bytes: 8192,
            lag_seconds: 0.4,
            sync_state: "async".into(),
            flush_lsn: Some("0/2A0001F0".into()),
            counts_as_safe: false,
        }],
        incidents: vec![OpenIncident {
            id: "INC-20261201-001".into(),
            title: "WAL archiving <failing>".into(),
            severity: "P1".into(),
            halt: false,
        }],
        incidents_open: BTreeMap::from([
            ("P0".into(), 0),
            ("P1".into(), 1),
            ("P2".into(), 0),
            ("P3".into(), 0),
        ]),
        operations: vec![OperationSeen {
            id: "20261201T115500.000Z-pitr-4242".into(),
            kind: "pitr".into(),
            detail: "to 2026-12-01 11:50 into /srv/pitr".into(),
            started: t("2026-12-01T11:55:00Z"),
            host: "db-restore-1".into(),
            pid: 4242,
            stale: Some("its process 4242 on db-restore-1 is gone".into()),
        }],
        drill: Some(DrillSeen {
            id: "20261128T020000Z".into(),
            status: "SUCCESSFUL".into(),
            started: t("2026-11-28T02:00:00Z"),
            finished: t("2026-11-28T02:07:00Z"),
            rto_actual_seconds: Some(412.5),
            rpo_actual_seconds: Some(3.0),
        }),
        copies: vec![CopyLag {
            name: "eu-west".into(),
            lag_bytes: Some(1_048_576),
            lag_seconds: Some(42.5),
            updated_at: Some(t("2026-12-01T11:59:30Z")),
            error: None,
        }],
        transitions: vec![TransitionCount {
            from: TradingState::Active,
            to: TradingState::Reducing,
            reason: "RpoExposureExceeded".into(),
            count: 1,
        }],
        cycles: 720,
    }
}

/// `name{label,label}` of every sample line.
fn shapes(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let series = l.rsplit_once(' ').unwrap().0;
            match series.split_once('{') {
                None => series.to_owned(),
                Some((name, rest)) => {
                    let keys: Vec<&str> = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .map(|kv| kv.split_once('=').unwrap().0)
                        .collect();
                    format!("{name}{{{}}}", keys.join(","))
                }
            }
        })
        .collect()
}

#[test]
fn metric_names_and_labels_match_the_golden_file() {
    let text = cfdr_guard::metrics::render(&sample_status(TradingState::Reducing));
    let got: Vec<String> = shapes(&text).into_iter().collect();
    let golden_path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/metric_names.txt");
    if std::env::var("CFDR_UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(golden_path, got.join("\n") + "\n").unwrap();
    }
    let golden = std::fs::read_to_string(golden_path).unwrap();
    let want: Vec<&str> = golden.lines().collect();
    assert_eq!(
        got, want,
        "metric names or labels changed: dashboards and alerts depend on them \
         (deploy/prometheus, deploy/grafana). If the change is intended, update \
         tests/golden/metric_names.txt (CFDR_UPDATE_GOLDEN=1)."
    );
    // Every family has HELP and TYPE, and the values the alerts use are there.
    for family in [
        "cfdr_rpo_exposure_seconds",
        "cfdr_trading_state",
        "cfdr_status_up",
    ] {
        assert!(text.contains(&format!("# TYPE {family} gauge")), "{family}");
    }
    assert!(text.contains("cfdr_rpo_exposure_seconds 362\n"), "{text}");
    assert!(text.contains("cfdr_trading_state 1\n"));
    assert!(text.contains(
        "cfdr_backup_last_success_timestamp_seconds{kind=\"logical\",class=\"hourly\"} 1796125200\n"
    ));
    assert!(text.contains("cfdr_incidents_open{severity=\"P1\"} 1\n"));
    assert!(
        text.contains("cfdr_drill_last_run_timestamp_seconds 1795831620\n"),
        "{text}"
    );
    assert!(text.contains("cfdr_drill_last_success 1\n"));
    assert!(text.contains("cfdr_copy_lag_seconds{copy=\"eu-west\"} 42.5\n"));
    assert!(text.contains("cfdr_copy_lag_bytes{copy=\"eu-west\"} 1048576\n"));
    assert!(text.contains("cfdr_operations_in_progress 0\n"));
    assert!(text.contains("cfdr_operations_stale 1\n"));
    assert!(text.contains(
        "cfdr_gate_transitions_total{from=\"active\",to=\"reducing\",reason=\"RpoExposureExceeded\"} 1\n"
    ));
    // Every reason is always present, 0 or 1: no series goes silent.
    for r in Reason::ALL {
        assert!(
            text.contains(&format!("cfdr_gate_reason{{reason=\"{}\"", r.name())),
            "{r}"
        );
    }
}

#[test]
fn json_field_names_are_stable() {
    let v = serde_json::to_value(sample_status(TradingState::Halted)).unwrap();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        keys(&v),
        [
            "backups",
            "copies",
            "cycles",
            "drill",
            "gate",
            "generated_at",
            "incidents",
            "incidents_open",
            "objectives",
            "operations",
            "replicas",
            "repository",
            "transitions",
            "wal"
        ]
    );
    assert_eq!(
        keys(&v["gate"]),
        ["last_refresh", "reasons", "since", "stale", "state"]
    );
    assert_eq!(v["gate"]["state"], "halted");
    assert_eq!(v["gate"]["reasons"][0]["reason"], "RpoExposureExceeded");
    assert_eq!(v["gate"]["reasons"][0]["effect"], "reducing");
    assert_eq!(
        keys(&v["wal"]),
        [
            "archiver",
            "exposure",
            "highest_segment",
            "safe_by",
            "safe_lsn",
            "server_lsn",
            "timeline"
        ]
    );
    assert_eq!(
        keys(&v["wal"]["exposure"]),
        ["bytes", "lower_bound", "seconds"]
    );
    assert_eq!(
        keys(&v["objectives"][0]),
        ["level", "limit_seconds", "name", "value_seconds", "words"]
    );
    assert_eq!(v["objectives"][1]["name"], "rto");
    assert_eq!(
        keys(&v["drill"]),
        [
            "finished",
            "id",
            "rpo_actual_seconds",
            "rto_actual_seconds",
            "started",
            "status"
        ]
    );
    assert_eq!(
        keys(&v["copies"][0]),
        ["error", "lag_bytes", "lag_seconds", "name", "updated_at"]
    );
    assert_eq!(
        keys(&v["operations"][0]),
        ["detail", "host", "id", "kind", "pid", "stale", "started"]
    );
    assert_eq!(
        keys(&v["replicas"][0]),
        [
            "counts_as_safe",
            "flush_lsn",
            "lag_bytes",
            "lag_seconds",
            "name",
            "state",
            "sync_state"
        ]
    );
}

#[test]
fn named_checks_and_their_levels() {
    let st = sample_status(TradingState::Reducing);
    let checks = st.checks();
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "trading-gate",
            "guard-fresh",
            "primary",
            "repository",
            "rpo-exposure",
            "wal-archiving",
            "incidents",
            "operations",
            "drill",
            "backup:logical/hourly"
        ]
    );
    let level = |n: &str| checks.iter().find(|c| c.name == n).unwrap().level;
    assert_eq!(level("trading-gate"), Level::Warn);
    assert_eq!(level("rpo-exposure"), Level::Critical);
    assert_eq!(level("wal-archiving"), Level::Warn);
    assert_eq!(level("incidents"), Level::Warn);
    // A stale marker is reported, not held.
    assert_eq!(level("operations"), Level::Warn);
    assert_eq!(level("drill"), Level::Ok);
    assert_eq!(st.overall(), Level::Critical);
    assert_eq!(st.overall().exit_code(), 2);
}

#[test]
fn the_page_is_self_contained_and_escapes_text() {
    let page = cfdr_guard::page::render(&sample_status(TradingState::Halted), 5);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(page.contains("TRADING HALTED"));
    assert!(page.contains("<table id=\"drill\">") && page.contains("20261128T020000Z"));
    assert!(page.contains("<table id=\"copies\">") && page.contains("eu-west"));
    assert!(page.contains("stale: its process 4242"));
    assert!(
        page.contains("WAL archiving &lt;failing&gt;"),
        "titles are escaped"
    );
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!page.contains(external), "no external asset ({external})");
    }
    let table = cfdr_guard::text::render(&sample_status(TradingState::Active), &[]);
    assert!(table.starts_with("TRADING GATE  ACTIVE"), "{table}");
    assert!(
        table.contains("rpo") && table.contains("6 min 2 s"),
        "{table}"
    );
}
