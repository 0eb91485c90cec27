//! The human table of `cfdr-status`.

use std::fmt::Write;

use crate::status::{Check, Status, words_for};

/// The status as a table for a terminal; `checks` are the named checks
/// to show (all, or the ones asked for).
pub fn render(status: &Status, checks: &[Check]) -> String {
    let mut t = String::with_capacity(4096);
    let g = &status.gate;
    let _ = writeln!(
        t,
        "TRADING GATE  {}  since {}{}",
        g.state.name().to_uppercase(),
        g.since.strftime("%Y-%m-%d %H:%M:%S UTC"),
        if g.stale {
            "  (guard not refreshing: fail-closed)"
        } else {
            ""
        }
    );
    for c in &g.reasons {
        let _ = writeln!(
            t,
            "  {:<22} {:<9} {}",
            c.reason.name(),
            c.effect.name(),
            c.detail
        );
    }
    let _ = writeln!(
        t,
        "\n{:<24} {:>14} {:>14}  {:<12} WHY",
        "OBJECTIVE", "MEASURED", "LIMIT", "STATUS"
    );
    for o in &status.objectives {
        let _ = writeln!(
            t,
            "{:<24} {:>14} {:>14}  {:<12} {}",
            o.name,
            o.value_seconds.map_or("-".into(), words_for),
            words_for(o.limit_seconds),
            o.level.name(),
            o.words
        );
    }
    let _ = writeln!(
        t,
        "\n{:<24} {:<40} {:>14} {:>14}",
        "BACKUP", "NEWEST", "AGE", "LIMIT"
    );
    for b in &status.backups {
        let _ = writeln!(
            t,
            "{:<24} {:<40} {:>14} {:>14}",
            b.objective,
            b.newest.as_ref().map_or("none", |n| n.id.as_str()),
            b.age_seconds.map_or("-".into(), words_for),
            words_for(b.limit_seconds)
        );
    }
    let w = &status.wal;
    let _ = writeln!(t, "\nWAL");
    let _ = writeln!(
        t,
        "  exposure {}   timeline {}   server {}   safe to {}{}   highest {}",
        w.exposure.map_or("not measured".into(), |e| format!(
            "{}{} ({} bytes)",
            if e.lower_bound { ">= " } else { "" },
            words_for(e.seconds),
            e.bytes
        )),
        w.timeline.map_or("-".into(), |t| t.to_string()),
        w.server_lsn.as_deref().unwrap_or("-"),
        w.safe_lsn.as_deref().unwrap_or("-"),
        w.safe_by
            .as_deref()
            .map_or(String::new(), |b| format!(" ({b})")),
        w.highest_segment.as_deref().unwrap_or("-"),
    );
    if let Some(a) = &w.archiver {
        let _ = writeln!(
            t,
            "  archiver: {} archived, last {}; {} failed, last {}",
            a.archived_count,
            a.last_archived_wal.as_deref().unwrap_or("-"),
            a.failed_count,
            a.last_failed_wal.as_deref().unwrap_or("-"),
        );
    }
    let _ = writeln!(
        t,
        "\n{:<24} {:<12} {:>14} {:>10}",
        "REPLICA", "STATE", "LAG BYTES", "LAG"
    );
    if status.replicas.is_empty() {
        let _ = writeln!(t, "(none connected)");
    }
    for r in &status.replicas {
        let _ = writeln!(
            t,
            "{:<24} {:<12} {:>14} {:>9.1}s{}",
            r.name,
            r.state,
            r.lag_bytes,
            r.lag_seconds,
            if r.counts_as_safe {
                "  counts as safe"
            } else {
                ""
            }
        );
    }
    if !status.copies.is_empty() {
        let _ = writeln!(
            t,
            "\n{:<24} {:>14} {:>14}  UPDATED",
            "OFF-REGION COPY", "LAG BYTES", "LAG"
        );
        for c in &status.copies {
            match &c.error {
                Some(e) => {
                    let _ = writeln!(t, "{:<24} unreadable: {e}", c.name);
                }
                None => {
                    let _ = writeln!(
                        t,
                        "{:<24} {:>14} {:>14}  {}",
                        c.name,
                        c.lag_bytes.unwrap_or_default(),
                        c.lag_seconds.map_or("-".into(), words_for),
                        c.updated_at.map_or("-".into(), |u| u.to_string())
                    );
                }
            }
        }
    }
    let _ = writeln!(
        t,
        "\nDR DRILL  {}",
        status
            .drill
            .as_ref()
            .map_or("none reported".into(), |d| format!(
                "{} {} (started {}, finished {}, RTO {}, RPO {})",
                d.id,
                d.status,
                d.started,
                d.finished,
                d.rto_actual_seconds.map_or("-".into(), words_for),
                d.rpo_actual_seconds.map_or("-".into(), words_for)
            ))
    );
    for o in &status.operations {
        let _ = writeln!(
            t,
            "OPERATION {} {} since {} on {} (pid {}): {}{}",
            o.id,
            o.kind,
            o.started,
            o.host,
            o.pid,
            o.detail,
            o.stale
                .as_deref()
                .map_or(String::new(), |s| format!("  [stale: {s}]"))
        );
    }
    let counts: Vec<String> = status
        .incidents_open
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    let _ = writeln!(t, "\nINCIDENTS  open {}", counts.join("  "));
    for i in &status.incidents {
        let _ = writeln!(
            t,
            "  {} {} {}{}",
            i.id,
            i.severity,
            i.title,
            if i.halt { "  [halts trading]" } else { "" }
        );
    }
    let _ = writeln!(t, "\n{:<30} {:<12} DETAIL", "CHECK", "STATUS");
    for c in checks {
        let _ = writeln!(t, "{:<30} {:<12} {}", c.name, c.level.name(), c.words);
    }
    t
}
