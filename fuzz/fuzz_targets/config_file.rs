//! The config file (`cfdr.toml`): TOML into every section's settings, then
//! the validations each binary runs at start.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = cfdr_config::Config::from_toml(text) else {
        return;
    };
    let _ = config.retention.validate();
    let _ = config.retention.zone();
    let _ = config.incident.validate();
    let _ = config.guard_settings();
    if let Some(url) = &config.repository.url {
        let _ = cfdr_storage::Location::parse(url);
    }
    // Without a recipients file nothing is read from disk here.
    if config.encryption.recipients_file.is_none() {
        let _ = config.encode_options();
    }
});
