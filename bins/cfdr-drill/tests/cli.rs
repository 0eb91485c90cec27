//! cfdr-drill's flags and configuration, without a sandbox: bad input is
//! refused before anything is built, with the cause and the next step.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::Duration;

const EXE: &str = env!("CARGO_BIN_EXE_cfdr-drill");

fn run(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(EXE)
        .current_dir(dir.path())
        .args(args)
        .env_remove("CFDR_CONFIG")
        .env_remove("CFDR_REPOSITORY")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_scenarios_and_faults_are_usage_errors_naming_the_choices() {
    let o = run(&["--scenario", "datacenter-fire"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "unknown scenario \"datacenter-fire\": expected one of all, secrets-loss, accidental-deletion, replica-failover, database-loss, region-loss"
        ),
        "{}",
        stderr(&o)
    );
    let o = run(&["--inject", "disk-full"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown fault \"disk-full\""),
        "{}",
        stderr(&o)
    );
    let o = run(&["--scenario", "database-loss", "--inject", "wrong-key"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--inject wrong-key goes into scenario secrets-loss, which this drill does not run: add --scenario secrets-loss"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn drill_settings_parse_and_a_configured_system_refuses_what_would_harm_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfdr.toml");
    std::fs::write(
        &config,
        "[drill]\nrto-database-secs = 120\nrto-full-system-secs = 900\nincident-severity = \"P1\"\n[objectives]\nrpo = \"1m\"\n",
    )
    .unwrap();
    let parsed = cfdr_config::Config::load(Some(&config)).unwrap();
    let objectives = parsed.drill.objectives(parsed.objectives.rpo.0);
    assert_eq!(objectives.rto_database, Duration::from_secs(120));
    assert_eq!(objectives.rto_full_system, Duration::from_secs(900));
    assert_eq!(objectives.rpo, Duration::from_secs(60));
    assert_eq!(parsed.drill.incident_severity, cfdr_incident::Severity::P1);

    for (args, says) in [
        (
            vec!["--scenario", "replica-failover"],
            "replica-failover harms a live system (it deletes rows or kills the primary) and runs only on the sandbox (`cfdr-drill --sandbox --scenario replica-failover`)",
        ),
        (
            vec!["--scenario", "replica-failover"],
            "or add --destructive, with [drill] primary-data-dir and replica-url",
        ),
        (
            vec!["--destructive", "--scenario", "replica-failover"],
            "set [drill] primary-data-dir (the primary's data directory on this host) and replica-url",
        ),
        (
            vec!["--scenario", "accidental-deletion"],
            "or add --destructive to run accidental-deletion on a canary table in the live database",
        ),
        (
            vec!["--inject", "wrong-key"],
            "--inject plants faults on the sandbox only: add --sandbox",
        ),
    ] {
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend(args);
        let o = run(&all);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{says} in {}", stderr(&o));
    }
    std::fs::write(&config, "[drill]\nrto-db = 5\n").unwrap();
    let o = run(&["--config", config.to_str().unwrap(), "--sandbox"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("rto-db"), "{}", stderr(&o));
}
