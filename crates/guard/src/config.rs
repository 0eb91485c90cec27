//! `[guard]` and `[objectives]`: how often the guard looks, how it turns
//! what it sees into a trading state, and the promises it checks.
//!
//! ```toml
//! [guard]
//! refresh-interval = "1s"     # one cycle: PostgreSQL, WAL archive, incidents
//! staleness-limit = "5s"      # no completed cycle for this long: fail closed
//! stale-state = "reducing"    # or "halted"
//! reduce-after = "5s"         # exposure above the RPO this long: Reducing
//! halt-multiple = 2.0         # exposure above RPO x this: Halted
//! healthy-cycles = 3          # healthy cycles in a row before trading resumes
//! incident-interval = "2s"    # how often open incidents are read
//! backup-interval = "60s"     # how often new backups are looked for
//! query-timeout = "2s"        # one PostgreSQL round trip
//! storage-timeout = "3s"      # one repository call within a cycle
//! safe-replicas = []          # standbys (application_name) whose flushed WAL counts as safe
//! operation-stale-after = "2m" # an operation marker not rewritten this long is stale
//!
//! [objectives]
//! rpo = "5m"
//! rto = "30m"
//! [objectives.backups]        # newest backup of "kind/class" (or "kind") no older than
//! "logical/hourly" = "65m"
//! "logical/daily" = "25h"
//! "logical/weekly" = "8d"
//! "physical" = "25h"          # a daily physical schedule plus one hour of grace
//! drill-max-age = "31d"       # warn when no DR drill ran this long (in [objectives])
//! ```
//!
//! Durations are numbers with a unit (`ms`, `s`, `m`, `h`, `d`, `w`), parts
//! may be combined (`1h30m`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::state::TradingState;

/// A duration written as `"5m"`, `"1h30m"`, `"250ms"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `"5m"`, `"1h 30m"`, `"250ms"`, `"8d"`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not a duration ({why}; write e.g. \"30s\", \"5m\", \"1h30m\", \"8d\")"
            )
        };
        let mut total = Duration::ZERO;
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad("empty"));
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| bad("number too large"))?;
            rest = rest[digits..].trim_start();
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = rest[unit_len..].trim_start();
            let scale = match unit {
                "ms" => Duration::from_millis(1),
                "s" | "sec" | "secs" => Duration::from_secs(1),
                "m" | "min" | "mins" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                "d" => Duration::from_secs(86_400),
                "w" => Duration::from_secs(7 * 86_400),
                "" => return Err(bad("missing unit")),
                _ => return Err(bad("unknown unit")),
            };
            let part = scale
                .checked_mul(u32::try_from(n).map_err(|_| bad("number too large"))?)
                .ok_or_else(|| bad("too long"))?;
            total = total.checked_add(part).ok_or_else(|| bad("too long"))?;
        }
        Ok(Dur(total))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let s = self.0.as_secs();
        for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if s > 0 && s.is_multiple_of(len) {
                return write!(f, "{}{unit}", s / len);
            }
        }
        write!(f, "{s}s")
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Dur::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What readers see when the refresher has not completed a cycle within the
/// staleness limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StaleState {
    /// No new risk (the default).
    #[default]
    Reducing,
    /// No trading.
    Halted,
}

impl StaleState {
    /// The trading state it stands for.
    pub fn state(self) -> TradingState {
        match self {
            StaleState::Reducing => TradingState::Reducing,
            StaleState::Halted => TradingState::Halted,
        }
    }
}

/// `[guard]`: the refresher and the hysteresis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct GuardConfig {
    /// Time between refresh cycles.
    pub refresh_interval: Dur,
    /// No completed cycle for this long: readers see `stale-state`.
    pub staleness_limit: Dur,
    /// The fail-closed state.
    pub stale_state: StaleState,
    /// Exposure above the RPO for this long enters `Reducing`.
    pub reduce_after: Dur,
    /// Exposure above `rpo x halt-multiple` enters `Halted`.
    pub halt_multiple: f64,
    /// Consecutive healthy cycles before the state improves.
    pub healthy_cycles: u32,
    /// How often open incidents are read.
    pub incident_interval: Dur,
    /// How often the repository is looked at for new backups.
    pub backup_interval: Dur,
    /// Limit of one PostgreSQL round trip (connect or query).
    pub query_timeout: Dur,
    /// Limit of one repository call within a cycle.
    pub storage_timeout: Dur,
    /// Standbys (their `application_name` in `pg_stat_replication`) whose
    /// flushed position counts as safe for the exposure, while streaming.
    pub safe_replicas: Vec<String>,
    /// An operation marker (restore, failover) not rewritten for this long
    /// stands for no running operation: reported, not held.
    pub operation_stale_after: Dur,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            refresh_interval: Dur(Duration::from_secs(1)),
            staleness_limit: Dur(Duration::from_secs(5)),
            stale_state: StaleState::Reducing,
            reduce_after: Dur(Duration::from_secs(5)),
            halt_multiple: 2.0,
            healthy_cycles: 3,
            incident_interval: Dur(Duration::from_secs(2)),
            backup_interval: Dur(Duration::from_secs(60)),
            query_timeout: Dur(Duration::from_secs(2)),
            storage_timeout: Dur(Duration::from_secs(3)),
            safe_replicas: Vec::new(),
            operation_stale_after: Dur(cfdr_storage::operations::STALE_AFTER),
        }
    }
}

/// `[objectives]`: the promises of the runbook (section 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Objectives {
    /// Recovery point objective: the most committed work that may be lost.
    pub rpo: Dur,
    /// Recovery time objective (reported against restore tests).
    pub rto: Dur,
    /// Newest backup of `kind/class` (or any class of `kind`) no older than.
    pub backups: BTreeMap<String, Dur>,
    /// The `drill` check warns when no DR drill finished within this long.
    pub drill_max_age: Dur,
}

impl Default for Objectives {
    fn default() -> Self {
        let h = |n: u64| Dur(Duration::from_secs(n * 3600));
        Self {
            rpo: Dur(Duration::from_secs(300)),
            rto: Dur(Duration::from_secs(1800)),
            backups: BTreeMap::from([
                (
                    "logical/hourly".to_owned(),
                    Dur(Duration::from_secs(65 * 60)),
                ),
                ("logical/daily".to_owned(), h(25)),
                ("logical/weekly".to_owned(), h(8 * 24)),
                ("physical".to_owned(), h(25)),
            ]),
            drill_max_age: h(31 * 24),
        }
    }
}

/// Both sections, as the guard takes them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// `[guard]`.
    pub guard: GuardConfig,
    /// `[objectives]`.
    pub objectives: Objectives,
}

fn config_err(key: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

impl Settings {
    /// Parses a TOML text holding `[guard]` and `[objectives]` (and nothing
    /// else), then [`Settings::validate`]s it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let s: Settings = toml_from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Refuses settings under which the guard could silently allow trading.
    pub fn validate(&self) -> Result<()> {
        let g = &self.guard;
        let o = &self.objectives;
        if o.rpo.0.is_zero() {
            return Err(config_err(
                "objectives.rpo",
                "an RPO of zero cannot be met by WAL archiving; set the runbook's value, e.g. \"5m\"",
            ));
        }
        if o.rto.0.is_zero() {
            return Err(config_err("objectives.rto", "an RTO of zero cannot be met"));
        }
        if g.refresh_interval.0 < Duration::from_millis(10) {
            return Err(config_err(
                "guard.refresh-interval",
                "must be at least 10ms",
            ));
        }
        if g.staleness_limit.0 <= g.refresh_interval.0 {
            return Err(config_err(
                "guard.staleness-limit",
                format!(
                    "{} must be longer than refresh-interval {}",
                    g.staleness_limit, g.refresh_interval
                ),
            ));
        }
        if !(g.halt_multiple.is_finite() && g.halt_multiple >= 1.0) {
            return Err(config_err(
                "guard.halt-multiple",
                format!("{} must be a number of at least 1", g.halt_multiple),
            ));
        }
        if g.healthy_cycles == 0 {
            return Err(config_err("guard.healthy-cycles", "must be at least 1"));
        }
        for (key, d) in [
            ("guard.incident-interval", g.incident_interval),
            ("guard.backup-interval", g.backup_interval),
            ("guard.query-timeout", g.query_timeout),
            ("guard.storage-timeout", g.storage_timeout),
            ("guard.operation-stale-after", g.operation_stale_after),
            ("objectives.drill-max-age", o.drill_max_age),
        ] {
            if d.0.is_zero() {
                return Err(config_err(key, "must be longer than zero"));
            }
        }
        for name in &g.safe_replicas {
            if name.trim().is_empty() || name.trim() != name {
                return Err(config_err(
                    "guard.safe-replicas",
                    format!(
                        "{name:?} is not an application_name; name each standby as pg_stat_replication shows it"
                    ),
                ));
            }
        }
        for (name, max_age) in &o.backups {
            let ok = |p: &str| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            };
            let valid = match name.split_once('/') {
                Some((kind, class)) => ok(kind) && ok(class),
                None => ok(name),
            };
            if !valid {
                return Err(config_err(
                    &format!("objectives.backups.{name:?}"),
                    "expected \"kind\" or \"kind/class\" in lower case, e.g. \"logical/hourly\"",
                ));
            }
            if max_age.0.is_zero() {
                return Err(config_err(
                    &format!("objectives.backups.{name:?}"),
                    "a maximum age of zero cannot be met",
                ));
            }
        }
        Ok(())
    }

    /// Exposure above which `Halted` is entered.
    pub fn halt_exposure(&self) -> Duration {
        self.objectives.rpo.0.mul_f64(self.guard.halt_multiple)
    }
}

fn toml_from_str(text: &str) -> Result<Settings> {
    toml::from_str(text).map_err(|e| config_err("(text)", e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, secs) in [
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("1h 30m", 5400.0),
            ("250ms", 0.25),
            ("8d", 691_200.0),
            ("2w", 1_209_600.0),
            ("0s", 0.0),
        ] {
            assert_eq!(Dur::parse(text).unwrap().0.as_secs_f64(), secs, "{text}");
        }
        for bad in [
            "",
            "5",
            "m",
            "5 minutes",
            "-5s",
            "1.5h",
            "99999999999999999999s",
        ] {
            let err = Dur::parse(bad).unwrap_err();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
        assert_eq!(Dur::parse("90m").unwrap().to_string(), "90m");
        assert_eq!(Dur::parse("25h").unwrap().to_string(), "25h");
        assert_eq!(Dur::parse("1500ms").unwrap().to_string(), "1500ms");
    }

    #[test]
    fn defaults_follow_the_runbook() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.objectives.rpo.0, Duration::from_secs(300));
        assert_eq!(s.objectives.rto.0, Duration::from_secs(1800));
        assert_eq!(s.guard.staleness_limit.0, Duration::from_secs(5));
        assert_eq!(s.guard.stale_state, StaleState::Reducing);
        assert_eq!(
            s.objectives.backups["logical/hourly"].0,
            Duration::from_secs(65 * 60)
        );
        assert_eq!(s.halt_exposure(), Duration::from_secs(600));
    }
}
