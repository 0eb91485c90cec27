//! A HashiCorp Vault KV version 2 client: recursive export of a path with
//! each secret's version, and check-and-set writes that never overwrite a
//! value silently.
//!
//! Endpoints used (Vault API docs, "KV secrets engine - version 2"):
//! `LIST /v1/<mount>/metadata/<path>` (keys, folders end in `/`),
//! `GET /v1/<mount>/data/<path>` (fields and `metadata.version`),
//! `GET /v1/<mount>/metadata/<path>` (`current_version`, also of deleted
//! secrets) and `POST /v1/<mount>/data/<path>` with `options.cas`.
//!
//! A secret at `<root>/<rel>` with field `f` becomes the bundle entry
//! `<rel>/f` (just `f` for the root itself); restoring splits the name at
//! its last `/` again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::ser::{SerializeMap, Serializer};
use zeroize::{Zeroize, Zeroizing};

use crate::buf::SecretBuf;
use crate::bundle::{Entry, SecretBundle, SecretValue};
use crate::error::{Error, Result, json_reason};
use crate::formats::JsonIn;

/// A KV v2 mount and a path inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultPath {
    /// The mount, e.g. `secret`.
    pub mount: String,
    /// The path inside the mount, without leading or trailing `/`.
    pub path: String,
}

impl VaultPath {
    /// Parses `MOUNT/PATH`. The mount is the first segment unless `mount`
    /// names a longer one (`kv/prod` in `kv/prod/cryptofunk`).
    pub fn parse(spec: &str, mount: Option<&str>) -> Result<Self> {
        let spec = spec.trim_matches('/');
        let bad = || Error::InvalidSpec {
            what: "Vault path",
            spec: spec.into(),
            expected: "MOUNT/PATH, e.g. secret/cryptofunk (--vault-mount for a multi-segment mount)",
        };
        let (m, p) = match mount.map(|m| m.trim_matches('/')) {
            Some(m) => {
                let rest = spec.strip_prefix(m).ok_or_else(bad)?;
                if !(rest.is_empty() || rest.starts_with('/')) {
                    return Err(bad());
                }
                (m, rest.trim_start_matches('/'))
            }
            None => spec.split_once('/').unwrap_or((spec, "")),
        };
        if m.is_empty() || spec.split('/').any(|s| s.is_empty() || s == "..") {
            return Err(bad());
        }
        Ok(Self {
            mount: m.into(),
            path: p.into(),
        })
    }

    /// This path with `rel` appended.
    pub fn join(&self, rel: &str) -> Self {
        let rel = rel.trim_matches('/');
        let path = match (self.path.is_empty(), rel.is_empty()) {
            (_, true) => self.path.clone(),
            (true, false) => rel.into(),
            (false, false) => format!("{}/{rel}", self.path),
        };
        Self {
            mount: self.mount.clone(),
            path,
        }
    }
}

impl fmt::Display for VaultPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.mount)
        } else {
            write!(f, "{}/{}", self.mount, self.path)
        }
    }
}

/// How to reach Vault. `Debug` never shows the token.
#[derive(Clone)]
pub struct VaultOptions {
    /// `VAULT_ADDR`, e.g. `https://vault.internal:8200`.
    pub addr: String,
    /// `VAULT_TOKEN` (or the CLI's `~/.vault-token`).
    pub token: Zeroizing<String>,
    /// `VAULT_NAMESPACE` (Vault Enterprise / HCP).
    pub namespace: Option<String>,
    /// `VAULT_CACERT`: a PEM bundle of extra trusted CAs.
    pub ca_cert: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl fmt::Debug for VaultOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultOptions")
            .field("addr", &self.addr)
            .field("token", &"[redacted]")
            .field("namespace", &self.namespace)
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl VaultOptions {
    /// Options from `addr` and `token`, no namespace, a 30 s timeout.
    pub fn new(addr: impl Into<String>, token: Zeroizing<String>) -> Self {
        Self {
            addr: addr.into(),
            token,
            namespace: None,
            ca_cert: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Options from the Vault CLI's variables: `VAULT_ADDR`, `VAULT_TOKEN`
    /// (else `~/.vault-token`), `VAULT_NAMESPACE`, `VAULT_CACERT`.
    pub fn from_env() -> Result<Self> {
        let addr = env("VAULT_ADDR").ok_or_else(|| Error::VaultConfig {
            reason: "VAULT_ADDR is not set: export the Vault address, e.g. https://vault:8200"
                .into(),
        })?;
        let token = match env("VAULT_TOKEN") {
            Some(t) => Zeroizing::new(t),
            None => {
                let file = env("HOME").map(|h| PathBuf::from(h).join(".vault-token"));
                let text = file.and_then(|f| std::fs::read_to_string(f).ok());
                Zeroizing::new(text.ok_or_else(|| Error::VaultConfig {
                    reason: "VAULT_TOKEN is not set and ~/.vault-token does not exist: `vault login` or export VAULT_TOKEN".into(),
                })?)
            }
        };
        let mut o = Self::new(addr, Zeroizing::new(token.trim().to_owned()));
        o.namespace = env("VAULT_NAMESPACE");
        o.ca_cert = env("VAULT_CACERT").map(PathBuf::from);
        Ok(o)
    }
}

/// One secret read from Vault: its fields and version.
#[derive(Debug)]
pub struct VaultSecret {
    /// Fields as entries (each with `version` set).
    pub fields: SecretBundle,
    /// The KV version read.
    pub version: u64,
}

/// What an import did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Secret paths written, with the version before (0: new) and after.
    pub written: Vec<(String, u64, u64)>,
    /// Secret paths that already held exactly these values.
    pub unchanged: Vec<String>,
    /// Nothing was written.
    pub dry_run: bool,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would write" } else { "wrote" };
        for (path, from, to) in &self.written {
            writeln!(f, "{verb} {path} (version {from} -> {to})")?;
        }
        writeln!(
            f,
            "{} secrets {verb}, {} unchanged",
            self.written.len(),
            self.unchanged.len()
        )
    }
}

/// A Vault KV v2 client.
#[derive(Clone, Debug)]
pub struct VaultClient {
    opts: VaultOptions,
    base: Url,
    http: reqwest::Client,
}

impl VaultClient {
    /// A client for `opts`.
    pub fn new(opts: VaultOptions) -> Result<Self> {
        let base = Url::parse(&opts.addr).map_err(|e| Error::VaultConfig {
            reason: format!("VAULT_ADDR {:?} is not a URL: {e}", opts.addr),
        })?;
        let mut builder = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)));
        if let Some(ca) = &opts.ca_cert {
            let pem = std::fs::read(ca).map_err(|e| Error::VaultConfig {
                reason: format!("cannot read VAULT_CACERT {}: {e}", ca.display()),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::VaultConfig {
                    reason: format!("VAULT_CACERT {} is not a PEM bundle: {e}", ca.display()),
                })?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| Error::VaultConfig {
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Self { opts, base, http })
    }

    fn url(&self, kind: &str, path: &VaultPath) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut seg) = url.path_segments_mut() {
            seg.pop_if_empty().push("v1");
            seg.extend(path.mount.split('/')).push(kind);
            if !path.path.is_empty() {
                seg.extend(path.path.split('/'));
            }
        }
        url
    }

    /// Sends a request; returns the status and the body in zeroizing memory.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, SecretBuf)> {
        let shown = url.path().to_owned();
        let mut req = self
            .http
            .request(method, url)
            .header("X-Vault-Token", self.opts.token.as_str())
            .header("X-Vault-Request", "true");
        if let Some(ns) = &self.opts.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        tracing::debug!(operation, path = %shown, "vault request");
        let unreachable = |e: reqwest::Error| Error::VaultUnreachable {
            addr: self.opts.addr.clone(),
            detail: e.without_url().to_string(),
        };
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let mut buf = SecretBuf::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            buf.extend(&chunk);
            Vec::<u8>::from(chunk).zeroize();
        }
        match status.as_u16() {
            401 | 403 => Err(Error::VaultDenied {
                operation,
                path: shown,
                status: status.as_u16(),
            }),
            _ => Ok((status, buf)),
        }
    }

    fn failure(operation: &'static str, url: &Url, status: u16, body: &[u8]) -> Error {
        #[derive(Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<String>,
        }
        let detail = serde_json::from_slice::<Errors>(body)
            .map(|e| e.errors.join("; "))
            .unwrap_or_default();
        Error::Vault {
            operation,
            path: url.path().to_owned(),
            status,
            detail: if detail.is_empty() {
                "no error message".into()
            } else {
                detail.chars().take(300).collect()
            },
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(
        operation: &'static str,
        url: &Url,
        body: &[u8],
    ) -> Result<T> {
        serde_json::from_slice(body).map_err(|e| Error::Vault {
            operation,
            path: url.path().to_owned(),
            status: 0,
            detail: format!("unexpected answer: {}", json_reason(&e)),
        })
    }

    /// Keys directly under `path` (folders end in `/`); empty when none.
    pub async fn list(&self, path: &VaultPath) -> Result<Vec<String>> {
        let url = self.url("metadata", path);
        let method = Method::from_bytes(b"LIST").unwrap_or(Method::GET);
        let (status, body) = self.call("list", method, url.clone(), None).await?;
        Self::list_answer(&url, status.as_u16(), body.expose())
    }

    /// The keys of a `LIST` answer with HTTP `status` and `body` from
    /// `url`. Public, like [`Self::read_answer`], so that hostile answers
    /// can be fed to the parser directly (fuzzing).
    pub fn list_answer(url: &Url, status: u16, body: &[u8]) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Resp {
            data: Keys,
        }
        #[derive(Deserialize)]
        struct Keys {
            keys: Vec<String>,
        }
        match status {
            404 => Ok(Vec::new()),
            200 => Ok(Self::parse::<Resp>("list", url, body)?.data.keys),
            _ => Err(Self::failure("list", url, status, body)),
        }
    }

    /// The current version of the secret at `path`, or `None` when it does
    /// not exist or its current version is deleted or destroyed.
    pub async fn read(&self, path: &VaultPath) -> Result<Option<VaultSecret>> {
        let url = self.url("data", path);
        let (status, body) = self.call("read", Method::GET, url.clone(), None).await?;
        Self::read_answer(&url, path, status.as_u16(), body.expose())
    }

    /// The secret in a KV v2 `data` answer with HTTP `status` and `body`
    /// from `url`, read for `path`. Public so that hostile answers can be
    /// fed to the parser directly (fuzzing).
    pub fn read_answer(
        url: &Url,
        path: &VaultPath,
        status: u16,
        body: &[u8],
    ) -> Result<Option<VaultSecret>> {
        #[derive(Deserialize)]
        struct Resp {
            data: Data,
        }
        #[derive(Deserialize)]
        struct Data {
            data: Option<BTreeMap<String, JsonIn>>,
            metadata: Meta,
        }
        #[derive(Deserialize)]
        struct Meta {
            version: u64,
        }
        match status {
            404 => return Ok(None),
            200 => {}
            _ => return Err(Self::failure("read", url, status, body)),
        }
        let resp: Resp = Self::parse("read", url, body)?;
        let Some(data) = resp.data.data else {
            return Ok(None);
        };
        let version = resp.data.metadata.version;
        let mut fields = SecretBundle::new();
        let origin = format!("vault:{path}");
        for (field, v) in data {
            let (value, json) = match v {
                JsonIn::Text(t) => (SecretValue::new(t.take_bytes()), false),
                JsonIn::Other(o) => (SecretValue::new(o.to_string().into_bytes()), true),
            };
            let entry = Entry {
                value,
                version: Some(version),
                json,
            };
            fields.insert(&field, entry, &origin)?;
        }
        Ok(Some(VaultSecret { fields, version }))
    }

    /// `current_version` from the secret's metadata (0 when it never
    /// existed). Deleted versions still count: a check-and-set write must
    /// name it.
    pub async fn current_version(&self, path: &VaultPath) -> Result<u64> {
        #[derive(Deserialize)]
        struct Resp {
            data: Meta,
        }
        #[derive(Deserialize)]
        struct Meta {
            current_version: u64,
        }
        let url = self.url("metadata", path);
        let (status, body) = self
            .call("read metadata", Method::GET, url.clone(), None)
            .await?;
        match status.as_u16() {
            404 => Ok(0),
            200 => Ok(Self::parse::<Resp>("read metadata", &url, body.expose())?
                .data
                .current_version),
            _ => Err(Self::failure(
                "read metadata",
                &url,
                status.as_u16(),
                body.expose(),
            )),
        }
    }

    /// Writes `fields` as the new version of `path` if its current version
    /// is still `cas` (0: must not exist). Returns the new version.
    pub async fn write(&self, path: &VaultPath, fields: &SecretBundle, cas: u64) -> Result<u64> {
        #[derive(Deserialize)]
        struct Resp {
            data: Meta,
        }
        #[derive(Deserialize)]
        struct Meta {
            version: u64,
        }
        let body = write_body(fields, cas)?;
        let url = self.url("data", path);
        let (status, resp) = self
            .call(
                "write",
                Method::POST,
                url.clone(),
                Some(body.expose().to_vec()),
            )
            .await?;
        if status.as_u16() == 400
            && String::from_utf8_lossy(resp.expose()).contains("check-and-set")
        {
            return Err(Error::VaultCas {
                path: path.to_string(),
                cas,
            });
        }
        if !status.is_success() {
            return Err(Self::failure("write", &url, status.as_u16(), resp.expose()));
        }
        Ok(Self::parse::<Resp>("write", &url, resp.expose())?
            .data
            .version)
    }

    /// Reads every secret at and below `root` into one bundle (see the
    /// module docs for the names), each entry with its version.
    pub async fn export(&self, root: &VaultPath) -> Result<SecretBundle> {
        let mut bundle = SecretBundle::new();
        let origin = format!("vault:{root}");
        let mut secrets = vec![String::new()];
        let mut folders = vec![String::new()];
        while let Some(folder) = folders.pop() {
            let mut keys = self.list(&root.join(&folder)).await?;
            keys.sort();
            for key in keys {
                let rel = format!("{folder}{key}");
                if key.ends_with('/') {
                    folders.push(rel);
                } else {
                    secrets.push(rel);
                }
            }
        }
        secrets.sort();
        for rel in secrets {
            let Some(secret) = self.read(&root.join(&rel)).await? else {
                continue;
            };
            for (field, entry) in secret.fields.iter() {
                if field.contains('/') {
                    return Err(Error::InvalidName {
                        name: format!("{rel}:{field}"),
                        reason: "a Vault field name with '/' cannot be told from a path; rename the field".into(),
                    });
                }
                let name = if rel.is_empty() {
                    field.to_owned()
                } else {
                    format!("{rel}/{field}")
                };
                bundle.insert(&name, entry.clone(), &origin)?;
            }
        }
        tracing::info!(path = %root, secrets = bundle.len(), "exported from Vault");
        Ok(bundle)
    }

    /// Writes `bundle` below `root` with check-and-set. First compares every
    /// secret with Vault: secrets that already hold these values are left
    /// alone; secrets that hold other values are a [`Error::VaultConflict`]
    /// (nothing is written) unless `force`. Each write names the version it
    /// replaces, so a change made meanwhile fails instead of being lost.
    pub async fn import(
        &self,
        root: &VaultPath,
        bundle: &SecretBundle,
        force: bool,
        dry_run: bool,
    ) -> Result<ImportReport> {
        check_representable(bundle)?;
        let mut groups: BTreeMap<String, SecretBundle> = BTreeMap::new();
        for (name, entry) in bundle.iter() {
            let (rel, field) = name.rsplit_once('/').unwrap_or(("", name));
            let plain = Entry {
                version: None,
                ..entry.clone()
            };
            groups
                .entry(rel.to_owned())
                .or_default()
                .insert(field, plain, "the bundle")?;
        }
        let mut report = ImportReport {
            dry_run,
            ..Default::default()
        };
        let mut plan = Vec::new();
        let mut conflicts = Vec::new();
        for (rel, fields) in &groups {
            let path = root.join(rel);
            match self.read(&path).await? {
                Some(cur) if cur.fields.diff(fields).is_empty() => {
                    report.unchanged.push(path.to_string());
                }
                Some(cur) if !force => conflicts.push(format!("{path} (version {})", cur.version)),
                Some(cur) => plan.push((path, fields, cur.version)),
                None => {
                    let v = self.current_version(&path).await?;
                    plan.push((path, fields, v));
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(Error::VaultConflict { paths: conflicts });
        }
        for (path, fields, cas) in plan {
            let new = if dry_run {
                cas + 1
            } else {
                self.write(&path, fields, cas).await?
            };
            tracing::info!(path = %path, from = cas, to = new, dry_run, "vault write");
            report.written.push((path.to_string(), cas, new));
        }
        Ok(report)
    }
}

/// Vault KV stores JSON: a value that is not UTF-8 cannot go there.
fn check_representable(bundle: &SecretBundle) -> Result<()> {
    match bundle
        .iter()
        .find(|(_, e)| !e.json && e.value.as_str().is_none())
    {
        Some((name, _)) => Err(Error::Unrepresentable {
            name: name.into(),
            sink: "Vault KV",
            reason: "the value is binary and Vault KV holds JSON text; use --to json or k8s",
        }),
        None => Ok(()),
    }
}

fn write_body(fields: &SecretBundle, cas: u64) -> Result<SecretBuf> {
    check_representable(fields)?;
    let mut out = SecretBuf::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    let err = |e: serde_json::Error| Error::Parse {
        origin: "the Vault request".into(),
        line: None,
        reason: json_reason(&e),
    };
    let mut top = ser.serialize_map(Some(2)).map_err(err)?;
    top.serialize_entry("options", &serde_json::json!({ "cas": cas }))
        .map_err(err)?;
    top.serialize_key("data").map_err(err)?;
    top.serialize_value(&Fields(fields)).map_err(err)?;
    top.end().map_err(err)?;
    Ok(out)
}

struct Fields<'a>(&'a SecretBundle);

impl serde::Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (field, e) in self.0.iter() {
            if e.json {
                let v: serde_json::Value = serde_json::from_slice(e.value.expose())
                    .map_err(|_| S::Error::custom(format!("{field:?} is not valid JSON")))?;
                m.serialize_entry(field, &v)?;
            } else if let Some(t) = e.value.as_str() {
                m.serialize_entry(field, t)?;
            } else {
                return Err(S::Error::custom(format!(
                    "{field:?} is binary: Vault KV holds JSON text only"
                )));
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_parse_and_join() {
        let p = VaultPath::parse("secret/cryptofunk/", None).unwrap();
        assert_eq!(
            (p.mount.as_str(), p.path.as_str()),
            ("secret", "cryptofunk")
        );
        assert_eq!(p.join("a/b").to_string(), "secret/cryptofunk/a/b");
        let p = VaultPath::parse("kv/prod/app", Some("kv/prod")).unwrap();
        assert_eq!((p.mount.as_str(), p.path.as_str()), ("kv/prod", "app"));
        assert!(VaultPath::parse("kv/production", Some("kv/prod")).is_err());
        assert!(VaultPath::parse("secret//x", None).is_err());
        assert!(VaultPath::parse("", None).is_err());
    }

    #[test]
    fn token_is_redacted() {
        let o = VaultOptions::new("http://127.0.0.1:1", Zeroizing::new("s.tok3n".into()));
        assert!(!format!("{o:?}").contains("tok3n"));
    }

    #[test]
    fn binary_fields_are_refused_for_vault() {
        let mut b = SecretBundle::new();
        b.insert_value("k", SecretValue::new(vec![0xff])).unwrap();
        assert!(matches!(
            write_body(&b, 0),
            Err(Error::Unrepresentable { .. })
        ));
    }
}
