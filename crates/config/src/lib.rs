//! cfdr configuration: one TOML file shared by every binary.
//!
//! The file is found at `--config PATH`, else `$CFDR_CONFIG`, else
//! `/etc/cfdr/cfdr.toml` when it exists; without one, defaults apply (a local
//! folder repository at `./cfdr-repo`, zstd, no encryption). Environment
//! variables override the file, and bins apply flags on top:
//!
//! | key | environment | default |
//! |---|---|---|
//! | `repository.url` | `CFDR_REPOSITORY` | `./cfdr-repo` |
//! | `codec.compression` | `CFDR_COMPRESSION` | `zstd` |
//! | `codec.level` | `CFDR_COMPRESSION_LEVEL` | algorithm default |
//! | `encryption.recipients` | `CFDR_AGE_RECIPIENTS` (comma-separated) | none |
//! | `encryption.recipients-file` | `CFDR_AGE_RECIPIENTS_FILE` | none |
//! | `encryption.identity-file` | `CFDR_AGE_IDENTITY_FILE` | none |
//! | `encryption.identity-env` | - | `CFDR_AGE_IDENTITY` |
//! | `wal.spool-dir` | `CFDR_WAL_SPOOL` | `/var/spool/cfdr/wal` |
//! | `repository.object-lock` | - | `off` (`governance`, `compliance`) |
//! | `repository.object-lock-margin` | - | `30d` |
//!
//! With `object-lock` on, each object's retention window comes from
//! `[retention]` ([`Config::lock_periods`]); see docs/object-lock.md.
//!
//! `[pg]` is `cfdr_pg::logical::LogicalOptions` (client tool folder,
//! watched tables, extensions, restore hooks, smoke query, RTO, restore
//! session settings, server compression), `[wal]` is
//! `cfdr_wal_archive::WalOptions`, `[stream]` is
//! `cfdr_wal_archive::stream::StreamOptions` and `[incident]` is
//! `cfdr_incident::IncidentConfig`; none has environment overrides. The
//! reference page docs/configuration.md lists every key with its default (a
//! test keeps it complete).
//!
//! The recovery-objectives guard reads `[guard]` and `[objectives]`
//! (`cfdr_guard::GuardConfig`, `cfdr_guard::Objectives`: RPO 5 min, RTO
//! 30 min and the backup schedules of the runbook by default).
//!
//! `cfdr-drill` reads `[drill]` (`cfdr_drill::DrillConfig`: database RTO
//! 10 min, full-system RTO 30 min, incident severity P2) and the RPO of
//! `[objectives]`.
//!
//! Retention policies (`[retention]`) are `cfdr_retention::Config`: the
//! time zone of bucket boundaries, the grace period of incomplete backups
//! and one policy per data class, defaulting to the DR runbook.
//!
//! Secrets never live in the file: credentials come from each cloud's own
//! variables and chains, age identities from a 0600 file or a variable.
//!
//! `[[copy]]` entries ([`CopyConfig`]) name secondary repositories that
//! `cfdr-copy` keeps in step with the primary. `-r NAME` (or
//! `CFDR_REPOSITORY=NAME`) selects a copy by name for any command, with
//! all its options ([`Config::select_repository`]).
//!
//! ```
//! let cfg = cfdr_config::Config::from_toml(r#"
//!     [repository]
//!     url = "s3://backups/cryptofunk?region=eu-west-1"
//!     [codec]
//!     compression = "gzip"
//! "#).unwrap();
//! assert_eq!(cfg.codec.compression, cfdr_storage::Compression::Gzip);
//! ```

use std::path::{Path, PathBuf};

use cfdr_retention::{DataClass, Policy};
use cfdr_secrets::{Identities, Recipients};
use cfdr_storage::{
    AzblobOptions, CompatOptions, Compression, EncodeOptions, GcsOptions, Location, LockMode,
    LockPeriod, LockPeriods, RetryOptions, S3Options, StorageOptions, TimeoutOptions,
};
use serde::{Deserialize, Serialize};

/// Errors while loading configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for cfdr.
    #[error("invalid config {origin}: {reason}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The parser's message (line and key included).
        reason: String,
    },
    /// An environment variable holds an invalid value.
    #[error("invalid value in ${var}: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Key material could not be loaded.
    #[error(transparent)]
    Keys(#[from] cfdr_secrets::Error),
    /// A `[[copy]]` entry is not usable.
    #[error("invalid [[copy]] entry {name:?}: {reason}")]
    Copy {
        /// The entry's name (or its position when it has none).
        name: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default system-wide location of the config file.
pub const SYSTEM_CONFIG: &str = "/etc/cfdr/cfdr.toml";

/// Compression settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct CodecConfig {
    /// Algorithm.
    pub compression: Compression,
    /// Level; the algorithm's default when unset.
    pub level: Option<i32>,
}

/// Encryption settings (public recipients and where identities come from).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age recipients (`age1...`, `ssh-ed25519 ...`).
    pub recipients: Vec<String>,
    /// A file of recipients, one per line.
    pub recipients_file: Option<PathBuf>,
    /// Identity file for decryption (must be mode 0600).
    pub identity_file: Option<PathBuf>,
    /// Environment variable holding identity text, tried when no file is set.
    pub identity_env: String,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            recipients: Vec::new(),
            recipients_file: None,
            identity_file: None,
            identity_env: "CFDR_AGE_IDENTITY".into(),
        }
    }
}

/// A secondary repository `cfdr-copy` copies the primary to (`[[copy]]`):
/// a name, a URL and the same storage options as `[repository]`, so any
/// backend can copy to any backend.
///
/// Credentials come from the environment as for the primary. When the
/// secondary needs other credentials than the primary on the same kind of
/// backend, `credentials-env-prefix = "DR_"` reads them from
/// `DR_AWS_ACCESS_KEY_ID` / `DR_AWS_SECRET_ACCESS_KEY` (S3) and
/// `DR_AZURE_STORAGE_ACCOUNT` / `DR_AZURE_STORAGE_KEY` /
/// `DR_AZURE_STORAGE_SAS_TOKEN` (Azure) instead, never from the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct CopyConfig {
    /// Name used by `cfdr-copy --to NAME`, `-r NAME` and the lag record
    /// `copy-state/NAME.json`: letters, digits, `-` and `_`.
    pub name: String,
    /// Repository URL of the secondary (as `repository.url`).
    pub url: String,
    /// S3 settings.
    pub s3: S3Options,
    /// Azure Blob settings.
    pub azblob: AzblobOptions,
    /// Google Cloud Storage settings.
    pub gcs: GcsOptions,
    /// Retry of temporary errors.
    pub retry: RetryOptions,
    /// Per-call timeouts.
    pub timeout: TimeoutOptions,
    /// Backend feature switches.
    pub compat: CompatOptions,
    /// Read this secondary's credentials from `<prefix>AWS_...` /
    /// `<prefix>AZURE_STORAGE_...` variables instead of the standard ones.
    pub credentials_env_prefix: Option<String>,
    /// S3 Object Lock on the secondary, as `[repository] object-lock`.
    pub object_lock: LockMode,
    /// As `[repository] object-lock-margin` (default 30 days).
    pub object_lock_margin: Option<LockPeriod>,
}

impl CopyConfig {
    /// Checks the name and URL.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Error::Copy {
            name: self.name.clone(),
            reason,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "`name` must be non-empty letters, digits, '-' or '_' (it is used as `-r NAME` and in object keys)".into(),
            ));
        }
        if self.url.trim().is_empty() {
            return Err(bad(
                "`url` is missing: set the secondary's repository URL".into()
            ));
        }
        Location::parse(&self.url).map_err(|e| bad(e.to_string()))?;
        Ok(())
    }

    /// The secondary's storage options, credentials from the prefixed
    /// variables when `credentials-env-prefix` is set.
    pub fn storage(&self) -> StorageOptions {
        let defaults = StorageOptions::default();
        let mut o = StorageOptions {
            url: Some(self.url.clone()),
            s3: self.s3.clone(),
            azblob: self.azblob.clone(),
            gcs: self.gcs.clone(),
            retry: self.retry.clone(),
            timeout: self.timeout.clone(),
            compat: self.compat,
            object_lock: self.object_lock,
            object_lock_margin: self
                .object_lock_margin
                .unwrap_or(defaults.object_lock_margin),
            lock_periods: defaults.lock_periods,
        };
        if let Some(prefix) = &self.credentials_env_prefix {
            let var = |name: &str| env(&format!("{prefix}{name}"));
            o.s3.access_key_id = var("AWS_ACCESS_KEY_ID");
            o.s3.secret_access_key = var("AWS_SECRET_ACCESS_KEY");
            o.s3.explicit_credentials_only = true;
            o.azblob.account_name = o
                .azblob
                .account_name
                .or_else(|| var("AZURE_STORAGE_ACCOUNT"));
            o.azblob.account_key = var("AZURE_STORAGE_KEY");
            o.azblob.sas_token = var("AZURE_STORAGE_SAS_TOKEN");
            o.azblob.explicit_credentials_only = true;
        }
        o
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Where the repository is.
    pub repository: StorageOptions,
    /// Compression.
    pub codec: CodecConfig,
    /// Encryption.
    pub encryption: EncryptionConfig,
    /// PostgreSQL logical backup and restore settings.
    pub pg: cfdr_pg::logical::LogicalOptions,
    /// Incident records, SLAs and notifications.
    pub incident: cfdr_incident::IncidentConfig,
    /// Retention policies applied by `cfdr-prune` (`[retention]`, with one
    /// `[retention.classes.<data class>]` table per overridden class).
    pub retention: cfdr_retention::Config,
    /// WAL archiving (`cfdr-wal`).
    pub wal: cfdr_wal_archive::WalOptions,
    /// The WAL stream (`cfdr-wal stream`).
    pub stream: cfdr_wal_archive::stream::StreamOptions,
    /// The recovery-objectives guard's refresher and hysteresis (`[guard]`).
    pub guard: cfdr_guard::GuardConfig,
    /// RPO, RTO and backup ages the guard checks (`[objectives]`).
    pub objectives: cfdr_guard::Objectives,
    /// Secondary repositories `cfdr-copy` copies to (`[[copy]]`).
    #[serde(rename = "copy", skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyConfig>,
    /// DR drills (`[drill]`): database and full-system RTOs, the severity
    /// of the incident a failed drill opens.
    pub drill: cfdr_drill::DrillConfig,
}

/// The longest rule of `policy` as a period from `now`; `None` when it
/// keeps something forever (an unlimited count).
fn policy_window(policy: &Policy, now: jiff::Timestamp) -> Option<LockPeriod> {
    use cfdr_retention::{CalendarDuration, Count, Period};
    if policy.keep_last == Count::Unlimited
        || Period::ALL
            .iter()
            .any(|p| policy.count(*p) == Count::Unlimited)
    {
        return None;
    }
    let span = |d: CalendarDuration| -> Option<jiff::Span> {
        jiff::Span::new()
            .try_years(d.years)
            .and_then(|s| s.try_months(d.months))
            .and_then(|s| s.try_weeks(d.weeks))
            .and_then(|s| s.try_days(d.days))
            .and_then(|s| s.try_hours(d.hours))
            .ok()
    };
    let mut spans = vec![span(policy.keep_within)?];
    for p in Period::ALL {
        spans.push(span(policy.within(p))?);
        let Count::Limited(n) = policy.count(p) else {
            continue;
        };
        let n = i64::from(n);
        let counted = match p {
            Period::Hourly => jiff::Span::new().try_hours(n),
            Period::Daily => jiff::Span::new().try_days(n),
            Period::Weekly => jiff::Span::new().try_weeks(n),
            Period::Monthly => jiff::Span::new().try_months(n),
            Period::Yearly => jiff::Span::new().try_years(n),
        };
        spans.push(counted.ok()?);
    }
    spans
        .into_iter()
        .map(LockPeriod)
        .max_by(|a, b| a.cmp_at(b, now))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Parses TOML text (no environment applied).
    pub fn from_toml(text: &str) -> Result<Self> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| Error::Parse {
            origin: "text".into(),
            reason: e.to_string(),
        })?;
        cfg.validate_copies()?;
        cfg.repository.lock_periods = cfg.lock_periods();
        Ok(cfg)
    }

    fn validate_copies(&self) -> Result<()> {
        for (i, c) in self.copies.iter().enumerate() {
            c.validate().map_err(|e| match e {
                Error::Copy { name, reason } if name.is_empty() => Error::Copy {
                    name: format!("#{}", i + 1),
                    reason,
                },
                other => other,
            })?;
            if self.copies[..i].iter().any(|o| o.name == c.name) {
                return Err(Error::Copy {
                    name: c.name.clone(),
                    reason: "two [[copy]] entries have this name: names must be unique".into(),
                });
            }
        }
        Ok(())
    }

    /// The `[[copy]]` entry named `name`.
    pub fn copy(&self, name: &str) -> Option<&CopyConfig> {
        self.copies.iter().find(|c| c.name == name)
    }

    /// Points `[repository]` at `arg` (the `-r` flag or `CFDR_REPOSITORY`):
    /// a `[[copy]]` name selects that secondary with all its options, as
    /// does a URL naming the same place as a copy's URL (so a
    /// `restore_command` written with the copy's URL reaches it the same
    /// way); anything else is a repository URL or path and replaces
    /// `repository.url` only.
    pub fn select_repository(&mut self, arg: &str) {
        let by_name = self.copy(arg);
        let by_url = || {
            let wanted = Location::parse(arg).ok()?;
            self.copies
                .iter()
                .find(|c| Location::parse(&c.url).is_ok_and(|l| l == wanted))
        };
        match by_name.or_else(by_url).map(|copy| self.copy_storage(copy)) {
            Some(storage) => self.repository = storage,
            // `lock_periods` was filled in when the file was parsed.
            None => self.repository.url = Some(arg.to_owned()),
        }
    }

    /// The storage options of the secondary `copy`, object lock windows
    /// from `[retention]` as for the primary.
    pub fn copy_storage(&self, copy: &CopyConfig) -> StorageOptions {
        let mut o = copy.storage();
        o.lock_periods = self.lock_periods();
        o
    }

    /// How long each kind of object stays locked when `[repository]
    /// object-lock` is on (before the margin): the retention window of its
    /// data class. A class's window is its longest rule (`keep-within*`,
    /// or N hours/days/weeks/months/years for `keep-hourly = N` ...;
    /// `keep-last` has no length and counts for nothing). Logical and
    /// physical backups and WAL take the longer of `database` and
    /// `database-archive` (a key does not say which schedule made it).
    /// Classes kept indefinitely, and objects of no class (incident
    /// records, `cfdr.json`), take the longest finite window of all.
    pub fn lock_periods(&self) -> LockPeriods {
        let now = jiff::Timestamp::now();
        let longer = |a: Option<LockPeriod>, b: Option<LockPeriod>| match (a, b) {
            (Some(a), Some(b)) => Some(if a.cmp_at(&b, now).is_lt() { b } else { a }),
            (a, b) => a.or(b),
        };
        let classes = &self.retention.classes;
        let finite = DataClass::ALL
            .into_iter()
            .filter_map(|c| policy_window(classes.get(c), now))
            .fold(None, |acc, w| longer(acc, Some(w)))
            .unwrap_or_default();
        let window = |c: DataClass| policy_window(classes.get(c), now).unwrap_or(finite);
        let database = longer(
            Some(window(DataClass::Database)),
            Some(window(DataClass::DatabaseArchive)),
        )
        .unwrap_or(finite);
        let kinds = cfdr_retention::Kind::ALL
            .into_iter()
            .map(|kind| {
                let period = match kind {
                    cfdr_retention::Kind::Logical | cfdr_retention::Kind::Physical => database,
                    _ => window(self.retention.data_class(kind, "")),
                };
                (kind.name().to_owned(), period)
            })
            .collect();
        LockPeriods {
            kinds,
            wal: database,
            other: finite,
        }
    }

    /// Loads the file (explicit path, `$CFDR_CONFIG`, or the system file if
    /// present), then applies environment overrides.
    pub fn load(explicit: Option<&Path>) -> Result<Self> {
        let path = explicit
            .map(Path::to_path_buf)
            .or_else(|| env("CFDR_CONFIG").map(PathBuf::from))
            .or_else(|| {
                Path::new(SYSTEM_CONFIG)
                    .is_file()
                    .then(|| SYSTEM_CONFIG.into())
            });
        let mut cfg = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| Error::Read {
                    path: p.clone(),
                    source,
                })?;
                let cfg: Config = toml::from_str(&text).map_err(|e| Error::Parse {
                    origin: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                cfg.validate_copies()?;
                cfg
            }
            None => Config::default(),
        };
        cfg.apply_env()?;
        cfg.repository.lock_periods = cfg.lock_periods();
        Ok(cfg)
    }

    fn apply_env(&mut self) -> Result<()> {
        if let Some(url) = env("CFDR_REPOSITORY") {
            self.select_repository(&url);
        }
        if let Some(c) = env("CFDR_COMPRESSION") {
            self.codec.compression = c.parse().map_err(|e: cfdr_storage::Error| Error::Env {
                var: "CFDR_COMPRESSION",
                reason: e.to_string(),
            })?;
        }
        if let Some(l) = env("CFDR_COMPRESSION_LEVEL") {
            self.codec.level = Some(l.trim().parse().map_err(|_| Error::Env {
                var: "CFDR_COMPRESSION_LEVEL",
                reason: format!("{l:?} is not an integer"),
            })?);
        }
        if let Some(r) = env("CFDR_AGE_RECIPIENTS") {
            self.encryption.recipients = r.split(',').map(|s| s.trim().to_owned()).collect();
        }
        if let Some(f) = env("CFDR_AGE_RECIPIENTS_FILE") {
            self.encryption.recipients_file = Some(f.into());
        }
        if let Some(f) = env("CFDR_AGE_IDENTITY_FILE") {
            self.encryption.identity_file = Some(f.into());
        }
        if let Some(d) = env("CFDR_WAL_SPOOL") {
            self.wal.spool_dir = d.into();
        }
        Ok(())
    }

    /// The configured recipients, or `None` when encryption is off.
    pub fn recipients(&self) -> Result<Option<Recipients>> {
        let mut all = self.encryption.recipients.clone();
        if let Some(f) = &self.encryption.recipients_file {
            let text = std::fs::read_to_string(f).map_err(|source| Error::Read {
                path: f.clone(),
                source,
            })?;
            all.extend(text.lines().map(str::to_owned));
        }
        if all
            .iter()
            .all(|r| r.trim().is_empty() || r.trim().starts_with('#'))
        {
            return Ok(None);
        }
        Ok(Some(Recipients::parse(all.iter().map(String::as_str))?))
    }

    /// The configured identities (file first, then the variable), or `None`.
    pub fn identities(&self) -> Result<Option<Identities>> {
        if let Some(f) = &self.encryption.identity_file {
            return Ok(Some(Identities::from_file(f, false)?));
        }
        if env(&self.encryption.identity_env).is_some() {
            return Ok(Some(Identities::from_env(&self.encryption.identity_env)?));
        }
        Ok(None)
    }

    /// The guard's settings, validated: a setting under which the guard
    /// could silently allow trading is an error here, at start.
    pub fn guard_settings(&self) -> Result<cfdr_guard::Settings, cfdr_guard::Error> {
        let s = cfdr_guard::Settings {
            guard: self.guard.clone(),
            objectives: self.objectives.clone(),
        };
        s.validate()?;
        Ok(s)
    }

    /// Encode options from the codec and encryption settings.
    pub fn encode_options(&self) -> Result<EncodeOptions> {
        let mut o = EncodeOptions::new(self.codec.compression);
        o.level = self.codec.level;
        o.recipients = self.recipients()?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_a_local_zstd_repository() {
        let cfg = Config::from_toml("").unwrap();
        assert_eq!(cfg.repository.url, None);
        assert_eq!(cfg.codec.compression, Compression::Zstd);
        assert!(cfg.recipients().unwrap().is_none());
    }

    #[test]
    fn unknown_keys_and_secret_fields_are_rejected() {
        let err = Config::from_toml("[repository]\nurll = 'x'").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
        // Credentials may not be put in the file.
        let err = Config::from_toml("[repository.s3]\nsecret-access-key = 'x'").unwrap_err();
        assert!(err.to_string().contains("secret-access-key"), "{err}");
    }

    #[test]
    fn retention_section_overrides_one_class() {
        let cfg = Config::from_toml(
            "[retention]\ntime-zone = 'Europe/Zurich'\n[retention.classes.database]\nkeep-daily = 7\n",
        )
        .unwrap();
        assert_eq!(cfg.retention.time_zone, "Europe/Zurich");
        assert_eq!(
            cfg.retention.classes.database.keep_daily,
            cfdr_retention::Count::Limited(7)
        );
        assert_eq!(
            cfg.retention.classes.audit_logs,
            cfdr_retention::DataClassPolicies::default().audit_logs
        );
        for (bad, names) in [
            ("[retention.classes.database]\nkeep-daily = -3", "-3"),
            ("[retention.classes.database]\nkeep-dayly = 3", "keep-dayly"),
            (
                "[retention.classes.audit-logs]\nkeep-within = '7 years'",
                "7 years",
            ),
        ] {
            let err = Config::from_toml(bad).unwrap_err().to_string();
            assert!(err.contains(names), "{err}");
        }
    }

    /// Every key of these tables, as `(table, key)`, nested tables joined
    /// with dots.
    fn leaf_keys(value: &serde_json::Value, table: &str, out: &mut Vec<(String, String)>) {
        for (key, v) in value.as_object().into_iter().flatten() {
            match v {
                serde_json::Value::Object(_) => leaf_keys(v, &format!("{table}.{key}"), out),
                _ => out.push((table.to_owned(), key.clone())),
            }
        }
    }

    #[test]
    fn the_readme_reference_parses_and_lists_every_key() {
        let readme = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ))
        .unwrap();
        let section = &readme[readme.find("# Configuration reference").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let block = &section[start..start + section[start..].find("```").unwrap()];
        Config::from_toml(block).unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut keys = Vec::new();
        for table in ["repository", "codec", "encryption", "wal", "pg"] {
            leaf_keys(&defaults[table], table, &mut keys);
        }
        let mut missing = Vec::new();
        for (table, key) in keys {
            let header = format!("[{table}]");
            let listed = block.find(&header).is_some_and(|at| {
                let body = &block[at + header.len()..];
                let body = &body[..body.find("\n[").unwrap_or(body.len())];
                body.lines().any(|l| l.starts_with(&format!("{key} =")))
            });
            if !listed {
                missing.push(format!("{header} {key}"));
            }
        }
        assert!(
            missing.is_empty(),
            "docs/configuration.md reference lacks {missing:?}"
        );
    }

    #[test]
    fn guard_sections_parse_and_bad_ones_are_named() {
        let cfg = Config::from_toml(
            "[guard]\nstaleness-limit = '3s'\n[objectives]\nrpo = '2m'\n[objectives.backups]\n'physical' = '30h'\n",
        )
        .unwrap();
        let s = cfg.guard_settings().unwrap();
        assert_eq!(s.objectives.rpo.0.as_secs(), 120);
        assert_eq!(s.guard.staleness_limit.0.as_secs(), 3);
        assert_eq!(s.objectives.backups["physical"].0.as_secs(), 30 * 3600);
        let defaults = Config::from_toml("").unwrap().guard_settings().unwrap();
        assert_eq!(defaults.objectives.rpo.0.as_secs(), 300);
        for (bad, names) in [
            ("[objectives]\nrpx = '5m'", "rpx"),
            ("[objectives]\nrpo = 'five minutes'", "five minutes"),
            ("[guard]\nstale-state = 'active'", "active"),
        ] {
            let err = Config::from_toml(bad).unwrap_err().to_string();
            assert!(err.contains(names), "{err}");
        }
        let cfg = Config::from_toml(
            "[guard]\nsafe-replicas = ['standby-east']\noperation-stale-after = '5m'\n[objectives]\ndrill-max-age = '14d'\n",
        )
        .unwrap();
        let s = cfg.guard_settings().unwrap();
        assert_eq!(s.guard.safe_replicas, ["standby-east"]);
        assert_eq!(s.guard.operation_stale_after.0.as_secs(), 300);
        assert_eq!(s.objectives.drill_max_age.0.as_secs(), 14 * 86_400);
        let blank = Config::from_toml("[guard]\nsafe-replicas = ['']").unwrap();
        let err = blank.guard_settings().unwrap_err().to_string();
        assert!(err.contains("guard.safe-replicas"), "{err}");
        let zero = Config::from_toml("[objectives]\nrpo = '0s'").unwrap();
        let err = zero.guard_settings().unwrap_err().to_string();
        assert!(
            err.contains("objectives.rpo") && err.contains("zero"),
            "{err}"
        );
    }

    #[test]
    fn object_lock_keys_and_windows_from_retention() {
        let cfg = Config::from_toml(
            "[repository]\nurl = 's3://b/p'\nobject-lock = 'compliance'\nobject-lock-margin = '14d'\n",
        )
        .unwrap();
        assert_eq!(
            cfg.repository.object_lock,
            cfdr_storage::LockMode::Compliance
        );
        assert_eq!(cfg.repository.object_lock_margin.to_string(), "14d");
        let p = &cfg.repository.lock_periods;
        // The runbook's windows: audit and trading records 7 years, logs
        // 90 days, database backups the longer of 52 weekly and the
        // 1-year archive, indefinite classes the longest finite window.
        let shown = |k: &str| p.kinds[k].to_string();
        assert_eq!(
            [
                "audit", "trading", "logs", "logical", "physical", "config", "secrets"
            ]
            .map(shown),
            ["7y", "7y", "90d", "1y", "1y", "7y", "7y"]
        );
        assert_eq!(
            (p.wal.to_string(), p.other.to_string()),
            ("1y".into(), "7y".into())
        );

        let cfg = Config::from_toml(
            "[retention.classes.database]\nkeep-daily = 10\n[retention.classes.database-archive]\nkeep-monthly = 3\n",
        )
        .unwrap();
        assert_eq!(cfg.repository.object_lock, cfdr_storage::LockMode::Off);
        assert_eq!(cfg.repository.object_lock_margin.to_string(), "30d");
        assert_eq!(
            cfg.repository.lock_periods.kinds["logical"].to_string(),
            "3mo"
        );

        for (bad, names) in [
            ("[repository]\nobject-lock = 'strict'", "strict"),
            ("[repository]\nobject-lock-margin = 'a month'", "a month"),
            ("[repository]\nobject-lock-margin = '-1d'", "negative"),
        ] {
            let err = Config::from_toml(bad).unwrap_err().to_string();
            assert!(err.contains(names), "{err}");
        }
    }

    #[test]
    fn recipients_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = cfdr_secrets::generate_identity();
        let f = dir.path().join("recipients.txt");
        std::fs::write(&f, format!("# ops team\n{public}\n")).unwrap();
        let cfg = Config::from_toml(&format!(
            "[encryption]\nrecipients-file = '{}'",
            f.display()
        ))
        .unwrap();
        assert_eq!(cfg.recipients().unwrap().unwrap().keys(), [public]);
    }

    #[test]
    fn copies_parse_validate_and_resolve_by_name_or_url() {
        let text = r#"
            [repository]
            url = "s3://primary/cfdr"
            [repository.s3]
            endpoint = "http://127.0.0.1:9000"
            [[copy]]
            name = "dr-eu"
            url = "azblob://dr/cfdr"
            credentials-env-prefix = "CFDR_TEST_NOPE_"
            [copy.azblob]
            endpoint = "http://127.0.0.1:10000/devstoreaccount1"
            account-name = "devstoreaccount1"
            [copy.retry]
            max-retries = 9
            [[copy]]
            name = "vault"
            url = "file:///srv/cfdr-copy"
        "#;
        let mut cfg = Config::from_toml(text).unwrap();
        assert_eq!(cfg.copies.len(), 2);
        cfg.select_repository("dr-eu");
        assert_eq!(cfg.repository.url.as_deref(), Some("azblob://dr/cfdr"));
        assert_eq!(
            cfg.repository.azblob.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        assert_eq!(cfg.repository.retry.max_retries, 9);
        assert!(cfg.repository.azblob.explicit_credentials_only);
        // restore_command passes a local copy's path: same place, same copy.
        let mut cfg = Config::from_toml(text).unwrap();
        cfg.select_repository("/srv/cfdr-copy");
        assert_eq!(cfg.repository.url.as_deref(), Some("file:///srv/cfdr-copy"));
        // Anything else is a URL for [repository], whose options stay.
        let mut cfg = Config::from_toml(text).unwrap();
        cfg.select_repository("s3://other/x");
        assert_eq!(cfg.repository.url.as_deref(), Some("s3://other/x"));
        assert_eq!(
            cfg.repository.s3.endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        // Every [repository] storage key is accepted in a [[copy]] too.
        let defaults = serde_json::to_value(StorageOptions::default()).unwrap();
        let mut keys = Vec::new();
        leaf_keys(&defaults, "copy", &mut keys);
        let copy = serde_json::to_value(CopyConfig::default()).unwrap();
        let mut copy_keys = Vec::new();
        leaf_keys(&copy, "copy", &mut copy_keys);
        for k in keys {
            assert!(copy_keys.contains(&k), "[[copy]] lacks {k:?}");
        }
        for (bad, says) in [
            (
                "[[copy]]\nname = 'a/b'\nurl = 'memory://x'",
                "letters, digits",
            ),
            ("[[copy]]\nname = 'x'", "`url` is missing"),
            ("[[copy]]\nurl = 'memory://x'", "#1"),
            (
                "[[copy]]\nname = 'x'\nurl = 'memory://a'\n[[copy]]\nname = 'x'\nurl = 'memory://b'",
                "unique",
            ),
            ("[[copy]]\nname = 'x'\nurl = 'ftp://a/b'", "ftp"),
            ("[[copy]]\nname = 'x'\nurl = 'memory://a'\nurll = 1", "urll"),
        ] {
            let err = Config::from_toml(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
