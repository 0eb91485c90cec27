//! `cfdr-restore files`: wiring from flags to cfdr-files.

use std::sync::Arc;

use anyhow::Result;
use cfdr_cli::Outcome;

use crate::cli::FilesArgs;

/// `cfdr-restore files`: restore, list or diff one file archive.
pub(crate) async fn run(
    repo: &cfdr_storage::Repository,
    args: FilesArgs,
    identities: Option<Arc<cfdr_secrets::Identities>>,
) -> Result<Outcome> {
    let FilesArgs {
        id,
        into,
        paths,
        force,
        allow_outside_links,
        list,
        diff,
        json,
    } = args;
    let manifest = cfdr_files::find_archive(repo, &id).await?;
    if list || diff.is_some() {
        let index = cfdr_files::read_index(repo, &manifest, identities).await?;
        if let Some(dir) = diff {
            let details = cfdr_files::ArchiveDetails::of(&manifest)?;
            let d = cfdr_files::diff(&index, &details, &dir, &paths)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                d.added.iter().for_each(|p| println!("added    {p:?}"));
                d.removed.iter().for_each(|p| println!("removed  {p:?}"));
                d.changed
                    .iter()
                    .for_each(|c| println!("changed  {:?}: {}", c.path, c.what));
                if d.is_empty() {
                    println!("{} matches archive {}", dir.display(), manifest.id);
                }
            }
            return Ok(if d.is_empty() {
                Outcome::Ok
            } else {
                Outcome::CheckFailed
            });
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&index)?);
        } else {
            for e in &index.entries {
                let what = match e.kind {
                    cfdr_files::EntryKind::Symlink => {
                        format!("-> {}", e.target.as_deref().unwrap_or(""))
                    }
                    _ => e.sha256.clone().unwrap_or_default(),
                };
                println!(
                    "{:<7} {:04o} {:>12} {:?} {what}",
                    e.kind.name(),
                    e.mode,
                    e.size,
                    e.path
                );
            }
        }
        return Ok(Outcome::Ok);
    }
    let Some(into) = into else {
        anyhow::bail!("name --into DIR, --list or --diff DIR");
    };
    let req = cfdr_files::RestoreRequest {
        into,
        paths,
        force,
        allow_outside_links,
    };
    let report = cfdr_files::restore(repo, &manifest, &req, identities).await?;
    println!(
        "restored {} into {}: {} files ({}), {} folders, {} symlinks, {} hardlinks, all verified",
        manifest.id,
        req.into.display(),
        report.files,
        cfdr_cli::human_bytes(report.bytes),
        report.dirs,
        report.symlinks,
        report.hardlinks
    );
    Ok(Outcome::Ok)
}
