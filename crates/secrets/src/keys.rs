//! age keys: recipients (public), identities and passphrases (secret).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// scrypt work factor (log2 N) written by default: pinned, not calibrated to
/// the machine, so a copy made on a fast server still opens on a laptop.
pub const DEFAULT_WORK_FACTOR: u8 = 18;
/// Highest scrypt work factor accepted on decryption by default (about 4 GiB
/// of memory-hard work; higher values can be a denial of service).
pub const DEFAULT_MAX_WORK_FACTOR: u8 = 22;
/// Range of work factors accepted for writing.
pub const WORK_FACTOR_RANGE: std::ops::RangeInclusive<u8> = 10..=30;

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

    pub(crate) fn to_age(&self) -> Result<Vec<Box<dyn age::Recipient + Send>>> {
        self.keys.iter().map(|k| to_age_recipient(k)).collect()
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

/// A passphrase for break-glass copies, zeroized on drop, never shown.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(redacted)")
    }
}

impl Passphrase {
    /// A passphrase from text; one trailing newline is removed. Refuses an
    /// empty passphrase.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let mut text = Zeroizing::new(text.into());
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        if text.is_empty() {
            return Err(Error::Passphrase {
                reason: "it is empty".into(),
            });
        }
        Ok(Self(text))
    }

    /// The passphrase from an environment variable.
    pub fn from_env(var: &str) -> Result<Self> {
        let text = std::env::var(var).map_err(|_| Error::Passphrase {
            reason: format!("environment variable {var} is not set"),
        })?;
        Self::new(text)
    }

    /// The first line of a file (or `/dev/fd/N`). Refuses a regular file
    /// readable by group or others, like identity files.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_private(path, false)?;
        let first = text.lines().next().unwrap_or_default();
        Self::new(first)
    }

    /// The passphrase from, in order: `file` (e.g. `/dev/fd/3`), the
    /// variable `var`, or a prompt on the controlling terminal (echo off;
    /// asked twice when `confirm`). Never from the command line.
    pub fn obtain(file: Option<&Path>, var: &str, prompt: &str, confirm: bool) -> Result<Self> {
        if let Some(f) = file {
            return Self::from_file(f);
        }
        if std::env::var_os(var).is_some() {
            return Self::from_env(var);
        }
        let first = Self::from_terminal(prompt)?;
        if confirm {
            let again = Self::from_terminal("Repeat the passphrase: ")?;
            if again.0 != first.0 {
                return Err(Error::Passphrase {
                    reason: "the two entries differ".into(),
                });
            }
        }
        Ok(first)
    }

    /// Reads one line from `/dev/tty` with echo switched off by `stty`.
    pub fn from_terminal(prompt: &str) -> Result<Self> {
        use std::io::BufRead;
        let no_tty = |e: std::io::Error| Error::Passphrase {
            reason: format!(
                "no terminal to ask on ({e}): pass --passphrase-file FILE or set the passphrase variable"
            ),
        };
        let mut tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(no_tty)?;
        let stty = |arg: &str| -> Result<()> {
            let input = std::fs::File::open("/dev/tty").map_err(no_tty)?;
            std::process::Command::new("stty")
                .arg(arg)
                .stdin(input)
                .status()
                .map_err(no_tty)
                .map(drop)
        };
        tty.write_all(prompt.as_bytes()).map_err(no_tty)?;
        stty("-echo")?;
        let mut line = Zeroizing::new(String::new());
        let read = std::io::BufReader::new(&tty).read_line(&mut line);
        let restored = stty("echo");
        let _ = tty.write_all(b"\n");
        read.map_err(no_tty)?;
        restored?;
        Self::new(std::mem::take(&mut *line))
    }

    fn secret(&self) -> SecretString {
        SecretString::from(self.0.as_str().to_owned())
    }
}

/// Reads a file that must not be readable by group or others (checked for
/// regular files only: `/dev/fd/N` pipes pass).
fn read_private(path: &Path, allow_insecure_mode: bool) -> Result<Zeroizing<String>> {
    let file_err = |source| Error::IdentityFile {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(file_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && mode & 0o077 != 0 {
            if !allow_insecure_mode {
                return Err(Error::InsecureIdentityFile {
                    path: path.to_owned(),
                    mode,
                });
            }
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "using a key file that group or others can read, as forced: run chmod 600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, allow_insecure_mode);
    Ok(Zeroizing::new(
        std::fs::read_to_string(path).map_err(file_err)?,
    ))
}

/// What decrypts: age identities (held as zeroized text) and optionally a
/// passphrase with the highest scrypt work factor it may spend.
///
/// The text is parsed on each use so the value can move between threads;
/// `Debug` shows only where it came from.
pub struct Identities {
    /// One identity file text per origin (age keys, or one ssh key).
    texts: Vec<Zeroizing<String>>,
    origin: String,
    passphrase: Option<(Passphrase, u8)>,
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
        let text = read_private(path, allow_insecure_mode)?;
        Self::with_origin(text, path.display().to_string())
    }

    /// Identities from an environment variable holding identity file text.
    pub fn from_env(var: &str) -> Result<Self> {
        let text = std::env::var(var).map_err(|_| Error::MissingIdentityVar {
            var: var.to_owned(),
        })?;
        Self::with_origin(Zeroizing::new(text), format!("${var}"))
    }

    /// A passphrase as the identity, accepting files that need at most
    /// `max_work_factor` (log2 N) of scrypt work.
    pub fn from_passphrase(passphrase: Passphrase, max_work_factor: u8) -> Self {
        Self {
            texts: Vec::new(),
            origin: "the passphrase".into(),
            passphrase: Some((passphrase, max_work_factor)),
        }
    }

    /// These identities plus `other`'s (e.g. the old and the new key while
    /// rotating).
    pub fn with(mut self, other: Identities) -> Self {
        self.texts.extend(other.texts);
        self.origin = format!("{} and {}", self.origin, other.origin);
        if self.passphrase.is_none() {
            self.passphrase = other.passphrase.clone();
        }
        self
    }

    /// Where the identities came from (paths, variable names).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn has_passphrase(&self) -> bool {
        self.passphrase.is_some()
    }

    pub(crate) fn max_work_factor(&self) -> u8 {
        self.passphrase
            .as_ref()
            .map_or(DEFAULT_MAX_WORK_FACTOR, |(_, m)| *m)
    }

    fn with_origin(text: Zeroizing<String>, origin: String) -> Result<Self> {
        let me = Self {
            texts: vec![text],
            origin,
            passphrase: None,
        };
        if me.parse()?.is_empty() {
            return Err(Error::InvalidIdentity { origin: me.origin });
        }
        Ok(me)
    }

    pub(crate) fn parse(&self) -> Result<Vec<Box<dyn age::Identity>>> {
        let invalid = || Error::InvalidIdentity {
            origin: self.origin.clone(),
        };
        let mut out: Vec<Box<dyn age::Identity>> = Vec::new();
        for text in self.texts.iter().filter(|t| !t.trim().is_empty()) {
            if text.trim_start().starts_with("-----BEGIN ") {
                // An OpenSSH (ed25519 or RSA) private key, as `age -i` takes.
                match age::ssh::Identity::from_buffer(text.as_bytes(), None) {
                    Ok(id @ age::ssh::Identity::Unencrypted(_)) => out.push(Box::new(id)),
                    _ => return Err(invalid()),
                }
                continue;
            }
            let file = age::IdentityFile::from_buffer(text.as_bytes()).map_err(|_| invalid())?;
            out.extend(file.into_identities().map_err(|_| invalid())?);
        }
        if let Some((pass, max)) = &self.passphrase {
            let mut id = age::scrypt::Identity::new(pass.secret());
            id.set_max_work_factor(*max);
            out.push(Box::new(id));
        }
        Ok(out)
    }

    /// The recipients matching these identities (X25519 only).
    pub fn to_recipients(&self) -> Result<Recipients> {
        let publics: Vec<String> = self
            .texts
            .iter()
            .flat_map(|t| t.lines())
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

/// Generates an identity and writes it to a new file `path` with mode 0600,
/// in the stock `age-keygen` layout (`# created`, `# public key` comments,
/// then the key). Refuses to overwrite. Returns the public recipient.
pub fn write_identity_file(path: &Path, created: &str) -> Result<String> {
    let (secret, public) = generate_identity();
    let key_err = |source: std::io::Error| {
        let hint = if source.kind() == std::io::ErrorKind::AlreadyExists {
            ": refusing to overwrite an existing key; choose another path"
        } else {
            ""
        };
        Error::KeyFile {
            path: PathBuf::from(path),
            source,
            hint,
        }
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(key_err)?;
    let text = Zeroizing::new(format!(
        "# created: {created}\n# public key: {public}\n{}\n",
        secret.as_str()
    ));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(key_err)?;
    Ok(public)
}

/// What an age file is encrypted to.
#[derive(Clone, Debug)]
pub enum Encryption {
    /// Public-key recipients (X25519, ssh): automated backups.
    Recipients(Recipients),
    /// A passphrase with a pinned scrypt work factor: break-glass copies.
    /// age allows no other recipient beside a passphrase.
    Passphrase {
        /// The passphrase.
        passphrase: Passphrase,
        /// scrypt work factor, log2 N (see [`DEFAULT_WORK_FACTOR`]).
        work_factor: u8,
    },
}

impl Encryption {
    /// Passphrase encryption at `work_factor`, checked against
    /// [`WORK_FACTOR_RANGE`].
    pub fn passphrase(passphrase: Passphrase, work_factor: u8) -> Result<Self> {
        if !WORK_FACTOR_RANGE.contains(&work_factor) {
            return Err(Error::Passphrase {
                reason: format!(
                    "work factor {work_factor} is outside {}..={}",
                    WORK_FACTOR_RANGE.start(),
                    WORK_FACTOR_RANGE.end()
                ),
            });
        }
        Ok(Self::Passphrase {
            passphrase,
            work_factor,
        })
    }

    /// Recipient fingerprints (empty for a passphrase).
    pub fn fingerprints(&self) -> Vec<String> {
        match self {
            Encryption::Recipients(r) => r.fingerprints(),
            Encryption::Passphrase { .. } => Vec::new(),
        }
    }

    /// The scrypt work factor, for a passphrase.
    pub fn work_factor(&self) -> Option<u8> {
        match self {
            Encryption::Recipients(_) => None,
            Encryption::Passphrase { work_factor, .. } => Some(*work_factor),
        }
    }

    pub(crate) fn encryptor(&self) -> Result<age::Encryptor> {
        match self {
            Encryption::Recipients(r) => {
                let boxed = r.to_age()?;
                age::Encryptor::with_recipients(boxed.iter().map(|r| r.as_ref() as _))
                    .map_err(|e| Error::Encrypt(e.to_string()))
            }
            Encryption::Passphrase {
                passphrase,
                work_factor,
            } => {
                let mut r = age::scrypt::Recipient::new(passphrase.secret());
                r.set_work_factor(*work_factor);
                age::Encryptor::with_recipients(std::iter::once(&r as _))
                    .map_err(|e| Error::Encrypt(e.to_string()))
            }
        }
    }
}
