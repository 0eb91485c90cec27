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
