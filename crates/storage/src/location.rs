//! Repository locations: URL + options -> an opendal [`Operator`] with the
//! retry, timeout and logging layers. This is the only place in cfdr that
//! builds an operator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opendal::Operator;
use opendal::layers::{LoggingLayer, RetryLayer, TimeoutLayer};
use opendal::services;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::object::Store;
use crate::object_lock::{LockMode, LockPeriod, LockPeriods, ObjectLock};

/// The repository used when none is configured.
pub const DEFAULT_REPOSITORY: &str = "./cfdr-repo";

/// Where and how to reach a repository. Plain serde struct; `Default` is a
/// local folder repository at [`DEFAULT_REPOSITORY`].
///
/// Credentials are never read from the config file: they come from the
/// standard environment variables and credential chains of each cloud, or are
/// set in code (the `#[serde(skip)]` fields).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct StorageOptions {
    /// Repository URL: `file:///path` (or a bare path), `memory://`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `azblob://container/prefix`.
    /// Query parameters set the backend options below, e.g.
    /// `s3://b/p?endpoint=http://127.0.0.1:9000&region=us-east-1`.
    pub url: Option<String>,
    /// S3 settings.
    pub s3: S3Options,
    /// Azure Blob settings.
    pub azblob: AzblobOptions,
    /// Google Cloud Storage settings.
    pub gcs: GcsOptions,
    /// Retry of temporary errors.
    pub retry: RetryOptions,
    /// Per-call timeouts.
    pub timeout: TimeoutOptions,
    /// Backend feature switches, for S3-compatible servers and emulators that
    /// lack a feature their protocol has.
    pub compat: CompatOptions,
    /// S3 Object Lock: `off` (default), `governance` or `compliance`. When
    /// set, every object cfdr writes gets a retention date: its data class's
    /// retention window plus `object-lock-margin` (see docs/object-lock.md).
    pub object_lock: LockMode,
    /// Added to each object's retention window (`30d`, `1y`, ...).
    pub object_lock_margin: LockPeriod,
    /// The retention window of each kind of object, filled in from
    /// `[retention]` by cfdr-config (never read from the file).
    #[serde(skip)]
    pub lock_periods: LockPeriods,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            url: None,
            s3: S3Options::default(),
            azblob: AzblobOptions::default(),
            gcs: GcsOptions::default(),
            retry: RetryOptions::default(),
            timeout: TimeoutOptions::default(),
            compat: CompatOptions::default(),
            object_lock: LockMode::Off,
            object_lock_margin: default_lock_margin(),
            lock_periods: LockPeriods::default(),
        }
    }
}

/// The default `object-lock-margin`: 30 days.
pub fn default_lock_margin() -> LockPeriod {
    LockPeriod(jiff::Span::new().days(30))
}

/// S3 settings. Unset fields fall back to the AWS environment
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE`, web identity, ...).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct S3Options {
    /// Endpoint URL (MinIO, s3s, Ceph, ...); AWS when unset.
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when unset and not in the environment.
    pub region: Option<String>,
    /// Use virtual-host-style addressing (`bucket.endpoint`) instead of paths.
    pub virtual_host_style: bool,
    /// Access key id (code only; never from the config file).
    #[serde(skip)]
    pub access_key_id: Option<String>,
    /// Secret access key (code only; never from the config file).
    #[serde(skip)]
    pub secret_access_key: Option<String>,
    /// Do not read `~/.aws` files, `AWS_*` variables or instance metadata:
    /// only the explicit fields count. For tests and air-gapped setups.
    pub explicit_credentials_only: bool,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("virtual_host_style", &self.virtual_host_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("explicit_credentials_only", &self.explicit_credentials_only)
            .finish()
    }
}

/// Azure Blob settings. Unset fields fall back to `AZURE_STORAGE_CONNECTION_STRING`,
/// `AZURE_STORAGE_ACCOUNT`, `AZURE_STORAGE_KEY`, `AZURE_STORAGE_SAS_TOKEN`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct AzblobOptions {
    /// Blob endpoint, e.g. `https://acct.blob.core.windows.net` or Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
    /// Account name.
    pub account_name: Option<String>,
    /// Account key (code only).
    #[serde(skip)]
    pub account_key: Option<String>,
    /// SAS token (code only).
    #[serde(skip)]
    pub sas_token: Option<String>,
    /// Ignore the `AZURE_STORAGE_*` environment.
    pub explicit_credentials_only: bool,
}

impl std::fmt::Debug for AzblobOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzblobOptions")
            .field("endpoint", &self.endpoint)
            .field("account_name", &self.account_name)
            .field(
                "account_key",
                &self.account_key.as_ref().map(|_| "<redacted>"),
            )
            .field("sas_token", &self.sas_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Google Cloud Storage settings. Credentials come from
/// `GOOGLE_APPLICATION_CREDENTIALS` or the metadata server; an emulator is
/// used when `STORAGE_EMULATOR_HOST` is set or `anonymous` is on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct GcsOptions {
    /// Endpoint URL; Google's when unset.
    pub endpoint: Option<String>,
    /// Send unsigned requests (emulators, public buckets).
    pub anonymous: bool,
    /// Path of a service-account key file.
    pub credential_path: Option<PathBuf>,
}

/// Exponential backoff for temporary errors only (timeouts, 5xx, throttling,
/// connection failures); permanent errors fail at once.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetryOptions {
    /// Retries after the first attempt (0 disables retry).
    pub max_retries: usize,
    /// First backoff delay in milliseconds.
    pub min_delay_ms: u64,
    /// Largest backoff delay in milliseconds.
    pub max_delay_ms: u64,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay_ms: 200,
            max_delay_ms: 5_000,
        }
    }
}

/// Timeouts per storage call.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TimeoutOptions {
    /// Whole-call timeout for stat, delete, list pages and the like, in seconds.
    pub call_secs: u64,
    /// Timeout of one read or write chunk, in seconds.
    pub io_secs: u64,
}

impl Default for TimeoutOptions {
    fn default() -> Self {
        Self {
            call_secs: 60,
            io_secs: 60,
        }
    }
}

/// Switches for servers that lack a protocol feature. All default to on.
///
/// fake-gcs-server needs all three off
/// (`?multipart=false&conditional-create=false&batch-delete=false`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct CompatOptions {
    /// Multipart (chunked) uploads. Off: each object is sent in one request
    /// and buffered whole in memory first.
    pub multipart: bool,
    /// Server-side create-only writes (`If-None-Match: *`). Off: a stat, a
    /// write and a read-back, which narrows but does not close the race.
    pub conditional_create: bool,
    /// Batch deletes. Off: one request per object.
    pub batch_delete: bool,
    /// Keys asked for per listing request (S3 `max-keys`, ...); the
    /// backend's default (1,000 on S3) when unset. Servers cap it at their
    /// own maximum. Emulators that walk the whole bucket for every page
    /// (s3s-fs) list large repositories much faster with a big page.
    pub list_page_size: Option<u32>,
}

impl Default for CompatOptions {
    fn default() -> Self {
        Self {
            multipart: true,
            conditional_create: true,
            batch_delete: true,
            list_page_size: None,
        }
    }
}

/// The kind of backend behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// A local folder.
    Fs,
    /// Process memory (tests, dry runs).
    Memory,
    /// S3 or an S3-compatible server.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azblob,
}

impl BackendKind {
    /// Which settings to check when the backend refuses the credentials.
    pub(crate) fn credential_hint(self) -> &'static str {
        match self {
            BackendKind::S3 => {
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that they may access the bucket"
            }
            BackendKind::Azblob => {
                "AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING"
            }
            BackendKind::Gcs => {
                "GOOGLE_APPLICATION_CREDENTIALS and the service account's bucket roles"
            }
            BackendKind::Fs => "the file permissions of the repository folder",
            BackendKind::Memory => "nothing (memory repositories have no credentials)",
        }
    }

    pub(crate) fn bucket_word(self) -> &'static str {
        match self {
            BackendKind::Azblob => "container",
            BackendKind::Fs => "folder",
            _ => "bucket",
        }
    }
}

/// A parsed repository URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Backend kind.
    pub kind: BackendKind,
    /// Bucket or container (the folder for fs, empty for memory).
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing slash.
    pub prefix: String,
    /// Query parameters.
    pub params: BTreeMap<String, String>,
}

impl Location {
    /// Parses a repository URL. A string without `://` is a local path.
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let raw_trimmed = raw.trim();
        if raw_trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        if !raw_trimmed.contains("://") {
            return Ok(Self::local(Path::new(raw_trimmed)));
        }
        let url = Url::parse(raw_trimmed).map_err(|e| invalid(&e.to_string()))?;
        let params: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        let kind = match url.scheme() {
            "file" => BackendKind::Fs,
            "memory" => BackendKind::Memory,
            "s3" => BackendKind::S3,
            "gs" | "gcs" => BackendKind::Gcs,
            "azblob" | "az" => BackendKind::Azblob,
            other => {
                return Err(Error::UnsupportedScheme {
                    scheme: other.to_owned(),
                    url: raw.to_owned(),
                });
            }
        };
        match kind {
            BackendKind::Fs => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(invalid(
                        "a file URL needs an absolute path with three slashes (file:///path)",
                    ));
                }
                let path = url
                    .to_file_path()
                    .map_err(|_| invalid("not a valid absolute file path"))?;
                let mut loc = Self::local(&path);
                loc.params = params;
                Ok(loc)
            }
            BackendKind::Memory => Ok(Self {
                kind,
                bucket: String::new(),
                prefix: url.host_str().unwrap_or_default().to_owned(),
                params,
            }),
            _ => {
                let bucket = url.host_str().unwrap_or_default().to_owned();
                if bucket.is_empty() {
                    return Err(invalid(&format!(
                        "the {} name is missing",
                        kind.bucket_word()
                    )));
                }
                Ok(Self {
                    kind,
                    bucket,
                    prefix: url.path().trim_matches('/').to_owned(),
                    params,
                })
            }
        }
    }

    fn local(path: &Path) -> Self {
        let joined = if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()
                .unwrap_or_else(|_| PathBuf::from("/"))
                .join(path)
        };
        // Drop `.` components so the shown location is the plain path.
        let abs: PathBuf = joined
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        Self {
            kind: BackendKind::Fs,
            bucket: abs.display().to_string(),
            prefix: String::new(),
            params: BTreeMap::new(),
        }
    }

    /// A display form without query parameters (so never with secrets).
    pub fn display(&self) -> String {
        match self.kind {
            BackendKind::Fs => format!("file://{}", self.bucket),
            BackendKind::Memory => format!("memory://{}", self.prefix),
            BackendKind::S3 => format!("s3://{}/{}", self.bucket, self.prefix),
            BackendKind::Gcs => format!("gs://{}/{}", self.bucket, self.prefix),
            BackendKind::Azblob => format!("azblob://{}/{}", self.bucket, self.prefix),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn param_bool(loc: &Location, name: &str, default: bool) -> Result<bool> {
    match loc.params.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(Error::InvalidOption {
            option: name.to_owned(),
            reason: format!("{other:?} is not true or false"),
        }),
    }
}

impl StorageOptions {
    /// Options for a URL with everything else at defaults.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Builds the store. `inject` may wrap the bare operator in extra layers
    /// (used by tests for fault injection) before retry, timeout and logging
    /// are applied on top.
    ///
    /// A local folder's operator is built on first use, once the folder
    /// exists: building one creates the folder, and a command pointed at a
    /// missing repository must not write anything.
    pub fn build_with(
        &self,
        inject: impl FnOnce(Operator) -> Operator + Send + 'static,
    ) -> Result<Store> {
        // Idempotent: installs the rustls HTTP transport process-wide.
        opendal::install_default();
        let raw = self.url.as_deref().unwrap_or(DEFAULT_REPOSITORY);
        let loc = Location::parse(raw)?;
        let mut compat = self.compat;
        compat.multipart = param_bool(&loc, "multipart", compat.multipart)?;
        compat.conditional_create =
            param_bool(&loc, "conditional-create", compat.conditional_create)?;
        compat.batch_delete = param_bool(&loc, "batch-delete", compat.batch_delete)?;
        if let Some(v) = loc.params.get("list-page-size") {
            compat.list_page_size = Some(v.parse().map_err(|_| Error::InvalidOption {
                option: "list-page-size".into(),
                reason: format!("{v:?} is not a positive number"),
            })?);
        }
        let (retry, timeout) = (self.retry.clone(), self.timeout.clone());
        let layered = move |op: Operator| {
            inject(op)
                .layer(LoggingLayer::default())
                .layer(
                    TimeoutLayer::new()
                        .with_timeout(Duration::from_secs(timeout.call_secs.max(1)))
                        .with_io_timeout(Duration::from_secs(timeout.io_secs.max(1))),
                )
                .layer(
                    RetryLayer::new()
                        .with_max_times(retry.max_retries)
                        .with_min_delay(Duration::from_millis(retry.min_delay_ms))
                        .with_max_delay(Duration::from_millis(retry.max_delay_ms))
                        .with_factor(2.0)
                        .with_jitter(),
                )
        };
        if loc.kind == BackendKind::Fs {
            // Uploads are staged in `.cfdr-tmp/` by cfdr's own writer (see
            // `ObjectWriter`), created on the first write only.
            let (root, shown) = (loc.bucket.clone(), loc.display());
            let make = move || {
                let op = Operator::new(services::Fs::default().root(&root)).map_err(|e| {
                    Error::InvalidOption {
                        option: shown,
                        reason: e.to_string(),
                    }
                })?;
                Ok(layered(op))
            };
            let endpoint = loc.display();
            return Ok(Store::deferred(Box::new(make), loc, endpoint, compat));
        }
        let lock = ObjectLock::from_options(self, &loc)?;
        let (op, endpoint) = self.base_operator(&loc)?;
        let mut store = Store::new(layered(op), loc, endpoint, compat);
        store.lock = lock.map(std::sync::Arc::new);
        Ok(store)
    }

    /// The S3 endpoint (URL parameter, options, then `AWS_ENDPOINT_URL_S3` /
    /// `AWS_ENDPOINT_URL`; `None` for AWS) and region of `loc`.
    pub(crate) fn s3_endpoint_region(&self, loc: &Location) -> (Option<String>, String) {
        let o = &self.s3;
        let endpoint = loc
            .params
            .get("endpoint")
            .cloned()
            .or_else(|| o.endpoint.clone())
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"));
        let region = loc
            .params
            .get("region")
            .cloned()
            .or_else(|| o.region.clone())
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        (endpoint, region)
    }

    /// Builds the store with the standard layers.
    pub fn build(&self) -> Result<Store> {
        self.build_with(|op| op)
    }

    fn base_operator(&self, loc: &Location) -> Result<(Operator, String)> {
        let backend_err = |e: opendal::Error| Error::InvalidOption {
            option: loc.display(),
            reason: e.to_string(),
        };
        let root = format!("/{}", loc.prefix);
        match loc.kind {
            BackendKind::Memory => {
                // One shared in-process store per name, so that every store
                // built for `memory://name` sees the same objects, as with a
                // real backend.
                static NAMED: std::sync::LazyLock<
                    std::sync::Mutex<std::collections::HashMap<String, Operator>>,
                > = std::sync::LazyLock::new(Default::default);
                let mut named = NAMED.lock().unwrap_or_else(|p| p.into_inner());
                let op = match named.get(&loc.prefix) {
                    Some(op) => op.clone(),
                    None => {
                        let op = Operator::new(services::Memory::default().root(&root))
                            .map_err(backend_err)?;
                        named.insert(loc.prefix.clone(), op.clone());
                        op
                    }
                };
                Ok((op, loc.display()))
            }
            BackendKind::Fs => Err(Error::InvalidOption {
                option: loc.display(),
                reason: "a local folder's operator is built on first use".into(),
            }),
            BackendKind::S3 => {
                let o = &self.s3;
                let (endpoint, region) = self.s3_endpoint_region(loc);
                let mut b = services::S3::default()
                    .bucket(&loc.bucket)
                    .root(&root)
                    .region(&region);
                if let Some(ep) = &endpoint {
                    b = b.endpoint(ep);
                }
                if o.virtual_host_style || param_bool(loc, "virtual-host-style", false)? {
                    b = b.enable_virtual_host_style();
                }
                if let Some(v) = &o.access_key_id {
                    b = b.access_key_id(v);
                }
                if let Some(v) = &o.secret_access_key {
                    b = b.secret_access_key(v);
                }
                if o.explicit_credentials_only {
                    b = b.disable_config_load().disable_ec2_metadata();
                }
                if self.object_lock != LockMode::Off {
                    // AWS refuses uploads without a checksum into a bucket
                    // whose objects get retention.
                    b = b.checksum_algorithm("crc32c");
                }
                let op = Operator::new(b).map_err(backend_err)?;
                let shown = endpoint.unwrap_or_else(|| format!("s3 ({region})"));
                Ok((op, shown))
            }
            BackendKind::Gcs => {
                let o = &self.gcs;
                let emulator = env("STORAGE_EMULATOR_HOST").map(|h| {
                    if h.contains("://") {
                        h
                    } else {
                        format!("http://{h}")
                    }
                });
                let endpoint = loc
                    .params
                    .get("endpoint")
                    .cloned()
                    .or_else(|| o.endpoint.clone())
                    .or_else(|| emulator.clone());
                let anonymous = param_bool(loc, "anonymous", o.anonymous)? || emulator.is_some();
                let mut b = services::Gcs::default().bucket(&loc.bucket).root(&root);
                if let Some(ep) = &endpoint {
                    b = b.endpoint(ep);
                }
                if let Some(p) = &o.credential_path {
                    b = b.credential_path(&p.display().to_string());
                }
                if anonymous {
                    b = b
                        .skip_signature()
                        .disable_vm_metadata()
                        .disable_config_load();
                }
                let op = Operator::new(b).map_err(backend_err)?;
                let shown = endpoint.unwrap_or_else(|| "https://storage.googleapis.com".into());
                Ok((op, shown))
            }
            BackendKind::Azblob => {
                let o = &self.azblob;
                let from_env = !o.explicit_credentials_only;
                let conn = from_env
                    .then(|| env("AZURE_STORAGE_CONNECTION_STRING"))
                    .flatten();
                let mut b = match conn {
                    Some(c) => services::Azblob::from_connection_string(&c).map_err(|_| {
                        Error::InvalidOption {
                            option: "AZURE_STORAGE_CONNECTION_STRING".into(),
                            reason: "not a valid Azure Storage connection string".into(),
                        }
                    })?,
                    None => services::Azblob::default(),
                };
                b = b.container(&loc.bucket).root(&root);
                let account = o
                    .account_name
                    .clone()
                    .or_else(|| from_env.then(|| env("AZURE_STORAGE_ACCOUNT")).flatten());
                if let Some(a) = &account {
                    b = b.account_name(a);
                }
                let endpoint = loc
                    .params
                    .get("endpoint")
                    .cloned()
                    .or_else(|| o.endpoint.clone())
                    .or_else(|| {
                        account
                            .as_ref()
                            .map(|a| format!("https://{a}.blob.core.windows.net"))
                    });
                if let Some(ep) = &endpoint {
                    b = b.endpoint(ep);
                }
                if let Some(k) = o
                    .account_key
                    .clone()
                    .or_else(|| from_env.then(|| env("AZURE_STORAGE_KEY")).flatten())
                {
                    b = b.account_key(&k);
                }
                if let Some(s) = o
                    .sas_token
                    .clone()
                    .or_else(|| from_env.then(|| env("AZURE_STORAGE_SAS_TOKEN")).flatten())
                {
                    b = b.sas_token(&s);
                }
                let op = Operator::new(b).map_err(backend_err)?;
                Ok((op, endpoint.unwrap_or_else(|| "azure blob".into())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_each_scheme() {
        let s3 = Location::parse("s3://bkt/a/b?endpoint=http://x:1").unwrap();
        assert_eq!(
            (s3.kind, s3.bucket.as_str(), s3.prefix.as_str()),
            (BackendKind::S3, "bkt", "a/b")
        );
        assert_eq!(s3.params["endpoint"], "http://x:1");
        assert_eq!(Location::parse("gs://g").unwrap().kind, BackendKind::Gcs);
        assert_eq!(
            Location::parse("azblob://c/p").unwrap().kind,
            BackendKind::Azblob
        );
        assert_eq!(
            Location::parse("memory://").unwrap().kind,
            BackendKind::Memory
        );
        let fs = Location::parse("file:///var/backups/cfdr").unwrap();
        assert_eq!(fs.bucket, "/var/backups/cfdr");
        assert!(Location::parse("./rel").unwrap().bucket.ends_with("/rel"));
    }

    #[test]
    fn bad_urls_name_the_problem() {
        let e = Location::parse("ftp://x/y").unwrap_err().to_string();
        assert!(e.contains("unsupported repository scheme \"ftp\""), "{e}");
        let e = Location::parse("s3:///prefix").unwrap_err().to_string();
        assert!(e.contains("bucket name is missing"), "{e}");
        let e = Location::parse("azblob://").unwrap_err().to_string();
        assert!(e.contains("container name is missing"), "{e}");
        let e = Location::parse("s3://bad host/x").unwrap_err().to_string();
        assert!(e.contains("invalid repository URL"), "{e}");
        let e = Location::parse("file://host/x").unwrap_err().to_string();
        assert!(e.contains("three slashes"), "{e}");
        let e = StorageOptions::from_url("s3://b/p?multipart=maybe")
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("multipart"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut o = StorageOptions::default();
        o.s3.secret_access_key = Some("hunter2".into());
        o.azblob.account_key = Some("hunter3".into());
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
    }
}
