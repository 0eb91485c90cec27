//! Small catalog and DDL helpers over one connection.

use std::collections::BTreeMap;

use sqlx::{Connection, Executor, Row};

use crate::error::{Error, Result};
use crate::target::PgTarget;

/// Maps a driver error of `what` on `target` to [`Error::Query`].
pub(crate) fn query_error(
    what: &'static str,
    target: &PgTarget,
) -> impl FnOnce(sqlx::Error) -> Error + use<> {
    let database = target.database.clone();
    move |e| Error::Query {
        what: what.into(),
        database,
        reason: e.to_string(),
    }
}

/// Quotes an identifier for SQL (`"name"` with inner quotes doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn query_err(what: &str, target: &PgTarget, e: sqlx::Error) -> Error {
    Error::Query {
        what: what.to_owned(),
        database: target.database.clone(),
        reason: e.to_string(),
    }
}

/// Server version: (`server_version_num`, `server_version`).
pub async fn server_version(target: &PgTarget) -> Result<(u32, String)> {
    let mut conn = target.connect().await?;
    let row = sqlx::query(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| query_err("reading the server version", target, e))?;
    let num: i32 = row.get(0);
    Ok((u32::try_from(num).unwrap_or(0), row.get(1)))
}

/// Whether database `name` exists.
pub async fn database_exists(server: &PgTarget, name: &str) -> Result<bool> {
    let mut conn = server.connect().await?;
    let row = sqlx::query("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| query_err("looking up a database", server, e))?;
    Ok(row.get::<i64, _>(0) > 0)
}

/// Creates database `name`; [`Error::DatabaseExists`] if it is there.
pub async fn create_database(server: &PgTarget, name: &str) -> Result<()> {
    if database_exists(server, name).await? {
        return Err(Error::DatabaseExists {
            name: name.to_owned(),
        });
    }
    let mut conn = server.connect().await?;
    conn.execute(format!("CREATE DATABASE {}", quote_ident(name)).as_str())
        .await
        .map_err(|e| query_err(&format!("CREATE DATABASE {name}"), server, e))?;
    Ok(())
}

/// Drops database `name` (only ever one cfdr created).
pub async fn drop_database(server: &PgTarget, name: &str) -> Result<()> {
    let mut conn = server.connect().await?;
    conn.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)).as_str())
        .await
        .map_err(|e| query_err(&format!("DROP DATABASE {name}"), server, e))?;
    Ok(())
}

/// Renames a database.
pub async fn rename_database(server: &PgTarget, from: &str, to: &str) -> Result<()> {
    let mut conn = server.connect().await?;
    conn.execute(
        format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(from),
            quote_ident(to)
        )
        .as_str(),
    )
    .await
    .map_err(|e| query_err(&format!("renaming database {from} to {to}"), server, e))?;
    Ok(())
}

/// Sessions connected to `name` other than this one.
pub async fn sessions_on(server: &PgTarget, name: &str) -> Result<i64> {
    let mut conn = server.connect().await?;
    let row = sqlx::query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .fetch_one(&mut conn)
    .await
    .map_err(|e| query_err("counting sessions", server, e))?;
    Ok(row.get(0))
}

/// User tables (`schema.table`) of the connected database, sorted.
pub async fn user_tables<'c, E>(conn: E, target: &PgTarget) -> Result<Vec<String>>
where
    E: Executor<'c, Database = sqlx::Postgres>,
{
    let rows = sqlx::query(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .map_err(|e| query_err("listing tables", target, e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Exact row counts of those of `tables` that exist, read on `conn` (so in
/// its snapshot when it is in a transaction).
pub async fn row_counts(
    conn: &mut sqlx::PgConnection,
    target: &PgTarget,
    tables: &[String],
) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for table in tables {
        let row = sqlx::query("SELECT to_regclass($1)::text")
            .bind(table)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| query_err("resolving a watched table", target, e))?;
        let Some(regclass): Option<String> = row.get(0) else {
            continue;
        };
        // regclass output is already a correctly quoted, qualified name.
        let count: i64 = sqlx::query(&format!("SELECT count(*) FROM {regclass}"))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| query_err(&format!("counting rows of {table}"), target, e))?
            .get(0);
        out.insert(table.clone(), count);
    }
    Ok(out)
}

/// Extensions installed in the connected database (without plpgsql).
pub async fn installed_extensions(
    conn: &mut sqlx::PgConnection,
    target: &PgTarget,
) -> Result<Vec<String>> {
    let rows =
        sqlx::query("SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| query_err("listing extensions", target, e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Creates those `extensions` the server offers, if not yet present.
pub async fn ensure_extensions(target: &PgTarget, extensions: &[String]) -> Result<Vec<String>> {
    let mut conn = target.connect().await?;
    let mut created = Vec::new();
    for ext in extensions {
        let available: i64 =
            sqlx::query("SELECT count(*) FROM pg_available_extensions WHERE name = $1")
                .bind(ext)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| query_err("listing available extensions", target, e))?
                .get(0);
        if available == 0 {
            tracing::info!(extension = %ext, "extension not available on this server; skipped");
            continue;
        }
        conn.execute(format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(ext)).as_str())
            .await
            .map_err(|e| query_err(&format!("CREATE EXTENSION {ext}"), target, e))?;
        created.push(ext.clone());
    }
    conn.close().await.ok();
    Ok(created)
}
