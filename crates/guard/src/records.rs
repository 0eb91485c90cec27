//! Records other cfdr components keep in the repository, as the guard reads
//! them: the WAL stream's safe position, DR drill reports, off-region copy
//! lag and operation markers (restores and failovers in progress).
//!
//! ```text
//! wal-stream/state.json        {"version":1,"timeline":2,"safe_lsn":"0/3000060","safe_at":"...","updated_at":"..."}
//! drills/<id>/report.json      {"version":1,"status":"SUCCESSFUL","started":"...","finished":"...",
//!                               "rto_actual_seconds":412.5,"rpo_actual_seconds":3.0}   (ids sort by time)
//! copy-state/<name>.json       {"version":1,"name":"eu-west","lag_bytes":0,"lag_seconds":1.5,"updated_at":"..."}
//! operations/<id>.json         see cfdr_storage::operations
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use cfdr_retention::Lsn;
use cfdr_storage::operations::{MarkerRead, OperationMarker};
use cfdr_storage::{Error as StorageError, Store};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Key of the WAL stream's state.
pub const WAL_STREAM_STATE_KEY: &str = "wal-stream/state.json";
/// Prefix of DR drill folders.
pub const DRILLS_PREFIX: &str = "drills/";
/// Prefix of off-region copy states.
pub const COPY_STATE_PREFIX: &str = "copy-state/";
/// Drill reports read per refresh at most, walking back from the newest.
const DRILL_READS: usize = 20;

/// `wal-stream/state.json`: WAL streamed into the repository up to
/// `safe_lsn` on `timeline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalStreamState {
    /// The timeline streamed.
    pub timeline: u32,
    /// Streamed and safe up to here.
    pub safe_lsn: Lsn,
    /// When it was safe up to there.
    pub safe_at: Timestamp,
    /// When the streamer last wrote the state.
    pub updated_at: Timestamp,
}

#[derive(Deserialize)]
struct WalStreamDoc {
    version: u32,
    timeline: u32,
    safe_lsn: String,
    safe_at: Timestamp,
    updated_at: Timestamp,
}

/// Reads the WAL stream's state: `Ok(None)` when there is none (no WAL
/// stream), `Err` naming the cause when it cannot be read or parsed.
pub async fn wal_stream_state(store: &Store) -> Result<Option<WalStreamState>, String> {
    let bytes = match store.get(WAL_STREAM_STATE_KEY).await {
        Ok(b) => b,
        Err(StorageError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let doc: WalStreamDoc = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{WAL_STREAM_STATE_KEY} is not a WAL stream state: {e}"))?;
    if doc.version != 1 {
        return Err(format!(
            "{WAL_STREAM_STATE_KEY} has version {}, this cfdr reads version 1",
            doc.version
        ));
    }
    let safe_lsn = doc.safe_lsn.parse::<Lsn>().map_err(|_| {
        format!(
            "{WAL_STREAM_STATE_KEY}: safe_lsn {:?} is not an LSN",
            doc.safe_lsn
        )
    })?;
    Ok(Some(WalStreamState {
        timeline: doc.timeline,
        safe_lsn,
        safe_at: doc.safe_at,
        updated_at: doc.updated_at,
    }))
}

/// The outcome of a DR drill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrillSeen {
    /// The drill's id (its folder under `drills/`).
    pub id: String,
    /// `SUCCESSFUL`, `FAILED`, `TIMED_OUT` or `CANCELLED`.
    pub status: String,
    /// When it started.
    pub started: Timestamp,
    /// When it finished.
    pub finished: Timestamp,
    /// The recovery time it measured, in seconds.
    pub rto_actual_seconds: Option<f64>,
    /// The data loss it measured, in seconds.
    pub rpo_actual_seconds: Option<f64>,
}

impl DrillSeen {
    /// Whether the drill succeeded.
    pub fn successful(&self) -> bool {
        self.status == "SUCCESSFUL"
    }
}

#[derive(Deserialize)]
struct DrillDoc {
    version: u32,
    status: String,
    started: Timestamp,
    finished: Timestamp,
    #[serde(default)]
    rto_actual_seconds: Option<f64>,
    #[serde(default)]
    rpo_actual_seconds: Option<f64>,
}

/// The newest DR drill report, kept up to date: a refresh lists `drills/`
/// one level deep and reads reports it has not read yet, from the newest
/// back to the first one that exists (a drill still running has none).
#[derive(Clone, Debug, Default)]
pub struct DrillView {
    reports: BTreeMap<String, Result<DrillSeen, String>>,
    /// The newest drill with a report.
    pub last: Option<DrillSeen>,
    /// A report that could not be read, newest first (shown, not fatal).
    pub problem: Option<String>,
    /// Requests made so far.
    pub requests: u64,
}

impl DrillView {
    /// Brings the view up to date.
    pub async fn refresh(&mut self, store: &Store) -> cfdr_storage::Result<()> {
        self.requests += 1;
        let mut ids: Vec<String> = store
            .list_after(DRILLS_PREFIX, false, None)
            .await?
            .into_iter()
            .filter_map(|m| {
                let id = m.key.strip_prefix(DRILLS_PREFIX)?.strip_suffix('/')?;
                (!id.is_empty()).then(|| id.to_owned())
            })
            .collect();
        ids.sort();
        self.reports.retain(|id, _| ids.binary_search(id).is_ok());
        self.last = None;
        self.problem = None;
        let mut reads = 0;
        for id in ids.iter().rev() {
            if !self.reports.contains_key(id) {
                if reads == DRILL_READS {
                    break;
                }
                reads += 1;
                self.requests += 1;
                let key = format!("{DRILLS_PREFIX}{id}/report.json");
                let read = match store.get(&key).await {
                    Ok(bytes) => parse_drill(id, &bytes).map_err(|e| format!("{key}: {e}")),
                    // Still running: looked at again next refresh.
                    Err(StorageError::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                self.reports.insert(id.clone(), read);
            }
            match &self.reports[id] {
                Ok(d) => {
                    self.last = Some(d.clone());
                    break;
                }
                Err(e) => {
                    self.problem.get_or_insert_with(|| e.clone());
                }
            }
        }
        Ok(())
    }
}

fn parse_drill(id: &str, bytes: &[u8]) -> Result<DrillSeen, String> {
    let doc: DrillDoc =
        serde_json::from_slice(bytes).map_err(|e| format!("not a drill report: {e}"))?;
    if doc.version != 1 {
        return Err(format!(
            "version {}, this cfdr reads version 1",
            doc.version
        ));
    }
    Ok(DrillSeen {
        id: id.to_owned(),
        status: doc.status,
        started: doc.started,
        finished: doc.finished,
        rto_actual_seconds: doc.rto_actual_seconds,
        rpo_actual_seconds: doc.rpo_actual_seconds,
    })
}

/// An off-region copy's lag behind the repository.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CopyLag {
    /// The copy's name.
    pub name: String,
    /// Bytes not yet copied.
    pub lag_bytes: Option<u64>,
    /// Age of the oldest object not yet copied, in seconds.
    pub lag_seconds: Option<f64>,
    /// When the copier last wrote its state.
    pub updated_at: Option<Timestamp>,
    /// Why the state cannot be read, when it cannot.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct CopyDoc {
    version: u32,
    name: String,
    lag_bytes: u64,
    lag_seconds: f64,
    updated_at: Timestamp,
}

/// Off-region copy states, kept between refreshes: a refresh lists
/// `copy-state/` and reads the states that changed since (size or time).
#[derive(Clone, Debug, Default)]
pub struct CopyView {
    seen: BTreeMap<String, (u64, Option<Timestamp>, CopyLag)>,
    /// Requests made so far.
    pub requests: u64,
}

impl CopyView {
    /// Brings the view up to date.
    pub async fn refresh(&mut self, store: &Store) -> cfdr_storage::Result<()> {
        self.requests += 1;
        let listing = store.list_after(COPY_STATE_PREFIX, false, None).await?;
        let mut next = BTreeMap::new();
        for m in listing.into_iter().filter(|m| m.key.ends_with(".json")) {
            if let Some(old) = self.seen.remove(&m.key)
                && old.0 == m.size
                && old.1 == m.modified
                && old.2.error.is_none()
            {
                next.insert(m.key, old);
                continue;
            }
            let file_name = m
                .key
                .strip_prefix(COPY_STATE_PREFIX)
                .and_then(|n| n.strip_suffix(".json"))
                .unwrap_or(&m.key)
                .to_owned();
            self.requests += 1;
            let lag = match store.get(&m.key).await {
                Ok(bytes) => parse_copy(&file_name, &bytes)
                    .unwrap_or_else(|e| unreadable_copy(file_name, format!("{}: {e}", m.key))),
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            next.insert(m.key, (m.size, m.modified, lag));
        }
        self.seen = next;
        Ok(())
    }

    /// The copies, by name.
    pub fn copies(&self) -> Vec<CopyLag> {
        self.seen.values().map(|(_, _, c)| c.clone()).collect()
    }
}

fn unreadable_copy(name: String, error: String) -> CopyLag {
    CopyLag {
        name,
        lag_bytes: None,
        lag_seconds: None,
        updated_at: None,
        error: Some(error),
    }
}

fn parse_copy(file_name: &str, bytes: &[u8]) -> Result<CopyLag, String> {
    let doc: CopyDoc =
        serde_json::from_slice(bytes).map_err(|e| format!("not a copy state: {e}"))?;
    if doc.version != 1 {
        return Err(format!(
            "version {}, this cfdr reads version 1",
            doc.version
        ));
    }
    let name = if doc.name.is_empty() {
        file_name.to_owned()
    } else {
        doc.name
    };
    Ok(CopyLag {
        name,
        lag_bytes: Some(doc.lag_bytes),
        lag_seconds: Some(doc.lag_seconds),
        updated_at: Some(doc.updated_at),
        error: None,
    })
}

/// A restore or failover recorded as in progress, as the status shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OperationSeen {
    /// The marker's id.
    pub id: String,
    /// `restore-logical`, `pitr`, `promote`.
    pub kind: String,
    /// What is restored or promoted.
    pub detail: String,
    /// When it started.
    pub started: Timestamp,
    /// Host and process id.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Why the marker stands for no running operation (then it does not
    /// hold the halt), if so.
    pub stale: Option<String>,
}

/// Reads the operation markers (one one-level listing, one read per
/// marker, none when there is none). Unreadable objects under `operations/` come back as markers
/// of kind `unknown` that are not stale: they hold the halt (fail closed)
/// until someone looks at them.
pub async fn operations(
    store: &Store,
    now: Timestamp,
    stale_after: Duration,
) -> cfdr_storage::Result<Vec<OperationSeen>> {
    let mut out = Vec::new();
    for read in cfdr_storage::operations::markers(store).await? {
        out.push(match read {
            MarkerRead::Marker(m) => seen(&m, now, stale_after),
            MarkerRead::Unreadable { key, reason } => OperationSeen {
                id: key,
                kind: "unknown".into(),
                detail: reason,
                started: now,
                host: String::new(),
                pid: 0,
                stale: None,
            },
        });
    }
    Ok(out)
}

fn seen(m: &OperationMarker, now: Timestamp, stale_after: Duration) -> OperationSeen {
    OperationSeen {
        id: m.id.clone(),
        kind: m.kind.clone(),
        detail: m.detail.clone(),
        started: m.started,
        host: m.host.clone(),
        pid: m.pid,
        stale: m.stale(now, stale_after),
    }
}
