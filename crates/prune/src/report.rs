//! What a prune decided and did, for humans and for `--json`.

use std::fmt::Write as _;

use cfdr_retention::{DataClass, Plan, Summary};
use cfdr_storage::{LockedObject, Retention};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::execute::Deletions;
use crate::inventory::Skipped;

/// The outcome of one prune (or dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    /// True when nothing was deleted on purpose.
    pub dry_run: bool,
    /// The time the plan was made for (`--at`, default now).
    pub at: Timestamp,
    /// The data classes pruned; empty means all.
    pub classes: Vec<DataClass>,
    /// Whether WAL was pruned (only when every database class is).
    pub wal_included: bool,
    /// The plan: every backup of the pruned classes and every WAL file, keep
    /// or delete, with the rules that decided it.
    pub plan: Plan,
    /// Counts and bytes of the plan.
    pub summary: Summary,
    /// The keys to delete (dry run) or deleted.
    pub deletions: Deletions,
    /// Backups whose deletion an earlier, interrupted prune started; their
    /// remaining objects are in `deletions.leftovers`.
    pub resumed: Vec<String>,
    /// Backups left alone because retention cannot classify them.
    pub skipped: Vec<Skipped>,
    /// Committed backups whose manifest cannot be read: never deleted, not
    /// counted by retention; a damaged physical backup keeps all WAL.
    #[serde(default)]
    pub damaged: Vec<Skipped>,
    /// Objects under `wal/` that are not WAL files; never deleted.
    pub unknown_wal: Vec<String>,
    /// Objects deleted (0 on a dry run).
    pub deleted: usize,
    /// Backups the plan deletes but whose manifest is still locked (S3
    /// Object Lock): kept whole until the lock expires.
    #[serde(default)]
    pub locked_backups: Vec<LockedBackup>,
    /// Objects whose deletion the server refused because a version is
    /// still locked: left in place, deleted by a later prune.
    #[serde(default)]
    pub locked_objects: Vec<LockedObject>,
}

/// A backup kept because its manifest is still locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedBackup {
    /// The backup id.
    pub id: String,
    /// The manifest's retention.
    pub retention: Retention,
}

impl Report {
    /// The report as text: a summary, the notes, one line per backup that
    /// goes (every backup with `show_kept`), WAL as runs of consecutive
    /// files, and what was left alone. `bytes` formats sizes.
    pub fn render(&self, show_kept: bool, bytes: fn(u64) -> String) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let mode = if self.dry_run {
            " (dry run: nothing deleted)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "prune plan at {} in {}{mode}",
            self.at, self.plan.time_zone
        );
        let tally = |t: &cfdr_retention::Tally| format!("{} ({})", t.count, bytes(t.bytes));
        let _ = writeln!(
            out,
            "backups: keep {}, delete {}",
            tally(&s.keep),
            tally(&s.delete)
        );
        if self.wal_included {
            let _ = writeln!(
                out,
                "wal: keep {}, delete {}",
                tally(&s.wal_keep),
                tally(&s.wal_delete)
            );
        } else {
            let _ = writeln!(out, "wal: left alone (not every database class is pruned)");
        }
        for n in &self.plan.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for d in self.plan.decisions.iter().filter(|d| show_kept || !d.keep) {
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "{:<6} {} {} {}/{}/{} {} {}",
                if d.keep { "keep" } else { "delete" },
                d.time,
                d.id,
                d.kind,
                d.data_class,
                if d.class.is_empty() { "-" } else { &d.class },
                bytes(d.size),
                reasons.join(",")
            );
        }
        // WAL files come sorted by name: print runs with one verdict and reason.
        let mut runs: Vec<(bool, String, &str, &str, usize, u64)> = Vec::new();
        for w in &self.plan.wal {
            let reasons: Vec<String> = w.reasons.iter().map(ToString::to_string).collect();
            let why = reasons.join(",");
            match runs.last_mut() {
                Some(r) if r.0 == w.keep && r.1 == why => {
                    r.3 = &w.name;
                    r.4 += 1;
                    r.5 += w.size;
                }
                _ => runs.push((w.keep, why, &w.name, &w.name, 1, w.size)),
            }
        }
        for (keep, why, first, last, count, size) in runs {
            if keep && !show_kept {
                continue;
            }
            let verb = if keep { "keep" } else { "delete" };
            let _ = writeln!(
                out,
                "{verb:<6} wal {first} .. {last} ({count} files, {}) {why}",
                bytes(size)
            );
        }
        for id in &self.resumed {
            let _ = writeln!(
                out,
                "resume {id}: an earlier prune deleted its manifest; deleting the rest"
            );
        }
        for s in &self.skipped {
            let _ = writeln!(out, "left alone: backup {} ({})", s.id, s.reason);
        }
        for d in &self.damaged {
            let _ = writeln!(out, "DAMAGED: backup {}: {}", d.id, d.reason);
        }
        for key in &self.unknown_wal {
            let _ = writeln!(out, "left alone: {key} (not a WAL file)");
        }
        for b in &self.locked_backups {
            let _ = writeln!(
                out,
                "locked: backup {} ({} until {}): kept until its lock expires",
                b.id, b.retention.mode, b.retention.until
            );
        }
        for o in &self.locked_objects {
            match &o.retention {
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "locked: {} ({} until {}): left in place",
                        o.key, r.mode, r.until
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "locked: {} (the server refused the delete): left in place",
                        o.key
                    );
                }
            }
        }
        if !self.dry_run {
            let _ = writeln!(out, "deleted {} objects", self.deleted);
        }
        out
    }
}
