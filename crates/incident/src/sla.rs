//! Service levels of the runbook's playbook, checked against a given `now`.
//!
//! - **Acknowledgement** within the severity's response time (P0 5 minutes
//!   for "immediate", the runbook's first-five-minutes step; P1 1 hour; P2 4
//!   hours; P3 1 business day), while the incident is active and nobody has
//!   acknowledged it. Resolving first ends the obligation.
//! - **Status updates** every 15 minutes during an active P0/P1. Every
//!   communicated change counts (status update, acknowledgement,
//!   identified, mitigated, halt, resume, severity change); notes do not.
//! - **Post-mortem** within 24 hours of resolution for P0/P1: closing the
//!   incident records that it is done.
//!
//! Business days are Monday to Friday in a configured IANA time zone (UTC by
//! default), minus configured holidays. "N business days" after a time is
//! the same local time N business days later; a time on a day off counts
//! from the start of the next business day.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};
use serde::{Deserialize, Serialize};

use crate::model::{IncidentId, Severity};
use crate::record::Incident;
use crate::{Error, Result};

/// How long something may take: a duration or a number of business days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Deadline {
    /// A fixed duration.
    Duration(SignedDuration),
    /// Business days (see the module docs).
    BusinessDays(u32),
}

impl Deadline {
    /// The due time for something that started at `from`.
    pub fn due(self, from: Timestamp, calendar: &Calendar) -> Timestamp {
        match self {
            Deadline::Duration(d) => from.saturating_add(d).unwrap_or(from),
            Deadline::BusinessDays(n) => calendar.add_business_days(from, n),
        }
    }
}

impl FromStr for Deadline {
    type Err = Error;

    /// `5m`, `1h`, `4h 30m`, `PT1H` (jiff's friendly or ISO 8601 durations),
    /// or `1 business day`, `2 business days`.
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let bad = |reason: &str| Error::InvalidSetting {
            setting: format!("deadline {s:?}"),
            reason: reason.into(),
        };
        if let Some(n) = t
            .strip_suffix("business days")
            .or_else(|| t.strip_suffix("business day"))
        {
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| bad("expected e.g. \"1 business day\""))?;
            return Ok(Deadline::BusinessDays(n));
        }
        let d: SignedDuration = t
            .parse()
            .map_err(|_| bad("expected a duration such as \"5m\", \"1h\" or \"1 business day\""))?;
        if d.is_negative() {
            return Err(bad("must not be negative"));
        }
        Ok(Deadline::Duration(d))
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deadline::Duration(d) => write!(f, "{d:#}"),
            Deadline::BusinessDays(1) => f.write_str("1 business day"),
            Deadline::BusinessDays(n) => write!(f, "{n} business days"),
        }
    }
}

impl TryFrom<String> for Deadline {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Deadline> for String {
    fn from(d: Deadline) -> String {
        d.to_string()
    }
}

/// Working days: a time zone and holidays (weekends are always off).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Calendar {
    /// IANA time zone of business days.
    pub timezone: String,
    /// Extra days off (`YYYY-MM-DD`).
    pub holidays: Vec<Date>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            holidays: Vec::new(),
        }
    }
}

impl Calendar {
    fn tz(&self) -> TimeZone {
        // Validated by `SlaPolicy::validate`; UTC if not.
        TimeZone::get(&self.timezone).unwrap_or(TimeZone::UTC)
    }

    /// Whether `date` is a business day.
    pub fn is_business_day(&self, date: Date) -> bool {
        !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
            && !self.holidays.contains(&date)
    }

    /// `n` business days after `from` (see the module docs). At the end of
    /// the supported calendar (year 9999) the last reachable day is the
    /// answer: a huge `n` or a holiday there must not loop forever.
    pub fn add_business_days(&self, from: Timestamp, n: u32) -> Timestamp {
        let tz = self.tz();
        let mut z: Zoned = from.to_zoned(tz.clone());
        if !self.is_business_day(z.date()) {
            // Start of the next business day.
            let mut d = z.date();
            while !self.is_business_day(d) {
                match d.tomorrow() {
                    Ok(next) => d = next,
                    Err(_) => return z.timestamp(),
                }
            }
            z = d.to_zoned(tz).unwrap_or(z);
        }
        for _ in 0..n {
            loop {
                match z.checked_add(1.day()) {
                    Ok(next) => z = next,
                    Err(_) => return z.timestamp(),
                }
                if self.is_business_day(z.date()) {
                    break;
                }
            }
        }
        z.timestamp()
    }
}

/// Service levels (the `[incident.sla]` settings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SlaPolicy {
    /// Acknowledgement deadline of P0, P1, P2, P3.
    pub acknowledge: [Deadline; 4],
    /// Status update interval during an active incident.
    pub update_every: Deadline,
    /// Severities that need regular status updates.
    pub update_severities: Vec<Severity>,
    /// Post-mortem deadline after resolution.
    pub postmortem_within: Deadline,
    /// Severities that need a post-mortem.
    pub postmortem_severities: Vec<Severity>,
    /// Business days.
    pub calendar: Calendar,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        let m = |n| Deadline::Duration(SignedDuration::from_mins(n));
        Self {
            acknowledge: [m(5), m(60), m(240), Deadline::BusinessDays(1)],
            update_every: m(15),
            update_severities: vec![Severity::P0, Severity::P1],
            postmortem_within: Deadline::Duration(SignedDuration::from_hours(24)),
            postmortem_severities: vec![Severity::P0, Severity::P1],
            calendar: Calendar::default(),
        }
    }
}

/// Which obligation is late.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreachKind {
    /// Nobody acknowledged the incident in time.
    Acknowledgement,
    /// No status update for too long.
    StatusUpdate,
    /// The post-mortem is late.
    PostMortem,
}

/// An obligation that is past due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    /// The incident.
    pub incident: IncidentId,
    /// Its severity.
    pub severity: Severity,
    /// What is late.
    pub kind: BreachKind,
    /// When it was due.
    pub due: Timestamp,
    /// How late at the time of the check.
    pub overdue_by: SignedDuration,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            BreachKind::Acknowledgement => "acknowledgement",
            BreachKind::StatusUpdate => "status update",
            BreachKind::PostMortem => "post-mortem",
        };
        let late = self
            .overdue_by
            .round(jiff::Unit::Second)
            .unwrap_or(self.overdue_by);
        write!(
            f,
            "{} ({}): {what} overdue by {late:#} (due {})",
            self.incident,
            self.severity,
            self.due.round(jiff::Unit::Second).unwrap_or(self.due)
        )
    }
}

impl SlaPolicy {
    /// Checks settings that serde cannot (the time zone).
    pub fn validate(&self) -> Result<()> {
        TimeZone::get(&self.calendar.timezone).map_err(|e| Error::InvalidSetting {
            setting: "incident.sla.calendar.timezone".into(),
            reason: format!("{e}; use an IANA name such as \"UTC\" or \"Europe/Zurich\""),
        })?;
        Ok(())
    }

    /// When `incident` must be (or had to be) acknowledged.
    pub fn acknowledge_due(&self, incident: &Incident) -> Timestamp {
        self.acknowledge[incident.severity.index()].due(incident.detected, &self.calendar)
    }

    /// Every obligation of `incident` that is past due at `now`.
    pub fn check(&self, incident: &Incident, now: Timestamp) -> Vec<Breach> {
        let mut out = Vec::new();
        let mut late = |kind, due: Timestamp| {
            if now > due {
                out.push(Breach {
                    incident: incident.id.clone(),
                    severity: incident.severity,
                    kind,
                    due,
                    overdue_by: now.duration_since(due),
                });
            }
        };
        let active = incident.status.is_active();
        if active && incident.acknowledged.is_none() {
            late(BreachKind::Acknowledgement, self.acknowledge_due(incident));
        }
        if active && self.update_severities.contains(&incident.severity) {
            let due = self.update_every.due(incident.last_update, &self.calendar);
            late(BreachKind::StatusUpdate, due);
        }
        if let (crate::Status::Resolved, Some(resolved)) = (incident.status, incident.resolved)
            && self.postmortem_severities.contains(&incident.severity)
        {
            late(
                BreachKind::PostMortem,
                self.postmortem_within.due(resolved, &self.calendar),
            );
        }
        out
    }
}
