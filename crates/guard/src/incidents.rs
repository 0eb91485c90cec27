//! Open incidents and the trading halt, read incrementally.
//!
//! [`cfdr_incident::Journal::halt_state`] lists `incidents/` recursively
//! and reads every event object each time. The guard does this every
//! `incident-interval`, and a recursive listing costs what the backend
//! charges for walking the bucket (on some S3 servers every object of it),
//! so the guard lists one level at a time and keeps what it read:
//!
//! - `incidents/` one level deep: the incident folders (one request per
//!   1,000 incidents);
//! - each folder that can still change the verdict, one level deep: an
//!   incident not yet seen, one that is not closed (a resolved incident can
//!   be reopened and halt again), and one with damaged objects;
//! - a closed incident's folder in turn, one per check: the state machine
//!   lets nothing but notes, action items, links and failed notifications
//!   follow a close, and cfdr's writers check it, so only objects written
//!   past cfdr (damage, a forged event) can make a closed incident count
//!   as a halt again; they are found within as many checks as there are
//!   closed incidents, and from then on the folder is listed every check
//!   until it is repaired.
//!
//! Then it reads only objects it has not read yet, or whose size or
//! modification time changed (a damaged event repaired in place);
//! unreadable ones are read again each check. Events are create-only
//! objects, so a read event stays valid. The fold is the journal's own
//! ([`Incident::fold`]), with the same fail-closed rules: an object inside
//! an incident's folder that cannot be read or applied counts as a halt (a
//! folder inside an incident's folder, which cfdr never writes, too).

use std::collections::{BTreeMap, BTreeSet};

use cfdr_incident::{
    Event, INCIDENTS_PREFIX, Incident, IncidentId, Problem, Status, parse_event_key,
};
use cfdr_storage::{Error as StorageError, ObjectMeta, Store};
use futures::StreamExt;

use crate::status::OpenIncident;

const READS: usize = 8;

#[derive(Clone, Debug)]
enum Read {
    Event(Box<Event>),
    Bad(String),
}

#[derive(Clone, Debug)]
struct Seen {
    size: u64,
    modified: Option<jiff::Timestamp>,
    read: Read,
}

/// What one check found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentsNow {
    /// Incidents holding the halt: id and title.
    pub halting: Vec<(IncidentId, String)>,
    /// Objects that count as a halt because they cannot be read or applied.
    pub damaged: Vec<Problem>,
    /// Open (not resolved or closed) incidents.
    pub open: Vec<OpenIncident>,
}

/// One incident folder as last listed.
#[derive(Debug, Default)]
struct Folder {
    /// Its objects (and sub-folders), one level deep.
    keys: Vec<ObjectMeta>,
    /// Closed and whole: listed in turn, not every check.
    settled: bool,
    /// Its fold, kept until it is listed again.
    folded: Option<Folded>,
}

/// What one incident folder contributes to the verdict.
#[derive(Debug)]
struct Folded {
    halting: Option<(IncidentId, String)>,
    open: Option<OpenIncident>,
    problems: Vec<Problem>,
    /// Closed (not merely resolved, which can be reopened).
    closed: bool,
}

const NOT_EVENT: &str = "not an incident event (expected incidents/INC-YYYYMMDD-NNN/NNNNNNNN.json)";

/// The incident log, kept in memory between checks.
#[derive(Debug, Default)]
pub struct IncidentView {
    seen: BTreeMap<String, Seen>,
    /// Incident folders (`incidents/<id>/`) by key.
    folders: BTreeMap<String, Folder>,
    /// Objects directly under `incidents/`: no incident's, only reported.
    stray: Vec<ObjectMeta>,
    /// The settled folder listed last, to take the next one in turn.
    swept: Option<String>,
    /// Listing and read requests made so far.
    pub requests: u64,
}

/// `incidents/<id>/` of `incidents/<id>/<file>`.
fn folder_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(INCIDENTS_PREFIX)?;
    Some(&key[..INCIDENTS_PREFIX.len() + rest.find('/')? + 1])
}

impl IncidentView {
    /// The folders to list this check: every one that can still change the
    /// verdict, and the next settled one in turn.
    fn due(&mut self) -> Vec<String> {
        let mut due: Vec<String> = self
            .folders
            .iter()
            .filter(|(_, f)| !f.settled)
            .map(|(k, _)| k.clone())
            .collect();
        let settled = || self.folders.iter().filter(|(_, f)| f.settled);
        let next = settled()
            .find(|(k, _)| self.swept.as_ref().is_none_or(|s| *k > s))
            .or_else(|| settled().next())
            .map(|(k, _)| k.clone());
        if let Some(k) = next {
            self.swept = Some(k.clone());
            due.push(k);
        }
        due
    }

    /// Brings the view up to date and folds it.
    pub async fn refresh(&mut self, store: &Store) -> cfdr_storage::Result<IncidentsNow> {
        self.requests += 1;
        let top = store.list_after(INCIDENTS_PREFIX, false, None).await?;
        let (dirs, files): (Vec<ObjectMeta>, Vec<ObjectMeta>) =
            top.into_iter().partition(|m| m.key.ends_with('/'));
        self.stray = files;
        let dirs: BTreeSet<String> = dirs.into_iter().map(|m| m.key).collect();
        self.folders.retain(|k, _| dirs.contains(k));
        self.seen
            .retain(|k, _| folder_of(k).is_some_and(|d| dirs.contains(d)));
        for d in &dirs {
            self.folders.entry(d.clone()).or_default();
        }
        let due = self.due();
        self.requests += due.len() as u64;
        let listings: Vec<_> = futures::stream::iter(due.into_iter().map(|dir| {
            let store = store.clone();
            async move {
                let got = store.list_after(&dir, false, None).await;
                (dir, got)
            }
        }))
        .buffered(READS)
        .collect()
        .await;
        let mut wanted = Vec::new();
        for (dir, got) in listings {
            let keys = got?;
            let present: BTreeSet<&str> = keys.iter().map(|m| m.key.as_str()).collect();
            self.seen
                .retain(|k, _| !k.starts_with(&dir) || present.contains(k.as_str()));
            wanted.extend(
                keys.iter()
                    .filter(|m| parse_event_key(&m.key).is_some())
                    .filter(|m| match self.seen.get(&m.key) {
                        None
                        | Some(Seen {
                            read: Read::Bad(_), ..
                        }) => true,
                        Some(s) => s.size != m.size || s.modified != m.modified,
                    })
                    .cloned(),
            );
            if let Some(f) = self.folders.get_mut(&dir) {
                f.keys = keys;
                f.folded = None;
            }
        }
        self.requests += wanted.len() as u64;
        let reads = wanted.into_iter().map(|m| {
            let store = store.clone();
            async move {
                let got = store.get(&m.key).await;
                (m, got)
            }
        });
        let fetched: Vec<_> = futures::stream::iter(reads).buffered(READS).collect().await;
        for (meta, got) in fetched {
            let Some((id, seq)) = parse_event_key(&meta.key) else {
                continue;
            };
            let read = match got {
                Ok(bytes) => match serde_json::from_slice::<Event>(&bytes) {
                    Ok(ev) if ev.incident == id && ev.seq == seq => Read::Event(Box::new(ev)),
                    Ok(ev) => Read::Bad(format!(
                        "holds event {} of {}, not event {seq} of {id}",
                        ev.seq, ev.incident
                    )),
                    Err(e) => Read::Bad(format!("not a valid event document: {e}")),
                },
                // Deleted between the listing and the read.
                Err(StorageError::NotFound { .. }) => {
                    self.seen.remove(&meta.key);
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.seen.insert(
                meta.key.clone(),
                Seen {
                    size: meta.size,
                    modified: meta.modified,
                    read,
                },
            );
        }
        Ok(self.fold())
    }

    /// Folds the folders listed this check, and every one with what was
    /// kept of the others.
    fn fold(&mut self) -> IncidentsNow {
        let mut problems: Vec<Problem> = self
            .stray
            .iter()
            .map(|m| Problem {
                key: m.key.clone(),
                reason: NOT_EVENT.into(),
            })
            .collect();
        let mut now = IncidentsNow::default();
        for folder in self.folders.values_mut() {
            let folded = folder
                .folded
                .get_or_insert_with(|| fold_folder(&folder.keys, &self.seen));
            folder.settled = folded.closed && folded.problems.is_empty();
            now.halting.extend(folded.halting.clone());
            now.open.extend(folded.open.clone());
            problems.extend(folded.problems.iter().cloned());
        }
        problems.sort_by(|a, b| a.key.cmp(&b.key));
        now.damaged = problems
            .into_iter()
            .filter(Problem::counts_as_halt)
            .collect();
        now
    }
}

/// The journal's fold of one incident folder: its events in order through
/// the state machine, and every object that cannot be read or applied.
fn fold_folder(keys: &[ObjectMeta], seen: &BTreeMap<String, Seen>) -> Folded {
    let mut out = Folded {
        halting: None,
        open: None,
        problems: Vec::new(),
        closed: false,
    };
    let mut group: Option<(IncidentId, Vec<&Event>)> = None;
    for m in keys {
        let Some((id, _)) = parse_event_key(&m.key) else {
            out.problems.push(Problem {
                key: m.key.clone(),
                reason: NOT_EVENT.into(),
            });
            continue;
        };
        let events = &mut group.get_or_insert_with(|| (id, Vec::new())).1;
        match seen.get(&m.key).map(|s| &s.read) {
            Some(Read::Event(ev)) => events.push(ev),
            Some(Read::Bad(reason)) => out.problems.push(Problem {
                key: m.key.clone(),
                reason: reason.clone(),
            }),
            None => {}
        }
    }
    let Some((id, mut events)) = group else {
        return out;
    };
    events.sort_by_key(|e| e.seq);
    let (incident, rejected) = Incident::fold(events.iter().copied());
    for (seq, err) in rejected {
        out.problems.push(Problem {
            key: cfdr_incident::event_key(&id, seq),
            reason: format!("ignored: {err}"),
        });
    }
    let Some(i) = incident else {
        out.problems.push(Problem {
            key: format!("{INCIDENTS_PREFIX}{id}/"),
            reason: "it has no readable opening event".into(),
        });
        return out;
    };
    out.closed = i.status == Status::Closed;
    if i.trading_halted() {
        out.halting = Some((i.id.clone(), i.title.clone()));
    }
    if i.status.is_active() {
        out.open = Some(OpenIncident {
            id: i.id.to_string(),
            title: i.title.clone(),
            severity: format!("{:?}", i.severity),
            halt: i.trading_halted(),
        });
    }
    out
}
