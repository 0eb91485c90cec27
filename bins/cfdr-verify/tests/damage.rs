//! cfdr-verify on a backup damaged where COPY sees it while megabytes of
//! rows still follow: the test fails within seconds, names the object and
//! leaves no scratch database.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cfdr_pg::logical::{self, LogicalOptions};
use cfdr_storage::{Compression, EncodeOptions, Repository, StorageOptions};

const DB: &str = "cryptofunk";

/// Far above a failing restore test of this size on a loaded two-core
/// machine, far below a hang.
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_fails_the_restore_test_fast_and_leaves_no_database() {
    let test = "cfdr-verify damage";
    let cluster = match cfdr_testing::pg::cryptofunk_cluster(DB, 10, 500).await {
        Ok(c) => c,
        Err(e) => {
            let _: Option<()> = cfdr_testing::missing(&format!("PostgreSQL 15 ({e})"), test);
            return;
        }
    };
    // Two tables of 200,000 rows each: the damage lands in the first, the
    // second follows it.
    let out = Command::new(cluster.bin().path("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(cluster.url(DB))
        .arg("-c")
        .arg(
            "CREATE TABLE t1 (id bigint PRIMARY KEY, v text);
             INSERT INTO t1 SELECT g, md5(g::text) || md5((g * 3)::text) FROM generate_series(1, 200000) g;
             CREATE TABLE t2 AS SELECT * FROM t1;",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/repo", dir.path().display());
    let repo = Repository::init(StorageOptions::from_url(url.clone()).build().unwrap())
        .await
        .unwrap();
    let encode = EncodeOptions {
        compression: Compression::None,
        ..EncodeOptions::default()
    };
    let m = logical::backup(
        &repo,
        &cluster.target(DB),
        "weekly",
        &LogicalOptions::default(),
        &encode,
    )
    .await
    .unwrap();

    // One byte that is not UTF-8, inside a row of t1.
    let key = m.objects[0].key.clone();
    let path = dir.path().join("repo").join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    // (pg_dump writes each row as a chunk after its length, whose high
    // byte is 0.)
    let row = memchr_row(&bytes, b"\x0050000\t");
    bytes[row + 8] ^= 0x80;
    std::fs::write(&path, bytes).unwrap();

    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfdr-verify"))
        .args(["-r", &url, m.id.as_str()])
        .env("DATABASE_URL", cluster.url("postgres"))
        .env_remove("CFDR_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > LIMIT {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("cfdr-verify hung on a damaged backup (no result after {LIMIT:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("FAILED") && text.contains(&format!("object {key} is corrupt")),
        "the damaged object is the failure, not a COPY error: {text}"
    );
    let scratch = format!("cfdr_verify_{}", logical::short_id(&m.id));
    assert!(
        !cfdr_pg::admin::database_exists(&cluster.target("postgres"), &scratch)
            .await
            .unwrap(),
        "the scratch database {scratch} must be dropped"
    );
}

/// Where `needle` (a row start of the uncompressed dump) first occurs.
fn memchr_row(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}
