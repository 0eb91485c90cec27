//! A synthetic repository history for retention and prune tests and
//! benchmarks: hourly backups of every kind with tiny data objects, a WAL
//! archive in the `wal/` layout with a timeline switch, leftovers of failed
//! backups and a few objects prune must never touch.

use std::collections::BTreeSet;

use cfdr_retention::{Lsn, WalRange, WalSegment};
use cfdr_storage::codec::{CodecInfo, Compression, StoredObject};
use cfdr_storage::wal_archive::{CLUSTER_KEY, wal_key};
use cfdr_storage::{BackupId, FORMAT_VERSION, Manifest, ObjectInfo, Store, TOOL_VERSION};
use futures::{StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp};

/// WAL segment size of the synthetic cluster (PostgreSQL's default).
pub const SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// What to generate.
#[derive(Clone, Debug)]
pub struct HistorySpec {
    /// Committed backups, one every `interval` from `start`.
    pub backups: usize,
    /// Time between backups (one hour unless set): a smaller history can
    /// span as many days as a large one.
    pub interval: SignedDuration,
    /// WAL segments (timeline 1, then timeline 2 for the last fifth).
    pub wal_segments: usize,
    /// Uncommitted backups; half old, half inside the default grace period.
    pub leftovers: usize,
    /// Time of the first backup.
    pub start: Timestamp,
    /// Writes in flight.
    pub concurrency: usize,
}

impl HistorySpec {
    /// `backups` backups and `wal_segments` segments from 2025-01-01.
    pub fn new(backups: usize, wal_segments: usize) -> Self {
        HistorySpec {
            backups,
            interval: SignedDuration::from_hours(1),
            wal_segments,
            leftovers: 10,
            start: Timestamp::from_second(1_735_689_600).unwrap_or(Timestamp::UNIX_EPOCH),
            concurrency: 64,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug)]
pub struct History {
    /// One hour after the newest backup: plan "now" for tests.
    pub at: Timestamp,
    /// Every key written.
    pub keys: BTreeSet<String>,
    /// Physical backups with the WAL range they need.
    pub physical: Vec<(String, WalRange)>,
    /// Keys prune must never delete (cluster identity, a foreign object).
    pub untouchable: Vec<String>,
}

fn hours(n: usize) -> SignedDuration {
    SignedDuration::from_hours(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Writes the history into `store` (an initialised repository).
pub async fn write_history(
    store: &Store,
    spec: &HistorySpec,
) -> Result<History, cfdr_storage::Error> {
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    let mut physical = Vec::new();
    let per_backup = (spec.wal_segments / spec.backups.max(1)).max(1) as u64;
    let switch = (spec.wal_segments as u64) * 4 / 5;
    let timeline = |segno: u64| if segno >= switch { 2 } else { 1 };
    let other_kinds = ["logs", "audit", "config", "secrets", "trading"];
    for i in 0..spec.backups {
        let started = spec
            .start
            .saturating_add(spec.interval * i32::try_from(i).unwrap_or(i32::MAX))
            .unwrap_or(spec.start);
        let kind = match i % 4 {
            0 => "physical",
            1 | 2 => "logical",
            _ => other_kinds[(i / 4) % other_kinds.len()],
        };
        let id = BackupId::new(started, kind)?;
        let class = if i % 500 == 100 {
            "archive"
        } else if i % 24 == 0 {
            "daily"
        } else {
            "hourly"
        };
        let data = format!("{id} data\n").into_bytes();
        let key = format!("{}data.bin", id.prefix());
        let object = StoredObject {
            key: key.clone(),
            stored: ObjectInfo::of(&data),
            raw_size: data.len() as u64,
            codec: CodecInfo {
                compression: Compression::None,
                encrypted_to: Vec::new(),
            },
        };
        let mut details = serde_json::Map::new();
        if i % 997 == 1 {
            details.insert("pinned".into(), true.into());
        }
        if i % 1000 == 7 {
            details.insert("tags".into(), serde_json::json!(["release"]));
        }
        if kind == "physical" {
            let segno = 1 + i as u64 * per_backup;
            let tl = timeline(segno);
            let start = Lsn(segno * SEGMENT_SIZE + 0x28);
            let stop = Lsn((segno + 1) * SEGMENT_SIZE + 0x100);
            let range = WalRange::new(tl, start, stop);
            details.insert(
                "wal".into(),
                serde_json::to_value(range).unwrap_or_default(),
            );
            details.insert("wal_segment_size".into(), SEGMENT_SIZE.into());
            physical.push((id.as_str().to_owned(), range));
            if i % 40 == 0 {
                let seg = WalSegment {
                    timeline: tl,
                    segno,
                };
                let label = format!("{}.00000028.backup", seg.file_name(SEGMENT_SIZE));
                objects.push((wal_key(&label), b"START WAL LOCATION\n".to_vec()));
            }
        }
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            id: id.clone(),
            kind: kind.into(),
            class: Some(class.into()),
            started,
            finished: started
                .saturating_add(SignedDuration::from_secs(60))
                .unwrap_or(started),
            tool_version: TOOL_VERSION.into(),
            objects: vec![object],
            details,
        };
        objects.push((key, data));
        objects.push((
            id.manifest_key(),
            serde_json::to_vec(&manifest).unwrap_or_default(),
        ));
    }
    // One hour after the newest backup.
    let end = spec
        .start
        .saturating_add(
            spec.interval * i32::try_from(spec.backups.saturating_sub(1)).unwrap_or(i32::MAX),
        )
        .and_then(|newest| newest.saturating_add(hours(1)))
        .unwrap_or(spec.start);
    for j in 0..spec.leftovers {
        // Old ones, then ones inside the one-day grace period before `at`.
        let when = if j % 2 == 0 {
            spec.start.saturating_add(hours(j * 10 + 5))
        } else {
            end.checked_sub(SignedDuration::from_mins(30 + j as i64))
        }
        .unwrap_or(spec.start);
        let id = BackupId::new(when, "logical")?;
        objects.push((format!("{}dump.zst", id.prefix()), b"partial".to_vec()));
    }
    for s in 0..spec.wal_segments as u64 {
        let segno = 1 + s;
        let seg = WalSegment {
            timeline: timeline(segno),
            segno,
        };
        objects.push((wal_key(&seg.file_name(SEGMENT_SIZE)), b"wal".to_vec()));
    }
    let partial = WalSegment {
        timeline: 1,
        segno: switch,
    };
    let partial = format!("{}.partial", partial.file_name(SEGMENT_SIZE));
    objects.push((wal_key(&partial), b"wal".to_vec()));
    objects.push((
        wal_key("00000002.history"),
        b"1\t0/1000000\tno recovery target specified\n".to_vec(),
    ));
    let untouchable = vec![
        CLUSTER_KEY.to_owned(),
        "wal/README.txt".to_owned(),
        "wal/0000000100000000/00000001000000000000ZZZZ".to_owned(),
    ];
    for key in &untouchable {
        objects.push((key.clone(), b"{}".to_vec()));
    }

    let keys: BTreeSet<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    // Plain operator writes: one request per object, so 100,000 objects
    // take seconds rather than minutes.
    let op = store.operator()?.clone();
    futures::stream::iter(objects)
        .map(|(key, body)| {
            let op = op.clone();
            async move {
                op.write(&key, body)
                    .await
                    .map(|_| ())
                    .map_err(|e| store.map_err("write", &key, e))
            }
        })
        .buffer_unordered(spec.concurrency.max(1))
        .try_collect::<()>()
        .await?;
    Ok(History {
        at: end,
        keys,
        physical,
        untouchable,
    })
}
