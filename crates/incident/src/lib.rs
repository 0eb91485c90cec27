//! Incident records for cfdr: the runbook's incident playbook (section 5)
//! as data, with the trading halt that scenarios 4.1 and 4.5 demand.
//!
//! - [`Incident`]: id, title, [`Severity`] P0-P3, [`Status`], commander,
//!   detected/acknowledged/mitigated/resolved/closed times, [`Impact`],
//!   timeline, root cause, resolution steps, [`ActionItem`]s, lessons
//!   learned, [`Links`] to backups and drills, and the trading halt.
//! - [`Event`] / [`Change`]: the append-only facts an incident is made of;
//!   the record is their fold, and [`Change`] documents the state machine
//!   that rejects illegal transitions with a message.
//! - [`Journal`]: the events in the repository, one create-only object per
//!   event, so two writers never lose each other's events.
//! - [`Journal::halt_state`] / [`HaltState`]: whether trading is halted,
//!   read fail-closed for a pre-trade gate: an incident whose events cannot
//!   all be read counts as halting, and the damaged keys are named. Trade
//!   only when it returns `Ok` with [`HaltState::trading_halted`] false.
//! - [`SlaPolicy`]: acknowledgement, status-update and post-mortem
//!   deadlines against a given `now`, with business days.
//! - [`report::render`]: Markdown following the runbook's incident template.
//! - [`notify`]: PagerDuty, Slack and email by severity, with retries; a
//!   failed delivery becomes a timeline entry.
//! - [`IncidentConfig`]: the `[incident]` settings.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use cfdr_incident::{Change, Journal, Severity, SlaPolicy, Stamp, Status};
//! use cfdr_storage::StorageOptions;
//!
//! let journal = Journal::new(StorageOptions::from_url("memory://incident-doc").build()?);
//! let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
//!
//! let opened = journal
//!     .open(
//!         &Stamp::new("alice", t("2025-11-06T14:30:00Z")),
//!         Change::Opened {
//!             title: "Database connection failures".into(),
//!             severity: Severity::P0,
//!             commander: Some("alice".into()),
//!             halt: true,
//!             text: None,
//!         },
//!     )
//!     .await?;
//! let id = opened.incident.id.clone();
//! assert_eq!(id.as_str(), "INC-20251106-001");
//! assert!(opened.incident.trading_halted());
//!
//! // Nobody acknowledged within 5 minutes: the P0 acknowledgement is late.
//! let sla = SlaPolicy::default();
//! let breaches = sla.check(&opened.incident, t("2025-11-06T14:36:00Z"));
//! assert_eq!(breaches.len(), 1);
//!
//! let ack = Change::Acknowledged { text: None };
//! journal.append(&id, &Stamp::new("bob", t("2025-11-06T14:31:00Z")), ack).await?;
//! let resume = Change::HaltCleared { reason: "replica promoted".into() };
//! journal.append(&id, &Stamp::new("bob", t("2025-11-06T14:45:00Z")), resume).await?;
//! let done = Change::Resolved { text: Some("All-clear confirmed".into()) };
//! let inc = journal.append(&id, &Stamp::new("bob", t("2025-11-06T14:50:00Z")), done).await?.incident;
//! assert_eq!(inc.status, Status::Resolved);
//! assert!(!inc.trading_halted());
//!
//! // A resolved incident cannot be resolved again.
//! let again = Change::Resolved { text: None };
//! assert!(journal.append(&id, &Stamp::new("bob", t("2025-11-06T15:00:00Z")), again).await.is_err());
//!
//! let report = cfdr_incident::report::render(&inc);
//! assert!(report.contains("## Timeline (UTC)\n- 14:30 - Incident opened (P0)"));
//! assert!(report.contains("- Trading stopped for: 15 minutes"));
//! # Ok::<(), cfdr_incident::Error>(())
//! # }).unwrap();
//! ```

mod config;
mod error;
mod event;
mod journal;
mod model;
pub mod notify;
mod record;
pub mod report;
mod sla;

pub use config::{
    Channel, EmailConfig, IncidentConfig, PagerDutyConfig, RetryPolicy, Routes, SlackConfig,
    SmtpTls,
};
pub use error::{Error, Result};
pub use event::{Change, EVENT_FORMAT, Event, PostMortem};
pub use journal::{
    Appended, DAMAGE_ADVICE, HaltState, INCIDENTS_PREFIX, Journal, Listing, Loaded, Problem, Stamp,
    event_key, parse_event_key,
};
pub use model::{
    ActionItem, EntryKind, HaltPeriod, Impact, IncidentId, Links, Severity, Status, TimelineEntry,
};
pub use record::Incident;
pub use sla::{Breach, BreachKind, Calendar, Deadline, SlaPolicy};
