//! The guard's full picture, as `cfdr-status` prints, serves and exports
//! it. Field names are a stable interface (`--json`, `/gate`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::backups::BackupSeen;
use crate::exposure::Exposure;
use crate::probe::{ArchiverStats, Replica};
use crate::records::{CopyLag, DrillSeen, OperationSeen};
use crate::state::{Condition, Reason, TradingState};

/// The gate: the state, why, and since when.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gate {
    /// The trading state readers get from `Guard::state()`.
    pub state: TradingState,
    /// Every condition seen (warnings included), strongest first.
    pub reasons: Vec<Condition>,
    /// When the state was entered.
    pub since: Timestamp,
    /// The refresher missed the staleness limit: the state is the
    /// fail-closed one.
    pub stale: bool,
    /// When the refresher last completed a cycle.
    pub last_refresh: Timestamp,
}

/// How an objective or check stands. The order is the exit-code order of
/// `cfdr-status`: the worst one wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Not measured live (does not change the exit code).
    NotMeasured,
    /// Kept.
    Ok,
    /// Kept, with a warning.
    Warn,
    /// Cannot tell.
    Unknown,
    /// Broken.
    Critical,
}

impl Level {
    /// The monitoring-plugin exit code (0 ok, 1 warn, 2 critical, 3 unknown).
    pub fn exit_code(self) -> u8 {
        match self {
            Level::NotMeasured | Level::Ok => 0,
            Level::Warn => 1,
            Level::Critical => 2,
            Level::Unknown => 3,
        }
    }

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Level::NotMeasured => "not-measured",
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Unknown => "unknown",
            Level::Critical => "critical",
        }
    }
}

/// One objective: measured value against its limit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Objective {
    /// `rpo`, `rto`, or `backup:<kind>[/<class>]`.
    pub name: String,
    /// The measured value in seconds, when measured.
    pub value_seconds: Option<f64>,
    /// The limit in seconds.
    pub limit_seconds: f64,
    /// How it stands.
    pub level: Level,
    /// In words.
    pub words: String,
}

/// The newest backup of one scheduled kind/class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackupAge {
    /// `kind` or `kind/class`.
    pub objective: String,
    /// The newest committed backup, if any.
    pub newest: Option<BackupSeen>,
    /// Its age in seconds.
    pub age_seconds: Option<f64>,
    /// The limit in seconds.
    pub limit_seconds: f64,
}

/// An open incident.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpenIncident {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// `P0`..`P3`.
    pub severity: String,
    /// Whether it holds the trading halt.
    pub halt: bool,
}

/// How often the state went from one value to another, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransitionCount {
    /// From.
    pub from: TradingState,
    /// To.
    pub to: TradingState,
    /// The reason of the new state (`none` for `Active`).
    pub reason: String,
    /// Count since the guard started.
    pub count: u64,
}

/// WAL and its safety.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WalStatus {
    /// The timeline written.
    pub timeline: Option<u32>,
    /// The server's WAL insert position.
    pub server_lsn: Option<String>,
    /// Up to where the WAL is safe: in the repository, or on a standby
    /// that counts as safe.
    pub safe_lsn: Option<String>,
    /// What holds it there: `archive`, `wal-stream` or `replica:<name>`.
    pub safe_by: Option<String>,
    /// The highest segment counted as safe.
    pub highest_segment: Option<String>,
    /// The exposure, when measured.
    pub exposure: Option<Exposure>,
    /// `pg_stat_archiver`.
    pub archiver: Option<ArchiverStats>,
}

/// Everything the guard knows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    /// When this picture was taken.
    pub generated_at: Timestamp,
    /// The repository (without credentials).
    pub repository: String,
    /// The gate.
    pub gate: Gate,
    /// Objectives, RPO first.
    pub objectives: Vec<Objective>,
    /// Newest backup per scheduled kind/class.
    pub backups: Vec<BackupAge>,
    /// WAL.
    pub wal: WalStatus,
    /// Standbys.
    pub replicas: Vec<Replica>,
    /// Open incidents.
    pub incidents: Vec<OpenIncident>,
    /// Open incidents per severity (`P0`..`P3`, all present).
    pub incidents_open: BTreeMap<String, u64>,
    /// Restores and failovers recorded as in progress (stale ones too).
    pub operations: Vec<OperationSeen>,
    /// The newest DR drill with a report.
    pub drill: Option<DrillSeen>,
    /// Off-region copies and their lag.
    pub copies: Vec<CopyLag>,
    /// State changes since the guard started.
    pub transitions: Vec<TransitionCount>,
    /// Completed refresh cycles.
    pub cycles: u64,
}

/// One named check, like Barman's `check`. Names are a stable interface.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// `trading-gate`, `guard-fresh`, `primary`, `repository`,
    /// `rpo-exposure`, `wal-archiving`, `incidents`, `operations`, `drill`,
    /// `backup:<objective>`.
    pub name: String,
    /// How it stands.
    pub level: Level,
    /// In words.
    pub words: String,
}

impl Status {
    fn has(&self, reason: Reason) -> Option<&Condition> {
        self.gate.reasons.iter().find(|c| c.reason == reason)
    }

    /// The named checks.
    pub fn checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        let mut push = |name: &str, level: Level, words: String| {
            out.push(Check {
                name: name.to_owned(),
                level,
                words,
            })
        };
        let gate_level = match self.gate.state {
            TradingState::Active => Level::Ok,
            TradingState::Reducing => Level::Warn,
            TradingState::Halted => Level::Critical,
        };
        let why: Vec<&str> = self
            .gate
            .reasons
            .iter()
            .filter(|c| c.effect > TradingState::Active)
            .map(|c| c.reason.name())
            .collect();
        push(
            "trading-gate",
            gate_level,
            if why.is_empty() {
                format!("{} since {}", self.gate.state, self.gate.since)
            } else {
                format!(
                    "{} since {}: {}",
                    self.gate.state,
                    self.gate.since,
                    why.join(", ")
                )
            },
        );
        push(
            "guard-fresh",
            if self.gate.stale {
                Level::Critical
            } else {
                Level::Ok
            },
            format!("last refresh {}", self.gate.last_refresh),
        );
        for (name, reasons) in [
            (
                "primary",
                &[Reason::PrimaryDown, Reason::PrimaryInRecovery][..],
            ),
            ("repository", &[Reason::RepositoryUnreachable][..]),
        ] {
            match reasons.iter().find_map(|r| self.has(*r)) {
                Some(c) => push(name, Level::Critical, c.detail.clone()),
                None => push(name, Level::Ok, "answering".into()),
            }
        }
        if let Some(rpo) = self.objectives.iter().find(|o| o.name == "rpo") {
            push("rpo-exposure", rpo.level, rpo.words.clone());
        }
        match (&self.wal.archiver, self.has(Reason::ArchiveFailing)) {
            (_, Some(c)) => push("wal-archiving", Level::Warn, c.detail.clone()),
            (Some(a), None) => push(
                "wal-archiving",
                Level::Ok,
                format!(
                    "last archived {}",
                    a.last_archived_wal.as_deref().unwrap_or("nothing yet")
                ),
            ),
            (None, None) => push(
                "wal-archiving",
                Level::Unknown,
                "no reading from PostgreSQL".into(),
            ),
        }
        let halting: Vec<&str> = self
            .incidents
            .iter()
            .filter(|i| i.halt)
            .map(|i| i.id.as_str())
            .collect();
        let serious = self
            .incidents
            .iter()
            .filter(|i| i.severity == "P0" || i.severity == "P1")
            .count();
        if let Some(c) = self.has(Reason::IncidentHalt) {
            push("incidents", Level::Critical, c.detail.clone());
        } else if !halting.is_empty() {
            push(
                "incidents",
                Level::Critical,
                format!("halting: {}", halting.join(", ")),
            );
        } else if serious > 0 {
            push(
                "incidents",
                Level::Warn,
                format!("{serious} open P0/P1 incident(s)"),
            );
        } else {
            push(
                "incidents",
                Level::Ok,
                format!("{} open", self.incidents.len()),
            );
        }
        let stale: Vec<String> = self
            .operations
            .iter()
            .filter_map(|o| Some(format!("{} ({})", o.id, o.stale.as_deref()?)))
            .collect();
        if let Some(c) = self.has(Reason::OperationInProgress) {
            push("operations", Level::Critical, c.detail.clone());
        } else if !stale.is_empty() {
            push(
                "operations",
                Level::Warn,
                format!(
                    "stale operation marker(s), not holding the halt: {}",
                    stale.join("; ")
                ),
            );
        } else {
            push(
                "operations",
                Level::Ok,
                "no restore or failover in progress".into(),
            );
        }
        if let Some(o) = self.objectives.iter().find(|o| o.name == "drill") {
            push("drill", o.level, o.words.clone());
        }
        for o in self
            .objectives
            .iter()
            .filter(|o| o.name.starts_with("backup:"))
        {
            push(&o.name, o.level, o.words.clone());
        }
        out
    }

    /// The worst level among the checks.
    pub fn overall(&self) -> Level {
        self.checks()
            .iter()
            .map(|c| c.level)
            .max()
            .unwrap_or(Level::Unknown)
    }
}

/// Seconds as words: `42 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`.
pub fn words_for(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}
