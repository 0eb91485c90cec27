//! The planner: items + WAL + configuration + `now` → [`Plan`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use jiff::{Timestamp, tz::TimeZone};
use serde::{Deserialize, Serialize};

use crate::config::{Config, DataClass};
use crate::error::{Error, Result};
use crate::item::{Item, Kind};
use crate::policy::{Count, Period, Policy, has_tag_list};
use crate::wal::{Lsn, WalFile, WalItem, WalRange};

/// Why an item is kept or deleted. Written in plans and logs as short
/// kebab-case words (see [`Reason`]'s `Display`), e.g. `keep-daily`,
/// `keep-weekly:oldest`, `keep-tag:release`, `pinned`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum Reason {
    /// `keep-tag`: the item has every tag of this list (`keep-tag:<list>`).
    Tag(String),
    /// `keep-within`: newer than the newest item minus the duration.
    Within,
    /// `keep-last`: among the newest N items.
    Last,
    /// `keep-<period>`: the newest item of one of the newest N buckets
    /// (`keep-daily`); `oldest` marks restic's "oldest" extra keep
    /// (`keep-daily:oldest`): the rule had count left when the items ran out.
    Periodic {
        /// The bucket.
        period: Period,
        /// Kept as the group's oldest item while the rule had count left.
        oldest: bool,
    },
    /// `keep-within-<period>`: the newest item of a bucket inside the
    /// window (`keep-within-daily`; `:oldest` as for [`Reason::Periodic`]).
    WithinPeriodic {
        /// The bucket.
        period: Period,
        /// Kept as the group's oldest item (inside the window).
        oldest: bool,
    },
    /// Legal hold (`pinned`).
    Pinned,
    /// Safety rule: the newest complete backup of its kind and class, kept
    /// although no rule keeps it (`newest-complete`).
    NewestComplete,
    /// The data class's policy is empty, so everything is kept (`empty-policy`).
    EmptyPolicy,
    /// Dated after `now`: never deleted, not counted by any rule (`future`).
    Future,
    /// Incomplete and younger than the grace period: left alone
    /// (`incomplete-in-grace`).
    IncompleteInGrace,
    /// Delete: incomplete and older than the grace period (`incomplete-expired`).
    IncompleteExpired,
    /// Delete: no rule keeps it (`unmatched`).
    Unmatched,
}

impl Reason {
    /// True for reasons that keep an item; false for the two delete reasons.
    pub fn keeps(&self) -> bool {
        !matches!(self, Reason::IncompleteExpired | Reason::Unmatched)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let oldest = |o: &bool| if *o { ":oldest" } else { "" };
        match self {
            Reason::Tag(list) => write!(f, "keep-tag:{list}"),
            Reason::Within => f.write_str("keep-within"),
            Reason::Last => f.write_str("keep-last"),
            Reason::Periodic { period, oldest: o } => write!(f, "keep-{period}{}", oldest(o)),
            Reason::WithinPeriodic { period, oldest: o } => {
                write!(f, "keep-within-{period}{}", oldest(o))
            }
            Reason::Pinned => f.write_str("pinned"),
            Reason::NewestComplete => f.write_str("newest-complete"),
            Reason::EmptyPolicy => f.write_str("empty-policy"),
            Reason::Future => f.write_str("future"),
            Reason::IncompleteInGrace => f.write_str("incomplete-in-grace"),
            Reason::IncompleteExpired => f.write_str("incomplete-expired"),
            Reason::Unmatched => f.write_str("unmatched"),
        }
    }
}

impl FromStr for Reason {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(list) = s.strip_prefix("keep-tag:") {
            return Ok(Reason::Tag(list.to_owned()));
        }
        let fixed = match s {
            "keep-within" => Some(Reason::Within),
            "keep-last" => Some(Reason::Last),
            "pinned" => Some(Reason::Pinned),
            "newest-complete" => Some(Reason::NewestComplete),
            "empty-policy" => Some(Reason::EmptyPolicy),
            "future" => Some(Reason::Future),
            "incomplete-in-grace" => Some(Reason::IncompleteInGrace),
            "incomplete-expired" => Some(Reason::IncompleteExpired),
            "unmatched" => Some(Reason::Unmatched),
            _ => None,
        };
        if let Some(r) = fixed {
            return Ok(r);
        }
        let (body, oldest) = match s.strip_suffix(":oldest") {
            Some(b) => (b, true),
            None => (s, false),
        };
        if let Some(p) = body.strip_prefix("keep-within-") {
            return Ok(Reason::WithinPeriodic {
                period: p.parse()?,
                oldest,
            });
        }
        if let Some(p) = body.strip_prefix("keep-") {
            return Ok(Reason::Periodic {
                period: p.parse()?,
                oldest,
            });
        }
        Err(Error::InvalidReason { text: s.to_owned() })
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for Reason {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// Why a WAL file is kept or deleted (`needed-by:<id>`, `pitr-window`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum WalReason {
    /// Holds WAL between the start and stop of this kept backup, on its
    /// timeline (`needed-by:<id>`).
    NeededBy(String),
    /// At or after the start of the oldest kept physical backup, the start
    /// of the point-in-time-recovery window (`pitr-window`).
    PitrWindow,
    /// The window cannot be determined (no kept physical backup, or one
    /// without a WAL range), so every WAL file is kept (`no-pitr-window`).
    NoPitrWindow,
    /// History file of a timeline on or after some kept backup's timeline
    /// (`timeline-in-use`).
    TimelineInUse,
    /// Delete: entirely before the PITR window and needed by no kept backup
    /// (`before-pitr-window`).
    BeforePitrWindow,
    /// Delete: history file of a timeline older than every kept backup's
    /// timeline (`timeline-unused`).
    TimelineUnused,
}

impl WalReason {
    /// True for reasons that keep a file.
    pub fn keeps(&self) -> bool {
        !matches!(
            self,
            WalReason::BeforePitrWindow | WalReason::TimelineUnused
        )
    }
}

impl fmt::Display for WalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalReason::NeededBy(id) => write!(f, "needed-by:{id}"),
            WalReason::PitrWindow => f.write_str("pitr-window"),
            WalReason::NoPitrWindow => f.write_str("no-pitr-window"),
            WalReason::TimelineInUse => f.write_str("timeline-in-use"),
            WalReason::BeforePitrWindow => f.write_str("before-pitr-window"),
            WalReason::TimelineUnused => f.write_str("timeline-unused"),
        }
    }
}

impl FromStr for WalReason {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(id) = s.strip_prefix("needed-by:") {
            return Ok(WalReason::NeededBy(id.to_owned()));
        }
        match s {
            "pitr-window" => Ok(WalReason::PitrWindow),
            "no-pitr-window" => Ok(WalReason::NoPitrWindow),
            "timeline-in-use" => Ok(WalReason::TimelineInUse),
            "before-pitr-window" => Ok(WalReason::BeforePitrWindow),
            "timeline-unused" => Ok(WalReason::TimelineUnused),
            _ => Err(Error::InvalidReason { text: s.to_owned() }),
        }
    }
}

impl From<WalReason> for String {
    fn from(r: WalReason) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for WalReason {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// Something the operator should know about a plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(
    tag = "note",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
#[non_exhaustive]
pub enum Note {
    /// A group's policy is empty: all its items are kept.
    EmptyPolicy {
        /// The group's kind.
        kind: Kind,
        /// The group's data class.
        data_class: DataClass,
        /// How many items the group has.
        items: usize,
    },
    /// The PITR window starts at this backup's start LSN.
    PitrWindow {
        /// The oldest kept physical backup.
        backup: String,
        /// Its start LSN.
        start: Lsn,
    },
    /// WAL is archived but no kept physical backup has a WAL range: all
    /// WAL is kept.
    NoPhysicalBackup,
    /// A kept, complete physical backup has no WAL range: all WAL is kept.
    MissingWalRange {
        /// The backup.
        backup: String,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::EmptyPolicy {
                kind,
                data_class,
                items,
            } => {
                write!(
                    f,
                    "policy for {kind}/{data_class} is empty: keeping all {items} items"
                )
            }
            Note::PitrWindow { backup, start } => {
                write!(
                    f,
                    "PITR window starts at {start} (oldest kept physical backup {backup})"
                )
            }
            Note::NoPhysicalBackup => {
                f.write_str("no kept physical backup with a WAL range: keeping all WAL")
            }
            Note::MissingWalRange { backup } => {
                write!(
                    f,
                    "kept physical backup {backup} has no WAL range: keeping all WAL"
                )
            }
        }
    }
}

/// The decision about one item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Decision {
    /// The item id.
    pub id: String,
    /// The item time.
    pub time: Timestamp,
    /// The item kind.
    pub kind: Kind,
    /// The item's schedule class.
    pub class: String,
    /// The data class whose policy applied.
    pub data_class: DataClass,
    /// Stored size in bytes.
    pub size: u64,
    /// Keep (true) or delete (false).
    pub keep: bool,
    /// Every rule that kept it, or the reason it goes; never empty.
    pub reasons: Vec<Reason>,
}

/// The decision about one WAL file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WalDecision {
    /// The file name.
    pub name: String,
    /// Stored size in bytes.
    pub size: u64,
    /// Keep (true) or delete (false).
    pub keep: bool,
    /// Why; never empty.
    pub reasons: Vec<WalReason>,
}

/// A count of files and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tally {
    /// Number of files.
    pub count: usize,
    /// Their stored bytes.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes)", self.count, self.bytes)
    }
}

/// Totals of a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// Backups kept.
    pub keep: Tally,
    /// Backups deleted.
    pub delete: Tally,
    /// WAL files kept.
    pub wal_keep: Tally,
    /// WAL files deleted.
    pub wal_delete: Tally,
}

/// A retention plan: every item and WAL file with keep or delete and why.
///
/// Decisions are sorted newest first (ties: greater id first), WAL by name;
/// the plan depends only on the set of inputs, not their order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    /// The `now` the plan was made for.
    pub now: Timestamp,
    /// The zone bucket boundaries were computed in.
    pub time_zone: String,
    /// One decision per item.
    pub decisions: Vec<Decision>,
    /// One decision per WAL file.
    pub wal: Vec<WalDecision>,
    /// Things worth telling the operator.
    pub notes: Vec<Note>,
}

impl Plan {
    /// The decision about item `id`.
    pub fn get(&self, id: &str) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.id == id)
    }

    /// Ids of the items kept.
    pub fn kept(&self) -> impl Iterator<Item = &str> {
        self.decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.as_str())
    }

    /// Ids of the items to delete.
    pub fn deleted(&self) -> impl Iterator<Item = &str> {
        self.decisions
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.id.as_str())
    }

    /// Names of the WAL files to delete.
    pub fn wal_deleted(&self) -> impl Iterator<Item = &str> {
        self.wal.iter().filter(|d| !d.keep).map(|d| d.name.as_str())
    }

    /// Counts and bytes kept and deleted.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for d in &self.decisions {
            if d.keep {
                s.keep.add(d.size)
            } else {
                s.delete.add(d.size)
            }
        }
        for d in &self.wal {
            if d.keep {
                s.wal_keep.add(d.size)
            } else {
                s.wal_delete.add(d.size)
            }
        }
        s
    }
}

/// A plain-text table, one line per decision, for logs, dry runs and review.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.summary();
        writeln!(f, "plan at {} in {}", self.now, self.time_zone)?;
        writeln!(f, "backups: keep {}, delete {}", s.keep, s.delete)?;
        writeln!(f, "wal: keep {}, delete {}", s.wal_keep, s.wal_delete)?;
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        for d in &self.decisions {
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "{:<6} {} {:<24} {:<12} {}",
                if d.keep { "keep" } else { "delete" },
                d.time,
                format!("{}/{}/{}", d.kind, d.data_class, d.class),
                d.id,
                reasons.join(", ")
            )?;
        }
        for d in &self.wal {
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "{:<6} wal {:<40} {}",
                if d.keep { "keep" } else { "delete" },
                d.name,
                reasons.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Newest first; equal times: the greater id counts as newer.
fn newest_first(a: &Item, b: &Item) -> std::cmp::Ordering {
    b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id))
}

/// Builds the retention plan for `items` and the WAL archive `wal` at `now`.
///
/// Pure: no I/O, no clock; the same inputs (in any order) give the same plan.
///
/// # Errors
///
/// Invalid configuration (unknown zone, bad segment size), duplicate item ids
/// or WAL names, or a WAL range whose stop is before its start.
pub fn plan(items: &[Item], wal: &[WalItem], config: &Config, now: Timestamp) -> Result<Plan> {
    config.validate()?;
    let tz = config.zone()?;
    let seg = config.wal_segment_size;

    let mut ids = BTreeSet::new();
    for it in items {
        if !ids.insert(it.id.as_str()) {
            return Err(Error::DuplicateId { id: it.id.clone() });
        }
        if let Some(r) = it.wal
            && r.stop < r.start
        {
            return Err(Error::InvalidWalRange {
                id: it.id.clone(),
                start: r.start.to_string(),
                stop: r.stop.to_string(),
            });
        }
    }
    let mut names = BTreeSet::new();
    for w in wal {
        if !names.insert(w.name.as_str()) {
            return Err(Error::DuplicateWal {
                name: w.name.clone(),
            });
        }
    }

    let mut order: Vec<&Item> = items.iter().collect();
    order.sort_by(|a, b| newest_first(a, b));
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); order.len()];
    let mut notes = Vec::new();

    // Sort out what no rule may touch, and group the rest.
    let grace_cutoff = config.incomplete_grace.before(now, &tz);
    let mut groups: BTreeMap<(Kind, DataClass), Vec<usize>> = BTreeMap::new();
    for (i, it) in order.iter().enumerate() {
        if it.time > now {
            reasons[i].push(Reason::Future);
        } else if !it.complete {
            reasons[i].push(if it.time > grace_cutoff {
                Reason::IncompleteInGrace
            } else {
                Reason::IncompleteExpired
            });
        } else {
            groups
                .entry((it.kind, config.data_class(it.kind, &it.class)))
                .or_default()
                .push(i);
        }
    }

    for ((kind, data_class), members) in &groups {
        let policy = config.classes.get(*data_class);
        if policy.is_empty() {
            for &i in members {
                reasons[i].push(Reason::EmptyPolicy);
            }
            notes.push(Note::EmptyPolicy {
                kind: *kind,
                data_class: *data_class,
                items: members.len(),
            });
        } else {
            apply_policy(&order, members, policy, &tz, &mut reasons);
        }
    }

    // Safety rules: legal hold, and the newest complete backup of every kind
    // and class.
    let mut newest_seen = BTreeSet::new();
    for (i, it) in order.iter().enumerate() {
        if it.pinned {
            reasons[i].push(Reason::Pinned);
        }
        if it.complete
            && it.time <= now
            && newest_seen.insert((it.kind, it.class.as_str()))
            && !reasons[i].iter().any(Reason::keeps)
        {
            reasons[i].push(Reason::NewestComplete);
        }
    }

    let decisions: Vec<Decision> = order
        .iter()
        .zip(reasons)
        .map(|(it, mut rs)| {
            let keep = rs.iter().any(Reason::keeps);
            if keep {
                rs.retain(Reason::keeps);
            } else if rs.is_empty() {
                rs.push(Reason::Unmatched);
            }
            Decision {
                id: it.id.clone(),
                time: it.time,
                kind: it.kind,
                class: it.class.clone(),
                data_class: config.data_class(it.kind, &it.class),
                size: it.size,
                keep,
                reasons: rs,
            }
        })
        .collect();

    let wal_decisions = plan_wal(&order, &decisions, wal, seg, &mut notes);
    Ok(Plan {
        now,
        time_zone: config.time_zone.clone(),
        decisions,
        wal: wal_decisions,
        notes,
    })
}

struct CountRule {
    period: Option<Period>,
    left: Count,
    last: Option<[i32; 5]>,
}

struct WithinRule {
    period: Period,
    cutoff: Timestamp,
    last: Option<[i32; 5]>,
}

/// restic's `ApplyPolicy` over one group, newest first.
fn apply_policy(
    order: &[&Item],
    members: &[usize],
    policy: &Policy,
    tz: &TimeZone,
    reasons: &mut [Vec<Reason>],
) {
    let Some(&first) = members.first() else {
        return;
    };
    let latest = order[first].time;
    let within = (!policy.keep_within.is_zero()).then(|| policy.keep_within.before(latest, tz));
    let mut counts: Vec<CountRule> = std::iter::once((None, policy.keep_last))
        .chain(Period::ALL.iter().map(|p| (Some(*p), policy.count(*p))))
        .filter(|(_, c)| !c.is_zero())
        .map(|(period, left)| CountRule {
            period,
            left,
            last: None,
        })
        .collect();
    let mut withins: Vec<WithinRule> = Period::ALL
        .iter()
        .filter(|p| !policy.within(**p).is_zero())
        .map(|p| WithinRule {
            period: *p,
            cutoff: policy.within(*p).before(latest, tz),
            last: None,
        })
        .collect();

    let oldest_pos = members.len() - 1;
    for (pos, &i) in members.iter().enumerate() {
        let it = order[i];
        let is_oldest = pos == oldest_pos;
        let out = &mut reasons[i];
        for list in &policy.keep_tag {
            if has_tag_list(&it.tags, list) {
                out.push(Reason::Tag(list.clone()));
            }
        }
        if within.is_some_and(|cutoff| it.time > cutoff) {
            out.push(Reason::Within);
        }
        for rule in &mut counts {
            if rule.left.is_zero() {
                continue;
            }
            let (new_bucket, key) = match rule.period {
                None => (true, None),
                Some(p) => {
                    let key = p.key(it.time, tz);
                    (rule.last != Some(key), Some(key))
                }
            };
            if new_bucket || is_oldest {
                out.push(match rule.period {
                    None => Reason::Last,
                    Some(period) => Reason::Periodic {
                        period,
                        oldest: !new_bucket,
                    },
                });
                rule.last = key;
                if let Count::Limited(n) = &mut rule.left {
                    *n -= 1;
                }
            }
        }
        for rule in &mut withins {
            if it.time > rule.cutoff {
                let key = rule.period.key(it.time, tz);
                let new_bucket = rule.last != Some(key);
                if new_bucket || is_oldest {
                    out.push(Reason::WithinPeriodic {
                        period: rule.period,
                        oldest: !new_bucket,
                    });
                    rule.last = Some(key);
                }
            }
        }
    }
}

/// WAL follows backups.
fn plan_wal(
    order: &[&Item],
    decisions: &[Decision],
    wal: &[WalItem],
    seg: u64,
    notes: &mut Vec<Note>,
) -> Vec<WalDecision> {
    let kept: Vec<&Item> = order
        .iter()
        .zip(decisions)
        .filter(|(_, d)| d.keep)
        .map(|(it, _)| *it)
        .collect();
    let consumers: Vec<(&str, WalRange)> = kept
        .iter()
        .filter_map(|it| it.wal.map(|r| (it.id.as_str(), r)))
        .collect();
    let missing: Vec<&str> = kept
        .iter()
        .filter(|it| it.kind == Kind::Physical && it.complete && it.wal.is_none())
        .map(|it| it.id.as_str())
        .collect();
    let window = consumers.iter().map(|(id, r)| (r.start, *id)).min();
    let min_timeline = consumers.iter().map(|(_, r)| r.timeline).min();
    let keep_all = !missing.is_empty() || window.is_none();

    if !wal.is_empty() {
        for id in &missing {
            notes.push(Note::MissingWalRange {
                backup: (*id).to_owned(),
            });
        }
        if consumers.is_empty() && missing.is_empty() {
            notes.push(Note::NoPhysicalBackup);
        }
    }
    if let Some((start, id)) = window {
        notes.push(Note::PitrWindow {
            backup: id.to_owned(),
            start,
        });
    }

    let mut files: Vec<&WalItem> = wal.iter().collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
        .into_iter()
        .map(|w| {
            let mut rs = Vec::new();
            match w.file {
                WalFile::History { timeline } => {
                    if keep_all {
                        rs.push(WalReason::NoPitrWindow);
                    } else if min_timeline.is_some_and(|m| m <= timeline) {
                        rs.push(WalReason::TimelineInUse);
                    } else {
                        rs.push(WalReason::TimelineUnused);
                    }
                }
                _ => {
                    for (id, r) in &consumers {
                        if r.needs(&w.file, seg) {
                            rs.push(WalReason::NeededBy((*id).to_owned()));
                        }
                    }
                    let end = w.file.lsn_range(seg).map(|(_, end)| end);
                    if keep_all {
                        rs.push(WalReason::NoPitrWindow);
                    } else if let (Some((start, _)), Some(end)) = (window, end)
                        && end > start
                    {
                        rs.push(WalReason::PitrWindow);
                    }
                    if rs.is_empty() {
                        rs.push(WalReason::BeforePitrWindow);
                    }
                }
            }
            WalDecision {
                name: w.name.clone(),
                size: w.size,
                keep: rs.iter().any(WalReason::keeps),
                reasons: rs,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reasons_round_trip_as_text() {
        let all = [
            Reason::Tag("a,b".into()),
            Reason::Within,
            Reason::Last,
            Reason::Periodic {
                period: Period::Weekly,
                oldest: false,
            },
            Reason::Periodic {
                period: Period::Daily,
                oldest: true,
            },
            Reason::WithinPeriodic {
                period: Period::Hourly,
                oldest: false,
            },
            Reason::WithinPeriodic {
                period: Period::Yearly,
                oldest: true,
            },
            Reason::Pinned,
            Reason::NewestComplete,
            Reason::EmptyPolicy,
            Reason::Future,
            Reason::IncompleteInGrace,
            Reason::IncompleteExpired,
            Reason::Unmatched,
        ];
        for r in all {
            assert_eq!(r.to_string().parse::<Reason>().unwrap(), r);
        }
        assert_eq!(
            Reason::Periodic {
                period: Period::Daily,
                oldest: true
            }
            .to_string(),
            "keep-daily:oldest"
        );
        assert!("keep-fortnightly".parse::<Reason>().is_err());
        for r in [
            WalReason::NeededBy("x".into()),
            WalReason::PitrWindow,
            WalReason::NoPitrWindow,
            WalReason::TimelineInUse,
            WalReason::BeforePitrWindow,
            WalReason::TimelineUnused,
        ] {
            assert_eq!(r.to_string().parse::<WalReason>().unwrap(), r);
        }
        assert!("nope".parse::<WalReason>().is_err());
    }
}
