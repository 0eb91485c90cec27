//! Stores a file as a verified backup in the configured repository, the way
//! a service embedding cfdr would (repository and codec from cfdr.toml /
//! CFDR_* variables, default ./cfdr-repo with zstd).
//!
//! `cargo run -p cfdr-examples --example backup_a_file -- /etc/hosts`
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result};
use cfdr_storage::Repository;

#[tokio::main]
async fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: backup_a_file FILE")?;
    let config = cfdr_config::Config::load(None)?;
    let repo = Repository::open_or_init(config.repository.build()?).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .with_context(|| format!("cannot open {path}"))?;

    let mut backup = repo.begin_backup("file", Some("manual"))?;
    let name = format!("file.{}", config.codec.compression.extension());
    let obj = backup
        .put_encoded(&name, file, &config.encode_options()?)
        .await?;
    let mut details = serde_json::Map::new();
    details.insert("source".into(), path.clone().into());
    let manifest = backup.commit(details).await?;

    let report = repo.verify(&manifest).await?;
    anyhow::ensure!(report.is_ok(), "verification failed: {:?}", report.failures);
    println!(
        "{path}: {} bytes stored as {} ({} bytes, sha256 {}) in backup {}",
        obj.raw_size, obj.key, obj.stored.size, obj.stored.sha256, manifest.id
    );
    Ok(())
}
