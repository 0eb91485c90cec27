//! The cfdr-wal command tables list every command `cfdr-wal --help`
//! offers: the README's ("WAL archiving", "Commands") and, for the WAL
//! stream, docs/wal-streaming.md's ("Commands").
#![allow(clippy::unwrap_used)]

/// The text of the `### Commands` section after `heading` in `doc`.
fn commands_section(doc: &str, heading: &str) -> String {
    let text =
        std::fs::read_to_string(format!("{}/../../{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let part = &text[text.find(heading).unwrap()..];
    let section = &part[part.find("\n### Commands\n").unwrap() + 1..];
    let end = section[1..].find("\n## ").or(section[1..].find("\n### "));
    section[..end.map_or(section.len(), |e| e + 1)].to_owned()
}

#[test]
fn every_command_is_in_the_readme_table() {
    let tables = commands_section("README.md", "\n## WAL archiving")
        + &commands_section("docs/wal-streaming.md", "\n## ");
    let commands = cfdr_testing::subcommands(env!("CARGO_BIN_EXE_cfdr-wal"));
    assert!(commands.len() >= 7, "{commands:?}");
    for c in commands {
        assert!(
            tables.contains(&format!("| `{c}")),
            "the command tables (README \"WAL archiving > Commands\", docs/wal-streaming.md) lack cfdr-wal {c}"
        );
    }
}
