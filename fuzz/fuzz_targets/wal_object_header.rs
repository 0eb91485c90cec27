//! Stored WAL objects (`CFDR-WAL/1 {json}\n` then the encoded body) and
//! the long page header at the start of a WAL segment.
#![no_main]

use cfdr_wal_archive::{SegmentHeader, WalObjectHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, body)) = WalObjectHeader::split("wal/fuzz", data) {
        assert!(body <= data.len(), "the body starts inside the object");
        let _ = header.codec();
    }
    let _ = SegmentHeader::parse("000000010000000000000001", data);
});
