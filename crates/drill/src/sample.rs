//! The CryptoFunk sample schema, its data, a trading workload and the
//! checks a drill runs on a recovered copy: content fingerprints, the
//! reference state at a recovery point, and the trading invariants.
//!
//! The workload is a pure function of the trade number: trade `n` has the
//! same row (id, session, symbol, side, quantity, price, time) whenever it
//! is written, and each trade moves its symbol's position in the same
//! transaction. So the state of the source after its last trade `n` can be
//! rebuilt anywhere ([`load_reference`]) and compared table by table with a
//! recovered copy, even when the source itself was destroyed.

use std::time::Duration;

use cfdr_pg::PgTarget;
use sqlx::{Executor, Row};

macro_rules! globals {
    () => {
        r#"
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cfdr_reader') THEN CREATE ROLE cfdr_reader NOLOGIN; END IF;
END $$;"#
    };
}

/// The cluster-wide objects the schema's grants need (the role
/// `cfdr_reader`): a database dump holds none, so a restore into a new
/// cluster creates them first, as the runbook restores globals first.
pub const GLOBALS: &str = globals!();

/// Schema covering what a logical round trip must preserve: numeric,
/// timestamptz, jsonb, bytea, an index, a view, a sequence, a function, a
/// second schema, a large object and a role grant.
pub const SCHEMA: &str = concat!(
    globals!(),
    r#"
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
"#
);

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

/// SQL that writes trades `from..=to` of the workload and moves their
/// symbols' positions: one implicit transaction when sent as one simple
/// query. Trade `n` is row `n` of [`sample_data`]'s generator, so the
/// sample's initial trades and the workload's trades form one sequence.
pub fn workload_sql(sessions: u32, from: u64, to: u64) -> String {
    format!(
        r#"
INSERT INTO trades (id, session_id, symbol, side, qty, price, created_at, raw)
  SELECT i, 1 + (i % {sessions}), (ARRAY['BTC-USD','ETH-USD','SOL-USD'])[1 + i % 3],
         CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END,
         (i % 97) / 7.0, 20000 + (i * 7919 % 50000) / 3.0,
         timestamptz '2026-01-01 00:00+00' + i * interval '1 second', decode(md5(i::text), 'hex')
  FROM generate_series({from}::bigint, {to}::bigint) AS i;
UPDATE positions p SET qty = p.qty + d.q, updated_at = d.t
  FROM (SELECT symbol, sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS q, max(created_at) AS t
        FROM trades WHERE id BETWEEN {from} AND {to} GROUP BY symbol) d
  WHERE p.symbol = d.symbol;
"#
    )
}

fn query_err(what: &str, target: &PgTarget) -> impl FnOnce(sqlx::Error) -> cfdr_pg::Error {
    let (what, database) = (what.to_owned(), target.database.clone());
    move |e| cfdr_pg::Error::Query {
        what,
        database,
        reason: e.to_string(),
    }
}

/// Creates the schema and the sample data (`sessions` sessions, trades
/// `1..=trades`) in the existing, empty database of `target`.
pub async fn load(target: &PgTarget, sessions: u32, trades: u32) -> cfdr_pg::Result<()> {
    let mut conn = target.connect().await?;
    for sql in [SCHEMA.to_owned(), sample_data(sessions, trades)] {
        conn.execute(sql.as_str())
            .await
            .map_err(query_err("loading the sample schema", target))?;
    }
    Ok(())
}

/// Builds, in the new database `target.database`, the state the source
/// had right after trade `last`: the sample with `trades` initial trades,
/// then the workload's trades up to `last`.
pub async fn load_reference(
    target: &PgTarget,
    sessions: u32,
    trades: u32,
    last: u64,
) -> cfdr_pg::Result<()> {
    cfdr_pg::admin::create_database(&target.with_database("postgres"), &target.database).await?;
    load(target, sessions, trades).await?;
    if last > u64::from(trades) {
        let mut conn = target.connect().await?;
        conn.execute(workload_sql(sessions, u64::from(trades) + 1, last).as_str())
            .await
            .map_err(query_err("replaying the workload", target))?;
    }
    Ok(())
}

/// The trading invariants of the sample schema, as `(name, SQL counting
/// violations)`.
pub const INVARIANTS: &[(&str, &str)] = &[
    (
        "every trade belongs to a known trading session",
        "SELECT count(*) FROM trades t WHERE NOT EXISTS (SELECT 1 FROM trading_sessions s WHERE s.id = t.session_id)",
    ),
    (
        "each position equals the sum of its symbol's trades",
        "SELECT count(*) FROM positions p FULL JOIN (SELECT symbol, sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS q FROM trades GROUP BY symbol) d USING (symbol) WHERE p.qty IS DISTINCT FROM d.q",
    ),
    (
        "trade ids have no gap (no transaction half kept)",
        "SELECT coalesce(max(id) - min(id) + 1 - count(*), 0) FROM trades",
    ),
    (
        "no negative quantity or non-positive price",
        "SELECT count(*) FROM trades WHERE qty < 0 OR price <= 0",
    ),
];

/// Violations of each of [`INVARIANTS`] in `target`'s database.
pub async fn check_invariants(target: &PgTarget) -> cfdr_pg::Result<Vec<(String, i64)>> {
    let mut conn = target.connect().await?;
    let mut out = Vec::new();
    for (name, sql) in INVARIANTS {
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .map_err(query_err("checking a trading invariant", target))?;
        out.push(((*name).to_owned(), n));
    }
    Ok(out)
}

/// The highest trade id in `target`'s database (0 when empty).
pub async fn last_trade(target: &PgTarget) -> cfdr_pg::Result<u64> {
    let mut conn = target.connect().await?;
    let n: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM trades")
        .fetch_one(&mut conn)
        .await
        .map_err(query_err("reading the last trade", target))?;
    Ok(u64::try_from(n).unwrap_or(0))
}
