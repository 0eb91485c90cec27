//! The workspace's binaries, for tests that run them as a user would (the
//! end-to-end, reliability and bad-input suites).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace's top folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testing sits two levels below the workspace")
        .to_path_buf()
}

/// (package, binary) of every `bins/*/Cargo.toml`: the `[[bin]]` name when
/// the manifest has one, else the package name.
pub fn binaries() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for dir in std::fs::read_dir(workspace_root().join("bins")).expect("bins/ is readable") {
        let manifest = dir.expect("bins/ lists").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let mut section = "";
        let (mut package, mut bin) = (None, None);
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
                continue;
            }
            let Some(value) = line
                .strip_prefix("name")
                .and_then(|r| r.trim_start().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
            else {
                continue;
            };
            match section {
                "[package]" => package = package.or(Some(value)),
                "[[bin]]" => bin = bin.or(Some(value)),
                _ => {}
            }
        }
        let package = package.unwrap_or_else(|| panic!("{} names no package", manifest.display()));
        let bin = bin.unwrap_or_else(|| package.clone());
        found.push((package, bin));
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    assert!(!found.is_empty(), "no binaries under bins/");
    found
}

/// The binaries' folder (`target/<profile>`). `cargo nextest run
/// --workspace` (scripts/test) builds every binary there, since each has
/// tests of its own; any that is missing (one test file run alone, a new
/// binary without tests) is built here with the cargo and profile that built
/// the running test. Run alone after changing a binary: `cargo build --bins`
/// first.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Tests run from target/<profile>/deps/.
        let exe = std::env::current_exe().expect("the test knows its path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
        if binaries()
            .iter()
            .all(|(_, bin)| profile_dir.join(bin).is_file())
        {
            return profile_dir;
        }
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", target_dir)
            .args(["build", "--locked", "--bins"]);
        for (package, _) in binaries() {
            cmd.args(["-p", &package]);
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building the binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir
    })
}

/// The path of the workspace binary `name` (`cfdr-backup`, `cfdr-wal`...).
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace (cargo build --workspace --bins)",
        path.display()
    );
    path
}
