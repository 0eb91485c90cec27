//! `cfdr-copy` as cron runs it: killed with SIGKILL in the middle of a
//! copy to the S3 server and run again (complete and correct, nothing
//! listed half-copied meanwhile, nothing copied twice), two copies at once
//! (one wins the lock, the other exits 3), the JSON report, and the errors
//! for a config without copies.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cfdr_storage::{BackupId, Compression, EncodeOptions, Repository, Store};
use cfdr_testing::{Backend, TestLocation};

const MIB: usize = 1 << 20;

use cfdr_testing::output_text as text;

fn copy_cmd(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfdr-copy"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CFDR_REPOSITORY")
        .env_remove("CFDR_CONFIG");
    cmd
}

/// A local primary with one backup of `objects` incompressible objects of
/// 8 MiB each.
async fn primary(dir: &Path, objects: usize) -> (Repository, BackupId) {
    let url = format!("file://{}", dir.join("primary").display());
    let repo = Repository::init(cfdr_storage::StorageOptions::from_url(url).build().unwrap())
        .await
        .unwrap();
    let mut b = repo.begin_backup("physical", Some("daily")).unwrap();
    let mut x: u64 = rand::random::<u64>() | 1;
    for i in 0..objects {
        // xorshift: incompressible bytes, quickly in a debug build.
        let mut data = vec![0u8; 8 * MIB];
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let data: &'static [u8] = Box::leak(data.into_boxed_slice());
        b.put_encoded(
            &format!("base-{i:02}.tar"),
            data,
            &EncodeOptions::new(Compression::None),
        )
        .await
        .unwrap();
    }
    let m = b.commit(Default::default()).await.unwrap();
    (repo, m.id)
}

fn report(out: &Output) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    all[0].clone()
}

async fn data_objects(store: &Store, id: &BackupId) -> usize {
    store
        .list(&id.prefix())
        .await
        .unwrap()
        .iter()
        .filter(|m| m.key.ends_with(".tar"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_copy_to_s3_then_run_again_completes_correctly() {
    let Some(s3) = TestLocation::new(Backend::S3, "copy-kill") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    const OBJECTS: usize = 16;
    let (repo, id) = primary(dir.path(), OBJECTS).await;
    // The secondary's credentials come from DR_-prefixed variables, not
    // from the file.
    let url = s3.options.url.clone().unwrap();
    let config = dir.path().join("cfdr.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = '{}'\n\n[[copy]]\nname = 'dr'\nurl = '{url}'\ncredentials-env-prefix = 'DR_'\n[copy.s3]\nendpoint = '{}'\nregion = '{}'\n",
            repo.store().location().display(),
            s3.options.s3.endpoint.clone().unwrap(),
            s3.options.s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
        ),
    )
    .unwrap();
    let creds = [
        (
            "DR_AWS_ACCESS_KEY_ID",
            s3.options.s3.access_key_id.clone().unwrap(),
        ),
        (
            "DR_AWS_SECRET_ACCESS_KEY",
            s3.options.s3.secret_access_key.clone().unwrap(),
        ),
    ];
    let secondary = s3.options.build().unwrap();

    // SIGKILL as soon as the first objects are on the secondary.
    let mut child = copy_cmd(
        &config,
        &["--concurrency", "1", "--lock-ttl", "2", "--json"],
    )
    .envs(creds.clone())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let start = Instant::now();
    loop {
        if data_objects(&secondary, &id).await >= 2 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it was killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no object copied in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // A completion request sent just before the kill may still land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let copied_before = data_objects(&secondary, &id).await;
    assert!(
        copied_before < OBJECTS,
        "killed too late: {copied_before} objects copied"
    );
    // Half-copied: not listed on the secondary.
    let copy = Repository::open(secondary.clone()).await.unwrap();
    assert!(copy.backup_ids().await.unwrap().is_empty());

    // Run again: it waits out the killed run's lock and finishes the job,
    // re-verifying what was there instead of copying it again.
    let out = copy_cmd(&config, &["--json", "--wait", "30"])
        .envs(creds.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let r = report(&out);
    for list in ["differ", "missing", "failed"] {
        assert_eq!(r[list], serde_json::json!([]), "{r}");
    }
    let resumed = r["already_there"]["objects"].as_u64().unwrap();
    let copied = r["copied"]["objects"].as_u64().unwrap();
    // Nothing twice: the objects and cfdr.json of the killed run are
    // verified, the rest and the manifest copied.
    assert_eq!(resumed, copied_before as u64 + 1, "{r}");
    assert_eq!(copied, (OBJECTS - copied_before) as u64 + 1, "{r}");
    assert_eq!(r["backups_copied"], serde_json::json!([id.to_string()]));
    assert_eq!(r["lag_bytes"], 0);
    assert_eq!(copy.backup_ids().await.unwrap(), vec![id.clone()]);
    let manifest = copy.manifest(&id).await.unwrap();
    assert_eq!(manifest, repo.manifest(&id).await.unwrap());
    let verified = copy.verify(&manifest).await.unwrap();
    assert!(
        verified.is_ok() && verified.verified == OBJECTS,
        "{verified:?}"
    );

    // A third run transfers nothing.
    let out = copy_cmd(&config, &["--json"]).envs(creds).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let r = report(&out);
    assert_eq!(r["copied"]["objects"], 0, "{r}");
    assert_eq!(r["copied"]["bytes"], 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_at_once_one_wins_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, id) = primary(dir.path(), 12).await;
    let secondary = dir.path().join("secondary");
    let config = dir.path().join("cfdr.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = '{}'\n[[copy]]\nname = 'vault'\nurl = 'file://{}'\n",
            repo.store().location().display(),
            secondary.display()
        ),
    )
    .unwrap();
    let spawn = || {
        copy_cmd(&config, &["--to", "vault", "--concurrency", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The second starts while the first holds the lock and is copying.
    let first = spawn();
    let locks = secondary.join("locks/copy");
    let start = Instant::now();
    while std::fs::read_dir(&locks).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the first copy took no lock"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let second = spawn();
    let outs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap()).collect();
    assert_eq!(codes, [0, 3], "{}\n---\n{}", text(&outs[0]), text(&outs[1]));
    let loser = &outs[1];
    assert!(
        text(loser).contains("another cfdr-copy to") && text(loser).contains("is running"),
        "{}",
        text(loser)
    );
    let winner = &outs[0];
    assert!(
        text(winner).contains("copied        14 objects"),
        "{}",
        text(winner)
    );
    let copy = Repository::open(
        cfdr_storage::StorageOptions::from_url(secondary.display().to_string())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(copy.backup_ids().await.unwrap(), vec![id]);

    // `-r vault` points any command at the copy: cfdr-copy itself then
    // copies from the copy, which is refused as the same place.
    let out = copy_cmd(&config, &["-r", "vault"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("points at the primary repository itself"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_config_without_copies_or_an_unknown_name_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // The primary is opened first: it must be a repository.
    let primary = format!("file://{}", dir.path().join("primary").display());
    Repository::init(
        cfdr_storage::StorageOptions::from_url(primary.clone())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let config = dir.path().join("cfdr.toml");
    std::fs::write(&config, format!("[repository]\nurl = '{primary}'\n")).unwrap();
    let out = copy_cmd(&config, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no [[copy]] entry"), "{}", text(&out));
    std::fs::write(
        &config,
        format!("[repository]\nurl = '{primary}'\n[[copy]]\nname = 'dr'\nurl = 'memory://y'\n"),
    )
    .unwrap();
    let out = copy_cmd(&config, &["--to", "dr-us"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no [[copy]] named \"dr-us\"") && text(&out).contains("known: dr"),
        "{}",
        text(&out)
    );
}
