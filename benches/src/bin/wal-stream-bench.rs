//! Exposure of the WAL stream against archive_command alone, on a real
//! PostgreSQL cluster under pgbench (run by `benches/wal-stream.sh`).
//!
//! One cluster archives with `cfdr-wal push` (archive_timeout = 60) into
//! repository A while `cfdr-wal stream` ships into repository B (same
//! backend). Every 100 ms the bench notes the server's flush LSN (every
//! commit returned before that moment is at or below it); a sample is
//! "safe" on the stream when `wal-stream/state.json` in B reaches it, and
//! on archive_command when A holds the segment containing it. Exposure is
//! the time from sample to safe. It also reports the stream's repository
//! requests per minute (busy and idle), peak RSS of cfdr-wal and
//! pg_receivewal, and the commit latency synchronous mode adds.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cfdr_pg::{LocalCluster, PgBin, PgTarget};
use cfdr_retention::{Lsn, WalSegment};
use cfdr_storage::wal_archive::wal_key;
use cfdr_testing::{Backend, TestLocation};
use cfdr_wal_archive::WalArchive;
use cfdr_wal_archive::chunks::StreamState;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// fs or s3 (the S3 server of scripts/with-services).
    #[arg(long, default_value = "fs")]
    backend: String,
    /// Seconds of pgbench.
    #[arg(long, default_value_t = 90)]
    seconds: u64,
    /// pgbench transactions per second (-R).
    #[arg(long, default_value_t = 400)]
    rate: u32,
    /// Instead of pgbench's TPC-B-like script, each transaction inserts
    /// one row of this many uncompressed bytes (0: TPC-B-like): a fixed
    /// WAL rate of about RATE x (ROW_BYTES + 100) bytes per second.
    #[arg(long, default_value_t = 0)]
    row_bytes: u32,
    /// Seconds of idle measurement.
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// Also measure the commit latency of synchronous mode.
    #[arg(long)]
    sync: bool,
    /// The cfdr-wal executable.
    #[arg(long)]
    cfdr_wal: PathBuf,
}

struct Repo {
    loc: TestLocation,
    config: PathBuf,
    archive: WalArchive,
}

fn env_of(loc: &TestLocation) -> Vec<(String, String)> {
    let o = &loc.options.s3;
    match (&o.access_key_id, &o.secret_access_key) {
        (Some(k), Some(s)) => vec![
            ("AWS_ACCESS_KEY_ID".into(), k.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), s.clone()),
        ],
        _ => Vec::new(),
    }
}

async fn repo(backend: Backend, name: &str, dir: &Path) -> Result<Repo> {
    let loc = TestLocation::new(backend, name).context("the backend is not available")?;
    let store = loc.options.build()?;
    cfdr_storage::Repository::init(store.clone()).await?;
    let o = &loc.options;
    let mut text = format!(
        "[repository]\nurl = {:?}\n[stream]\nspool-dir = {:?}\n",
        o.url.clone().unwrap_or_default(),
        dir.join(format!("{name}-spool")).display().to_string()
    );
    if backend == Backend::S3 {
        text.push_str(&format!(
            "[repository.s3]\nendpoint = {:?}\nregion = {:?}\n",
            o.s3.endpoint.clone().unwrap_or_default(),
            o.s3.region.clone().unwrap_or("us-east-1".into())
        ));
    }
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text)?;
    if let Some(root) = (backend == Backend::Fs).then(|| PathBuf::from(&store.location().bucket)) {
        std::fs::create_dir_all(&root)?;
        cfdr_testing::pg::give_to_postgres(&root);
    }
    Ok(Repo {
        loc,
        config,
        archive: WalArchive::new(store),
    })
}

async fn query_lsn(db: &PgTarget, sql: &str) -> Result<Lsn> {
    let mut conn = db.connect().await?;
    let s: String = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
    Ok(s.parse()?)
}

async fn exec(db: &PgTarget, sql: &str) -> Result<()> {
    let mut conn = db.connect().await?;
    sqlx::query(sql).execute(&mut conn).await?;
    Ok(())
}

fn start_stream(args: &Args, repo: &Repo, cluster: &LocalCluster, log: &Path) -> Result<Child> {
    Ok(Command::new(&args.cfdr_wal)
        .arg("--config")
        .arg(&repo.config)
        .arg("stream")
        .env("DATABASE_URL", cluster.url("postgres"))
        .envs(env_of(&repo.loc))
        .env_remove("CFDR_REPOSITORY")
        .stdout(std::fs::File::create(log.with_extension("out"))?)
        .stderr(std::fs::File::create(log)?)
        .spawn()?)
}

/// Stops the stream with SIGTERM; returns the repository requests it reports.
fn stop_stream(mut child: Child, log: &Path) -> Result<u64> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    let out = std::fs::read_to_string(log.with_extension("out"))?;
    out.split(", ")
        .find_map(|p| p.split_once(" repository requests"))
        .and_then(|(n, _)| n.trim().parse().ok())
        .with_context(|| format!("no summary from the stream: {out}"))
}

async fn wait_streaming(db: &PgTarget) -> Result<()> {
    for _ in 0..600 {
        let mut conn = db.connect().await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'cfdr_wal_stream' AND state = 'streaming'",
        )
        .fetch_one(&mut conn)
        .await?;
        if n == 1 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the stream did not connect")
}

/// Peak RSS (VmHWM, KiB) of `pid`.
/// Peak resident memory of `pid` (VmHWM), in KiB.
fn hwm_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A memory figure of `pid` from /proc/<pid>/status (`VmHWM:`, `VmRSS:`), in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn percentiles(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "- / - / -".into();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!("{:.2} / {:.2} / {:.2}", at(0.5), at(0.99), v[v.len() - 1])
}

fn pgbench(bin: &PgBin, cluster: &LocalCluster, args: &[&str]) -> Result<String> {
    let out = Command::new(bin.path("pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(args)
        .arg("postgres")
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn latency_ms(pgbench_out: &str) -> f64 {
    pgbench_out
        .lines()
        .find_map(|l| l.strip_prefix("latency average = "))
        .and_then(|v| v.trim_end_matches(" ms").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    // archive_command runs in the data directory: a relative path would
    // not be found there, and every push would fail.
    args.cfdr_wal = std::path::absolute(&args.cfdr_wal)?;
    let backend = match args.backend.as_str() {
        "fs" => Backend::Fs,
        "s3" => Backend::S3,
        other => bail!("backend {other}: fs or s3"),
    };
    let bin = PgBin::locate(None, Some(15)).await?;
    let work = tempfile::tempdir()?;
    cfdr_testing::pg::give_to_postgres(work.path());
    let archived = repo(backend, "bench-archive", work.path()).await?;
    let streamed = repo(backend, "bench-stream", work.path()).await?;

    let mut cluster = LocalCluster::init_temp(&bin).await?;
    let env: Vec<String> = env_of(&archived.loc)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let archive_command = format!(
        "env {} {} --config {} push %p",
        env.join(" "),
        args.cfdr_wal.display(),
        archived.config.display()
    );
    let conf = cluster.data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{}'\narchive_timeout = 60\nmax_slot_wal_keep_size = '2GB'\nmax_wal_size = '2GB'\n",
        archive_command.replace('\'', "''")
    ));
    std::fs::write(&conf, text)?;
    cluster.start(&[]).await?;
    let db = cluster.target("postgres");
    pgbench(&bin, &cluster, &["-i", "-q", "-s", "10"])?;
    exec(&db, "CHECKPOINT").await?;

    let log = work.path().join("stream-busy.log");
    let stream = start_stream(&args, &streamed, &cluster, &log)?;
    wait_streaming(&db).await?;
    let pid = stream.id();

    let rate = args.rate.to_string();
    let secs = args.seconds.to_string();
    let mut load_args: Vec<String> = ["-n", "-c", "4", "-j", "2", "-R", &rate, "-T", &secs]
        .map(str::to_owned)
        .to_vec();
    if args.row_bytes > 0 {
        // STORAGE PLAIN: no compression, no TOAST, so each row costs its
        // size in WAL.
        exec(&db, "CREATE TABLE wal_fill (id bigserial, pad text)").await?;
        exec(&db, "ALTER TABLE wal_fill ALTER pad SET STORAGE PLAIN").await?;
        let script = work.path().join("wal-fill.sql");
        std::fs::write(
            &script,
            format!(
                "INSERT INTO wal_fill (pad) VALUES (repeat('x', {}));\n",
                args.row_bytes
            ),
        )?;
        load_args.extend(["-f".to_owned(), script.display().to_string()]);
    }
    let load = {
        let (bin, port) = (bin.clone(), cluster.port);
        let args = load_args;
        tokio::task::spawn_blocking(move || {
            Command::new(bin.path("pgbench"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .args(&args)
                .arg("postgres")
                .output()
        })
    };
    let started = Instant::now();
    let first_lsn = query_lsn(&db, "SELECT pg_current_wal_flush_lsn()::text").await?;
    let segment_size = 16u64 << 20;
    let mut samples: Vec<(Instant, Lsn)> = Vec::new();
    let (mut stream_lat, mut archive_lat) = (Vec::new(), Vec::new());
    let (mut next_stream, mut next_archive) = (0usize, 0usize);
    let (mut rss_wal, mut rss_recv) = (0u64, 0u64);
    // The stream's resident memory while WAL flows: flat, not growing with
    // the segments shipped.
    let mut rss_over_time: Vec<(Duration, u64)> = Vec::new();
    let busy = Duration::from_secs(args.seconds);
    // Busy, then up to 75 s more for the last archive_timeout switch.
    while started.elapsed() < busy + Duration::from_secs(75)
        && (next_archive < samples.len() || started.elapsed() < busy)
    {
        let now = Instant::now();
        if now - started < busy {
            samples.push((
                now,
                query_lsn(&db, "SELECT pg_current_wal_flush_lsn()::text").await?,
            ));
        }
        if let Some(s) = StreamState::read(&streamed.archive).await? {
            while next_stream < samples.len() && samples[next_stream].1 <= s.safe_lsn {
                stream_lat.push((Instant::now() - samples[next_stream].0).as_secs_f64());
                next_stream += 1;
            }
        }
        while next_archive < samples.len() {
            let (at, lsn) = samples[next_archive];
            let seg = WalSegment::containing(1, Lsn(lsn.0.saturating_sub(1)), segment_size);
            let key = wal_key(&seg.file_name(segment_size));
            if archived.archive.store().stat(&key).await?.is_none() {
                break;
            }
            archive_lat.push((Instant::now() - at).as_secs_f64());
            next_archive += 1;
        }
        rss_wal = rss_wal.max(hwm_kib(pid));
        if now - started < busy {
            rss_over_time.push((now - started, status_kib(pid, "VmRSS:")));
        }
        for c in children(pid) {
            rss_recv = rss_recv.max(hwm_kib(c));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bench_out = load.await??;
    let last_lsn = samples.last().map_or(first_lsn, |s| s.1);
    let busy_requests = stop_stream(stream, &log)?;
    // Requests happen while WAL flows: per minute of pgbench.
    let minutes = args.seconds as f64 / 60.0;
    let wal_mb_s = (last_lsn.0 - first_lsn.0) as f64 / 1e6 / args.seconds as f64;
    let tps = String::from_utf8_lossy(&bench_out.stdout)
        .lines()
        .find(|l| l.starts_with("tps = "))
        .unwrap_or("")
        .to_owned();

    // Idle: a new stream session on a quiet server (after the load's
    // vacuum, a checkpoint and the next running-transactions record).
    exec(&db, "VACUUM ANALYZE").await?;
    exec(&db, "CHECKPOINT").await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle_from = query_lsn(&db, "SELECT pg_current_wal_lsn()::text").await?;
    let log = work.path().join("stream-idle.log");
    let stream = start_stream(&args, &streamed, &cluster, &log)?;
    wait_streaming(&db).await?;
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let idle_requests = stop_stream(stream, &log)?;
    let idle_wal = query_lsn(&db, "SELECT pg_current_wal_lsn()::text").await?.0 - idle_from.0;

    let script = match args.row_bytes {
        0 => "TPC-B-like".to_owned(),
        n => format!("one {n}-byte row per transaction"),
    };
    println!(
        "backend {}: pgbench -R {} ({script}) for {} s ({tps}), WAL {wal_mb_s:.2} MB/s, {} samples",
        args.backend,
        args.rate,
        args.seconds,
        samples.len()
    );
    println!("| path | exposure p50 / p99 / max (s) | samples safe |");
    println!("|---|---|---|");
    println!(
        "| cfdr-wal stream | {} | {}/{} |",
        percentiles(stream_lat),
        next_stream,
        samples.len()
    );
    println!(
        "| archive_command alone (archive_timeout = 60) | {} | {}/{} |",
        percentiles(archive_lat),
        next_archive,
        samples.len()
    );
    println!(
        "stream requests per minute: busy {:.0} ({busy_requests} in {} s of pgbench), idle {:.1} ({idle_requests} in {} s, while the server wrote {idle_wal} bytes of WAL)",
        busy_requests as f64 / minutes,
        args.seconds,
        idle_requests as f64 / (args.idle as f64 / 60.0),
        args.idle
    );
    println!(
        "peak RSS: cfdr-wal stream {} MiB, pg_receivewal {} MiB",
        rss_wal / 1024,
        rss_recv / 1024
    );
    let tenths: Vec<String> = (1..=10)
        .filter_map(|k| {
            let at = busy * k / 10;
            rss_over_time
                .iter()
                .rev()
                .find(|(t, _)| *t <= at)
                .map(|(t, kib)| format!("{:.0} s {} MiB", t.as_secs_f64(), kib / 1024))
        })
        .collect();
    println!("cfdr-wal stream RSS while WAL flows: {}", tenths.join(", "));

    if args.sync {
        let opts = ["-n", "-c", "1", "-T", "15"];
        let log = work.path().join("stream-sync.log");
        let stream = start_stream(&args, &streamed, &cluster, &log)?;
        wait_streaming(&db).await?;
        let plain = latency_ms(&pgbench(&bin, &cluster, &opts)?);
        exec(
            &db,
            "ALTER SYSTEM SET synchronous_standby_names = 'cfdr_wal_stream'",
        )
        .await?;
        exec(&db, "SELECT pg_reload_conf()").await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sync = latency_ms(&pgbench(&bin, &cluster, &opts)?);
        exec(&db, "ALTER SYSTEM RESET synchronous_standby_names").await?;
        exec(&db, "SELECT pg_reload_conf()").await?;
        stop_stream(stream, &log)?;
        println!(
            "commit latency (pgbench -c 1): {plain:.2} ms asynchronous, {sync:.2} ms with the stream in synchronous_standby_names (+{:.2} ms)",
            sync - plain
        );
    }
    cluster.stop().await?;
    Ok(())
}
