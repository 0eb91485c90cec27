//! Secret bundles in the repository.
//!
//! ```text
//! secrets/<bundle>/<version>.age       the bundle document, age-encrypted
//! secrets/<bundle>/<version>.json      its manifest: written last, create-only
//! secrets/<bundle>/<version>.r<N>.age  the object after the N-th rekey
//! ```
//!
//! A version is the backup's UTC time, `YYYYMMDDTHHMMSS.mmmZ`, so versions
//! sort by time as strings. The manifest holds key **names** only, their
//! count, the recipient fingerprints (or the scrypt work factor of a
//! passphrase copy) and the object's size and SHA-256; values exist only
//! inside the age file. As with backups, an object without its manifest is
//! the leftover of a killed writer and is not listed.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use cfdr_secrets::{Encryption, Identities, Recipients, SecretBundle, seal, unseal};

use crate::error::{Error, Result};
use crate::lock::Lease;
use crate::object::{ObjectInfo, Store};
use crate::repo::{Repository, TOOL_VERSION};

/// Prefix of all secret bundles.
pub const SECRETS_PREFIX: &str = "secrets/";
/// Format version of secret manifests.
pub const SECRET_MANIFEST_FORMAT: u32 = 1;
/// Name of the lease lock `rekey` holds.
pub const REKEY_LOCK: &str = "secrets-rekey";

/// How a stored bundle is encrypted (public facts only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealInfo {
    /// Fingerprints of the age recipients; empty for a passphrase copy.
    pub recipients: Vec<String>,
    /// scrypt work factor (log2 N) of a passphrase copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrypt_work_factor: Option<u8>,
    /// ASCII-armored rather than binary.
    pub armored: bool,
}

/// The manifest of one stored bundle version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretManifest {
    /// Manifest format version.
    pub format_version: u32,
    /// Bundle name.
    pub bundle: String,
    /// Version: the backup's UTC time.
    pub version: String,
    /// Backup time.
    pub created: Timestamp,
    /// cfdr version that wrote it.
    pub tool_version: String,
    /// Where the secrets came from (`vault:secret/cryptofunk`, `env:FILE`...).
    pub source: String,
    /// Key of the age object.
    pub object: String,
    /// Stored size and SHA-256 of the age object.
    #[serde(flatten)]
    pub stored: ObjectInfo,
    /// Number of secrets.
    pub count: usize,
    /// Secret names, sorted (never values).
    pub keys: Vec<String>,
    /// Encryption facts.
    pub encryption: SealInfo,
    /// Time of the last rekey, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekeyed: Option<Timestamp>,
}

impl SecretManifest {
    /// `bundle@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.bundle, self.version)
    }

    fn key(&self) -> String {
        manifest_key(&self.bundle, &self.version)
    }
}

/// One line: `bundle@version  N secrets  SIZE B  fingerprints` (or the
/// passphrase's work factor).
impl std::fmt::Display for SecretManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let enc = match self.encryption.scrypt_work_factor {
            Some(wf) => format!("passphrase (scrypt 2^{wf})"),
            None => self.encryption.recipients.join(","),
        };
        write!(
            f,
            "{:<44} {:>4} secrets {:>8} B  {enc}",
            self.label(),
            self.count,
            self.stored.size
        )
    }
}

/// What a rekey did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// `bundle@version` re-encrypted to the new recipients.
    pub rekeyed: Vec<String>,
    /// Versions already encrypted to exactly the new recipients.
    pub current: Vec<String>,
    /// Passphrase copies, left as they are (re-make them with a new passphrase).
    pub passphrase_copies: Vec<String>,
    /// Superseded objects of earlier interrupted rekeys that were removed.
    pub removed_leftovers: Vec<String>,
    /// Nothing was changed.
    pub dry_run: bool,
}

impl std::fmt::Display for RekeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would rekey"
        } else {
            "rekeyed"
        };
        for label in &self.rekeyed {
            writeln!(f, "{verb} {label}")?;
        }
        for label in &self.passphrase_copies {
            writeln!(
                f,
                "kept passphrase copy {label} (make a new one if the passphrase leaked)"
            )?;
        }
        writeln!(
            f,
            "{} {verb}, {} already current, {} leftovers removed",
            self.rekeyed.len(),
            self.current.len(),
            self.removed_leftovers.len()
        )
    }
}

/// Checks a bundle name: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter
/// or digit.
pub fn validate_bundle_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            option: "bundle name".into(),
            reason: format!("{name:?} must be 1-64 of a-z, 0-9, '.', '_', '-'"),
        })
    }
}

fn bundle_prefix(bundle: &str) -> String {
    format!("{SECRETS_PREFIX}{bundle}/")
}

fn manifest_key(bundle: &str, version: &str) -> String {
    format!("{}{version}.json", bundle_prefix(bundle))
}

fn version_of(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%S.%3fZ").to_string()
}

fn crypto(key: &str, decrypting: bool, source: cfdr_secrets::Error) -> Error {
    Error::Crypto {
        key: key.to_owned(),
        decrypting,
        source,
    }
}

fn seal_info(enc: &Encryption, armored: bool) -> SealInfo {
    SealInfo {
        recipients: enc.fingerprints(),
        scrypt_work_factor: enc.work_factor(),
        armored,
    }
}

fn to_json(m: &SecretManifest) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(m).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

/// Secret bundles of one repository.
#[derive(Clone, Debug)]
pub struct SecretStore {
    store: Store,
}

impl SecretStore {
    /// The secret bundles of `repo`.
    pub fn new(repo: &Repository) -> Self {
        Self {
            store: repo.store().clone(),
        }
    }

    /// Encrypts `secrets` and stores them as a new version of `bundle`:
    /// the age object first, then the manifest (create-only) as the commit.
    /// Refuses an empty bundle (usually a wrong path or file).
    pub async fn backup(
        &self,
        bundle: &str,
        secrets: &SecretBundle,
        encryption: &Encryption,
        armored: bool,
        source: &str,
        now: Timestamp,
    ) -> Result<SecretManifest> {
        validate_bundle_name(bundle)?;
        if secrets.is_empty() {
            return Err(Error::InvalidOption {
                option: "source".into(),
                reason: format!("{source} holds no secrets: nothing to back up"),
            });
        }
        let doc = secrets.to_document();
        let sealed =
            seal(encryption, doc.expose(), armored).map_err(|e| crypto(bundle, false, e))?;
        drop(doc);
        let mut created = now;
        let mut attempt = 0;
        let (version, object, stored) = loop {
            let version = version_of(created);
            let object = format!("{}{version}.age", bundle_prefix(bundle));
            match self.store.create_if_absent(&object, sealed.clone()).await {
                Ok(info) => break (version, object, info),
                // Two backups in the same millisecond: take the next one.
                Err(Error::AlreadyExists { .. }) if attempt < 20 => {
                    attempt += 1;
                    created += jiff::SignedDuration::from_millis(1);
                }
                Err(e) => return Err(e),
            }
        };
        let manifest = SecretManifest {
            format_version: SECRET_MANIFEST_FORMAT,
            bundle: bundle.to_owned(),
            version,
            created,
            tool_version: TOOL_VERSION.into(),
            source: source.to_owned(),
            object,
            stored,
            count: secrets.len(),
            keys: secrets.names(),
            encryption: seal_info(encryption, armored),
            rekeyed: None,
        };
        self.store
            .create_if_absent(&manifest.key(), to_json(&manifest))
            .await?;
        tracing::info!(
            bundle = manifest.label(),
            count = manifest.count,
            "secret bundle stored"
        );
        Ok(manifest)
    }

    /// Names of the bundles that have at least one object, sorted.
    pub async fn bundles(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .store
            .list(SECRETS_PREFIX)
            .await?
            .into_iter()
            .filter_map(|m| {
                let rest = m.key.strip_prefix(SECRETS_PREFIX)?;
                Some(rest.split_once('/')?.0.to_owned())
            })
            .collect();
        names.dedup();
        Ok(names)
    }

    /// Committed versions of `bundle`, or of every bundle when `None`
    /// (by bundle name, then oldest first).
    pub async fn list(&self, bundle: Option<&str>) -> Result<Vec<SecretManifest>> {
        let names = match bundle {
            Some(b) => vec![b.to_owned()],
            None => self.bundles().await?,
        };
        let mut all = Vec::new();
        for name in names {
            all.extend(self.versions(&name).await?);
        }
        Ok(all)
    }

    /// Committed versions of `bundle`, oldest first.
    pub async fn versions(&self, bundle: &str) -> Result<Vec<SecretManifest>> {
        validate_bundle_name(bundle)?;
        let mut out = Vec::new();
        for meta in self.store.list(&bundle_prefix(bundle)).await? {
            if meta.key.ends_with(".json") {
                out.push(self.read_manifest(&meta.key).await?);
            }
        }
        out.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(out)
    }

    async fn read_manifest(&self, key: &str) -> Result<SecretManifest> {
        let raw = self.store.get(key).await?;
        let m: SecretManifest =
            serde_json::from_slice(&raw).map_err(|e| Error::InvalidDocument {
                key: key.to_owned(),
                reason: e.to_string(),
            })?;
        if m.format_version > SECRET_MANIFEST_FORMAT || manifest_key(&m.bundle, &m.version) != key {
            return Err(Error::InvalidDocument {
                key: key.to_owned(),
                reason: "unknown format version or a manifest of another bundle version".into(),
            });
        }
        Ok(m)
    }

    /// A version of `bundle`: `latest`, an exact version, or a unique
    /// prefix of one (e.g. `20260105T03`).
    pub async fn resolve(&self, bundle: &str, spec: &str) -> Result<SecretManifest> {
        let mut all = self.versions(bundle).await?;
        let not_found = || Error::NotFound {
            key: format!("{}{spec} (see `cfdr-secrets list`)", bundle_prefix(bundle)),
        };
        if spec == "latest" {
            return all.pop().ok_or_else(not_found);
        }
        let mut matching: Vec<SecretManifest> = all
            .into_iter()
            .filter(|m| m.version.starts_with(spec))
            .collect();
        match matching.len() {
            0 => Err(not_found()),
            1 => Ok(matching.remove(0)),
            n => Err(Error::InvalidOption {
                option: "version".into(),
                reason: format!("{spec:?} matches {n} versions of {bundle}: give more of it"),
            }),
        }
    }

    /// Reads, verifies (size, SHA-256), decrypts and parses a version.
    /// Returns only once every age chunk is authenticated, so nothing of a
    /// damaged object reaches a sink.
    pub async fn open(&self, m: &SecretManifest, identities: &Identities) -> Result<SecretBundle> {
        let sealed = self.store.get_verified(&m.object, &m.stored).await?;
        let plain = unseal(identities, &sealed).map_err(|e| crypto(&m.object, true, e))?;
        let bundle =
            SecretBundle::from_document(plain.expose()).map_err(|e| crypto(&m.object, true, e))?;
        if bundle.names() != m.keys {
            return Err(Error::Corrupt {
                key: m.object.clone(),
                reason: "its secret names differ from the manifest".into(),
            });
        }
        Ok(bundle)
    }

    /// Re-encrypts every stored version (of every bundle) to `to`, holding
    /// the [`REKEY_LOCK`] lease. Each version is decrypted with
    /// `identities`, re-encrypted, written under a new key, read back and
    /// decrypted again and compared; only then does the manifest point to
    /// it and the old object go. `identities` must open the old versions and
    /// at least one of the new recipients (checked before anything is
    /// written). Passphrase copies are left alone.
    pub async fn rekey(
        &self,
        to: &Recipients,
        identities: &Identities,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<RekeyReport> {
        let probe = seal(&Encryption::Recipients(to.clone()), b"probe", false)
            .map_err(|e| crypto("rekey probe", false, e))?;
        if unseal(identities, &probe).is_err() {
            return Err(Error::InvalidOption {
                option: "identities".into(),
                reason: format!(
                    "none of the identities from {} matches a new recipient, so rekeyed copies could not be verified: add the new identity (--new-identity FILE)",
                    identities.origin()
                ),
            });
        }
        let mut lease = Lease::acquire(
            &self.store,
            REKEY_LOCK,
            "cfdr-secrets rekey",
            std::time::Duration::from_secs(600),
        )
        .await?;
        let result = self
            .rekey_locked(to, identities, dry_run, now, &mut lease)
            .await;
        let released = lease.release().await;
        let report = result?;
        released?;
        Ok(report)
    }

    async fn rekey_locked(
        &self,
        to: &Recipients,
        identities: &Identities,
        dry_run: bool,
        now: Timestamp,
        lease: &mut Lease,
    ) -> Result<RekeyReport> {
        let mut report = RekeyReport {
            dry_run,
            ..Default::default()
        };
        let mut wanted = to.fingerprints();
        wanted.sort();
        let encryption = Encryption::Recipients(to.clone());
        for bundle in self.bundles().await? {
            for m in self.versions(&bundle).await? {
                let mut have = m.encryption.recipients.clone();
                have.sort();
                if m.encryption.scrypt_work_factor.is_some() {
                    report.passphrase_copies.push(m.label());
                } else if have == wanted {
                    report.current.push(m.label());
                } else {
                    if !dry_run {
                        self.rekey_one(&m, &encryption, identities, now).await?;
                        lease.renew().await?;
                    }
                    report.rekeyed.push(m.label());
                }
            }
            if !dry_run {
                report
                    .removed_leftovers
                    .extend(self.remove_superseded(&bundle).await?);
            }
        }
        Ok(report)
    }

    async fn rekey_one(
        &self,
        m: &SecretManifest,
        encryption: &Encryption,
        identities: &Identities,
        now: Timestamp,
    ) -> Result<()> {
        let sealed = self.store.get_verified(&m.object, &m.stored).await?;
        let plain = unseal(identities, &sealed).map_err(|e| crypto(&m.object, true, e))?;
        let resealed = seal(encryption, plain.expose(), m.encryption.armored)
            .map_err(|e| crypto(&m.object, true, e))?;
        let file = m.object.rsplit('/').next().unwrap_or_default();
        let generation = file
            .rsplit_once(".r")
            .and_then(|(_, n)| n.strip_suffix(".age")?.parse::<u32>().ok())
            .unwrap_or(0)
            + 1;
        let new_key = format!(
            "{}{}.r{generation}.age",
            bundle_prefix(&m.bundle),
            m.version
        );
        let stored = match self
            .store
            .create_if_absent(&new_key, resealed.clone())
            .await
        {
            // Left by an interrupted rekey (the manifest does not name it).
            Err(Error::AlreadyExists { .. }) => {
                self.store.delete_many([&new_key]).await?;
                self.store.create_if_absent(&new_key, resealed).await?
            }
            other => other?,
        };
        let back = self.store.get_verified(&new_key, &stored).await?;
        let same = unseal(identities, &back)
            .map(|p| p.expose() == plain.expose())
            .unwrap_or(false);
        if !same {
            self.store.delete_many([&new_key]).await?;
            return Err(Error::Corrupt {
                key: new_key,
                reason:
                    "the re-encrypted copy did not decrypt to the original; the old object is kept"
                        .into(),
            });
        }
        let mut updated = m.clone();
        updated.object = new_key;
        updated.stored = stored;
        updated.encryption = seal_info(encryption, m.encryption.armored);
        updated.rekeyed = Some(now);
        self.store.put(&m.key(), to_json(&updated)).await?;
        self.store.delete_many([&m.object]).await?;
        tracing::info!(bundle = m.label(), object = updated.object, "rekeyed");
        Ok(())
    }

    /// Deletes objects of committed versions that their manifest no longer
    /// names (left by a rekey interrupted after the manifest was updated).
    /// Objects of uncommitted versions are not touched: a backup may be
    /// writing its manifest right now.
    async fn remove_superseded(&self, bundle: &str) -> Result<Vec<String>> {
        let manifests = self.versions(bundle).await?;
        let mut gone = Vec::new();
        for meta in self.store.list(&bundle_prefix(bundle)).await? {
            if !meta.key.ends_with(".age") {
                continue;
            }
            let name = &meta.key[bundle_prefix(bundle).len()..];
            let version = name
                .split(".r")
                .next()
                .unwrap_or(name)
                .trim_end_matches(".age");
            if manifests
                .iter()
                .any(|m| m.version == version && m.object != meta.key)
            {
                gone.push(meta.key);
            }
        }
        self.store.delete_many(&gone).await?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::StorageOptions;
    use cfdr_secrets::{Passphrase, SecretValue, generate_identity};

    fn keys() -> (Identities, Recipients) {
        let (secret, public) = generate_identity();
        (
            Identities::from_text(secret.as_str()).unwrap(),
            Recipients::parse([public.as_str()]).unwrap(),
        )
    }

    fn sample() -> SecretBundle {
        let mut b = SecretBundle::new();
        b.insert_value("API_KEY", SecretValue::text("k-1\nline2"))
            .unwrap();
        b.insert_value("TLS", SecretValue::new(vec![0, 255, 1]))
            .unwrap();
        b
    }

    async fn repo(name: &str) -> (Repository, SecretStore) {
        let store =
            StorageOptions::from_url(format!("memory://{name}-{:x}", rand::random::<u64>()))
                .build()
                .unwrap();
        let repo = Repository::init(store).await.unwrap();
        let secrets = SecretStore::new(&repo);
        (repo, secrets)
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn backup_lists_resolves_and_opens() {
        let (repo, s) = repo("open").await;
        let (ids, to) = keys();
        let enc = Encryption::Recipients(to.clone());
        let now = t("2026-01-05T03:04:05.006Z");
        let a = s
            .backup("cryptofunk", &sample(), &enc, false, "env:x", now)
            .await
            .unwrap();
        let b = s
            .backup("cryptofunk", &sample(), &enc, true, "env:x", now)
            .await
            .unwrap();
        assert_eq!(a.version, "20260105T030405.006Z");
        assert_eq!(
            b.version, "20260105T030405.007Z",
            "same millisecond: next one"
        );
        assert_eq!(a.object, "secrets/cryptofunk/20260105T030405.006Z.age");
        assert_eq!(
            (a.count, a.keys.clone()),
            (2, vec!["API_KEY".into(), "TLS".into()])
        );
        assert_eq!(a.encryption.recipients, to.fingerprints());
        assert_eq!(s.bundles().await.unwrap(), ["cryptofunk"]);
        assert_eq!(
            s.versions("cryptofunk").await.unwrap(),
            [a.clone(), b.clone()]
        );
        assert_eq!(s.resolve("cryptofunk", "latest").await.unwrap(), b);
        assert_eq!(
            s.resolve("cryptofunk", "20260105T030405.006")
                .await
                .unwrap(),
            a
        );
        assert!(
            s.resolve("cryptofunk", "20260105").await.is_err(),
            "ambiguous"
        );
        assert!(s.resolve("cryptofunk", "1999").await.is_err());
        assert_eq!(s.open(&b, &ids).await.unwrap(), sample());
        // The manifest holds names, never values.
        let raw = repo.store().get(&a.key()).await.unwrap();
        let text = String::from_utf8(raw.to_vec()).unwrap();
        assert!(text.contains("API_KEY") && !text.contains("k-1"), "{text}");
        assert!(
            s.backup("Bad Name", &sample(), &enc, false, "x", now)
                .await
                .is_err()
        );
        let empty = s
            .backup("x", &SecretBundle::new(), &enc, false, "env:e", now)
            .await;
        assert!(empty.unwrap_err().to_string().contains("holds no secrets"));
    }

    #[tokio::test]
    async fn damaged_objects_and_wrong_keys_are_errors() {
        let (repo, s) = repo("damaged").await;
        let (ids, to) = keys();
        let (other, _) = keys();
        let enc = Encryption::Recipients(to);
        let m = s
            .backup("b", &sample(), &enc, false, "x", Timestamp::now())
            .await
            .unwrap();
        let err = s.open(&m, &other).await.unwrap_err();
        assert!(err.to_string().contains("other recipients"), "{err}");
        let mut raw = repo.store().get(&m.object).await.unwrap().to_vec();
        let last = raw.len() - 5;
        raw[last] ^= 1;
        repo.store().put(&m.object, raw.clone()).await.unwrap();
        let err = s.open(&m, &ids).await.unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { .. }),
            "checksum first: {err}"
        );
        // Even with a matching checksum, age's MAC refuses the flipped byte.
        let forged = SecretManifest {
            stored: ObjectInfo::of(&raw),
            ..m.clone()
        };
        let err = s.open(&forged, &ids).await.unwrap_err();
        assert!(matches!(err, Error::Crypto { .. }), "{err}");
        raw.truncate(raw.len() - 20);
        repo.store().put(&m.object, raw.clone()).await.unwrap();
        let cut = SecretManifest {
            stored: ObjectInfo::of(&raw),
            ..m
        };
        let err = s.open(&cut, &ids).await.unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[tokio::test]
    async fn rekey_reencrypts_verifies_and_removes_old_objects() {
        let (repo, s) = repo("rekey").await;
        let (old_secret, old_public) = generate_identity();
        let (new_secret, new_public) = generate_identity();
        let id = |text: &str| Identities::from_text(text).unwrap();
        let new_to = Recipients::parse([new_public.as_str()]).unwrap();
        let enc = Encryption::Recipients(Recipients::parse([old_public.as_str()]).unwrap());
        let m1 = s
            .backup("a", &sample(), &enc, false, "x", t("2026-01-01T00:00:00Z"))
            .await
            .unwrap();
        s.backup("b", &sample(), &enc, true, "x", t("2026-01-02T00:00:00Z"))
            .await
            .unwrap();
        let pass = Encryption::passphrase(Passphrase::new("pw").unwrap(), 10).unwrap();
        s.backup("b", &sample(), &pass, true, "x", t("2026-01-03T00:00:00Z"))
            .await
            .unwrap();

        // Without an identity for the new recipients nothing happens.
        let err = s
            .rekey(&new_to, &id(&old_secret), false, Timestamp::now())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--new-identity"), "{err}");
        let both = || id(&old_secret).with(id(&new_secret));
        let dry = s
            .rekey(&new_to, &both(), true, Timestamp::now())
            .await
            .unwrap();
        assert_eq!(dry.rekeyed.len(), 2);
        assert_eq!(
            s.versions("a").await.unwrap(),
            std::slice::from_ref(&m1),
            "dry run changes nothing"
        );

        let report = s
            .rekey(&new_to, &both(), false, t("2026-02-01T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(
            report.rekeyed,
            ["a@20260101T000000.000Z", "b@20260102T000000.000Z"]
        );
        assert_eq!(report.passphrase_copies, ["b@20260103T000000.000Z"]);
        let a = s.resolve("a", "latest").await.unwrap();
        assert_eq!(a.object, "secrets/a/20260101T000000.000Z.r1.age");
        assert_eq!(a.encryption.recipients, new_to.fingerprints());
        assert_eq!(a.rekeyed, Some(t("2026-02-01T00:00:00Z")));
        assert!(
            repo.store().stat(&m1.object).await.unwrap().is_none(),
            "old object removed"
        );
        // The new key alone opens it; the old one no longer does.
        assert_eq!(s.open(&a, &id(&new_secret)).await.unwrap(), sample());
        assert!(s.open(&a, &id(&old_secret)).await.is_err());
        // Running again finds everything current.
        let again = s
            .rekey(&new_to, &both(), false, Timestamp::now())
            .await
            .unwrap();
        assert!(again.rekeyed.is_empty() && again.current.len() == 2);

        // A rekey interrupted after the manifest moved leaves the old object:
        // the next run removes it; an uncommitted backup's object is kept.
        repo.store()
            .put(&m1.object, b"stale".to_vec())
            .await
            .unwrap();
        let orphan = "secrets/a/20260301T000000.000Z.age";
        repo.store()
            .put(orphan, b"in flight".to_vec())
            .await
            .unwrap();
        let cleaned = s
            .rekey(&new_to, &both(), false, Timestamp::now())
            .await
            .unwrap();
        assert_eq!(cleaned.removed_leftovers, std::slice::from_ref(&m1.object));
        assert!(repo.store().stat(orphan).await.unwrap().is_some());
    }
}
