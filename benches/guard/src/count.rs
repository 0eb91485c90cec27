//! An opendal layer that counts the requests a store makes: listings
//! (one per listing call; the guard's listings stay under one page), reads
//! (one per object read), stats and writes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opendal::raw::*;
use opendal::*;

/// Requests by kind.
#[derive(Default, Debug)]
pub(crate) struct Counts {
    list: AtomicU64,
    read: AtomicU64,
    stat: AtomicU64,
    write: AtomicU64,
}

/// A snapshot of [`Counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) list: u64,
    pub(crate) read: u64,
    pub(crate) stat: u64,
    pub(crate) write: u64,
}

impl Snapshot {
    pub(crate) fn total(&self) -> u64 {
        self.list + self.read + self.stat + self.write
    }

    pub(crate) fn since(&self, before: &Snapshot) -> Snapshot {
        Snapshot {
            list: self.list - before.list,
            read: self.read - before.read,
            stat: self.stat - before.stat,
            write: self.write - before.write,
        }
    }
}

/// The layer; clones share their counts.
#[derive(Clone, Default)]
pub(crate) struct CountLayer {
    counts: Arc<Counts>,
}

impl fmt::Debug for CountLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CountLayer")
    }
}

impl CountLayer {
    pub(crate) fn snapshot(&self) -> Snapshot {
        let c = &self.counts;
        Snapshot {
            list: c.list.load(Ordering::Relaxed),
            read: c.read.load(Ordering::Relaxed),
            stat: c.stat.load(Ordering::Relaxed),
            write: c.write.load(Ordering::Relaxed),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Layer for CountLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(CountService {
            inner,
            counts: self.counts.clone(),
        })
    }
}

#[derive(Debug)]
pub(crate) struct CountService {
    inner: Servicer,
    counts: Arc<Counts>,
}

impl Service for CountService {
    type Reader = CountRead<oio::Reader>;
    type Writer = oio::Writer;
    type Lister = oio::Lister;
    type Deleter = oio::Deleter;
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
        bump(&self.counts.stat);
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        let r = self.inner.read(ctx, path, args)?;
        Ok(CountRead {
            inner: r,
            counts: self.counts.clone(),
        })
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        bump(&self.counts.write);
        self.inner.write(ctx, path, args)
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        self.inner.delete(ctx)
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        bump(&self.counts.list);
        self.inner.list(ctx, path, args)
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

pub(crate) struct CountRead<R> {
    inner: R,
    counts: Arc<Counts>,
}

impl<R: oio::Read> oio::Read for CountRead<R> {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        bump(&self.counts.read);
        self.inner.open(range).await
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        bump(&self.counts.read);
        self.inner.read(range).await
    }
}
