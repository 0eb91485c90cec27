//! A real logical backup, taken from real PostgreSQL, is restored after a
//! prune that deleted hundreds of backups around it. A physical base backup
//! plus WAL restored after a prune (the second kind) is not tested
//! yet: physical backups landed while pruning was being built.
#![allow(clippy::unwrap_used)]

use cfdr_pg::logical::{self, LogicalOptions, RestoreRequest};
use cfdr_prune::{Options, prune};
use cfdr_retention::Config;
use cfdr_storage::{Repository, StorageOptions};
use cfdr_testing::history::{HistorySpec, write_history};
use cfdr_testing::pg::{backed_up, content_fingerprint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_logical_backup_restores_after_a_prune() {
    let Some(fixture) = backed_up("daily", "prune_then_restore").await else {
        return;
    };
    let store = StorageOptions::from_url(fixture.url.clone())
        .build()
        .unwrap();
    let repo = Repository::open(store.clone()).await.unwrap();
    // Two weeks of older synthetic history around the real backup.
    let mut spec = HistorySpec::new(336, 1_000);
    spec.start = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(340))
        .unwrap();
    write_history(&store, &spec).await.unwrap();

    let report = prune(&repo, &Config::default(), &Options::default())
        .await
        .unwrap();
    assert!(report.summary.delete.count > 50, "{:?}", report.summary);
    let real = fixture.manifest.id.as_str();
    let decision = report.plan.decisions.iter().find(|d| d.id == real).unwrap();
    assert!(decision.keep, "the newest backup is kept: {decision:?}");

    let manifest = repo.manifest(&fixture.manifest.id).await.unwrap();
    assert!(repo.verify(&manifest).await.unwrap().is_ok());
    let source = fixture.cluster.target("cryptofunk");
    let opts = LogicalOptions::default();
    let restored = logical::restore(
        &repo,
        &source,
        &manifest,
        &opts,
        &RestoreRequest::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_ne!(restored.database, "cryptofunk");
    assert_eq!(
        content_fingerprint(&fixture.cluster.target(&restored.database))
            .await
            .unwrap(),
        content_fingerprint(&source).await.unwrap(),
        "the restored database equals the source"
    );
}
