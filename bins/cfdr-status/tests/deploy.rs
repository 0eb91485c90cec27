//! deploy/prometheus and deploy/grafana: the rules load and their unit
//! tests pass under promtool, and every metric the rules and the dashboard
//! use is one cfdr-status exports (the golden list of names).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn exported() -> BTreeSet<String> {
    let golden =
        std::fs::read_to_string(root().join("crates/guard/tests/golden/metric_names.txt")).unwrap();
    golden
        .lines()
        .map(|l| l.split('{').next().unwrap().to_owned())
        .collect()
}

/// `cfdr_...` identifiers in `text`.
fn used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("cfdr_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn rules_and_dashboard_use_exported_metrics() {
    let exported = exported();
    for file in [
        "deploy/prometheus/cfdr-alerts.yml",
        "deploy/grafana/cfdr-dashboard.json",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let names = used(&text);
        assert!(names.len() >= 5, "{file}: {names:?}");
        let unknown: Vec<_> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics cfdr-status does not export: {unknown:?}"
        );
    }
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/cfdr-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(dash["panels"].as_array().unwrap().len() >= 8);
    // One rule per objective and the absent() rules.
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/cfdr-alerts.yml")).unwrap();
    for needle in [
        "cfdr_rpo_exposure_seconds",
        "objective=~\"backup:.*\"",
        "absent(cfdr_status_up)",
        "cfdr_trading_state",
    ] {
        assert!(rules.contains(needle), "{needle}");
    }
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    let test = "promtool_rules";
    let Some(promtool) = cfdr_testing::tool("promtool", "prometheus", test) else {
        return;
    };
    let dir = root().join("deploy/prometheus");
    for args in [
        ["check", "rules", "cfdr-alerts.yml"],
        ["test", "rules", "cfdr-alerts.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
