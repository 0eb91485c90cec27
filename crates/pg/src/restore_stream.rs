//! Restores a stored custom-format dump straight from the repository: no
//! staging file, bounded memory.
//!
//! With one job, one `pg_restore` reads the whole stream. With more, the
//! object is read in passes, because `pg_restore --jobs` needs a file it
//! can seek:
//! 1. `pg_restore --section=pre-data` creates the schema; it reads only the
//!    table of contents at the front, so the download stops there. The
//!    post-data script is read the same way, into memory;
//! 2. the data pass reads the archive in-process ([`crate::archive_data`]):
//!    the rows of every table are dealt out in 1 MiB slices to `jobs`
//!    sessions copying into the same table at once (COPY parsing in the
//!    server is the bulk of a restore and runs on one core per session).
//!    As soon as a table's rows are committed, its indexes and primary,
//!    unique and exclusion constraints are built on one more session
//!    ([`crate::post_data`]) while the next tables load. Sequence values
//!    and large objects are left to `pg_restore --use-list`. This pass
//!    reads the whole object and so verifies its checksum. An archive the
//!    reader does not take (compressed by pg_dump, an unknown format
//!    version) goes through `pg_restore --section=data --file=-` instead,
//!    its script split the same way, with everything but the rows sent to
//!    `psql` in order;
//! 3. `psql` runs the rest of the post-data script (foreign keys, triggers,
//!    index attachments, materialized views, grants) in its order.
//!
//! Rows of a table larger than one slice are loaded in an interleaved
//! physical order; the rows themselves are identical.
//!
//! A failure anywhere ends the pass at once, so the caller can drop the
//! half-restored database: a failed part closes what it reads from and
//! writes to, and each neighbour stops on the closed end (no part waits on
//! one that has given up). Damage usually shows first as a symptom (COPY
//! rejects a byte sequence, a key is duplicated, pg_restore cannot read
//! its input); the object is then still read to its end, discarding, and
//! a failed size or checksum check is the error, naming the object.

use std::collections::HashSet;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use cfdr_secrets::Identities;
use cfdr_storage::{Store, StoredObject, decode_to};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;
use tokio_util::sync::CancellationToken;

use crate::archive_data::{self, Event, ReadError, SLICE};
use crate::error::{Error, Result};
use crate::post_data::{
    Early, Plan, copy_from_stdin, copy_target, is_session_setting, preamble_settings,
};
use crate::target::PgTarget;
use crate::tools::PgBin;

/// Slices queued per copy session (bounds memory to jobs x (QUEUE + 1) MiB).
const QUEUE: usize = 2;

/// What and where to restore.
pub(crate) struct Load<'a> {
    pub store: &'a Store,
    pub object: &'a StoredObject,
    pub identities: Option<Arc<Identities>>,
    pub bin: &'a PgBin,
    pub target: &'a PgTarget,
    /// `name=value` server settings for every restore session.
    pub settings: &'a [String],
    pub jobs: u32,
}

/// What the in-process data pass leaves to do.
struct InProcess {
    /// Entries for pg_restore (sequence values, large objects).
    others: Vec<i64>,
    /// The post-data script without what was built early.
    rest: String,
    /// Indexes and constraints built during the data pass.
    built_early: usize,
}

impl Load<'_> {
    /// Restores the dump; `done` is told each pass with its start time.
    pub(crate) async fn run(&self, mut done: impl FnMut(String, Instant)) -> Result<()> {
        if self.jobs <= 1 {
            let t = Instant::now();
            self.pg_restore_pass(&[], true).await?;
            done("pg_restore (one session)".into(), t);
            return Ok(());
        }
        let t = Instant::now();
        self.pg_restore_pass(&["--section=pre-data"], false).await?;
        done("schema (pre-data)".into(), t);
        let t = Instant::now();
        let post_data = self.script(&["--section=post-data"]).await?;
        let header = preamble_settings(&post_data);
        let rest = match self.data_in_process(&header, &post_data).await? {
            Some(loaded) => {
                // Sequence values, large objects: pg_restore restores the rest.
                self.restore_listed(&loaded.others).await?;
                done(
                    format!(
                        "data ({} copy sessions; {} indexes and constraints built alongside)",
                        self.jobs, loaded.built_early
                    ),
                    t,
                );
                loaded.rest
            }
            None => {
                self.data_through_script().await?;
                done(
                    format!("data ({} copy sessions, through pg_restore)", self.jobs),
                    t,
                );
                post_data
            }
        };
        let t = Instant::now();
        self.psql_script(&rest).await?;
        done("indexes and constraints (post-data)".into(), t);
        Ok(())
    }

    fn tool(&self, program: &str) -> Result<Command> {
        let mut cmd = self.bin.command(program, false)?;
        cmd.envs(self.target.tool_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !self.settings.is_empty() {
            let options: Vec<String> = self
                .settings
                .iter()
                .map(|s| format!("-c {}", s.replace(' ', "\\ ")))
                .collect();
            cmd.env("PGOPTIONS", options.join(" "));
        }
        Ok(cmd)
    }

    fn pg_restore(&self, args: &[&str]) -> Result<Command> {
        let mut cmd = self.tool("pg_restore")?;
        cmd.args(["--exit-on-error", "--no-password"]).args(args);
        Ok(cmd)
    }

    /// One `pg_restore -d` over the stream. `whole`: the pass reads the
    /// whole object, so its checksum is verified even when pg_restore stops
    /// reading before the end.
    async fn pg_restore_pass(&self, args: &[&str], whole: bool) -> Result<()> {
        let mut cmd = self.pg_restore(args)?;
        cmd.arg("--dbname").arg(&self.target.database);
        self.run_fed(cmd, whole).await?;
        Ok(())
    }

    /// Runs a pg_restore reading the object on its stdin ([`Self::feed`]
    /// with `whole`); its output once it succeeded. When it fails, a damaged
    /// object is the error: what pg_restore says of damage (an invalid byte
    /// sequence, a bad row) is only its symptom.
    async fn run_fed(&self, mut cmd: Command, whole: bool) -> Result<std::process::Output> {
        let mut child = cmd.spawn().map_err(Error::io("cannot start pg_restore"))?;
        let stdin = child.stdin.take();
        let (fed, out) = tokio::join!(self.feed(stdin, whole), child.wait_with_output());
        let checked = fed?;
        let out = out.map_err(Error::io("waiting for pg_restore"))?;
        if let Err(e) = failed_tool("pg_restore", &out) {
            if !checked {
                self.verify().await?;
            }
            return Err(e);
        }
        Ok(out)
    }

    /// Decodes the object into `sink`; Ok(true) when the whole object was
    /// read, so its size and checksum were verified. When the reader closes
    /// the pipe before the end (normal for the passes that read only the
    /// table of contents, or a failed reader) the download stops there,
    /// unless `whole`: then the rest is read and discarded, so damage is
    /// still found and reported as such.
    async fn feed<W: AsyncWrite + Unpin>(
        &self,
        sink: Option<W>,
        whole: bool,
    ) -> std::result::Result<bool, cfdr_storage::Error> {
        let mut sink = UntilClosed {
            inner: sink,
            drain: whole,
        };
        let r = decode_to(self.store, self.object, self.identities.clone(), &mut sink).await;
        drop(sink);
        match r {
            Ok(_) => Ok(true),
            Err(cfdr_storage::Error::Sink { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads and checks the whole object without restoring it.
    async fn verify(&self) -> Result<()> {
        self.feed(None::<tokio::io::Sink>, true).await?;
        Ok(())
    }

    /// pg_restore's SQL script for `args`, read into memory (schema
    /// sections only: pg_restore reads just the table of contents).
    async fn script(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.pg_restore(args)?;
        cmd.arg("--file=-").stdout(Stdio::piped());
        let out = self.run_fed(cmd, false).await?;
        String::from_utf8(out.stdout)
            .map_err(|_| Error::Config("pg_restore's script is not UTF-8".into()))
    }

    /// Streams the table data straight from the archive to the copy
    /// sessions, building each table's indexes and keys on one more session
    /// once its rows are in. Ok(None) when the archive is not one this
    /// reader takes (nothing was restored): the caller uses pg_restore's
    /// script.
    ///
    /// Four parts run at once: the download and decoder (feed), the archive
    /// reader (a blocking thread), the copy sessions (load) and the early
    /// builds. The first of the last three to fail ends the other two (the
    /// reader stops when the load drops its channel); the download goes on
    /// to the end, discarding, so a damaged object is reported as such
    /// rather than by its symptom in a session.
    async fn data_in_process(&self, header: &str, post_data: &str) -> Result<Option<InProcess>> {
        let (writer, reader) = tokio::io::duplex(SLICE);
        let (tx, rx) = mpsc::channel(QUEUE * self.jobs.max(1) as usize);
        let parser = tokio::task::spawn_blocking(move || {
            let src = std::io::BufReader::with_capacity(1 << 18, SyncIoBridge::new(reader));
            archive_data::read(src, tx)
        });
        // Set when pg_restore's script takes over: no need to read on.
        let not_ours = CancellationToken::new();
        let feed = async {
            tokio::select! {
                fed = self.feed(Some(writer), true) => fed.map(|_| ()),
                () = not_ours.cancelled() => Ok(()),
            }
        };
        let parse = async {
            let read = parser
                .await
                .map_err(|e| Error::Config(format!("the dump reader failed: {e}")))?;
            match read {
                // Stopped: the load failed, and says why.
                Ok(()) | Err(ReadError::Stopped) => Ok(None),
                Err(ReadError::Unsupported(reason)) => {
                    not_ours.cancel();
                    Ok(Some(reason))
                }
                Err(ReadError::Broken(reason)) => Err(Error::Archive(reason)),
                Err(ReadError::Io(e)) => Err(Error::Archive(e.to_string())),
            }
        };
        let (early_tx, early_rx) = mpsc::unbounded_channel();
        let work = async {
            // try_join drops the others at the first error: the load owns
            // the receiver, so the reader is told to stop too.
            tokio::try_join!(
                parse,
                self.load(rx, early_tx, header, post_data),
                self.build_early(header, early_rx)
            )
        };
        let (fed, work) = tokio::join!(feed, work);
        // The cause, when several parts fail: the stored object (checksum,
        // truncation, key), then the first other part that failed.
        fed?;
        let (not_ours, loaded, built_early) = work?;
        if let Some(reason) = not_ours {
            tracing::info!(%reason, "reading the table data through pg_restore's script");
            return Ok(None);
        }
        Ok(loaded.map(|(others, rest)| InProcess {
            others,
            rest,
            built_early,
        }))
    }

    /// Deals the rows the archive reader sends out to the copy sessions and
    /// sends each loaded table's early post-data entries to `early`; (the
    /// entries left to pg_restore, the rest of the post-data script), or
    /// None when the reader sent nothing (not an archive it takes).
    async fn load(
        &self,
        mut events: mpsc::Receiver<Event>,
        early: mpsc::UnboundedSender<Vec<Early>>,
        header: &str,
        post_data: &str,
    ) -> Result<Option<(Vec<i64>, String)>> {
        let Some(Event::Toc { tables, others }) = events.recv().await else {
            return Ok(None);
        };
        let targets: HashSet<&str> = tables.iter().filter_map(|s| copy_target(s)).collect();
        let mut plan = Plan::new(post_data, |t| targets.contains(t));
        let mut pool: Option<CopyPool> = None;
        while let Some(event) = events.recv().await {
            match (event, pool.as_mut()) {
                (Event::Rows { statement, rows }, Some(pool)) => pool.deal(statement, rows).await?,
                (Event::Rows { statement, rows }, None) => {
                    let mut opened =
                        CopyPool::open(self.target, self.settings, header, self.jobs).await?;
                    opened.deal(statement, rows).await?;
                    pool = Some(opened);
                }
                (Event::End { statement }, pool) => {
                    if let Some(pool) = pool {
                        pool.end_table().await?;
                    }
                    let entries = copy_target(&statement).and_then(|t| plan.early.remove(t));
                    if let Some(entries) = entries {
                        // A failed early build ends this load with its error.
                        let _ = early.send(entries);
                    }
                }
                (Event::Toc { .. }, _) => {}
            }
        }
        drop(early);
        if let Some(pool) = pool {
            pool.close().await?;
        }
        // Every loaded table ended, or the reader reports the archive as
        // damaged (which ends the restore): nothing is left early.
        Ok(Some((others, plan.rest)))
    }

    /// Runs the early post-data entries of each loaded table, in order, on
    /// its own session; the number run.
    async fn build_early(
        &self,
        header: &str,
        mut tables: mpsc::UnboundedReceiver<Vec<Early>>,
    ) -> Result<usize> {
        let mut conn: Option<PgConnection> = None;
        let mut built = 0;
        while let Some(entries) = tables.recv().await {
            let conn = match conn.as_mut() {
                Some(conn) => conn,
                None => {
                    let mut opened = self.target.connect().await?;
                    prepare_session(&mut opened, self.target, self.settings, header).await?;
                    conn.insert(opened)
                }
            };
            for entry in entries {
                // In a transaction of its own: SQL that cannot run in one
                // (DROP DATABASE, ALTER SYSTEM) fails even past the check
                // of the dump's entries.
                let failed = |e: sqlx::Error| Error::Query {
                    what: format!("creating {}", entry.what),
                    database: self.target.database.clone(),
                    reason: e.to_string(),
                };
                let mut tx = conn.begin().await.map_err(failed)?;
                tx.execute(sqlx::raw_sql(&entry.sql))
                    .await
                    .map_err(failed)?;
                tx.commit().await.map_err(failed)?;
                built += 1;
            }
        }
        if let Some(conn) = conn {
            let _ = conn.close().await;
        }
        Ok(built)
    }

    /// Runs a pg_restore script with psql, stopping at the first error.
    async fn psql_script(&self, script: &str) -> Result<()> {
        let mut psql = self.psql()?;
        let mut child = psql.spawn().map_err(Error::io("cannot start psql"))?;
        let stdin = child.stdin.take();
        let write = async {
            if let Some(mut stdin) = stdin {
                // A dead psql shows as a closed pipe; its own error follows.
                let _ = stdin.write_all(script.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
        };
        let (_, out) = tokio::join!(write, child.wait_with_output());
        failed_tool("psql", &out.map_err(Error::io("waiting for psql"))?)
    }

    fn psql(&self) -> Result<Command> {
        let mut psql = self.tool("psql")?;
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-d"])
            .arg(&self.target.database);
        Ok(psql)
    }

    /// `pg_restore --section=data` of the entries `ids` (sequence values,
    /// large objects).
    async fn restore_listed(&self, ids: &[i64]) -> Result<()> {
        use std::io::Write;
        let mut list =
            tempfile::NamedTempFile::new().map_err(Error::io("creating a restore list"))?;
        for id in ids {
            writeln!(list, "{id}").map_err(Error::io("writing a restore list"))?;
        }
        list.flush().map_err(Error::io("writing a restore list"))?;
        let path = list.path().to_string_lossy().into_owned();
        self.pg_restore_pass(&["--section=data", "--use-list", &path], false)
            .await
    }

    /// The data pass through `pg_restore --section=data --file=-`.
    async fn data_through_script(&self) -> Result<()> {
        let mut restore = self.pg_restore(&["--section=data", "--file=-"])?;
        restore.stdout(Stdio::piped());
        let mut restore = restore
            .spawn()
            .map_err(Error::io("cannot start pg_restore"))?;
        let mut psql = self
            .psql()?
            .spawn()
            .map_err(Error::io("cannot start psql"))?;

        let script = restore.stdout.take();
        let statements = psql.stdin.take();
        let restore_stdin = restore.stdin.take();
        let split = async {
            match (script, statements) {
                (Some(script), Some(statements)) => {
                    split_script(script, statements, self.target, self.settings, self.jobs).await
                }
                _ => Err(Error::Config("pg_restore/psql pipes".into())),
            }
        };
        let (fed, split, restored, psql) = tokio::join!(
            self.feed(restore_stdin, true),
            split,
            restore.wait_with_output(),
            psql.wait_with_output()
        );
        // The cause, when several parts fail: the stored object (checksum,
        // truncation, key), then what pg_restore or psql said (a session
        // writing to a dead psql only sees a closed pipe), then the copy
        // sessions (when one fails, pg_restore dies of the closed pipe).
        fed?;
        let restored = restored.map_err(Error::io("waiting for pg_restore"))?;
        let psql = psql.map_err(Error::io("waiting for psql"))?;
        use std::os::unix::process::ExitStatusExt;
        let lost_its_reader = restored.status.signal() == Some(13); // SIGPIPE
        if !lost_its_reader {
            failed_tool("pg_restore", &restored)?;
        }
        failed_tool("psql", &psql)?;
        split?;
        failed_tool("pg_restore", &restored)
    }
}

/// A sink that passes writes to `inner` until its reader goes away (a
/// closed pipe: the tool exited, the archive reader stopped). Then it
/// fails the write, or with `drain` takes and discards the rest, so the
/// object is still read to its end and its checksum verified.
struct UntilClosed<W> {
    inner: Option<W>,
    drain: bool,
}

impl<W: AsyncWrite + Unpin> UntilClosed<W> {
    /// `op` on the inner writer while there is one; `done` once it is gone.
    fn forward<T>(
        &mut self,
        op: impl FnOnce(Pin<&mut W>) -> Poll<std::io::Result<T>>,
        done: T,
    ) -> Poll<std::io::Result<T>> {
        if let Some(inner) = self.inner.as_mut() {
            match op(Pin::new(inner)) {
                Poll::Ready(Err(e)) if !self.drain => return Poll::Ready(Err(e)),
                // The reader is gone: its own result says why.
                Poll::Ready(Err(_)) => self.inner = None,
                other => return other,
            }
        }
        if self.drain {
            Poll::Ready(Ok(done))
        } else {
            Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for UntilClosed<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().forward(|w| w.poll_write(cx, buf), buf.len())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().forward(|w| w.poll_flush(cx), ())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().forward(|w| w.poll_shutdown(cx), ())
    }
}

fn failed_tool(tool: &str, out: &std::process::Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(Error::ToolFailed {
        tool: tool.into(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// `COPY t (cols) FROM stdin;` opens a data block in pg_restore's script.
fn copy_statement(line: &[u8]) -> Option<String> {
    copy_from_stdin(std::str::from_utf8(line).ok()?).map(str::to_owned)
}

/// pg_restore's script read in large blocks: statements line by line, COPY
/// rows in slices of whole lines, found with one scan per block rather than
/// per row.
struct Script<R> {
    src: R,
    buf: BytesMut,
    eof: bool,
}

/// What [`Script::rows`] found.
enum Rows {
    /// Whole rows; more follow.
    More(Bytes),
    /// The last rows of the block (possibly none); the `\.` is consumed.
    Last(Bytes),
}

impl<R: AsyncRead + Unpin> Script<R> {
    fn new(src: R) -> Self {
        Self {
            src,
            buf: BytesMut::with_capacity(2 * SLICE),
            eof: false,
        }
    }

    /// Reads more; false at the end of the script.
    async fn fill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.buf.reserve(SLICE);
        let n = self
            .src
            .read_buf(&mut self.buf)
            .await
            .map_err(Error::io("reading pg_restore's output"))?;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// The next line with its newline (the last may lack one); None at the end.
    async fn line(&mut self) -> Result<Option<Bytes>> {
        let mut searched = 0;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..]) {
                return Ok(Some(self.buf.split_to(searched + i + 1).freeze()));
            }
            searched = self.buf.len();
            if !self.fill().await? {
                return Ok((!self.buf.is_empty()).then(|| self.buf.split().freeze()));
            }
        }
    }

    /// Rows of the COPY block just opened, up to its `\.` line; called at the
    /// start of a line.
    async fn rows(&mut self, statement: &str) -> Result<Rows> {
        // Bytes already searched for the end marker (each byte once).
        let mut searched: usize = 0;
        loop {
            if self.buf.starts_with(b"\\.\n") {
                let _ = self.buf.split_to(3);
                return Ok(Rows::Last(Bytes::new()));
            }
            let from = searched.saturating_sub(3);
            if let Some(i) = memchr::memmem::find(&self.buf[from..], b"\n\\.\n") {
                let rows = self.buf.split_to(from + i + 1).freeze();
                let _ = self.buf.split_to(3);
                return Ok(Rows::Last(rows));
            }
            searched = self.buf.len();
            // Whole lines only; a `\.` cut by the block's end is found on
            // the next round, at the start of the buffer.
            if self.buf.len() >= SLICE
                && let Some(i) = memchr::memrchr(b'\n', &self.buf)
            {
                return Ok(Rows::More(self.buf.split_to(i + 1).freeze()));
            }
            if !self.fill().await? {
                // pg_restore stopped mid-table: its own error says why.
                return Err(Error::Config(format!(
                    "pg_restore's output ended inside the data of `{statement}`"
                )));
            }
        }
    }
}

/// Reads pg_restore's data-only script: COPY rows go to the copy sessions,
/// everything else to `statements` (psql) in order.
async fn split_script<R, W>(
    script: R,
    mut statements: W,
    target: &PgTarget,
    settings: &[String],
    jobs: u32,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut script = Script::new(script);
    let mut header = String::new();
    let mut pool: Option<CopyPool> = None;
    while let Some(line) = script.line().await? {
        if let Some(statement) = copy_statement(&line) {
            if pool.is_none() {
                pool = Some(CopyPool::open(target, settings, &header, jobs).await?);
            }
            if let Some(pool) = pool.as_mut() {
                pool.copy_block(&mut script, statement.into()).await?;
            }
            continue;
        }
        if pool.is_none() && is_session_setting(&line) {
            header.push_str(&String::from_utf8_lossy(&line));
        }
        statements
            .write_all(&line)
            .await
            .map_err(Error::io("writing to psql"))?;
    }
    let flushed = statements.shutdown().await;
    drop(statements);
    if let Some(pool) = pool {
        pool.close().await?;
    }
    flushed.map_err(Error::io("writing to psql"))
}

enum Slice {
    Rows {
        statement: Arc<str>,
        rows: Bytes,
    },
    /// End of the table: finish the COPY (if this session started one).
    End(oneshot::Sender<Result<()>>),
}

/// `jobs` sessions, each copying the slices it is dealt.
struct CopyPool {
    senders: Vec<mpsc::Sender<Slice>>,
    workers: Vec<JoinHandle<Result<()>>>,
    next: usize,
}

impl CopyPool {
    async fn open(target: &PgTarget, settings: &[String], header: &str, jobs: u32) -> Result<Self> {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..jobs.max(1) {
            let mut conn = target.connect().await?;
            prepare_session(&mut conn, target, settings, header).await?;
            let (tx, rx) = mpsc::channel(QUEUE);
            senders.push(tx);
            workers.push(tokio::spawn(copy_worker(conn, rx, target.database.clone())));
        }
        Ok(Self {
            senders,
            workers,
            next: 0,
        })
    }

    /// Deals the rows up to `\.` out to the sessions and waits until every
    /// session has committed its part.
    async fn copy_block<R: AsyncRead + Unpin>(
        &mut self,
        script: &mut Script<R>,
        statement: Arc<str>,
    ) -> Result<()> {
        loop {
            match script.rows(&statement).await? {
                Rows::More(rows) => self.deal(statement.clone(), rows).await?,
                Rows::Last(rows) => {
                    if !rows.is_empty() {
                        self.deal(statement.clone(), rows).await?;
                    }
                    break;
                }
            }
        }
        self.end_table().await
    }

    /// Waits until every session has committed its part of the table.
    async fn end_table(&mut self) -> Result<()> {
        let mut pending = Vec::new();
        for i in 0..self.senders.len() {
            let (tx, rx) = oneshot::channel();
            self.send(i, Slice::End(tx)).await?;
            pending.push(rx);
        }
        for (i, rx) in pending.into_iter().enumerate() {
            match rx.await {
                Ok(r) => r?,
                Err(_) => return Err(self.worker_error(i).await),
            }
        }
        Ok(())
    }

    async fn deal(&mut self, statement: Arc<str>, rows: Bytes) -> Result<()> {
        let i = self.next % self.senders.len();
        self.next += 1;
        self.send(i, Slice::Rows { statement, rows }).await
    }

    async fn send(&mut self, i: usize, slice: Slice) -> Result<()> {
        if self.senders[i].send(slice).await.is_err() {
            return Err(self.worker_error(i).await);
        }
        Ok(())
    }

    /// The error a session ended with (it stopped taking slices).
    async fn worker_error(&mut self, i: usize) -> Error {
        match (&mut self.workers[i]).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => Error::Config("a copy session ended early".into()),
            Err(e) => Error::Config(format!("a copy session failed: {e}")),
        }
    }

    async fn close(mut self) -> Result<()> {
        self.senders.clear();
        for w in std::mem::take(&mut self.workers) {
            w.await
                .map_err(|e| Error::Config(format!("a copy session failed: {e}")))??;
        }
        Ok(())
    }
}

impl Drop for CopyPool {
    /// A pool dropped unclosed (another part of the restore failed) ends
    /// its sessions at once: their uncommitted COPY is rolled back.
    fn drop(&mut self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

async fn prepare_session(
    conn: &mut PgConnection,
    target: &PgTarget,
    settings: &[String],
    header: &str,
) -> Result<()> {
    let failed = |e: sqlx::Error| Error::Query {
        what: "preparing a copy session".into(),
        database: target.database.clone(),
        reason: e.to_string(),
    };
    for s in settings {
        let (name, value) = s.split_once('=').unwrap_or((s, ""));
        sqlx::query("SELECT set_config($1, $2, false)")
            .bind(name.trim())
            .bind(value.trim())
            .execute(&mut *conn)
            .await
            .map_err(failed)?;
    }
    if !header.is_empty() {
        conn.execute(sqlx::raw_sql(header)).await.map_err(failed)?;
    }
    Ok(())
}

/// One copy session: per table, a `COPY ... FROM STDIN` fed the slices it
/// receives, committed at the table's end.
async fn copy_worker(
    mut conn: PgConnection,
    mut slices: mpsc::Receiver<Slice>,
    database: String,
) -> Result<()> {
    let failed = |statement: &str, e: sqlx::Error| Error::Query {
        what: format!("`{statement}`"),
        database: database.clone(),
        reason: e.to_string(),
    };
    while let Some(slice) = slices.recv().await {
        let (statement, rows) = match slice {
            Slice::End(done) => {
                let _ = done.send(Ok(()));
                continue;
            }
            Slice::Rows { statement, rows } => (statement, rows),
        };
        let mut copy = conn
            .copy_in_raw(&statement)
            .await
            .map_err(|e| failed(&statement, e))?;
        copy.send(rows).await.map_err(|e| failed(&statement, e))?;
        loop {
            match slices.recv().await {
                Some(Slice::Rows { rows, .. }) => {
                    copy.send(rows).await.map_err(|e| failed(&statement, e))?;
                }
                Some(Slice::End(done)) => {
                    let r = copy
                        .finish()
                        .await
                        .map(|_| ())
                        .map_err(|e| failed(&statement, e));
                    let _ = done.send(r);
                    break;
                }
                None => {
                    let _ = copy.abort("restore cancelled").await;
                    return Ok(());
                }
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Reads `script` cut into pieces of `cut` bytes; returns (statement
    /// lines, rows of each COPY block, slices handed out).
    async fn split(script: &[u8], cut: usize) -> (Vec<String>, Vec<Vec<u8>>, usize) {
        let pieces: Vec<std::io::Result<Bytes>> = script
            .chunks(cut)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut s = Script::new(tokio_util::io::StreamReader::new(futures::stream::iter(
            pieces,
        )));
        let (mut lines, mut blocks, mut slices) = (Vec::new(), Vec::new(), 0);
        while let Some(line) = s.line().await.unwrap() {
            if let Some(stmt) = copy_statement(&line) {
                let mut rows = Vec::new();
                loop {
                    slices += 1;
                    match s.rows(&stmt).await.unwrap() {
                        Rows::More(r) => {
                            assert_eq!(r.last(), Some(&b'\n'), "slices end on whole rows");
                            rows.extend_from_slice(&r);
                        }
                        Rows::Last(r) => {
                            rows.extend_from_slice(&r);
                            break;
                        }
                    }
                }
                blocks.push(rows);
            } else {
                lines.push(String::from_utf8(line.to_vec()).unwrap());
            }
        }
        (lines, blocks, slices)
    }

    #[tokio::test]
    async fn copy_rows_survive_any_cut_of_the_stream() {
        let big: Vec<u8> = (0..40_000)
            .flat_map(|i| format!("{i}\t\\.x{}\n", "y".repeat(i % 97)).into_bytes())
            .collect();
        assert!(big.len() > 2 * SLICE);
        let mut script =
            b"SET client_encoding = 'UTF8';\n\nCOPY public.a (x) FROM stdin;\n".to_vec();
        script.extend_from_slice(&big);
        script.extend_from_slice(b"\\.\n\nCOPY public.empty (x) FROM stdin;\n\\.\n");
        script.extend_from_slice(b"COPY public.b (x) FROM stdin;\n1\n2\n\\.\nSELECT 1;");
        for cut in [1, 2, 3, 7, 4096, 65_536, script.len()] {
            let (lines, blocks, slices) = split(&script, cut).await;
            assert_eq!(blocks.len(), 3, "cut {cut}");
            assert_eq!(blocks[0], big, "cut {cut}");
            assert!(blocks[1].is_empty());
            assert_eq!(blocks[2], b"1\n2\n");
            assert_eq!(lines.first().unwrap(), "SET client_encoding = 'UTF8';\n");
            assert_eq!(lines.last().unwrap(), "SELECT 1;", "cut {cut}");
            assert!(slices >= 2 + 2, "the big table is dealt in several slices");
        }
    }

    #[tokio::test]
    async fn a_script_cut_inside_a_table_is_an_error() {
        let script = b"COPY public.a (x) FROM stdin;\n1\n2\n\\";
        let mut s = Script::new(&script[..]);
        let line = s.line().await.unwrap().unwrap();
        let stmt = copy_statement(&line).unwrap();
        let err = loop {
            match s.rows(&stmt).await {
                Ok(Rows::More(_)) => continue,
                Ok(Rows::Last(_)) => panic!("no end marker was sent"),
                Err(e) => break e,
            }
        };
        assert!(
            err.to_string()
                .contains("ended inside the data of `COPY public.a"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_closed_reader_fails_the_feed_or_is_drained_past() {
        for drain in [false, true] {
            let (writer, reader) = tokio::io::duplex(64);
            let mut sink = UntilClosed {
                inner: Some(writer),
                drain,
            };
            sink.write_all(b"first").await.unwrap();
            drop(reader);
            let r = sink.write_all(&[7; 4096]).await;
            assert_eq!(r.is_ok(), drain, "drain {drain}: {r:?}");
            if drain {
                assert!(sink.inner.is_none(), "the closed writer is let go");
                sink.write_all(b"more").await.unwrap();
                sink.shutdown().await.unwrap();
            }
        }
    }

    #[test]
    fn recognises_copy_blocks_and_session_settings() {
        assert_eq!(
            copy_statement(b"COPY public.trades (id, qty) FROM stdin;\n").as_deref(),
            Some("COPY public.trades (id, qty) FROM stdin")
        );
        assert!(copy_statement(b"-- COPY x FROM stdin;\n").is_none());
        assert!(copy_statement(b"COPY public.t (a) FROM stdin\n").is_none());
        assert!(is_session_setting(b"SET client_encoding = 'UTF8';\n"));
        assert!(is_session_setting(
            b"SELECT pg_catalog.set_config('search_path', '', false);\n"
        ));
        assert!(!is_session_setting(
            b"SELECT pg_catalog.setval('public.s', 5, true);\n"
        ));
    }
}
