//! S3 Object Lock: a retention date on every object cfdr writes, the lock
//! state prune needs, versioned deletes, and the bucket check behind
//! `cfdr-repo check`.
//!
//! opendal 0.59 can neither send Object Lock headers on a write nor read
//! retention back, so the four calls it lacks (PutObjectRetention,
//! HeadObject's lock headers, GetBucketVersioning,
//! GetObjectLockConfiguration) are signed here with the reqsign crates
//! opendal itself uses (same credential chain) and sent over reqwest.
//! Listing versions and versioned deletes go through opendal.
//!
//! Nothing here runs unless `[repository] object-lock` is set: a repository
//! without it sends exactly the requests it sent before.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::{Span, SpanRelativeTo, Timestamp, ToSpan};
use md5::Digest as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqsign_aws_v4::{
    Credential, DefaultCredentialProvider, RequestSigner, StaticCredentialProvider,
};
use reqsign_core::{Context, OsEnv, ProvideCredentialChain, Signer};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::location::{BackendKind, Location, StorageOptions};
use crate::object::{Store, TMP_DIR};
use crate::repo::{BACKUPS_PREFIX, BackupId, CONFIG_KEY};
use crate::secret_bundles::SECRETS_PREFIX;
use crate::wal_archive::WAL_PREFIX;

/// Keys cfdr rewrites or deletes as part of its own bookkeeping (lease
/// locks, prune's pending-deletion record, restore and failover markers,
/// copy lag, the WAL stream's state and its chunks, which are folded into
/// ordinary, locked WAL objects once their segment completes): never
/// locked, or a lock would block the next prune or backup, or keep a
/// version of a once-a-second rewrite for years.
const UNLOCKED_PREFIXES: [&str; 5] = [
    "locks/",
    "prune/",
    "operations/",
    "copy-state/",
    "wal-stream/",
];
/// Backup kinds that are not backups: `cfdr-repo selftest`'s sample,
/// deleted right after it is read back (locking it would keep 64 MiB per
/// run for years).
const UNLOCKED_KINDS: [&str; 1] = ["selftest"];

/// Object Lock retention mode (`[repository] object-lock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockMode {
    /// No retention dates are set (the default).
    #[default]
    Off,
    /// Users with `s3:BypassGovernanceRetention` can still delete or
    /// shorten: protects against mistakes, not against a stolen admin key.
    Governance,
    /// Nobody, not even the account root, can delete a version or shorten
    /// its retention before the date.
    Compliance,
}

impl LockMode {
    /// S3's name of the mode, `None` when off.
    pub fn s3_name(self) -> Option<&'static str> {
        match self {
            LockMode::Off => None,
            LockMode::Governance => Some("GOVERNANCE"),
            LockMode::Compliance => Some("COMPLIANCE"),
        }
    }

    /// The name in the config file (`off`, `governance`, `compliance`).
    pub fn config_name(self) -> &'static str {
        match self {
            LockMode::Off => "off",
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }

    fn from_s3(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.s3_name().unwrap_or("off"))
    }
}

/// A calendar period: `30d`, `7y`, `1y 6mo`, `52w`, or ISO 8601 (`P30D`).
/// Years and months are calendar years and months in UTC.
#[derive(Clone, Copy, Debug)]
pub struct LockPeriod(pub Span);

impl LockPeriod {
    /// Zero.
    pub fn zero() -> Self {
        LockPeriod(Span::new())
    }

    /// `t` plus this period (UTC calendar arithmetic); `None` past the
    /// representable range.
    pub fn after(&self, t: Timestamp) -> Option<Timestamp> {
        t.to_zoned(TimeZone::UTC)
            .checked_add(self.0)
            .ok()
            .map(|z| z.timestamp())
    }

    /// This period plus `other`.
    pub fn plus(&self, other: &LockPeriod) -> LockPeriod {
        let anchor = Timestamp::UNIX_EPOCH.to_zoned(TimeZone::UTC);
        LockPeriod(self.0.checked_add((other.0, &anchor)).unwrap_or(self.0))
    }

    /// Orders two periods by their length from `at`.
    pub fn cmp_at(&self, other: &LockPeriod, at: Timestamp) -> std::cmp::Ordering {
        let z = at.to_zoned(TimeZone::UTC);
        self.0
            .compare((other.0, SpanRelativeTo::from(&z)))
            .unwrap_or(std::cmp::Ordering::Equal)
    }

    /// True for a zero period.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl Default for LockPeriod {
    fn default() -> Self {
        Self::zero()
    }
}

impl PartialEq for LockPeriod {
    fn eq(&self, other: &Self) -> bool {
        self.0.fieldwise() == other.0.fieldwise()
    }
}

impl fmt::Display for LockPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0d");
        }
        write!(f, "{:#}", self.0)
    }
}

impl FromStr for LockPeriod {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let span: Span = s.trim().parse().map_err(|e| {
            format!("{s:?} is not a period like \"30d\", \"7y\" or \"1y 6mo\" ({e})")
        })?;
        if span.is_negative() {
            return Err(format!("{s:?} is negative"));
        }
        Ok(LockPeriod(span))
    }
}

impl Serialize for LockPeriod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for LockPeriod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How long each kind of object stays locked, before the margin: the
/// retention window of its data class. cfdr-config fills this from
/// `[retention]`; the defaults lock nothing beyond the margin.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LockPeriods {
    /// By backup kind (the kind in a backup id: `logical`, `physical`,
    /// `config`, `logs`, `audit`, `trading`, `secrets`); also used for
    /// secret bundles (`secrets`).
    pub kinds: BTreeMap<String, LockPeriod>,
    /// WAL files: as long as the database backups that need them.
    pub wal: LockPeriod,
    /// Everything else cfdr keeps (incident records, `cfdr.json`, backups of
    /// kinds not listed above).
    pub other: LockPeriod,
}

impl LockPeriods {
    /// The retention window of the object at `key`, or `None` when cfdr's
    /// own bookkeeping rewrites or deletes it (never locked).
    pub fn window(&self, key: &str) -> Option<LockPeriod> {
        let key = key.trim_start_matches('/');
        if key.starts_with(TMP_DIR) || UNLOCKED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            return None;
        }
        if let Some(rest) = key.strip_prefix(BACKUPS_PREFIX) {
            let id = rest.split('/').next().unwrap_or_default();
            let kind = BackupId::parse(id).ok().map(|id| id.kind().to_owned());
            if kind.as_deref().is_some_and(|k| UNLOCKED_KINDS.contains(&k)) {
                return None;
            }
            return Some(
                kind.and_then(|k| self.kinds.get(&k).copied())
                    .unwrap_or(self.other),
            );
        }
        if key.starts_with(WAL_PREFIX) {
            return Some(self.wal);
        }
        if key.starts_with(SECRETS_PREFIX) {
            return Some(self.kinds.get("secrets").copied().unwrap_or(self.other));
        }
        Some(self.other)
    }

    /// The longest window of all (the one a bucket default must cover).
    pub fn longest(&self, at: Timestamp) -> LockPeriod {
        self.kinds
            .values()
            .chain([&self.wal, &self.other])
            .copied()
            .max_by(|a, b| a.cmp_at(b, at))
            .unwrap_or_default()
    }
}

/// The retention an object version carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Retention {
    /// GOVERNANCE or COMPLIANCE.
    pub mode: LockMode,
    /// Nobody can delete the version before this time.
    pub until: Timestamp,
}

impl Retention {
    /// True while the version cannot be deleted.
    pub fn holds_at(&self, now: Timestamp) -> bool {
        self.mode != LockMode::Off && self.until > now
    }
}

/// An object prune could not delete because it is still locked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedObject {
    /// The key.
    pub key: String,
    /// Its retention, when the server reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// What [`Store::delete_versions`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionedDeletes {
    /// Keys whose every version (and delete marker) is gone.
    pub deleted: usize,
    /// Keys with at least one version the server refused to delete.
    pub locked: Vec<LockedObject>,
}

/// The Object Lock state of one repository location, as `cfdr-repo check`
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockCheck {
    /// The location checked (no secrets).
    pub location: String,
    /// False on backends without S3 Object Lock (folder, memory, GCS, Azure).
    pub supported: bool,
    /// Bucket versioning: `Enabled`, `Suspended` or `Off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<String>,
    /// Whether Object Lock is enabled on the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_lock: Option<bool>,
    /// The bucket's default retention rule (mode and period), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_retention: Option<DefaultRetention>,
    /// The mode cfdr sets on each object (`[repository] object-lock`).
    pub configured_mode: LockMode,
    /// The margin added to each retention window.
    pub margin: String,
    /// The longest retention window of the data classes.
    pub window: String,
    /// The newest backup manifest (or `cfdr.json`) and its retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleObject>,
    /// Weaker protection than configured or than the retention window.
    pub warnings: Vec<String>,
    /// Settings under which writes fail or nothing is protected.
    pub problems: Vec<String>,
}

/// A bucket's default retention rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DefaultRetention {
    /// Its mode.
    pub mode: LockMode,
    /// Its period (`30d`, `7y`).
    pub period: String,
}

/// One object's retention, as sampled by the check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SampleObject {
    /// Its key.
    pub key: String,
    /// When it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<Timestamp>,
    /// Its retention; `None` when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

impl LockCheck {
    /// True when nothing is wrong enough to fail the check.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Human-readable lines.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "repository {}", self.location);
        if !self.supported {
            let _ = writeln!(out, "  object lock: not supported on this backend");
        } else {
            let on = |b: Option<bool>| match b {
                Some(true) => "enabled",
                Some(false) => "not enabled",
                None => "unknown",
            };
            let _ = writeln!(
                out,
                "  versioning: {}",
                self.versioning.as_deref().unwrap_or("unknown")
            );
            let _ = writeln!(out, "  bucket object lock: {}", on(self.bucket_lock));
            match &self.default_retention {
                Some(d) => {
                    let _ = writeln!(out, "  bucket default retention: {} {}", d.mode, d.period);
                }
                None => {
                    let _ = writeln!(out, "  bucket default retention: none");
                }
            }
        }
        let _ = writeln!(
            out,
            "  cfdr object lock: {} (window up to {}, margin {})",
            self.configured_mode, self.window, self.margin
        );
        if let Some(s) = &self.sample {
            match &s.retention {
                Some(r) => {
                    let _ = writeln!(out, "  newest {}: {} until {}", s.key, r.mode, r.until);
                }
                None => {
                    let _ = writeln!(out, "  newest {}: no retention", s.key);
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "WARNING: {w}");
        }
        for p in &self.problems {
            let _ = writeln!(out, "PROBLEM: {p}");
        }
        if self.warnings.is_empty() && self.problems.is_empty() {
            let _ = writeln!(out, "ok");
        }
        out
    }
}

/// Characters S3 keeps unencoded in a path (RFC 3986 unreserved and `/`).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// The same for query values (where `/` is encoded).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// reqsign's credential providers (web identity, ECS, IMDS) send their
/// own requests through this.
#[derive(Clone, Debug)]
struct ReqwestSend(reqwest::Client);

impl reqsign_core::HttpSend for ReqwestSend {
    async fn http_send(
        &self,
        req: http::Request<Bytes>,
    ) -> reqsign_core::Result<http::Response<Bytes>> {
        let req = reqwest::Request::try_from(req.map(reqwest::Body::from))
            .map_err(|e| reqsign_core::Error::unexpected(e.to_string()))?;
        let resp = self
            .0
            .execute(req)
            .await
            .map_err(|e| reqsign_core::Error::unexpected(e.to_string()))?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = resp
            .bytes()
            .await
            .map_err(|e| reqsign_core::Error::unexpected(e.to_string()))?;
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// A server answer.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn detail(&self) -> String {
        let code = xml_tag(&self.body, "Code").unwrap_or_default();
        let message = xml_tag(&self.body, "Message").unwrap_or_default();
        let text = format!("HTTP {} {code} {message}", self.status);
        text.trim().to_owned()
    }
}

/// The text of the first `<name>...</name>` element (enough for the small,
/// flat documents these calls return). CDATA is unwrapped.
fn xml_tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    let text = xml[start..end].trim();
    Some(
        text.strip_prefix("<![CDATA[")
            .and_then(|t| t.strip_suffix("]]>"))
            .unwrap_or(text),
    )
}

/// Signed S3 calls for one bucket.
pub(crate) struct S3Api {
    http: reqwest::Client,
    signer: Signer<Credential>,
    /// `http(s)://host[:port]` plus `/bucket` for path-style addressing.
    base: String,
    /// Key prefix of the repository inside the bucket.
    prefix: String,
    bucket: String,
    retries: usize,
    min_delay: Duration,
}

impl S3Api {
    pub(crate) fn new(options: &StorageOptions, loc: &Location) -> Result<Self> {
        let (endpoint, region) = options.s3_endpoint_region(loc);
        let o = &options.s3;
        let endpoint = endpoint
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"))
            .trim_end_matches('/')
            .to_owned();
        let virtual_host = o.virtual_host_style
            || matches!(
                loc.params.get("virtual-host-style").map(String::as_str),
                Some("true" | "1" | "yes" | "on")
            );
        let base = if virtual_host {
            match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{}.{host}", loc.bucket),
                None => format!("https://{}.{endpoint}", loc.bucket),
            }
        } else {
            format!("{endpoint}/{}", loc.bucket)
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(options.timeout.call_secs.max(1)))
            .build()
            .map_err(|e| Error::InvalidOption {
                option: "object-lock".into(),
                reason: format!("cannot set up the HTTP client: {e}"),
            })?;
        let ctx = Context::new()
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_env(OsEnv)
            .with_http_send(ReqwestSend(http.clone()));
        // The same chain opendal's S3 service builds from these options.
        let mut builder = DefaultCredentialProvider::builder();
        if o.explicit_credentials_only {
            builder = builder.no_env().no_profile().no_imds();
        }
        let mut chain = ProvideCredentialChain::new().push(builder.build());
        if let (Some(ak), Some(sk)) = (&o.access_key_id, &o.secret_access_key) {
            chain = chain.push_front(StaticCredentialProvider::new(ak, sk));
        }
        let signer = Signer::new(ctx, chain, RequestSigner::new("s3", &region));
        Ok(Self {
            http,
            signer,
            base,
            prefix: loc.prefix.trim_matches('/').to_owned(),
            bucket: loc.bucket.clone(),
            retries: options.retry.max_retries,
            min_delay: Duration::from_millis(options.retry.min_delay_ms.max(1)),
        })
    }

    fn object_url(&self, key: &str) -> String {
        let key = key.trim_start_matches('/');
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        format!("{}/{}", self.base, utf8_percent_encode(&full, PATH))
    }

    /// Sends one signed request; retries transport errors, 5xx and 429.
    async fn send(
        &self,
        operation: &'static str,
        target: &str,
        method: http::Method,
        url: String,
        body: Bytes,
        extra: &[(&'static str, String)],
    ) -> Result<Answer> {
        let fail = |detail: String, hint: &str| Error::ObjectLock {
            operation,
            target: target.to_owned(),
            detail,
            hint: hint.to_owned(),
        };
        let mut delay = self.min_delay;
        let mut attempt = 0;
        loop {
            let mut builder = http::Request::builder()
                .method(method.clone())
                .uri(&url)
                .header(
                    "x-amz-content-sha256",
                    hex::encode(sha2::Sha256::digest(&body)),
                );
            for (name, value) in extra {
                builder = builder.header(*name, value);
            }
            let req = builder
                .body(body.clone())
                .map_err(|e| fail(e.to_string(), "report this as a cfdr bug"))?;
            let (mut parts, body_bytes) = req.into_parts();
            self.signer.sign(&mut parts, None).await.map_err(|e| {
                fail(
                    e.to_string(),
                    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
                )
            })?;
            let req = reqwest::Request::try_from(http::Request::from_parts(
                parts,
                reqwest::Body::from(body_bytes),
            ))
            .map_err(|e| fail(e.to_string(), "check the endpoint URL"))?;
            let outcome = self.http.execute(req).await;
            let transient = match &outcome {
                Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
                Err(_) => true,
            };
            if transient && attempt < self.retries {
                attempt += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
            let resp = outcome.map_err(|e| {
                fail(
                    e.to_string(),
                    "check the endpoint URL, the network and that the service is running",
                )
            })?;
            let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
            let body = resp.text().await.unwrap_or_default();
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
    }

    /// Sets the retention of `key` (its `version`, or the newest).
    pub(crate) async fn put_retention(
        &self,
        key: &str,
        version: Option<&str>,
        retention: &Retention,
    ) -> Result<()> {
        let Some(mode) = retention.mode.s3_name() else {
            return Ok(());
        };
        let until = retention.until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{mode}</Mode><RetainUntilDate>{until}</RetainUntilDate></Retention>"
        );
        let md5 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            md5::Md5::digest(body.as_bytes()),
        );
        let mut url = format!("{}?retention", self.object_url(key));
        if let Some(v) = version {
            url.push_str(&format!("&versionId={}", utf8_percent_encode(v, QUERY)));
        }
        let answer = self
            .send(
                "PutObjectRetention",
                key,
                http::Method::PUT,
                url,
                Bytes::from(body),
                &[
                    ("content-md5", md5),
                    ("content-type", "application/xml".into()),
                ],
            )
            .await?;
        if answer.status / 100 == 2 {
            return Ok(());
        }
        let detail = answer.detail();
        let hint = if detail.contains("InvalidRequest")
            || detail.contains("ObjectLockConfiguration")
        {
            format!(
                "bucket {} has no Object Lock: create it with Object Lock enabled (it cannot be switched on for most existing buckets), or set `object-lock = \"off\"` in [repository]",
                self.bucket
            )
        } else if answer.status == 403 {
            "the credentials need s3:PutObjectRetention on the repository's keys".to_owned()
        } else {
            "see docs/object-lock.md".to_owned()
        };
        Err(Error::ObjectLock {
            operation: "PutObjectRetention",
            target: key.to_owned(),
            detail,
            hint,
        })
    }

    /// The retention of `key` (its `version`, or the newest) and when it
    /// was written; `None` when the object does not exist.
    pub(crate) async fn head(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<(Option<Retention>, Option<Timestamp>)>> {
        let mut url = self.object_url(key);
        if let Some(v) = version {
            url.push_str(&format!("?versionId={}", utf8_percent_encode(v, QUERY)));
        }
        let answer = self
            .send(
                "HeadObject",
                key,
                http::Method::HEAD,
                url,
                Bytes::new(),
                &[],
            )
            .await?;
        if answer.status == 404 {
            return Ok(None);
        }
        if answer.status / 100 != 2 {
            return Err(Error::ObjectLock {
                operation: "HeadObject",
                target: key.to_owned(),
                detail: answer.detail(),
                hint: "the credentials need s3:GetObject and s3:GetObjectRetention".into(),
            });
        }
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mode = header("x-amz-object-lock-mode").and_then(|m| LockMode::from_s3(&m));
        let until = header("x-amz-object-lock-retain-until-date").and_then(|t| t.parse().ok());
        let retention = match (mode, until) {
            (Some(mode), Some(until)) => Some(Retention { mode, until }),
            _ => None,
        };
        let written = header("last-modified")
            .and_then(|t| jiff::fmt::rfc2822::parse(&t).ok().map(|z| z.timestamp()));
        Ok(Some((retention, written)))
    }

    async fn bucket_get(&self, operation: &'static str, query: &str) -> Result<Answer> {
        let url = format!("{}?{query}", self.base);
        self.send(
            operation,
            &format!("bucket {}", self.bucket),
            http::Method::GET,
            url,
            Bytes::new(),
            &[],
        )
        .await
    }

    /// `Enabled`, `Suspended` or `Off`.
    pub(crate) async fn versioning(&self) -> Result<String> {
        let answer = self.bucket_get("GetBucketVersioning", "versioning").await?;
        if answer.status / 100 != 2 {
            return Err(Error::ObjectLock {
                operation: "GetBucketVersioning",
                target: format!("bucket {}", self.bucket),
                detail: answer.detail(),
                hint: "the credentials need s3:GetBucketVersioning".into(),
            });
        }
        Ok(xml_tag(&answer.body, "Status")
            .filter(|s| !s.is_empty())
            .unwrap_or("Off")
            .to_owned())
    }

    /// Whether Object Lock is enabled, and the default rule.
    pub(crate) async fn lock_configuration(&self) -> Result<(bool, Option<DefaultRetention>)> {
        let answer = self
            .bucket_get("GetObjectLockConfiguration", "object-lock")
            .await?;
        if answer.status == 404 && answer.body.contains("ObjectLockConfigurationNotFound") {
            return Ok((false, None));
        }
        if answer.status / 100 != 2 {
            return Err(Error::ObjectLock {
                operation: "GetObjectLockConfiguration",
                target: format!("bucket {}", self.bucket),
                detail: answer.detail(),
                hint: "the credentials need s3:GetBucketObjectLockConfiguration".into(),
            });
        }
        let enabled = xml_tag(&answer.body, "ObjectLockEnabled") == Some("Enabled");
        let default = xml_tag(&answer.body, "DefaultRetention").and_then(|rule| {
            let mode = LockMode::from_s3(xml_tag(rule, "Mode")?)?;
            let number = |tag| xml_tag(rule, tag).and_then(|n| n.parse::<i64>().ok());
            let span = match (number("Days"), number("Years")) {
                (Some(d), _) => d.days(),
                (None, Some(y)) => y.years(),
                (None, None) => return None,
            };
            Some(DefaultRetention {
                mode,
                period: LockPeriod(span).to_string(),
            })
        });
        Ok((enabled, default))
    }
}

/// A repository's object lock: the mode, margin and windows, and the S3
/// client that sets them.
pub(crate) struct ObjectLock {
    pub(crate) mode: LockMode,
    pub(crate) margin: LockPeriod,
    pub(crate) periods: LockPeriods,
    pub(crate) api: S3Api,
}

impl ObjectLock {
    /// The object lock of `options` at `loc`, or `None` when it is off.
    pub(crate) fn from_options(options: &StorageOptions, loc: &Location) -> Result<Option<Self>> {
        if options.object_lock == LockMode::Off {
            return Ok(None);
        }
        if loc.kind != BackendKind::S3 {
            return Err(Error::InvalidOption {
                option: "object-lock".into(),
                reason: format!(
                    "retention dates are set on S3 repositories only, {} is not one (Azure immutability policies and GCS retention are set on the container or bucket itself); set `object-lock = \"off\"` in [repository]",
                    loc.display()
                ),
            });
        }
        Ok(Some(Self {
            mode: options.object_lock,
            margin: options.object_lock_margin,
            periods: options.lock_periods.clone(),
            api: S3Api::new(options, loc)?,
        }))
    }

    /// The retention a new object at `key` gets now, or `None` when it is
    /// never locked.
    pub(crate) fn retention_for(&self, key: &str, now: Timestamp) -> Option<Retention> {
        let window = self.periods.window(key)?;
        let total = window.plus(&self.margin);
        if total.is_zero() {
            return None;
        }
        Some(Retention {
            mode: self.mode,
            until: total.after(now)?,
        })
    }

    /// Locks a freshly written object version.
    pub(crate) async fn protect(&self, key: &str, version: Option<&str>) -> Result<()> {
        let Some(retention) = self.retention_for(key, Timestamp::now()) else {
            return Ok(());
        };
        self.api.put_retention(key, version, &retention).await?;
        tracing::debug!(key, mode = %retention.mode, until = %retention.until, "object locked");
        Ok(())
    }
}

impl Store {
    /// The configured Object Lock mode (`Off` unless `[repository]
    /// object-lock` is set on an S3 repository).
    pub fn lock_mode(&self) -> LockMode {
        self.lock.as_ref().map_or(LockMode::Off, |l| l.mode)
    }

    /// The retention of the newest version of `key`; `None` when it has
    /// none or object lock is off (no request is sent then).
    pub async fn retention(&self, key: &str) -> Result<Option<Retention>> {
        match &self.lock {
            None => Ok(None),
            Some(lock) => Ok(lock.api.head(key, None).await?.and_then(|(r, _)| r)),
        }
    }

    /// Deletes every version (and delete marker) of each key: on a
    /// versioned bucket a plain delete only hides an object. A version the
    /// server refuses to delete (still locked) is left, and its key is
    /// reported in [`VersionedDeletes::locked`]; other errors fail.
    pub async fn delete_versions(&self, keys: &[String]) -> Result<VersionedDeletes> {
        let op = self.operator()?.clone();
        let wanted: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
        // One versioned listing per folder, not per key.
        let mut folders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for key in &wanted {
            let folder = key.rfind('/').map_or("", |i| &key[..=i]);
            folders.entry(folder).or_default().push(key);
        }
        let mut versions: Vec<(String, String)> = Vec::new();
        for folder in folders.keys() {
            let path = if folder.is_empty() { "/" } else { folder };
            let mut lister = op
                .lister_with(path)
                .versions(true)
                .deleted(true)
                .await
                .map_err(|e| self.map_err("list versions", path, e))?;
            while let Some(entry) = lister.next().await {
                let entry = entry.map_err(|e| self.map_err("list versions", path, e))?;
                let key = entry.path().trim_start_matches('/');
                if let (true, Some(v)) = (wanted.contains(key), entry.metadata().version()) {
                    versions.push((key.to_owned(), v.to_owned()));
                }
            }
        }
        let results: Vec<(String, std::result::Result<(), opendal::Error>)> =
            futures::stream::iter(versions)
                .map(|(key, version)| {
                    let op = op.clone();
                    async move {
                        let r = op.delete_with(&key).version(&version).await;
                        (key, r)
                    }
                })
                .buffer_unordered(8)
                .collect()
                .await;
        let mut refused: BTreeSet<String> = BTreeSet::new();
        for (key, r) in results {
            match r {
                Ok(()) => {}
                // A locked version: AWS answers 403, some S3 servers 400,
                // always with the code AccessDenied.
                Err(e)
                    if e.kind() == opendal::ErrorKind::PermissionDenied
                        || format!("{e:?}").contains("AccessDenied") =>
                {
                    refused.insert(key);
                }
                Err(e) => return Err(self.map_err("delete version", &key, e)),
            }
        }
        let mut locked = Vec::new();
        for key in &refused {
            let retention = match &self.lock {
                Some(lock) => lock
                    .api
                    .head(key, None)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|(r, _)| r),
                None => None,
            };
            locked.push(LockedObject {
                key: key.clone(),
                retention,
            });
        }
        Ok(VersionedDeletes {
            deleted: wanted.len() - refused.len(),
            locked,
        })
    }
}

/// Checks the Object Lock state of the repository at `options` (one
/// location: the main repository or a copy): bucket versioning, whether
/// Object Lock is enabled, its default rule, and the retention of the
/// newest backup manifest. Warns on GOVERNANCE mode and on protection
/// shorter than the longest retention window in `options.lock_periods`.
///
/// Needs read access only (GetBucketVersioning,
/// GetBucketObjectLockConfiguration, HeadObject, ListBucket).
pub async fn check_object_lock(options: &StorageOptions) -> Result<LockCheck> {
    let raw = options.url.as_deref().unwrap_or(crate::DEFAULT_REPOSITORY);
    let loc = Location::parse(raw)?;
    let now = Timestamp::now();
    let window = options.lock_periods.longest(now);
    let mut check = LockCheck {
        location: loc.display(),
        supported: loc.kind == BackendKind::S3,
        versioning: None,
        bucket_lock: None,
        default_retention: None,
        configured_mode: options.object_lock,
        margin: options.object_lock_margin.to_string(),
        window: window.to_string(),
        sample: None,
        warnings: Vec::new(),
        problems: Vec::new(),
    };
    if !check.supported {
        if options.object_lock != LockMode::Off {
            check.problems.push(format!(
                "object-lock = \"{}\" is set but {} is not an S3 repository: every write fails; set `object-lock = \"off\"`",
                options.object_lock.config_name(), check.location
            ));
        }
        check.warnings.push(
            "backups here can be deleted by anyone holding the repository's credentials (runbook 4.5): keep a copy in an S3 bucket with Object Lock".into(),
        );
        return Ok(check);
    }
    let api = S3Api::new(options, &loc)?;
    let versioning = api.versioning().await?;
    let (enabled, default) = api.lock_configuration().await?;
    check.versioning = Some(versioning.clone());
    check.bucket_lock = Some(enabled);
    check.default_retention = default.clone();

    if !enabled {
        if options.object_lock != LockMode::Off {
            check.problems.push(format!(
                "object-lock = \"{}\" is set but bucket {} has no Object Lock: every write fails; create the bucket with Object Lock enabled",
                options.object_lock.config_name(), loc.bucket
            ));
        }
        check.warnings.push(format!(
            "bucket {} has no Object Lock: backups can be deleted with the repository's own credentials (runbook 4.5)",
            loc.bucket
        ));
    } else if versioning != "Enabled" {
        check.problems.push(format!(
            "bucket {} has Object Lock but versioning is {versioning}",
            loc.bucket
        ));
    }
    if options.object_lock == LockMode::Governance {
        check.warnings.push(
            "object-lock = \"governance\": anyone with s3:BypassGovernanceRetention can delete backups; use \"compliance\" for ransomware protection".into(),
        );
    }
    if let Some(d) = &default {
        if d.mode == LockMode::Governance {
            check.warnings.push(
                "the bucket's default retention is GOVERNANCE: it can be bypassed; use COMPLIANCE"
                    .into(),
            );
        }
        if options.object_lock == LockMode::Off
            && let Ok(p) = d.period.parse::<LockPeriod>()
            && p.cmp_at(&window, now).is_lt()
        {
            check.warnings.push(format!(
                "the bucket's default retention ({}) is shorter than the retention window ({window}), and cfdr sets no longer dates (object-lock is off)",
                d.period
            ));
        }
    } else if enabled && options.object_lock == LockMode::Off {
        check.warnings.push(
            "Object Lock is enabled on the bucket, but it has no default retention and cfdr's object-lock is off: objects are not locked".into(),
        );
    }

    // The newest backup's manifest shows what writes really get.
    let store = options.build()?;
    let folders = store.list_after(BACKUPS_PREFIX, false, None).await?;
    let key = folders
        .iter()
        .rev()
        .find_map(|f| {
            let id = f.key.strip_prefix(BACKUPS_PREFIX)?.trim_end_matches('/');
            let key = BackupId::parse(id).ok()?.manifest_key();
            // Self-test samples are never locked: not what backups get.
            options.lock_periods.window(&key).map(|_| key)
        })
        .unwrap_or_else(|| CONFIG_KEY.to_owned());
    let mut tried = vec![key];
    if tried[0] != CONFIG_KEY {
        tried.push(CONFIG_KEY.to_owned());
    }
    for key in tried {
        let Some((retention, written)) = api.head(&key, None).await? else {
            continue;
        };
        let expected = options
            .lock_periods
            .window(&key)
            .and_then(|w| written.and_then(|t| w.after(t)));
        match &retention {
            None if options.object_lock != LockMode::Off || enabled => {
                check
                    .warnings
                    .push(format!("{key} has no retention: it can be deleted"));
            }
            Some(r) if r.mode == LockMode::Governance => {
                check.warnings.push(format!(
                    "{key} is locked in GOVERNANCE mode: it can be bypassed"
                ));
            }
            _ => {}
        }
        if let (Some(r), Some(expected)) = (&retention, expected)
            && r.until < expected
        {
            check.warnings.push(format!(
                "{key} is locked until {}, before the end of its retention window ({expected})",
                r.until
            ));
        }
        check.sample = Some(SampleObject {
            key,
            written,
            retention,
        });
        break;
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn periods() -> LockPeriods {
        LockPeriods {
            kinds: [
                ("logical".to_owned(), "1y".parse().unwrap()),
                ("audit".to_owned(), "7y".parse().unwrap()),
            ]
            .into(),
            wal: "1y".parse().unwrap(),
            other: "7y".parse().unwrap(),
        }
    }

    #[test]
    fn windows_follow_what_the_key_holds() {
        let p = periods();
        let id = BackupId::new("2026-01-02T03:04:05Z".parse().unwrap(), "audit").unwrap();
        let audit = format!("{}data.tar.zst", id.prefix());
        assert_eq!(p.window(&audit).unwrap().to_string(), "7y");
        let id = BackupId::new("2026-01-02T03:04:05Z".parse().unwrap(), "logical").unwrap();
        assert_eq!(p.window(&id.manifest_key()).unwrap().to_string(), "1y");
        assert_eq!(
            p.window("wal/0000000100000000000000A1")
                .unwrap()
                .to_string(),
            "1y"
        );
        assert_eq!(
            p.window("incidents/INC-1/event.json").unwrap().to_string(),
            "7y"
        );
        assert!(p.window("locks/prune/lease.json").is_none());
        assert!(p.window("prune/pending.json").is_none());
        assert!(
            p.window("operations/20261201T200000Z-restore.json")
                .is_none()
        );
        assert!(p.window("copy-state/dr-west.json").is_none());
        assert!(p.window("wal-stream/state.json").is_none());
        let id = BackupId::new(Timestamp::now(), "selftest").unwrap();
        assert!(p.window(&id.manifest_key()).is_none());
        assert_eq!(p.longest(Timestamp::now()).to_string(), "7y");
    }

    #[test]
    fn periods_parse_and_reject_nonsense() {
        assert_eq!("30d".parse::<LockPeriod>().unwrap().to_string(), "30d");
        assert_eq!("P1Y".parse::<LockPeriod>().unwrap().to_string(), "1y");
        let e = "thirty days".parse::<LockPeriod>().unwrap_err();
        assert!(e.contains("thirty days"), "{e}");
        assert!(
            "-3d"
                .parse::<LockPeriod>()
                .unwrap_err()
                .contains("negative")
        );
        let t: Timestamp = "2026-01-31T00:00:00Z".parse().unwrap();
        let until = "1y"
            .parse::<LockPeriod>()
            .unwrap()
            .plus(&"30d".parse().unwrap());
        assert_eq!(until.after(t).unwrap().to_string(), "2027-03-02T00:00:00Z");
    }

    #[test]
    fn xml_fields_are_found() {
        let doc = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>30</Days></DefaultRetention></Rule></ObjectLockConfiguration>";
        assert_eq!(xml_tag(doc, "ObjectLockEnabled"), Some("Enabled"));
        let rule = xml_tag(doc, "DefaultRetention").unwrap();
        assert_eq!(xml_tag(rule, "Days"), Some("30"));
        assert_eq!(
            xml_tag("<Message><![CDATA[x y]]></Message>", "Message"),
            Some("x y")
        );
    }
}
