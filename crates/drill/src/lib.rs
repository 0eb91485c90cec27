//! DR drills for cfdr: the runbook's disaster scenarios (section 4) played
//! on real PostgreSQL clusters, each a sequence of timed steps with a
//! verdict, measuring the recovery time against the RTO and the data lost
//! against the RPO, validating what was recovered, and reporting it all.
//!
//! - [`Scenario`]: `secrets-loss`, `accidental-deletion`,
//!   `replica-failover`, `database-loss`, `region-loss`, run in that order.
//! - [`Fault`]: faults `--inject` plants; the drill must detect each and
//!   fail naming it.
//! - [`sandbox::run`]: the embedded default. A PostgreSQL cluster in a temp
//!   folder with the CryptoFunk sample ([`sample`]) and a trading workload
//!   running throughout, archiving with `cfdr-wal push` into a folder
//!   repository, a base backup, a logical backup, a streaming replica and a
//!   secrets bundle; then every scenario, then removal of it all (also when
//!   cancelled or failed).
//! - [`configured::run`]: against a configured system, only what is safe
//!   there: restores into a scratch server and a new database, secrets
//!   decrypted in memory; nothing live touched.
//! - [`Report`]: versioned JSON, the runbook's drill checklist in Markdown,
//!   and an SVG timeline ([`chart::timeline_svg`]); [`store_report`] keeps
//!   them at `drills/<id>/` in a repository and [`open_incident`] opens the
//!   incident of a failed drill.
//!
//! RTO: from the moment of the disaster to the validated recovery, per
//! scenario, against the database RTO; the whole drill against the
//! full-system RTO. RPO: the commit time of the last trade committed before
//! the disaster minus that of the last trade present after recovery, and
//! the number of trades in between.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cfdr_drill::Error> {
//! use cfdr_drill::{sandbox, Objectives};
//!
//! let opts = sandbox::SandboxOptions::new("/usr/local/bin".into(), Objectives::default());
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let report = sandbox::run(&opts, cancel, |_| {}).await?;
//! assert_eq!(report.version, 1);
//! # Ok(()) }
//! ```

pub mod chart;
pub mod configured;
mod drive;
mod error;
mod fault;
mod report;
pub mod sample;
pub mod sandbox;
mod scenarios;

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use fault::Fault;
pub use report::{
    Cleanup, Phase, REPORT_VERSION, Report, ScenarioReport, Status, Validation, Verdict,
};

/// A disaster scenario of the runbook (section 4).
///
/// Adding one is a variant here, its name and description, and one function in the
/// scenarios module that plays it on the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The secrets store is lost: restore the bundle and compare.
    SecretsLoss,
    /// A bad `DELETE` during live trading: PITR to just before it.
    AccidentalDeletion,
    /// The primary dies: promote the replica, writes and archiving resume.
    ReplicaFailover,
    /// The primary's data directory is destroyed under load: restore the
    /// newest physical backup with WAL, and the newest logical backup.
    DatabaseLoss,
    /// The primary repository and the primary server are gone: restore
    /// from the secondary repository (the off-region copy) only.
    RegionLoss,
}

impl Scenario {
    /// Every scenario, in the order a drill runs them.
    pub const ALL: [Scenario; 5] = [
        Scenario::SecretsLoss,
        Scenario::AccidentalDeletion,
        Scenario::ReplicaFailover,
        Scenario::DatabaseLoss,
        Scenario::RegionLoss,
    ];

    /// The `--scenario` name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::SecretsLoss => "secrets-loss",
            Scenario::AccidentalDeletion => "accidental-deletion",
            Scenario::ReplicaFailover => "replica-failover",
            Scenario::DatabaseLoss => "database-loss",
            Scenario::RegionLoss => "region-loss",
        }
    }

    /// What it plays, with the runbook section.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::SecretsLoss => {
                "Secrets lost (runbook 3.3): the secrets bundle is restored from the repository and compared with the original."
            }
            Scenario::AccidentalDeletion => {
                "Accidental data deletion (runbook 4.6): a bad DELETE during live trading; point-in-time recovery to just before it from the drill's own record of when it ran, then the deleted rows are copied back."
            }
            Scenario::ReplicaFailover => {
                "Database failure with a replica (runbook 4.1, 6 failover testing): the primary dies, the replica is promoted, writes resume on the new timeline and archiving continues on it."
            }
            Scenario::DatabaseLoss => {
                "Database loss (runbook 4.1, 3.1): the primary's data directory is destroyed under load; the newest physical backup is restored with all archived WAL (PITR --latest), and the newest logical backup into another new cluster."
            }
            Scenario::RegionLoss => {
                "Region loss (runbook 4.4): the primary repository and the primary server are gone; the newest base backup with all WAL is restored (PITR --latest) from the off-region copy alone."
            }
        }
    }

    /// Parses a `--scenario` name (`all` is every scenario).
    pub fn parse_list(names: &[String]) -> Result<Vec<Scenario>> {
        if names.is_empty() || names.iter().any(|n| n == "all") {
            return Ok(Self::ALL.to_vec());
        }
        let mut out = Vec::new();
        for name in names {
            let s = Self::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| Error::Unknown {
                    what: "scenario",
                    name: name.clone(),
                    expected: format!("all, {}", Self::ALL.map(Scenario::name).join(", ")),
                })?;
            out.push(s);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The objectives a drill is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Objectives {
    /// One database restored and validated (runbook: 10 min).
    pub rto_database: Duration,
    /// The whole system, i.e. the whole drill (runbook: 30 min).
    pub rto_full_system: Duration,
    /// Data that may be lost (runbook: 5 min).
    pub rpo: Duration,
}

impl Default for Objectives {
    fn default() -> Self {
        Self {
            rto_database: Duration::from_secs(600),
            rto_full_system: Duration::from_secs(1800),
            rpo: Duration::from_secs(300),
        }
    }
}

/// The `[drill]` table of the configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DrillConfig {
    /// Database RTO in seconds: one database restored and validated.
    pub rto_database_secs: u64,
    /// Full-system RTO in seconds: the whole drill.
    pub rto_full_system_secs: u64,
    /// Severity of the incident a failed drill opens.
    pub incident_severity: cfdr_incident::Severity,
    /// Data directory of the live primary on this host: `--destructive`
    /// `replica-failover` stops it with `pg_ctl -m immediate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_data_dir: Option<std::path::PathBuf>,
    /// Connection URL of the streaming standby `--destructive`
    /// `replica-failover` promotes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_url: Option<String>,
}

impl Default for DrillConfig {
    fn default() -> Self {
        let o = Objectives::default();
        Self {
            rto_database_secs: o.rto_database.as_secs(),
            rto_full_system_secs: o.rto_full_system.as_secs(),
            incident_severity: cfdr_incident::Severity::P2,
            primary_data_dir: None,
            replica_url: None,
        }
    }
}

impl DrillConfig {
    /// The objectives, with the RPO of `[objectives]`.
    pub fn objectives(&self, rpo: Duration) -> Objectives {
        Objectives {
            rto_database: Duration::from_secs(self.rto_database_secs),
            rto_full_system: Duration::from_secs(self.rto_full_system_secs),
            rpo,
        }
    }
}

/// Progress of a running drill, for the caller's display.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A step began.
    StepStarted {
        /// Scenario name, or `sandbox` / `cleanup`.
        scenario: &'a str,
        /// The step.
        step: &'a str,
        /// The RTO the scenario is held to.
        rto: Option<Duration>,
        /// When the scenario's disaster happened (the RTO clock).
        disaster: Option<Instant>,
    },
    /// A step ended.
    StepFinished(&'a Phase),
    /// A scenario ended.
    ScenarioFinished(&'a ScenarioReport),
}

/// Drill id: UTC start time (second precision) and the scope.
pub fn drill_id(started: jiff::Timestamp, scope: &str) -> String {
    format!("{}-{scope}", started.strftime("%Y%m%dT%H%M%SZ"))
}

/// Key prefix of a drill's files in the repository.
pub fn report_prefix(id: &str) -> String {
    format!("drills/{id}/")
}

/// Stores `report.json`, `report.md` and `timeline.svg` under
/// `drills/<id>/` in `store`; returns the keys.
pub async fn store_report(store: &cfdr_storage::Store, report: &Report) -> Result<Vec<String>> {
    let prefix = report_prefix(&report.id);
    let files = [
        ("report.json", report.to_json()),
        ("report.md", report.to_markdown()),
        ("timeline.svg", chart::timeline_svg(report)?),
    ];
    let mut keys = Vec::new();
    for (name, text) in files {
        let key = format!("{prefix}{name}");
        store.put(&key, text.into_bytes()).await?;
        keys.push(key);
    }
    Ok(keys)
}

/// Opens the incident of a failed drill in `store` (its failures as the
/// timeline text); returns the incident id.
pub async fn open_incident(
    store: &cfdr_storage::Store,
    report: &Report,
    severity: cfdr_incident::Severity,
) -> Result<String> {
    let journal = cfdr_incident::Journal::new(store.clone());
    let stamp = cfdr_incident::Stamp::new("cfdr-drill", jiff::Timestamp::now());
    let mut text = format!(
        "DR drill {} ended {}; report at {}report.md.",
        report.id,
        report.status.label(),
        report_prefix(&report.id)
    );
    for f in report.failures() {
        text.push_str(&format!(" {f}."));
    }
    let change = cfdr_incident::Change::Opened {
        title: format!("DR drill {} {}", report.id, report.status.label()),
        severity,
        commander: None,
        halt: false,
        text: Some(text),
    };
    let appended = journal.open(&stamp, change).await?;
    Ok(appended.incident.id.to_string())
}
