//! Secret bundles: named values, zeroized on drop, redacted everywhere.
//!
//! Inside an age file a bundle is one JSON document (the *bundle document*):
//!
//! ```json
//! {"format": "cfdr-secrets-bundle/1",
//!  "entries": [
//!    {"name": "BINANCE_API_KEY", "value": "..."},
//!    {"name": "tls/key.der", "value": "<base64>", "encoding": "base64"},
//!    {"name": "exchanges/binance/max_orders", "value": "25", "type": "json", "version": 3}]}
//! ```
//!
//! `encoding: base64` marks a value that is not UTF-8; `type: json` a value
//! that was a JSON number, boolean or object in its source (kept as its JSON
//! text); `version` the Vault KV version it was read at. The stock tools read
//! it: `age -d -i key.txt FILE | jq -r '.entries[] | "\(.name)=\(.value)"'`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::buf::SecretBuf;
use crate::error::{Error, Result, json_reason};

/// The bundle document format this build writes and reads.
pub const BUNDLE_FORMAT: &str = "cfdr-secrets-bundle/1";

pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One secret value: bytes that are zeroized on drop and shown by neither
/// `Debug` nor `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl SecretValue {
    /// A value from bytes (taken over, not copied).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A value from text.
    pub fn text(text: &str) -> Self {
        Self::new(text.as_bytes().to_vec())
    }

    /// The bytes. The name says what it does: use it only to hand the value
    /// to its destination.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as UTF-8 text, if it is.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A named secret with what is known about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: SecretValue,
    /// The Vault KV version it was read at, if it came from Vault.
    pub version: Option<u64>,
    /// The value is the JSON text of a non-string JSON value (number,
    /// boolean, object...) and goes back to JSON sinks as such.
    pub json: bool,
}

impl Entry {
    /// A plain value with no version.
    pub fn new(value: SecretValue) -> Self {
        Self {
            value,
            version: None,
            json: false,
        }
    }
}

/// Checks a secret name: 1 to 512 bytes, no control characters, no leading
/// or trailing white space. Names are recorded in clear in manifests.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            name: name.chars().take(80).collect(),
            reason: reason.into(),
        })
    };
    if name.is_empty() || name.len() > 512 {
        return bad("must be 1 to 512 bytes long");
    }
    if name.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    if name.trim() != name {
        return bad("must not start or end with white space");
    }
    Ok(())
}

/// Named secrets, sorted by name. `Debug` lists names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBundle {
    entries: BTreeMap<String, Entry>,
}

impl fmt::Debug for SecretBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBundle")
            .field("names", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretBundle {
    /// An empty bundle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry; a name already present is an error naming `origin`.
    pub fn insert(&mut self, name: &str, entry: Entry, origin: &str) -> Result<()> {
        validate_name(name)?;
        if self.entries.contains_key(name) {
            return Err(Error::DuplicateName {
                name: name.to_owned(),
                origin: origin.to_owned(),
            });
        }
        self.entries.insert(name.to_owned(), entry);
        Ok(())
    }

    /// Adds a plain value (see [`SecretBundle::insert`]).
    pub fn insert_value(&mut self, name: &str, value: SecretValue) -> Result<()> {
        self.insert(name, Entry::new(value), "the bundle")
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Entries, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Which names `other` adds, removes or changes relative to `self`.
    /// Compares values, reports names only.
    pub fn diff(&self, other: &SecretBundle) -> BundleDiff {
        let mut d = BundleDiff::default();
        for (name, entry) in &self.entries {
            match other.entries.get(name) {
                None => d.removed.push(name.clone()),
                Some(o) if o.value != entry.value || o.json != entry.json => {
                    d.changed.push(name.clone());
                }
                Some(_) => {}
            }
        }
        d.added = other
            .entries
            .keys()
            .filter(|k| !self.entries.contains_key(*k))
            .cloned()
            .collect();
        d
    }

    /// The bundle document (see the module docs), in a zeroizing buffer.
    pub fn to_document(&self) -> SecretBuf {
        let doc = DocOut {
            format: BUNDLE_FORMAT,
            entries: self.iter().map(|(name, e)| EntryOut { name, e }).collect(),
        };
        let mut out = SecretBuf::with_capacity(256 + self.entries.len() * 96);
        // Writing plain structs into memory cannot fail.
        let _ = serde_json::to_writer(&mut out, &doc);
        out.extend(b"\n");
        out
    }

    /// Parses a bundle document. Errors never quote values.
    pub fn from_document(bytes: &[u8]) -> Result<Self> {
        let origin = "the bundle document";
        let doc: DocIn = serde_json::from_slice(bytes).map_err(|e| Error::Parse {
            origin: origin.into(),
            line: None,
            reason: json_reason(&e),
        })?;
        if doc.format != BUNDLE_FORMAT {
            return Err(Error::Parse {
                origin: origin.into(),
                line: None,
                reason: format!(
                    "format {:?} is not {BUNDLE_FORMAT}: upgrade cfdr",
                    doc.format
                ),
            });
        }
        let mut bundle = Self::new();
        for e in doc.entries {
            let value = match e.encoding.as_deref() {
                None => SecretValue::new(e.value.take_bytes()),
                Some("base64") => decode_b64(&e.value.0).ok_or_else(|| Error::Parse {
                    origin: origin.into(),
                    line: None,
                    reason: format!("entry {:?} is not valid base64", e.name),
                })?,
                Some(other) => {
                    return Err(Error::Parse {
                        origin: origin.into(),
                        line: None,
                        reason: format!("entry {:?} has unknown encoding {other:?}", e.name),
                    });
                }
            };
            let entry = Entry {
                value,
                version: e.version,
                json: e.kind.as_deref() == Some("json"),
            };
            bundle.insert(&e.name, entry, origin)?;
        }
        Ok(bundle)
    }
}

pub(crate) fn decode_b64(text: &str) -> Option<SecretValue> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
    B64.decode_vec(text.trim(), &mut out).ok()?;
    Some(SecretValue(out))
}

pub(crate) fn encode_b64(bytes: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    B64.encode_string(bytes, &mut s);
    s
}

/// Names added, removed and changed between two bundles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BundleDiff {
    /// In the second bundle only.
    pub added: Vec<String>,
    /// In the first bundle only.
    pub removed: Vec<String>,
    /// In both, with different values.
    pub changed: Vec<String>,
}

impl BundleDiff {
    /// Whether the bundles hold the same names and values.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl fmt::Display for BundleDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (sign, names) in [
            ("+", &self.added),
            ("-", &self.removed),
            ("~", &self.changed),
        ] {
            for n in names {
                writeln!(f, "{sign} {n}")?;
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct DocOut<'a> {
    format: &'static str,
    entries: Vec<EntryOut<'a>>,
}

struct EntryOut<'a> {
    name: &'a str,
    e: &'a Entry,
}

impl Serialize for EntryOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.e.value.as_str();
        let fields = 2 + usize::from(text.is_none()) + usize::from(self.e.json);
        let mut st = s.serialize_struct("Entry", fields + usize::from(self.e.version.is_some()))?;
        st.serialize_field("name", self.name)?;
        match text {
            Some(t) => st.serialize_field("value", t)?,
            None => {
                st.serialize_field("value", encode_b64(self.e.value.expose()).as_str())?;
                st.serialize_field("encoding", "base64")?;
            }
        }
        if self.e.json {
            st.serialize_field("type", "json")?;
        }
        if let Some(v) = self.e.version {
            st.serialize_field("version", &v)?;
        }
        st.end()
    }
}

#[derive(Deserialize)]
struct DocIn {
    format: String,
    entries: Vec<EntryIn>,
}

#[derive(Deserialize)]
struct EntryIn {
    name: String,
    value: ZString,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    version: Option<u64>,
}

/// A string deserialized straight into zeroizing memory.
pub(crate) struct ZString(pub(crate) Zeroizing<String>);

impl ZString {
    pub(crate) fn take_bytes(self) -> Vec<u8> {
        let mut z = self.0;
        std::mem::take(&mut *z).into_bytes()
    }
}

impl<'de> Deserialize<'de> for ZString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ZString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ZString, E> {
                Ok(ZString(Zeroizing::new(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ZString, E> {
                Ok(ZString(Zeroizing::new(v)))
            }
        }
        d.deserialize_string(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> SecretBundle {
        let mut b = SecretBundle::new();
        b.insert_value("API_KEY", SecretValue::text("k-1\nline 2 \"q\" \u{e9}"))
            .unwrap();
        b.insert_value("BIN", SecretValue::new(vec![0, 159, 146, 150, 255]))
            .unwrap();
        let num = Entry {
            value: SecretValue::text("25"),
            version: Some(3),
            json: true,
        };
        b.insert("a/b/max", num, "test").unwrap();
        b
    }

    #[test]
    fn document_round_trip_keeps_binary_multiline_versions() {
        let b = sample();
        let doc = b.to_document();
        assert_eq!(SecretBundle::from_document(doc.expose()).unwrap(), b);
        let text = String::from_utf8(doc.expose().to_vec()).unwrap();
        assert!(text.contains(r#""encoding":"base64""#), "{text}");
    }

    #[test]
    fn debug_and_display_redact_values() {
        let b = sample();
        let shown = format!(
            "{b:?} {:?} {}",
            b.get("API_KEY"),
            b.get("API_KEY").unwrap().value
        );
        assert!(!shown.contains("k-1"), "{shown}");
        assert!(
            shown.contains("API_KEY") && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn diff_reports_names_only() {
        let a = sample();
        let mut b = SecretBundle::new();
        b.insert_value("API_KEY", SecretValue::text("changed"))
            .unwrap();
        b.insert_value("BIN", SecretValue::new(vec![0, 159, 146, 150, 255]))
            .unwrap();
        b.insert_value("NEW", SecretValue::text("n")).unwrap();
        let d = a.diff(&b);
        assert_eq!(d.added, ["NEW"]);
        assert_eq!(d.removed, ["a/b/max"]);
        assert_eq!(d.changed, ["API_KEY"]);
        assert_eq!(d.to_string(), "+ NEW\n- a/b/max\n~ API_KEY\n");
        assert!(a.diff(&a).is_empty());
    }

    #[test]
    fn bad_documents_are_clear_errors_without_values() {
        let err = SecretBundle::from_document(br#"{"format":"x","entries":[]}"#).unwrap_err();
        assert!(err.to_string().contains("upgrade cfdr"), "{err}");
        let err = SecretBundle::from_document(
            br#"{"format":"cfdr-secrets-bundle/1","entries":[{"name":"A","value":7}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let dup = br#"{"format":"cfdr-secrets-bundle/1","entries":[{"name":"A","value":"s3cr3t"},{"name":"A","value":"s3cr3t"}]}"#;
        let err = SecretBundle::from_document(dup).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(validate_name("bad\nname").is_err() && validate_name(" x").is_err());
    }
}
