//! File archives fall in the retention data classes of their class.
#![allow(clippy::unwrap_used)]

use cfdr_files::{BackupRequest, FileClass};
use cfdr_retention::DataClass;
use cfdr_storage::{BackupId, EncodeOptions, Repository};
use cfdr_testing::{Backend, TestLocation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_are_kept_by_their_data_class() {
    let loc = TestLocation::new(Backend::Fs, "files_retention").unwrap();
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("event.log"), "login ok\n").unwrap();
    let now = jiff::Timestamp::now();
    let old = now - jiff::SignedDuration::from_hours(24 * 100);

    let mut expected = Vec::new();
    for (class, data_class, old_kept) in [
        (FileClass::Config, DataClass::Configuration, true),
        (FileClass::Logs, DataClass::ApplicationLogs, false),
        (FileClass::Audit, DataClass::AuditLogs, true),
        (FileClass::Records, DataClass::TradingRecords, true),
    ] {
        let req = BackupRequest::new(class, vec![src.path().to_path_buf()]);
        let a = cfdr_files::backup(&repo, &req, &EncodeOptions::default())
            .await
            .unwrap();
        // The same archive as if taken 100 days ago (only its manifest: the
        // plan reads manifests).
        let mut m = a.manifest.clone();
        m.id = BackupId::new(old, &m.kind).unwrap();
        m.started = old;
        m.finished = old;
        repo.store()
            .create_if_absent(&m.id.manifest_key(), serde_json::to_vec(&m).unwrap())
            .await
            .unwrap();
        expected.push((a.manifest.id.to_string(), data_class, true));
        expected.push((m.id.to_string(), data_class, old_kept));
    }

    // The runbook defaults: logs 90 days, audit and records 7 years,
    // configuration indefinitely.
    let opts = cfdr_prune::Options {
        dry_run: true,
        ..Default::default()
    };
    let report = cfdr_prune::prune(&repo, &cfdr_retention::Config::default(), &opts)
        .await
        .unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    for (id, data_class, keep) in expected {
        let d = report
            .plan
            .get(&id)
            .unwrap_or_else(|| panic!("{id} not planned"));
        assert_eq!(
            (d.data_class, d.keep),
            (data_class, keep),
            "{id}: {:?}",
            d.reasons
        );
    }
}
