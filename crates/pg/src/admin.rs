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

/// Quotes a string literal for SQL (`'text'`; `E'...'` when it holds a
/// backslash, so the text is the same whatever standard_conforming_strings).
pub fn quote_literal(text: &str) -> String {
    let body = text.replace('\'', "''");
    if body.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// PostgreSQL keeps the first 63 bytes of a name (NAMEDATALEN - 1) and
/// silently drops the rest.
pub const MAX_NAME_BYTES: usize = 63;

/// A database's encoding and locale: what `CREATE DATABASE` fixes for good.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseLocale {
    /// Server encoding (`UTF8`, `LATIN1`, ...).
    pub encoding: String,
    /// Collation provider: `libc` or `icu`.
    pub provider: String,
    /// LC_COLLATE.
    pub collate: String,
    /// LC_CTYPE.
    pub ctype: String,
    /// The ICU locale when the provider is `icu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icu_locale: Option<String>,
}

impl std::fmt::Display for DatabaseLocale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {} ", self.encoding, self.provider)?;
        match &self.icu_locale {
            Some(icu) => write!(f, "{icu}"),
            None if self.collate == self.ctype => write!(f, "{}", self.collate),
            None => write!(f, "collate {} ctype {}", self.collate, self.ctype),
        }
    }
}

/// Encoding and locale of the connected database (on `conn`, so in its
/// snapshot when it is in a transaction).
pub async fn database_locale(
    conn: &mut sqlx::PgConnection,
    target: &PgTarget,
) -> Result<DatabaseLocale> {
    // datlocprovider and daticulocale are PostgreSQL 15+; older servers
    // only have libc locales.
    let row = sqlx::query(
        "SELECT pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datctype::text, \
         current_setting('server_version_num')::int >= 150000 \
         FROM pg_database d WHERE d.datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| query_err("reading the database's encoding and locale", target, e))?;
    let mut locale = DatabaseLocale {
        encoding: row.get(0),
        provider: "libc".into(),
        collate: row.get(1),
        ctype: row.get(2),
        icu_locale: None,
    };
    if row.get::<bool, _>(3) {
        let row = sqlx::query(
            "SELECT d.datlocprovider::text, d.daticulocale::text \
             FROM pg_database d WHERE d.datname = current_database()",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| query_err("reading the database's locale provider", target, e))?;
        if row.get::<String, _>(0) == "i" {
            locale.provider = "icu".into();
            locale.icu_locale = row.get(1);
        }
    }
    Ok(locale)
}

/// Creates database `name`; [`Error::DatabaseExists`] if it is there.
pub async fn create_database(server: &PgTarget, name: &str) -> Result<()> {
    create_database_like(server, name, None).await
}

/// Creates database `name` with `locale` (from template0, as pg_dump's
/// `CREATE DATABASE` does), or the server's defaults when `None`.
/// [`Error::NameTooLong`] for a name the server would cut,
/// [`Error::DatabaseExists`] if it is there.
pub async fn create_database_like(
    server: &PgTarget,
    name: &str,
    locale: Option<&DatabaseLocale>,
) -> Result<()> {
    check_name(name)?;
    if database_exists(server, name).await? {
        return Err(Error::DatabaseExists {
            name: name.to_owned(),
        });
    }
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if let Some(l) = locale {
        sql.push_str(&format!(
            " WITH TEMPLATE = template0 ENCODING = {} LC_COLLATE = {} LC_CTYPE = {}",
            quote_literal(&l.encoding),
            quote_literal(&l.collate),
            quote_literal(&l.ctype)
        ));
        // Only PostgreSQL 15+ knows LOCALE_PROVIDER; libc is the default.
        if let Some(icu) = &l.icu_locale {
            sql.push_str(&format!(
                " LOCALE_PROVIDER = icu ICU_LOCALE = {}",
                quote_literal(icu)
            ));
        }
    }
    let mut conn = server.connect().await?;
    conn.execute(sql.as_str()).await.map_err(|e| match locale {
        Some(l) => Error::Locale {
            database: name.to_owned(),
            locale: l.to_string(),
            reason: e.to_string(),
        },
        None => query_err(&format!("CREATE DATABASE {name}"), server, e),
    })?;
    Ok(())
}

/// [`Error::NameTooLong`] for a name the server would cut short.
pub fn check_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::NameTooLong {
            name: name.to_owned(),
            bytes: name.len(),
        });
    }
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
