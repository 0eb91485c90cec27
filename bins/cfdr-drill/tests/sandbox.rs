//! cfdr-drill as a user runs it: the built binary, no configuration, an
//! empty working folder. The embedded default end to end, every planted
//! fault detected and named, and Ctrl-C in the middle.
//!
//! Needs `cfdr-wal` built beside `cfdr-drill` (the workspace build) and
//! PostgreSQL 15.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_cfdr-drill");

/// An empty working folder and an empty temp folder (where the sandbox
/// goes), both checked afterwards.
struct Place {
    _dir: tempfile::TempDir,
    cwd: PathBuf,
    tmp: PathBuf,
}

fn place() -> Place {
    let wal = Path::new(EXE).with_file_name("cfdr-wal");
    assert!(
        wal.is_file(),
        "{} is missing: build the workspace (cargo build -p cfdr-wal)",
        wal.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (cwd, tmp) = (dir.path().join("work"), dir.path().join("tmp"));
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    // The sandbox's servers run as `postgres` and must reach their folder.
    for d in [dir.path(), tmp.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Place {
        _dir: dir,
        cwd,
        tmp,
    }
}

fn command(place: &Place, args: &[&str]) -> Command {
    let mut cmd = Command::new(EXE);
    cmd.current_dir(&place.cwd)
        .args(args)
        .env("TMPDIR", &place.tmp)
        .env_remove("CFDR_CONFIG")
        .env_remove("CFDR_REPOSITORY")
        .env_remove("RUST_LOG");
    if Path::new("/etc/cfdr/cfdr.toml").exists() {
        panic!("/etc/cfdr/cfdr.toml exists: the no-configuration drill cannot be tested here");
    }
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The stored `report.json` of the only drill in `./cfdr-repo`.
fn stored_report(place: &Place) -> (PathBuf, Value) {
    let drills = place.cwd.join("cfdr-repo/drills");
    let ids: Vec<_> = std::fs::read_dir(&drills)
        .unwrap_or_else(|e| panic!("{}: {e}", drills.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let dir = ids[0].clone();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    (dir, report)
}

/// Nothing of the sandbox is left: the temp folder is empty, and no
/// process (server, archiver command) names a path inside it.
fn assert_nothing_left(place: &Place) {
    let left: Vec<_> = std::fs::read_dir(&place.tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "sandbox folders left: {left:?}");
    let needle = place.tmp.display().to_string();
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                procs.push(cmdline);
            }
        }
    }
    assert!(procs.is_empty(), "processes left: {procs:?}");
    // Only the drill's report (and the incident of a failed drill) stays,
    // in the default repository.
    let names: Vec<_> = std::fs::read_dir(&place.cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["cfdr-repo".to_owned()]);
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_embedded_default_recovers_every_scenario_within_its_objectives_and_leaves_nothing_behind() {
    let place = place();
    let started = Instant::now();
    let out = command(&place, &[]).output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(took < Duration::from_secs(300), "the drill took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("— SUCCESSFUL"), "{stdout}");
    assert!(stdout.contains("- [x] Recovery time measured"), "{stdout}");
    assert!(stdout.contains("- [x] Functionality verified"), "{stdout}");
    // The WAL stream carries the RPO: the bad DELETE is in the repository
    // without a forced WAL switch, and a lost primary takes at most the
    // last second or so of trades with it.
    for step in [
        "WAL through the DELETE safe in the repository (cfdr-wal stream)",
        "WAL stream restarted on the new primary (timeline 2)",
        "WAL stream shipped what it had received and stopped",
    ] {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }

    let (dir, r) = stored_report(&place);
    assert_eq!(r["version"], 1);
    assert_eq!(r["status"], "SUCCESSFUL");
    for key in ["started", "finished"] {
        r[key].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    }
    let id = dir.file_name().unwrap().to_str().unwrap();
    assert!(
        id.ends_with("Z-all") && id.len() == "20261201T203000Z-all".len(),
        "{id}"
    );
    assert!(num(&r["rto_actual_seconds"]) <= num(&r["rto_database_objective_seconds"]));
    assert!(num(&r["rpo_actual_seconds"]) <= num(&r["rpo_objective_seconds"]));
    assert_eq!(r["cleanup"]["status"], "removed", "{}", r["cleanup"]);

    let scenarios = r["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "secrets-loss",
            "accidental-deletion",
            "replica-failover",
            "database-loss",
            "region-loss"
        ]
    );
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        assert_eq!(s["verdict"], "PASSED", "{name}: {s}");
        assert!(
            num(&s["rto_actual_seconds"]) <= num(&s["rto_objective_seconds"]),
            "{s}"
        );
        assert!(
            num(&s["rpo_actual_seconds"]) <= num(&s["rpo_objective_seconds"]),
            "{s}"
        );
        let validations = s["validations"].as_array().unwrap();
        assert!(
            validations.iter().all(|v| v["passed"] == true),
            "{name}: {validations:?}"
        );
        let checked = |what: &str| {
            validations
                .iter()
                .filter(|v| v["name"].as_str().unwrap().contains(what))
                .count()
        };
        if name == "secrets-loss" {
            assert_eq!(checked("secrets bundle equals the original"), 1);
            continue;
        }
        // Data equal at the recovery point: per restored copy, amcheck,
        // row counts and a content hash of every table against the source
        // rebuilt at the last trade present, and the trading invariants.
        let copies = if name == "database-loss" { 2 } else { 1 };
        if name == "region-loss" {
            // The primary repository was deleted before the restore.
            assert_eq!(
                checked("restored from the secondary repository only"),
                1,
                "{validations:?}"
            );
        }
        for what in [
            "amcheck",
            "row counts",
            "content hash of each table",
            "trading invariants",
        ] {
            assert_eq!(checked(what), copies, "{name}: {what}: {validations:?}");
        }
        let (before, after) = (
            s["last_trade_before"].as_u64().unwrap(),
            s["last_trade_after"].as_u64().unwrap(),
        );
        assert!(after > 2_000 && after <= before + 1, "{name}: {s}");
        assert_eq!(
            s["rpo_trades"].as_u64().unwrap(),
            before.saturating_sub(after)
        );
        if name == "database-loss" {
            // The stream's promise: what committed more than 2 s before
            // the loss is in the repository.
            assert!(num(&s["rpo_actual_seconds"]) < 2.0, "{name}: {s}");
        }
    }
    let svg = std::fs::read_to_string(dir.join("timeline.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("database-loss"),
        "{svg}"
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Drill checklist (runbook section 6)"));
    assert_nothing_left(&place);
}

#[test]
fn every_injected_fault_is_detected_and_named() {
    let place = place();
    let mut args = vec!["--json"];
    for f in [
        "missing-wal",
        "corrupt-object",
        "truncated-object",
        "wrong-key",
        "stale-repository",
    ] {
        args.extend(["--inject", f]);
    }
    let out = command(&place, &args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["status"], "FAILED");
    let expected = [
        ("secrets-loss", vec!["wrong-key"]),
        ("accidental-deletion", vec!["missing-wal"]),
        ("replica-failover", vec!["stale-repository"]),
        ("database-loss", vec!["corrupt-object", "truncated-object"]),
    ];
    for (s, (name, faults)) in r["scenarios"].as_array().unwrap().iter().zip(expected) {
        assert_eq!(s["name"], name);
        assert_eq!(s["verdict"], "FAILED", "{s}");
        let mut detected: Vec<&str> = s["faults_detected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        detected.sort();
        assert_eq!(detected, faults, "{name}: {s}");
        let failures: Vec<&str> = s["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        for f in faults {
            assert!(
                failures.contains(&format!("injected fault {f} detected").as_str()),
                "{name}: {failures:?}"
            );
        }
    }
    let incident = r["incident"].as_str().unwrap();
    assert!(
        place
            .cwd
            .join("cfdr-repo/incidents")
            .join(incident)
            .is_dir(),
        "incident {incident} stored"
    );
    assert_eq!(stored_report(&place).1, r);
    assert_nothing_left(&place);
}

#[test]
fn ctrl_c_in_the_middle_removes_the_sandbox_and_reports_cancelled() {
    let place = place();
    let mut child = command(&place, &["--scenario", "accidental-deletion"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains("WAL through the DELETE safe in the repository") {
                let _ = tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    // The signal comes while a later step runs: the two quick checks and
    // then the PITR restore (about 1.2 s on a quiet machine, longer under
    // load) follow the line at once.
    let reached = rx.recv_timeout(Duration::from_secs(180));
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let seen = reader.join().unwrap();
    assert!(
        reached.is_ok(),
        "the drill never reached the restore: {seen}"
    );
    assert_eq!(out.status.code(), Some(130), "{seen}");
    let (_, r) = stored_report(&place);
    assert_eq!(r["status"], "CANCELLED", "{seen}");
    assert_eq!(r["cleanup"]["status"], "removed", "{}", r["cleanup"]);
    let interrupted: Vec<&Value> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["error"] == "interrupted")
        .collect();
    assert_eq!(
        interrupted.len(),
        1,
        "the step running at Ctrl-C: {interrupted:?}"
    );
    assert_nothing_left(&place);
}
