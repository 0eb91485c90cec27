//! Secret bundle formats: `.env` and JSON input (`cfdr-secrets backup`),
//! the stored bundle document, and the `.env`, JSON and Kubernetes
//! `Secret` output of restores. The first byte picks the input format.
#![no_main]

use cfdr_secrets::formats::{parse_env, parse_json, render_env, render_json, render_kubernetes};
use cfdr_secrets::{Format, SecretBundle, parse_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let bundle = match pick % 4 {
        0 => parse_env(text, "fuzz.env"),
        1 => parse_json(text, "fuzz.json"),
        2 => parse_text(text, None, "-"),
        _ => SecretBundle::from_document(text),
    };
    let _ = parse_text(text, Some(Format::Json), "-");
    let Ok(bundle) = bundle else {
        return;
    };
    // A bundle read must write back in each format without panicking, and
    // its stored document must read back as the same values.
    let _ = render_env(&bundle);
    let _ = render_json(&bundle);
    let _ = render_kubernetes(
        &bundle,
        "app-secrets",
        Some("trading"),
        &[("cfdr/backup", "x")],
    );
    let doc = bundle.to_document();
    let again = SecretBundle::from_document(doc.expose()).expect("a written bundle reads back");
    assert!(
        again.diff(&bundle).is_empty(),
        "the stored document keeps every value"
    );
});
