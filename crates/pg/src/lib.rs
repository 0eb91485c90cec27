//! PostgreSQL for cfdr: client tools, local clusters, logical backup and
//! restore, and the restore test.
//!
//! - [`PgTarget`]: where the server is (`DATABASE_URL` or `PG*`); passwords
//!   reach tools through their environment, never argv.
//! - [`PgBin`]: finds `pg_dump`/`pg_restore` (configured dir,
//!   `/usr/lib/postgresql/<major>/bin`, `PATH`), refusing tools older than
//!   the server.
//! - [`LocalCluster`]: initdb/start/stop on a free 127.0.0.1 port, as the
//!   `postgres` user when running as root.
//! - [`logical`]: `pg_dump` custom format streamed through the codec into the
//!   repository with snapshot-consistent row counts; restore into a new
//!   database, verify, optional swap; the restore test.
//!
//! WAL archiving (`archive_command` / `restore_command`, the WAL stream) is
//! the `cfdr-wal-archive` crate, built on this one.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cfdr_pg::{PgTarget, logical};
//! use cfdr_storage::{EncodeOptions, Repository, StorageOptions};
//!
//! let repo = Repository::open(StorageOptions::from_url("s3://backups/cfdr").build()?).await?;
//! let db = PgTarget::from_env()?;
//! let opts = logical::LogicalOptions::default();
//! let manifest = logical::backup(&repo, &db, "hourly", &opts, &EncodeOptions::default()).await?;
//! let report = logical::restore(&repo, &db, &manifest, &opts, &Default::default(), |_| {}).await?;
//! println!("restored into {}", report.database);
//! # Ok(()) }
//! ```

pub mod admin;
mod archive_data;
mod archive_toc;
mod cluster;
mod db_properties;
mod error;
pub mod logical;
pub mod physical;
mod post_data;
pub mod replica;
mod restore_stream;
mod target;
mod toc_guard;
mod tools;

pub use archive_data::read_dump_archive;
pub use cluster::{LocalCluster, chown_tree, free_port};
pub use error::{Error, Result};
pub use post_data::{Early as PostDataEarly, Plan as PostDataPlan, split_post_data};
pub use target::PgTarget;
pub use tools::{PgBin, is_root, parse_major, server_user};
