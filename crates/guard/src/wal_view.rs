//! An incremental view of the WAL archive: per timeline, the end of the
//! highest segment pushed without a gap before it.
//!
//! The archive groups segments in folders `wal/<timeline><log>/` (see
//! `cfdr_storage::wal_archive`). A timeline is discovered once by listing
//! `wal/` one level deep and its newest folder; after that a cycle lists
//! only the folder of the next expected segment, after the last key seen
//! (one request on backends that start listings after a key), and the next
//! folder when the server's position is there. The repository is never
//! listed whole per cycle.

use std::collections::{BTreeMap, BTreeSet};

use cfdr_retention::{Lsn, WalFile, WalSegment};
use cfdr_storage::Store;
use cfdr_storage::wal_archive::{WAL_PREFIX, wal_file_name, wal_key};
use cfdr_wal_archive::{WalArchive, parse_history};

const FOUR_GIB: u64 = 0x1_0000_0000;
/// Folders listed per timeline and cycle at most (the rest next cycle).
const MAX_GROUPS_PER_CYCLE: usize = 4;

#[derive(Clone, Debug, Default)]
struct TimelineView {
    /// Highest segment number with every segment before it (since the first
    /// one seen) present.
    contiguous: Option<u64>,
    /// Segments seen above `contiguous + 1` (a gap is still open).
    ahead: BTreeSet<u64>,
    /// Whether the timeline's newest folder was listed once.
    discovered: bool,
}

/// The WAL archive's safe positions, kept up to date one cycle at a time.
#[derive(Debug)]
pub struct WalView {
    store: Store,
    segment_size: u64,
    timelines: BTreeMap<u32, TimelineView>,
    /// `(ancestor timeline, switch position)` of each timeline with a
    /// history file in the archive.
    histories: BTreeMap<u32, Vec<(u32, Lsn)>>,
    /// Listing requests made so far.
    pub requests: u64,
}

impl WalView {
    /// A view of the archive in `store`, for WAL segments of `segment_size`.
    pub fn new(store: Store, segment_size: u64) -> Self {
        Self {
            store,
            segment_size,
            timelines: BTreeMap::new(),
            histories: BTreeMap::new(),
            requests: 0,
        }
    }

    /// The segment size this view parses names with.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    fn group_of(&self, timeline: u32, segno: u64) -> String {
        let per_4gib = FOUR_GIB / self.segment_size;
        format!("{timeline:08X}{:08X}", segno / per_4gib)
    }

    fn segno_of(&self, name: &str, timeline: u32) -> Option<u64> {
        match WalFile::parse(name, self.segment_size).ok()? {
            WalFile::Segment(s) if s.timeline == timeline => Some(s.segno),
            _ => None,
        }
    }

    async fn list_group(
        &mut self,
        timeline: u32,
        group: &str,
        after: Option<&str>,
    ) -> cfdr_storage::Result<Vec<u64>> {
        self.requests += 1;
        let prefix = format!("{WAL_PREFIX}{group}/");
        let metas = self.store.list_after(&prefix, false, after).await?;
        Ok(metas
            .iter()
            .filter_map(|m| wal_file_name(&m.key))
            .filter_map(|n| self.segno_of(n, timeline))
            .collect())
    }

    /// Lists `wal/` one level: the folders of `timeline` and whether its
    /// history file exists.
    async fn discover(&mut self, timeline: u32) -> cfdr_storage::Result<()> {
        self.requests += 1;
        let top = self.store.list_after(WAL_PREFIX, false, None).await?;
        let tl = format!("{timeline:08X}");
        let history_key = format!("{WAL_PREFIX}{tl}.history");
        let newest_group = top
            .iter()
            .filter_map(|m| m.key.strip_prefix(WAL_PREFIX)?.strip_suffix('/'))
            .filter(|g| g.len() == 16 && g.starts_with(&tl))
            .max()
            .map(str::to_owned);
        if timeline > 1
            && !self.histories.contains_key(&timeline)
            && top.iter().any(|m| m.key == history_key)
        {
            self.load_history(timeline).await;
        }
        let Some(group) = newest_group else {
            return Ok(());
        };
        let segs = self.list_group(timeline, &group, None).await?;
        let view = self.timelines.entry(timeline).or_default();
        let set: BTreeSet<u64> = segs.into_iter().collect();
        // Everything before the folder's first present segment is taken as
        // whole; a gap inside the folder stops the safe position before it.
        let mut contiguous = None;
        for s in &set {
            match contiguous {
                None => contiguous = Some(*s),
                Some(c) if *s == c + 1 => contiguous = Some(*s),
                Some(_) => break,
            }
        }
        view.ahead = set
            .into_iter()
            .filter(|s| contiguous.is_none_or(|c| *s > c + 1))
            .collect();
        view.contiguous = contiguous;
        view.discovered = contiguous.is_some();
        Ok(())
    }

    async fn load_history(&mut self, timeline: u32) {
        let name = format!("{timeline:08X}.history");
        let Ok(dir) = tempfile::tempdir() else {
            return;
        };
        let dest = dir.path().join(&name);
        let opts = cfdr_wal_archive::FetchOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let archive = WalArchive::new(self.store.clone());
        match archive.fetch(&name, &dest, &opts).await {
            Ok(cfdr_wal_archive::Fetched::Restored { .. }) => {
                if let Ok(text) = std::fs::read_to_string(&dest) {
                    self.histories.insert(timeline, parse_history(&text));
                }
            }
            Ok(cfdr_wal_archive::Fetched::NotFound) => {}
            Err(e) => tracing::warn!(timeline, error = %e, "cannot read the timeline history"),
        }
    }

    /// Brings `timeline` up to date; `server_lsn` (the server's position,
    /// when it writes this timeline) says how far folders may be listed.
    pub async fn refresh(
        &mut self,
        timeline: u32,
        server_lsn: Option<Lsn>,
    ) -> cfdr_storage::Result<()> {
        let discovered = self.timelines.get(&timeline).is_some_and(|v| v.discovered);
        if !discovered {
            self.discover(timeline).await?;
            if let Some(parent) = self.parent_of(timeline)
                && !self.timelines.get(&parent).is_some_and(|v| v.discovered)
            {
                self.discover(parent).await?;
            }
            return Ok(());
        }
        let per_4gib = FOUR_GIB / self.segment_size;
        let server_seg = server_lsn.map(|l| l.0 / self.segment_size);
        for _ in 0..MAX_GROUPS_PER_CYCLE {
            let Some(c) = self.timelines.get(&timeline).and_then(|v| v.contiguous) else {
                return Ok(());
            };
            let next = c + 1;
            let group = self.group_of(timeline, next);
            let after = if next % per_4gib == 0 {
                None
            } else {
                Some(wal_key(
                    &WalSegment { timeline, segno: c }.file_name(self.segment_size),
                ))
            };
            let found = self.list_group(timeline, &group, after.as_deref()).await?;
            let view = self.timelines.entry(timeline).or_default();
            view.ahead.extend(found.into_iter().filter(|s| *s > c));
            let mut c2 = c;
            while view.ahead.remove(&(c2 + 1)) {
                c2 += 1;
            }
            view.contiguous = Some(c2);
            // Go on into the next folder only when this one is complete and
            // the server is already writing past it.
            let folder_done = (c2 + 1) % per_4gib == 0;
            let server_beyond = server_seg.is_some_and(|s| s > c2 + 1);
            if !(folder_done && server_beyond) {
                break;
            }
        }
        Ok(())
    }

    fn parent_of(&self, timeline: u32) -> Option<u32> {
        self.histories
            .get(&timeline)
            .and_then(|h| h.last())
            .map(|(tl, _)| *tl)
    }

    /// The position up to which the WAL of `timeline` is in the repository
    /// (its own segments, else its ancestors' up to the switch point), or
    /// `None` when nothing of it is.
    pub fn safe(&self, timeline: u32) -> Option<Lsn> {
        let own = self
            .timelines
            .get(&timeline)
            .and_then(|v| v.contiguous)
            .map(|c| WalSegment { timeline, segno: c }.end_lsn(self.segment_size));
        if own.is_some() {
            return own;
        }
        // Before its first segment is pushed, a timeline shares its
        // parent's WAL up to the switch point.
        let history = self.histories.get(&timeline)?;
        let (parent, switch) = *history.last()?;
        let parent_safe = self
            .timelines
            .get(&parent)
            .and_then(|v| v.contiguous)
            .map(|c| {
                WalSegment {
                    timeline: parent,
                    segno: c,
                }
                .end_lsn(self.segment_size)
            })?;
        Some(parent_safe.min(switch))
    }

    /// The highest segment of `timeline` counted as safe.
    pub fn highest(&self, timeline: u32) -> Option<WalSegment> {
        let segno = self.timelines.get(&timeline)?.contiguous?;
        Some(WalSegment { timeline, segno })
    }

    /// Forgets what was seen (for a full rediscovery, e.g. after pruning).
    pub fn reset(&mut self) {
        self.timelines.clear();
    }
}
