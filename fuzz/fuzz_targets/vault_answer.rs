//! Answers of a Vault KV v2 server (`GET .../data/<path>`, `LIST
//! .../metadata/<path>`, error bodies), as the secrets backup reads them.
//! The first byte picks the HTTP status.
#![no_main]

use cfdr_secrets::VaultClient;
use cfdr_secrets::VaultPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let status = [200u16, 200, 200, 404, 500, 400, 412, 503][usize::from(pick % 8)];
    let url: url::Url = "http://127.0.0.1:8200/v1/secret/data/app/db"
        .parse()
        .expect("a valid URL");
    let path = VaultPath {
        mount: "secret".into(),
        path: "app/db".into(),
    };
    if let Ok(Some(secret)) = VaultClient::read_answer(&url, &path, status, body) {
        for (name, entry) in secret.fields.iter() {
            assert!(!name.is_empty());
            assert_eq!(entry.version, Some(secret.version));
        }
    }
    let _ = VaultClient::list_answer(&url, status, body);
});
