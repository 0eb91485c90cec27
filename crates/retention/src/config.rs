//! Data classes and the engine's configuration.

use std::fmt;
use std::sync::OnceLock;

use jiff::tz::{TimeZone, TimeZoneDatabase};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::item::Kind;
use crate::policy::{CalendarDuration, Count, Policy};
use crate::wal::{DEFAULT_SEGMENT_SIZE, check_segment_size};

/// The data classes of the DR runbook, each with its own retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DataClass {
    /// Database backups (logical and physical), hourly and daily schedules.
    Database,
    /// Database archives (schedule classes listed in
    /// [`Config::archive_classes`], `archive` by default).
    DatabaseArchive,
    /// Application log exports.
    ApplicationLogs,
    /// Audit log exports.
    AuditLogs,
    /// Trading records exports.
    TradingRecords,
    /// Configuration snapshots.
    Configuration,
    /// Secrets bundle versions.
    Secrets,
}

impl DataClass {
    /// Every data class.
    pub const ALL: [DataClass; 7] = [
        DataClass::Database,
        DataClass::DatabaseArchive,
        DataClass::ApplicationLogs,
        DataClass::AuditLogs,
        DataClass::TradingRecords,
        DataClass::Configuration,
        DataClass::Secrets,
    ];

    /// The configuration name (`database`, `database-archive`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DataClass::Database => "database",
            DataClass::DatabaseArchive => "database-archive",
            DataClass::ApplicationLogs => "application-logs",
            DataClass::AuditLogs => "audit-logs",
            DataClass::TradingRecords => "trading-records",
            DataClass::Configuration => "configuration",
            DataClass::Secrets => "secrets",
        }
    }
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One [`Policy`] per data class. Defaults follow the DR runbook:
///
/// | class | default | runbook |
/// |---|---|---|
/// | `database` | `keep-hourly = 48`, `keep-daily = 30`, `keep-weekly = 52` | §2.1 "48 hours (hourly), 30 days (daily), 1 year (weekly)" |
/// | `database-archive` | `keep-within = "1y"` | §1 "Database (archives) 1 year" |
/// | `application-logs` | `keep-within = "90d"` | §1, §2.5 "90 days" |
/// | `audit-logs` | `keep-within = "7y"` | §1, §2.5 "7 years" |
/// | `trading-records` | `keep-within = "7y"` | §1 "7 years" |
/// | `configuration` | `keep-last = "unlimited"` | §1 "Indefinite" |
/// | `secrets` | `keep-last = "unlimited"` | §2.3 "Indefinite (versioned)" |
///
/// In TOML each class is a table (`[classes.database]`); a table that is
/// present **replaces** that class's whole default policy, absent tables
/// keep their default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DataClassPolicies {
    /// Policy of [`DataClass::Database`].
    pub database: Policy,
    /// Policy of [`DataClass::DatabaseArchive`].
    pub database_archive: Policy,
    /// Policy of [`DataClass::ApplicationLogs`].
    pub application_logs: Policy,
    /// Policy of [`DataClass::AuditLogs`].
    pub audit_logs: Policy,
    /// Policy of [`DataClass::TradingRecords`].
    pub trading_records: Policy,
    /// Policy of [`DataClass::Configuration`].
    pub configuration: Policy,
    /// Policy of [`DataClass::Secrets`].
    pub secrets: Policy,
}

impl Default for DataClassPolicies {
    fn default() -> Self {
        let within = |d| Policy {
            keep_within: d,
            ..Policy::default()
        };
        DataClassPolicies {
            database: Policy {
                keep_hourly: Count::Limited(48),
                keep_daily: Count::Limited(30),
                keep_weekly: Count::Limited(52),
                ..Policy::default()
            },
            database_archive: within(CalendarDuration::years(1)),
            application_logs: within(CalendarDuration::days(90)),
            audit_logs: within(CalendarDuration::years(7)),
            trading_records: within(CalendarDuration::years(7)),
            configuration: Policy::keep_all(),
            secrets: Policy::keep_all(),
        }
    }
}

impl DataClassPolicies {
    /// The policy of `class`.
    pub fn get(&self, class: DataClass) -> &Policy {
        match class {
            DataClass::Database => &self.database,
            DataClass::DatabaseArchive => &self.database_archive,
            DataClass::ApplicationLogs => &self.application_logs,
            DataClass::AuditLogs => &self.audit_logs,
            DataClass::TradingRecords => &self.trading_records,
            DataClass::Configuration => &self.configuration,
            DataClass::Secrets => &self.secrets,
        }
    }

    /// The policy of `class`, mutably.
    pub fn get_mut(&mut self, class: DataClass) -> &mut Policy {
        match class {
            DataClass::Database => &mut self.database,
            DataClass::DatabaseArchive => &mut self.database_archive,
            DataClass::ApplicationLogs => &mut self.application_logs,
            DataClass::AuditLogs => &mut self.audit_logs,
            DataClass::TradingRecords => &mut self.trading_records,
            DataClass::Configuration => &mut self.configuration,
            DataClass::Secrets => &mut self.secrets,
        }
    }

    /// The same policy for every class (handy in tests and for one-off runs).
    pub fn uniform(policy: Policy) -> Self {
        DataClassPolicies {
            database: policy.clone(),
            database_archive: policy.clone(),
            application_logs: policy.clone(),
            audit_logs: policy.clone(),
            trading_records: policy.clone(),
            configuration: policy.clone(),
            secrets: policy,
        }
    }
}

/// Everything the engine needs besides the items and `now`.
///
/// ```toml
/// time-zone = "Europe/Zurich"
/// incomplete-grace = "1d"
/// archive-classes = ["archive"]
///
/// [classes.database]
/// keep-hourly = 24
/// keep-daily = 14
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// IANA time zone in which bucket boundaries fall (default `UTC`). The
    /// zone data is bundled, so results do not depend on the host.
    pub time_zone: String,
    /// Incomplete backups younger than this are left alone (default `1d`).
    pub incomplete_grace: CalendarDuration,
    /// WAL segment size in bytes (default 16 MiB).
    pub wal_segment_size: u64,
    /// Schedule classes of logical/physical backups that belong to
    /// [`DataClass::DatabaseArchive`] (default `["archive"]`).
    pub archive_classes: Vec<String>,
    /// The policy of each data class.
    pub classes: DataClassPolicies,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            time_zone: "UTC".to_owned(),
            incomplete_grace: CalendarDuration::days(1),
            wal_segment_size: DEFAULT_SEGMENT_SIZE,
            archive_classes: vec!["archive".to_owned()],
            classes: DataClassPolicies::default(),
        }
    }
}

fn tzdb() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

impl Config {
    /// The default configuration with one policy for every data class.
    pub fn with_policy(policy: Policy) -> Self {
        Config {
            classes: DataClassPolicies::uniform(policy),
            ..Config::default()
        }
    }

    /// Looks up the configured zone in the bundled IANA database.
    pub fn zone(&self) -> Result<TimeZone> {
        tzdb()
            .get(&self.time_zone)
            .map_err(|_| Error::UnknownTimeZone {
                name: self.time_zone.clone(),
            })
    }

    /// Checks the time zone and the WAL segment size.
    pub fn validate(&self) -> Result<()> {
        self.zone()?;
        check_segment_size(self.wal_segment_size)
    }

    /// The data class of an item of `kind` made by schedule `class`.
    pub fn data_class(&self, kind: Kind, class: &str) -> DataClass {
        match kind {
            Kind::Logical | Kind::Physical if self.archive_classes.iter().any(|c| c == class) => {
                DataClass::DatabaseArchive
            }
            Kind::Logical | Kind::Physical => DataClass::Database,
            Kind::Logs => DataClass::ApplicationLogs,
            Kind::Audit => DataClass::AuditLogs,
            Kind::Trading => DataClass::TradingRecords,
            Kind::Config => DataClass::Configuration,
            Kind::Secrets => DataClass::Secrets,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn runbook_defaults() {
        let c = Config::default();
        assert_eq!(c.classes.database.keep_hourly, Count::Limited(48));
        assert_eq!(c.classes.database.keep_daily, Count::Limited(30));
        assert_eq!(c.classes.database.keep_weekly, Count::Limited(52));
        assert_eq!(
            c.classes.database_archive.keep_within,
            CalendarDuration::years(1)
        );
        assert_eq!(
            c.classes.application_logs.keep_within,
            CalendarDuration::days(90)
        );
        assert_eq!(c.classes.audit_logs.keep_within, CalendarDuration::years(7));
        assert_eq!(
            c.classes.trading_records.keep_within,
            CalendarDuration::years(7)
        );
        assert_eq!(c.classes.configuration, Policy::keep_all());
        assert_eq!(c.classes.secrets, Policy::keep_all());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn toml_overrides_replace_one_class() {
        let c: Config = toml::from_str(
            "time-zone = \"America/New_York\"\n[classes.secrets]\nkeep-last = 20\n[classes.database]\nkeep-daily = 7\n",
        )
        .unwrap();
        assert_eq!(c.time_zone, "America/New_York");
        assert_eq!(c.classes.secrets.keep_last, Count::Limited(20));
        assert_eq!(
            c.classes.database,
            Policy {
                keep_daily: Count::Limited(7),
                ..Policy::default()
            }
        );
        assert_eq!(
            c.classes.audit_logs,
            DataClassPolicies::default().audit_logs
        );
        assert!(c.validate().is_ok());
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn bad_config() {
        let c = Config {
            time_zone: "Mars/Olympus".into(),
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(Error::UnknownTimeZone { .. })));
        let c = Config {
            wal_segment_size: 12345,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidSegmentSize { .. })
        ));
        assert!(toml::from_str::<Config>("timezone = \"UTC\"").is_err());
    }

    #[test]
    fn classification() {
        let c = Config::default();
        assert_eq!(c.data_class(Kind::Physical, "hourly"), DataClass::Database);
        assert_eq!(
            c.data_class(Kind::Logical, "archive"),
            DataClass::DatabaseArchive
        );
        assert_eq!(
            c.data_class(Kind::Logs, "archive"),
            DataClass::ApplicationLogs
        );
        assert_eq!(c.data_class(Kind::Audit, ""), DataClass::AuditLogs);
        assert_eq!(c.data_class(Kind::Trading, ""), DataClass::TradingRecords);
        assert_eq!(c.data_class(Kind::Config, ""), DataClass::Configuration);
        assert_eq!(c.data_class(Kind::Secrets, ""), DataClass::Secrets);
    }
}
