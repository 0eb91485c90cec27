//! A repository configured the way an operator configures it (a TOML file
//! with codec and encryption settings, an identity file with mode 0600),
//! exercised end to end on every backend: init, encrypted self-test, a
//! committed backup that lists, verifies and decodes, and a reopen.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use cfdr_config::Config;
use cfdr_storage::{Compression, Repository, decode_to};
use cfdr_testing::{Backend, TestLocation};

async fn configured_repository_round_trip(loc: TestLocation) {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = cfdr_secrets::generate_identity();
    let identity = dir.path().join("identity.txt");
    std::fs::write(&identity, secret.as_bytes()).unwrap();
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config_file = dir.path().join("cfdr.toml");
    std::fs::write(
        &config_file,
        format!(
            "[codec]\ncompression = \"gzip\"\nlevel = 5\n\n[encryption]\nrecipients = [\"{public}\"]\nidentity-file = \"{}\"\n",
            identity.display()
        ),
    )
    .unwrap();

    let mut config = Config::load(Some(&config_file)).unwrap();
    config.repository = loc.options.clone();
    let opts = config.encode_options().unwrap();
    assert_eq!(opts.compression, Compression::Gzip);
    let ids = Arc::new(config.identities().unwrap().unwrap());

    let repo = Repository::open_or_init(config.repository.build().unwrap())
        .await
        .unwrap();
    let report = repo
        .self_test(3 << 20, &opts, Some(ids.clone()), false)
        .await
        .unwrap();
    assert_eq!(report.raw_bytes, 3 << 20);
    assert!(
        report.stored_bytes < report.raw_bytes,
        "gzip must shrink the sample"
    );

    let data = cfdr_storage::sample_data(1 << 20, 9);
    let mut backup = repo.begin_backup("config", Some("daily")).unwrap();
    backup
        .put_encoded(
            "configs.tar.gz.age",
            std::io::Cursor::new(data.clone()),
            &opts,
        )
        .await
        .unwrap();
    let manifest = backup.commit(Default::default()).await.unwrap();
    assert_eq!(
        manifest.objects[0].codec.encrypted_to,
        vec![cfdr_secrets::fingerprint(&public)]
    );

    let reopened = Repository::open(config.repository.build().unwrap())
        .await
        .unwrap();
    assert_eq!(reopened.config(), repo.config());
    assert_eq!(
        reopened.backup_ids().await.unwrap(),
        vec![manifest.id.clone()]
    );
    assert!(reopened.verify(&manifest).await.unwrap().is_ok());
    let mut out = Vec::new();
    decode_to(reopened.store(), &manifest.objects[0], Some(ids), &mut out)
        .await
        .unwrap();
    assert_eq!(out, data);
}

macro_rules! e2e {
    ($($name:ident => $backend:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            if let Some(loc) = TestLocation::new($backend, stringify!($name)) {
                configured_repository_round_trip(loc).await;
            }
        }
    )*};
}

e2e! {
    configured_repository_on_fs => Backend::Fs,
    configured_repository_on_s3 => Backend::S3,
    configured_repository_on_moto => Backend::S3Moto,
    configured_repository_on_azblob => Backend::Azblob,
    configured_repository_on_gcs => Backend::Gcs,
}
