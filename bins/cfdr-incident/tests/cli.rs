//! cfdr-incident as a user runs it: a whole incident from `open` to
//! `report`, exit codes, messages, the halt, notifications, and two
//! processes appending to one incident at once.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use cfdr_testing::{Backend, TestLocation};

/// A repository plus the config and environment the binary runs with.
struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    vars: Vec<(&'static str, String)>,
}

impl Env {
    async fn new(options: cfdr_storage::StorageOptions, extra_toml: &str) -> Self {
        cfdr_storage::Repository::init(options.build().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cfdr.toml");
        let mut repository = options;
        // The child reads credentials from the AWS variables below.
        repository.s3.explicit_credentials_only = false;
        let mut table = toml::Table::new();
        table.insert(
            "repository".into(),
            toml::Value::try_from(&repository).unwrap(),
        );
        let text = toml::to_string(&table).unwrap() + extra_toml;
        std::fs::write(&config, text).unwrap();
        Self {
            _dir: dir,
            config,
            vars: vec![
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ],
        }
    }

    async fn fs(extra_toml: &str) -> (Self, TestLocation) {
        let loc = TestLocation::new(Backend::Fs, "cli").unwrap();
        (Self::new(loc.options.clone(), extra_toml).await, loc)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cfdr-incident"));
        c.arg("--config").arg(&self.config).args(args);
        for v in [
            "CFDR_CONFIG",
            "CFDR_REPOSITORY",
            "CFDR_AUTHOR",
            "CFDR_PAGERDUTY_ROUTING_KEY",
            "CFDR_SLACK_WEBHOOK_URL",
            "CFDR_SMTP_USERNAME",
            "CFDR_SMTP_PASSWORD",
            "RUST_LOG",
        ] {
            c.env_remove(v);
        }
        c.env("USER", "oncall");
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }
}

use cfdr_testing::output_text as text;

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-incident"))
        .arg("--help")
        .output()
        .unwrap();
    let help = text(&out);
    assert!(out.status.success());
    assert!(help.contains("cfdr-incident open --severity P0"), "{help}");
    let words = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(
            "Exit codes: 0 success, 1 an SLA is breached (`overdue`) or trading is halted (`halted`"
        ),
        "{help}"
    );
    assert!(help.contains("cfdr-incident halted"), "{help}");
    assert!(help.contains("CFDR_SLACK_WEBHOOK_URL"), "{help}");
}

const NO_NOTIFY: &str = "--no-notify";

#[tokio::test]
async fn a_whole_incident_from_open_to_report() {
    let (env, _loc) = Env::fs("").await;
    let at = |hm: &str| format!("2025-11-06T{hm}:00Z");
    let id = "INC-20251106-001";
    let steps: Vec<Vec<String>> = vec![
        vec![
            "open",
            "--severity",
            "P0",
            "Database connection failures",
            "--commander",
            "Dana",
            "--text",
            "Alert triggered: Database connection failures",
            "--at",
            &at("14:30"),
        ],
        vec![
            "ack",
            id,
            "On-call acknowledged",
            "--author",
            "dana",
            "--at",
            &at("14:31"),
        ],
        vec![
            "status",
            id,
            "Failing over to the replica",
            "--at",
            &at("14:33"),
        ],
        vec![
            "identify",
            id,
            "--root-cause",
            "max_connections (100) exhausted by a connection leak",
            "--at",
            &at("14:35"),
        ],
        vec![
            "mitigate",
            id,
            "Restarted database, raised max_connections",
            "--at",
            &at("14:40"),
        ],
        vec![
            "resume-trading",
            id,
            "--reason",
            "smoke tests green",
            "--at",
            &at("14:45"),
        ],
        vec!["resolve", id, "All-clear confirmed", "--at", &at("14:50")],
        vec![
            "postmortem",
            id,
            "--summary",
            "Connections leaked; trading halted 15 minutes.",
            "--step",
            "Restarted PostgreSQL",
            "--step",
            "Deployed hotfix",
            "--lesson",
            "Monitor connection counts",
            "--financial-impact",
            "$0",
            "--users-affected",
            "N/A (automated system)",
        ],
        vec![
            "action",
            "add",
            id,
            "Add monitoring for database connection count",
            "--owner",
            "dana",
        ],
        vec!["action", "done", id, "1"],
        vec!["link", id, "--backup", "20251106T140000.000Z-logical-ab12"],
        vec!["close", id],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    for step in &steps {
        let mut args: Vec<&str> = step.iter().map(String::as_str).collect();
        args.push(NO_NOTIFY);
        let out = env.ok(&args);
        assert!(out.starts_with(id), "{out}");
    }
    let report = env.ok(&["report", id]);
    let headings: Vec<&str> = report.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        headings,
        [
            "# Incident Report: Database connection failures",
            "## Summary",
            "## Impact",
            "## Timeline (UTC)",
            "## Root Cause",
            "## Resolution",
            "## Action Items",
            "## Lessons Learned",
            "## Related",
        ]
    );
    for line in [
        "**Status**: Closed",
        "**Incident Commander**: Dana",
        "- Trading stopped for: 15 minutes",
        "- 14:30 - Alert triggered: Database connection failures (oncall)",
        "- 14:31 - On-call acknowledged (dana)",
        "- 14:45 - Trading resumed: smoke tests green (oncall)",
        "- [x] Add monitoring for database connection count (owner: dana)",
        "2. Deployed hotfix",
    ] {
        assert!(
            report.lines().any(|l| l == line),
            "missing {line:?} in\n{report}"
        );
    }

    let list: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["status"], "closed");
    assert_eq!(env.ok(&["list", "--open"]), "");
    let show = env.ok(&["show", id]);
    assert!(
        show.contains("[P0] closed: Database connection failures"),
        "{show}"
    );
}

#[tokio::test]
async fn p0_halts_trading_until_resumed_with_a_reason() {
    let (env, _loc) = Env::fs("").await;
    let out = env.ok(&["open", "-s", "P0", "Exchange API keys leaked", NO_NOTIFY]);
    assert!(out.contains("TRADING HALTED"), "{out}");
    let id = out.split_whitespace().next().unwrap().to_owned();
    let halted = env.run(&["halted"]);
    assert_eq!(halted.status.code(), Some(1), "{}", text(&halted));
    assert!(text(&halted).contains(&id));

    let no_reason = env.run(&["resume-trading", &id]);
    assert_eq!(no_reason.status.code(), Some(2));
    assert!(
        text(&no_reason).contains("--reason"),
        "{}",
        text(&no_reason)
    );
    let blank = env.run(&["resume-trading", &id, "--reason", " ", NO_NOTIFY]);
    assert_eq!(blank.status.code(), Some(2));
    assert!(text(&blank).contains("the reason for resuming trading must not be empty"));

    env.ok(&[
        "resume-trading",
        &id,
        "--reason",
        "keys rotated",
        "--author",
        "sec-lead",
        NO_NOTIFY,
    ]);
    assert_eq!(env.run(&["halted"]).status.code(), Some(0));
    let shown: serde_json::Value = serde_json::from_str(&env.ok(&["show", &id, "--json"])).unwrap();
    assert_eq!(shown["halts"][0]["cleared_by"], "sec-lead");
    assert_eq!(shown["halts"][0]["cleared_reason"], "keys rotated");

    // --no-halt opens a P0 without halting; --halt halts any severity.
    let out = env.ok(&[
        "open",
        "-s",
        "P0",
        "Dashboards down",
        "--no-halt",
        NO_NOTIFY,
    ]);
    assert!(!out.contains("TRADING HALTED"), "{out}");
    let out = env.ok(&["open", "-s", "P2", "Odd fills", "--halt", NO_NOTIFY]);
    assert!(out.contains("TRADING HALTED"), "{out}");
}

/// A flipped byte in the event that halts trading: `halted` must not say
/// "not halted"; it exits 1 naming the key, and `list` shows the damage.
#[tokio::test]
async fn a_damaged_halt_event_fails_closed() {
    let (env, loc) = Env::fs("").await;
    let out = env.ok(&["open", "-s", "P2", "Odd fills", NO_NOTIFY]);
    let id = out.split_whitespace().next().unwrap().to_owned();
    env.ok(&["halt", &id, "--reason", "fills off by 10x", NO_NOTIFY]);
    env.ok(&["note", &id, "checking the matching engine", NO_NOTIFY]);
    env.ok(&["open", "-s", "P3", "Dashboard typo", NO_NOTIFY]);
    assert_eq!(env.run(&["halted"]).status.code(), Some(1));

    // Flip one byte of event 2 (halt-set) where it turns the JSON invalid.
    let store = loc.options.build().unwrap();
    let key = format!("incidents/{id}/00000002.json");
    let mut bytes = store.get(&key).await.unwrap().to_vec();
    let quote = bytes.iter().rposition(|b| *b == b'"').unwrap();
    bytes[quote] ^= 0x01;
    store.put(&key, bytes).await.unwrap();

    let halted = env.run(&["halted"]);
    assert_eq!(halted.status.code(), Some(1), "{}", text(&halted));
    let stdout = String::from_utf8_lossy(&halted.stdout);
    assert!(
        stdout.contains(&format!("{key}  DAMAGED: counts as TRADING HALTED")),
        "{}",
        text(&halted)
    );
    let stderr = String::from_utf8_lossy(&halted.stderr);
    assert!(
        stderr.contains(&key) && stderr.contains("restore each named object"),
        "{stderr}"
    );
    let as_json = env.run(&["halted", "--json"]);
    assert_eq!(as_json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert_eq!(v["halted"], true, "{v}");
    assert_eq!(v["incidents"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["damaged"][0]["key"], key.as_str(), "{v}");

    let list = env.run(&["list"]);
    assert!(list.status.success(), "{}", text(&list));
    let listed = String::from_utf8_lossy(&list.stdout);
    let line = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        line.ends_with("DAMAGED: counts as TRADING HALTED"),
        "{listed}"
    );
    assert!(
        listed.contains("Dashboard typo"),
        "the rest still lists: {listed}"
    );
    let warned = String::from_utf8_lossy(&list.stderr);
    assert!(warned.contains(&key), "{warned}");

    // A truncated opening event: the incident has no record at all, and
    // still counts as halting.
    let first = format!("incidents/{id}/00000001.json");
    let bytes = store.get(&first).await.unwrap().to_vec();
    store
        .put(&first, bytes[..bytes.len() / 3].to_vec())
        .await
        .unwrap();
    let halted = env.run(&["halted"]);
    assert_eq!(halted.status.code(), Some(1), "{}", text(&halted));
    assert!(text(&halted).contains(&format!("incidents/{id}/")));
    let list = env.run(&["list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&format!(
            "incidents/{id}/  DAMAGED: counts as TRADING HALTED"
        )),
        "{}",
        text(&list)
    );
}

#[tokio::test]
async fn overdue_exits_1_on_a_breach_and_0_when_all_is_in_time() {
    let (env, _loc) = Env::fs("").await;
    env.ok(&[
        "open",
        "-s",
        "P1",
        "Agent failures",
        "--at",
        "2025-11-06T10:00:00Z",
        NO_NOTIFY,
    ]);
    let check = |at: &str| env.run(&["overdue", "--at", at]);
    let early = check("2025-11-06T10:10:00Z");
    assert_eq!(early.status.code(), Some(0), "{}", text(&early));
    assert_eq!(text(&early), "");
    let late = check("2025-11-06T11:00:01Z");
    assert_eq!(late.status.code(), Some(1));
    let out = text(&late);
    assert!(
        out.contains("OVERDUE INC-20251106-001 (P1): acknowledgement overdue by 1s"),
        "{out}"
    );
    assert!(out.contains("status update overdue"), "{out}");
    let json: serde_json::Value = serde_json::from_slice(
        &env.run(&["overdue", "--json", "--at", "2025-11-06T11:00:01Z"])
            .stdout,
    )
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["kind"], "acknowledgement");
}

#[tokio::test]
async fn bad_input_exits_2_with_a_message() {
    let (env, _loc) = Env::fs("").await;
    let cases: &[(&[&str], &str)] = &[
        (&["open", "-s", "P5", "x"], "unknown severity \"P5\""),
        (&["open", "-s", "P1", ""], "the title must not be empty"),
        (&["ack", "INC-20251106-077"], "no incident INC-20251106-077"),
        (&["ack", "42"], "invalid incident id \"42\""),
    ];
    for (args, want) in cases {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
    let out = env.ok(&["open", "-s", "P3", "Dashboard typo", NO_NOTIFY]);
    let id = out.split_whitespace().next().unwrap();
    env.ok(&["resolve", id, NO_NOTIFY]);
    let out = env.run(&["ack", id, NO_NOTIFY]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("cannot acknowledge: it is already resolved"),
        "{}",
        text(&out)
    );
    let out = env.run(&["close", id, NO_NOTIFY]);
    assert!(
        text(&out).contains("no root cause recorded"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn failed_notifications_warn_and_land_in_the_timeline() {
    let retry = "\n[incident.retry]\nattempts = 2\nmin-delay-ms = 10\n";
    let (mut env, _loc) = Env::fs(retry).await;
    let dead = format!(
        "http://127.0.0.1:{}/services/T1/B1/topsecret",
        cfdr_testing::closed_port()
    );
    env.vars.push(("CFDR_SLACK_WEBHOOK_URL", dead));
    let out = env.run(&[
        "open",
        "-s",
        "P2",
        "Cache issues",
        "--at",
        "2025-11-06T10:00:00Z",
    ]);
    assert!(out.status.success(), "the record is kept: {}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("warning: slack notification failed (recorded in the timeline)"),
        "{all}"
    );
    assert!(
        all.contains("warning: email is routed but not configured"),
        "{all}"
    );
    assert!(!all.contains("topsecret"), "{all}");
    let show = env.ok(&["show", "INC-20251106-001"]);
    assert!(
        show.contains("Notification via slack failed after 2 attempt(s)"),
        "{show}"
    );
    assert!(!show.contains("topsecret"));
}

/// Two OS processes, each appending notes one invocation at a time.
async fn two_processes(backend: Backend, name: &str) {
    let Some(loc) = TestLocation::new(backend, name) else {
        return;
    };
    let env = Env::new(loc.options.clone(), "").await;
    env.ok(&[
        "open",
        "-s",
        "P1",
        "Replica lag",
        "--at",
        "2025-11-06T09:00:00Z",
        NO_NOTIFY,
    ]);
    const EACH: usize = 8;
    let spawn = |w: usize| {
        let mut children = Vec::new();
        for n in 0..EACH {
            let note = format!("writer {w} note {n}");
            children.push(note.clone());
            let out = env.run(&[
                "note",
                "INC-20251106-001",
                &note,
                NO_NOTIFY,
                "--author",
                &format!("w{w}"),
            ]);
            assert!(out.status.success(), "{}", text(&out));
        }
        children
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn(1));
        let b = s.spawn(|| spawn(2));
        (a.join().unwrap(), b.join().unwrap())
    });
    let shown: serde_json::Value =
        serde_json::from_str(&env.ok(&["show", "INC-20251106-001", "--json"])).unwrap();
    let timeline = shown["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 1 + 2 * EACH);
    let mut seqs: Vec<u64> = timeline
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=(1 + 2 * EACH) as u64).collect::<Vec<_>>());
    let texts: Vec<&str> = timeline
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    for note in a.iter().chain(&b) {
        assert!(texts.contains(&note.as_str()), "{note} lost");
    }
    let order: Vec<(jiff::Timestamp, u64)> = timeline
        .iter()
        .map(|e| {
            (
                e["at"].as_str().unwrap().parse().unwrap(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "time then sequence: {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_append_concurrently_on_fs() {
    two_processes(Backend::Fs, "incident-cli-fs").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_append_concurrently_on_s3_moto() {
    two_processes(Backend::S3Moto, "incident-cli-moto").await;
}
