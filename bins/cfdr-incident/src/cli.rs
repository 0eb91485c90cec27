//! Command-line flags of cfdr-incident.

use std::path::PathBuf;

use cfdr_incident::{Change, IncidentId, PostMortem, Severity};
use clap::{Parser, Subcommand};

/// Record incidents in the cfdr repository, notify on-call by severity,
/// halt and resume trading, watch the response SLAs and write the report.
///
/// Exit codes: 0 success, 1 an SLA is breached (`overdue`) or trading is
/// halted (`halted`: an incident holds a halt, or an incident's events
/// cannot all be read, which counts as a halt), 2 usage or runtime error
/// (bad input, illegal transition, repository unreachable). A pre-trade
/// check trades only on exit 0 of `halted`.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    cfdr-incident open --severity P0 \"Database connection failures\"   # halts trading\n  \
    cfdr-incident ack INC-20251106-001\n  \
    cfdr-incident status INC-20251106-001 \"Replica promoted, verifying\"\n  \
    cfdr-incident resume-trading INC-20251106-001 --reason \"smoke tests green\"\n  \
    cfdr-incident resolve INC-20251106-001 \"All-clear confirmed\"\n  \
    cfdr-incident report INC-20251106-001 > INC-20251106-001.md\n  \
    cfdr-incident overdue            # for cron: exit 1 when an SLA is breached\n  \
    cfdr-incident halted             # pre-trade check: exit 1 while trading is halted\n\n\
    Secrets come from the environment only: CFDR_PAGERDUTY_ROUTING_KEY,\n\
    CFDR_SLACK_WEBHOOK_URL, CFDR_SMTP_USERNAME, CFDR_SMTP_PASSWORD."
)]
pub(crate) struct Cli {
    /// Config file (default: $CFDR_CONFIG, then /etc/cfdr/cfdr.toml if present).
    #[arg(long, global = true, env = "CFDR_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Repository URL: file:///path, s3://bucket/prefix, gs://..., azblob://..., memory://
    #[arg(short, long, global = true, env = "CFDR_REPOSITORY")]
    pub(crate) repository: Option<String>,
    /// Who records the change (default: $CFDR_AUTHOR, then $USER).
    #[arg(long, global = true, env = "CFDR_AUTHOR")]
    pub(crate) author: Option<String>,
    /// When it happened, if earlier than now (RFC 3339, e.g. 2025-11-06T14:31:00Z);
    /// for `overdue`, the time to check at.
    #[arg(long, global = true)]
    pub(crate) at: Option<jiff::Timestamp>,
    /// Do not send notifications for this change.
    #[arg(long, global = true)]
    pub(crate) no_notify: bool,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Open an incident; a P0 halts trading unless --no-halt.
    Open {
        /// Brief description (the report's title).
        title: String,
        /// P0 (critical), P1 (high), P2 (medium) or P3 (low).
        #[arg(short, long)]
        severity: Severity,
        /// Halt trading now (any severity).
        #[arg(long, conflicts_with = "no_halt")]
        halt: bool,
        /// Do not halt trading for a P0.
        #[arg(long)]
        no_halt: bool,
        /// Incident commander.
        #[arg(long)]
        commander: Option<String>,
        /// Timeline text (default: "Incident opened (P0): TITLE").
        #[arg(long)]
        text: Option<String>,
    },
    /// Acknowledge: someone is on it.
    Ack {
        id: IncidentId,
        text: Option<String>,
    },
    /// Add a note to the timeline, shown by `show` and in the report (not a
    /// status update: it does not reset the 15-minute update SLA).
    Note { id: IncidentId, text: String },
    /// Post a status update (resets the 15-minute update SLA).
    Status { id: IncidentId, text: String },
    /// Mark the root cause identified.
    Identify {
        id: IncidentId,
        /// The root cause.
        #[arg(long)]
        root_cause: Option<String>,
        /// Timeline text.
        text: Option<String>,
    },
    /// Mark the incident mitigated.
    Mitigate {
        id: IncidentId,
        text: Option<String>,
    },
    /// Mark the incident resolved (all-clear).
    Resolve {
        id: IncidentId,
        text: Option<String>,
    },
    /// Reopen a resolved incident.
    Reopen {
        id: IncidentId,
        #[arg(long)]
        reason: String,
    },
    /// Close after the post-mortem (needs a root cause; P0/P1 also lessons).
    Close {
        id: IncidentId,
        text: Option<String>,
    },
    /// Reassess the severity.
    Severity {
        id: IncidentId,
        severity: Severity,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Hand over to a new incident commander.
    Commander { id: IncidentId, name: String },
    /// Halt trading for this incident.
    Halt {
        id: IncidentId,
        #[arg(long)]
        reason: String,
    },
    /// Clear this incident's trading halt (the author and reason are recorded).
    ResumeTrading {
        id: IncidentId,
        #[arg(long)]
        reason: String,
    },
    /// Add or complete action items.
    #[command(subcommand)]
    Action(ActionCommand),
    /// Record post-mortem fields; each given flag replaces the recorded value.
    Postmortem {
        id: IncidentId,
        #[arg(long)]
        summary: Option<String>,
        #[arg(long)]
        root_cause: Option<String>,
        /// A resolution step, in order (repeat; replaces the list).
        #[arg(long = "step")]
        steps: Vec<String>,
        /// A lesson learned (repeat; replaces the list).
        #[arg(long = "lesson")]
        lessons: Vec<String>,
        #[arg(long)]
        financial_impact: Option<String>,
        #[arg(long)]
        users_affected: Option<String>,
    },
    /// Link backups or drills to the incident.
    Link {
        id: IncidentId,
        #[arg(long = "backup")]
        backups: Vec<String>,
        #[arg(long = "drill")]
        drills: Vec<String>,
    },
    /// Show one incident.
    Show {
        id: IncidentId,
        #[arg(long)]
        json: bool,
    },
    /// List incidents, oldest first.
    List {
        /// Only incidents not yet closed.
        #[arg(long)]
        open: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the Markdown report (the runbook's incident template).
    Report { id: IncidentId },
    /// Check every SLA; exit 1 when any is breached.
    Overdue {
        #[arg(long)]
        json: bool,
    },
    /// List incidents that halt trading and incident objects that cannot be
    /// read (each counts as a halt); exit 1 when trading is halted, 0 only
    /// when every incident was read and none halts.
    Halted {
        /// Machine-readable: {"halted": bool, "incidents": [...], "damaged": [{"key", "reason"}]}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ActionCommand {
    /// Add an action item.
    Add {
        id: IncidentId,
        text: String,
        #[arg(long)]
        owner: Option<String>,
    },
    /// Mark action item N (from 1, as listed by `show`) done.
    Done { id: IncidentId, number: usize },
}

fn opt(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

impl Command {
    /// The change a recording command makes and its incident (`None` for
    /// `open`); queries come back as `Err(self)`, boxed.
    pub(crate) fn into_change(
        self,
        halt_on_p0: bool,
    ) -> Result<(Option<IncidentId>, Change), Box<Command>> {
        use Command as C;
        Ok(match self {
            C::Open {
                title,
                severity,
                halt,
                no_halt,
                commander,
                text,
            } => {
                let halt = halt || (severity == Severity::P0 && halt_on_p0 && !no_halt);
                let commander = opt(commander);
                let text = opt(text);
                let open = Change::Opened {
                    title,
                    severity,
                    commander,
                    halt,
                    text,
                };
                (None, open)
            }
            C::Ack { id, text } => (Some(id), Change::Acknowledged { text: opt(text) }),
            C::Note { id, text } => (Some(id), Change::Note { text }),
            C::Status { id, text } => (Some(id), Change::StatusUpdate { text }),
            C::Identify {
                id,
                root_cause,
                text,
            } => {
                let (root_cause, text) = (opt(root_cause), opt(text));
                (Some(id), Change::Identified { root_cause, text })
            }
            C::Mitigate { id, text } => (Some(id), Change::Mitigated { text: opt(text) }),
            C::Resolve { id, text } => (Some(id), Change::Resolved { text: opt(text) }),
            C::Reopen { id, reason } => (Some(id), Change::Reopened { reason }),
            C::Close { id, text } => (Some(id), Change::Closed { text: opt(text) }),
            C::Severity {
                id,
                severity,
                reason,
            } => {
                let reason = opt(reason);
                (
                    Some(id),
                    Change::SeverityChanged {
                        to: severity,
                        reason,
                    },
                )
            }
            C::Commander { id, name } => (Some(id), Change::CommanderChanged { to: name }),
            C::Halt { id, reason } => (Some(id), Change::HaltSet { reason }),
            C::ResumeTrading { id, reason } => (Some(id), Change::HaltCleared { reason }),
            C::Action(ActionCommand::Add { id, text, owner }) => (
                Some(id),
                Change::ActionAdded {
                    text,
                    owner: opt(owner),
                },
            ),
            C::Action(ActionCommand::Done { id, number }) => {
                (Some(id), Change::ActionDone { number })
            }
            C::Postmortem {
                id,
                summary,
                root_cause,
                steps,
                lessons,
                financial_impact,
                users_affected,
            } => {
                let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
                let pm = PostMortem {
                    summary,
                    root_cause,
                    resolution: some(steps),
                    lessons: some(lessons),
                    financial_impact,
                    users_affected,
                };
                (Some(id), Change::PostMortem(pm))
            }
            C::Link {
                id,
                backups,
                drills,
            } => (Some(id), Change::Linked { backups, drills }),
            query => return Err(Box::new(query)),
        })
    }
}
