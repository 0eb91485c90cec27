//! The one error type of cfdr-secrets. No variant ever carries a secret
//! value: parse errors name the origin, line and key, never the text.

use std::io;
use std::path::PathBuf;

/// Errors from key handling, age encryption, bundles, sources and sinks.
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
    /// An identity (or passphrase) file is readable by group or others.
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
        "environment variable {var} is not set: export an age identity (AGE-SECRET-KEY-1...) in it, or point CFDR_AGE_IDENTITY_FILE (config `encryption.identity-file`) at an identity file"
    )]
    MissingIdentityVar {
        /// The variable name.
        var: String,
    },
    /// The identity text holds no usable identity.
    #[error(
        "no usable age identity in {origin}: expected AGE-SECRET-KEY-1... lines or an unencrypted OpenSSH ed25519/RSA private key (for a passphrase-protected ssh key use `age -d -i`)"
    )]
    InvalidIdentity {
        /// Where the text came from (file path or variable name, never the text).
        origin: String,
    },
    /// A new key file could not be written.
    #[error("cannot write key file {path}: {source}{hint}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
        /// What to do next.
        hint: &'static str,
    },
    /// A passphrase could not be obtained or is unusable.
    #[error("passphrase: {reason}")]
    Passphrase {
        /// What is wrong (never the passphrase).
        reason: String,
    },
    /// Encryption failed.
    #[error("age encryption failed: {0}")]
    Encrypt(String),
    /// Decryption failed: damaged or truncated data.
    #[error("age decryption failed: {0}")]
    Decrypt(String),
    /// None of the identities matches a recipient of the file.
    #[error(
        "none of the age identities from {origin} can decrypt this file: it was encrypted to other recipients; use the identity of one of them (compare the recipient fingerprints in the manifest's `encrypted_to`, or in `cfdr-secrets list`, with those `cfdr-secrets keygen -y` prints for your identity)"
    )]
    NoMatchingIdentity {
        /// Where the identities came from.
        origin: String,
    },
    /// A passphrase-encrypted file and no passphrase.
    #[error("this file is encrypted with a passphrase (a break-glass copy): pass --passphrase")]
    PassphraseRequired,
    /// The passphrase does not open the file.
    #[error(
        "wrong passphrase: it does not decrypt this file (check for typos and keyboard layout)"
    )]
    WrongPassphrase,
    /// The file asks for more scrypt work than allowed.
    #[error(
        "the file needs scrypt work factor {required}, above the allowed maximum {max}: raise --max-work-factor if you trust the file"
    )]
    ExcessiveWork {
        /// Work factor (log2 N) in the file.
        required: u8,
        /// The allowed maximum.
        max: u8,
    },
    /// A secret name is not acceptable.
    #[error("invalid secret name {name:?}: {reason}")]
    InvalidName {
        /// The name (names are not secret).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The same name appears twice in one source.
    #[error("duplicate secret name {name:?} in {origin}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The source.
        origin: String,
    },
    /// A source cannot be parsed. The reason never quotes a value.
    #[error("cannot parse {origin}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Parse {
        /// The source (file path, stdin, Vault path, bundle).
        origin: String,
        /// The line, where known.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A value cannot be expressed in the chosen sink.
    #[error("secret {name:?} cannot be written as {sink}: {reason}")]
    Unrepresentable {
        /// The secret name.
        name: String,
        /// The sink.
        sink: &'static str,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// A source or sink specification is malformed.
    #[error("invalid {what} {spec:?}: expected {expected}")]
    InvalidSpec {
        /// "source", "sink", "Vault path", ...
        what: &'static str,
        /// The specification as given.
        spec: String,
        /// The accepted forms.
        expected: &'static str,
    },
    /// Reading a source file or stream failed.
    #[error("cannot read {origin}: {source}")]
    Read {
        /// The file or stream.
        origin: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The output is too large for its sink.
    #[error("{what} would be {size} bytes, above the limit of {limit}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Vault settings are missing or invalid.
    #[error("Vault configuration: {reason}")]
    VaultConfig {
        /// What is missing or wrong.
        reason: String,
    },
    /// Vault could not be reached.
    #[error(
        "cannot reach Vault at {addr} ({detail}): check VAULT_ADDR, the network and that Vault is unsealed"
    )]
    VaultUnreachable {
        /// The address.
        addr: String,
        /// The transport error.
        detail: String,
    },
    /// Vault refused the token.
    #[error(
        "Vault denied {operation} on {path} (HTTP {status}): check VAULT_TOKEN, its policy and VAULT_NAMESPACE"
    )]
    VaultDenied {
        /// list, read or write.
        operation: &'static str,
        /// The API path.
        path: String,
        /// The HTTP status.
        status: u16,
    },
    /// Vault answered with an unexpected status or body.
    #[error("Vault {operation} on {path} failed (HTTP {status}): {detail}")]
    Vault {
        /// list, read or write.
        operation: &'static str,
        /// The API path.
        path: String,
        /// The HTTP status (0 when the body was the problem).
        status: u16,
        /// Vault's error messages or the parse problem (never values).
        detail: String,
    },
    /// Vault holds values that differ from the bundle: not overwritten.
    #[error(
        "Vault holds different values at {} (a newer version than the backup may exist): nothing was written; compare with `cfdr-secrets diff`, then pass --force to overwrite",
        paths.join(", ")
    )]
    VaultConflict {
        /// The secret paths concerned, with their current versions.
        paths: Vec<String>,
    },
    /// A check-and-set write lost a race with another writer.
    #[error(
        "Vault secret {path} changed while restoring (check-and-set version {cas} no longer current): rerun to compare again"
    )]
    VaultCas {
        /// The secret path.
        path: String,
        /// The version the write expected.
        cas: u64,
    },
    /// An I/O error while streaming.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A serde_json error described without quoting input: only its class and
/// position (serde_json's own text can contain the offending value).
pub(crate) fn json_reason(e: &serde_json::Error) -> String {
    let class = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "JSON syntax error",
        serde_json::error::Category::Data => "unexpected JSON structure",
        serde_json::error::Category::Eof => "unexpected end of JSON",
    };
    format!("{class} at line {} column {}", e.line(), e.column())
}
