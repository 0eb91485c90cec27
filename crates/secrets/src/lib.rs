//! age keys, streaming encryption and secret bundles for cfdr.
//!
//! Everything cfdr encrypts is a standard [age](https://age-encryption.org/v1)
//! file, so the stock `age` tool can decrypt it when cfdr itself is not at
//! hand. Secrets are never written to disk in plaintext: they live in
//! zeroizing memory ([`SecretBuf`], [`SecretValue`]) between a source and a
//! sink, and no `Debug`, `Display`, log line or error shows a value.
//!
//! - Keys: [`Recipients`] (`age1...` X25519, `ssh-ed25519` / `ssh-rsa`, each
//!   with a short [`fingerprint`]); [`Identities`] from a 0600 identity file,
//!   a variable or a [`Passphrase`]; [`generate_identity`] and
//!   [`write_identity_file`] (0600, never overwrites). [`Encryption`] is
//!   either recipients or a passphrase with a pinned scrypt work factor.
//! - Streams: [`encrypt_writer`] / [`encrypt_writer_with`] (binary or
//!   armored) and [`decrypt_reader`] (either); [`seal`] / [`unseal`] for
//!   whole buffers, where `unseal` returns only after every chunk is
//!   authenticated.
//! - Bundles: [`SecretBundle`] of named [`Entry`]s, its encrypted document
//!   form ([`SecretBundle::to_document`]) and a names-only [`BundleDiff`].
//! - Sources and sinks: [`Source`] (`env:FILE`, `json:FILE`, `-`,
//!   `vault:PATH`) and [`Sink`] (`env`, `json`, `k8s:NAME[:NS]`,
//!   `vault:PATH`); the formats in [`formats`] and the Vault KV v2 client
//!   [`VaultClient`].
//!
//! ```
//! use cfdr_secrets::{Encryption, Identities, Recipients, SecretBundle, Sink, generate_identity, seal, unseal};
//!
//! let (identity, recipient) = generate_identity();
//! let bundle = cfdr_secrets::formats::parse_env(b"BINANCE_API_KEY=k-123\n", "example.env")?;
//!
//! let to = Encryption::Recipients(Recipients::parse([recipient.as_str()])?);
//! let sealed = seal(&to, bundle.to_document().expose(), false)?;
//!
//! let plain = unseal(&Identities::from_text(identity.as_str())?, &sealed)?;
//! let restored = SecretBundle::from_document(plain.expose())?;
//! assert!(bundle.diff(&restored).is_empty());
//! assert_eq!(format!("{restored:?}"), r#"SecretBundle { names: ["BINANCE_API_KEY"] }"#);
//! let out = Sink::parse("json", None)?.render(&restored, "example")?.expect("stdout sink");
//! assert_eq!(out.expose(), b"{\n  \"BINANCE_API_KEY\": \"k-123\"\n}\n");
//! # Ok::<(), cfdr_secrets::Error>(())
//! ```

mod buf;
mod bundle;
mod error;
pub mod formats;
mod keys;
mod spec;
mod stream;
pub mod vault;

pub use buf::SecretBuf;
pub use bundle::{BUNDLE_FORMAT, BundleDiff, Entry, SecretBundle, SecretValue, validate_name};
pub use error::{Error, Result};
pub use keys::{
    DEFAULT_MAX_WORK_FACTOR, DEFAULT_WORK_FACTOR, Encryption, Identities, Passphrase, Recipients,
    WORK_FACTOR_RANGE, fingerprint, generate_identity, write_identity_file,
};
pub use spec::{Format, Sink, Source, parse_text, read_secret};
pub use stream::{
    EncryptWriter, decrypt_reader, encrypt_writer, encrypt_writer_with, seal, unseal,
};
pub use vault::{ImportReport, VaultClient, VaultOptions, VaultPath};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{Read, Write};

    fn pair() -> (Identities, Recipients) {
        let (secret, public) = generate_identity();
        (
            Identities::from_text(secret.as_str()).unwrap(),
            Recipients::parse([public.as_str()]).unwrap(),
        )
    }

    #[test]
    fn wrong_identity_is_a_clear_error() {
        let (_, recipients) = pair();
        let (other, _) = pair();
        let mut sealed = Vec::new();
        let mut w = encrypt_writer(&recipients, &mut sealed).unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        let Err(err) = decrypt_reader(&other, &sealed[..]) else {
            panic!("decrypted with the wrong identity");
        };
        assert!(matches!(err, Error::NoMatchingIdentity { .. }), "{err}");
        assert!(err.to_string().contains("other recipients"), "{err}");
    }

    #[test]
    fn debug_never_shows_secret() {
        let (secret, _) = generate_identity();
        let ids = Identities::from_text(secret.as_str()).unwrap();
        assert!(!format!("{ids:?}").contains("AGE-SECRET-KEY"));
        let p = Passphrase::new("correct horse").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn insecure_identity_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        let (secret, _) = generate_identity();
        std::fs::write(&path, secret.as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identities::from_file(&path, false).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        Identities::from_file(&path, true).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Identities::from_file(&path, false).unwrap();
    }

    #[test]
    fn keygen_writes_0600_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        let public = write_identity_file(&path, "2026-01-01T00:00:00Z").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let ids = Identities::from_file(&path, false).unwrap();
        assert_eq!(ids.to_recipients().unwrap().keys(), [public]);
        let err = write_identity_file(&path, "x").unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    }

    #[test]
    fn rejects_garbage_recipient_and_empty_set() {
        assert!(matches!(
            Recipients::parse(["not-a-key"]),
            Err(Error::InvalidRecipient { .. })
        ));
        assert!(matches!(
            Recipients::parse(["", "# comment"]),
            Err(Error::NoRecipients)
        ));
    }

    #[test]
    fn armored_and_binary_round_trip_streaming() {
        let (ids, recipients) = pair();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for armored in [false, true] {
            let enc = Encryption::Recipients(recipients.clone());
            let mut w = encrypt_writer_with(&enc, Vec::new(), armored).unwrap();
            for chunk in data.chunks(10_000) {
                w.write_all(chunk).unwrap();
            }
            let sealed = w.finish().unwrap();
            assert_eq!(
                sealed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
                armored
            );
            let mut out = Vec::new();
            decrypt_reader(&ids, &sealed[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn passphrase_round_trip_typo_and_work_factor() {
        let enc = Encryption::passphrase(Passphrase::new("correct horse\n").unwrap(), 10).unwrap();
        let sealed = seal(&enc, b"break glass", true).unwrap();
        let ok = Identities::from_passphrase(Passphrase::new("correct horse").unwrap(), 22);
        assert_eq!(unseal(&ok, &sealed).unwrap().expose(), b"break glass");
        let typo = Identities::from_passphrase(Passphrase::new("correct hrose").unwrap(), 22);
        assert!(matches!(
            unseal(&typo, &sealed),
            Err(Error::WrongPassphrase)
        ));
        let low = Identities::from_passphrase(Passphrase::new("correct horse").unwrap(), 9);
        assert!(matches!(
            unseal(&low, &sealed),
            Err(Error::ExcessiveWork {
                required: 10,
                max: 9
            })
        ));
        let (keys, _) = pair();
        assert!(matches!(
            unseal(&keys, &sealed),
            Err(Error::PassphraseRequired)
        ));
        assert!(Encryption::passphrase(Passphrase::new("x").unwrap(), 5).is_err());
        assert!(Passphrase::new("\n").is_err());
    }

    #[test]
    fn damaged_and_truncated_files_fail_before_any_plaintext() {
        let (ids, recipients) = pair();
        let enc = Encryption::Recipients(recipients);
        let data = vec![7u8; 150_000];
        let sealed = seal(&enc, &data, false).unwrap();
        let mut flipped = sealed.clone();
        let at = flipped.len() - 1000;
        flipped[at] ^= 1;
        let err = unseal(&ids, &flipped).unwrap_err();
        assert!(matches!(err, Error::Decrypt(_)), "{err}");
        let err = unseal(&ids, &sealed[..sealed.len() - 100]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // A cut exactly at a chunk boundary (64 KiB + tag) lacks the final chunk.
        let header_end = sealed.len() - (150_000 + 3 * 16);
        let cut = header_end + 65_536 + 16;
        assert!(unseal(&ids, &sealed[..cut]).is_err());
        let mut header = sealed.clone();
        header[40] ^= 1;
        assert!(unseal(&ids, &header).is_err());
    }

    #[test]
    fn identities_combine_for_rotation() {
        let (old, old_r) = pair();
        let (new, new_r) = pair();
        let both = old.with(new);
        for r in [old_r, new_r] {
            let sealed = seal(&Encryption::Recipients(r), b"x", false).unwrap();
            assert_eq!(unseal(&both, &sealed).unwrap().expose(), b"x");
        }
    }
}
