//! A real archiving cluster for the guard's tests: PostgreSQL 15 copies
//! each completed WAL file into an outbox (`archive_command`), and a task
//! of the test pushes the outbox into the repository with cfdr's own WAL
//! archive code, as `cfdr-wal push` does.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cfdr_guard::{Guard, Settings, Status, TradingState};
use cfdr_pg::{LocalCluster, PgBin};
use cfdr_storage::Repository;
use cfdr_testing::{Backend, TestLocation};
use cfdr_wal_archive::{PushOptions, WalArchive};

/// PostgreSQL 15's programs, or `None` (a failure under scripts/test).
pub async fn pg_bin(test: &str) -> Option<PgBin> {
    let dir = std::env::var("CFDR_TEST_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into());
    match PgBin::locate(Some(Path::new(&dir)), None).await {
        Ok(b) => Some(b),
        Err(e) => cfdr_testing::missing(
            &format!("PostgreSQL 15 ({e}; apt-get install postgresql-15)"),
            test,
        ),
    }
}

/// The working archive command: copy into the outbox, then rename, so the
/// pusher never sees half a file.
pub fn archive_command(outbox: &Path) -> String {
    let o = outbox.display();
    format!("cp %p {o}/%f.part && mv {o}/%f.part {o}/%f")
}

pub struct Rig {
    pub loc: TestLocation,
    pub repo: Repository,
    pub cluster: LocalCluster,
    pub outbox: PathBuf,
    _outbox_dir: tempfile::TempDir,
    stop_pusher: Arc<AtomicBool>,
}

impl Rig {
    /// A repository on `backend` and a running cluster archiving into it,
    /// with `archive_timeout = 1s` so written WAL reaches the repository
    /// within about a second.
    pub async fn new(backend: Backend, test: &str) -> Option<Rig> {
        let bin = pg_bin(test).await?;
        let loc = TestLocation::new(backend, test)?;
        let repo = Repository::init(loc.options.build().unwrap())
            .await
            .unwrap();
        let outbox_dir = tempfile::tempdir().unwrap();
        let outbox = outbox_dir.path().join("outbox");
        std::fs::create_dir_all(&outbox).unwrap();
        if cfdr_pg::server_user().unwrap().is_some() {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(outbox_dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        let mut cluster = LocalCluster::init_temp(&bin).await.unwrap();
        let conf = cluster.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!(
            "\nwal_level = replica\narchive_mode = on\narchive_timeout = 1\narchive_command = '{}'\n",
            archive_command(&outbox)
        ));
        std::fs::write(&conf, text).unwrap();
        cluster.start(&[]).await.unwrap();
        let stop_pusher = Arc::new(AtomicBool::new(false));
        tokio::spawn(push_loop(
            WalArchive::new(repo.store().clone()),
            outbox.clone(),
            cluster.data_dir.clone(),
            stop_pusher.clone(),
        ));
        Some(Rig {
            loc,
            repo,
            cluster,
            outbox,
            _outbox_dir: outbox_dir,
            stop_pusher,
        })
    }

    pub async fn sql(&self, statement: &str) {
        let mut conn = self.cluster.target("postgres").connect().await.unwrap();
        sqlx::raw_sql(statement).execute(&mut conn).await.unwrap();
    }

    /// Makes archive_command fail (or work again) on the running server.
    pub async fn break_archiving(&self, broken: bool) {
        let cmd = if broken {
            "exit 1".to_owned()
        } else {
            archive_command(&self.outbox)
        };
        self.sql(&format!(
            "ALTER SYSTEM SET archive_command = '{}'",
            cmd.replace('\'', "''")
        ))
        .await;
        self.sql("SELECT pg_reload_conf()").await;
    }

    /// Creates a table, writes to it, switches WAL and waits until the
    /// switched segment is in the repository.
    pub async fn settle(&self) {
        self.sql(
            "CREATE TABLE IF NOT EXISTS orders (id bigserial, v text);
             INSERT INTO orders (v) SELECT md5(g::text) FROM generate_series(1, 100) g;
             CHECKPOINT;",
        )
        .await;
        let mut conn = self.cluster.target("postgres").connect().await.unwrap();
        let name: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let key = cfdr_storage::wal_archive::wal_key(&name);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.repo.store().stat(&key).await.unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{name} not in the repository within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A writing workload: one insert every `pause` until the flag flips.
    pub fn workload(&self, pause: Duration) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
        let stop = Arc::new(AtomicBool::new(false));
        let target = self.cluster.target("postgres");
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut conn = target.connect().await.unwrap();
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                sqlx::query("INSERT INTO orders (v) VALUES ('buy 1 BTC-USD')")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(pause).await;
            }
            n
        });
        (stop, task)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop_pusher.store(true, Ordering::Relaxed);
    }
}

async fn push_loop(archive: WalArchive, outbox: PathBuf, data_dir: PathBuf, stop: Arc<AtomicBool>) {
    let opts = PushOptions {
        data_dir: Some(data_dir),
        ..Default::default()
    };
    while !stop.load(Ordering::Relaxed) {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&outbox)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_none_or(|e| e != "part"));
        names.sort();
        for path in names {
            match archive.push(&path, &opts).await {
                Ok(_) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => eprintln!("test pusher: {}: {e}", path.display()),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Settings for tests: short objectives and a quick refresher.
pub fn quick_settings(rpo_secs: u64) -> Settings {
    let d = |ms: u64| cfdr_guard::Dur(Duration::from_millis(ms));
    let mut s = Settings::default();
    s.objectives.rpo = d(rpo_secs * 1000);
    s.objectives.backups.clear();
    s.guard.refresh_interval = d(500);
    s.guard.staleness_limit = d(5000);
    s.guard.reduce_after = d(1000);
    s.guard.halt_multiple = 2.0;
    s.guard.healthy_cycles = 3;
    s.guard.incident_interval = d(500);
    s.guard.query_timeout = d(2000);
    s
}

/// Polls `guard` every 200 ms until `done` holds; panics with what was
/// seen after `secs`.
pub async fn wait_for(
    guard: &Guard,
    secs: u64,
    what: &str,
    mut done: impl FnMut(&Status) -> bool,
) -> Status {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let st = guard.status();
        if done(&st) {
            return st;
        }
        seen.push(describe(&st));
        if seen.len() > 40 {
            seen.remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {secs} s. Last observations:\n{}",
            seen.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One line: state, exposure and reasons.
pub fn describe(st: &Status) -> String {
    let e = st
        .wal
        .exposure
        .map(|e| format!("{:.1}s{}", e.seconds, if e.lower_bound { "+" } else { "" }));
    let reasons: Vec<String> = st
        .gate
        .reasons
        .iter()
        .map(|c| format!("{}={}", c.reason, c.effect))
        .collect();
    format!(
        "{} state={} exposure={} server={:?} safe={:?} reasons=[{}]",
        st.generated_at,
        st.gate.state,
        e.unwrap_or("-".into()),
        st.wal.server_lsn,
        st.wal.safe_lsn,
        reasons.join(", ")
    )
}

pub fn exposure_of(st: &Status) -> f64 {
    st.wal.exposure.map_or(f64::NAN, |e| e.seconds)
}

pub fn is(state: TradingState) -> impl FnMut(&Status) -> bool {
    move |st| st.gate.state == state
}
