//! Is a running server set up to archive into this repository?

use sqlx::Row;

use cfdr_pg::PgTarget;

use super::WalArchive;
use crate::error::Result;

/// Checks the server's WAL settings, its archiver and its identity against
/// the archive. Returns the problems found, each with the fix; empty when
/// archiving can work.
pub async fn preflight(target: &PgTarget, archive: &WalArchive) -> Result<Vec<String>> {
    let mut conn = target.connect().await?;
    let row = sqlx::query(
        "SELECT current_setting('wal_level'), current_setting('archive_mode'), \
         current_setting('archive_command'), system_identifier::text, \
         current_setting('server_version_num')::int / 10000, \
         a.failed_count, a.last_failed_wal, \
         coalesce(a.last_failed_time > coalesce(a.last_archived_time, '-infinity'), false) \
         FROM pg_control_system(), pg_stat_archiver a",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| cfdr_pg::Error::Query {
        what: "reading the WAL settings".into(),
        database: target.database.clone(),
        reason: e.to_string(),
    })?;
    let wal_level: String = row.get(0);
    let archive_mode: String = row.get(1);
    let command: String = row.get(2);
    let sysid: String = row.get(3);
    let major: i32 = row.get(4);
    let failed: i64 = row.get(5);
    let last_failed: Option<String> = row.get(6);
    let failing: bool = row.get(7);
    let mut problems = Vec::new();
    if wal_level == "minimal" {
        problems.push(
            "wal_level = minimal: archived WAL cannot restore a base backup; set wal_level = replica in postgresql.conf and restart".to_owned(),
        );
    }
    if archive_mode == "off" {
        problems.push(
            "archive_mode = off: nothing is archived; set archive_mode = on and archive_command = 'cfdr-wal push %p' in postgresql.conf and restart".to_owned(),
        );
    }
    if archive_mode != "off" && !(command.contains("cfdr-wal") && command.contains("push")) {
        problems.push(format!(
            "archive_command is {command:?}, not cfdr-wal push: set archive_command = 'cfdr-wal --config FILE push %p' and reload"
        ));
    }
    if failing {
        problems.push(format!(
            "the archiver is failing ({failed} failures, last on {}): see the server log for cfdr-wal's message",
            last_failed.unwrap_or_default()
        ));
    }
    if let Some(id) = archive.identity().await?
        && (id.system_identifier.to_string() != sysid || i64::from(id.pg_major) != i64::from(major))
    {
        problems.push(format!(
            "the WAL archive at {} belongs to {}, this server is system identifier {sysid} (PostgreSQL {major}): use this cluster's own repository",
            archive.store().location().display(),
            id.describe()
        ));
    }
    Ok(problems)
}
