//! Inputs that made a fuzz target of `fuzz/` fail (docs/reliability.md,
//! "Hostile input"), kept under `tests/fuzz/` and fed to the same parser.
#![allow(clippy::unwrap_used)]

use cfdr_storage::Manifest;

/// A damaged manifest whose object sizes add up past `u64::MAX`: the
/// listing's total saturates instead of overflowing (a panic in debug
/// builds, a wrapped size in release ones).
#[test]
fn manifest_sizes_past_u64_max_saturate() {
    let raw = include_bytes!("fuzz/manifest-size-overflow.json");
    let manifest: Manifest = serde_json::from_slice(raw).unwrap();
    assert_eq!(manifest.objects.len(), 2);
    assert_eq!(manifest.stored_size(), u64::MAX);
}
