//! Events: the append-only facts an incident is made of.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::{IncidentId, Severity};

/// Version of the event document format.
pub const EVENT_FORMAT: u32 = 1;

/// One stored event: who did what to which incident, and when.
///
/// `at` is when it happened (given with `--at` when recording after the
/// fact); `recorded` is when it was written. `seq` numbers an incident's
/// events 1, 2, 3, ... in the order they were accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Format version of this document.
    pub format: u32,
    /// The incident.
    pub incident: IncidentId,
    /// Sequence number within the incident, from 1.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// When it was recorded.
    pub recorded: Timestamp,
    /// Who recorded it.
    pub author: String,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
}

/// What an event changes. The state machine (checked by
/// [`crate::Incident::apply`]):
///
/// | change | allowed when | status after |
/// |---|---|---|
/// | `opened` | first event only (seq 1) | investigating |
/// | `acknowledged` | investigating, identified or mitigated; once | unchanged |
/// | `identified` | investigating | identified |
/// | `mitigated` | investigating or identified | mitigated |
/// | `resolved` | investigating, identified or mitigated (acknowledgement not required) | resolved |
/// | `reopened` | resolved (never closed) | investigating |
/// | `closed` | resolved, trading not halted by it, root cause recorded; P0/P1 also lessons learned | closed |
/// | `status-update`, `severity-changed`, `commander-changed`, `halt-set`, `halt-cleared`, `post-mortem` | not closed | unchanged |
/// | `note`, `action-added`, `action-done`, `linked` | any state (follow-ups continue after closing) | unchanged |
/// | `notification-failed` | any state | unchanged |
///
/// Further rules: `halt-set` only when this incident does not already halt
/// trading and `halt-cleared` only when it does, with a non-empty reason;
/// `severity-changed` must change the severity; `action-done` names an
/// existing, open item; no event may claim to have happened before the
/// incident was detected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// The incident is opened.
    Opened {
        /// Brief description (the report's title).
        title: String,
        /// Severity.
        severity: Severity,
        /// Incident commander.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commander: Option<String>,
        /// Whether trading is halted from the start.
        halt: bool,
        /// Timeline text (default: generated).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Someone is on it.
    Acknowledged {
        /// Timeline text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A note for the timeline.
    Note {
        /// The note.
        text: String,
    },
    /// A status update for stakeholders.
    StatusUpdate {
        /// The update.
        text: String,
    },
    /// The root cause is known.
    Identified {
        /// The root cause, when known well enough to write down.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_cause: Option<String>,
        /// Timeline text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// The damage is contained.
    Mitigated {
        /// Timeline text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Back to normal (all-clear).
    Resolved {
        /// Timeline text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// The problem came back after resolution.
    Reopened {
        /// Why.
        reason: String,
    },
    /// The post-mortem is done.
    Closed {
        /// Timeline text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Severity reassessed.
    SeverityChanged {
        /// The new severity.
        to: Severity,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A new incident commander.
    CommanderChanged {
        /// The new commander.
        to: String,
    },
    /// This incident halts trading.
    HaltSet {
        /// Why.
        reason: String,
    },
    /// This incident no longer halts trading.
    HaltCleared {
        /// Why it is safe to trade again.
        reason: String,
    },
    /// A follow-up task.
    ActionAdded {
        /// What to do.
        text: String,
        /// Who owns it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// A follow-up task is done.
    ActionDone {
        /// Its number, from 1, in the order items were added.
        number: usize,
    },
    /// Post-mortem fields; each given field replaces the recorded one.
    PostMortem(PostMortem),
    /// Related backups or drills.
    Linked {
        /// Backup ids.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        backups: Vec<String>,
        /// Drill ids.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        drills: Vec<String>,
    },
    /// A notification could not be delivered after its retries.
    NotificationFailed {
        /// The channel (`pagerduty`, `slack`, `email`).
        channel: String,
        /// The event that was being announced.
        about_seq: u64,
        /// Attempts made.
        attempts: u32,
        /// The last error (never contains secrets).
        error: String,
    },
}

/// Post-mortem fields (the report's Summary, Impact, Root Cause,
/// Resolution and Lessons Learned sections).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostMortem {
    /// Summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Root cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<String>,
    /// Resolution steps, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Vec<String>>,
    /// Lessons learned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lessons: Option<Vec<String>>,
    /// Financial impact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub financial_impact: Option<String>,
    /// Users affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_affected: Option<String>,
}

impl PostMortem {
    /// Whether no field is given.
    pub fn is_empty(&self) -> bool {
        *self == PostMortem::default()
    }
}

impl Change {
    /// The verb used in messages ("resolve", "halt trading", ...).
    pub fn action(&self) -> &'static str {
        match self {
            Change::Opened { .. } => "open",
            Change::Acknowledged { .. } => "acknowledge",
            Change::Note { .. } => "add a note",
            Change::StatusUpdate { .. } => "post a status update",
            Change::Identified { .. } => "mark identified",
            Change::Mitigated { .. } => "mitigate",
            Change::Resolved { .. } => "resolve",
            Change::Reopened { .. } => "reopen",
            Change::Closed { .. } => "close",
            Change::SeverityChanged { .. } => "change severity",
            Change::CommanderChanged { .. } => "change commander",
            Change::HaltSet { .. } => "halt trading",
            Change::HaltCleared { .. } => "resume trading",
            Change::ActionAdded { .. } => "add an action item",
            Change::ActionDone { .. } => "complete an action item",
            Change::PostMortem(_) => "edit the post-mortem",
            Change::Linked { .. } => "link",
            Change::NotificationFailed { .. } => "record a failed notification",
        }
    }

    /// Whether stakeholders hear about this change (it counts as a status
    /// update for the SLA and is announced on the severity's channels).
    pub fn is_communicated(&self) -> bool {
        matches!(
            self,
            Change::Opened { .. }
                | Change::Acknowledged { .. }
                | Change::StatusUpdate { .. }
                | Change::Identified { .. }
                | Change::Mitigated { .. }
                | Change::Resolved { .. }
                | Change::Reopened { .. }
                | Change::Closed { .. }
                | Change::SeverityChanged { .. }
                | Change::HaltSet { .. }
                | Change::HaltCleared { .. }
        )
    }
}
