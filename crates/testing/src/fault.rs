//! An opendal layer that makes chosen operations fail, stall or truncate at
//! a seeded rate, so tests can prove that nothing half-written is ever
//! listed as complete and that damage is detected.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opendal::raw::*;
use opendal::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which operations may be hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// Opening and streaming reads.
    Read,
    /// Writes and upload completion.
    Write,
    /// Listing pages.
    List,
    /// Stat.
    Stat,
    /// Deletes.
    Delete,
}

/// What a hit does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Return a temporary error (as a dropped connection would).
    Fail,
    /// Sleep this long first (timeouts then decide).
    Stall(Duration),
    /// Reads end early without error; writes silently drop a chunk.
    Truncate,
}

/// A seeded fault plan, shared by every operation of one operator.
#[derive(Clone)]
pub struct FaultLayer {
    state: Arc<State>,
}

struct State {
    rng: Mutex<StdRng>,
    /// The hit rate's bits (an f64), changeable while in use.
    rate: AtomicU64,
    mode: FaultMode,
    ops: Vec<FaultOp>,
    /// Only keys containing this are hit (all when `None`).
    only: Option<String>,
    injected: AtomicU64,
}

impl fmt::Debug for FaultLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLayer")
            .field("rate", &self.state.rate())
            .field("mode", &self.state.mode)
            .field("ops", &self.state.ops)
            .finish()
    }
}

impl FaultLayer {
    /// Faults of `mode` on `ops`, each call hit with probability `rate`.
    pub fn new(seed: u64, rate: f64, mode: FaultMode, ops: &[FaultOp]) -> Self {
        Self {
            state: Arc::new(State {
                rng: Mutex::new(StdRng::seed_from_u64(seed)),
                rate: AtomicU64::new(rate.to_bits()),
                mode,
                ops: ops.to_vec(),
                only: None,
                injected: AtomicU64::new(0),
            }),
        }
    }

    /// Hits only keys that contain `needle` (e.g. one object's name), so a
    /// test can damage one read or write among many.
    pub fn only_keys_containing(self, needle: &str) -> Self {
        let s = &self.state;
        Self {
            state: Arc::new(State {
                rng: Mutex::new(match s.rng.lock() {
                    Ok(rng) => rng.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                }),
                rate: AtomicU64::new(s.rate.load(Ordering::Relaxed)),
                mode: s.mode,
                ops: s.ops.clone(),
                only: Some(needle.to_owned()),
                injected: AtomicU64::new(0),
            }),
        }
    }

    /// Changes the hit rate from now on (faults for a while, then none).
    pub fn set_rate(&self, rate: f64) {
        self.state.rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::Relaxed)
    }
}

impl State {
    fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    fn hit(&self, op: FaultOp, path: &str) -> bool {
        if !self.ops.contains(&op) {
            return false;
        }
        if self
            .only
            .as_ref()
            .is_some_and(|needle| !path.contains(needle))
        {
            return false;
        }
        let roll: f64 = match self.rng.lock() {
            Ok(mut rng) => rng.random(),
            Err(poisoned) => poisoned.into_inner().random(),
        };
        let hit = roll < self.rate();
        if hit {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Applies Fail/Stall; returns whether a Truncate hit applies.
    async fn before(&self, op: FaultOp, path: &str) -> Result<bool> {
        if !self.hit(op, path) {
            return Ok(false);
        }
        match self.mode {
            FaultMode::Fail => Err(Error::new(
                ErrorKind::Unexpected,
                format!("injected {op:?} fault"),
            )
            .set_temporary()),
            FaultMode::Stall(d) => {
                tokio::time::sleep(d).await;
                Ok(false)
            }
            FaultMode::Truncate => Ok(true),
        }
    }
}

impl Layer for FaultLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(FaultService {
            inner,
            state: self.state.clone(),
        })
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub(crate) struct FaultService {
    inner: Servicer,
    state: Arc<State>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultState")
    }
}

impl Service for FaultService {
    type Reader = FaultWrapper<oio::Reader>;
    type Writer = FaultWrapper<oio::Writer>;
    type Lister = FaultWrapper<oio::Lister>;
    type Deleter = FaultWrapper<oio::Deleter>;
    type Copier = oio::Copier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.state.before(FaultOp::Stat, path).await?;
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        let r = self.inner.read(ctx, path, args)?;
        Ok(FaultWrapper::new(r, self.state.clone(), path))
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        let w = self.inner.write(ctx, path, args)?;
        Ok(FaultWrapper::new(w, self.state.clone(), path))
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        let d = self.inner.delete(ctx)?;
        Ok(FaultWrapper::new(d, self.state.clone(), ""))
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        let l = self.inner.list(ctx, path, args)?;
        Ok(FaultWrapper::new(l, self.state.clone(), path))
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        self.inner.copy(ctx, from, to, args)
    }

    fn compose(&self, ctx: &OperationContext, to: &str, args: OpCompose) -> Result<Self::Composer> {
        self.inner.compose(ctx, to, args)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> Result<RpRename> {
        self.inner.rename(ctx, from, to, args).await
    }

    async fn restore(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpRestore,
    ) -> Result<RpRestore> {
        self.inner.restore(ctx, path, args).await
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

#[doc(hidden)]
pub(crate) struct FaultWrapper<R> {
    inner: R,
    state: Arc<State>,
    /// The key (or listed prefix) this call is about.
    path: String,
}

impl<R> FaultWrapper<R> {
    fn new(inner: R, state: Arc<State>, path: &str) -> Self {
        Self {
            inner,
            state,
            path: path.to_owned(),
        }
    }
}

impl<R: oio::ReadStream> oio::ReadStream for FaultWrapper<R> {
    async fn read(&mut self) -> Result<Buffer> {
        if self.state.before(FaultOp::Read, &self.path).await? {
            // Truncate: end the stream here, as a dropped connection that
            // the client mistook for EOF would.
            return Ok(Buffer::new());
        }
        self.inner.read().await
    }
}

impl<R: oio::Read> oio::Read for FaultWrapper<R> {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        self.state.before(FaultOp::Read, &self.path).await?;
        let (rp, stream) = self.inner.open(range).await?;
        Ok((
            rp,
            Box::new(FaultWrapper::new(stream, self.state.clone(), &self.path))
                as Box<dyn oio::ReadStreamDyn>,
        ))
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        let truncate = self.state.before(FaultOp::Read, &self.path).await?;
        let (rp, buf) = self.inner.read(range).await?;
        if truncate {
            let keep = buf.len() / 2;
            return Ok((rp, buf.slice(0..keep)));
        }
        Ok((rp, buf))
    }
}

impl<W: oio::Write> oio::Write for FaultWrapper<W> {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        if self.state.before(FaultOp::Write, &self.path).await? {
            // Truncate: pretend the chunk was stored.
            return Ok(());
        }
        self.inner.write(bs).await
    }

    async fn copy_from(&mut self, path: &str, args: OpRead, range: BytesRange) -> Result<()> {
        self.inner.copy_from(path, args, range).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        self.state.before(FaultOp::Write, &self.path).await?;
        self.inner.close().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

impl<L: oio::List> oio::List for FaultWrapper<L> {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        self.state.before(FaultOp::List, &self.path).await?;
        self.inner.next().await
    }
}

impl<D: oio::Delete> oio::Delete for FaultWrapper<D> {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        self.state.before(FaultOp::Delete, path).await?;
        self.inner.delete(path, args).await
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.close().await
    }
}
