//! Secret bundles on every repository backend: memory, a local folder, and
//! the S3 (s3s-fs, moto), Azure Blob (Azurite) and GCS emulators that
//! `scripts/test` starts (skipped with a notice under plain `cargo test`).
#![allow(clippy::unwrap_used)]

use cfdr_secrets::{Encryption, Identities, Passphrase, Recipients, SecretBundle, SecretValue};
use cfdr_storage::{Repository, SecretStore};
use cfdr_testing::{Backend, TestLocation};

fn bundle() -> SecretBundle {
    let mut b = SecretBundle::new();
    b.insert_value("BINANCE_API_KEY", SecretValue::text("bk-1"))
        .unwrap();
    b.insert_value("TLS_KEY", SecretValue::new((0..=255u8).collect()))
        .unwrap();
    b.insert_value(
        "PEM",
        SecretValue::text("-----BEGIN-----\nabc\n-----END-----\n"),
    )
    .unwrap();
    b
}

#[tokio::test]
async fn round_trip_list_and_rekey_on_every_backend() {
    for backend in [
        Backend::Memory,
        Backend::Fs,
        Backend::S3,
        Backend::S3Moto,
        Backend::Azblob,
        Backend::Gcs,
    ] {
        let Some(loc) = TestLocation::new(backend, "secrets_round_trip") else {
            continue;
        };
        let repo = Repository::init(loc.options.build().unwrap())
            .await
            .unwrap();
        let s = SecretStore::new(&repo);
        let (old_secret, old_public) = cfdr_secrets::generate_identity();
        let (new_secret, new_public) = cfdr_secrets::generate_identity();
        let enc = Encryption::Recipients(Recipients::parse([old_public.as_str()]).unwrap());
        let m = s
            .backup(
                "cryptofunk",
                &bundle(),
                &enc,
                false,
                "test",
                jiff::Timestamp::now(),
            )
            .await
            .unwrap();
        let pass = Encryption::passphrase(Passphrase::new("break glass").unwrap(), 10).unwrap();
        s.backup(
            "cryptofunk",
            &bundle(),
            &pass,
            true,
            "test",
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
        assert_eq!(s.list(None).await.unwrap().len(), 2, "{backend:?}");
        let old = Identities::from_text(old_secret.as_str()).unwrap();
        assert_eq!(s.open(&m, &old).await.unwrap(), bundle(), "{backend:?}");
        let latest = s.resolve("cryptofunk", "latest").await.unwrap();
        let by_pass = Identities::from_passphrase(Passphrase::new("break glass").unwrap(), 22);
        assert_eq!(
            s.open(&latest, &by_pass).await.unwrap(),
            bundle(),
            "{backend:?}"
        );

        let to = Recipients::parse([new_public.as_str()]).unwrap();
        let ids = old.with(Identities::from_text(new_secret.as_str()).unwrap());
        let r = s
            .rekey(&to, &ids, false, jiff::Timestamp::now())
            .await
            .unwrap();
        assert_eq!(
            (r.rekeyed.len(), r.passphrase_copies.len()),
            (1, 1),
            "{backend:?}"
        );
        let moved = s.resolve("cryptofunk", &m.version).await.unwrap();
        let new = Identities::from_text(new_secret.as_str()).unwrap();
        assert_eq!(s.open(&moved, &new).await.unwrap(), bundle(), "{backend:?}");
        assert!(
            repo.store().stat(&m.object).await.unwrap().is_none(),
            "{backend:?}"
        );
    }
}
