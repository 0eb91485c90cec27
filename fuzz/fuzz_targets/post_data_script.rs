//! pg_restore's post-data script, split so that each loaded table's
//! indexes and constraints are built as soon as its rows are in. The first
//! line holds the `COPY ... FROM stdin` statements of the loaded tables,
//! separated by `|`; the rest is the script.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, script) = text.split_once('\n').unwrap_or((text, ""));
    let copies: Vec<&str> = first.split('|').collect();
    let (preamble, plan) = cfdr_pg::split_post_data(script, &copies);
    // Nothing is invented: every early statement and the rest come from
    // the script's own lines.
    assert!(preamble.len() <= script.len());
    for entries in plan.early.values() {
        for early in entries {
            assert!(!early.what.is_empty());
        }
    }
});
