//! WAL and history file names (`%f` of `archive_command` and
//! `restore_command`, names listed under `wal/`), LSNs, and the segment
//! sizes they are read with.
#![no_main]

use std::str::FromStr;

use cfdr_retention::{Lsn, WalFile, WalSegment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a segment size (valid ones and not), the rest is
    // the name.
    let Some((&size_pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(name) = std::str::from_utf8(rest) else {
        return;
    };
    let segment_size = match size_pick % 4 {
        0 => 16 << 20,
        1 => 1 << 20,
        2 => 1 << 30,
        _ => u64::from(size_pick) << 20,
    };
    if cfdr_retention::check_segment_size(segment_size).is_ok() {
        if let Ok(file) = WalFile::parse(name, segment_size) {
            let _ = file.timeline();
            let _ = file.lsn_range(segment_size);
            // Hex digits are read in either case; PostgreSQL writes upper case.
            assert!(
                file.file_name(segment_size).eq_ignore_ascii_case(name),
                "a parsed WAL file name prints as itself: {name}"
            );
        }
        if let Ok(segment) = WalSegment::parse(name, segment_size) {
            let _ = segment.start_lsn(segment_size);
            let _ = segment.end_lsn(segment_size);
        }
    }
    if let Some(file) = cfdr_storage::wal_archive::wal_file_name(name) {
        let _ = cfdr_storage::wal_archive::wal_key(file);
    }
    if let Ok(lsn) = Lsn::from_str(name) {
        assert_eq!(Lsn::from_str(&lsn.to_string()).ok(), Some(lsn));
    }
});
