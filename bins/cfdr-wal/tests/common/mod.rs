//! Shared setup: a repository the `postgres` user can write, a config file
//! for `cfdr-wal`, and a cluster that archives with it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use cfdr_pg::{LocalCluster, PgBin};
use cfdr_testing::{Backend, TestLocation};
use sqlx::Row;

/// The built binary.
pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_cfdr-wal")
}

pub use cfdr_testing::pg::give_to_postgres;

/// A repository on `backend`, initialised, with a config file and a spool
/// folder that PostgreSQL's archive_command can use.
pub struct Setup {
    pub loc: TestLocation,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub spool: PathBuf,
    pub store: cfdr_storage::Store,
}

impl Setup {
    pub async fn new(backend: Backend, test: &str) -> Option<Setup> {
        let loc = TestLocation::new(backend, test)?;
        let store = loc.options.build().unwrap();
        cfdr_storage::Repository::init(store.clone()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cfdr.toml");
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let setup = Setup {
            loc,
            dir,
            config,
            spool,
            store,
        };
        setup.write_config(None);
        give_to_postgres(setup.dir.path());
        if let Some(root) = setup.fs_root() {
            give_to_postgres(&root);
        }
        Some(setup)
    }

    /// The repository folder of an fs location.
    pub fn fs_root(&self) -> Option<PathBuf> {
        (self.loc.backend == Backend::Fs).then(|| PathBuf::from(&self.store.location().bucket))
    }

    /// Writes the config file; `endpoint` overrides the S3 endpoint (a
    /// closed port simulates an outage).
    pub fn write_config(&self, endpoint: Option<&str>) {
        let o = &self.loc.options;
        let mut text = format!(
            "[repository]\nurl = {:?}\n[repository.retry]\nmax-retries = 1\nmin-delay-ms = 50\nmax-delay-ms = 100\n[repository.timeout]\ncall-secs = 30\nio-secs = 30\n[wal]\nspool-dir = {:?}\nworker-idle-secs = 3\npush-timeout-secs = 120\n",
            o.url.clone().unwrap(),
            self.spool.display().to_string()
        );
        if self.loc.backend == Backend::S3 {
            text.push_str(&format!(
                "[repository.s3]\nendpoint = {:?}\nregion = {:?}\n",
                endpoint
                    .map(str::to_owned)
                    .or(o.s3.endpoint.clone())
                    .unwrap(),
                o.s3.region.clone().unwrap_or("us-east-1".into())
            ));
        }
        std::fs::write(&self.config, text).unwrap();
    }

    /// Environment for `cfdr-wal` (S3 test credentials).
    pub fn env(&self) -> Vec<(String, String)> {
        let o = &self.loc.options.s3;
        match (&o.access_key_id, &o.secret_access_key) {
            (Some(k), Some(s)) => vec![
                ("AWS_ACCESS_KEY_ID".into(), k.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), s.clone()),
            ],
            _ => Vec::new(),
        }
    }

    /// `archive_command` for this setup.
    pub fn archive_command(&self, extra: &str) -> String {
        let env: Vec<String> = self.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "env {} {} --config {} push {extra} %p",
            env.join(" "),
            exe(),
            self.config.display()
        )
    }

    /// Runs `cfdr-wal ARGS` (as the current user) in `cwd`.
    pub fn run(&self, cwd: &Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new(exe())
            .current_dir(cwd)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(self.env())
            .env_remove("CFDR_REPOSITORY")
            .output()
            .unwrap()
    }

    pub fn archive(&self) -> cfdr_wal_archive::WalArchive {
        cfdr_wal_archive::WalArchive::new(self.store.clone())
    }
}

pub use cfdr_testing::pg::{make_wal, pg_bin};

/// A new cluster whose postgresql.conf archives with `archive_command`. It
/// keeps 1 GB of WAL (no checkpoint recycles the tests' few segments), so
/// tests can compare pg_wal with the archive byte for byte.
pub async fn archiving_cluster(bin: &PgBin, archive_command: &str) -> LocalCluster {
    let mut cluster = LocalCluster::init_temp(bin).await.unwrap();
    let conf = cluster.data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{}'\nwal_keep_size = '1GB'\n",
        archive_command.replace('\'', "''")
    ));
    std::fs::write(&conf, text).unwrap();
    cluster.start(&[]).await.unwrap();
    cluster
}

/// `(archived_count, failed_count, last_archived_wal)` of pg_stat_archiver.
pub async fn archiver(cluster: &LocalCluster) -> (i64, i64, Option<String>) {
    let mut conn = cluster.target("postgres").connect().await.unwrap();
    let row =
        sqlx::query("SELECT archived_count, failed_count, last_archived_wal FROM pg_stat_archiver")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Waits until PostgreSQL's archiver reports `file` archived. It asks
/// `pg_stat_archiver`, not `archive_status/<file>.done`: a checkpoint may
/// recycle an archived segment and its `.done` file at any moment. The
/// archiver takes `.ready` files oldest first and retries a failed one
/// before any later file, so a last archived name at or past `file` means
/// `file` itself was archived.
pub async fn wait_archived(cluster: &LocalCluster, file: &str) {
    let what = format!("{file} archived");
    cfdr_testing::eventually(&what, cfdr_testing::PATIENCE, || async {
        let (count, failed, last) = archiver(cluster).await;
        match &last {
            Some(last) if last.get(..24).is_some_and(|l| l >= &file[..24]) => Ok(()),
            _ => Err(format!(
                "archiver: {count} archived, {failed} failed, last {last:?}; server log tail:\n{}",
                server_log_tail(cluster)
            )),
        }
    })
    .await
}

/// The last 20 lines of the cluster's server log.
pub fn server_log_tail(cluster: &LocalCluster) -> String {
    let log = std::fs::read_to_string(&cluster.log_file).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Every archived file in pg_wal matches the archive byte for byte; returns
/// how many were compared.
pub async fn assert_archive_matches(setup: &Setup, cluster: &LocalCluster) -> usize {
    let archive = setup.archive();
    let out = tempfile::tempdir().unwrap();
    let mut compared = 0;
    // Goes by what the repository holds; archiving_cluster keeps the
    // segments in pg_wal, so each one is there to compare with.
    for listed in archive.list().await.unwrap() {
        let file = listed.item.name.as_str();
        let local = cluster.data_dir.join("pg_wal").join(file);
        let Ok(original) = std::fs::read(&local) else {
            continue;
        };
        let dest = out.path().join(file);
        let got = archive
            .fetch(file, &dest, &Default::default())
            .await
            .unwrap();
        assert!(
            matches!(got, cfdr_wal_archive::Fetched::Restored { .. }),
            "{file}: {got:?}"
        );
        assert!(
            std::fs::read(&dest).unwrap() == original,
            "{file} differs from pg_wal"
        );
        compared += 1;
    }
    compared
}

/// A repository on `backend` and a cluster archiving into it (sync) that
/// wrote `n` segments, all archived; `None` when a prerequisite is missing.
pub async fn archived(
    backend: Backend,
    test: &str,
    n: usize,
) -> Option<(Setup, LocalCluster, Vec<String>)> {
    let bin = pg_bin(test).await?;
    let setup = Setup::new(backend, test).await?;
    let cluster = archiving_cluster(&bin, &setup.archive_command("")).await;
    let names = make_wal(&cluster, n).await;
    wait_archived(&cluster, names.last()?).await;
    Some((setup, cluster, names))
}
