//! Prometheus text exposition of a [`Status`]. Every series is written on
//! every scrape (zeros included), so no metric goes silent; names and
//! labels are a stable interface (a golden test fails on any rename).

use std::fmt::Write;

use crate::state::{Reason, TradingState};
use crate::status::{Level, Status};

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        if value.is_finite() {
            let _ = writeln!(self.0, " {value}");
        } else {
            let _ = writeln!(self.0, " NaN");
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }
}

fn bool_f(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The metrics of `status` in the Prometheus text format (version 0.0.4).
pub fn render(status: &Status) -> String {
    let mut o = Out(String::with_capacity(4096));
    o.gauge(
        "cfdr_status_up",
        "1 when cfdr-status produced this scrape.",
        1.0,
    );
    o.gauge(
        "cfdr_trading_state",
        "Trading state: 0 active, 1 reducing (no new risk), 2 halted.",
        f64::from(status.gate.state.code()),
    );
    o.gauge(
        "cfdr_trading_state_since_timestamp_seconds",
        "When the trading state was entered.",
        status.gate.since.as_millisecond() as f64 / 1000.0,
    );
    o.family(
        "cfdr_gate_reason",
        "gauge",
        "1 while a condition holds; effect is the state it asks for (active = warning only).",
    );
    for r in Reason::ALL {
        let held = status.gate.reasons.iter().find(|c| c.reason == r);
        o.sample(
            "cfdr_gate_reason",
            &[
                ("reason", r.name()),
                (
                    "effect",
                    held.map_or(TradingState::Active, |c| c.effect).name(),
                ),
            ],
            bool_f(held.is_some()),
        );
    }
    o.family(
        "cfdr_gate_transitions_total",
        "counter",
        "Trading state changes since the guard started.",
    );
    for t in &status.transitions {
        o.sample(
            "cfdr_gate_transitions_total",
            &[
                ("from", t.from.name()),
                ("to", t.to.name()),
                ("reason", &t.reason),
            ],
            t.count as f64,
        );
    }
    let e = status.wal.exposure;
    o.gauge(
        "cfdr_rpo_exposure_seconds",
        "Age of the oldest committed change not yet safe in the repository (NaN when not measured).",
        e.map_or(f64::NAN, |e| e.seconds),
    );
    o.gauge(
        "cfdr_rpo_exposure_bytes",
        "WAL bytes past the safe position while committed work is at risk.",
        e.map_or(f64::NAN, |e| e.bytes as f64),
    );
    o.gauge(
        "cfdr_rpo_exposure_lower_bound",
        "1 when the exposure may be larger than reported (no safe moment seen yet).",
        bool_f(e.is_some_and(|e| e.lower_bound)),
    );
    o.family(
        "cfdr_objective_ok",
        "gauge",
        "1 when the objective is met, 0 when not or unknown.",
    );
    for ob in status
        .objectives
        .iter()
        .filter(|o| o.level != Level::NotMeasured)
    {
        o.sample(
            "cfdr_objective_ok",
            &[("objective", &ob.name)],
            bool_f(matches!(ob.level, Level::Ok | Level::Warn)),
        );
    }
    o.family(
        "cfdr_objective_limit_seconds",
        "gauge",
        "The limit of each objective.",
    );
    for ob in &status.objectives {
        o.sample(
            "cfdr_objective_limit_seconds",
            &[("objective", &ob.name)],
            ob.limit_seconds,
        );
    }
    o.family(
        "cfdr_backup_last_success_timestamp_seconds",
        "gauge",
        "Commit time of the newest backup of each scheduled kind and class (0 when none).",
    );
    for b in &status.backups {
        let (kind, class) = b.objective.split_once('/').unwrap_or((&b.objective, ""));
        o.sample(
            "cfdr_backup_last_success_timestamp_seconds",
            &[("kind", kind), ("class", class)],
            b.newest
                .as_ref()
                .map_or(0.0, |n| n.finished.as_millisecond() as f64 / 1000.0),
        );
    }
    let a = status.wal.archiver.as_ref();
    o.gauge(
        "cfdr_wal_last_archived_timestamp_seconds",
        "When PostgreSQL last archived a WAL file (0 when never or unknown).",
        a.and_then(|a| a.last_archived_time).unwrap_or(0.0),
    );
    o.gauge(
        "cfdr_wal_last_failed_timestamp_seconds",
        "When archive_command last failed (0 when never or unknown).",
        a.and_then(|a| a.last_failed_time).unwrap_or(0.0),
    );
    o.family(
        "cfdr_wal_archived_total",
        "counter",
        "WAL files archived (pg_stat_archiver).",
    );
    o.sample(
        "cfdr_wal_archived_total",
        &[],
        a.map_or(0.0, |a| a.archived_count as f64),
    );
    o.family(
        "cfdr_wal_archive_failures_total",
        "counter",
        "Failed archive_command runs (pg_stat_archiver).",
    );
    o.sample(
        "cfdr_wal_archive_failures_total",
        &[],
        a.map_or(0.0, |a| a.failed_count as f64),
    );
    o.gauge(
        "cfdr_wal_timeline",
        "The timeline the primary writes.",
        status.wal.timeline.map_or(f64::NAN, f64::from),
    );
    o.family(
        "cfdr_replica_lag_bytes",
        "gauge",
        "Bytes a standby has not replayed.",
    );
    for r in &status.replicas {
        o.sample(
            "cfdr_replica_lag_bytes",
            &[("replica", &r.name)],
            r.lag_bytes as f64,
        );
    }
    o.family(
        "cfdr_replica_lag_seconds",
        "gauge",
        "Replay lag of a standby.",
    );
    for r in &status.replicas {
        o.sample(
            "cfdr_replica_lag_seconds",
            &[("replica", &r.name)],
            r.lag_seconds,
        );
    }
    let d = status.drill.as_ref();
    o.gauge(
        "cfdr_drill_last_run_timestamp_seconds",
        "When the newest DR drill with a report finished (0 when none).",
        d.map_or(0.0, |d| d.finished.as_millisecond() as f64 / 1000.0),
    );
    o.gauge(
        "cfdr_drill_last_success",
        "1 when the newest DR drill succeeded, 0 when it did not or none ran.",
        bool_f(d.is_some_and(|d| d.successful())),
    );
    o.gauge(
        "cfdr_operations_in_progress",
        "Restores and failovers recorded as in progress (not stale): each holds the trading halt.",
        status
            .operations
            .iter()
            .filter(|o| o.stale.is_none())
            .count() as f64,
    );
    o.gauge(
        "cfdr_operations_stale",
        "Operation markers whose process is gone or that stopped being rewritten.",
        status
            .operations
            .iter()
            .filter(|o| o.stale.is_some())
            .count() as f64,
    );
    o.family(
        "cfdr_copy_lag_seconds",
        "gauge",
        "Age of the oldest object an off-region copy has not copied yet (NaN when its state is unreadable).",
    );
    for c in &status.copies {
        o.sample(
            "cfdr_copy_lag_seconds",
            &[("copy", &c.name)],
            c.lag_seconds.unwrap_or(f64::NAN),
        );
    }
    o.family(
        "cfdr_copy_lag_bytes",
        "gauge",
        "Bytes an off-region copy has not copied yet (NaN when its state is unreadable).",
    );
    for c in &status.copies {
        o.sample(
            "cfdr_copy_lag_bytes",
            &[("copy", &c.name)],
            c.lag_bytes.map_or(f64::NAN, |b| b as f64),
        );
    }
    o.family(
        "cfdr_copy_updated_timestamp_seconds",
        "gauge",
        "When the copier last wrote its state (0 when unreadable).",
    );
    for c in &status.copies {
        o.sample(
            "cfdr_copy_updated_timestamp_seconds",
            &[("copy", &c.name)],
            c.updated_at
                .map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0),
        );
    }
    o.family(
        "cfdr_incidents_open",
        "gauge",
        "Open incidents by severity.",
    );
    for (sev, n) in &status.incidents_open {
        o.sample("cfdr_incidents_open", &[("severity", sev)], *n as f64);
    }
    o.gauge(
        "cfdr_incidents_halting",
        "Open incidents that hold the trading halt.",
        status.incidents.iter().filter(|i| i.halt).count() as f64,
    );
    o.gauge(
        "cfdr_guard_last_refresh_timestamp_seconds",
        "When the guard last completed a refresh cycle.",
        status.gate.last_refresh.as_millisecond() as f64 / 1000.0,
    );
    o.gauge(
        "cfdr_guard_stale",
        "1 when the refresher missed the staleness limit (the state is the fail-closed one).",
        bool_f(status.gate.stale),
    );
    o.family(
        "cfdr_guard_cycles_total",
        "counter",
        "Completed refresh cycles.",
    );
    o.sample("cfdr_guard_cycles_total", &[], status.cycles as f64);
    o.family(
        "cfdr_check_status",
        "gauge",
        "Named checks: 0 ok, 1 warn, 2 critical, 3 unknown (cfdr-status exit codes).",
    );
    for c in status.checks() {
        o.sample(
            "cfdr_check_status",
            &[("check", &c.name)],
            f64::from(c.level.exit_code()),
        );
    }
    o.0
}
