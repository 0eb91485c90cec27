//! Local cluster control: initdb, start and stop on a chosen port and socket
//! directory, wait until ready, create databases. Used by the tests, the
//! restore tests and drills, and PITR restores.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::target::PgTarget;
use crate::tools::{PgBin, run, server_user};

/// A PostgreSQL cluster on this machine, listening on 127.0.0.1 only.
/// Dropping a running cluster stops it immediately.
#[derive(Debug)]
pub struct LocalCluster {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Unix socket directory.
    pub socket_dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Server log of `pg_ctl start` (default: `<data_dir>.log`).
    pub log_file: PathBuf,
    bin: PgBin,
    running: bool,
    _temp: Option<tempfile::TempDir>,
}

/// How long a start may take: recovery and a loaded machine both stretch it,
/// and a server that fails to start is seen at once by pg_ctl.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// The last 15 lines of a server log, on one line.
fn log_tail(log: &str) -> String {
    let tail: Vec<&str> = log.lines().rev().take(15).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(Error::io("finding a free port"))
}

fn chown_for_server(path: &Path) -> Result<()> {
    if let Some((uid, gid)) = server_user()? {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(Error::io(format!("chown {} to postgres", path.display())))?;
    }
    Ok(())
}

/// Hands a folder tree (a restored data directory, a folder the server
/// or its `archive_command` writes) to the `postgres` user (when root).
pub fn chown_tree(path: &Path) -> Result<()> {
    if server_user()?.is_none() {
        return Ok(());
    }
    chown_for_server(path)?;
    if path.is_dir() && !path.is_symlink() {
        let entries =
            std::fs::read_dir(path).map_err(Error::io(format!("reading {}", path.display())))?;
        for entry in entries {
            let entry = entry.map_err(Error::io(format!("reading {}", path.display())))?;
            chown_tree(&entry.path())?;
        }
    }
    Ok(())
}

impl LocalCluster {
    /// Creates a new cluster in a fresh temp dir (removed on drop) with
    /// trust authentication for user `postgres`. Not started.
    pub async fn init_temp(bin: &PgBin) -> Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix("cfdr-pg-")
            .tempdir()
            .map_err(Error::io("creating a temp dir for the cluster"))?;
        let mut cluster =
            Self::init(bin, &temp.path().join("data"), &temp.path().join("sock")).await?;
        chown_for_server(temp.path())?;
        cluster._temp = Some(temp);
        Ok(cluster)
    }

    /// Runs initdb into `data_dir` (which must not exist or be empty).
    pub async fn init(bin: &PgBin, data_dir: &Path, socket_dir: &Path) -> Result<Self> {
        for dir in [data_dir, socket_dir] {
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
            chown_for_server(dir)?;
            if let Some(parent) = dir.parent() {
                chown_for_server(parent)?;
            }
        }
        let mut cmd = bin.command("initdb", true)?;
        cmd.args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "-D",
        ])
        .arg(data_dir);
        run(cmd, "initdb").await.map_err(|e| Error::Cluster {
            action: "initdb",
            data_dir: data_dir.to_owned(),
            detail: e.to_string(),
        })?;
        Self::existing(bin, data_dir, socket_dir)
    }

    /// A handle on an existing data directory (e.g. a restored base backup).
    pub fn existing(bin: &PgBin, data_dir: &Path, socket_dir: &Path) -> Result<Self> {
        Ok(Self {
            data_dir: data_dir.to_owned(),
            socket_dir: socket_dir.to_owned(),
            port: free_port()?,
            log_file: data_dir.with_extension("log"),
            bin: bin.clone(),
            running: false,
            _temp: None,
        })
    }

    /// Starts the server (`extra` are `-c name=value` settings) and waits
    /// until it accepts connections. The port was found free when the
    /// handle was made; when another process took it since, the server is
    /// started again on a new free port (up to 5 tries).
    pub async fn start(&mut self, extra: &[(&str, &str)]) -> Result<()> {
        let log = self.log_file.clone();
        let mut tries = 0;
        loop {
            tries += 1;
            let logged_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let Err(e) = self.start_once(extra, &log).await else {
                break;
            };
            let text = std::fs::read(&log).unwrap_or_default();
            let this_try =
                String::from_utf8_lossy(text.get(logged_before as usize..).unwrap_or_default());
            if tries < 5 && this_try.contains("Address already in use") {
                self.port = free_port()?;
                continue;
            }
            return Err(Error::Cluster {
                action: "start",
                data_dir: self.data_dir.clone(),
                detail: format!("{e}; server log: {}", log_tail(&this_try)),
            });
        }
        self.running = true;
        let target = self.target("postgres");
        // pg_ctl -w returned once the server said it was ready; a loaded
        // machine may still take a while to serve the first connection.
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            match target.connect().await {
                Ok(_) => return Ok(()),
                // The postmaster removes its pid file when it exits: a
                // server that stopped (a recovery that failed after pg_ctl
                // saw it ready) is reported at once, not waited for.
                Err(e) if !self.data_dir.join("postmaster.pid").exists() => {
                    self.running = false;
                    let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
                    return Err(Error::Cluster {
                        action: "start",
                        data_dir: self.data_dir.clone(),
                        detail: format!(
                            "the server stopped right after starting ({e}); server log: {}",
                            log_tail(&log)
                        ),
                    });
                }
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(Error::Cluster {
                        action: "start",
                        data_dir: self.data_dir.clone(),
                        detail: format!(
                            "the server did not accept connections within {} s: {e}",
                            START_TIMEOUT.as_secs()
                        ),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn start_once(&self, extra: &[(&str, &str)], log: &Path) -> Result<()> {
        let mut opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.socket_dir.display()
        );
        for (k, v) in extra {
            opts.push_str(&format!(" -c {k}={v}"));
        }
        let mut cmd = self.bin.command("pg_ctl", true)?;
        cmd.args(["-w", "-t", &START_TIMEOUT.as_secs().to_string(), "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(log)
            .args(["-o", &opts, "start"]);
        run(cmd, "pg_ctl start").await.map(drop)
    }

    /// Stops the server (fast mode).
    pub async fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = self.bin.command("pg_ctl", true)?;
        cmd.args(["-m", "fast", "-w", "-D"])
            .arg(&self.data_dir)
            .arg("stop");
        run(cmd, "pg_ctl stop").await.map_err(|e| Error::Cluster {
            action: "stop",
            data_dir: self.data_dir.clone(),
            detail: e.to_string(),
        })?;
        self.running = false;
        Ok(())
    }

    /// Connection settings for `database` as user `postgres` over TCP.
    pub fn target(&self, database: &str) -> PgTarget {
        PgTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            password: None,
            database: database.into(),
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        crate::admin::create_database(&self.target("postgres"), name).await
    }

    /// The tools this cluster runs with.
    pub fn bin(&self) -> &PgBin {
        &self.bin
    }

    /// Leaves the server running when this handle is dropped (a restored
    /// server handed over to the operator).
    pub fn detach(&mut self) {
        self.running = false;
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let mut cmd = std::process::Command::new(self.bin.path("pg_ctl"));
        cmd.args(["-m", "immediate", "-w", "-D"])
            .arg(&self.data_dir)
            .arg("stop");
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Ok(Some((uid, gid))) = server_user() {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid).current_dir("/");
        }
        let _ = cmd.status();
    }
}
