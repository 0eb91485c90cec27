//! PostgreSQL for tests: the programs, temp clusters loaded with the
//! CryptoFunk sample (whose schema, data, workload and fingerprints live in
//! `cfdr_drill::sample`, where the drill sandbox uses them too).

use cfdr_pg::{LocalCluster, PgBin};

pub use cfdr_drill::sample::{SCHEMA, content_fingerprint, sample_data, write_workload};

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
    cfdr_drill::sample::load(&cluster.target(db), sessions, trades).await?;
    Ok(cluster)
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

/// Writes some rows into table `t` of `postgres` and switches WAL `n`
/// times; returns the names of the segments the switches completed.
pub async fn make_wal(cluster: &LocalCluster, n: usize) -> Vec<String> {
    let mut conn = cluster
        .target("postgres")
        .connect()
        .await
        .expect("the cluster accepts connections");
    sqlx::query("CREATE TABLE IF NOT EXISTS t (id serial, v text)")
        .execute(&mut conn)
        .await
        .expect("table t is created");
    let mut names = Vec::new();
    for _ in 0..n {
        sqlx::query("INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 2000) g")
            .execute(&mut conn)
            .await
            .expect("rows are written");
        let name: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
            .fetch_one(&mut conn)
            .await
            .expect("WAL switches");
        names.push(name);
    }
    names
}
