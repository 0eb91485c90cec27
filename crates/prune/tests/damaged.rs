//! A damaged manifest never makes prune delete what a restore may need:
//! the backup is reported and left whole, retention plans the readable
//! rest, and while a physical backup's manifest is damaged no WAL goes.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use cfdr_prune::{Options, prune};
use cfdr_retention::{Config, Count, Policy};
use cfdr_storage::{BackupId, Repository, Store};
use cfdr_testing::history::{HistorySpec, write_history};
use cfdr_testing::{Backend, TestLocation};

async fn keys(store: &Store) -> BTreeSet<String> {
    let all = store.list("").await.unwrap();
    all.into_iter().map(|m| m.key).collect()
}

/// Cuts `id`'s manifest in half, as a torn write would.
async fn truncate_manifest(store: &Store, id: &str) -> String {
    let key = BackupId::parse(id).unwrap().manifest_key();
    let bytes = store.get(&key).await.unwrap().to_vec();
    store
        .put(&key, bytes[..bytes.len() / 2].to_vec())
        .await
        .unwrap();
    key
}

async fn damaged_backup_is_left_whole(kind: &str) {
    let loc = TestLocation::new(Backend::Memory, "prune_damaged").unwrap();
    let store = loc.options.build().unwrap();
    let repo = Repository::init(store.clone()).await.unwrap();
    // Two days: the first day's backups (and the WAL before the newest
    // physical backup) go under keep-last 1.
    let history = write_history(&store, &HistorySpec::new(26, 104))
        .await
        .unwrap();
    let config = Config::with_policy(Policy {
        keep_last: Count::Limited(1),
        ..Policy::default()
    });
    let options = Options {
        at: Some(history.at),
        ..Options::default()
    };
    let dry = Options {
        dry_run: true,
        ..options.clone()
    };
    let intact = prune(&repo, &config, &dry).await.unwrap();
    assert!(
        intact.plan.wal_deleted().count() > 0,
        "WAL would go: {}",
        intact.render(true, |b| b.to_string())
    );

    // The oldest committed backup of `kind` that retention deletes.
    let victim = repo
        .backup_ids()
        .await
        .unwrap()
        .into_iter()
        .find(|id| id.kind() == kind && intact.plan.deleted().any(|d| d == id.as_str()))
        .unwrap();
    let manifest = truncate_manifest(&store, victim.as_str()).await;
    let victim_keys: BTreeSet<String> = keys(&store)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&victim.prefix()))
        .collect();

    // The dry run names the backup, its key and what to do.
    let planned = prune(&repo, &config, &dry).await.unwrap();
    assert_eq!(planned.damaged.len(), 1, "{:?}", planned.damaged);
    assert_eq!(planned.damaged[0].id, victim.as_str());
    let text = planned.render(false, |b| b.to_string());
    assert!(
        text.contains(&format!("DAMAGED: backup {victim}: manifest {manifest}"))
            && text.contains("restore the manifest from a copy"),
        "{text}"
    );
    assert!(planned.plan.get(victim.as_str()).is_none(), "not planned");
    // Retention keeps its counts among readable backups.
    assert_eq!(planned.plan.kept().count(), intact.plan.kept().count());

    let done = prune(&repo, &config, &options).await.unwrap();
    assert!(done.deleted > 0);
    let after = keys(&store).await;
    assert!(
        victim_keys.is_subset(&after),
        "every object of the damaged backup stays"
    );
    let wal_after = after.iter().filter(|k| k.starts_with("wal/")).count();
    let wal_before = history
        .keys
        .iter()
        .filter(|k| k.starts_with("wal/"))
        .count();
    if kind == "physical" {
        // Its WAL range is unknown: no WAL is deleted.
        assert_eq!(planned.plan.wal_deleted().count(), 0);
        assert_eq!(wal_after, wal_before);
        assert!(
            text.contains(&format!("{victim} has no WAL range: keeping all WAL")),
            "{text}"
        );
    } else {
        // A logical backup needs no WAL: WAL is pruned as usual.
        assert_eq!(
            planned.plan.wal_deleted().count(),
            intact.plan.wal_deleted().count()
        );
        assert!(wal_after < wal_before);
    }
    // The readable backups were pruned to the policy.
    let readable = repo.catalog().await.unwrap();
    assert_eq!(readable.damaged.len(), 1);
    assert_eq!(readable.damaged[0].id, victim);
}

#[tokio::test]
async fn a_damaged_physical_manifest_keeps_its_objects_and_all_wal() {
    damaged_backup_is_left_whole("physical").await;
}

#[tokio::test]
async fn a_damaged_logical_manifest_keeps_its_objects() {
    damaged_backup_is_left_whole("logical").await;
}
