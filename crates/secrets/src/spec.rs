//! Where a bundle comes from and where it goes, as written on the command
//! line: `env:FILE`, `json:FILE`, `vault:PATH`, `-` (stdin) and `env`,
//! `json`, `k8s:NAME[:NAMESPACE]`, `vault:PATH`.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;

use crate::buf::SecretBuf;
use crate::bundle::SecretBundle;
use crate::error::{Error, Result};
use crate::formats::{parse_env, parse_json, render_env, render_json, render_kubernetes};
use crate::vault::{VaultClient, VaultPath};

/// A plaintext format read from a file or stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.env` lines.
    Env,
    /// A JSON object.
    Json,
}

/// Where a backup reads secrets from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file (`env:FILE`, `json:FILE`) or stdin (`-`, `env:-`, `json:-`;
    /// plain `-` picks JSON when the text starts with `{`).
    File {
        /// The format, `None` to detect.
        format: Option<Format>,
        /// The file, `None` for stdin.
        path: Option<PathBuf>,
    },
    /// Every secret at and below a Vault KV v2 path.
    Vault(VaultPath),
}

const SOURCE_FORMS: &str = "env:FILE, json:FILE, vault:MOUNT/PATH or - (stdin)";
const SINK_FORMS: &str = "env, json, k8s:NAME[:NAMESPACE] or vault:MOUNT/PATH";

impl Source {
    /// Parses a source; `vault_mount` names a multi-segment KV mount.
    pub fn parse(spec: &str, vault_mount: Option<&str>) -> Result<Self> {
        let file = |format, p: &str| {
            let path = (p != "-").then(|| PathBuf::from(p));
            Source::File { format, path }
        };
        match spec.split_once(':') {
            None if spec == "-" => Ok(file(None, "-")),
            Some(("env", p)) if !p.is_empty() => Ok(file(Some(Format::Env), p)),
            Some(("json", p)) if !p.is_empty() => Ok(file(Some(Format::Json), p)),
            Some(("vault", p)) => Ok(Source::Vault(VaultPath::parse(p, vault_mount)?)),
            _ => Err(Error::InvalidSpec {
                what: "source",
                spec: spec.into(),
                expected: SOURCE_FORMS,
            }),
        }
    }

    /// Whether reading needs a Vault client.
    pub fn needs_vault(&self) -> bool {
        matches!(self, Source::Vault(_))
    }

    /// Reads the bundle. Files and stdin are read into zeroizing memory.
    pub async fn load(&self, vault: Option<&VaultClient>) -> Result<SecretBundle> {
        match self {
            Source::Vault(path) => {
                let client = vault.ok_or_else(|| Error::VaultConfig {
                    reason: "a Vault source needs VAULT_ADDR and VAULT_TOKEN".into(),
                })?;
                client.export(path).await
            }
            Source::File { format, path } => {
                let origin = self.to_string();
                let read_err = |source| Error::Read {
                    origin: origin.clone(),
                    source,
                };
                let text = match path {
                    Some(p) => SecretBuf::read_from(std::fs::File::open(p).map_err(read_err)?),
                    None => SecretBuf::read_from(std::io::stdin().lock()),
                }
                .map_err(read_err)?;
                parse_text(text.expose(), *format, &origin)
            }
        }
    }
}

/// Parses `.env` or JSON text; with `format` unset, text whose first
/// non-blank character is `{` is JSON.
pub fn parse_text(text: &[u8], format: Option<Format>, origin: &str) -> Result<SecretBundle> {
    let json = match format {
        Some(f) => f == Format::Json,
        None => text.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{'),
    };
    if json {
        parse_json(text, origin)
    } else {
        parse_env(text, origin)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Vault(p) => write!(f, "vault:{p}"),
            Source::File { format, path } => {
                let kind = match format {
                    Some(Format::Env) => "env:",
                    Some(Format::Json) => "json:",
                    None => "",
                };
                match path {
                    Some(p) => write!(f, "{kind}{}", p.display()),
                    None => write!(f, "{kind}stdin"),
                }
            }
        }
    }
}

/// Where a restore writes secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// `.env` text on stdout.
    Env,
    /// A JSON object on stdout.
    Json,
    /// A Kubernetes `Secret` manifest on stdout.
    Kubernetes {
        /// The Secret's name.
        name: String,
        /// Its namespace, if given.
        namespace: Option<String>,
    },
    /// Check-and-set writes below a Vault KV v2 path.
    Vault(VaultPath),
}

impl Sink {
    /// Parses a sink; `vault_mount` names a multi-segment KV mount.
    pub fn parse(spec: &str, vault_mount: Option<&str>) -> Result<Self> {
        let bad = || Error::InvalidSpec {
            what: "sink",
            spec: spec.into(),
            expected: SINK_FORMS,
        };
        match spec.split_once(':') {
            None if spec == "env" => Ok(Sink::Env),
            None if spec == "json" => Ok(Sink::Json),
            Some(("vault", p)) => Ok(Sink::Vault(VaultPath::parse(p, vault_mount)?)),
            Some(("k8s" | "kubernetes", rest)) => {
                let (name, namespace) = match rest.split_once(':') {
                    Some((n, ns)) if !ns.is_empty() => (n, Some(ns.to_owned())),
                    Some(_) => return Err(bad()),
                    None => (rest, None),
                };
                if name.is_empty() {
                    return Err(bad());
                }
                Ok(Sink::Kubernetes {
                    name: name.into(),
                    namespace,
                })
            }
            _ => Err(bad()),
        }
    }

    /// Whether writing needs a Vault client.
    pub fn needs_vault(&self) -> bool {
        matches!(self, Sink::Vault(_))
    }

    /// Renders the whole output of a stdout sink before anything is
    /// written. `origin` (e.g. `bundle@version`) goes into a Kubernetes
    /// annotation. `None` for the Vault sink.
    pub fn render(&self, bundle: &SecretBundle, origin: &str) -> Result<Option<SecretBuf>> {
        Ok(Some(match self {
            Sink::Env => render_env(bundle)?,
            Sink::Json => render_json(bundle)?,
            Sink::Kubernetes { name, namespace } => render_kubernetes(
                bundle,
                name,
                namespace.as_deref(),
                &[("cfdr/restored-from", origin)],
            )?,
            Sink::Vault(_) => return Ok(None),
        }))
    }
}

/// Reads all of `reader` into zeroizing memory (for callers that take
/// plaintext from elsewhere).
pub fn read_secret(reader: impl Read, origin: &str) -> Result<SecretBuf> {
    SecretBuf::read_from(reader).map_err(|source| Error::Read {
        origin: origin.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            Source::parse("env:/etc/app.env", None).unwrap().to_string(),
            "env:/etc/app.env"
        );
        assert_eq!(Source::parse("-", None).unwrap().to_string(), "stdin");
        assert!(Source::parse("vault:secret/x", None).unwrap().needs_vault());
        assert!(Source::parse("ftp:x", None).is_err());
        assert_eq!(
            Sink::parse("k8s:app:prod", None).unwrap(),
            Sink::Kubernetes {
                name: "app".into(),
                namespace: Some("prod".into())
            }
        );
        assert_eq!(Sink::parse("json", None).unwrap(), Sink::Json);
        assert!(Sink::parse("k8s:", None).is_err());
        assert!(Sink::parse("yaml", None).is_err());
    }

    #[test]
    fn detects_json_on_stdin_text() {
        let b = parse_text(b"  {\"A\": \"1\"}", None, "stdin").unwrap();
        assert_eq!(b.names(), ["A"]);
        let b = parse_text(b"A=1\n", None, "stdin").unwrap();
        assert_eq!(b.names(), ["A"]);
    }
}
