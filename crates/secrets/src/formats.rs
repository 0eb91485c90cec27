//! Plaintext formats of a bundle: `.env` and JSON objects (read and
//! written) and Kubernetes `Secret` manifests (written). Everything is
//! rendered into a [`SecretBuf`]; parse errors name the line, never a value.

use std::fmt::Write as _;

use serde::Deserialize;
use serde::ser::{SerializeMap, Serializer};

use crate::buf::SecretBuf;
use crate::bundle::{Entry, SecretBundle, SecretValue, ZString, decode_b64, encode_b64};
use crate::error::{Error, Result, json_reason};

/// Kubernetes refuses Secrets whose data exceeds 1 MiB.
pub const KUBERNETES_SECRET_LIMIT: usize = 1 << 20;

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `.env` text: `NAME=value` lines, `#` comments, an optional
/// `export ` prefix; values unquoted (trimmed, ` #` starts a comment),
/// single-quoted (literal, may span lines) or double-quoted (may span lines;
/// `\\ \" \$ \` \n \r \t` escapes). A repeated name is an error.
pub fn parse_env(text: &[u8], origin: &str) -> Result<SecretBundle> {
    let text = std::str::from_utf8(text).map_err(|e| Error::Parse {
        origin: origin.into(),
        line: Some(line_of(text, e.valid_up_to())),
        reason: "not UTF-8 text".into(),
    })?;
    let err = |pos: usize, reason: &str| Error::Parse {
        origin: origin.into(),
        line: Some(line_of(text.as_bytes(), pos)),
        reason: reason.into(),
    };
    let mut bundle = SecretBundle::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Skip blank space and comment lines.
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        let start = i;
        if text[i..].starts_with("export ") {
            i += "export ".len();
        }
        let name_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b'\n' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(err(start, "expected NAME=value"));
        }
        let name = text[name_start..i].trim();
        if !is_env_name(name) {
            return Err(err(start, "the name must be letters, digits and _"));
        }
        i += 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let mut value = SecretBuf::new();
        match b.get(i) {
            Some(b'\'') => {
                let end = text[i + 1..]
                    .find('\'')
                    .ok_or_else(|| err(start, "unterminated single quote"))?;
                value.extend(&b[i + 1..i + 1 + end]);
                i += end + 2;
            }
            Some(b'"') => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(err(start, "unterminated double quote")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let (bytes, step): (&[u8], usize) = match b.get(i + 1) {
                                Some(b'n') => (b"\n", 2),
                                Some(b'r') => (b"\r", 2),
                                Some(b't') => (b"\t", 2),
                                Some(c @ (b'\\' | b'"' | b'$' | b'`')) => {
                                    (std::slice::from_ref(c), 2)
                                }
                                _ => (b"\\", 1),
                            };
                            value.extend(bytes);
                            i += step;
                        }
                        Some(_) => {
                            let len = text[i..].chars().next().map_or(1, char::len_utf8);
                            value.extend(&b[i..i + len]);
                            i += len;
                        }
                    }
                }
                i += 1;
            }
            _ => {
                let line_end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                let raw = &text[i..line_end];
                let raw = match raw.find(" #").or_else(|| raw.find("\t#")) {
                    Some(c) => &raw[..c],
                    None => raw,
                };
                value.extend(raw.trim().as_bytes());
                i = line_end;
            }
        }
        // Only white space or a comment may follow on the line.
        let rest_end = text[i..].find('\n').map_or(b.len(), |n| i + n);
        let rest = text[i..rest_end].trim();
        if !rest.is_empty() && !rest.starts_with('#') {
            return Err(err(i, "unexpected text after the closing quote"));
        }
        i = rest_end;
        bundle.insert(
            name,
            Entry::new(SecretValue::new(value.expose().to_vec())),
            origin,
        )?;
    }
    Ok(bundle)
}

fn line_of(text: &[u8], pos: usize) -> usize {
    1 + text[..pos.min(text.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
}

/// Renders `.env` text that [`parse_env`] and a POSIX shell (`set -a; .
/// FILE`) both read back exactly: plain values bare, others single-quoted,
/// or double-quoted with `\\ \" \$ \`` escapes when they contain `'`.
/// Names must be environment variable names; values must be UTF-8 without
/// NUL (the environment cannot hold anything else).
pub fn render_env(bundle: &SecretBundle) -> Result<SecretBuf> {
    let mut out = SecretBuf::new();
    for (name, entry) in bundle.iter() {
        if !is_env_name(name) {
            return Err(Error::Unrepresentable {
                name: name.into(),
                sink: ".env",
                reason: "names must be letters, digits and _ (use --to json or k8s)",
            });
        }
        let Some(text) = entry.value.as_str().filter(|t| !t.contains('\0')) else {
            return Err(Error::Unrepresentable {
                name: name.into(),
                sink: ".env",
                reason: "the value is binary (not UTF-8, or holds NUL); use --to json or k8s",
            });
        };
        out.extend(name.as_bytes());
        out.extend(b"=");
        let plain = |c: char| c.is_ascii_alphanumeric() || "_./:@+,-%".contains(c);
        if text.chars().all(plain) {
            out.extend(text.as_bytes());
        } else if !text.contains('\'') {
            out.extend(b"'");
            out.extend(text.as_bytes());
            out.extend(b"'");
        } else {
            out.extend(b"\"");
            for c in text.chars() {
                if matches!(c, '\\' | '"' | '$' | '`') {
                    out.extend(b"\\");
                }
                let mut utf8 = [0u8; 4];
                out.extend(c.encode_utf8(&mut utf8).as_bytes());
            }
            out.extend(b"\"");
        }
        out.extend(b"\n");
    }
    Ok(out)
}

/// A JSON value of an object source: a string, or anything else.
pub(crate) enum JsonIn {
    Text(ZString),
    Other(serde_json::Value),
}

impl<'de> Deserialize<'de> for JsonIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Strings go straight to zeroizing memory; other values are rare
        // (numbers, flags, nested objects) and go through serde_json::Value.
        let v = serde_json::Value::deserialize(d)?;
        Ok(match v {
            serde_json::Value::String(s) => JsonIn::Text(ZString(zeroize::Zeroizing::new(s))),
            other => JsonIn::Other(other),
        })
    }
}

/// Parses a JSON object of secrets: string values as they are,
/// `{"base64": "..."}` as binary values, and any other JSON value (number,
/// boolean, object) kept as its JSON text. A repeated name is an error.
pub fn parse_json(text: &[u8], origin: &str) -> Result<SecretBundle> {
    let pairs: Vec<(String, JsonIn)> = {
        let mut de = serde_json::Deserializer::from_slice(text);
        let seq = PairsSeed::deserialize(&mut de).and_then(|p| de.end().map(|()| p));
        seq.map_err(|e| Error::Parse {
            origin: origin.into(),
            line: Some(e.line()),
            reason: json_reason(&e),
        })?
        .0
    };
    let mut bundle = SecretBundle::new();
    for (name, v) in pairs {
        let entry = match v {
            JsonIn::Text(t) => Entry::new(SecretValue::new(t.take_bytes())),
            JsonIn::Other(serde_json::Value::Object(m))
                if m.len() == 1 && m.get("base64").is_some_and(|b| b.is_string()) =>
            {
                let b64 = m.get("base64").and_then(|b| b.as_str()).unwrap_or_default();
                Entry::new(decode_b64(b64).ok_or_else(|| Error::Parse {
                    origin: origin.into(),
                    line: None,
                    reason: format!("{name:?} holds invalid base64"),
                })?)
            }
            JsonIn::Other(other) => Entry {
                value: SecretValue::new(other.to_string().into_bytes()),
                version: None,
                json: true,
            },
        };
        bundle.insert(&name, entry, origin)?;
    }
    Ok(bundle)
}

/// The pairs of a JSON object, in order, duplicates kept.
struct PairsSeed(Vec<(String, JsonIn)>);

impl<'de> Deserialize<'de> for PairsSeed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PairsSeed;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of secrets")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<PairsSeed, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, JsonIn>()? {
                    out.push((k, v));
                }
                Ok(PairsSeed(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Renders a pretty JSON object that [`parse_json`] reads back exactly.
pub fn render_json(bundle: &SecretBundle) -> Result<SecretBuf> {
    let mut out = SecretBuf::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"  ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    let json_err = |e: serde_json::Error| Error::Parse {
        origin: "the JSON output".into(),
        line: None,
        reason: json_reason(&e),
    };
    let mut map = ser.serialize_map(Some(bundle.len())).map_err(json_err)?;
    for (name, entry) in bundle.iter() {
        if entry.json {
            let v: serde_json::Value =
                serde_json::from_slice(entry.value.expose()).map_err(json_err)?;
            map.serialize_entry(name, &v).map_err(json_err)?;
        } else if let Some(text) = entry.value.as_str() {
            map.serialize_entry(name, text).map_err(json_err)?;
        } else {
            let b64 = encode_b64(entry.value.expose());
            let mut one = std::collections::BTreeMap::new();
            one.insert("base64", b64.as_str());
            map.serialize_entry(name, &one).map_err(json_err)?;
        }
    }
    map.end().map_err(json_err)?;
    out.extend(b"\n");
    Ok(out)
}

fn is_dns_label(s: &str, max: usize, dots: bool) -> bool {
    let ok =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    !s.is_empty()
        && s.len() <= max
        && s.chars().all(ok)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Renders a Kubernetes `Secret` (type `Opaque`, values base64 in `data`)
/// as YAML for `kubectl apply -f -`. Keys must match `[-._a-zA-Z0-9]+`; the
/// name must be a DNS subdomain and the namespace a DNS label; the values
/// together must stay under 1 MiB. `annotations` are added as given (no
/// values belong there).
pub fn render_kubernetes(
    bundle: &SecretBundle,
    name: &str,
    namespace: Option<&str>,
    annotations: &[(&str, &str)],
) -> Result<SecretBuf> {
    let spec_err = |spec: &str, expected| Error::InvalidSpec {
        what: "Kubernetes name",
        spec: spec.into(),
        expected,
    };
    if !is_dns_label(name, 253, true) {
        return Err(spec_err(
            name,
            "a DNS subdomain: lower-case letters, digits, '-' and '.'",
        ));
    }
    if let Some(ns) = namespace.filter(|ns| !is_dns_label(ns, 63, false)) {
        return Err(spec_err(
            ns,
            "a DNS label: lower-case letters, digits and '-'",
        ));
    }
    let total: usize = bundle.iter().map(|(n, e)| n.len() + e.value.len()).sum();
    if total > KUBERNETES_SECRET_LIMIT {
        return Err(Error::TooLarge {
            what: "the Kubernetes Secret",
            size: total,
            limit: KUBERNETES_SECRET_LIMIT,
        });
    }
    let mut head = String::from("apiVersion: v1\nkind: Secret\nmetadata:\n");
    let _ = writeln!(head, "  name: {name}");
    if let Some(ns) = namespace {
        let _ = writeln!(head, "  namespace: {ns}");
    }
    head.push_str("  labels:\n    app.kubernetes.io/managed-by: cfdr\n");
    if !annotations.is_empty() {
        head.push_str("  annotations:\n");
        for (k, v) in annotations {
            let _ = writeln!(head, "    {}: {}", yaml_str(k), yaml_str(v));
        }
    }
    head.push_str("type: Opaque\ndata:");
    let mut out = SecretBuf::new();
    out.extend(head.as_bytes());
    if bundle.is_empty() {
        out.extend(b" {}");
    }
    out.extend(b"\n");
    for (key, entry) in bundle.iter() {
        let valid = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !valid {
            return Err(Error::Unrepresentable {
                name: key.into(),
                sink: "a Kubernetes Secret",
                reason: "keys must be letters, digits, '-', '.' and '_' (use --to json)",
            });
        }
        out.extend(format!("  {}: ", yaml_str(key)).as_bytes());
        out.extend(encode_b64(entry.value.expose()).as_bytes());
        out.extend(b"\n");
    }
    Ok(out)
}

/// A double-quoted YAML scalar (JSON strings are valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.into()).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tricky() -> SecretBundle {
        let mut b = SecretBundle::new();
        for (k, v) in [
            ("PLAIN", "abc-123_x/y:z@h"),
            ("SPACES", "  padded value  "),
            ("MULTI", "-----BEGIN KEY-----\nline2\r\nline3\n"),
            ("QUOTES", "it's \"quoted\" $HOME `cmd` back\\slash \\n"),
            ("HASH", "a #not comment"),
            ("EMPTY", ""),
            ("UNICODE", "caf\u{e9} \u{1f511}\ttab"),
        ] {
            b.insert_value(k, SecretValue::text(v)).unwrap();
        }
        b
    }

    #[test]
    fn env_round_trip() {
        let b = tricky();
        let text = render_env(&b).unwrap();
        assert_eq!(parse_env(text.expose(), "t").unwrap(), b);
    }

    #[test]
    fn env_parses_common_dotenv_forms() {
        let src = b"# comment\nexport A=1\nB = two # trailing\nC=\"x\\ny\"\nD='lit\\n'\n\nE=\"multi\nline\"\n";
        let b = parse_env(src, "f").unwrap();
        let v = |k: &str| b.get(k).unwrap().value.as_str().unwrap().to_owned();
        assert_eq!(v("A"), "1");
        assert_eq!(v("B"), "two");
        assert_eq!(v("C"), "x\ny");
        assert_eq!(v("D"), "lit\\n");
        assert_eq!(v("E"), "multi\nline");
    }

    #[test]
    fn env_errors_name_the_line_not_the_value() {
        let err = parse_env(b"A=1\nB=\"s3cr3t\n", "f.env").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("f.env line 2") && msg.contains("unterminated"),
            "{msg}"
        );
        assert!(!msg.contains("s3cr3t"));
        let err = parse_env(b"A=1\nA=2\n", "f.env").unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
        let err = parse_env(b"no equals sign\n", "f.env").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn env_refuses_binary_and_odd_names() {
        let mut b = SecretBundle::new();
        b.insert_value("BIN", SecretValue::new(vec![0xff, 0]))
            .unwrap();
        assert!(matches!(render_env(&b), Err(Error::Unrepresentable { .. })));
        let mut b = SecretBundle::new();
        b.insert_value("a/b", SecretValue::text("x")).unwrap();
        assert!(matches!(render_env(&b), Err(Error::Unrepresentable { .. })));
    }

    #[test]
    fn json_round_trip_with_binary_and_typed_values() {
        let mut b = tricky();
        b.insert_value("BIN", SecretValue::new(vec![0, 1, 2, 0xfe, 0xff]))
            .unwrap();
        b.insert(
            "N",
            Entry {
                value: SecretValue::text("42"),
                version: None,
                json: true,
            },
            "t",
        )
        .unwrap();
        let text = render_json(&b).unwrap();
        assert_eq!(parse_json(text.expose(), "t").unwrap(), b);
    }

    #[test]
    fn json_errors_are_clear() {
        let err = parse_json(br#"{"A":"s3cr3t","A":"s3cr3t"}"#, "j").unwrap_err();
        assert!(err.to_string().contains("duplicate") && !err.to_string().contains("s3cr3t"));
        let err = parse_json(br#"["s3cr3t"]"#, "j").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(parse_json(br#"{"A":"x"} trailing"#, "j").is_err());
    }

    #[test]
    fn kubernetes_manifest_has_base64_data_and_checks_names() {
        let mut b = SecretBundle::new();
        b.insert_value("tls.key", SecretValue::new(vec![0, 255, 10]))
            .unwrap();
        let out = render_kubernetes(
            &b,
            "cryptofunk-secrets",
            Some("cryptofunk"),
            &[("cfdr/bundle", "x")],
        )
        .unwrap();
        let text = std::str::from_utf8(out.expose()).unwrap();
        assert!(text.contains("kind: Secret\n"), "{text}");
        assert!(text.contains("  namespace: cryptofunk\n"), "{text}");
        assert!(text.contains("  \"tls.key\": AP8K\n"), "{text}");
        assert!(render_kubernetes(&b, "Bad_Name", None, &[]).is_err());
        let mut b = SecretBundle::new();
        b.insert_value("a/b", SecretValue::text("x")).unwrap();
        assert!(render_kubernetes(&b, "ok", None, &[]).is_err());
    }
}
