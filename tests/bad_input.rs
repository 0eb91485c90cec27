//! Every binary, fed wrong flags, a missing or unreadable config file, an
//! unreachable repository or a repository of a newer format version: one
//! clear message naming the cause, the documented exit code, never a panic
//! or a backtrace (RUST_BACKTRACE=1 is set on purpose, as on many
//! operators' machines).
//!
//! The binaries are those of `bins/*/Cargo.toml`, so a new binary is tested
//! as soon as it exists; [`PROBES`] says, per binary, which command to run
//! and which exit code its documentation gives for an error. A binary
//! without a probe fails the test with what to add.
#![allow(clippy::unwrap_used)]

use cfdr_testing::bins::{binaries, workspace_bin};
use std::process::{Command, Output};

/// A command of one binary that loads the config and, when
/// `repository`, opens the repository: what each bad input is fed to.
struct Probe {
    bin: &'static str,
    args: &'static [&'static str],
    /// Opens the repository (else the bad-repository cases do not apply:
    /// the command talks to PostgreSQL only).
    repository: bool,
    /// The documented exit code of an error, usage errors included.
    error_code: i32,
    /// How many of `args` come before the flags under test: the front
    /// command takes options only after the command it runs.
    flags_after: usize,
}

/// One probe per command whose exit codes differ; every binary of `bins/`
/// needs at least one.
const PROBES: &[Probe] = &[
    // The front command: the command it runs answers, exit code included.
    Probe {
        bin: "cfdr",
        args: &["repo", "info"],
        repository: true,
        error_code: 2,
        flags_after: 1,
    },
    Probe {
        bin: "cfdr-backup",
        args: &["list"],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    Probe {
        bin: "cfdr-copy",
        args: &["--dry-run"],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    // A drill with a configuration restores into scratch targets; the
    // bad-repository cases are covered by the commands it calls.
    Probe {
        bin: "cfdr-drill",
        args: &[],
        repository: false,
        error_code: 2,
        flags_after: 0,
    },
    Probe {
        bin: "cfdr-incident",
        args: &["list"],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    Probe {
        bin: "cfdr-prune",
        args: &["--dry-run"],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    // status talks to PostgreSQL only (the repository is opened by
    // `promote --adopt-timeline`, after a promotion).
    Probe {
        bin: "cfdr-replica",
        args: &["status"],
        repository: false,
        error_code: 2,
        flags_after: 0,
    },
    Probe {
        bin: "cfdr-repo",
        args: &["info"],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    Probe {
        bin: "cfdr-restore",
        args: &["logical"],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    Probe {
        bin: "cfdr-secrets",
        args: &["list"],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    // Monitoring-plugin codes: 3 is "unknown", for anything before a
    // measurement.
    Probe {
        bin: "cfdr-status",
        args: &[],
        repository: true,
        error_code: 3,
        flags_after: 0,
    },
    Probe {
        bin: "cfdr-verify",
        args: &[],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    Probe {
        bin: "cfdr-wal",
        args: &["list"],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    Probe {
        bin: "cfdr-wal",
        args: &["push", "pg_wal/000000010000000000000001"],
        repository: true,
        error_code: 2,
        flags_after: 0,
    },
    // restore_command: PostgreSQL stops recovery on an exit above 125
    // instead of ending it on incomplete WAL.
    Probe {
        bin: "cfdr-wal",
        args: &["fetch", "000000010000000000000001", "pg_wal/RECOVERYXLOG"],
        repository: true,
        error_code: 128,
        flags_after: 0,
    },
];

/// Where the bad inputs live: a missing config path, a config that is a
/// folder, a config naming an S3 endpoint nobody listens on, and a folder
/// repository whose `cfdr.json` has a format version from the future.
struct Inputs {
    dir: tempfile::TempDir,
    port: u16,
}

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = cfdr_testing::closed_port();
        std::fs::create_dir(dir.path().join("config-folder")).unwrap();
        std::fs::write(
            dir.path().join("unreachable.toml"),
            format!(
                "[repository]\nurl = \"s3://cfdr-bad-input/repo?region=us-east-1\"\n\
                 [repository.s3]\nendpoint = \"http://127.0.0.1:{port}\"\n\
                 [repository.retry]\nmax-retries = 1\nmin-delay-ms = 10\nmax-delay-ms = 20\n"
            ),
        )
        .unwrap();
        let newer = dir.path().join("newer-repo");
        std::fs::create_dir(&newer).unwrap();
        let future = cfdr_storage::FORMAT_VERSION + 1;
        std::fs::write(
            newer.join(cfdr_storage::CONFIG_KEY),
            format!(
                "{{\"format_version\": {future}, \"id\": \"0123456789abcdef\", \
                 \"created\": \"2030-01-01T00:00:00Z\", \"created_by\": \"cfdr 9.0.0\"}}\n"
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("pg_wal")).unwrap();
        Self { dir, port }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// Runs `bin` with `args` in the inputs' folder and a clean environment:
/// no config or repository from this machine, fake cloud credentials (so
/// the S3 client gets as far as the network), PostgreSQL on a closed port,
/// and RUST_BACKTRACE=1.
fn run(inputs: &Inputs, bin: &str, args: &[&str]) -> Output {
    Command::new(workspace_bin(bin))
        .args(args)
        .current_dir(inputs.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", inputs.dir.path())
        .env("RUST_BACKTRACE", "1")
        .env("AWS_ACCESS_KEY_ID", "cfdr-bad-input")
        .env("AWS_SECRET_ACCESS_KEY", "cfdr-bad-input")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", inputs.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .unwrap()
}

/// Checks one run: `code`, a single `error:` line that contains every
/// `words` and each cause once, nothing on stdout, no panic, no
/// backtrace, no log lines.
fn check(case: &str, bin: &str, args: &[&str], out: &Output, code: i32, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let shown = format!(
        "{case}: {bin} {}\n--- exit {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        args.join(" "),
        out.status.code()
    );
    assert_eq!(out.status.code(), Some(code), "exit code of {shown}");
    for bad in [
        "panicked",
        "stack backtrace",
        "Backtrace:",
        "RUST_BACKTRACE",
        " ERROR ",
        " WARN ",
    ] {
        assert!(!stderr.contains(bad), "{bad:?} in {shown}");
    }
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error message in {shown}");
    let parts: Vec<&str> = errors[0].split(": ").collect();
    assert!(
        parts.windows(2).all(|w| w[0] != w[1]),
        "each cause once in {shown}"
    );
    for word in words {
        assert!(errors[0].contains(word), "{word:?} named in {shown}");
    }
    assert!(stdout.trim().is_empty(), "nothing on stdout in {shown}");
}

/// `probe.args` with global flags put first (clap takes them anywhere), or
/// after the command words of the front command.
fn with(flags: &[&str], probe: &Probe) -> Vec<String> {
    let (command, rest) = probe.args.split_at(probe.flags_after);
    command
        .iter()
        .chain(flags)
        .chain(rest)
        .map(|s| (*s).to_owned())
        .collect()
}

#[test]
fn every_binary_has_a_probe() {
    let missing: Vec<String> = binaries()
        .into_iter()
        .map(|(_, bin)| bin)
        .filter(|bin| !PROBES.iter().any(|p| p.bin == bin))
        .collect();
    assert!(
        missing.is_empty(),
        "add a Probe to PROBES in tests/bad_input.rs for {missing:?} (a command that loads the config and opens the repository, and its documented error exit code)"
    );
}

#[test]
fn wrong_flags_are_one_usage_message() {
    let inputs = Inputs::new();
    for probe in PROBES {
        // An unknown flag after the command words, and one before them.
        for args in [
            with(&[], probe)
                .into_iter()
                .chain(["--no-such-flag".to_owned()])
                .collect::<Vec<_>>(),
            with(&["--no-such-flag"], probe),
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(&inputs, probe.bin, &args);
            check(
                "wrong flag",
                probe.bin,
                &args,
                &out,
                probe.error_code,
                &["--no-such-flag"],
            );
        }
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let inputs = Inputs::new();
    let missing = inputs.path("no-such-dir/cfdr.toml");
    for probe in PROBES {
        let args = with(&["--config", &missing], probe);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&inputs, probe.bin, &args);
        check(
            "missing config",
            probe.bin,
            &args,
            &out,
            probe.error_code,
            &["cannot read config file", &missing, "No such file"],
        );
    }
}

#[test]
fn an_unreadable_config_file_is_named() {
    let inputs = Inputs::new();
    // A folder: unreadable as a file even for root, which this suite runs as.
    let folder = inputs.path("config-folder");
    for probe in PROBES {
        let args = with(&["--config", &folder], probe);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&inputs, probe.bin, &args);
        check(
            "unreadable config",
            probe.bin,
            &args,
            &out,
            probe.error_code,
            &["cannot read config file", &folder],
        );
    }
}

#[test]
fn an_unreachable_repository_names_the_endpoint() {
    let inputs = Inputs::new();
    let config = inputs.path("unreachable.toml");
    let endpoint = format!("http://127.0.0.1:{}", inputs.port);
    for probe in PROBES.iter().filter(|p| p.repository) {
        let args = with(&["--config", &config], probe);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&inputs, probe.bin, &args);
        check(
            "unreachable repository",
            probe.bin,
            &args,
            &out,
            probe.error_code,
            &["cannot reach", &endpoint],
        );
    }
    // The commands that talk to PostgreSQL only: an unreachable server.
    // Without a config file cfdr-drill builds its own sandbox cluster and
    // reaches no outside server.
    for probe in PROBES
        .iter()
        .filter(|p| !p.repository && p.bin != "cfdr-drill")
    {
        let args = with(&[], probe);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&inputs, probe.bin, &args);
        check(
            "unreachable server",
            probe.bin,
            &args,
            &out,
            probe.error_code,
            &["cannot connect to PostgreSQL", &inputs.port.to_string()],
        );
    }
}

#[test]
fn a_repository_of_a_newer_format_says_upgrade() {
    let inputs = Inputs::new();
    let url = format!("file://{}", inputs.path("newer-repo"));
    let future = (cfdr_storage::FORMAT_VERSION + 1).to_string();
    for probe in PROBES.iter().filter(|p| p.repository) {
        let args = with(&["--repository", &url], probe);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&inputs, probe.bin, &args);
        check(
            "newer format",
            probe.bin,
            &args,
            &out,
            probe.error_code,
            &[&format!("repository format {future}"), &url, "upgrade cfdr"],
        );
    }
}
