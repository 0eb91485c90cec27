//! Codec pipeline: property round trips over every compression x encryption
//! combination, damage detection, and interoperability with the stock
//! `gzip`, `zstd` and `age` tools in both directions.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use cfdr_secrets::{Identities, Recipients, generate_identity};
use cfdr_storage::{
    CodecInfo, Compression, EncodeOptions, Error, ObjectInfo, StorageOptions, Store, StoredObject,
    decode_to, encode_to,
};
use proptest::prelude::*;

const COMPRESSIONS: [Compression; 3] = [Compression::None, Compression::Gzip, Compression::Zstd];

fn memory_store() -> Store {
    StorageOptions::from_url(format!("memory://codec-{:x}", rand::random::<u64>()))
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

struct Keys {
    identities: Arc<Identities>,
    recipients: Recipients,
    secret: String,
}

fn keys() -> Keys {
    let (secret, public) = generate_identity();
    Keys {
        identities: Arc::new(Identities::from_text(secret.as_str()).unwrap()),
        recipients: Recipients::parse([public.as_str()]).unwrap(),
        secret: secret.to_string(),
    }
}

fn options(compression: Compression, keys: Option<&Keys>) -> EncodeOptions {
    let mut o = EncodeOptions::new(compression);
    o.recipients = keys.map(|k| k.recipients.clone());
    o
}

async fn round_trip(
    store: &Store,
    data: Vec<u8>,
    opts: &EncodeOptions,
    ids: Option<Arc<Identities>>,
) -> (StoredObject, Vec<u8>) {
    let key = format!("rt/{:x}", rand::random::<u64>());
    let obj = encode_to(store, &key, std::io::Cursor::new(data), opts, true)
        .await
        .unwrap();
    let mut out = Vec::new();
    decode_to(store, &obj, ids, &mut out).await.unwrap();
    (obj, out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_combination_round_trips(
        data in prop::collection::vec(any::<u8>(), 0..200_000),
        repeat in 1usize..4,
        level in prop::option::of(1i32..9),
    ) {
        // Repeat the random block so some inputs compress and some do not.
        let data: Vec<u8> = data.repeat(repeat);
        let rt = runtime();
        let store = memory_store();
        let k = keys();
        for compression in COMPRESSIONS {
            for encrypted in [false, true] {
                let mut opts = options(compression, encrypted.then_some(&k));
                opts.level = if compression == Compression::None { None } else { level };
                let ids = encrypted.then(|| k.identities.clone());
                let (obj, out) = rt.block_on(round_trip(&store, data.clone(), &opts, ids));
                prop_assert_eq!(obj.raw_size, data.len() as u64);
                prop_assert_eq!(obj.codec.compression, compression);
                prop_assert_eq!(obj.codec.is_encrypted(), encrypted);
                prop_assert!(out == data, "{:?} encrypted={} differs", compression, encrypted);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_is_detected_for_every_combination() {
    let store = memory_store();
    let k = keys();
    let data: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    for compression in COMPRESSIONS {
        for encrypted in [false, true] {
            let opts = options(compression, encrypted.then_some(&k));
            let ids = encrypted.then(|| k.identities.clone());
            let key = format!("dmg/{compression:?}-{encrypted}");
            let obj = encode_to(
                &store,
                &key,
                std::io::Cursor::new(data.clone()),
                &opts,
                true,
            )
            .await
            .unwrap();
            let stored = store.get(&key).await.unwrap().to_vec();

            let mut flipped = stored.clone();
            let at = flipped.len() / 2;
            flipped[at] ^= 0x40;
            store.put(&key, flipped).await.unwrap();
            let err = decode_to(&store, &obj, ids.clone(), &mut Vec::new())
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Corrupt { .. } | Error::Crypto { .. }),
                "{compression:?}/{encrypted}: {err}"
            );
            assert!(
                err.to_string().contains(&key),
                "error must name the key: {err}"
            );

            store
                .put(&key, stored[..stored.len() * 2 / 3].to_vec())
                .await
                .unwrap();
            let err = decode_to(&store, &obj, ids.clone(), &mut Vec::new())
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Corrupt { .. } | Error::Crypto { .. }),
                "{compression:?}/{encrypted} truncated: {err}"
            );
            assert!(err.to_string().contains(&key), "{err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_identity_is_a_clear_error() {
    let store = memory_store();
    let k = keys();
    let other = keys();
    let obj = encode_to(
        &store,
        "secret.age",
        std::io::Cursor::new(b"api-key".to_vec()),
        &options(Compression::Zstd, Some(&k)),
        true,
    )
    .await
    .unwrap();
    let err = decode_to(
        &store,
        &obj,
        Some(other.identities.clone()),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Crypto { .. }), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("cannot decrypt secret.age: "), "{text}");
    assert!(!text.contains("encryption failed"), "{text}");
    let err = decode_to(&store, &obj, None, &mut Vec::new())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("secret.age is age-encrypted"), "{text}");
    for setting in [
        "CFDR_AGE_IDENTITY_FILE",
        "encryption.identity-file",
        "CFDR_AGE_IDENTITY",
    ] {
        assert!(text.contains(setting), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_level_is_refused() {
    let store = memory_store();
    let mut opts = EncodeOptions::new(Compression::Gzip);
    opts.level = Some(12);
    let err = encode_to(&store, "x", std::io::Cursor::new(vec![1u8]), &opts, true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("0..=9"), "{err}");
    assert!(
        store.stat("x").await.unwrap().is_none(),
        "nothing may be stored"
    );
}

/// Runs a stock tool with `input` on stdin and returns stdout.
fn pipe(tool: &std::path::Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    cfdr_testing::pipe(Command::new(tool).args(args), input)
}

/// Paths of the Debian `gzip`, `zstd` and `age` tools (or a skip/failure).
fn stock_tools(test: &str) -> Option<(PathBuf, PathBuf, PathBuf)> {
    Some((
        cfdr_testing::tool("gzip", "gzip", test)?,
        cfdr_testing::tool("zstd", "zstd", test)?,
        cfdr_testing::tool("age", "age", test)?,
    ))
}

fn sample() -> Vec<u8> {
    (0..50_000u32)
        .flat_map(|i| format!("row {i} price {}\n", i * 7 % 1000).into_bytes())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_tools_read_what_cfdr_writes() {
    let Some((gzip, zstd, age)) = stock_tools("stock_tools_read_what_cfdr_writes") else {
        return;
    };
    let (store, data, k) = (memory_store(), sample(), keys());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, &k.secret).unwrap();
    let key_arg = key_file.to_str().unwrap();

    for (compression, tool, args) in [
        (Compression::Gzip, &gzip, vec!["-dc"]),
        (Compression::Zstd, &zstd, vec!["-dc"]),
    ] {
        let obj = encode_to(
            &store,
            &format!("out.{}", compression.extension()),
            std::io::Cursor::new(data.clone()),
            &options(compression, None),
            true,
        )
        .await
        .unwrap();
        let stored = store.get(&obj.key).await.unwrap();
        assert_eq!(pipe(tool, &args, &stored), data, "{compression:?}");

        let sealed = encode_to(
            &store,
            &format!("out.{}.age", compression.extension()),
            std::io::Cursor::new(data.clone()),
            &options(compression, Some(&k)),
            true,
        )
        .await
        .unwrap();
        let stored = store.get(&sealed.key).await.unwrap();
        let opened = pipe(&age, &["-d", "-i", key_arg], &stored);
        assert_eq!(pipe(tool, &args, &opened), data, "age + {compression:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cfdr_reads_what_stock_tools_write() {
    let Some((gzip, zstd, age)) = stock_tools("cfdr_reads_what_stock_tools_write") else {
        return;
    };
    let (store, data, k) = (memory_store(), sample(), keys());
    let public = k.recipients.keys()[0].clone();

    let cases: Vec<(Compression, Vec<u8>, bool)> = vec![
        (Compression::Gzip, pipe(&gzip, &["-c"], &data), false),
        (Compression::Zstd, pipe(&zstd, &["-c", "-T0"], &data), false),
        (Compression::None, pipe(&age, &["-r", &public], &data), true),
        (
            Compression::Zstd,
            pipe(&age, &["-r", &public], &pipe(&zstd, &["-c"], &data)),
            true,
        ),
        (
            Compression::Gzip,
            pipe(&age, &["-a", "-r", &public], &pipe(&gzip, &["-c"], &data)),
            true,
        ),
    ];
    for (i, (compression, bytes, encrypted)) in cases.into_iter().enumerate() {
        let key = format!("foreign/{i}");
        store.put(&key, Bytes::from(bytes.clone())).await.unwrap();
        let obj = StoredObject {
            key: key.clone(),
            stored: ObjectInfo::of(&bytes),
            raw_size: data.len() as u64,
            codec: CodecInfo {
                compression,
                encrypted_to: if encrypted {
                    k.recipients.fingerprints()
                } else {
                    Vec::new()
                },
            },
        };
        let mut out = Vec::new();
        decode_to(
            &store,
            &obj,
            encrypted.then(|| k.identities.clone()),
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(out, data, "case {i}: {compression:?} encrypted={encrypted}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_names_tell_the_encoding_and_old_names_still_decode() {
    let k = keys();
    for (compression, encrypted, name) in [
        (Compression::Zstd, true, "dump.pgdump.zst.age"),
        (Compression::Gzip, true, "dump.pgdump.gz.age"),
        (Compression::None, true, "dump.pgdump.age"),
        (Compression::Zstd, false, "dump.pgdump.zst"),
        (Compression::Gzip, false, "dump.pgdump.gz"),
        (Compression::None, false, "dump.pgdump"),
    ] {
        let opts = options(compression, encrypted.then_some(&k));
        assert_eq!(opts.object_name("dump.pgdump"), name);
        assert_eq!(format!("dump.pgdump{}", opts.info().suffix()), name);
    }
    // Backups written before encrypted names ended in `.age`: the manifest's
    // codec, not the name, decides how to read them.
    let store = memory_store();
    let opts = options(Compression::Zstd, Some(&k));
    let obj = encode_to(
        &store,
        "backups/old/dump.pgdump.zst",
        std::io::Cursor::new(b"an older backup".to_vec()),
        &opts,
        true,
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    decode_to(&store, &obj, Some(k.identities.clone()), &mut out)
        .await
        .unwrap();
    assert_eq!(out, b"an older backup");
}
