//! `cfdr` as an operator runs it, against the built cfdr-* binaries next to
//! it (the workspace build: `cargo build` builds them all): the command
//! list, help and runs pass through, and a missing binary is named with how
//! to build it.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cfdr() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cfdr"))
}

/// The workspace's commands: `bins/cfdr-NAME` packages, as NAME.
fn workspace_commands() -> Vec<String> {
    let bins = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(bins)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_prefix("cfdr-").map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// `cfdr-NAME` as built beside `cfdr`.
fn built(name: &str) -> PathBuf {
    let exe = cfdr().with_file_name(format!("cfdr-{name}"));
    assert!(
        exe.is_file(),
        "{} is missing: build the workspace (cargo build --workspace --bins)",
        exe.display()
    );
    exe
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A folder holding only a copy of `cfdr` (nothing beside it), and an empty
/// folder to use as PATH.
fn lonely_cfdr() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&bin).unwrap();
    std::fs::create_dir(&empty).unwrap();
    let copy = bin.join("cfdr");
    std::fs::copy(cfdr(), &copy).unwrap();
    (dir, copy, empty)
}

#[test]
fn help_lists_every_command_with_its_own_purpose() {
    let out = Command::new(cfdr()).arg("--help").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let list = String::from_utf8(out.stdout).unwrap();
    let commands = workspace_commands();
    assert!(commands.len() >= 10, "{commands:?}");
    for name in &commands {
        // The purpose is the first sentence of the binary's own help.
        let own = Command::new(built(name)).arg("-h").output().unwrap();
        let first = String::from_utf8(own.stdout).unwrap();
        let first = first.lines().next().unwrap().to_owned();
        let sentence = first.split(". ").next().unwrap().trim_end_matches('.');
        assert!(sentence.len() > 10, "cfdr-{name} -h: {first}");
        assert!(
            words(&list).contains(&format!(" {name} {}", words(sentence))),
            "cfdr --help lacks `{name}` with {sentence:?}:\n{list}"
        );
    }
    assert!(!list.contains("not installed"), "{list}");
    assert!(
        words(&list).contains("backup Take and list PostgreSQL backups"),
        "{list}"
    );
    assert!(list.contains("cfdr COMMAND --help"), "{list}");

    // `cfdr help` is the same list; `cfdr` alone prints it as a usage error.
    let help = Command::new(cfdr()).arg("help").output().unwrap();
    assert_eq!(String::from_utf8(help.stdout).unwrap(), list);
    let bare = Command::new(cfdr()).output().unwrap();
    assert_eq!(bare.status.code(), Some(2));
    assert_eq!(String::from_utf8(bare.stderr).unwrap(), list);
}

#[test]
fn command_help_is_that_commands_help() {
    for name in workspace_commands() {
        let own = Command::new(built(&name)).arg("--help").output().unwrap();
        assert!(own.status.success(), "{}", text(&own));
        let via = Command::new(cfdr())
            .args([&name, "--help"])
            .output()
            .unwrap();
        assert_eq!(
            via.status.code(),
            Some(0),
            "cfdr {name} --help: {}",
            text(&via)
        );
        assert_eq!(
            String::from_utf8_lossy(&via.stdout),
            String::from_utf8_lossy(&own.stdout),
            "cfdr {name} --help"
        );
        let help = Command::new(cfdr()).args(["help", &name]).output().unwrap();
        assert_eq!(help.stdout, own.stdout, "cfdr help {name}");
    }
}

#[test]
fn arguments_and_exit_codes_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    // A repository folder whose name has spaces and non-ASCII letters: it
    // must reach cfdr-repo unchanged.
    let repo = dir.path().join("repo one \u{e9}t\u{e9}");
    let out = Command::new(cfdr())
        .args([
            OsStr::new("repo"),
            OsStr::new("-r"),
            repo.as_os_str(),
            OsStr::new("init"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(repo.join("cfdr.json").is_file(), "{}", text(&out));

    // Exit 1 (fetch: not in the archive) and 2 (init over an existing
    // repository; an unknown flag) come back as the command gave them.
    let dest = dir.path().join("segment");
    let fetch = |prog: &Path, args: &[&OsStr]| {
        let mut all: Vec<&OsStr> = args.to_vec();
        all.extend([
            OsStr::new("-r"),
            repo.as_os_str(),
            OsStr::new("fetch"),
            OsStr::new("000000010000000000000001"),
            dest.as_os_str(),
        ]);
        Command::new(prog).args(all).output().unwrap()
    };
    let direct = fetch(&built("wal"), &[]);
    let via = fetch(cfdr(), &[OsStr::new("wal")]);
    assert_eq!(direct.status.code(), Some(1), "{}", text(&direct));
    assert_eq!(via.status.code(), Some(1), "{}", text(&via));
    assert_eq!(via.stdout, direct.stdout);
    for args in [
        vec![OsStr::new("-r"), repo.as_os_str(), OsStr::new("init")],
        vec![OsStr::new("--no-such-flag")],
    ] {
        let direct = Command::new(built("repo")).args(&args).output().unwrap();
        let via = Command::new(cfdr())
            .arg("repo")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(direct.status.code(), Some(2), "{}", text(&direct));
        assert_eq!(via.status.code(), Some(2), "{}", text(&via));
        assert_eq!(via.stderr, direct.stderr, "{}", text(&via));
    }
}

#[test]
fn signals_reach_the_command_itself() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("identity.txt");
    let keygen = Command::new(cfdr())
        .args([
            OsStr::new("secrets"),
            OsStr::new("keygen"),
            OsStr::new("-o"),
            key.as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen));
    let recipient = String::from_utf8(keygen.stdout).unwrap();
    let recipient = recipient
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .unwrap()
        .to_owned();
    // `backup --from -` reads stdin to its end: with stdin held open it
    // waits, as a long backup would.
    let mut child = Command::new(cfdr())
        .args([
            OsStr::new("secrets"),
            OsStr::new("-r"),
            dir.path().join("repo").as_os_str(),
        ])
        .args(["backup", "--init", "--from", "-"])
        .env("CFDR_AGE_RECIPIENTS", &recipient)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The process cfdr started is cfdr-secrets itself (cfdr replaced
    // itself), so a signal sent to it reaches the command, not a wrapper.
    let exe = Path::new("/proc").join(child.id().to_string()).join("exe");
    let want = built("secrets").canonicalize().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_link(&exe).ok() != Some(want.clone()) {
        assert!(
            Instant::now() < deadline,
            "{} never became {}",
            exe.display(),
            want.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "{status:?}");
    assert!(!dir.path().join("repo/secrets").exists(), "nothing stored");
}

#[test]
fn a_missing_command_is_named_with_how_to_build_it() {
    let (_dir, lonely, empty) = lonely_cfdr();
    let out = Command::new(&lonely)
        .args(["backup", "logical"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cfdr-backup is not installed"), "{err}");
    assert!(err.contains(&lonely.display().to_string()), "{err}");
    assert!(
        err.contains("cargo build --release --bin cfdr-backup"),
        "{err}"
    );

    let list = Command::new(&lonely)
        .arg("--help")
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", text(&list));
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        words(&list).contains("restore (not installed: cargo build --release --bin cfdr-restore)"),
        "{list}"
    );

    let typo = Command::new(&lonely)
        .arg("bakup")
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(typo.status.code(), Some(2), "{}", text(&typo));
    let err = String::from_utf8(typo.stderr).unwrap();
    assert!(err.contains("cfdr has no command bakup"), "{err}");
    assert!(err.contains("cfdr --help lists the commands"), "{err}");

    let option = Command::new(&lonely)
        .args(["-r", "x", "repo"])
        .output()
        .unwrap();
    assert_eq!(option.status.code(), Some(2), "{}", text(&option));
    assert!(
        text(&option).contains("cfdr has no option -r"),
        "{}",
        text(&option)
    );
}

#[test]
fn the_binary_beside_cfdr_comes_before_path() {
    let (_dir, lonely, _) = lonely_cfdr();
    let built_dir = built("backup").parent().unwrap().to_path_buf();
    // Nothing beside it: found on PATH.
    let own = Command::new(built("backup"))
        .arg("--help")
        .output()
        .unwrap();
    let out = Command::new(&lonely)
        .args(["backup", "--help"])
        .env("PATH", &built_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, own.stdout);

    // One beside it: that one runs, although PATH has the real one, and
    // gets the arguments byte for byte (here one that is not UTF-8).
    let beside = lonely.with_file_name("cfdr-backup");
    std::fs::write(&beside, "#!/bin/sh\necho \"beside: $*\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&beside, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&lonely)
        .args([
            OsStr::new("backup"),
            OsStr::new("list"),
            OsStr::from_bytes(b"caf\xe9 x"),
        ])
        .env("PATH", &built_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert_eq!(out.stdout, b"beside: list caf\xe9 x\n");
}
