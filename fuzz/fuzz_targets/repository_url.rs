//! Repository URLs (`--repository`, `CFDR_REPOSITORY`, `[repository] url`):
//! `file://`, `s3://`, `gs://`, `azblob://`, `memory://` and plain paths.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(location) = cfdr_storage::Location::parse(text) {
        // What messages show of the location must be producible.
        let _ = location.display();
    }
});
