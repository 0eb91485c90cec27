//! A CryptoFunk-like schema, sample data and a write workload for tests
//! against real PostgreSQL clusters, plus content fingerprints to compare a
//! restored database with its source.

use std::time::Duration;

use cfdr_pg::{LocalCluster, PgBin, PgTarget};
use sqlx::{Executor, Row};

/// Schema covering what a logical round trip must preserve: numeric,
/// timestamptz, jsonb, bytea, an index, a view, a sequence, a function, a
/// second schema, a large object and a role grant.
pub const SCHEMA: &str = r#"
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cfdr_reader') THEN CREATE ROLE cfdr_reader NOLOGIN; END IF;
END $$;
CREATE SCHEMA analytics;
CREATE TABLE trading_sessions (
  id bigserial PRIMARY KEY,
  started_at timestamptz NOT NULL DEFAULT now(),
  strategy text NOT NULL,
  config jsonb NOT NULL DEFAULT '{}',
  active boolean NOT NULL DEFAULT true
);
CREATE TABLE trades (
  id bigserial PRIMARY KEY,
  session_id bigint NOT NULL REFERENCES trading_sessions(id),
  symbol text NOT NULL,
  side text NOT NULL CHECK (side IN ('buy', 'sell')),
  qty numeric(28,10) NOT NULL,
  price numeric(28,10) NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  raw bytea
);
CREATE INDEX trades_symbol_created ON trades (symbol, created_at);
CREATE TABLE positions (
  symbol text PRIMARY KEY,
  qty numeric(28,10) NOT NULL,
  avg_price numeric(28,10),
  updated_at timestamptz
);
CREATE SEQUENCE order_ref_seq START 1000;
CREATE VIEW open_positions AS SELECT * FROM positions WHERE qty <> 0;
CREATE FUNCTION notional(q numeric, p numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT q * p';
CREATE TABLE analytics.daily_pnl (day date PRIMARY KEY, pnl numeric(28,10), details jsonb);
GRANT SELECT ON trades, positions TO cfdr_reader;
GRANT USAGE ON SCHEMA analytics TO cfdr_reader;
SELECT lo_from_bytea(424242, convert_to('strategy model v1', 'UTF8'));
"#;

/// Fills the schema: `sessions` sessions and `trades` trades, deterministic.
pub fn sample_data(sessions: u32, trades: u32) -> String {
    format!(
        r#"
INSERT INTO trading_sessions (started_at, strategy, config, active)
  SELECT timestamptz '2026-01-01 00:00+00' + i * interval '1 hour', 'momentum-' || (i % 5),
         jsonb_build_object('risk', i % 3, 'pairs', jsonb_build_array('BTC-USD', 'ETH-USD')), i % 7 <> 0
  FROM generate_series(1, {sessions}) AS i;
INSERT INTO trades (session_id, symbol, side, qty, price, created_at, raw)
  SELECT 1 + (i % {sessions}), (ARRAY['BTC-USD','ETH-USD','SOL-USD'])[1 + i % 3],
         CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END,
         (i % 97) / 7.0, 20000 + (i * 7919 % 50000) / 3.0,
         timestamptz '2026-01-01 00:00+00' + i * interval '1 second', decode(md5(i::text), 'hex')
  FROM generate_series(1, {trades}) AS i;
INSERT INTO positions SELECT s, sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END), avg(price), max(created_at)
  FROM trades t(id, sid, s, side, qty, price, created_at) GROUP BY s;
INSERT INTO analytics.daily_pnl SELECT d::date, (extract(doy FROM d) * 13.7)::numeric, '{{"src":"test"}}'
  FROM generate_series(timestamptz '2026-01-01', timestamptz '2026-01-31', interval '1 day') AS d;
SELECT setval('order_ref_seq', 4242);
"#
    )
}

/// PostgreSQL 15's programs (`CFDR_TEST_PG_BIN`, default Debian's
/// /usr/lib/postgresql/15/bin), or `None` after [`crate::missing`]: a
/// failure with the install command under `scripts/test`.
pub async fn pg_bin(test: &str) -> Option<PgBin> {
    let dir =
        std::env::var("CFDR_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    match PgBin::locate(Some(std::path::Path::new(&dir)), None).await {
        Ok(b) => Some(b),
        Err(e) => crate::missing(
            &format!("PostgreSQL 15 ({e}; apt-get install postgresql-15)"),
            test,
        ),
    }
}

/// Gives `path` (recursively) to the PostgreSQL OS user when running as
/// root, so a server or `archive_command` running as `postgres` can use it.
#[allow(clippy::unwrap_used)]
pub fn give_to_postgres(path: &std::path::Path) {
    if cfdr_pg::server_user().unwrap().is_some() {
        let ok = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown {}", path.display());
    }
}

/// A started temp cluster with database `db` holding the schema and data.
pub async fn cryptofunk_cluster(
    db: &str,
    sessions: u32,
    trades: u32,
) -> Result<LocalCluster, cfdr_pg::Error> {
    let bin_dir =
        std::env::var("CFDR_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let bin = PgBin::locate(Some(std::path::Path::new(&bin_dir)), None).await?;
    let mut cluster = LocalCluster::init_temp(&bin).await?;
    cluster.start(&[]).await?;
    cluster.create_database(db).await?;
    let target = cluster.target(db);
    let mut conn = target.connect().await?;
    for sql in [SCHEMA.to_owned(), sample_data(sessions, trades)] {
        conn.execute(sql.as_str())
            .await
            .map_err(|e| cfdr_pg::Error::Query {
                what: "loading the test schema".into(),
                database: db.into(),
                reason: e.to_string(),
            })?;
    }
    Ok(cluster)
}

/// Per-table fingerprint of ordered content, plus large objects and the
/// sequence position: equal fingerprints mean equal data.
pub async fn content_fingerprint(
    target: &PgTarget,
) -> Result<Vec<(String, String)>, cfdr_pg::Error> {
    let mut conn = target.connect().await?;
    let tables = cfdr_pg::admin::user_tables(&mut conn, target).await?;
    let mut out = Vec::new();
    let err = |e: sqlx::Error| cfdr_pg::Error::Query {
        what: "fingerprinting".into(),
        database: target.database.clone(),
        reason: e.to_string(),
    };
    for table in tables {
        let (schema, name) = table.split_once('.').unwrap_or(("public", &table));
        let sql = format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {}.{} t",
            cfdr_pg::admin::quote_ident(schema),
            cfdr_pg::admin::quote_ident(name)
        );
        let row = sqlx::query(&sql).fetch_one(&mut conn).await.map_err(err)?;
        out.push((table.clone(), row.get(0)));
    }
    for (label, sql) in [
        (
            "large objects",
            "SELECT coalesce(string_agg(oid::text || '=' || md5(lo_get(oid)), ',' ORDER BY oid), '') FROM pg_largeobject_metadata",
        ),
        (
            "order_ref_seq",
            "SELECT last_value::text FROM order_ref_seq",
        ),
        (
            "grants",
            "SELECT coalesce(string_agg(table_name || ':' || privilege_type, ',' ORDER BY table_name, privilege_type), '') FROM information_schema.role_table_grants WHERE grantee = 'cfdr_reader'",
        ),
    ] {
        let row = sqlx::query(sql).fetch_one(&mut conn).await.map_err(err)?;
        out.push((label.to_owned(), row.get(0)));
    }
    Ok(out)
}

/// Inserts trades in a loop until `stop` flips, pausing `pause` between rows.
pub async fn write_workload(
    target: PgTarget,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pause: Duration,
) -> Result<u64, cfdr_pg::Error> {
    let mut conn = target.connect().await?;
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        sqlx::query("INSERT INTO trades (session_id, symbol, side, qty, price) VALUES (1, 'BTC-USD', 'buy', 1, 50000)")
            .execute(&mut conn)
            .await
            .map_err(|e| cfdr_pg::Error::Query { what: "workload insert".into(), database: target.database.clone(), reason: e.to_string() })?;
        n += 1;
        tokio::time::sleep(pause).await;
    }
    Ok(n)
}

/// A loaded cluster (database `cryptofunk`), a local repository and one
/// logical backup of `class` in it: the starting point of the CLI tests.
pub struct BackedUp {
    /// The running cluster.
    pub cluster: LocalCluster,
    /// The repository URL (`file://...`).
    pub url: String,
    /// The backup's manifest.
    pub manifest: cfdr_storage::Manifest,
    _dir: tempfile::TempDir,
}

/// Builds a [`BackedUp`], or `None` (failing under `scripts/test`) when
/// PostgreSQL is not available.
pub async fn backed_up(class: &str, test: &str) -> Option<BackedUp> {
    let cluster = match cryptofunk_cluster("cryptofunk", 10, 500).await {
        Ok(c) => c,
        Err(e) => return crate::missing(&format!("PostgreSQL 15 ({e})"), test),
    };
    let dir = tempfile::tempdir().ok()?;
    let url = format!("file://{}/repo", dir.path().display());
    let store = cfdr_storage::StorageOptions::from_url(url.clone())
        .build()
        .ok()?;
    let repo = cfdr_storage::Repository::init(store).await.ok()?;
    let opts = cfdr_pg::logical::LogicalOptions::default();
    let manifest = cfdr_pg::logical::backup(
        &repo,
        &cluster.target("cryptofunk"),
        class,
        &opts,
        &Default::default(),
    )
    .await
    .ok()?;
    Some(BackedUp {
        cluster,
        url,
        manifest,
        _dir: dir,
    })
}
