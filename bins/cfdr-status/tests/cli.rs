//! cfdr-status against a real archiving cluster: the table and JSON, exit
//! codes and named checks, the textfile, and `serve` (/gate, /health,
//! /metrics, the page in headless Chromium).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

#[path = "../../../crates/guard/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cfdr_incident::{Change, Journal, Severity, Stamp};
use cfdr_testing::Backend;
use support::Rig;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_cfdr-status")
}

/// A config file with quick guard settings and one backup schedule.
fn config(dir: &Path, rig: &Rig) -> PathBuf {
    let path = dir.join("cfdr.toml");
    std::fs::write(
        &path,
        format!(
            "[repository]\nurl = {:?}\n[guard]\nrefresh-interval = \"500ms\"\nincident-interval = \"500ms\"\n\
             [objectives]\nrpo = \"30s\"\n[objectives.backups]\n\"logical/hourly\" = \"65m\"\n",
            rig.loc.options.url.clone().unwrap()
        ),
    )
    .unwrap();
    path
}

fn command(config: &Path, rig: &Rig) -> Command {
    let mut c = Command::new(exe());
    c.arg("--config")
        .arg(config)
        .env("DATABASE_URL", rig.cluster.url("postgres"))
        .env_remove("CFDR_REPOSITORY")
        .env_remove("PGHOST");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_exit_codes_checks_and_textfile() {
    let test = "status_report";
    let Some(rig) = Rig::new(Backend::Fs, test).await else {
        return;
    };
    rig.settle().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &rig);

    // No hourly backup yet: critical (2), and the JSON says why.
    let prom = dir.path().join("cfdr.prom");
    let out = command(&cfg, &rig)
        .args(["--json", "--observe", "2s", "--prometheus-textfile"])
        .arg(&prom)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(out.status.code(), Some(2), "{doc:#}\n{stderr}");
    assert_eq!(doc["overall"], "critical");
    assert_eq!(doc["exit_code"], 2);
    let check = |name: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {doc:#}"))
            .clone()
    };
    assert_eq!(check("backup:logical/hourly")["level"], "critical");
    assert_eq!(check("rpo-exposure")["level"], "ok", "{doc:#}");
    assert_eq!(doc["status"]["gate"]["state"], "active", "{doc:#}");
    assert_eq!(doc["status"]["wal"]["exposure"]["seconds"], 0.0, "{doc:#}");

    // The textfile is whole and parses.
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("cfdr_status_up 1\n") && text.contains("cfdr_trading_state 0\n"),
        "{text}"
    );
    if let Some(promtool) = cfdr_testing::tool("promtool", "prometheus", test) {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // Named checks: only those decide the exit code.
    let out = command(&cfg, &rig)
        .args([
            "--observe",
            "1s",
            "--check",
            "rpo-exposure",
            "--check",
            "wal-archiving",
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{table}");
    assert!(
        table.contains("TRADING GATE  ACTIVE") && table.contains("OVERALL ok"),
        "{table}"
    );
    let checks: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("CHECK"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(checks, ["rpo-exposure", "wal-archiving"], "{table}");

    let out = command(&cfg, &rig)
        .args(["--observe", "0s", "--check", "rpo"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("unknown check \"rpo\"") && err.contains("rpo-exposure"),
        "{err}"
    );

    // Bad settings: unknown (3) with the key named, before anything runs.
    std::fs::write(&cfg, "[objectives]\nrpo = \"0s\"\n").unwrap();
    let out = command(&cfg, &rig).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("objectives.rpo"), "{err}");
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(cfg: &Path, rig: &Rig) -> Server {
    let mut child = command(cfg, rig)
        .args(["serve", "--listen", "127.0.0.1:0", "--page-refresh", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Server(child, addr)
}

/// A plain HTTP/1.1 GET: status code and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

fn wait_gate(addr: &str, code: u16, state: &str, secs: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (c, body) = get(addr, "/gate");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if c == code && v["state"] == state {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gate not {code} {state} within {secs} s: {c} {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_gate_health_metrics_and_page() {
    let test = "status_serve";
    let Some(rig) = Rig::new(Backend::Fs, test).await else {
        return;
    };
    rig.settle().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &rig);
    let server = serve(&cfg, &rig);
    let addr = server.1.clone();

    let gate = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || wait_gate(&addr, 200, "active", 60)
    })
    .await
    .unwrap();
    assert!(
        gate["since"].is_string() && gate["stale"] == false,
        "{gate:#}"
    );
    // /gate answers from memory: time a few hundred requests.
    let a2 = addr.clone();
    let mut times = tokio::task::spawn_blocking(move || {
        (0..300)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(get(&a2, "/gate").0, 200);
                t.elapsed()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    times.sort();
    eprintln!(
        "/gate round trip over TCP (connect included): p50 {:?} p99 {:?}",
        times[150], times[296]
    );

    let (code, health) = get(&addr, "/health");
    assert_eq!(code, 200, "{health}");
    let (code, metrics) = get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("cfdr_rpo_exposure_seconds 0\n"),
        "{metrics}"
    );
    let (code, page) = get(&addr, "/");
    assert_eq!(code, 200);
    assert!(page.contains("Trading ACTIVE"), "{page}");
    assert_eq!(get(&addr, "/nope").0, 404);

    // An incident with the halt: /gate turns 503 (a plain health check
    // sees it), the page shows the banner.
    let journal = Journal::new(rig.repo.store().clone());
    journal
        .open(
            &Stamp::new("alice", jiff::Timestamp::now()),
            Change::Opened {
                title: "Primary database unreachable".into(),
                severity: Severity::P0,
                commander: Some("alice".into()),
                halt: true,
                text: None,
            },
        )
        .await
        .unwrap();
    let a3 = addr.clone();
    let gate = tokio::task::spawn_blocking(move || wait_gate(&a3, 503, "halted", 60))
        .await
        .unwrap();
    assert!(
        gate["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "IncidentHalt"),
        "{gate:#}"
    );

    // The page in a real browser, with a screenshot kept as an artifact.
    let Some(chromium) = cfdr_testing::tool("chromium", "chromium", test) else {
        return;
    };
    // The page reloads itself; wait for the incident list to be on it too.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !get(&addr, "/").1.contains("<strong>halts trading</strong>") {
        assert!(Instant::now() < deadline, "incident not on the page");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("cfdr-status-page.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let browser = |extra: &[&str]| {
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--window-size=1280,1500",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("http://{addr}/"))
            .output()
            .unwrap()
    };
    let dom = browser(&["--dump-dom"]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains("TRADING HALTED") && dom_text.contains("<strong>halts trading</strong>"),
        "rendered DOM: {dom_text}\n{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let out = browser(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    drop(server);
}
