//! The incident record and its parts: severity, status, id, timeline,
//! action items, impact, links and the trading halt.

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Severity levels of the runbook's incident playbook (section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Critical: system down, trading stopped, financial loss.
    P0,
    /// High: major functionality impaired.
    P1,
    /// Medium: minor functionality impaired.
    P2,
    /// Low: cosmetic issues, no impact.
    P3,
}

impl Severity {
    /// Every level, most severe first.
    pub const ALL: [Severity; 4] = [Severity::P0, Severity::P1, Severity::P2, Severity::P3];

    /// The runbook's name of the level.
    pub fn label(self) -> &'static str {
        match self {
            Severity::P0 => "Critical",
            Severity::P1 => "High",
            Severity::P2 => "Medium",
            Severity::P3 => "Low",
        }
    }

    /// The runbook's description of the level.
    pub fn description(self) -> &'static str {
        match self {
            Severity::P0 => "System down, trading stopped, financial loss",
            Severity::P1 => "Major functionality impaired",
            Severity::P2 => "Minor functionality impaired",
            Severity::P3 => "Cosmetic issues, no impact",
        }
    }

    /// The runbook's examples of the level.
    pub fn examples(self) -> &'static str {
        match self {
            Severity::P0 => "Database failure, security breach",
            Severity::P1 => "Agent failures, API degradation",
            Severity::P2 => "Single agent down, cache issues",
            Severity::P3 => "Dashboard display issue",
        }
    }

    /// Index 0-3, for per-level tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        })
    }
}

impl FromStr for Severity {
    type Err = Error;

    /// Accepts `P0`-`P3` in either case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "P0" => Ok(Severity::P0),
            "P1" => Ok(Severity::P1),
            "P2" => Ok(Severity::P2),
            "P3" => Ok(Severity::P3),
            _ => Err(Error::UnknownSeverity {
                given: s.to_owned(),
            }),
        }
    }
}

/// Where an incident is in its lifecycle (see [`crate::Change`] for the
/// state machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Opened; the cause is not known yet.
    Investigating,
    /// The root cause is known.
    Identified,
    /// The damage is contained; a full fix may still be pending.
    Mitigated,
    /// Service is back to normal; the post-mortem is due.
    Resolved,
    /// The post-mortem is done. Final: a closed incident cannot be reopened.
    Closed,
}

impl Status {
    /// Whether the incident is still being worked on (not resolved or closed).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Status::Investigating | Status::Identified | Status::Mitigated
        )
    }

    /// Capitalised name, as in the runbook's template.
    pub fn title(self) -> &'static str {
        match self {
            Status::Investigating => "Investigating",
            Status::Identified => "Identified",
            Status::Mitigated => "Mitigated",
            Status::Resolved => "Resolved",
            Status::Closed => "Closed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Investigating => "investigating",
            Status::Identified => "identified",
            Status::Mitigated => "mitigated",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        })
    }
}

/// An incident id: `INC-YYYYMMDD-NNN` (UTC day of opening, then a number
/// within that day), so ids sort by opening day as strings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IncidentId(String);

impl IncidentId {
    /// The id of the `number`th incident opened on the UTC day of `at`.
    pub fn new(at: Timestamp, number: u32) -> Self {
        let d = at.to_zoned(jiff::tz::TimeZone::UTC).date();
        Self(format!(
            "INC-{:04}{:02}{:02}-{number:03}",
            d.year(),
            d.month(),
            d.day()
        ))
    }

    /// Parses and validates an id.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::InvalidId { id: s.to_owned() };
        let rest = s.strip_prefix("INC-").ok_or_else(bad)?;
        let (day, number) = rest.split_once('-').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if day.len() != 8 || !digits(day) || number.len() < 3 || !digits(number) {
            return Err(bad());
        }
        jiff::civil::Date::strptime("%Y%m%d", day).map_err(|_| bad())?;
        Ok(Self(s.to_owned()))
    }

    /// The number within its day.
    pub fn number(&self) -> u32 {
        self.0[13..].parse().unwrap_or(0)
    }

    /// The `YYYYMMDD` day part.
    pub fn day(&self) -> &str {
        &self.0[4..12]
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IncidentId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for IncidentId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<IncidentId> for String {
    fn from(id: IncidentId) -> String {
        id.0
    }
}

/// What a timeline entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// The incident was opened (alert triggered).
    Opened,
    /// Someone acknowledged it.
    Acknowledged,
    /// A free-form note (not a status update).
    Note,
    /// A status update for stakeholders (resets the update SLA).
    StatusUpdate,
    /// Root cause identified.
    Identified,
    /// Mitigated.
    Mitigated,
    /// Resolved (all-clear).
    Resolved,
    /// Reopened after resolution.
    Reopened,
    /// Closed after the post-mortem.
    Closed,
    /// Severity reassessed.
    Severity,
    /// Incident commander changed.
    Commander,
    /// Trading halted.
    HaltSet,
    /// Trading resumed.
    HaltCleared,
    /// An action item was added or completed.
    ActionItem,
    /// Post-mortem fields were edited.
    PostMortem,
    /// Backups or drills were linked.
    Link,
    /// A notification could not be delivered.
    NotificationFailed,
}

impl EntryKind {
    /// Whether the entry belongs in the report's timeline: every change and
    /// note does (notes record what responders found and did, the
    /// "timeline of events" the runbook's post-incident report asks for);
    /// record edits (post-mortem text, action items, links) do not, they
    /// fill their own sections of the report.
    pub fn in_report(self) -> bool {
        !matches!(
            self,
            EntryKind::ActionItem | EntryKind::PostMortem | EntryKind::Link
        )
    }
}

/// One line of the incident timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When it happened.
    pub at: Timestamp,
    /// The event's sequence number (ties on `at` are ordered by it).
    pub seq: u64,
    /// Who recorded it.
    pub author: String,
    /// What kind of entry.
    pub kind: EntryKind,
    /// The text shown in the timeline.
    pub text: String,
}

/// A follow-up task from the post-mortem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionItem {
    /// What to do.
    pub text: String,
    /// Who owns it.
    pub owner: Option<String>,
    /// Whether it is done.
    pub done: bool,
    /// When it was marked done.
    pub done_at: Option<Timestamp>,
}

/// The impact assessment (the template's "Impact" section). How long trading
/// was stopped is derived from the halt periods, not typed in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impact {
    /// Financial impact, free text (e.g. "$1,250 estimated slippage").
    pub financial: Option<String>,
    /// Users affected, free text (e.g. "N/A (automated system)").
    pub users_affected: Option<String>,
}

/// Backups and drills related to the incident.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// Backup ids (restored from, taken before a fix, ...).
    pub backups: Vec<String>,
    /// Drill ids or references.
    pub drills: Vec<String>,
}

/// One period during which this incident held the trading halt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltPeriod {
    /// When trading was halted.
    pub from: Timestamp,
    /// Who halted it.
    pub set_by: String,
    /// Why.
    pub reason: String,
    /// When trading resumed, if it has.
    pub to: Option<Timestamp>,
    /// Who resumed it.
    pub cleared_by: Option<String>,
    /// Why it was safe to resume.
    pub cleared_reason: Option<String>,
}

impl HaltPeriod {
    /// Length of the period; `None` while it lasts.
    pub fn duration(&self) -> Option<SignedDuration> {
        self.to.map(|to| to.duration_since(self.from))
    }
}
