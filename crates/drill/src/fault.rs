//! Faults a drill can plant (`--inject`) and the detector that names a
//! fault from what a step saw. The detector reads the failure itself (a
//! checksum, a size, a decryption error, a continuity gap, a freshness
//! check), never the plan: a drill that planted a fault and did not see it
//! fails with "not detected".

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Scenario;
use crate::error::{Error, Result};

/// A planted fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// An archived WAL segment the recovery needs is deleted
    /// (planted in `accidental-deletion`).
    MissingWal,
    /// A byte of the newest logical dump is flipped
    /// (planted in `database-loss`, logical restore).
    CorruptObject,
    /// The newest base backup's data object is cut short
    /// (planted in `database-loss`, physical restore).
    TruncatedObject,
    /// The secrets bundle is opened with another age identity
    /// (planted in `secrets-loss`).
    WrongKey,
    /// The drill reads a copy of the repository that stopped receiving
    /// WAL (planted in `replica-failover`).
    StaleRepository,
}

/// Text of the continuity check's failure, which the detector recognises.
pub(crate) const MISSING_WAL: &str = "archived WAL segments are missing";
/// Text of the freshness check's failure, which the detector recognises.
pub(crate) const STALE: &str = "the repository is stale";

impl Fault {
    /// Every fault, in the order of `--help`.
    pub const ALL: [Fault; 5] = [
        Fault::MissingWal,
        Fault::CorruptObject,
        Fault::TruncatedObject,
        Fault::WrongKey,
        Fault::StaleRepository,
    ];

    /// The `--inject` name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::MissingWal => "missing-wal",
            Fault::CorruptObject => "corrupt-object",
            Fault::TruncatedObject => "truncated-object",
            Fault::WrongKey => "wrong-key",
            Fault::StaleRepository => "stale-repository",
        }
    }

    /// Parses an `--inject` name.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| Error::Unknown {
                what: "fault",
                name: name.to_owned(),
                expected: Self::ALL.map(Fault::name).join(", "),
            })
    }

    /// The scenario the fault is planted in.
    pub fn scenario(self) -> Scenario {
        match self {
            Fault::MissingWal => Scenario::AccidentalDeletion,
            Fault::CorruptObject | Fault::TruncatedObject => Scenario::DatabaseLoss,
            Fault::WrongKey => Scenario::SecretsLoss,
            Fault::StaleRepository => Scenario::ReplicaFailover,
        }
    }

    /// The fault a failure message shows, if any: the storage layer's
    /// size and checksum checks, age's refusal, the drill's continuity and
    /// freshness checks.
    pub fn detect(message: &str) -> Option<Fault> {
        if message.contains("(truncated?)") {
            Some(Fault::TruncatedObject)
        } else if message.contains(" is corrupt") {
            Some(Fault::CorruptObject)
        } else if message.contains("cannot decrypt") {
            Some(Fault::WrongKey)
        } else if message.contains(MISSING_WAL) {
            Some(Fault::MissingWal)
        } else if message.contains(STALE) {
            Some(Fault::StaleRepository)
        } else {
            None
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for f in Fault::ALL {
            assert_eq!(Fault::parse(f.name()).ok(), Some(f));
        }
        let err = Fault::parse("disk-full").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "unknown fault \"disk-full\": expected one of missing-wal, corrupt-object, truncated-object, wrong-key, stale-repository"
            )
        );
    }

    #[test]
    fn the_detector_names_each_fault_from_the_library_messages() {
        let corrupt = cfdr_storage::Error::Corrupt {
            key: "backups/x/data.zst".into(),
            reason: "SHA-256 differs".into(),
        };
        assert_eq!(
            Fault::detect(&corrupt.to_string()),
            Some(Fault::CorruptObject)
        );
        let cut = cfdr_storage::Error::Corrupt {
            key: "backups/x/data.zst".into(),
            reason: "size is 10 bytes, the manifest recorded 20 (truncated?)".into(),
        };
        assert_eq!(
            Fault::detect(&cut.to_string()),
            Some(Fault::TruncatedObject)
        );
        assert_eq!(Fault::detect("restore finished"), None);
    }
}
