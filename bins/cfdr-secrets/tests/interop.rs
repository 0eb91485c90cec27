//! Interoperability with the stock `age` tool (Debian package `age`):
//! bundles cfdr stores decrypt with `age -d -i`, and files made with
//! `age -r` / `age -R` (X25519 and ssh-ed25519, binary and armored) are
//! read by cfdr.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use cfdr_secrets::{Identities, SecretBundle, decrypt_reader, unseal};
use common::{Setup, text};

fn age_tool(test: &str) -> Option<std::path::PathBuf> {
    cfdr_testing::tool("age", "age", test)
}

use cfdr_testing::pipe;

#[test]
fn bundles_stored_by_cfdr_decrypt_with_stock_age() {
    let Some(age) = age_tool("bundles_stored_by_cfdr_decrypt_with_stock_age") else {
        return;
    };
    let s = Setup::new();
    for armor in [false, true] {
        let mut args = vec![
            "-b",
            if armor { "armored" } else { "binary" },
            "backup",
            "--init",
            "--from",
            "-",
        ];
        if armor {
            args.push("--armor");
        }
        let out = s.run(&args, Some(b"API_KEY=k-42\nPEM=\"a\nb\"\n"));
        assert!(out.status.success(), "{}", text(&out));
    }
    let list: serde_json::Value =
        serde_json::from_slice(&s.run(&["list", "--json"], None).stdout).unwrap();
    for m in list.as_array().unwrap() {
        let object = s.repo.join(m["object"].as_str().unwrap());
        let armored = std::fs::read(&object)
            .unwrap()
            .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----");
        assert_eq!(armored, m["encryption"]["armored"].as_bool().unwrap());
        let out = Command::new(&age)
            .arg("-d")
            .arg("-i")
            .arg(&s.key)
            .arg(&object)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["format"], "cfdr-secrets-bundle/1");
        assert_eq!(
            doc["entries"][0],
            serde_json::json!({"name": "API_KEY", "value": "k-42"})
        );
        assert_eq!(doc["entries"][1]["value"], "a\nb");
    }
}

#[test]
fn files_made_by_stock_age_are_read_by_cfdr() {
    let Some(age) = age_tool("files_made_by_stock_age_are_read_by_cfdr") else {
        return;
    };
    let s = Setup::new();
    let ids = Identities::from_file(&s.key, false).unwrap();
    let doc = br#"{"format":"cfdr-secrets-bundle/1","entries":[{"name":"K","value":"from age"}]}"#;
    for armor in [false, true] {
        let mut cmd = Command::new(&age);
        cmd.arg("-r").arg(&s.recipient);
        if armor {
            cmd.arg("-a");
        }
        let sealed = pipe(&mut cmd, doc);
        let plain = unseal(&ids, &sealed).unwrap();
        let bundle = SecretBundle::from_document(plain.expose()).unwrap();
        assert_eq!(bundle.get("K").unwrap().value.as_str(), Some("from age"));
        // Large enough for several 64 KiB chunks, through the streaming reader.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let sealed = pipe(&mut cmd, &big);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut decrypt_reader(&ids, &sealed[..]).unwrap(), &mut out)
            .unwrap();
        assert_eq!(out, big);
    }
}

#[test]
fn ssh_ed25519_recipients_work_both_ways() {
    let Some(age) = age_tool("ssh_ed25519_recipients_work_both_ways") else {
        return;
    };
    let Some(keygen) = cfdr_testing::tool(
        "ssh-keygen",
        "openssh-client",
        "ssh_ed25519_recipients_work_both_ways",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let out = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let recipients = cfdr_secrets::Recipients::parse([public.trim()]).unwrap();
    let sealed = cfdr_secrets::seal(
        &cfdr_secrets::Encryption::Recipients(recipients),
        b"via ssh",
        false,
    )
    .unwrap();
    let plain = pipe(Command::new(&age).arg("-d").arg("-i").arg(&key), &sealed);
    assert_eq!(plain, b"via ssh");
    let from_age = pipe(
        Command::new(&age).arg("-R").arg(key.with_extension("pub")),
        b"back",
    );
    let ids = Identities::from_file(Path::new(&key), false).unwrap();
    assert_eq!(unseal(&ids, &from_age).unwrap().expose(), b"back");
}

/// The break-glass recipes of docs/secrets.md (`age -d -i` piped into `jq`), checked
/// against what cfdr itself restores.
const K8S_RECIPE: &str = r#"{apiVersion: "v1", kind: "Secret", type: "Opaque", metadata: {name: $name, namespace: $ns}, data: (.entries | map({key: .name, value: (if .encoding == "base64" then .value else (.value | @base64) end)}) | from_entries)}"#;
const VAULT_RECIPE: &str = r#".entries | group_by(.name | split("/")[:-1] | join("/"))[] | {path: (.[0].name | split("/")[:-1] | join("/")), data: (map({key: (.name | split("/")[-1]), value: (if .type == "json" then (.value | fromjson) else .value end)}) | from_entries)}"#;

#[test]
fn break_glass_recipes_in_the_readme_work() {
    let test = "break_glass_recipes_in_the_readme_work";
    let (Some(age), Some(jq)) = (age_tool(test), cfdr_testing::tool("jq", "jq", test)) else {
        return;
    };
    let s = Setup::new();
    let input = br#"{"DB_PASSWORD": "p\u00e9w\n2", "MAX": 25, "exchanges/binance/api_key": "bk", "BIN": {"base64": "AP8="}}"#;
    assert!(
        s.run(&["backup", "--init", "--from", "-"], Some(input))
            .status
            .success()
    );
    let list: serde_json::Value =
        serde_json::from_slice(&s.run(&["list", "--json"], None).stdout).unwrap();
    let object = s.repo.join(list[0]["object"].as_str().unwrap());
    let plain = Command::new(&age)
        .arg("-d")
        .arg("-i")
        .arg(&s.key)
        .arg(&object)
        .output()
        .unwrap()
        .stdout;

    let manifest = pipe(
        Command::new(&jq).args(["--arg", "name", "cf", "--arg", "ns", "prod", K8S_RECIPE]),
        &plain,
    );
    let by_recipe: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
    let expected = cfdr_secrets::formats::parse_json(input, "in").unwrap();
    let data = by_recipe["data"].as_object().unwrap();
    assert_eq!(data.len(), expected.len());
    for (name, entry) in expected.iter() {
        assert_eq!(data[name], b64(entry.value.expose()), "{name}");
    }
    assert_eq!(by_recipe["metadata"]["namespace"], "prod");

    let lines = pipe(Command::new(&jq).args(["-c", VAULT_RECIPE]), &plain);
    let secrets: Vec<serde_json::Value> = lines
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(
        secrets[0],
        serde_json::json!({"path": "", "data": {"BIN": "AP8=", "DB_PASSWORD": "p\u{e9}w\n2", "MAX": 25}})
    );
    assert_eq!(
        secrets[1],
        serde_json::json!({"path": "exchanges/binance", "data": {"api_key": "bk"}})
    );
}
