//! Check records: what was verified about a backup, when, and the outcome.
//!
//! A record is stored beside the backup it checks, create-only, at
//! `backups/<id>/checks/<YYYYMMDDTHHMMSS.mmmZ>-<kind>-<ok|failed>.json`. The
//! key alone carries time, kind and outcome, so listing the repository once
//! gives every backup's verified state without reading each record. Records
//! leave with their backup when it is pruned.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repo::{BACKUPS_PREFIX, BackupId, Repository, from_json, parse_id_time, to_json};

/// Folder of check records inside a backup folder.
const CHECKS_DIR: &str = "checks/";

/// What was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// Every stored object read back against its size and SHA-256.
    Checksums,
    /// Restored into a scratch database and compared with the manifest.
    RestoreTest,
}

impl CheckKind {
    /// The name used in keys and output.
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Checksums => "checksums",
            CheckKind::RestoreTest => "restore-test",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [CheckKind::Checksums, CheckKind::RestoreTest]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// One check of one backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The backup checked.
    pub backup: BackupId,
    /// What was checked.
    pub kind: CheckKind,
    /// When the check finished (UTC).
    pub time: Timestamp,
    /// Whether every part of the check passed.
    pub passed: bool,
    /// What passed, or why it failed.
    pub summary: String,
}

/// The outcome of a check, as read from its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    /// What was checked.
    pub kind: CheckKind,
    /// When the check finished.
    pub time: Timestamp,
    /// Whether it passed.
    pub passed: bool,
}

impl CheckRecord {
    fn key(&self) -> String {
        let time = self.time.strftime("%Y%m%dT%H%M%S.%3fZ");
        let outcome = if self.passed { "ok" } else { "failed" };
        format!(
            "{}{CHECKS_DIR}{time}-{}-{outcome}.json",
            self.backup.prefix(),
            self.kind.name()
        )
    }
}

fn parse_key(key: &str) -> Option<(BackupId, CheckOutcome)> {
    let rest = key.strip_prefix(BACKUPS_PREFIX)?;
    let (id, name) = rest.split_once('/')?;
    let name = name.strip_prefix(CHECKS_DIR)?.strip_suffix(".json")?;
    let (time, rest) = name.split_once('-')?;
    let (kind, outcome) = rest.rsplit_once('-')?;
    let outcome = CheckOutcome {
        kind: CheckKind::parse(kind)?,
        time: parse_id_time(time)?,
        passed: match outcome {
            "ok" => true,
            "failed" => false,
            _ => return None,
        },
    };
    Some((BackupId::parse(id).ok()?, outcome))
}

impl Repository {
    /// Stores a check record beside its backup; returns its key.
    pub async fn record_check(&self, record: &CheckRecord) -> Result<String> {
        let key = record.key();
        self.store()
            .create_if_absent(&key, to_json(record))
            .await
            .map(|_| key)
    }

    /// The newest check of every backup that has one (any kind).
    pub async fn latest_checks(&self) -> Result<BTreeMap<BackupId, CheckOutcome>> {
        let mut latest: BTreeMap<BackupId, CheckOutcome> = BTreeMap::new();
        for meta in self.store().list(BACKUPS_PREFIX).await? {
            let Some((id, outcome)) = parse_key(&meta.key) else {
                continue;
            };
            match latest.get(&id) {
                Some(seen) if seen.time >= outcome.time => {}
                _ => {
                    latest.insert(id, outcome);
                }
            }
        }
        Ok(latest)
    }

    /// Every check record of one backup, oldest first.
    pub async fn checks(&self, id: &BackupId) -> Result<Vec<CheckRecord>> {
        let prefix = format!("{}{CHECKS_DIR}", id.prefix());
        let mut records = Vec::new();
        for meta in self.store().list(&prefix).await? {
            if parse_key(&meta.key).is_none() {
                continue;
            }
            let raw = self.store().get(&meta.key).await?;
            let record: CheckRecord = from_json(&meta.key, &raw)?;
            if &record.backup != id {
                return Err(Error::InvalidDocument {
                    key: meta.key,
                    reason: format!("it names backup {} instead", record.backup),
                });
            }
            records.push(record);
        }
        records.sort_by_key(|r| r.time);
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::StorageOptions;

    async fn repo(name: &str) -> Repository {
        let store = StorageOptions::from_url(format!("memory://{name}"))
            .build()
            .unwrap();
        Repository::init(store).await.unwrap()
    }

    #[test]
    fn keys_round_trip() {
        let id = BackupId::parse("20261126T010203.004Z-logical-00ab").unwrap();
        let record = CheckRecord {
            backup: id.clone(),
            kind: CheckKind::RestoreTest,
            time: "2026-11-26T02:00:00.5Z".parse().unwrap(),
            passed: false,
            summary: "row counts differ".into(),
        };
        let key = record.key();
        assert_eq!(
            key,
            "backups/20261126T010203.004Z-logical-00ab/checks/20261126T020000.500Z-restore-test-failed.json"
        );
        let (parsed_id, outcome) = parse_key(&key).unwrap();
        assert_eq!(parsed_id, id);
        assert_eq!(outcome.kind, CheckKind::RestoreTest);
        assert!(!outcome.passed);
        assert_eq!(outcome.time, record.time);
        // Data objects and manifests are not check records.
        assert!(parse_key("backups/20261126T010203.004Z-logical-00ab/manifest.json").is_none());
        assert!(parse_key("backups/20261126T010203.004Z-logical-00ab/checks/junk.json").is_none());
    }

    #[tokio::test]
    async fn latest_check_per_backup_wins() {
        let repo = repo("checks-latest").await;
        let w = repo.begin_backup("logical", Some("hourly")).unwrap();
        let id = w.id().clone();
        w.commit(Default::default()).await.unwrap();
        let t0: Timestamp = "2026-11-26T01:00:00Z".parse().unwrap();
        for (minutes, passed, kind) in [
            (0, true, CheckKind::Checksums),
            (30, false, CheckKind::RestoreTest),
            (10, true, CheckKind::Checksums),
        ] {
            let record = CheckRecord {
                backup: id.clone(),
                kind,
                time: t0 + jiff::SignedDuration::from_mins(minutes),
                passed,
                summary: String::new(),
            };
            repo.record_check(&record).await.unwrap();
        }
        let latest = repo.latest_checks().await.unwrap();
        let outcome = latest[&id];
        assert_eq!(outcome.kind, CheckKind::RestoreTest);
        assert!(!outcome.passed);
        assert_eq!(repo.checks(&id).await.unwrap().len(), 3);
        // Check records do not make a backup look different or incomplete.
        assert_eq!(repo.backup_ids().await.unwrap(), vec![id]);
        assert!(repo.leftovers(Timestamp::MAX).await.unwrap().is_empty());
    }
}
