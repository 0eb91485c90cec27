//! Streaming replicas and failover (runbook 2.1 "Database Replication", 4.1,
//! 6 "Failover Testing").
//!
//! - [`create_replication_role`]: a `REPLICATION LOGIN` role whose password
//!   the server stores as a SCRAM verifier.
//! - [`create`]: `pg_basebackup -X stream -R` with a replication slot, so
//!   the new data directory starts as a standby (`standby.signal` and
//!   `primary_conninfo` in `postgresql.auto.conf`).
//! - [`status`]: each standby's lag in bytes and seconds, seen from the
//!   primary.
//! - [`promote`]: `pg_promote()`, wait, then prove the server takes writes.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::{Executor, Row};

use crate::admin::{query_error, quote_ident};
use crate::cluster::chown_tree;
use crate::error::{Error, Result};
use crate::target::PgTarget;
use crate::tools::{PgBin, run};

/// Creates (or updates the password of) a replication role on `primary`.
/// The password travels as a bind-free literal inside one statement the
/// server hashes with SCRAM (`password_encryption = scram-sha-256`, the
/// PostgreSQL 14+ default); it is never logged by cfdr.
pub async fn create_replication_role(primary: &PgTarget, role: &str, password: &str) -> Result<()> {
    let mut conn = primary.connect().await?;
    let encryption: String = sqlx::query_scalar("SELECT current_setting('password_encryption')")
        .fetch_one(&mut conn)
        .await
        .map_err(query_error("reading password_encryption", primary))?;
    if encryption != "scram-sha-256" {
        return Err(Error::Config(format!(
            "password_encryption is {encryption}: set it to scram-sha-256 before creating the replication role"
        )));
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut conn)
            .await
            .map_err(query_error("looking up the replication role", primary))?;
    let verb = if exists { "ALTER" } else { "CREATE" };
    let literal = format!("'{}'", password.replace('\'', "''"));
    conn.execute(
        format!(
            "{verb} ROLE {} WITH REPLICATION LOGIN PASSWORD {literal}",
            quote_ident(role)
        )
        .as_str(),
    )
    .await
    .map_err(query_error("creating the replication role", primary))?;
    Ok(())
}

/// Makes `data_dir` (absent or empty) a streaming standby of `primary`
/// through replication slot `slot` (created if absent).
pub async fn create(bin: &PgBin, primary: &PgTarget, data_dir: &Path, slot: &str) -> Result<()> {
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::DataDirNotEmpty {
            dir: data_dir.to_owned(),
        });
    }
    std::fs::create_dir_all(data_dir)
        .map_err(Error::io(format!("creating {}", data_dir.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io(format!("chmod 0700 {}", data_dir.display())))?;
    chown_tree(data_dir)?;
    let mut conn = primary.connect().await?;
    let has_slot: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind(slot)
    .fetch_one(&mut conn)
    .await
    .map_err(query_error("looking up the replication slot", primary))?;
    let mut cmd = bin.command("pg_basebackup", true)?;
    cmd.arg("--pgdata")
        .arg(data_dir)
        .args([
            "--wal-method=stream",
            "--write-recovery-conf",
            "--checkpoint=fast",
            "--no-password",
            "--slot",
            slot,
        ])
        .envs(primary.tool_env());
    if !has_slot {
        cmd.arg("--create-slot");
    }
    run(cmd, "pg_basebackup").await?;
    Ok(())
}

/// One standby as the primary sees it.
#[derive(Clone, Debug, Serialize)]
pub struct StandbyStatus {
    /// `application_name` of the walreceiver.
    pub name: String,
    /// Client address.
    pub address: Option<String>,
    /// streaming, catchup, ...
    pub state: String,
    /// Bytes of WAL the standby has not replayed yet.
    pub lag_bytes: i64,
    /// Replay lag in seconds (as the primary last measured it).
    pub lag_seconds: f64,
    /// async, sync, quorum, potential.
    pub sync_state: String,
}

/// Every connected standby of `primary`, with its lag.
pub async fn status(primary: &PgTarget) -> Result<Vec<StandbyStatus>> {
    let mut conn = primary.connect().await?;
    let rows = sqlx::query(
        "SELECT application_name, client_addr::text, state,
                COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint,
                COALESCE(extract(epoch FROM replay_lag), 0)::float8, sync_state
         FROM pg_stat_replication ORDER BY application_name",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(query_error("reading pg_stat_replication", primary))?;
    Ok(rows
        .iter()
        .map(|r| StandbyStatus {
            name: r.get(0),
            address: r.get(1),
            state: r.get(2),
            lag_bytes: r.get(3),
            lag_seconds: r.get(4),
            sync_state: r.get(5),
        })
        .collect())
}

/// Promotes the standby `standby`, waits up to `wait`, and proves it takes
/// writes. Returns how long promotion took.
pub async fn promote(standby: &PgTarget, wait: Duration) -> Result<Duration> {
    let started = Instant::now();
    let mut conn = standby.connect().await?;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await
        .map_err(query_error("checking recovery state", standby))?;
    if !in_recovery {
        return Err(Error::Config(format!(
            "{standby} is not a standby (pg_is_in_recovery() is false): nothing to promote"
        )));
    }
    let secs = i32::try_from(wait.as_secs().max(1)).unwrap_or(i32::MAX);
    let promoted: bool = sqlx::query_scalar("SELECT pg_promote(true, $1)")
        .bind(secs)
        .fetch_one(&mut conn)
        .await
        .map_err(query_error("pg_promote()", standby))?;
    if !promoted {
        return Err(Error::Cluster {
            action: "promote",
            data_dir: Default::default(),
            detail: format!("{standby} did not leave recovery within {secs}s; see its server log"),
        });
    }
    // A temp table needs a transaction id: only a read-write server gives one.
    conn.execute("CREATE TEMP TABLE cfdr_promote_check (x int); DROP TABLE cfdr_promote_check")
        .await
        .map_err(query_error("writing on the promoted server", standby))?;
    Ok(started.elapsed())
}

/// The timeline the server at `target` writes on now.
pub async fn current_timeline(target: &PgTarget) -> Result<u32> {
    let mut conn = target.connect().await?;
    // The WAL being written names the timeline at once; pg_control's
    // checkpoint timeline lags until the end-of-recovery checkpoint.
    let file: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .fetch_one(&mut conn)
        .await
        .map_err(query_error("reading the timeline", target))?;
    file.get(..8)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| Error::Config(format!("WAL file name {file:?} names no timeline")))
}
