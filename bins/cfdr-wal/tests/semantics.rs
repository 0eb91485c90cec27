//! Push and fetch semantics on real segments of a real cluster:
//! idempotency, conflicts, missing and damaged objects, history and
//! partial files, identity, timelines, continuity, storage outages.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use cfdr_testing::Backend;
use cfdr_wal_archive::Error;
use cfdr_wal_archive::{Fetched, PushOptions, Pushed};
use common::*;

/// A cluster that archives nowhere (archive_command = '/bin/true') with a
/// few completed segments in pg_wal; returns it and those segment names.
async fn cluster_with_segments(test: &str) -> Option<(cfdr_pg::LocalCluster, Vec<String>)> {
    let bin = pg_bin(test).await?;
    let cluster = archiving_cluster(&bin, "/bin/true").await;
    let names = make_wal(&cluster, 3).await;
    Some((cluster, names))
}

fn opts(data_dir: &Path) -> PushOptions {
    PushOptions {
        data_dir: Some(data_dir.to_owned()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_is_idempotent_and_refuses_different_content() {
    let test = "push_is_idempotent_and_refuses_different_content";
    let Some((cluster, names)) = cluster_with_segments(test).await else {
        return;
    };
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let archive = setup.archive();
    let path = cluster.data_dir.join("pg_wal").join(&names[0]);
    let o = opts(&cluster.data_dir);
    assert!(matches!(
        archive.push(&path, &o).await.unwrap(),
        Pushed::Stored { .. }
    ));
    assert!(matches!(
        archive.push(&path, &o).await.unwrap(),
        Pushed::AlreadyStored { .. }
    ));
    // The binary agrees: exit 0 for the same content.
    let out = setup.run(&cluster.data_dir, &["push", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Same name, one byte changed after the header: refused, nothing overwritten.
    let mut other = std::fs::read(&path).unwrap();
    other[8192 + 100] ^= 0xFF;
    let fake = setup.dir.path().join(&names[0]);
    std::fs::write(&fake, &other).unwrap();
    let key = cfdr_storage::wal_archive::wal_key(&names[0]);
    let before = setup.store.get(&key).await.unwrap();
    let err = archive.push(&fake, &o).await.unwrap_err();
    assert!(matches!(err, Error::WalConflict { .. }), "{err}");
    assert!(err.to_string().contains("nothing was overwritten"), "{err}");
    let out = setup.run(&cluster.data_dir, &["push", fake.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(setup.store.get(&key).await.unwrap(), before);

    // A damaged stored copy of the same file is not taken for "already stored".
    let stored = setup.fs_root().unwrap().join(&key);
    let mut bytes = std::fs::read(&stored).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    std::fs::write(&stored, &bytes).unwrap();
    let err = archive.push(&path, &o).await.unwrap_err();
    assert!(matches!(err, Error::WalCorrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("delete the damaged object"),
        "{err}"
    );

    // A file whose content is not the segment its name says is refused.
    let wrong = setup.dir.path().join(&names[1]);
    std::fs::copy(&path, &wrong).unwrap();
    let err = archive.push(&wrong, &o).await.unwrap_err();
    assert!(err.to_string().contains("the name says"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_missing_is_quiet_and_damage_is_fatal() {
    let test = "fetch_missing_is_quiet_and_damage_is_fatal";
    let Some((cluster, names)) = cluster_with_segments(test).await else {
        return;
    };
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let archive = setup.archive();
    let path = cluster.data_dir.join("pg_wal").join(&names[0]);
    archive.push(&path, &opts(&cluster.data_dir)).await.unwrap();
    let dest = setup.dir.path().join("RECOVERYXLOG");
    let dest_s = dest.to_str().unwrap();

    // Missing: exit 1, nothing on stderr, nothing written.
    let out = setup.run(
        &cluster.data_dir,
        &["fetch", "0000000100000000000000F0", dest_s],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.exists());
    let out = setup.run(&cluster.data_dir, &["fetch", "00000002.history", dest_s]);
    assert_eq!(out.status.code(), Some(1));

    // One flipped byte in the stored object: loud, fatal exit, nothing at %p.
    let root = setup.fs_root().unwrap();
    let stored = root.join(cfdr_storage::wal_archive::wal_key(&names[0]));
    let mut bytes = std::fs::read(&stored).unwrap();
    for at in [bytes.len() / 2, 20] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x01;
        std::fs::write(&stored, &damaged).unwrap();
        let out = setup.run(&cluster.data_dir, &["fetch", &names[0], dest_s]);
        assert_eq!(out.status.code(), Some(128), "flip at {at}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("damaged"), "flip at {at}: {stderr}");
        assert!(!dest.exists(), "a damaged segment reached %p");
        assert!(!Path::new(&format!("{dest_s}.cfdr-tmp")).exists());
        let err = archive
            .fetch(&names[0], &dest, &Default::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WalCorrupt { .. }), "{err}");
    }
    // Intact again: restored byte for byte.
    bytes.truncate(bytes.len());
    std::fs::write(&stored, &bytes).unwrap();
    let out = setup.run(&cluster.data_dir, &["fetch", &names[0], dest_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(&path).unwrap());

    // The manual path of docs/wal-archiving.md: strip the header line, zstd -d.
    let Some(zstd) = cfdr_testing::tool("zstd", "zstd", test) else {
        return;
    };
    let body = &bytes[bytes.iter().position(|&b| b == b'\n').unwrap() + 1..];
    let plain = cfdr_testing::pipe(std::process::Command::new(zstd).arg("-dc"), body);
    assert!(plain == std::fs::read(&path).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn history_partial_and_new_timelines() {
    let test = "history_partial_and_new_timelines";
    let Some((cluster, names)) = cluster_with_segments(test).await else {
        return;
    };
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let archive = setup.archive();
    let o = opts(&cluster.data_dir);
    let seg = cluster.data_dir.join("pg_wal").join(&names[0]);
    archive.push(&seg, &o).await.unwrap();

    // A .partial copy of a segment (what a promoted standby leaves).
    let partial = setup.dir.path().join(format!("{}.partial", names[1]));
    std::fs::copy(cluster.data_dir.join("pg_wal").join(&names[1]), &partial).unwrap();
    archive.push(&partial, &o).await.unwrap();
    let back = setup.dir.path().join("partial.back");
    let name = partial.file_name().unwrap().to_str().unwrap();
    assert!(matches!(
        archive
            .fetch(name, &back, &Default::default())
            .await
            .unwrap(),
        Fetched::Restored { .. }
    ));
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&partial).unwrap());
    assert!(
        setup
            .store
            .stat(&format!("wal/{}/{name}", &names[1][..16]))
            .await
            .unwrap()
            .is_some()
    );

    // Timeline 2's history: a promoted clone must not archive here...
    let history = setup.dir.path().join("00000002.history");
    std::fs::write(&history, "1\t0/3000000\tno recovery target specified\n").unwrap();
    let err = archive.push(&history, &o).await.unwrap_err();
    assert!(
        matches!(err, Error::WalNewTimeline { timeline: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("archive_mode = off"), "{err}");
    // ...until production adopts the timeline.
    let out = setup.run(&cluster.data_dir, &["adopt-timeline", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    archive.push(&history, &o).await.unwrap();
    assert!(
        setup
            .store
            .stat("wal/00000002.history")
            .await
            .unwrap()
            .is_some()
    );
    let back = setup.dir.path().join("history.back");
    archive
        .fetch("00000002.history", &back, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&history).unwrap()
    );
    // A history file outside a data directory has no identity: refused.
    let err = archive
        .push(&history, &opts(setup.dir.path()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--pg-data"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_cluster_is_refused() {
    let test = "another_cluster_is_refused";
    let Some((first, names)) = cluster_with_segments(test).await else {
        return;
    };
    let Some((second, other)) = cluster_with_segments(test).await else {
        return;
    };
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let archive = setup.archive();
    archive
        .push(
            &first.data_dir.join("pg_wal").join(&names[0]),
            &opts(&first.data_dir),
        )
        .await
        .unwrap();
    let err = archive
        .push(
            &second.data_dir.join("pg_wal").join(&other[1]),
            &opts(&second.data_dir),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WalIdentityMismatch { .. }), "{err}");
    // Through the binary as PostgreSQL calls it: exit 2, a clear message.
    let out = setup.run(&second.data_dir, &["push", &format!("pg_wal/{}", other[1])]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to system identifier"), "{stderr}");
    // Recovering the second cluster from the first's archive is refused too.
    let dest = setup.dir.path().join("x");
    let out = setup.run(
        &second.data_dir,
        &["fetch", &names[0], dest.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(128));
    assert!(!dest.exists());
    // And a real archiver of the second cluster keeps failing, loudly.
    let mut second = second;
    second.stop().await.unwrap();
    let conf = second.data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "archive_command = '{}'\n",
        setup.archive_command("").replace('\'', "''")
    ));
    std::fs::write(&conf, text).unwrap();
    second.start(&[]).await.unwrap();
    make_wal(&second, 1).await;
    cfdr_testing::eventually(
        "the second cluster's archiver fails",
        cfdr_testing::PATIENCE,
        || async {
            match archiver(&second).await {
                (_, failed, _) if failed > 0 => Ok(()),
                seen => Err(format!("archiver {seen:?}")),
            }
        },
    )
    .await;
    assert_eq!(setup.archive().list().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn continuity_check_finds_a_deleted_segment() {
    let test = "continuity_check_finds_a_deleted_segment";
    let Some((setup, cluster, names)) = archived(Backend::Fs, test, 5).await else {
        return;
    };
    let out = setup.run(&cluster.data_dir, &["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    setup
        .store
        .delete_many([cfdr_storage::wal_archive::wal_key(&names[2])])
        .await
        .unwrap();
    let report = setup
        .archive()
        .continuity_from(Some(&names[0]))
        .await
        .unwrap();
    assert_eq!(
        report.timelines[0].gaps,
        vec![(names[2].clone(), names[2].clone())]
    );
    let out = setup.run(&cluster.data_dir, &["check", "--from", &names[0]]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("MISSING {}", names[2])),
        "{stdout}"
    );
    // From after the gap, all is there.
    let out = setup.run(&cluster.data_dir, &["check", "--from", &names[3]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_outage_is_retried_and_loses_nothing() {
    let test = "storage_outage_is_retried_and_loses_nothing";
    let Some(bin) = pg_bin(test).await else {
        return;
    };
    let Some(setup) = Setup::new(Backend::S3, test).await else {
        return;
    };
    let cluster = archiving_cluster(&bin, &setup.archive_command("")).await;
    let first = make_wal(&cluster, 1).await;
    wait_archived(&cluster, &first[0]).await;
    // The endpoint goes away: PostgreSQL keeps the segments and retries.
    setup.write_config(Some(&format!(
        "http://127.0.0.1:{}",
        cfdr_testing::closed_port()
    )));
    let during = make_wal(&cluster, 3).await;
    cfdr_testing::eventually(
        "two failed archive attempts",
        cfdr_testing::PATIENCE,
        || async {
            match archiver(&cluster).await {
                (_, failed, _) if failed >= 2 => Ok(()),
                seen => Err(format!("archiver {seen:?}")),
            }
        },
    )
    .await;
    assert!(
        !cluster
            .data_dir
            .join("pg_wal/archive_status")
            .join(format!("{}.done", during[0]))
            .exists()
    );
    // Storage returns: a new segment wakes the archiver, everything arrives.
    setup.write_config(None);
    let after = make_wal(&cluster, 1).await;
    for n in during.iter().chain(&after) {
        wait_archived(&cluster, n).await;
    }
    let compared = assert_archive_matches(&setup, &cluster).await;
    assert!(compared >= 5, "{compared}");
    let report = setup
        .archive()
        .continuity_from(Some(&first[0]))
        .await
        .unwrap();
    assert!(report.is_continuous(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_names_wrong_settings() {
    let test = "preflight_names_wrong_settings";
    let Some(bin) = pg_bin(test).await else {
        return;
    };
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    // initdb's defaults: archive_mode = off.
    let mut cluster = cfdr_pg::LocalCluster::init_temp(&bin).await.unwrap();
    cluster
        .start(&[("wal_level", "minimal"), ("max_wal_senders", "0")])
        .await
        .unwrap();
    let run = |c: &cfdr_pg::LocalCluster| {
        std::process::Command::new(exe())
            .args(["--config", setup.config.to_str().unwrap(), "preflight"])
            .env("DATABASE_URL", c.url("postgres"))
            .output()
            .unwrap()
    };
    let out = run(&cluster);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("wal_level = minimal"), "{stdout}");
    assert!(stdout.contains("archive_mode = off"), "{stdout}");
    drop(cluster);
    // Set up as documented: nothing to report.
    let good = archiving_cluster(&bin, &setup.archive_command("")).await;
    let names = make_wal(&good, 1).await;
    wait_archived(&good, &names[0]).await;
    let out = run(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prefetch_serves_the_following_segments() {
    let test = "prefetch_serves_the_following_segments";
    let Some((setup, cluster, names)) = archived(Backend::Fs, test, 4).await else {
        return;
    };
    let spool_in = setup.spool.join("in");
    let dest = setup.dir.path().join("RECOVERYXLOG");
    let fetch = |name: &str| {
        let out = setup.run(
            &cluster.data_dir,
            &["fetch", "--prefetch", "2", name, dest.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let original = std::fs::read(cluster.data_dir.join("pg_wal").join(name)).unwrap();
        assert!(std::fs::read(&dest).unwrap() == original, "{name} differs");
    };
    // The background worker fetches ahead while "recovery" goes on.
    let prefetched = |n: &str| {
        let deadline = std::time::Instant::now() + cfdr_testing::PATIENCE;
        while !spool_in.join(n).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(spool_in.join(n).exists(), "{n} not prefetched");
        let original = std::fs::read(cluster.data_dir.join("pg_wal").join(n)).unwrap();
        assert!(
            std::fs::read(spool_in.join(n)).unwrap() == original,
            "{n} differs"
        );
    };
    fetch(&names[0]);
    // The next two are fetched ahead, verified, into the spool.
    prefetched(&names[1]);
    prefetched(&names[2]);
    // The next call is served from the spool (and takes it out); the
    // window moves on by one.
    fetch(&names[1]);
    assert!(!spool_in.join(&names[1]).exists());
    prefetched(&names[3]);
    // Beyond the archive's end: quiet exit 1, as without prefetch.
    let out = setup.run(
        &cluster.data_dir,
        &[
            "fetch",
            "--prefetch",
            "2",
            "0000000100000000000000F0",
            dest.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_replays_fetched_wal_and_stops_on_a_damaged_segment() {
    let test = "recovery_replays_fetched_wal_and_stops_on_a_damaged_segment";
    let Some(bin) = pg_bin(test).await else {
        return;
    };
    let Some(setup) = Setup::new(Backend::Fs, test).await else {
        return;
    };
    let cluster = archiving_cluster(&bin, &setup.archive_command("")).await;
    make_wal(&cluster, 1).await;
    // A base backup without WAL: recovery must fetch every segment.
    let base = setup.dir.path().join("base");
    let status = std::process::Command::new(bin.path("pg_basebackup"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-X",
            "none",
            "-c",
            "fast",
            "-D",
        ])
        .arg(&base)
        .status()
        .unwrap();
    assert!(status.success());
    let names = make_wal(&cluster, 3).await;
    wait_archived(&cluster, names.last().unwrap()).await;
    let restore = |dir: &Path| {
        let conf = dir.join("postgresql.auto.conf");
        let cmd = setup.archive_command("").replace("push  %p", "fetch %f %p");
        std::fs::write(
            &conf,
            format!(
                "archive_mode = off\nrestore_command = '{}'\nrecovery_target_timeline = 'current'\n",
                cmd.replace('\'', "''")
            ),
        )
        .unwrap();
        std::fs::write(dir.join("recovery.signal"), "").unwrap();
        give_to_postgres(dir);
    };
    // A damaged segment in the middle: recovery stops (FATAL), it does not
    // promote on the WAL before it.
    let damaged = setup.dir.path().join("damaged");
    let copy = |to: &Path| {
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(&base)
            .arg(to)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    copy(&damaged);
    restore(&damaged);
    let root = setup.fs_root().unwrap();
    let key = root.join(cfdr_storage::wal_archive::wal_key(&names[1]));
    let good = std::fs::read(&key).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x10;
    std::fs::write(&key, &bad).unwrap();
    let sock = setup.dir.path().join("sock");
    std::fs::create_dir_all(&sock).unwrap();
    give_to_postgres(&sock);
    let mut clone = cfdr_pg::LocalCluster::existing(&bin, &damaged, &sock).unwrap();
    // pg_ctl may return once the backup is consistent (hot standby) or
    // report the failed start: either way, the log tells what happened.
    let _ = clone.start(&[]).await;
    wait_for_log(&damaged.with_extension("log"), "is damaged").await;
    // Recovery stops on the failed restore_command: the startup process
    // ends with a FATAL line.
    let log = wait_for_log(&damaged.with_extension("log"), "FATAL").await;
    assert!(
        !log.contains("database system is ready to accept connections"),
        "promoted: {log}"
    );
    drop(clone);
    // Intact: recovery replays every archived segment and promotes.
    std::fs::write(&key, &good).unwrap();
    let fine = setup.dir.path().join("fine");
    copy(&fine);
    restore(&fine);
    let mut clone = cfdr_pg::LocalCluster::existing(&bin, &fine, &sock).unwrap();
    clone.start(&[]).await.unwrap();
    let log = wait_for_log(
        &fine.with_extension("log"),
        "database system is ready to accept connections",
    )
    .await;
    assert!(
        log.contains(&format!("restored log file \"{}\" from archive", names[2])),
        "{log}"
    );
}

/// Waits until the server log at `path` contains `needle`.
async fn wait_for_log(path: &Path, needle: &str) -> String {
    let what = format!("{needle:?} in the server log {}", path.display());
    cfdr_testing::eventually(&what, cfdr_testing::PATIENCE, || async {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .await
}
