//! The incident record: the fold of its events under the state machine.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::event::{Change, Event, PostMortem};
use crate::model::{
    ActionItem, EntryKind, HaltPeriod, Impact, IncidentId, Links, Severity, Status, TimelineEntry,
};
use crate::{Error, Result};

/// An incident as its events describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Id.
    pub id: IncidentId,
    /// Brief description.
    pub title: String,
    /// Current severity.
    pub severity: Severity,
    /// Most severe level the incident has had (P0 is the most severe).
    pub peak_severity: Severity,
    /// Current status.
    pub status: Status,
    /// Incident commander.
    pub commander: Option<String>,
    /// Who opened it.
    pub opened_by: String,
    /// When it was detected (the time of the opening event).
    pub detected: Timestamp,
    /// First acknowledgement.
    pub acknowledged: Option<Timestamp>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When it was (last) mitigated.
    pub mitigated: Option<Timestamp>,
    /// When it was (last) resolved.
    pub resolved: Option<Timestamp>,
    /// When it was closed after the post-mortem.
    pub closed: Option<Timestamp>,
    /// Time of the last communicated change (status update SLA).
    pub last_update: Timestamp,
    /// Summary.
    pub summary: Option<String>,
    /// Impact assessment.
    pub impact: Impact,
    /// Root cause.
    pub root_cause: Option<String>,
    /// Resolution steps.
    pub resolution: Vec<String>,
    /// Follow-up tasks, numbered from 1 in this order.
    pub action_items: Vec<ActionItem>,
    /// Lessons learned.
    pub lessons: Vec<String>,
    /// Related backups and drills.
    pub links: Links,
    /// Every period during which this incident halted trading, oldest first.
    pub halts: Vec<HaltPeriod>,
    /// Timeline, ordered by time then sequence number.
    pub timeline: Vec<TimelineEntry>,
    /// Sequence number of the last applied event.
    pub last_seq: u64,
}

fn illegal(id: &IncidentId, change: &Change, reason: impl Into<String>) -> Error {
    Error::IllegalTransition {
        id: id.to_string(),
        action: change.action(),
        reason: reason.into(),
    }
}

fn non_empty(s: &str, what: &'static str) -> Result<()> {
    if s.trim().is_empty() {
        Err(Error::Empty { what })
    } else {
        Ok(())
    }
}

impl Incident {
    /// Builds the record from its first event, which must be `opened`.
    pub fn open(event: &Event) -> Result<Self> {
        let Change::Opened {
            title,
            severity,
            commander,
            halt,
            ..
        } = &event.change
        else {
            return Err(illegal(
                &event.incident,
                &event.change,
                "the first event of an incident must open it",
            ));
        };
        non_empty(title, "the title")?;
        non_empty(&event.author, "the author")?;
        let mut inc = Incident {
            id: event.incident.clone(),
            title: title.trim().to_owned(),
            severity: *severity,
            peak_severity: *severity,
            status: Status::Investigating,
            commander: commander.clone().filter(|c| !c.trim().is_empty()),
            opened_by: event.author.clone(),
            detected: event.at,
            acknowledged: None,
            acknowledged_by: None,
            mitigated: None,
            resolved: None,
            closed: None,
            last_update: event.at,
            summary: None,
            impact: Impact::default(),
            root_cause: None,
            resolution: Vec::new(),
            action_items: Vec::new(),
            lessons: Vec::new(),
            links: Links::default(),
            halts: Vec::new(),
            timeline: Vec::new(),
            last_seq: event.seq,
        };
        if *halt {
            inc.halts.push(HaltPeriod {
                from: event.at,
                set_by: event.author.clone(),
                reason: format!("{} incident opened", severity),
                to: None,
                cleared_by: None,
                cleared_reason: None,
            });
        }
        inc.push_entry(event);
        Ok(inc)
    }

    /// Folds events (in sequence order) into a record. Events that the state
    /// machine rejects are skipped and returned with the reason, so a bad
    /// or foreign event never hides the rest. `None` when no valid opening
    /// event exists.
    pub fn fold<'a>(
        events: impl IntoIterator<Item = &'a Event>,
    ) -> (Option<Incident>, Vec<(u64, Error)>) {
        let mut inc: Option<Incident> = None;
        let mut rejected = Vec::new();
        for ev in events {
            let r = match &mut inc {
                None => Incident::open(ev).map(|i| inc = Some(i)),
                Some(i) => i.apply(ev),
            };
            if let Err(e) = r {
                rejected.push((ev.seq, e));
            }
        }
        (inc, rejected)
    }

    /// Whether this incident currently halts trading.
    pub fn trading_halted(&self) -> bool {
        self.halts.last().is_some_and(|h| h.to.is_none())
    }

    /// The halt in force, if any.
    pub fn current_halt(&self) -> Option<&HaltPeriod> {
        self.halts.last().filter(|h| h.to.is_none())
    }

    /// Total time trading was halted by this incident, over finished
    /// periods, and whether a period is still running.
    pub fn trading_stopped(&self) -> (SignedDuration, bool) {
        let total = self.halts.iter().filter_map(HaltPeriod::duration).sum();
        (total, self.trading_halted())
    }

    /// Checks `event` against the state machine and applies it; on error the
    /// record is unchanged.
    pub fn apply(&mut self, event: &Event) -> Result<()> {
        self.check(event)?;
        let at = event.at;
        let by = &event.author;
        match &event.change {
            Change::Opened { .. } | Change::Note { .. } | Change::NotificationFailed { .. } => {}
            Change::Acknowledged { .. } => {
                self.acknowledged = Some(at);
                self.acknowledged_by = Some(by.clone());
            }
            Change::StatusUpdate { .. } => {}
            Change::Identified { root_cause, .. } => {
                self.status = Status::Identified;
                if let Some(rc) = root_cause {
                    self.root_cause = Some(rc.clone());
                }
            }
            Change::Mitigated { .. } => {
                self.status = Status::Mitigated;
                self.mitigated = Some(at);
            }
            Change::Resolved { .. } => {
                self.status = Status::Resolved;
                self.resolved = Some(at);
            }
            Change::Reopened { .. } => {
                self.status = Status::Investigating;
                self.mitigated = None;
                self.resolved = None;
            }
            Change::Closed { .. } => {
                self.status = Status::Closed;
                self.closed = Some(at);
            }
            Change::SeverityChanged { to, .. } => {
                self.severity = *to;
                self.peak_severity = self.peak_severity.min(*to);
            }
            Change::CommanderChanged { to } => self.commander = Some(to.trim().to_owned()),
            Change::HaltSet { reason } => self.halts.push(HaltPeriod {
                from: at,
                set_by: by.clone(),
                reason: reason.clone(),
                to: None,
                cleared_by: None,
                cleared_reason: None,
            }),
            Change::HaltCleared { reason } => {
                if let Some(h) = self.halts.last_mut() {
                    h.to = Some(at);
                    h.cleared_by = Some(by.clone());
                    h.cleared_reason = Some(reason.clone());
                }
            }
            Change::ActionAdded { text, owner } => self.action_items.push(ActionItem {
                text: text.trim().to_owned(),
                owner: owner.clone().filter(|o| !o.trim().is_empty()),
                done: false,
                done_at: None,
            }),
            Change::ActionDone { number } => {
                if let Some(item) = self.action_items.get_mut(number - 1) {
                    item.done = true;
                    item.done_at = Some(at);
                }
            }
            Change::PostMortem(pm) => self.apply_post_mortem(pm),
            Change::Linked { backups, drills } => {
                for b in backups {
                    if !self.links.backups.contains(b) {
                        self.links.backups.push(b.clone());
                    }
                }
                for d in drills {
                    if !self.links.drills.contains(d) {
                        self.links.drills.push(d.clone());
                    }
                }
            }
        }
        if event.change.is_communicated() {
            self.last_update = self.last_update.max(at);
        }
        self.last_seq = event.seq;
        self.push_entry(event);
        Ok(())
    }

    fn apply_post_mortem(&mut self, pm: &PostMortem) {
        let set = |dst: &mut Option<String>, src: &Option<String>| {
            if let Some(s) = src {
                *dst = Some(s.trim().to_owned()).filter(|s| !s.is_empty());
            }
        };
        set(&mut self.summary, &pm.summary);
        set(&mut self.root_cause, &pm.root_cause);
        set(&mut self.impact.financial, &pm.financial_impact);
        set(&mut self.impact.users_affected, &pm.users_affected);
        if let Some(r) = &pm.resolution {
            self.resolution = r.clone();
        }
        if let Some(l) = &pm.lessons {
            self.lessons = l.clone();
        }
    }

    /// The state machine: whether `event` may follow the current state.
    fn check(&self, event: &Event) -> Result<()> {
        let c = &event.change;
        let no = |reason: String| Err(illegal(&self.id, c, reason));
        if event.incident != self.id {
            return no(format!("the event belongs to {}", event.incident));
        }
        if event.seq <= self.last_seq {
            return no(format!(
                "event {} is not after event {}",
                event.seq, self.last_seq
            ));
        }
        non_empty(&event.author, "the author")?;
        if event.at < self.detected {
            return no(format!(
                "its time {} is before the incident was detected ({})",
                event.at, self.detected
            ));
        }
        let closed = self.status == Status::Closed;
        if closed
            && !matches!(
                c,
                Change::Note { .. }
                    | Change::ActionAdded { .. }
                    | Change::ActionDone { .. }
                    | Change::Linked { .. }
                    | Change::NotificationFailed { .. }
            )
        {
            return no("the incident is closed (post-mortem done); open a new incident if the problem is back".into());
        }
        let st = self.status;
        match c {
            Change::Opened { .. } => no("it is already open".into()),
            Change::Acknowledged { .. } => {
                if let (Some(t), Some(by)) = (self.acknowledged, &self.acknowledged_by) {
                    no(format!("already acknowledged by {by} at {t}"))
                } else if !st.is_active() {
                    no(format!("it is already {st}"))
                } else {
                    Ok(())
                }
            }
            Change::Note { text } | Change::StatusUpdate { text } => non_empty(text, "the text"),
            Change::Identified { .. } => match st {
                Status::Investigating => Ok(()),
                Status::Identified => no("it is already identified".into()),
                _ => no(format!(
                    "it is already {st}; record a root cause found later with `postmortem --root-cause`"
                )),
            },
            Change::Mitigated { .. } => match st {
                Status::Investigating | Status::Identified => Ok(()),
                _ => no(format!("it is already {st}")),
            },
            Change::Resolved { .. } => {
                if st.is_active() {
                    Ok(())
                } else {
                    no(format!("it is already {st}"))
                }
            }
            Change::Reopened { reason } => {
                non_empty(reason, "the reason")?;
                if st == Status::Resolved {
                    Ok(())
                } else {
                    no(format!(
                        "only a resolved incident can be reopened; it is {st}"
                    ))
                }
            }
            Change::Closed { .. } => {
                if st != Status::Resolved {
                    no(format!(
                        "only a resolved incident can be closed; it is {st}"
                    ))
                } else if self.trading_halted() {
                    no("it still halts trading: resume trading (with a reason) first".into())
                } else if self.root_cause.is_none() {
                    no("no root cause recorded: add one with `postmortem --root-cause`".into())
                } else if self.severity <= Severity::P1 && self.lessons.is_empty() {
                    no(format!(
                        "a {} post-mortem needs lessons learned: add them with `postmortem --lesson`",
                        self.severity
                    ))
                } else {
                    Ok(())
                }
            }
            Change::SeverityChanged { to, .. } => {
                if *to == self.severity {
                    no(format!("it is already {to}"))
                } else {
                    Ok(())
                }
            }
            Change::CommanderChanged { to } => non_empty(to, "the commander"),
            Change::HaltSet { reason } => {
                non_empty(reason, "the reason")?;
                match self.halts.last() {
                    Some(h) if h.to.is_none() => no("it already halts trading".into()),
                    Some(HaltPeriod { to: Some(to), .. }) if event.at < *to => no(format!(
                        "its time {} is before trading last resumed ({to})",
                        event.at
                    )),
                    _ => Ok(()),
                }
            }
            Change::HaltCleared { reason } => {
                non_empty(reason, "the reason for resuming trading")?;
                match self.current_halt() {
                    None => no("it does not halt trading".into()),
                    Some(h) if event.at < h.from => no(format!(
                        "its time {} is before trading was halted ({})",
                        event.at, h.from
                    )),
                    Some(_) => Ok(()),
                }
            }
            Change::ActionAdded { text, .. } => non_empty(text, "the action item"),
            Change::ActionDone { number } => match self.action_items.get(number.wrapping_sub(1)) {
                None => no(format!(
                    "there is no action item {number} (it has {})",
                    self.action_items.len()
                )),
                Some(item) if item.done => no(format!("action item {number} is already done")),
                Some(_) => Ok(()),
            },
            Change::PostMortem(pm) => {
                if pm.is_empty() {
                    no("nothing given".into())
                } else {
                    Ok(())
                }
            }
            Change::Linked { backups, drills } => {
                if backups.is_empty() && drills.is_empty() {
                    no("nothing given".into())
                } else {
                    Ok(())
                }
            }
            Change::NotificationFailed { .. } => Ok(()),
        }
    }

    fn push_entry(&mut self, event: &Event) {
        let (kind, text) = entry(self, event);
        let entry = TimelineEntry {
            at: event.at,
            seq: event.seq,
            author: event.author.clone(),
            kind,
            text,
        };
        let pos = self
            .timeline
            .partition_point(|e| (e.at, e.seq) <= (entry.at, entry.seq));
        self.timeline.insert(pos, entry);
    }
}

/// Timeline kind and text of an event (after it was applied to `inc`).
fn entry(inc: &Incident, ev: &Event) -> (EntryKind, String) {
    let own = |t: &Option<String>, default: String| {
        t.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map_or(default, str::to_owned)
    };
    match &ev.change {
        Change::Opened {
            title,
            severity,
            text,
            ..
        } => (
            EntryKind::Opened,
            own(
                text,
                format!("Incident opened ({severity}): {}", title.trim()),
            ),
        ),
        Change::Acknowledged { text } => (
            EntryKind::Acknowledged,
            own(text, format!("Acknowledged by {}", ev.author)),
        ),
        Change::Note { text } => (EntryKind::Note, text.trim().to_owned()),
        Change::StatusUpdate { text } => (EntryKind::StatusUpdate, text.trim().to_owned()),
        Change::Identified { root_cause, text } => (
            EntryKind::Identified,
            own(
                text,
                match root_cause {
                    Some(rc) => format!("Root cause identified: {}", rc.trim()),
                    None => "Root cause identified".into(),
                },
            ),
        ),
        Change::Mitigated { text } => (EntryKind::Mitigated, own(text, "Mitigated".into())),
        Change::Resolved { text } => (EntryKind::Resolved, own(text, "Resolved".into())),
        Change::Reopened { reason } => {
            (EntryKind::Reopened, format!("Reopened: {}", reason.trim()))
        }
        Change::Closed { text } => (
            EntryKind::Closed,
            own(text, "Closed after post-mortem".into()),
        ),
        Change::SeverityChanged { to, reason } => {
            let mut t = format!("Severity changed to {to}");
            if let Some(r) = reason.as_deref().filter(|r| !r.trim().is_empty()) {
                t.push_str(": ");
                t.push_str(r.trim());
            }
            (EntryKind::Severity, t)
        }
        Change::CommanderChanged { to } => (
            EntryKind::Commander,
            format!("Incident commander: {}", to.trim()),
        ),
        Change::HaltSet { reason } => (
            EntryKind::HaltSet,
            format!("Trading halted: {}", reason.trim()),
        ),
        Change::HaltCleared { reason } => (
            EntryKind::HaltCleared,
            format!("Trading resumed: {}", reason.trim()),
        ),
        Change::ActionAdded { text, .. } => (
            EntryKind::ActionItem,
            format!(
                "Action item {} added: {}",
                inc.action_items.len(),
                text.trim()
            ),
        ),
        Change::ActionDone { number } => (
            EntryKind::ActionItem,
            format!(
                "Action item {number} done: {}",
                inc.action_items
                    .get(number - 1)
                    .map_or("", |i| i.text.as_str())
            ),
        ),
        Change::PostMortem(_) => (EntryKind::PostMortem, "Post-mortem updated".into()),
        Change::Linked { backups, drills } => {
            let all: Vec<String> = backups
                .iter()
                .map(|b| format!("backup {b}"))
                .chain(drills.iter().map(|d| format!("drill {d}")))
                .collect();
            (EntryKind::Link, format!("Linked {}", all.join(", ")))
        }
        Change::NotificationFailed {
            channel,
            attempts,
            error,
            about_seq,
        } => (
            EntryKind::NotificationFailed,
            format!(
                "Notification via {channel} failed after {attempts} attempt(s) (event {about_seq}): {error}"
            ),
        ),
    }
}
