//! Repository storage for cfdr: every backup, WAL segment, secret bundle and
//! incident record lives in one repository on object storage.
//!
//! - [`StorageOptions`] / [`Location`]: a repository URL (`file:///path`,
//!   `memory://`, `s3://bucket/prefix`, `gs://bucket/prefix`,
//!   `azblob://container/prefix`) plus options become a [`Store`]: the only
//!   place cfdr builds an opendal operator, with retry (temporary errors
//!   only), timeout and logging layers.
//! - [`Store`]: object I/O that reports and verifies size and SHA-256,
//!   paged listing, batch delete, create-only writes.
//! - [`codec`]: gzip/zstd compression and age encryption as streaming
//!   stages with bounded buffers ([`encode_to`], [`decode_to`]).
//! - [`Repository`]: `cfdr.json`, time-sortable [`BackupId`]s, backups
//!   committed by writing `manifest.json` last, listing and verification.
//! - [`Lease`]: a lease lock with takeover of expired holders.
//! - [`wal_archive`]: where WAL files live (`wal/...`) and listing them.
//! - [`object_lock`]: S3 Object Lock retention on every write
//!   (`[repository] object-lock`), versioned deletes that skip locked
//!   objects, and [`check_object_lock`] behind `cfdr-repo check`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use cfdr_storage::{EncodeOptions, Repository, StorageOptions, decode_to};
//!
//! let store = StorageOptions::from_url("memory://").build()?;
//! let repo = Repository::init(store).await?;
//!
//! let mut backup = repo.begin_backup("logical", Some("hourly"))?;
//! let dump: &'static [u8] = b"-- a pg_dump stream --";
//! backup.put_encoded("dump.zst", dump, &EncodeOptions::default()).await?;
//! let manifest = backup.commit(Default::default()).await?;
//!
//! assert_eq!(repo.backup_ids().await?, vec![manifest.id.clone()]);
//! let mut restored = Vec::new();
//! decode_to(repo.store(), &manifest.objects[0], None, &mut restored).await?;
//! assert_eq!(restored, dump);
//! # Ok::<(), cfdr_storage::Error>(())
//! # }).unwrap();
//! ```

mod checks;
pub mod codec;
mod error;
mod location;
mod lock;
mod object;
pub mod object_lock;
pub mod operations;
pub mod parts;
mod repo;
pub mod secret_bundles;
mod selftest;
pub mod wal_archive;

pub use checks::{CheckKind, CheckOutcome, CheckRecord};
pub use codec::{
    CodecInfo, Compression, EncodeOptions, Progress, StoredObject, decode_reader, decode_to,
    encode_into, encode_to,
};
pub use error::{Error, Result};
pub use location::{
    AzblobOptions, BackendKind, CompatOptions, DEFAULT_REPOSITORY, GcsOptions, Location,
    RetryOptions, S3Options, StorageOptions, TimeoutOptions, default_lock_margin,
};
pub use lock::{HeldLease, Lease, LockRecord, ProcessId};
pub use object::{
    ObjectInfo, ObjectMeta, ObjectWriter, SINGLE_REQUEST_MAX, Store, VerifiedStream, io_to_error,
};
pub use object_lock::{
    LockCheck, LockMode, LockPeriod, LockPeriods, LockedObject, Retention, VersionedDeletes,
    check_object_lock,
};
pub use operations::{Operation, OperationMarker};
pub use repo::{
    BACKUPS_PREFIX, BackupFolder, BackupId, BackupWriter, CONFIG_KEY, Catalog, DamagedManifest,
    FORMAT_VERSION, Leftover, MANIFEST_NAME, Manifest, RepoConfig, Repository, TOOL_VERSION,
    VerifyReport,
};
pub use secret_bundles::{SecretManifest, SecretStore};
pub use selftest::{SelfTestReport, sample_data};

/// Re-exported so callers can name operator types without their own
/// dependency on the exact opendal version.
pub use opendal;
