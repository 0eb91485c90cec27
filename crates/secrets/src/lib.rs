//! age keys, recipients, identities and streaming encryption for cfdr.
//!
//! Everything cfdr encrypts is a standard [age](https://age-encryption.org/v1)
//! file, so the stock `age` tool can decrypt it when cfdr itself is not at hand.
//!
//! - [`Recipients`]: the public side, parsed from `age1...` X25519 keys or
//!   `ssh-ed25519` / `ssh-rsa` public keys, each with a short [`fingerprint`].
//! - [`Identities`]: the secret side, read from an identity file (refused when
//!   group- or world-readable) or an environment variable, held in memory that
//!   is zeroized on drop and never shown by `Debug`.
//! - [`encrypt_writer`] / [`decrypt_reader`]: streaming wrappers over
//!   `std::io` writers and readers.
//!
//! ```
//! use std::io::{Read, Write};
//! use cfdr_secrets::{Identities, Recipients, decrypt_reader, encrypt_writer, generate_identity};
//!
//! let (identity, recipient) = generate_identity();
//! let recipients = Recipients::parse([recipient.as_str()])?;
//! let mut sealed = Vec::new();
//! let mut w = encrypt_writer(&recipients, &mut sealed)?;
//! w.write_all(b"exchange key")?;
//! w.finish()?;
//!
//! let identities = Identities::from_text(identity.as_str())?;
//! let mut plain = Vec::new();
//! decrypt_reader(&identities, &sealed[..])?.read_to_end(&mut plain)?;
//! assert_eq!(plain, b"exchange key");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Errors from key handling and age encryption.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A recipient string is neither an age X25519 key nor an ssh public key.
    #[error(
        "invalid age recipient {recipient:?}: expected an `age1...` key or an `ssh-ed25519`/`ssh-rsa` public key"
    )]
    InvalidRecipient {
        /// The rejected recipient (public material only).
        recipient: String,
    },
    /// Encryption was asked for with no recipient at all.
    #[error("no age recipients configured: add at least one `age1...` recipient")]
    NoRecipients,
    /// An identity file cannot be read.
    #[error("cannot read age identity file {path}: {source}")]
    IdentityFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// An identity file is readable by group or others.
    #[error(
        "age identity file {path} has mode {mode:o}: it must not be readable by group or others; run `chmod 600 {path}`"
    )]
    InsecureIdentityFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The identity environment variable is not set.
    #[error(
        "environment variable {var} is not set: export an age identity (AGE-SECRET-KEY-1...) in it"
    )]
    MissingIdentityVar {
        /// The variable name.
        var: String,
    },
    /// The identity text holds no usable identity.
    #[error("no age identity found in {origin}: expected lines starting with AGE-SECRET-KEY-1")]
    InvalidIdentity {
        /// Where the text came from (file path or variable name, never the text).
        origin: String,
    },
    /// Encryption failed.
    #[error("age encryption failed: {0}")]
    Encrypt(String),
    /// Decryption failed: wrong identity, damaged or truncated data.
    #[error("age decryption failed: {0}")]
    Decrypt(String),
    /// An I/O error while streaming.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A short, stable fingerprint of a recipient: the first 16 hex digits of the
/// SHA-256 of its canonical string. Manifests record these, never keys.
pub fn fingerprint(recipient: &str) -> String {
    let digest = Sha256::digest(recipient.trim().as_bytes());
    hex::encode(&digest[..8])
}

/// A validated set of age recipients (public keys).
#[derive(Clone, PartialEq, Eq)]
pub struct Recipients {
    keys: Vec<String>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.fingerprints()).finish()
    }
}

impl Recipients {
    /// Parses recipients; blank entries and `#` comments are skipped.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut keys = Vec::new();
        for raw in items {
            let item = raw.trim();
            if item.is_empty() || item.starts_with('#') {
                continue;
            }
            to_age_recipient(item)?;
            keys.push(item.to_owned());
        }
        if keys.is_empty() {
            return Err(Error::NoRecipients);
        }
        Ok(Self { keys })
    }

    /// The recipients as given.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// One [`fingerprint`] per recipient, in order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|k| fingerprint(k)).collect()
    }
}

fn to_age_recipient(key: &str) -> Result<Box<dyn age::Recipient + Send>> {
    let invalid = || Error::InvalidRecipient {
        recipient: key.to_owned(),
    };
    if key.starts_with("age1") {
        let r = age::x25519::Recipient::from_str(key).map_err(|_| invalid())?;
        Ok(Box::new(r))
    } else if key.starts_with("ssh-") {
        let r = age::ssh::Recipient::from_str(key).map_err(|_| invalid())?;
        Ok(Box::new(r))
    } else {
        Err(invalid())
    }
}

/// age identities (secret keys), held as zeroized text.
///
/// The text is parsed on each use so the value can move between threads;
/// `Debug` shows only where it came from.
pub struct Identities {
    text: Zeroizing<String>,
    origin: String,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities(from {}, redacted)", self.origin)
    }
}

impl Identities {
    /// Identities from an in-memory identity file text.
    pub fn from_text(text: impl Into<String>) -> Result<Self> {
        Self::with_origin(Zeroizing::new(text.into()), "memory".into())
    }

    /// Identities from an identity file. Refuses a file readable by group or
    /// others unless `allow_insecure_mode` is set.
    pub fn from_file(path: &Path, allow_insecure_mode: bool) -> Result<Self> {
        let file_err = |source| Error::IdentityFile {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(file_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 && !allow_insecure_mode {
                return Err(Error::InsecureIdentityFile {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = (meta, allow_insecure_mode);
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(file_err)?);
        Self::with_origin(text, path.display().to_string())
    }

    /// Identities from an environment variable holding identity file text.
    pub fn from_env(var: &str) -> Result<Self> {
        let text = std::env::var(var).map_err(|_| Error::MissingIdentityVar {
            var: var.to_owned(),
        })?;
        Self::with_origin(Zeroizing::new(text), format!("${var}"))
    }

    fn with_origin(text: Zeroizing<String>, origin: String) -> Result<Self> {
        let me = Self { text, origin };
        if me.parse()?.is_empty() {
            return Err(Error::InvalidIdentity { origin: me.origin });
        }
        Ok(me)
    }

    fn parse(&self) -> Result<Vec<Box<dyn age::Identity>>> {
        let invalid = || Error::InvalidIdentity {
            origin: self.origin.clone(),
        };
        age::IdentityFile::from_buffer(self.text.as_bytes())
            .map_err(|_| invalid())?
            .into_identities()
            .map_err(|_| invalid())
    }

    /// The recipients matching these identities (X25519 only).
    pub fn to_recipients(&self) -> Result<Recipients> {
        let publics: Vec<String> = self
            .text
            .lines()
            .filter_map(|l| age::x25519::Identity::from_str(l.trim()).ok())
            .map(|i| i.to_public().to_string())
            .collect();
        Recipients::parse(publics.iter().map(String::as_str))
    }
}

/// Generates a new X25519 identity: `(secret identity text, public recipient)`.
pub fn generate_identity() -> (Zeroizing<String>, String) {
    let identity = age::x25519::Identity::generate();
    let secret = Zeroizing::new(identity.to_string().expose_secret().to_owned());
    (secret, identity.to_public().to_string())
}

/// Wraps `output` so that everything written is encrypted to `recipients`.
/// Call `finish()` on the returned writer to write the final chunk.
pub fn encrypt_writer<W: Write>(
    recipients: &Recipients,
    output: W,
) -> Result<age::stream::StreamWriter<W>> {
    let boxed = recipients
        .keys
        .iter()
        .map(|k| to_age_recipient(k))
        .collect::<Result<Vec<_>>>()?;
    let encryptor = age::Encryptor::with_recipients(boxed.iter().map(|r| r.as_ref() as _))
        .map_err(|e| Error::Encrypt(e.to_string()))?;
    Ok(encryptor.wrap_output(output)?)
}

/// Opens an age stream (binary or ASCII-armored) from `input` with
/// `identities`. Authentication of each chunk happens as it is read; a
/// damaged or truncated stream fails on read.
pub fn decrypt_reader<R: Read>(
    identities: &Identities,
    input: R,
) -> Result<age::stream::StreamReader<age::armor::ArmoredReader<io::BufReader<R>>>> {
    let parsed = identities.parse()?;
    let input = age::armor::ArmoredReader::new(input);
    let decryptor = age::Decryptor::new(input).map_err(|e| Error::Decrypt(e.to_string()))?;
    decryptor
        .decrypt(parsed.iter().map(|i| i.as_ref() as _))
        .map_err(|e| Error::Decrypt(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wrong_identity_is_a_decrypt_error() {
        let (_, recipient) = generate_identity();
        let (other, _) = generate_identity();
        let recipients = Recipients::parse([recipient.as_str()]).unwrap();
        let mut sealed = Vec::new();
        let mut w = encrypt_writer(&recipients, &mut sealed).unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        let ids = Identities::from_text(other.as_str()).unwrap();
        assert!(matches!(
            decrypt_reader(&ids, &sealed[..]),
            Err(Error::Decrypt(_))
        ));
    }

    #[test]
    fn debug_never_shows_secret() {
        let (secret, _) = generate_identity();
        let ids = Identities::from_text(secret.as_str()).unwrap();
        assert!(!format!("{ids:?}").contains("AGE-SECRET-KEY"));
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
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Identities::from_file(&path, false).unwrap();
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
}
