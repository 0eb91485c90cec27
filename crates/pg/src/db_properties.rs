//! The database's own properties, as a custom-format archive carries them:
//! its owner, comment, access privileges, `ALTER DATABASE ... SET`,
//! `ALTER ROLE ... IN DATABASE ... SET` and connection limit. pg_dump always
//! writes these entries into a custom-format archive; `pg_restore` applies
//! them only with `--create`, under the dumped name. A restore goes to a
//! new name, so cfdr reads the entries from the table of contents and runs
//! them against the new database.

use std::sync::Arc;

use cfdr_secrets::Identities;
use cfdr_storage::{Store, StoredObject, decode_to};
use sqlx::Executor;
use tokio_util::io::SyncIoBridge;

use crate::admin::quote_ident;
use crate::error::{Error, Result};
use crate::target::PgTarget;

/// The database-level entries of one archive, not yet bound to a name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DatabaseProperties {
    /// The dumped database's name.
    name: String,
    /// Its owner.
    owner: Option<String>,
    /// `COMMENT ON DATABASE`.
    comment: Vec<String>,
    /// `ALTER DATABASE ... SET / CONNECTION LIMIT`, `ALTER ROLE ... IN DATABASE ... SET`.
    settings: Vec<String>,
    /// `SECURITY LABEL ... ON DATABASE`.
    labels: Vec<String>,
    /// `GRANT` / `REVOKE ... ON DATABASE` (with the grantor's `SET SESSION AUTHORIZATION`).
    privileges: Vec<String>,
}

/// Reads the database-level entries from the table of contents at the
/// front of `object`, refusing entries that reach past the database
/// ([`crate::toc_guard`]); the download stops there.
pub(crate) async fn read(
    store: &Store,
    object: &StoredObject,
    identities: Option<Arc<Identities>>,
) -> Result<DatabaseProperties> {
    let (mut writer, reader) = tokio::io::duplex(1 << 16);
    let parser = tokio::task::spawn_blocking(move || {
        let mut src = std::io::BufReader::with_capacity(1 << 16, SyncIoBridge::new(reader));
        crate::archive_toc::read_head(&mut src).map(|head| head.archive)
        // Dropping the reader here ends the download below.
    });
    let feed = async {
        let r = decode_to(store, object, identities.clone(), &mut writer).await;
        drop(writer);
        r
    };
    let (fed, parsed) = tokio::join!(feed, parser);
    let parsed =
        parsed.map_err(|e| Error::Archive(format!("reading its table of contents: {e}")))?;
    match (parsed, fed) {
        (Ok(archive), _) => {
            // Every entry is checked here, before anything is created.
            for e in &archive.toc_entries {
                if let Some(what) = crate::toc_guard::refusal(e) {
                    return Err(Error::ForeignSql {
                        entry: format!("{} ({} {})", e.id, e.desc, e.tag),
                        what,
                    });
                }
            }
            Ok(from_toc(&archive))
        }
        // The stream failed (key, checksum, storage): that is the cause.
        (Err(_), Err(e)) if !matches!(e, cfdr_storage::Error::Sink { .. }) => Err(e.into()),
        (Err(e), _) => {
            // Bad bytes in the table of contents stop the parser before the
            // checksum is reached: read the object to its end, so damage is
            // reported as damage (naming the object).
            decode_to(store, object, identities, &mut tokio::io::sink()).await?;
            Err(Error::Archive(format!("its table of contents: {e}")))
        }
    }
}

fn statements(defn: &str) -> impl Iterator<Item = String> + '_ {
    split_statements(defn).into_iter().map(str::to_owned)
}

fn from_toc(archive: &pgarchive::Archive) -> DatabaseProperties {
    let mut p = DatabaseProperties {
        name: archive.database_name.clone(),
        ..Default::default()
    };
    for e in &archive.toc_entries {
        let of_database = e.tag.starts_with("DATABASE ");
        match e.desc.as_str() {
            "DATABASE" => {
                p.name.clone_from(&e.tag);
                p.owner = Some(e.owner.clone()).filter(|o| !o.is_empty());
            }
            "DATABASE PROPERTIES" => p.settings.extend(statements(&e.defn)),
            "COMMENT" if of_database => p.comment.extend(statements(&e.defn)),
            "SECURITY LABEL" if of_database => p.labels.extend(statements(&e.defn)),
            "ACL" if of_database => p.privileges.extend(statements(&e.defn)),
            _ => {}
        }
    }
    p
}

impl DatabaseProperties {
    /// What will be applied, for the step's name (`owner app, comment, 2
    /// settings, 3 privilege statements`), or `none`.
    pub(crate) fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(o) = &self.owner {
            parts.push(format!("owner {o}"));
        }
        if !self.comment.is_empty() {
            parts.push("comment".into());
        }
        let count = |n: usize, what: &str| (n > 0).then(|| format!("{n} {what}"));
        parts.extend(count(self.settings.len(), "settings"));
        parts.extend(count(self.labels.len(), "security labels"));
        parts.extend(count(
            self.privileges
                .iter()
                .filter(|s| s.starts_with("GRANT ") || s.starts_with("REVOKE "))
                .count(),
            "privilege statements",
        ));
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// The statements for database `new`, in pg_restore's order: owner,
    /// comment, settings, labels, privileges. A statement that does not
    /// name the dumped database where cfdr expects it is refused rather
    /// than run as written (it would change the live database).
    pub(crate) fn statements_for(&self, new: &str) -> Result<Vec<String>> {
        let old = [quote_ident(&self.name), self.name.clone()];
        let new = quote_ident(new);
        let mut out = Vec::new();
        if let Some(owner) = &self.owner {
            out.push(format!(
                "ALTER DATABASE {new} OWNER TO {}",
                quote_ident(owner)
            ));
        }
        for s in self
            .comment
            .iter()
            .chain(&self.settings)
            .chain(&self.labels)
            .chain(&self.privileges)
        {
            if s.ends_with("SESSION AUTHORIZATION") || s.starts_with("SET SESSION AUTHORIZATION ") {
                out.push(s.clone());
                continue;
            }
            let known = [
                "ALTER DATABASE ",
                "ALTER ROLE ",
                "COMMENT ON DATABASE ",
                "GRANT ",
                "REVOKE ",
                "SECURITY LABEL ",
            ];
            let retargeted = known
                .iter()
                .any(|k| s.starts_with(k))
                .then(|| retarget(s, &old, &new))
                .flatten();
            match retargeted {
                Some(r) => out.push(r),
                None => {
                    return Err(Error::Archive(format!(
                        "the database property statement `{}` does not name database {} where cfdr expects it, so it cannot be applied to the restored database; restore with `pg_restore --create` by hand, or apply the database's settings yourself",
                        label(s),
                        self.name
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Runs [`Self::statements_for`] `database` over a connection to the
    /// maintenance database `server`.
    pub(crate) async fn apply(&self, server: &PgTarget, database: &str) -> Result<()> {
        let statements = self.statements_for(database)?;
        if statements.is_empty() {
            return Ok(());
        }
        let mut conn = server.connect().await?;
        for s in &statements {
            conn.execute(s.as_str()).await.map_err(|e| Error::Query {
                // The value of a setting may be a secret: name only the setting.
                what: format!("applying the backup's `{}`", label(s)),
                database: database.to_owned(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// Statements of `sql`, split at semicolons outside quoted literals and
/// identifiers, trimmed, without the semicolon.
fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in sql.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                out.push(sql[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(sql[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// `stmt` with its first `DATABASE <old>` outside quotes (`old` as pg_dump
/// wrote it, quoted or bare) naming `new` instead; None when there is none.
fn retarget(stmt: &str, old: &[String], new: &str) -> Option<String> {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in stmt.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, 'D') if prev.is_whitespace() && stmt[i..].starts_with("DATABASE ") => {
                let at = i + "DATABASE ".len();
                for o in old {
                    if let Some(after) = stmt[at..].strip_prefix(o.as_str())
                        && after
                            .chars()
                            .next()
                            .is_none_or(|n| n.is_whitespace() || n == ';')
                    {
                        return Some(format!("{}{new}{after}", &stmt[..at]));
                    }
                }
            }
            _ => {}
        }
        prev = c;
    }
    None
}

/// The head of a statement, without the value it sets or the comment text.
fn label(stmt: &str) -> &str {
    [" TO ", " IS ", " = "]
        .iter()
        .filter_map(|sep| stmt.find(sep))
        .min()
        .map_or(stmt, |i| &stmt[..i])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn props(name: &str) -> DatabaseProperties {
        DatabaseProperties {
            name: name.into(),
            owner: Some("app owner".into()),
            comment: split_statements("COMMENT ON DATABASE live IS 'ALTER DATABASE live; it''s\nlive';\n")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            settings: split_statements(
                "ALTER DATABASE live CONNECTION LIMIT = 50;\nALTER DATABASE live SET search_path TO 'app', 'public';\nALTER ROLE \"x DATABASE live\" IN DATABASE live SET statement_timeout TO '5s';\n",
            )
            .into_iter()
            .map(str::to_owned)
            .collect(),
            labels: vec![],
            privileges: split_statements(
                "REVOKE CONNECT,TEMPORARY ON DATABASE live FROM PUBLIC;\nSET SESSION AUTHORIZATION admin;\nGRANT CONNECT ON DATABASE live TO reader;\nRESET SESSION AUTHORIZATION;\n",
            )
            .into_iter()
            .map(str::to_owned)
            .collect(),
        }
    }

    #[test]
    fn statements_name_the_new_database_only_where_pg_dump_named_the_old() {
        let p = props("live");
        let got = p.statements_for("live_restore_1").unwrap();
        assert_eq!(
            got,
            [
                "ALTER DATABASE \"live_restore_1\" OWNER TO \"app owner\"",
                "COMMENT ON DATABASE \"live_restore_1\" IS 'ALTER DATABASE live; it''s\nlive'",
                "ALTER DATABASE \"live_restore_1\" CONNECTION LIMIT = 50",
                "ALTER DATABASE \"live_restore_1\" SET search_path TO 'app', 'public'",
                "ALTER ROLE \"x DATABASE live\" IN DATABASE \"live_restore_1\" SET statement_timeout TO '5s'",
                "REVOKE CONNECT,TEMPORARY ON DATABASE \"live_restore_1\" FROM PUBLIC",
                "SET SESSION AUTHORIZATION admin",
                "GRANT CONNECT ON DATABASE \"live_restore_1\" TO reader",
                "RESET SESSION AUTHORIZATION",
            ]
        );
        assert_eq!(
            p.summary(),
            "owner app owner, comment, 3 settings, 2 privilege statements"
        );
    }

    #[test]
    fn a_quoted_name_a_prefix_and_an_unknown_statement() {
        let mut p = DatabaseProperties {
            name: "Live".into(),
            settings: vec!["ALTER DATABASE \"Live\" SET work_mem TO '7MB'".into()],
            ..Default::default()
        };
        assert_eq!(
            p.statements_for("n").unwrap(),
            ["ALTER DATABASE \"n\" SET work_mem TO '7MB'"]
        );
        // `live` is a prefix of `live2`: not the same database.
        p.name = "live".into();
        p.settings = vec!["ALTER DATABASE live2 SET work_mem TO '7MB'".into()];
        let e = p.statements_for("n").unwrap_err().to_string();
        assert!(e.contains("`ALTER DATABASE live2 SET work_mem`"), "{e}");
        assert!(!e.contains("7MB"), "values stay out of messages: {e}");
        p.settings = vec!["UPDATE pg_database SET datname = 'x'".into()];
        assert!(p.statements_for("n").is_err());
        assert_eq!(DatabaseProperties::default().summary(), "none");
    }
}
