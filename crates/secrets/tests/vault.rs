//! The Vault KV v2 client against FakeVaultKv2, an HTTP server inside the
//! test that implements the documented endpoints the client uses (list,
//! read, metadata read, write with cas). No real Vault runs here.
#![allow(clippy::unwrap_used)]

mod support;

use cfdr_secrets::{Error, SecretBundle, VaultClient, VaultOptions, VaultPath};
use serde_json::json;
use support::fake_vault::FakeVaultKv2;
use zeroize::Zeroizing;

fn client(fake: &FakeVaultKv2) -> VaultClient {
    let mut o = VaultOptions::new(fake.addr.clone(), Zeroizing::new(fake.token.clone()));
    o.namespace = Some("trading".into());
    VaultClient::new(o).unwrap()
}

fn path(s: &str) -> VaultPath {
    VaultPath::parse(s, None).unwrap()
}

const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIB\nxyz==\n-----END PRIVATE KEY-----\n";

fn seeded() -> FakeVaultKv2 {
    let fake = FakeVaultKv2::start("secret", "s.root-token");
    fake.put("cryptofunk", json!({"DB_PASSWORD": "old"}));
    fake.put(
        "cryptofunk",
        json!({"DB_PASSWORD": "pw \"quoted\" \u{e9}", "MAX_ORDERS": 25}),
    );
    fake.put(
        "cryptofunk/exchanges/binance",
        json!({"api_key": "bk", "api_secret": PEM}),
    );
    fake.put(
        "cryptofunk/exchanges/kraken",
        json!({"api_key": "kk", "flags": {"sandbox": false}}),
    );
    fake.put("cryptofunk/retired", json!({"api_key": "gone"}));
    fake.delete_current("cryptofunk/retired");
    fake.put("other/app", json!({"x": "not below the path"}));
    fake
}

#[tokio::test]
async fn export_reads_the_tree_recursively_with_versions() {
    let fake = seeded();
    let b = client(&fake)
        .export(&path("secret/cryptofunk"))
        .await
        .unwrap();
    assert_eq!(
        b.names(),
        [
            "DB_PASSWORD",
            "MAX_ORDERS",
            "exchanges/binance/api_key",
            "exchanges/binance/api_secret",
            "exchanges/kraken/api_key",
            "exchanges/kraken/flags",
        ]
    );
    let e = b.get("DB_PASSWORD").unwrap();
    assert_eq!(e.value.as_str(), Some("pw \"quoted\" \u{e9}"));
    assert_eq!(e.version, Some(2));
    let n = b.get("MAX_ORDERS").unwrap();
    assert!(n.json && n.value.as_str() == Some("25"));
    assert_eq!(
        b.get("exchanges/binance/api_secret")
            .unwrap()
            .value
            .as_str(),
        Some(PEM)
    );
    assert_eq!(b.get("exchanges/binance/api_key").unwrap().version, Some(1));
    // The namespace goes with every request; values never appear in a URL.
    assert!(fake.namespaces().iter().all(|n| n == "trading"));
    let log = fake.requests().join("\n");
    assert!(log.contains("LIST /v1/secret/metadata/cryptofunk"), "{log}");
    assert!(!log.contains("bk") && !log.contains("pw"), "{log}");
}

#[tokio::test]
async fn import_round_trips_into_an_empty_path_with_cas_zero() {
    let fake = seeded();
    let c = client(&fake);
    let b = c.export(&path("secret/cryptofunk")).await.unwrap();
    let report = c
        .import(&path("secret/restored"), &b, false, false)
        .await
        .unwrap();
    assert_eq!(report.written.len(), 3);
    assert!(
        report
            .written
            .iter()
            .all(|(_, from, to)| *from == 0 && *to == 1)
    );
    let back = c.export(&path("secret/restored")).await.unwrap();
    assert!(b.diff(&back).is_empty(), "{}", b.diff(&back));
    assert_eq!(
        fake.current("restored/exchanges/kraken").unwrap().0["flags"],
        json!({"sandbox": false})
    );
    assert_eq!(fake.current("restored").unwrap().0["MAX_ORDERS"], json!(25));
    // A second import finds everything in place and writes nothing.
    let writes = |f: &FakeVaultKv2| {
        f.requests()
            .iter()
            .filter(|r| r.starts_with("POST"))
            .count()
    };
    let before = writes(&fake);
    let again = c
        .import(&path("secret/restored"), &b, false, false)
        .await
        .unwrap();
    assert_eq!(again.unchanged.len(), 3);
    assert!(again.written.is_empty());
    assert_eq!(writes(&fake), before);
}

#[tokio::test]
async fn a_newer_value_in_vault_is_never_overwritten_silently() {
    let fake = seeded();
    let c = client(&fake);
    let backup = c.export(&path("secret/cryptofunk")).await.unwrap();
    fake.put(
        "cryptofunk/exchanges/binance",
        json!({"api_key": "rotated", "api_secret": PEM}),
    );
    let err = c
        .import(&path("secret/cryptofunk"), &backup, false, false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VaultConflict { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("secret/cryptofunk/exchanges/binance (version 2)") && msg.contains("--force"),
        "{msg}"
    );
    assert!(
        !fake.requests().iter().any(|r| r.starts_with("POST")),
        "nothing written"
    );
    assert_eq!(
        fake.current("cryptofunk/exchanges/binance").unwrap().0["api_key"],
        "rotated"
    );
    // A dry run with --force reports without writing; --force writes with cas = 2.
    let dry = c
        .import(&path("secret/cryptofunk"), &backup, true, true)
        .await
        .unwrap();
    assert_eq!(
        dry.written,
        [("secret/cryptofunk/exchanges/binance".to_owned(), 2, 3)]
    );
    assert!(!fake.requests().iter().any(|r| r.starts_with("POST")));
    let done = c
        .import(&path("secret/cryptofunk"), &backup, true, false)
        .await
        .unwrap();
    assert_eq!(
        done.written,
        [("secret/cryptofunk/exchanges/binance".to_owned(), 2, 3)]
    );
    assert_eq!(
        fake.current("cryptofunk/exchanges/binance").unwrap(),
        (json!({"api_key": "bk", "api_secret": PEM}), 3)
    );
}

#[tokio::test]
async fn a_write_that_races_another_writer_fails_by_check_and_set() {
    let fake = seeded();
    let c = client(&fake);
    let mut b = SecretBundle::new();
    b.insert_value("api_key", cfdr_secrets::SecretValue::text("mine"))
        .unwrap();
    fake.race_next_write("new/app");
    let err = c
        .import(&path("secret/new/app"), &b, false, false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VaultCas { cas: 0, .. }), "{err}");
    assert_eq!(fake.current("new/app").unwrap().0, json!({"raced": "yes"}));
}

#[tokio::test]
async fn a_deleted_current_version_is_replaced_with_its_version_as_cas() {
    let fake = seeded();
    let c = client(&fake);
    assert!(
        c.read(&path("secret/cryptofunk/retired"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        c.current_version(&path("secret/cryptofunk/retired"))
            .await
            .unwrap(),
        1
    );
    let mut b = SecretBundle::new();
    b.insert_value("api_key", cfdr_secrets::SecretValue::text("back"))
        .unwrap();
    let r = c
        .import(&path("secret/cryptofunk/retired"), &b, false, false)
        .await
        .unwrap();
    assert_eq!(r.written, [("secret/cryptofunk/retired".to_owned(), 1, 2)]);
}

#[tokio::test]
async fn bad_token_and_unreachable_vault_are_clear_errors() {
    let fake = seeded();
    let o = VaultOptions::new(fake.addr.clone(), Zeroizing::new("s.wrong".into()));
    let err = VaultClient::new(o)
        .unwrap()
        .export(&path("secret/cryptofunk"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::VaultDenied { status: 403, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("VAULT_TOKEN"), "{err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut o = VaultOptions::new(
        format!("http://127.0.0.1:{port}"),
        Zeroizing::new("t".into()),
    );
    o.timeout = std::time::Duration::from_secs(5);
    let started = std::time::Instant::now();
    let err = VaultClient::new(o)
        .unwrap()
        .list(&path("secret/x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VaultUnreachable { .. }), "{err}");
    assert!(err.to_string().contains("VAULT_ADDR"), "{err}");
    assert!(started.elapsed().as_secs() < 10);
    assert!(!format!("{err:?}").contains("s.root-token"));
}

#[tokio::test]
async fn binary_values_are_refused_before_any_write() {
    let fake = seeded();
    let mut b = SecretBundle::new();
    b.insert_value("a", cfdr_secrets::SecretValue::text("fine"))
        .unwrap();
    b.insert_value("z", cfdr_secrets::SecretValue::new(vec![0xff, 0x00]))
        .unwrap();
    let err = client(&fake)
        .import(&path("secret/bin"), &b, false, false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unrepresentable { .. }), "{err}");
    assert!(fake.requests().is_empty());
}
