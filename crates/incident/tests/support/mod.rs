//! Shared test helpers: fixed times, a fresh journal, and event builders.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use cfdr_incident::{Appended, Change, IncidentId, Journal, Severity, Stamp};
use jiff::Timestamp;

/// A UTC time from `HH:MM` on 2025-11-06 (the runbook example's day).
pub fn at(hm: &str) -> Timestamp {
    format!("2025-11-06T{hm}:00Z").parse().unwrap()
}

/// A timestamp from RFC 3339 text.
pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A journal on a fresh, process-unique memory repository.
pub fn memory_journal(name: &str) -> Journal {
    let url = format!("memory://{name}-{:016x}", rand_u64());
    Journal::new(cfdr_storage::StorageOptions::from_url(url).build().unwrap())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}

pub fn opened(title: &str, severity: Severity, halt: bool) -> Change {
    Change::Opened {
        title: title.into(),
        severity,
        commander: Some("alice".into()),
        halt,
        text: None,
    }
}

pub async fn open(j: &Journal, severity: Severity, when: Timestamp) -> Appended {
    j.open(
        &Stamp::new("alice", when),
        opened("Database connection failures", severity, false),
    )
    .await
    .unwrap()
}

pub async fn append(j: &Journal, id: &IncidentId, when: Timestamp, change: Change) -> Appended {
    j.append(id, &Stamp::new("bob", when), change)
        .await
        .unwrap()
}

/// Replays the runbook's example incident (section 5, "Incident Template":
/// PostgreSQL max_connections exhaustion) into `j`.
pub async fn runbook_example(j: &Journal) -> IncidentId {
    let open = j
        .open(
            &Stamp::new("alertmanager", at("14:30")),
            Change::Opened {
                title: "Database connection failures".into(),
                severity: Severity::P0,
                commander: Some("Dana Ops".into()),
                halt: false,
                text: Some("Alert triggered: Database connection failures".into()),
            },
        )
        .await
        .unwrap();
    let id = open.incident.id;
    let steps: Vec<(&str, &str, Change)> = vec![
        (
            "14:31",
            "dana",
            Change::Acknowledged {
                text: Some("On-call acknowledged".into()),
            },
        ),
        (
            "14:32",
            "dana",
            Change::HaltSet {
                reason: "database unreachable".into(),
            },
        ),
        (
            "14:35",
            "dana",
            Change::Identified {
                root_cause: None,
                text: Some("Root cause identified: PostgreSQL max_connections reached".into()),
            },
        ),
        (
            "14:40",
            "dana",
            Change::Mitigated {
                text: Some("Mitigation: Restarted database, increased max_connections".into()),
            },
        ),
        (
            "14:45",
            "dana",
            Change::HaltCleared {
                reason: "smoke tests green".into(),
            },
        ),
        (
            "14:50",
            "dana",
            Change::Resolved {
                text: Some("All-clear confirmed".into()),
            },
        ),
    ];
    for (hm, who, change) in steps {
        j.append(&id, &Stamp::new(who, at(hm)), change)
            .await
            .unwrap();
    }
    let later = Stamp::new("dana", ts("2025-11-07T10:00:00Z"));
    j.append(
        &id,
        &later,
        Change::PostMortem(cfdr_incident::PostMortem {
            summary: Some(
                "PostgreSQL refused new connections for 20 minutes after a deployment leaked connections; trading was halted while the database was restarted with a higher limit.".into(),
            ),
            root_cause: Some(
                "PostgreSQL max_connections limit (100) was exceeded due to connection leak in recent deployment.".into(),
            ),
            resolution: Some(vec![
                "Restarted PostgreSQL".into(),
                "Increased max_connections to 200".into(),
                "Fixed connection leak in code (PR #123)".into(),
                "Deployed hotfix".into(),
            ]),
            lessons: Some(vec![
                "Connection monitoring was insufficient".into(),
                "Database restart was quick due to good failover setup".into(),
                "Need better load testing before deployment".into(),
            ]),
            financial_impact: Some("$XXX".into()),
            users_affected: Some("N/A (automated system)".into()),
        }),
    )
    .await
    .unwrap();
    for (item, owner) in [
        ("Add monitoring for database connection count", "dana"),
        ("Implement connection pooling audit", "lee"),
        (
            "Update deployment checklist to verify connection handling",
            "sam",
        ),
    ] {
        j.append(
            &id,
            &later,
            Change::ActionAdded {
                text: item.into(),
                owner: Some(owner.into()),
            },
        )
        .await
        .unwrap();
    }
    id
}
