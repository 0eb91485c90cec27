//! The report follows the runbook's incident template section by section.
//! `fixtures/runbook-incident-template.md` is the template block copied
//! verbatim from the runbook (section 5, "Incident Template").
#![allow(clippy::unwrap_used)]

mod support;

use cfdr_incident::report::{human_duration, render};
use jiff::SignedDuration;

const TEMPLATE: &str = include_str!("fixtures/runbook-incident-template.md");

/// The skeleton of a report: headings, `**Field**:` names, `- Label:`
/// impact lines, and the kind of list each section holds.
fn skeleton(markdown: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in markdown.lines() {
        let item = if line.starts_with('#') {
            // Heading level and, for the title, only its fixed part.
            line.split_once(": ").map_or(line, |(h, _)| h).to_owned()
        } else if let Some(rest) = line.strip_prefix("**") {
            format!("field {}", rest.split_once("**").unwrap().0)
        } else if line.starts_with("- [") {
            "checkbox".to_owned()
        } else if line.starts_with("- ")
            && line.contains(": ")
            && !line[2..3].contains(|c: char| c.is_ascii_digit())
        {
            format!("impact {}", line.split_once(": ").unwrap().0)
        } else if line.starts_with("- ") && line[2..3].contains(|c: char| c.is_ascii_digit()) {
            "timeline entry".to_owned()
        } else if line.starts_with("- ") {
            "bullet".to_owned()
        } else if line.chars().next().is_some_and(|c| c.is_ascii_digit()) && line.contains(". ") {
            "numbered step".to_owned()
        } else if line.trim().is_empty() {
            continue;
        } else {
            "paragraph".to_owned()
        };
        // Repeated list items of one kind count once.
        if out.last() != Some(&item) {
            out.push(item);
        }
    }
    out
}

#[tokio::test]
async fn runbook_example_report_matches_the_template_structure() {
    let j = support::memory_journal("report");
    let id = support::runbook_example(&j).await;
    let report = render(&j.load(&id).await.unwrap().incident);

    let mut expected = skeleton(TEMPLATE);
    // cfdr adds the incident id after the template's header fields.
    let pos = expected
        .iter()
        .position(|s| s == "field Incident Commander")
        .unwrap();
    expected.insert(pos + 1, "field Incident ID".into());
    assert_eq!(skeleton(&report), expected, "{report}");

    // The example's facts come through.
    assert!(report.starts_with("# Incident Report: Database connection failures\n"));
    assert!(
        report.contains("- Trading stopped for: 13 minutes\n"),
        "{report}"
    );
    assert!(
        report.contains(
            "- 14:35 - Root cause identified: PostgreSQL max_connections reached (dana)\n"
        )
    );
    assert!(report.contains("- [ ] Add monitoring for database connection count (owner: dana)\n"));
    insta::assert_snapshot!("runbook_example_report", report);
}

#[tokio::test]
async fn timeline_crossing_midnight_shows_the_date_and_orders_by_time() {
    use cfdr_incident::{Change, Severity};
    let j = support::memory_journal("midnight");
    let a = support::open(&j, Severity::P1, support::ts("2025-11-06T23:50:00Z")).await;
    let id = a.incident.id;
    // Recorded out of order: the later event first, then one backfilled.
    support::append(
        &j,
        &id,
        support::ts("2025-11-07T00:10:00Z"),
        Change::Note {
            text: "later".into(),
        },
    )
    .await;
    let inc = support::append(
        &j,
        &id,
        support::ts("2025-11-06T23:55:00Z"),
        Change::Note {
            text: "earlier".into(),
        },
    )
    .await
    .incident;
    let report = render(&inc);
    let timeline: Vec<&str> = report
        .lines()
        .skip_while(|l| *l != "## Timeline (UTC)")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        timeline,
        [
            "- 23:50 - Incident opened (P1): Database connection failures (alice)",
            "- 23:55 - earlier (bob)",
            "- 2025-11-07 00:10 - later (bob)",
        ]
    );
}

/// Notes are timeline entries of the report (what responders found and
/// did: the template's "timeline of events"); record edits are not, they
/// fill their own sections. docs/incidents.md documents the same split.
#[tokio::test]
async fn notes_are_in_the_report_timeline_and_record_edits_are_not() {
    use cfdr_incident::{Change, PostMortem, Severity};
    let j = support::memory_journal("notes-in-report");
    let id = support::open(&j, Severity::P1, support::at("10:00"))
        .await
        .incident
        .id;
    let note = Change::Note {
        text: "pg_stat_activity shows 100 idle connections".into(),
    };
    support::append(&j, &id, support::at("10:03"), note).await;
    let action = Change::ActionAdded {
        text: "Alert on connection count".into(),
        owner: None,
    };
    support::append(&j, &id, support::at("10:04"), action).await;
    let pm = Change::PostMortem(PostMortem {
        summary: Some("Leak".into()),
        ..PostMortem::default()
    });
    support::append(&j, &id, support::at("10:05"), pm).await;
    let link = Change::Linked {
        backups: vec!["20251106T100000.000Z-logical-ab12".into()],
        drills: Vec::new(),
    };
    let inc = support::append(&j, &id, support::at("10:06"), link)
        .await
        .incident;
    let report = render(&inc);
    let timeline: Vec<&str> = report
        .lines()
        .skip_while(|l| *l != "## Timeline (UTC)")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        timeline,
        [
            "- 10:00 - Incident opened (P1): Database connection failures (alice)",
            "- 10:03 - pg_stat_activity shows 100 idle connections (bob)",
        ]
    );
    // The edits are in their sections and in `show`.
    assert!(
        report.contains("- [ ] Alert on connection count\n"),
        "{report}"
    );
    let shown = cfdr_incident::report::show(&inc);
    assert!(shown.contains("Action item 1 added"), "{shown}");
    assert!(shown.contains("Linked backup"), "{shown}");
}

#[tokio::test]
async fn an_ongoing_halt_is_shown_in_the_header_and_impact() {
    use cfdr_incident::Severity;
    let j = support::memory_journal("halted-report");
    let inc = j
        .open(
            &cfdr_incident::Stamp::new("alice", support::at("09:00")),
            support::opened("Exchange keys leaked", Severity::P0, true),
        )
        .await
        .unwrap()
        .incident;
    let report = render(&inc);
    assert!(
        report.contains("> **Trading is halted** by this incident since 2025-11-06 09:00 UTC"),
        "{report}"
    );
    assert!(
        report.contains("- Trading stopped for: still halted since 2025-11-06 09:00 UTC"),
        "{report}"
    );
}

#[test]
fn durations_read_as_words() {
    let m = SignedDuration::from_mins;
    assert_eq!(human_duration(m(13)), "13 minutes");
    assert_eq!(human_duration(m(1)), "1 minute");
    assert_eq!(human_duration(m(60)), "1 hour");
    assert_eq!(human_duration(m(125)), "2 hours 5 minutes");
    assert_eq!(human_duration(SignedDuration::from_secs(45)), "45 seconds");
}
