//! The orchestrator's pre-trade gate: an order loop that asks the
//! recovery-objectives guard before every order and refuses new risk while
//! the gate is not `Active` (runbook 2.1, 4.1, 4.5).
//!
//! Needs a PostgreSQL primary (`DATABASE_URL` or `PG*`) that archives into
//! the configured repository (`cfdr.toml` / `CFDR_*`), e.g.:
//!
//! ```text
//! DATABASE_URL=postgres://trader@db/cryptofunk \
//!   cargo run -p cfdr-examples --example orchestrator_pretrade -- 200
//! ```
#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::{Context, Result};
use cfdr_guard::{Guard, TradingState};
use cfdr_storage::Repository;

/// An order the strategy wants to place.
struct Order {
    symbol: &'static str,
    qty: i64,
    /// Whether it reduces an open position (allowed while `Reducing`).
    reduces_position: bool,
}

fn next_order(n: u64) -> Order {
    Order {
        symbol: if n.is_multiple_of(2) {
            "BTC-USD"
        } else {
            "ETH-USD"
        },
        qty: 1,
        reduces_position: n.is_multiple_of(3),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let orders: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("usage: orchestrator_pretrade [ORDERS]")?
        .unwrap_or(100);
    let config = cfdr_config::Config::load(None)?;
    // Bad [guard]/[objectives] settings or an unreachable repository stop
    // here, before any order: never a gate that silently allows.
    let settings = config.guard_settings()?;
    let repo = Repository::open(config.repository.build()?).await?;
    let pg = cfdr_pg::PgTarget::from_env()?;
    let mut db = pg.connect().await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, symbol text NOT NULL,
                                            qty bigint NOT NULL, reduces boolean NOT NULL,
                                            placed timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut db)
    .await?;
    let guard = Guard::start(settings, repo, pg).await?;

    let (mut placed, mut refused) = (0u64, 0u64);
    for n in 0..orders {
        let order = next_order(n);
        // One atomic load: no I/O, no lock, no allocation on the order path.
        let allowed = match guard.state() {
            TradingState::Active => true,
            TradingState::Reducing => order.reduces_position,
            TradingState::Halted => false,
        };
        if !allowed {
            refused += 1;
            if refused == 1 || refused.is_multiple_of(50) {
                // Off the hot path: why, and since when.
                let gate = guard.gate();
                let why: Vec<String> = gate.reasons.iter().map(|c| c.reason.to_string()).collect();
                println!(
                    "refusing new risk: {} since {} ({})",
                    gate.state,
                    gate.since,
                    why.join(", ")
                );
            }
            continue;
        }
        // Persisted before it is acknowledged (runbook 2.1).
        sqlx::query("INSERT INTO orders (symbol, qty, reduces) VALUES ($1, $2, $3)")
            .bind(order.symbol)
            .bind(order.qty)
            .bind(order.reduces_position)
            .execute(&mut db)
            .await?;
        placed += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = guard.status();
    println!(
        "{placed} orders placed, {refused} refused; gate {}, RPO exposure {}",
        status.gate.state,
        status
            .wal
            .exposure
            .map_or("unknown".into(), |e| format!("{:.1} s", e.seconds))
    );
    Ok(())
}
