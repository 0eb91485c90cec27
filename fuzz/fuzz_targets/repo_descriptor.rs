//! The repository descriptor `cfdr.json` and backup ids (folder names
//! under `backups/`), as every command reads them when it opens a
//! repository.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = serde_json::from_slice::<cfdr_storage::RepoConfig>(data) {
        let _ = config.format_version > cfdr_storage::FORMAT_VERSION;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = cfdr_storage::BackupId::parse(text) {
        let _ = id.time();
        let _ = id.prefix();
        assert_eq!(
            cfdr_storage::BackupId::parse(id.as_str()).ok().as_ref(),
            Some(&id),
            "a parsed backup id parses again as itself"
        );
    }
});
