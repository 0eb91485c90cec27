//! Inputs that made a fuzz target of `fuzz/` fail (docs/reliability.md,
//! "Hostile input"), kept under `tests/fuzz/` and fed to the same parser.

/// A post-data script whose entry headers overlap (`--`, `-- Name: ...`,
/// `--`, `-- Name: ...`, `--`): the two-line entry between them stays in
/// the script instead of panicking on a slice past its end. The first line
/// holds the loaded tables' `COPY` statements, as in the fuzz target.
#[test]
fn overlapping_entry_headers_are_left_in_the_script() {
    let input = include_str!("fuzz/post-data-overlapping-headers.sql");
    let (first, script) = input.split_once('\n').unwrap_or((input, ""));
    let copies: Vec<&str> = first.split('|').collect();
    let (_, plan) = cfdr_pg::split_post_data(script, &copies);
    let moved: usize = plan.early.values().map(Vec::len).sum();
    assert!(plan.rest.len() <= script.len());
    assert!(moved <= 3, "{moved} entries moved");
}

/// A real dump whose table-of-contents entry count was damaged into a
/// number in the billions: the reader allocated for it before reading and
/// aborted the process. Now the count is checked against the entries the
/// archive holds, and the reader says which count is damaged.
#[test]
fn a_damaged_toc_entry_count_is_an_error_not_an_abort() {
    let input = include_bytes!("fuzz/dump-huge-toc-count.pgdump");
    let err =
        cfdr_pg::read_dump_archive(&input[..]).expect_err("the damaged archive must be refused");
    assert!(
        err.starts_with("the dump is damaged: its table of contents: ")
            && err.contains("a damaged entry count"),
        "{err}"
    );
}
