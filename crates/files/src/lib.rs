//! File archives for cfdr: configuration, log, audit and trading-record
//! folders as tar archives in the repository (runbook 1, 2.2, 2.5, 3.2).
//!
//! - [`backup`]: a tar of the given paths (modes, mtimes, symlinks as links,
//!   empty folders) streamed through the repository codec (compression,
//!   age), then an [`Index`] of every entry with its size and SHA-256, then
//!   the manifest (written last: no manifest, not a backup). The manifest
//!   kind is the retention kind of the [`FileClass`], so `cfdr-prune` keeps
//!   audit logs and records 7 years and logs 90 days by default.
//! - [`restore`]: unpacks into a folder and never writes outside it. Every
//!   entry is checked here, not by the `tar` crate's `unpack`: absolute
//!   names, `..`, NUL, empty components, links leaving the folder,
//!   hardlinks to anything but an earlier file of the archive, devices,
//!   fifos and oversize headers are refused, nothing is written through a
//!   symlink, existing files are kept unless forced, and every file is
//!   checked against the index (size and SHA-256).
//! - [`read_index`] and [`diff`]: what an archive holds and what changed
//!   between it and a folder.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use cfdr_files::{BackupRequest, FileClass, RestoreRequest};
//! use cfdr_storage::{EncodeOptions, Repository, StorageOptions};
//!
//! let repo = Repository::init(StorageOptions::from_url("memory://files-doc").build()?).await?;
//! let src = tempfile::tempdir()?;
//! std::fs::write(src.path().join("app.toml"), "port = 8080\n")?;
//!
//! let req = BackupRequest::new(FileClass::Config, vec![src.path().to_path_buf()]);
//! let archive = cfdr_files::backup(&repo, &req, &EncodeOptions::default()).await?;
//! assert_eq!(archive.manifest.kind, "config");
//!
//! let into = tempfile::tempdir()?;
//! let report = cfdr_files::restore(&repo, &archive.manifest, &RestoreRequest::new(into.path()), None).await?;
//! assert_eq!(report.files, 1);
//! let name = src.path().join("app.toml");
//! let restored = into.path().join(name.strip_prefix("/")?);
//! assert_eq!(std::fs::read_to_string(restored)?, "port = 8080\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod archive;
mod diff;
mod error;
mod extract;
mod git;
mod glob;
mod index;

pub use archive::{Archive, BackupRequest, backup};
pub use diff::{Change, Diff, diff};
pub use error::{Error, Result};
pub use extract::{RestoreReport, RestoreRequest, restore};
pub use git::GitSnapshot;
pub use glob::Glob;
pub use index::{ArchiveDetails, EntryKind, Index, IndexEntry, find_archive, read_index};

/// What a file archive holds; decides its retention data class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileClass {
    /// Configuration (kept indefinitely by default).
    Config,
    /// Application logs (90 days).
    Logs,
    /// Audit logs (7 years).
    Audit,
    /// Trading records (7 years).
    Records,
}

impl FileClass {
    /// Every class.
    pub const ALL: [FileClass; 4] = [
        FileClass::Config,
        FileClass::Logs,
        FileClass::Audit,
        FileClass::Records,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            FileClass::Config => "config",
            FileClass::Logs => "logs",
            FileClass::Audit => "audit",
            FileClass::Records => "records",
        }
    }

    /// The manifest kind: the name of the retention kind (`cfdr_retention::Kind`)
    /// whose data class holds this archive.
    pub fn kind(self) -> &'static str {
        match self {
            FileClass::Config => "config",
            FileClass::Logs => "logs",
            FileClass::Audit => "audit",
            FileClass::Records => "trading",
        }
    }

    /// The class of a manifest kind, if it is a file archive.
    pub fn from_kind(kind: &str) -> Option<FileClass> {
        Self::ALL.into_iter().find(|c| c.kind() == kind)
    }
}

impl std::str::FromStr for FileClass {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| Error::InvalidOption {
                option: "--class",
                reason: format!("{s:?} is not one of config, logs, audit, records"),
            })
    }
}

impl std::fmt::Display for FileClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
