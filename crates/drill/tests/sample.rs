//! The sample's workload is a pure function of the trade number, so the
//! source's state after any trade can be rebuilt and compared with a
//! recovered copy; the invariants catch a broken copy.
#![allow(clippy::unwrap_used)]

use cfdr_drill::sample;
use sqlx::Executor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebuilt_reference_equals_the_source_after_its_last_trade_and_invariants_catch_damage()
{
    let test = "sample reference";
    let cluster = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 7, 300).await {
        Ok(c) => c,
        Err(e) => {
            cfdr_testing::missing::<()>(&format!("PostgreSQL 15 ({e})"), test);
            return;
        }
    };
    let source = cluster.target("cryptofunk");
    // The workload as the sandbox runs it: one trade per transaction.
    let mut conn = source.connect().await.unwrap();
    for n in 301..=340 {
        conn.execute(sample::workload_sql(7, n, n).as_str())
            .await
            .unwrap();
    }
    assert_eq!(sample::last_trade(&source).await.unwrap(), 340);
    let reference = source.with_database("reference");
    sample::load_reference(&reference, 7, 300, 340)
        .await
        .unwrap();
    assert_eq!(
        sample::content_fingerprint(&reference).await.unwrap(),
        sample::content_fingerprint(&source).await.unwrap(),
        "the reference rebuilds every table exactly"
    );
    assert!(
        sample::check_invariants(&source)
            .await
            .unwrap()
            .iter()
            .all(|(_, n)| *n == 0)
    );

    // One trade short is a different state.
    let short = source.with_database("short");
    sample::load_reference(&short, 7, 300, 339).await.unwrap();
    assert_ne!(
        sample::content_fingerprint(&short).await.unwrap(),
        sample::content_fingerprint(&source).await.unwrap()
    );

    // A trade lost without its position update, and a gap in the ids.
    conn.execute("DELETE FROM trades WHERE id = 320")
        .await
        .unwrap();
    let broken: Vec<String> = sample::check_invariants(&source)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        broken,
        [
            "each position equals the sum of its symbol's trades",
            "trade ids have no gap (no transaction half kept)"
        ]
    );
}
