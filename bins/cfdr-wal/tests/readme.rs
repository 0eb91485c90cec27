//! The cfdr-wal command table of docs/wal-archiving.md ("Commands") lists
//! every command `cfdr-wal --help` offers.
#![allow(clippy::unwrap_used)]

#[test]
fn every_command_is_in_the_readme_table() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/wal-archiving.md"
    ))
    .unwrap();
    let section = &page[page.find("\n## Commands\n").unwrap() + 1..];
    let section = &section[..section[1..].find("\n## ").unwrap()];
    let commands = cfdr_testing::subcommands(env!("CARGO_BIN_EXE_cfdr-wal"));
    assert!(commands.len() >= 7, "{commands:?}");
    for c in commands {
        assert!(
            section.contains(&format!("| `{c}")),
            "docs/wal-archiving.md \"Commands\" lacks cfdr-wal {c}"
        );
    }
}
