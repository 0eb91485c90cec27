//! `--git-tag`: tag the configuration checkout the way runbook 2.2 does.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The git checkout recorded with a configuration archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSnapshot {
    /// The checkout's top folder, as an archive path.
    pub path: String,
    /// The commit archived (`HEAD`).
    pub commit: String,
    /// The tag created (or found) on it: `production-config-YYYYMMDD`,
    /// with `-2`, `-3`... when that day's tag names another commit.
    pub tag: String,
    /// Whether the work tree had uncommitted changes (the archive holds
    /// them; the tag does not).
    pub dirty: bool,
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| Error::Git {
            path: dir.display().to_string(),
            what: args.join(" "),
            reason: format!("{e} (is git installed?)"),
        })?;
    if !out.status.success() {
        return Err(Error::Git {
            path: dir.display().to_string(),
            what: args.join(" "),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The first of `roots` that is a git checkout's top folder.
pub(crate) fn find_checkout(
    roots: &[(std::path::PathBuf, String)],
) -> Option<&(std::path::PathBuf, String)> {
    roots.iter().find(|(p, _)| p.join(".git").exists())
}

/// Tags `HEAD` of the checkout at `dir` (annotated, as the runbook does)
/// and returns what was tagged. A tag of that name already on `HEAD` is
/// reused, so a second archive the same day tags nothing new.
pub(crate) fn tag(dir: &Path, archive_path: &str, day: &str) -> Result<GitSnapshot> {
    let commit = git(dir, &["rev-parse", "--verify", "HEAD^{commit}"])?;
    let dirty = !git(dir, &["status", "--porcelain"])?.is_empty();
    let base = format!("production-config-{day}");
    for n in 1..100 {
        let tag = match n {
            1 => base.clone(),
            n => format!("{base}-{n}"),
        };
        let existing = git(
            dir,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/tags/{tag}^{{commit}}"),
            ],
        );
        match existing {
            Ok(c) if c == commit => return Ok(snapshot(archive_path, commit, tag, dirty)),
            Ok(_) => continue,
            Err(_) => {
                let mut cmd = vec![
                    "tag",
                    "-a",
                    tag.as_str(),
                    "-m",
                    "Production config snapshot",
                ];
                // A host without a git identity (a cron job as root) still tags.
                let named = git(dir, &["config", "user.email"]).is_ok_and(|e| !e.is_empty());
                let with_identity;
                if !named {
                    with_identity = [
                        "-c",
                        "user.name=cfdr-backup",
                        "-c",
                        "user.email=cfdr-backup@localhost",
                    ];
                    cmd.splice(0..0, with_identity);
                }
                git(dir, &cmd)?;
                return Ok(snapshot(archive_path, commit, tag, dirty));
            }
        }
    }
    Err(Error::Git {
        path: dir.display().to_string(),
        what: "tag".into(),
        reason: format!("{base} to {base}-99 all name other commits; delete old tags"),
    })
}

fn snapshot(path: &str, commit: String, tag: String, dirty: bool) -> GitSnapshot {
    GitSnapshot {
        path: path.to_owned(),
        commit,
        tag,
        dirty,
    }
}
