//! Retention engine of cfdr: decides which backups and WAL files to keep.
//!
//! The engine is pure: no I/O, no clock. Give it the repository's backups
//! ([`Item`]), its WAL archive ([`WalItem`]), a [`Config`] and the time
//! `now`, and [`plan()`] returns a [`Plan`] that lists **every** input as keep
//! or delete with the rule(s) that decided it. The plan is the same whatever
//! the input order; dry runs and real runs print the same plan.
//!
//! # Main types
//!
//! - [`Policy`]: the rules of one data class — `keep-last`, `keep-hourly`,
//!   `keep-daily`, `keep-weekly`, `keep-monthly`, `keep-yearly` (counts, see
//!   [`Count`]), `keep-within` and `keep-within-{hourly,...,yearly}`
//!   (durations, see [`CalendarDuration`]), and `keep-tag`.
//! - [`DataClassPolicies`]: one policy per [`DataClass`], defaulting to the
//!   DR runbook (database 48 hourly / 30 daily / 52 weekly, archives 1 year,
//!   application logs 90 days, audit logs and trading records 7 years,
//!   configuration and secrets indefinitely).
//! - [`Config`]: the policies plus the time zone of bucket boundaries (UTC
//!   by default, any IANA zone; the zone data is bundled), the grace period
//!   of incomplete backups, the WAL segment size and the schedule classes
//!   that count as database archives.
//! - [`Plan`]: [`Decision`]s, [`WalDecision`]s, [`Note`]s and a [`Summary`].
//! - WAL helpers: [`Lsn`], [`WalSegment`], [`WalFile`], [`WalRange`].
//!
//! # Example
//!
//! ```
//! use cfdr_retention::{plan, Config, Count, Item, Kind, Period, Policy, Reason};
//! use jiff::Timestamp;
//!
//! let mut config = Config::default();
//! config.classes.database = Policy { keep_daily: Count::Limited(2), ..Policy::default() };
//!
//! let t = |s: &str| s.parse::<Timestamp>();
//! let items = vec![
//!     Item::new("b1", t("2025-03-01T10:00:00Z")?, Kind::Logical).class("hourly"),
//!     Item::new("b2", t("2025-03-02T10:00:00Z")?, Kind::Logical).class("hourly"),
//!     Item::new("b3", t("2025-03-02T11:00:00Z")?, Kind::Logical).class("hourly"),
//!     Item::new("b4", t("2025-03-03T10:00:00Z")?, Kind::Logical).class("hourly").pinned(),
//! ];
//! let plan = plan(&items, &[], &config, t("2025-03-04T00:00:00Z")?)?;
//!
//! // Newest of each of the two newest days, the pinned item, nothing else.
//! assert_eq!(plan.kept().collect::<Vec<_>>(), ["b4", "b3"]);
//! assert_eq!(plan.deleted().collect::<Vec<_>>(), ["b2", "b1"]);
//! let b4 = plan.get("b4").map(|d| d.reasons.clone());
//! assert_eq!(b4, Some(vec![Reason::Periodic { period: Period::Daily, oldest: false }, Reason::Pinned]));
//! // Each line of `plan.to_string()` is one decision, for logs and dry runs.
//! assert!(plan.to_string().contains("delete 2025-03-02T10:00:00Z"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How the rules work
//!
//! Items are split into groups of one [`Kind`] and one [`DataClass`] (a
//! physical hourly and a physical daily backup are one series; logical and
//! physical backups are two). Within a group the rules run as restic's
//! `forget` does:
//!
//! - the items are sorted newest first; every count rule walks that list and
//!   keeps an item when it starts a new bucket and the rule has count left,
//!   so **the newest item of each bucket is the one kept** and buckets
//!   without items do not count;
//! - rules combine with OR and overlap: an item kept by `keep-daily` and
//!   `keep-weekly` uses one slot of each (`keep-daily 7` + `keep-weekly 5` =
//!   7 dailies and 4 more weeklies);
//! - when a count rule still has count left at the group's oldest item, that
//!   item is kept too (reason `keep-<period>:oldest`), as restic does since
//!   0.17, so a short history is kept as long as possible; the same holds
//!   for `keep-within-<period>` rules when the oldest item is in the window;
//! - `keep-within*` windows end at the group's **newest item**, not at `now`:
//!   a backup schedule that stopped does not make the engine delete history;
//!   an item is in the window when it is strictly newer than newest − duration;
//! - `keep-tag` keeps items with all tags of any listed comma-separated list
//!   (`""` = items without tags); tags are not counted;
//! - `-1` / `"unlimited"` counts keep the newest item of every bucket.
//!
//! Buckets: hours, days, months and years of the configured zone; weeks are
//! ISO 8601 weeks (Monday to Sunday, numbered in the ISO week-based year, so
//! 2026-12-31 is in 2026-W53 and 2027-01-03 too). On the day clocks go back,
//! the repeated hour is two hourly buckets (the UTC offset is part of the
//! key), so no real hour is lost; a day is the local calendar day (23 or 25
//! hours around DST).
//!
//! # Safety rules
//!
//! These hold for every plan, whatever the policy (and the property tests
//! check them):
//!
//! - the newest complete backup of every kind and schedule class is kept
//!   (reason `newest-complete` when no rule kept it);
//! - pinned items (legal hold) are kept (`pinned`);
//! - items dated after `now` are kept and not counted (`future`);
//! - incomplete backups (no manifest) younger than the grace period are left
//!   alone (`incomplete-in-grace`); older ones go (`incomplete-expired`);
//!   they are never counted by any rule;
//! - a group whose policy is empty (every rule 0 or unset) keeps all its
//!   backups (`empty-policy`) and the plan carries a [`Note::EmptyPolicy`];
//!   expired leftovers of failed backups still go, as they are not backups;
//! - raising any count or window never deletes more (for non-empty
//!   policies); running the plan on what it keeps keeps all of it.
//!
//! # WAL follows backups
//!
//! A WAL segment (or `.partial`, or `.backup` label) is deleted only when no
//! kept backup needs it (its start-to-stop LSN range, on its timeline) and it
//! lies entirely before the PITR window, which starts at the lowest start LSN
//! of the kept physical backups (the oldest one). The comparison with the
//! window start is by LSN on any timeline, which never deletes WAL that a
//! kept backup could replay. A `TTTTTTTT.history` file is kept while any kept
//! backup is on that timeline or an earlier one. When the window cannot be
//! known — no kept physical backup has a WAL range, or a kept complete
//! physical backup lacks one — every WAL file is kept and a [`Note`] says why.
//! One plan covers one PostgreSQL cluster: callers with several clusters in
//! one repository plan once per cluster.
//!
//! # Differences from restic `forget`
//!
//! Where the rules overlap, a group of complete, past-dated backups with
//! distinct times, bucketed in UTC, gets the same keep/delete decisions as
//! restic 0.18 `forget` with the same options (the `restic_equivalence`
//! tests replay restic's own golden cases). Differences:
//!
//! 1. **Time zone.** restic buckets each snapshot in the UTC offset stored
//!    with it (the zone of the machine that made it); cfdr buckets every item
//!    in one configured IANA zone, UTC by default, so buckets do not depend
//!    on where a backup ran and DST rules are those of the zone.
//! 2. **Repeated hour.** In a zone with DST, the hour repeated when clocks go
//!    back is two hourly buckets in cfdr; restic (with stored offsets) puts
//!    both in one bucket and keeps one backup for two real hours.
//! 3. **Ties.** Items with equal times are ordered by id (the greater id is
//!    the newer); restic keeps the input order, so its winner depends on how
//!    the snapshots were listed.
//! 4. **Future-dated items** are kept and excluded from every rule. restic
//!    also never uses them as the `keep-within` anchor, but counts them in
//!    `keep-last`/`keep-<period>`, where a bogus future snapshot can use up a
//!    slot.
//! 5. **Durations** accept `w` (7 days), which restic rejects. Months are
//!    subtracted with the day of month clamped (31 March − 1m = 28/29
//!    February) where Go's `AddDate` overflows (to 2/3 March), so cfdr's
//!    window can be a few days longer; days are calendar days of the zone.
//! 6. **Empty policy.** Like restic, an empty policy removes nothing; cfdr
//!    also says so in a [`Note`] per group, and a policy that is empty for
//!    one data class does not stop the others.
//! 7. **Extras restic lacks:** incomplete backups and their grace period,
//!    pinned items, the newest-complete safety rule (restic instead refuses
//!    a `keep-tag`-only run that would remove every snapshot, and can delete
//!    the newest snapshot when it lacks the tag), data classes with their own
//!    policies, grouping by kind and data class instead of host and paths,
//!    and WAL retention.
//! 8. **Reasons** are short kebab-case words (`keep-daily`,
//!    `keep-daily:oldest`, `keep-tag:a,b`) rather than restic's sentences
//!    (`daily snapshot`, `oldest daily snapshot`, `has tags [a b]`); restic's
//!    per-reason counters are not reported.
//! 9. **Order.** Decisions come newest first for every item (kept and
//!    deleted alike), not as separate keep and remove lists; restic's
//!    `--unsafe-allow-remove-all` and `--keep-id`-style options do not exist.

mod config;
mod error;
mod item;
mod plan;
mod policy;
mod wal;

pub use config::{Config, DataClass, DataClassPolicies};
pub use error::{Error, Result};
pub use item::{Item, Kind};
pub use plan::{Decision, Note, Plan, Reason, Summary, Tally, WalDecision, WalReason, plan};
pub use policy::{CalendarDuration, Count, Period, Policy};
pub use wal::{
    DEFAULT_SEGMENT_SIZE, Lsn, WalFile, WalItem, WalRange, WalSegment, check_segment_size,
};
