//! Timeline history files (`00000002.history`) as fetched from the WAL
//! archive for the continuity check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = cfdr_wal_archive::parse_history(text);
});
