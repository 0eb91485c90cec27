//! Finding PostgreSQL's client and server programs, and running them as the
//! `postgres` OS user when cfdr runs as root (initdb and postgres refuse root).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::error::{Error, Result};

/// A directory of PostgreSQL programs of one major version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgBin {
    dir: Option<PathBuf>,
    /// Major version of `pg_dump` in that directory.
    pub major: u32,
}

/// Parses `pg_dump (PostgreSQL) 15.18 (Debian ...)` into 15.
pub fn parse_major(version_output: &str) -> Option<u32> {
    let number = version_output
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    number.split('.').next()?.parse().ok()
}

impl PgBin {
    /// Finds the tools: `configured` dir, then `/usr/lib/postgresql/<server>/bin`,
    /// then the newest `/usr/lib/postgresql/*/bin`, then `PATH`. With a
    /// `server` major, refuses tools older than the server.
    pub async fn locate(configured: Option<&Path>, server: Option<u32>) -> Result<Self> {
        let mut candidates: Vec<Option<PathBuf>> = Vec::new();
        if let Some(dir) = configured {
            candidates.push(Some(dir.to_owned()));
        } else {
            if let Some(major) = server {
                candidates.push(Some(PathBuf::from(format!(
                    "/usr/lib/postgresql/{major}/bin"
                ))));
            }
            let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .collect();
            installed.sort();
            candidates.extend(installed.into_iter().rev().map(|(_, p)| Some(p)));
            candidates.push(None);
        }
        let searched: Vec<String> = candidates
            .iter()
            .map(|c| {
                c.as_ref()
                    .map_or("PATH".into(), |p| p.display().to_string())
            })
            .collect();
        for dir in candidates {
            let bin = PgBin {
                dir: dir.clone(),
                major: 0,
            };
            let Ok(out) = Command::new(bin.path("pg_dump"))
                .arg("--version")
                .output()
                .await
            else {
                continue;
            };
            let Some(major) = parse_major(&String::from_utf8_lossy(&out.stdout)) else {
                continue;
            };
            if let Some(server) = server
                && major < server
            {
                return Err(Error::ToolTooOld {
                    tool: bin.path("pg_dump"),
                    client: major,
                    server,
                });
            }
            return Ok(PgBin { dir, major });
        }
        Err(Error::ToolNotFound {
            tool: "pg_dump".into(),
            searched: searched.join(", "),
            major: server.unwrap_or(15),
        })
    }

    /// Path of a program in this directory (or its bare name, for PATH).
    pub fn path(&self, program: &str) -> PathBuf {
        match &self.dir {
            Some(d) => d.join(program),
            None => PathBuf::from(program),
        }
    }

    /// A command for `program`; as root, it runs as the `postgres` user
    /// (server programs refuse root).
    pub fn command(&self, program: &str, as_server_user: bool) -> Result<Command> {
        let mut cmd = Command::new(self.path(program));
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        if as_server_user && let Some((uid, gid)) = server_user()? {
            cmd.uid(uid)
                .gid(gid)
                .current_dir("/")
                .env("HOME", "/var/lib/postgresql");
        }
        Ok(cmd)
    }
}

/// Whether this process runs as root (owner of `/proc/self`).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `(uid, gid)` of the `postgres` user when running as root, else `None`.
pub fn server_user() -> Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(Error::io("reading /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .map(Some)
        .ok_or_else(|| Error::Config("running as root needs a `postgres` OS user for initdb/postgres: useradd --system --home-dir /var/lib/postgresql postgres".into()))
}

/// Runs a prepared command to completion; a non-zero exit becomes
/// [`Error::ToolFailed`] with its stderr.
pub(crate) async fn run(mut cmd: Command, tool: &str) -> Result<String> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(Error::io(format!("cannot run {tool}")))?;
    if !out.status.success() {
        return Err(Error::ToolFailed {
            tool: tool.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta1"), None);
        assert_eq!(parse_major("pg_restore (PostgreSQL) 9.6.24"), Some(9));
    }
}
