//! Bad settings and an unreachable repository are errors at start, never a
//! guard that silently allows trading; PostgreSQL down at start is a guard
//! that starts `Halted`.
#![allow(clippy::unwrap_used)]

use cfdr_guard::{Error, Guard, Reason, Settings, TradingState};
use cfdr_storage::{Repository, StorageOptions};

async fn memory_repo() -> Repository {
    let name = format!("memory://guard-start-{:x}", rand_suffix());
    Repository::init(StorageOptions::from_url(name).build().unwrap())
        .await
        .unwrap()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn nowhere() -> cfdr_pg::PgTarget {
    cfdr_pg::PgTarget::from_url(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        cfdr_testing::closed_port()
    ))
    .unwrap()
}

#[test]
fn bad_settings_are_named() {
    for (text, names) in [
        ("[objectives]\nrpo = '0s'", "objectives.rpo"),
        ("[objectives]\nrpx = '5m'", "rpx"),
        ("[objectives]\nrpo = 'five minutes'", "five minutes"),
        (
            "[objectives.backups]\n'Logical Hourly' = '1h'",
            "Logical Hourly",
        ),
        (
            "[guard]\nstaleness-limit = '1s'\nrefresh-interval = '2s'",
            "staleness-limit",
        ),
        ("[guard]\nhalt-multiple = 0.5", "halt-multiple"),
        ("[guard]\nhealthy-cycles = 0", "healthy-cycles"),
    ] {
        let err = Settings::from_toml(text).unwrap_err().to_string();
        assert!(err.contains(names), "{text}: {err}");
    }
    Settings::from_toml("[objectives]\nrpo = '5m'").unwrap();
}

#[tokio::test]
async fn a_zero_rpo_does_not_start() {
    let mut s = Settings::default();
    s.objectives.rpo = cfdr_guard::Dur(std::time::Duration::ZERO);
    let err = Guard::start(s, memory_repo().await, nowhere())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "objectives.rpo"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_repository_does_not_start() {
    // A folder repository that was there and is gone (an unmounted volume).
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("repo");
    let repo = Repository::init(
        StorageOptions::from_url(format!("file://{}", gone.display()))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    std::fs::remove_dir_all(&gone).unwrap();
    let err = Guard::start(Settings::default(), repo, nowhere())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err}");
    assert!(err.to_string().contains("repo"), "{err}");
}

#[tokio::test]
async fn postgres_down_at_start_starts_halted() {
    let guard = Guard::start(Settings::default(), memory_repo().await, nowhere())
        .await
        .unwrap();
    assert_eq!(guard.state(), TradingState::Halted);
    let gate = guard.gate();
    assert!(
        gate.reasons
            .iter()
            .any(|c| c.reason == Reason::PrimaryDown && c.detail.contains("127.0.0.1")),
        "{gate:?}"
    );
}
