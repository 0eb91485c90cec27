//! The report's stable JSON core, the filled-in checklist and the chart.
#![allow(clippy::unwrap_used)]

use cfdr_drill::{Cleanup, Phase, Report, ScenarioReport, Status, Validation, Verdict};
use jiff::Timestamp;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn phase(scenario: &str, name: &str, from: &str, to: &str, ok: bool) -> Phase {
    Phase {
        scenario: scenario.into(),
        name: name.into(),
        start: t(from),
        end: t(to),
        seconds: t(to).duration_since(t(from)).as_secs_f64(),
        bytes: Some(4096),
        ok,
        error: (!ok).then(|| "object x is corrupt: size is 1 bytes (truncated?)".into()),
    }
}

fn report(status: Status, failed: bool) -> Report {
    let scenario = ScenarioReport {
        name: "database-loss".into(),
        description: "Database loss".into(),
        verdict: if failed {
            Verdict::Failed
        } else {
            Verdict::Passed
        },
        started: t("2026-12-01T20:30:05Z"),
        finished: t("2026-12-01T20:30:40Z"),
        rto_objective_seconds: 600.0,
        rto_actual_seconds: (!failed).then_some(17.5),
        rpo_objective_seconds: 300.0,
        rpo_actual_seconds: (!failed).then_some(1.4),
        rpo_trades: (!failed).then_some(56),
        last_trade_before: Some(2679),
        last_trade_after: Some(2623),
        validations: vec![Validation {
            name: "content hash of each table equals the source".into(),
            passed: !failed,
            detail: "8 tables and objects equal".into(),
        }],
        injected: Vec::new(),
        faults_detected: Vec::new(),
        failures: if failed {
            vec!["object x is corrupt".into()]
        } else {
            Vec::new()
        },
    };
    Report {
        version: cfdr_drill::REPORT_VERSION,
        id: "20261201T203000Z-all".into(),
        status,
        started: t("2026-12-01T20:30:00Z"),
        finished: t("2026-12-01T20:31:00Z"),
        mode: "sandbox".into(),
        rto_actual_seconds: scenario.rto_actual_seconds,
        rpo_actual_seconds: scenario.rpo_actual_seconds,
        rpo_actual_trades: scenario.rpo_trades,
        rto_database_objective_seconds: 600.0,
        rto_full_system_objective_seconds: 1800.0,
        rpo_objective_seconds: 300.0,
        total_seconds: 60.0,
        phases: vec![
            phase(
                "sandbox",
                "folder repository",
                "2026-12-01T20:30:00Z",
                "2026-12-01T20:30:05Z",
                true,
            ),
            phase(
                "database-loss",
                "physical restore",
                "2026-12-01T20:30:05Z",
                "2026-12-01T20:30:40Z",
                !failed,
            ),
            phase(
                "cleanup",
                "sandbox removed",
                "2026-12-01T20:30:40Z",
                "2026-12-01T20:31:00Z",
                true,
            ),
        ],
        scenarios: vec![scenario],
        injected: Vec::new(),
        cleanup: Cleanup {
            status: "removed".into(),
            detail: "servers stopped".into(),
        },
        incident: failed.then(|| "INC-20261201-001".into()),
        postgres: Some("15.18".into()),
    }
}

#[test]
fn the_json_core_has_the_names_and_types_other_tools_read() {
    let json: serde_json::Value =
        serde_json::from_str(&report(Status::Successful, false).to_json()).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["status"], "SUCCESSFUL");
    assert_eq!(json["started"], "2026-12-01T20:30:00Z");
    assert_eq!(json["finished"], "2026-12-01T20:31:00Z");
    assert_eq!(json["rto_actual_seconds"], 17.5);
    assert_eq!(json["rpo_actual_seconds"], 1.4);
    assert_eq!(json["phases"][1]["bytes"], 4096);
    assert_eq!(json["cleanup"]["status"], "removed");
    for (status, label) in [
        (Status::Failed, "FAILED"),
        (Status::TimedOut, "TIMED_OUT"),
        (Status::Cancelled, "CANCELLED"),
    ] {
        let json: serde_json::Value =
            serde_json::from_str(&report(status, true).to_json()).unwrap();
        assert_eq!(json["status"], label);
        assert!(
            json["rto_actual_seconds"].is_null(),
            "unmeasured is null, not 0"
        );
        assert!(json["rpo_actual_seconds"].is_null());
    }
    let back: Report = serde_json::from_str(&report(Status::Failed, true).to_json()).unwrap();
    assert_eq!(back, report(Status::Failed, true));
}

#[test]
fn the_markdown_fills_in_the_runbook_checklist() {
    let ok = report(Status::Successful, false).to_markdown();
    assert!(
        ok.starts_with("# DR drill 20261201T203000Z-all — SUCCESSFUL"),
        "{ok}"
    );
    assert!(
        ok.contains("| database-loss | Passed | 17.5 s / 600 s | 1.4 s / 300 s | 56 |"),
        "{ok}"
    );
    for done in [
        "- [x] Scenario selected and communicated: database-loss",
        "- [x] Backup systems verified accessible",
        "- [x] Procedure followed step-by-step: 3 steps",
        "- [x] Recovery time measured: slowest 17.5 s",
        "- [x] Functionality verified",
        "- [x] Issues documented: none found",
    ] {
        assert!(ok.contains(done), "{done} in {ok}");
    }
    // What only people can do stays for them to tick.
    for open in [
        "- [ ] Team assembled",
        "- [ ] Post-drill review completed",
        "- [ ] Procedures updated",
    ] {
        assert!(ok.contains(open), "{open} in {ok}");
    }
    let failed = report(Status::Failed, true).to_markdown();
    for line in [
        "- [ ] Procedure followed step-by-step",
        "- [ ] Functionality verified",
        "- [x] Issues documented: 1 below, incident INC-20261201-001",
        "**Failure:** object x is corrupt",
        "- FAIL   35.00 s  physical restore (4096 bytes): object x is corrupt",
    ] {
        assert!(failed.contains(line), "{line} in {failed}");
    }
}

#[test]
fn the_timeline_chart_is_an_svg_with_a_row_per_scenario_and_a_bar_per_step() {
    let svg = cfdr_drill::chart::timeline_svg(&report(Status::Failed, true)).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    for label in [
        "sandbox",
        "database-loss",
        "cleanup",
        "DR drill 20261201T203000Z-all: FAILED",
    ] {
        assert!(svg.contains(label), "{label} in the chart");
    }
    // The failed step is drawn red (#CC0000).
    assert!(svg.to_uppercase().contains("#CC0000"), "{svg}");
}
