//! Finding PostgreSQL's client and server programs, and running them as the
//! `postgres` OS user when cfdr runs as root (initdb and postgres refuse root).

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::process::{Child, ChildStdout, Command};

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

type WaitFuture = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// A tool's stdout that ends in an error unless the tool exits 0, so a
/// killed or failing `pg_dump` can never look like a complete dump.
pub(crate) struct ToolOutput {
    stdout: ChildStdout,
    wait: Option<WaitFuture>,
    pending: Option<(Child, tokio::task::JoinHandle<String>, &'static str)>,
    stderr: Arc<Mutex<String>>,
}

impl ToolOutput {
    pub(crate) fn new(mut child: Child, tool: &'static str) -> Self {
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let kept = Arc::new(Mutex::new(String::new()));
        let keep = kept.clone();
        let collect = tokio::spawn(async move {
            let mut text = String::new();
            if let Some(mut s) = stderr {
                let mut buf = Vec::new();
                let _ = (&mut s).take(64 << 10).read_to_end(&mut buf).await;
                text = String::from_utf8_lossy(&buf).trim().to_owned();
            }
            if let Ok(mut k) = keep.lock() {
                k.clone_from(&text);
            }
            text
        });
        Self {
            // Present: spawned with Stdio::piped().
            stdout: stdout.unwrap_or_else(|| unreachable!("stdout is piped")),
            wait: None,
            pending: Some((child, collect, tool)),
            stderr: kept,
        }
    }

    /// The tool's stderr (first 64 KiB), complete once the output ended.
    pub(crate) fn stderr(&self) -> Arc<Mutex<String>> {
        self.stderr.clone()
    }
}

impl AsyncRead for ToolOutput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.wait.is_none() {
            let before = buf.filled().len();
            match Pin::new(&mut self.stdout).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    let Some((mut child, collect, tool)) = self.pending.take() else {
                        return Poll::Ready(Ok(()));
                    };
                    self.wait = Some(Box::pin(async move {
                        let status = child.wait().await?;
                        let stderr = collect.await.unwrap_or_default();
                        if status.success() {
                            Ok(())
                        } else {
                            Err(std::io::Error::other(Error::ToolFailed {
                                tool: tool.into(),
                                status: status.to_string(),
                                stderr,
                            }))
                        }
                    }));
                }
                other => return other,
            }
        }
        match self.wait.as_mut().map(|w| w.as_mut().poll(cx)) {
            Some(Poll::Ready(result)) => Poll::Ready(result),
            Some(Poll::Pending) => Poll::Pending,
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The error behind a failed read of a tool's output (see [`ToolOutput`]).
pub(crate) fn tool_error(e: std::io::Error, tool: &str) -> Error {
    match e.into_inner().map(|b| b.downcast::<Error>()) {
        Some(Ok(err)) => *err,
        Some(Err(other)) => Error::ToolFailed {
            tool: tool.into(),
            status: "read error".into(),
            stderr: other.to_string(),
        },
        None => Error::ToolFailed {
            tool: tool.into(),
            status: "read error".into(),
            stderr: String::new(),
        },
    }
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
