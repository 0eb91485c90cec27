//! What the guard reads from PostgreSQL each cycle, over one kept
//! connection with a time limit on every round trip.

use std::time::Duration;

use cfdr_pg::PgTarget;
use cfdr_retention::Lsn;
use serde::Serialize;
use sqlx::{PgConnection, Row};

use crate::exposure::{Sample, Snapshot};

/// `pg_stat_archiver`, as shown by the status page.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ArchiverStats {
    /// Segments archived since the statistics were reset.
    pub archived_count: i64,
    /// Failed attempts since the statistics were reset.
    pub failed_count: i64,
    /// The last segment archived.
    pub last_archived_wal: Option<String>,
    /// When it was archived (Unix seconds).
    pub last_archived_time: Option<f64>,
    /// The last segment that failed.
    pub last_failed_wal: Option<String>,
    /// When it failed (Unix seconds).
    pub last_failed_time: Option<f64>,
}

impl ArchiverStats {
    /// Whether the newest attempt failed.
    pub fn failing(&self) -> bool {
        match (self.last_failed_time, self.last_archived_time) {
            (Some(f), Some(a)) => f > a,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// One standby, as the primary sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Replica {
    /// `application_name`.
    pub name: String,
    /// streaming, catchup, ...
    pub state: String,
    /// Bytes not yet replayed.
    pub lag_bytes: i64,
    /// Replay lag in seconds.
    pub lag_seconds: f64,
    /// async, sync, ...
    pub sync_state: String,
    /// The position the standby has flushed to its disk.
    pub flush_lsn: Option<String>,
    /// Whether its flushed position counts as safe (`[guard]
    /// safe-replicas`, while streaming).
    pub counts_as_safe: bool,
}

/// One cycle's reading.
#[derive(Clone, Debug)]
pub(crate) struct Reading {
    /// The server is in recovery.
    pub in_recovery: bool,
    /// The sample (`None` in recovery).
    pub sample: Option<Sample>,
    /// Archiver statistics.
    pub archiver: ArchiverStats,
    /// Standbys.
    pub replicas: Vec<Replica>,
}

/// Settings read once per connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServerFacts {
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
    /// `wal_block_size` in bytes.
    pub page_size: u64,
}

/// A kept connection to the guarded server.
#[derive(Debug)]
pub(crate) struct Probe {
    target: PgTarget,
    conn: Option<PgConnection>,
    timeout: Duration,
    /// Facts of the current connection.
    pub facts: Option<ServerFacts>,
}

/// Why a reading failed, in words.
pub(crate) type ProbeError = String;

fn parse_next_xid(text: &str) -> Option<u64> {
    // `epoch:xid`
    let (epoch, xid) = text.split_once(':')?;
    Some((epoch.parse::<u64>().ok()? << 32) | xid.parse::<u64>().ok()?)
}

impl Probe {
    /// A probe of `target`; nothing is connected yet.
    pub(crate) fn new(target: PgTarget, timeout: Duration) -> Self {
        Self {
            target,
            conn: None,
            timeout,
            facts: None,
        }
    }

    async fn timed<T, F>(&self, what: &str, f: F) -> Result<T, ProbeError>
    where
        F: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{what} on {}: {e}", self.target)),
            Err(_) => Err(format!(
                "{what} on {}: no answer within {:?}",
                self.target, self.timeout
            )),
        }
    }

    /// Connects when needed; returns the checkpoint anchor of a new
    /// connection (see [`crate::exposure`]).
    async fn ensure(&mut self) -> Result<Option<Sample>, ProbeError> {
        if self.conn.is_some() {
            return Ok(None);
        }
        let mut conn = match tokio::time::timeout(self.timeout, self.target.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err(format!(
                    "connecting to {}: no answer within {:?}",
                    self.target, self.timeout
                ));
            }
        };
        let row = self
            .timed(
                "reading WAL settings",
                sqlx::query(
                    "SELECT (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
                            (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_block_size'),
                            c.redo_lsn::text, c.timeline_id, c.next_xid, c.oldest_active_xid::text
                     FROM pg_control_checkpoint() c",
                )
                .fetch_one(&mut conn),
            )
            .await?;
        let segment_size: i64 = row.get(0);
        let page_size: i64 = row.get(1);
        self.facts = Some(ServerFacts {
            segment_size: segment_size as u64,
            page_size: page_size as u64,
        });
        let anchor = (|| {
            let redo: Lsn = row.get::<Option<String>, _>(2)?.parse().ok()?;
            let timeline = u32::try_from(row.get::<Option<i32>, _>(3)?).ok()?;
            let next = parse_next_xid(&row.get::<Option<String>, _>(4)?)?;
            let oldest: u64 = row.get::<Option<String>, _>(5)?.parse().ok()?;
            // Only a checkpoint taken with no transaction running proves
            // anything: then nothing committed after its redo position
            // until some transaction completes.
            // A shutdown checkpoint records 0: nothing runs then.
            (oldest == next & 0xFFFF_FFFF || oldest == 0).then(|| Sample {
                at: None,
                timeline,
                lsn: redo,
                snapshot: Snapshot::quiet(next),
            })
        })();
        self.conn = Some(conn);
        Ok(anchor)
    }

    /// Reads one cycle. `at` is the sample time. Returns the reading and,
    /// on a new connection, the checkpoint anchor.
    pub(crate) async fn read(
        &mut self,
        at: Duration,
    ) -> Result<(Reading, Option<Sample>), ProbeError> {
        let result = self.read_inner(at).await;
        if result.is_err() {
            // A broken or stalled connection is replaced next cycle.
            self.conn = None;
        }
        result
    }

    async fn read_inner(&mut self, at: Duration) -> Result<(Reading, Option<Sample>), ProbeError> {
        let anchor = self.ensure().await?;
        let timeout = self.timeout;
        let target = self.target.to_string();
        let conn = self.conn.as_mut().ok_or("not connected")?;
        // Snapshot first, then the insert position: see crate::exposure.
        let q = sqlx::query(
            "SELECT r, pg_current_snapshot()::text,
                    CASE WHEN r THEN NULL ELSE pg_current_wal_insert_lsn()::text END,
                    CASE WHEN r THEN NULL ELSE pg_walfile_name(pg_current_wal_insert_lsn()) END,
                    a.archived_count, a.failed_count, a.last_archived_wal,
                    extract(epoch FROM a.last_archived_time)::float8,
                    a.last_failed_wal, extract(epoch FROM a.last_failed_time)::float8
             FROM pg_is_in_recovery() r, pg_stat_archiver a",
        );
        let row = match tokio::time::timeout(timeout, q.fetch_one(&mut *conn)).await {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => return Err(format!("reading the WAL position on {target}: {e}")),
            Err(_) => {
                return Err(format!(
                    "reading the WAL position on {target}: no answer within {timeout:?}"
                ));
            }
        };
        let in_recovery: bool = row.get(0);
        let snapshot = Snapshot::parse(&row.get::<String, _>(1))
            .ok_or_else(|| format!("unexpected snapshot from {target}"))?;
        let sample = if in_recovery {
            None
        } else {
            let lsn: Lsn = row
                .get::<Option<String>, _>(2)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("unexpected WAL position from {target}"))?;
            let file: String = row.get::<Option<String>, _>(3).unwrap_or_default();
            let timeline = file
                .get(..8)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("WAL file name {file:?} from {target} names no timeline"))?;
            Some(Sample {
                at: Some(at),
                timeline,
                lsn,
                snapshot,
            })
        };
        let archiver = ArchiverStats {
            archived_count: row.get(4),
            failed_count: row.get(5),
            last_archived_wal: row.get(6),
            last_archived_time: row.get(7),
            last_failed_wal: row.get(8),
            last_failed_time: row.get(9),
        };
        let q = sqlx::query(
            "SELECT application_name, state,
                    COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint,
                    COALESCE(extract(epoch FROM replay_lag), 0)::float8, sync_state, flush_lsn::text
             FROM pg_stat_replication WHERE NOT pg_is_in_recovery() ORDER BY application_name",
        );
        let rows = match tokio::time::timeout(timeout, q.fetch_all(&mut *conn)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => return Err(format!("reading pg_stat_replication on {target}: {e}")),
            Err(_) => {
                return Err(format!(
                    "reading pg_stat_replication on {target}: no answer"
                ));
            }
        };
        let replicas = rows
            .iter()
            .map(|r| Replica {
                name: r.get(0),
                state: r.get(1),
                lag_bytes: r.get(2),
                lag_seconds: r.get(3),
                sync_state: r.get(4),
                flush_lsn: r.get(5),
                counts_as_safe: false,
            })
            .collect();
        Ok((
            Reading {
                in_recovery,
                sample,
                archiver,
                replicas,
            },
            anchor,
        ))
    }

    /// Reads `len` bytes of WAL file `file` from `offset` (needs the
    /// `pg_read_server_files` role or superuser). `None` when the server
    /// refuses or does not answer.
    pub(crate) async fn read_wal(&mut self, file: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
        let timeout = self.timeout;
        let conn = self.conn.as_mut()?;
        let q = sqlx::query_scalar::<_, Option<Vec<u8>>>(
            "SELECT pg_read_binary_file($1, $2, $3, true)",
        )
        .bind(format!("pg_wal/{file}"))
        .bind(i64::try_from(offset).ok()?)
        .bind(i64::try_from(len).ok()?);
        match tokio::time::timeout(timeout, q.fetch_one(&mut *conn)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot read WAL through the server");
                None
            }
            Err(_) => None,
        }
    }
}
