//! Local clusters start even when their port is taken between choosing it
//! and the server binding it (parallel tests, other services).
#![allow(clippy::unwrap_used)]

use cfdr_pg::LocalCluster;
use cfdr_testing::pg::pg_bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_before_start_is_replaced() {
    let Some(bin) = pg_bin("a_port_taken_before_start_is_replaced").await else {
        return;
    };
    let mut cluster = LocalCluster::init_temp(&bin).await.unwrap();
    // Another process holds the chosen port when the server starts.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    cluster.port = taken;
    cluster.start(&[]).await.unwrap();
    assert_ne!(cluster.port, taken, "started on the taken port?");
    let mut conn = cluster.target("postgres").connect().await.unwrap();
    let port: String = sqlx::query_scalar("SHOW port")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(port, cluster.port.to_string());
    let log = std::fs::read_to_string(&cluster.log_file).unwrap();
    assert!(log.contains("Address already in use"), "{log}");
}
