//! The manual restore of docs/repository-format.md ("Restoring by hand,
//! without cfdr", linked from the README's tour) run as
//! written with bash against a real encrypted backup: only the three values
//! an operator fills in (repository folder, backup id, identity file) are
//! set by the test. The restored database must equal the source.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// Precedes the shell block in docs/repository-format.md that this test runs.
const MARKER: &str = "<!-- test: manual-restore -->";

/// The first ```sh block after the marker.
fn manual_restore_block() -> String {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/repository-format.md"
    ))
    .unwrap();
    let after = &readme[readme
        .find(MARKER)
        .expect("docs/repository-format.md has the manual-restore marker")..];
    let start = after
        .find("```sh\n")
        .expect("a ```sh block follows the marker")
        + 6;
    let end = after[start..].find("```").unwrap();
    after[start..start + end].to_owned()
}

/// `block` with the operator's values: each `NAME=` line in `values` must
/// be there, and is replaced whole.
fn fill_in(block: &str, values: &[(&str, String)]) -> String {
    let mut filled = Vec::new();
    let mut seen = 0;
    for line in block.lines() {
        match values
            .iter()
            .find(|(name, _)| line.starts_with(&format!("{name}=")))
        {
            Some((name, value)) => {
                seen += 1;
                filled.push(format!("{name}={value}"));
            }
            None => filled.push(line.to_owned()),
        }
    }
    assert_eq!(seen, values.len(), "the block sets {values:?}:\n{block}");
    filled.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_manual_restore_works_as_written() {
    let cluster = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 10, 500).await {
        Ok(c) => c,
        Err(e) => {
            return cfdr_testing::missing::<()>(&format!("PostgreSQL 15 ({e})"), "README restore")
                .unwrap_or(());
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = cfdr_secrets::generate_identity();
    let identity = dir.path().join("identity.txt");
    std::fs::write(&identity, secret.as_bytes()).unwrap();
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = dir.path().join("repo");
    let store = cfdr_storage::StorageOptions::from_url(format!("file://{}", root.display()))
        .build()
        .unwrap();
    let repo = cfdr_storage::Repository::init(store).await.unwrap();
    let encode = cfdr_storage::EncodeOptions::default()
        .encrypt_to(cfdr_secrets::Recipients::parse([public.as_str()]).unwrap());
    let source = cluster.target("cryptofunk");
    let manifest = cfdr_pg::logical::backup(
        &repo,
        &source,
        "manual",
        &cfdr_pg::logical::LogicalOptions::default(),
        &encode,
    )
    .await
    .unwrap();
    let key = &manifest.objects[0].key;
    assert!(
        key.ends_with("/dump.pgdump.zst.age"),
        "the name says zstd inside age: {key}"
    );

    let script = fill_in(
        &manual_restore_block(),
        &[
            ("REPO", root.display().to_string()),
            ("ID", manifest.id.to_string()),
            ("IDENTITY", identity.display().to_string()),
        ],
    );
    let bin_dir = cluster.bin().path("pg_restore");
    let path = format!(
        "{}:{}",
        bin_dir.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .env("PGHOST", &cluster.socket_dir)
        .env("PGPORT", cluster.port.to_string())
        .env("PGUSER", "postgres")
        .env_remove("PGDATABASE")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let shown = format!(
        "{script}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": OK"),
        "the checksum step checked: {shown}"
    );

    let restored = cluster.target("cryptofunk_restore");
    let want = cfdr_testing::pg::content_fingerprint(&source)
        .await
        .unwrap();
    let got = cfdr_testing::pg::content_fingerprint(&restored)
        .await
        .unwrap();
    assert_eq!(got, want, "{shown}");
}
