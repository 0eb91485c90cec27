//! Backup manifests (`backups/<id>/manifest.json`) as read from a
//! repository, and the kind-specific details restores take from them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<cfdr_storage::Manifest>(data) else {
        return;
    };
    // What listings, verify and restores compute from a manifest.
    let _ = manifest.stored_size();
    let _ = manifest.duration();
    let _ = manifest.id.time();
    let _ = manifest.id.kind();
    let _ = manifest.id.manifest_key();
    let _ = cfdr_pg::logical::LogicalDetails::of(&manifest);
    let _ = cfdr_pg::physical::PhysicalDetails::of(&manifest);
    // A manifest read must write back as the same document.
    let written = serde_json::to_vec(&manifest).expect("a read manifest serializes");
    let again: cfdr_storage::Manifest =
        serde_json::from_slice(&written).expect("a written manifest reads back");
    assert_eq!(again, manifest);
});
