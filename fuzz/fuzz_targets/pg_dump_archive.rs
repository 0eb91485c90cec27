//! pg_dump custom-format archives as the streamed logical restore reads
//! them: header and table of contents (pgarchive), then the data blocks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cfdr_pg::read_dump_archive(data);
});
