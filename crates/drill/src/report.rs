//! The drill report: a versioned JSON document, the Markdown that fills in
//! the runbook's drill checklist (section 6), and the SVG timeline chart.
//!
//! `version`, `status`, `started`, `finished`, `rto_actual_seconds` and
//! `rpo_actual_seconds` are the stable core other tools read (cfdr-status
//! shows the last drill from them).

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Fault;

/// Format version of `report.json`.
pub const REPORT_VERSION: u32 = 1;

/// How the drill as a whole ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Every scenario passed and met its objectives.
    Successful,
    /// A scenario failed or missed an objective.
    Failed,
    /// The drill ran past the full-system RTO and was stopped.
    TimedOut,
    /// Stopped by the operator (Ctrl-C).
    Cancelled,
}

impl Status {
    /// `SUCCESSFUL`, `FAILED`, ...
    pub fn label(self) -> &'static str {
        match self {
            Status::Successful => "SUCCESSFUL",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Cancelled => "CANCELLED",
        }
    }
}

/// One timed step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Scenario name, or `sandbox` / `cleanup`.
    pub scenario: String,
    /// What the step did.
    pub name: String,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// Seconds taken.
    pub seconds: f64,
    /// Bytes read or written, where the step moved data.
    pub bytes: Option<u64>,
    /// Whether the step succeeded.
    pub ok: bool,
    /// What went wrong, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One check of a recovered copy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// The values seen.
    pub detail: String,
}

/// A scenario's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Recovered, validated, within objectives.
    Passed,
    /// A step failed, a validation failed or an objective was missed.
    Failed,
    /// Not reached (cancelled or timed out before it).
    NotRun,
}

/// What one scenario measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// Scenario name (`database-loss`, ...).
    pub name: String,
    /// The runbook situation it plays.
    pub description: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Start.
    pub started: Timestamp,
    /// End.
    pub finished: Timestamp,
    /// The RTO it is held to, in seconds.
    pub rto_objective_seconds: f64,
    /// From the disaster to the validated recovery, in seconds.
    pub rto_actual_seconds: Option<f64>,
    /// The RPO it is held to, in seconds.
    pub rpo_objective_seconds: f64,
    /// Commit time of the last trade before the disaster minus that of the
    /// last trade present after recovery (0 when nothing was lost).
    pub rpo_actual_seconds: Option<f64>,
    /// Trades committed before the disaster and missing after recovery.
    pub rpo_trades: Option<u64>,
    /// The last trade committed before the disaster.
    pub last_trade_before: Option<u64>,
    /// The last trade present after recovery.
    pub last_trade_after: Option<u64>,
    /// Checks of the recovered copy.
    pub validations: Vec<Validation>,
    /// The faults planted in this scenario.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injected: Vec<Fault>,
    /// The faults the scenario's checks saw.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults_detected: Vec<Fault>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// Whether the sandbox (or scratch targets) were removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cleanup {
    /// `removed`, `failed` or `nothing to remove`.
    pub status: String,
    /// What was removed, or what is left and where.
    pub detail: String,
}

/// The whole report (`drills/<id>/report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// Drill id: UTC start time and scope, sorting by time
    /// (`20261201T203000Z-all`).
    pub id: String,
    /// How it ended.
    pub status: Status,
    /// Start.
    pub started: Timestamp,
    /// End.
    pub finished: Timestamp,
    /// `sandbox` (the embedded default) or `configured`.
    pub mode: String,
    /// The slowest scenario's recovery time (disaster to validated copy).
    pub rto_actual_seconds: Option<f64>,
    /// The largest data loss of any scenario, in seconds.
    pub rpo_actual_seconds: Option<f64>,
    /// The largest data loss of any scenario, in trades.
    pub rpo_actual_trades: Option<u64>,
    /// Database RTO (one database restored), seconds.
    pub rto_database_objective_seconds: f64,
    /// Full-system RTO (the whole drill), seconds.
    pub rto_full_system_objective_seconds: f64,
    /// RPO, seconds.
    pub rpo_objective_seconds: f64,
    /// Wall time of the whole drill, seconds.
    pub total_seconds: f64,
    /// Every step, in order.
    pub phases: Vec<Phase>,
    /// Scenario results, in the order run.
    pub scenarios: Vec<ScenarioReport>,
    /// Faults planted with `--inject`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injected: Vec<Fault>,
    /// Sandbox removal.
    pub cleanup: Cleanup,
    /// The incident a failed drill opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// PostgreSQL version of the drill's clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |s| format!("{s:.1} s"))
}

impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Every failure of every scenario, one line each.
    /// (A failed set-up or cleanup step counts too.)
    pub fn failures(&self) -> Vec<String> {
        let outside = self
            .phases
            .iter()
            .filter(|p| !p.ok && (p.scenario == "sandbox" || p.scenario == "cleanup"))
            .map(|p| {
                format!(
                    "{}: {}: {}",
                    p.scenario,
                    p.name,
                    p.error.as_deref().unwrap_or("failed")
                )
            });
        outside
            .chain(
                self.scenarios
                    .iter()
                    .flat_map(|s| s.failures.iter().map(move |f| format!("{}: {f}", s.name))),
            )
            .collect()
    }

    /// The Markdown report: summary, the runbook's drill checklist filled
    /// in, then each scenario's steps, measures and validations.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let ran: Vec<&ScenarioReport> = self
            .scenarios
            .iter()
            .filter(|s| s.verdict != Verdict::NotRun)
            .collect();
        let all_steps_ok = self.phases.iter().all(|p| p.ok);
        let validated = !ran.is_empty()
            && ran
                .iter()
                .all(|s| !s.validations.is_empty() && s.validations.iter().all(|v| v.passed));
        let measured = ran.iter().all(|s| s.rto_actual_seconds.is_some());
        let _ = writeln!(md, "# DR drill {} — {}\n", self.id, self.status.label());
        let _ = writeln!(
            md,
            "{} to {} ({:.1} s, {} mode{}).\n",
            self.started,
            self.finished,
            self.total_seconds,
            self.mode,
            self.postgres
                .as_deref()
                .map(|v| format!(", PostgreSQL {v}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            md,
            "| scenario | verdict | RTO actual / objective | RPO actual / objective | trades lost |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for s in &self.scenarios {
            let _ = writeln!(
                md,
                "| {} | {:?} | {} / {:.0} s | {} / {:.0} s | {} |",
                s.name,
                s.verdict,
                secs(s.rto_actual_seconds),
                s.rto_objective_seconds,
                secs(s.rpo_actual_seconds),
                s.rpo_objective_seconds,
                s.rpo_trades.map_or("-".into(), |n| n.to_string())
            );
        }
        let _ = writeln!(
            md,
            "\nWhole drill: {:.1} s against the full-system RTO of {:.0} s.\n",
            self.total_seconds, self.rto_full_system_objective_seconds
        );
        let check = |b: bool| if b { "x" } else { " " };
        let _ = writeln!(md, "## Drill checklist (runbook section 6)\n");
        let names: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
        let items = [
            (true, format!("Scenario selected and communicated: {}", names.join(", "))),
            (false, "Team assembled (people: not checked by cfdr-drill)".to_owned()),
            (
                self.phases.iter().any(|p| p.scenario == "sandbox" && p.ok)
                    || self.mode == "configured",
                "Backup systems verified accessible: repository opened, backups listed".to_owned(),
            ),
            (
                all_steps_ok && self.status != Status::Cancelled,
                format!("Procedure followed step-by-step: {} steps", self.phases.len()),
            ),
            (
                measured && !ran.is_empty(),
                format!(
                    "Recovery time measured: slowest {} (database RTO {:.0} s)",
                    secs(self.rto_actual_seconds),
                    self.rto_database_objective_seconds
                ),
            ),
            (
                validated,
                "Functionality verified: amcheck, row counts and content hashes, trading invariants"
                    .to_owned(),
            ),
            (
                true,
                match (self.failures().len(), &self.incident) {
                    (0, _) => "Issues documented: none found".to_owned(),
                    (n, Some(id)) => format!("Issues documented: {n} below, incident {id}"),
                    (n, None) => format!("Issues documented: {n} below"),
                },
            ),
            (false, "Post-drill review completed (people)".to_owned()),
            (false, "Procedures updated (people)".to_owned()),
        ];
        for (done, text) in items {
            let _ = writeln!(md, "- [{}] {text}", check(done));
        }
        if !self.injected.is_empty() {
            let names: Vec<&str> = self.injected.iter().map(|f| f.name()).collect();
            let _ = writeln!(md, "\nInjected faults: {}.", names.join(", "));
        }
        for s in &self.scenarios {
            let _ = writeln!(
                md,
                "\n## {} — {:?}\n\n{}\n",
                s.name, s.verdict, s.description
            );
            if let (Some(b), Some(a)) = (s.last_trade_before, s.last_trade_after) {
                let _ = writeln!(
                    md,
                    "Last trade before the disaster: #{b}; last trade after recovery: #{a}.\n"
                );
            }
            for p in self.phases.iter().filter(|p| p.scenario == s.name) {
                let _ = writeln!(
                    md,
                    "- {} {:>7.2} s  {}{}{}",
                    if p.ok { "ok  " } else { "FAIL" },
                    p.seconds,
                    p.name,
                    p.bytes.map(|b| format!(" ({b} bytes)")).unwrap_or_default(),
                    p.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
            if !s.validations.is_empty() {
                let _ = writeln!(md);
            }
            for v in &s.validations {
                let _ = writeln!(md, "- [{}] {}: {}", check(v.passed), v.name, v.detail);
            }
            for f in &s.failures {
                let _ = writeln!(md, "\n**Failure:** {f}");
            }
        }
        let _ = writeln!(
            md,
            "\nCleanup: {} ({}).",
            self.cleanup.status, self.cleanup.detail
        );
        md
    }
}
