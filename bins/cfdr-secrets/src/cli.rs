//! Command-line flags of cfdr-secrets.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cfdr_config::Config;
use cfdr_secrets::{Encryption, Identities, Passphrase, Recipients, VaultClient, VaultOptions};
use clap::{Parser, Subcommand};

const PASS_VAR: &str = "CFDR_SECRETS_PASSPHRASE";

/// Back up and restore secrets (.env files, JSON, Vault KV v2) as age files
/// in the cfdr repository, and restore them to stdout (.env, JSON, a
/// Kubernetes Secret) or to Vault. No plaintext file is ever written.
///
/// Exit codes: 0 success, 1 a check failed (diff found differences, or
/// restore found other values in Vault and wrote nothing), 2 usage or
/// runtime error.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    cfdr-secrets keygen -o /etc/cfdr/identity.txt              # then add the printed age1... recipient to the config\n  \
    cfdr-secrets -b cryptofunk backup --from vault:secret/cryptofunk\n  \
    cfdr-secrets -b cryptofunk restore --to k8s:cryptofunk-secrets:cryptofunk | kubectl apply -f -\n  \
    cfdr-secrets -b cryptofunk diff latest vault:secret/cryptofunk\n  \
    cfdr-secrets -b cryptofunk --passphrase backup --from env:.env   # break-glass copy, no key needed"
)]
pub(crate) struct Cli {
    /// Config file (default: $CFDR_CONFIG, then /etc/cfdr/cfdr.toml if present).
    #[arg(long, global = true, env = "CFDR_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Repository URL: file:///path, s3://bucket/prefix, gs://..., azblob://..., memory://
    #[arg(short, long, global = true, env = "CFDR_REPOSITORY")]
    pub(crate) repository: Option<String>,
    /// Bundle name (a-z, 0-9, '.', '_', '-') [default: default; list: all bundles].
    #[arg(short, long, global = true, env = "CFDR_SECRETS_BUNDLE")]
    pub(crate) bundle: Option<String>,
    /// age identity file to decrypt with (default: the configured one); mode 0600.
    #[arg(short, long, global = true)]
    pub(crate) identity: Option<PathBuf>,
    /// Use an identity file even if group or others can read it (then fix its mode).
    #[arg(long, global = true)]
    pub(crate) allow_insecure_identity: bool,
    /// Encrypt (backup) or decrypt (restore, diff) with a passphrase instead of keys.
    #[arg(long, global = true)]
    pub(crate) passphrase: bool,
    /// Read the passphrase from this file or /dev/fd/N (else $CFDR_SECRETS_PASSPHRASE, else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// Highest scrypt work factor (log2 N) accepted when decrypting with a passphrase.
    #[arg(long, global = true, default_value_t = cfdr_secrets::DEFAULT_MAX_WORK_FACTOR)]
    pub(crate) max_work_factor: u8,
    /// KV v2 mount for vault: paths whose mount has several segments (e.g. kv/prod).
    #[arg(long, global = true, value_name = "MOUNT")]
    pub(crate) vault_mount: Option<String>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate an age identity into a new 0600 file and print its recipient.
    Keygen {
        /// The new identity file; never overwritten.
        #[arg(short, long, required_unless_present = "public")]
        output: Option<PathBuf>,
        /// Instead, print the recipients and fingerprints of the configured identity.
        #[arg(short = 'y', long = "public")]
        public: bool,
    },
    /// Read secrets from a source and store them encrypted as a new bundle version.
    Backup {
        /// env:FILE, json:FILE, vault:MOUNT/PATH or - (stdin, .env or JSON).
        #[arg(long, value_name = "SOURCE")]
        from: String,
        /// Encrypt to these recipients instead of the configured ones (repeatable).
        #[arg(short = 'R', long = "recipient")]
        recipients: Vec<String>,
        /// ASCII-armored age file instead of binary.
        #[arg(long)]
        armor: bool,
        /// scrypt work factor (log2 N) for --passphrase, pinned (not calibrated).
        #[arg(long, default_value_t = cfdr_secrets::DEFAULT_WORK_FACTOR)]
        work_factor: u8,
        /// Create the repository first if it does not exist.
        #[arg(long)]
        init: bool,
    },
    /// List stored bundle versions (all bundles unless -b is given), oldest first.
    List {
        /// Machine-readable output (the manifests).
        #[arg(long)]
        json: bool,
    },
    /// Decrypt a version and write it to a sink (stdout or Vault).
    Restore {
        /// latest, a version, or a unique prefix of one.
        #[arg(default_value = "latest")]
        version: String,
        /// env, json, k8s:NAME[:NAMESPACE] or vault:MOUNT/PATH.
        #[arg(long, value_name = "SINK")]
        to: String,
        /// Vault: overwrite secrets that hold other values (still check-and-set).
        #[arg(long)]
        force: bool,
        /// Vault: show what would be written, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Names added, removed and changed from A to B (never values).
    Diff {
        /// A version (latest, a version or prefix) or a source (env:FILE, json:FILE, vault:PATH, -).
        a: String,
        /// Same forms as A.
        b: String,
    },
    /// Re-encrypt every stored version to a new recipient set, verifying each
    /// before the old object is deleted.
    Rekey {
        /// The new recipients (repeatable; default: the configured ones).
        #[arg(short = 'R', long = "recipient")]
        recipients: Vec<String>,
        /// An identity of a new recipient, to verify the new copies (mode 0600).
        #[arg(long, value_name = "FILE")]
        new_identity: Option<PathBuf>,
        /// Report what would be re-encrypted; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl Cli {
    fn passphrase(&self, prompt: &str, confirm: bool) -> Result<Passphrase> {
        let file = self.passphrase_file.as_deref();
        Ok(Passphrase::obtain(file, PASS_VAR, prompt, confirm)?)
    }

    /// Decryption keys: --identity or the configured identity, plus the
    /// passphrase with --passphrase.
    pub(crate) fn identities(&self, config: &Config) -> Result<Identities> {
        let insecure = self.allow_insecure_identity;
        let keys = match (&self.identity, &config.encryption.identity_file) {
            (Some(f), _) => Some(Identities::from_file(f, insecure)?),
            (None, Some(f)) if insecure => Some(Identities::from_file(f, true)?),
            _ => config.identities()?,
        };
        if !self.passphrase {
            return keys.context("no age identity: pass --identity FILE or set CFDR_AGE_IDENTITY_FILE / CFDR_AGE_IDENTITY (or --passphrase for a break-glass copy)");
        }
        let by_pass = Identities::from_passphrase(
            self.passphrase("Passphrase: ", false)?,
            self.max_work_factor,
        );
        Ok(match keys {
            Some(k) => k.with(by_pass),
            None => by_pass,
        })
    }

    /// Backup encryption: the passphrase with --passphrase, else -R or the
    /// configured recipients.
    pub(crate) fn encryption(
        &self,
        config: &Config,
        given: &[String],
        work_factor: u8,
    ) -> Result<Encryption> {
        if self.passphrase {
            return Ok(Encryption::passphrase(
                self.passphrase("New passphrase: ", true)?,
                work_factor,
            )?);
        }
        Ok(Encryption::Recipients(recipients(config, given)?))
    }
}

/// -R recipients, else the configured ones.
pub(crate) fn recipients(config: &Config, given: &[String]) -> Result<Recipients> {
    if given.is_empty() {
        return config.recipients()?.context(
            "no age recipients: pass -R age1... or set encryption.recipients / CFDR_AGE_RECIPIENTS",
        );
    }
    Ok(Recipients::parse(given.iter().map(String::as_str))?)
}

/// A Vault client from VAULT_ADDR / VAULT_TOKEN / VAULT_NAMESPACE when needed.
pub(crate) fn vault(needed: bool) -> Result<Option<VaultClient>> {
    Ok(needed
        .then(|| VaultOptions::from_env().and_then(VaultClient::new))
        .transpose()?)
}
