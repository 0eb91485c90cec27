//! Where the server is: from `DATABASE_URL` or the `PG*` variables, as
//! libpq does. Passwords go to tools through `PGPASSWORD` in their
//! environment, never through argv.

use std::fmt;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use url::Url;

use crate::error::{Error, Result};

/// Connection settings for one server.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// Host name, IP or socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, if any.
    pub password: Option<String>,
    /// Database.
    pub database: String,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .finish()
    }
}

impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl PgTarget {
    /// From `DATABASE_URL` if set, else `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE` with libpq's defaults.
    pub fn from_env() -> Result<Self> {
        match env("DATABASE_URL") {
            Some(url) => Self::from_url(&url),
            None => {
                let user = env("PGUSER")
                    .or_else(|| env("USER"))
                    .unwrap_or_else(|| "postgres".into());
                Ok(Self {
                    host: env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into()),
                    port: match env("PGPORT") {
                        Some(p) => p
                            .parse()
                            .map_err(|_| Error::Config(format!("PGPORT={p:?} is not a port")))?,
                        None => 5432,
                    },
                    database: env("PGDATABASE").unwrap_or_else(|| user.clone()),
                    user,
                    password: env("PGPASSWORD"),
                })
            }
        }
    }

    /// From a `postgres://user:pass@host:port/db` URL. As with libpq, `host`
    /// and `port` query parameters override the authority (a socket folder:
    /// `postgres:///db?host=/var/run/postgresql`), and user and password are
    /// percent-decoded.
    pub fn from_url(raw: &str) -> Result<Self> {
        let url = Url::parse(raw)
            .map_err(|e| Error::Config(format!("DATABASE_URL is not a URL: {e}")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::Config(format!(
                "DATABASE_URL scheme {:?} is not postgres",
                url.scheme()
            )));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = if url.username().is_empty() {
            "postgres".to_owned()
        } else {
            decode(url.username())
        };
        let database = decode(url.path().trim_start_matches('/'));
        let mut host = url.host_str().unwrap_or("localhost").to_owned();
        let mut port = url.port().unwrap_or(5432);
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "host" => host = value.into_owned(),
                "port" => {
                    port = value.parse().map_err(|_| {
                        Error::Config(format!("DATABASE_URL port {value:?} is not a number"))
                    })?
                }
                _ => {}
            }
        }
        Ok(Self {
            host,
            port,
            password: url.password().map(decode),
            database: if database.is_empty() {
                user.clone()
            } else {
                database
            },
            user,
        })
    }

    /// The same server, another database.
    pub fn with_database(&self, database: &str) -> Self {
        Self {
            database: database.to_owned(),
            ..self.clone()
        }
    }

    /// Environment for libpq tools (`pg_dump`, `pg_restore`, `psql`).
    pub fn tool_env(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.database.clone()),
        ];
        if let Some(p) = &self.password {
            v.push(("PGPASSWORD", p.clone()));
        }
        v
    }

    fn options(&self) -> PgConnectOptions {
        let mut o = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .database(&self.database)
            .application_name("cfdr")
            // Statements never reach the logs: a role's password can be in
            // one, and slow index builds are expected in a restore.
            .log_statements(log::LevelFilter::Off)
            .log_slow_statements(log::LevelFilter::Off, std::time::Duration::ZERO);
        if let Some(p) = &self.password {
            o = o.password(p);
        }
        o
    }

    /// Opens one connection.
    pub async fn connect(&self) -> Result<PgConnection> {
        PgConnection::connect_with(&self.options())
            .await
            .map_err(|e| Error::Connect {
                target: self.to_string(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn url_parsing_and_redaction() {
        let t = PgTarget::from_url("postgres://app:s3cret@db.internal:6543/cryptofunk").unwrap();
        assert_eq!(t.to_string(), "app@db.internal:6543/cryptofunk");
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(t.tool_env().contains(&("PGPASSWORD", "s3cret".into())));
        assert!(PgTarget::from_url("mysql://x/y").is_err());
        // libpq-style socket folder and port in the query; encoded password.
        let t = PgTarget::from_url("postgresql:///trading?host=/run/pg&port=5433").unwrap();
        assert_eq!(t.to_string(), "postgres@/run/pg:5433/trading");
        let t = PgTarget::from_url("postgres://app:p%40ss%2Fw@db/x").unwrap();
        assert!(t.tool_env().contains(&("PGPASSWORD", "p@ss/w".into())));
        assert!(PgTarget::from_url("postgres://db/x?port=high").is_err());
    }
}
