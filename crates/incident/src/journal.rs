//! The event log in the repository: one create-only object per event.
//!
//! ```text
//! incidents/<id>/<seq:08>.json     one event, e.g. incidents/INC-20251106-001/00000003.json
//! ```
//!
//! To append, a writer reads the incident's events, folds them, checks the
//! new event against the result and creates the object for the next
//! sequence number with a create-only write. If another writer took that
//! number first, the write fails with `AlreadyExists` and the writer starts
//! over from a fresh read, so its event is checked against the other's and
//! neither is lost. Incident ids are claimed the same way: opening creates
//! event 1 of the next free `INC-YYYYMMDD-NNN`.

use std::collections::BTreeMap;
use std::fmt;

use cfdr_storage::Store;
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use serde::Serialize;

use crate::event::{Change, EVENT_FORMAT, Event};
use crate::model::IncidentId;
use crate::record::Incident;
use crate::{Error, Result};

/// Prefix of every incident object in the repository.
pub const INCIDENTS_PREFIX: &str = "incidents/";

/// Attempts before an append gives up under contention.
const MAX_ATTEMPTS: u32 = 64;

/// Object key of event `seq` of incident `id`.
pub fn event_key(id: &IncidentId, seq: u64) -> String {
    format!("{INCIDENTS_PREFIX}{id}/{seq:08}.json")
}

/// Who records an event, when it happened and when it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Author (a person or a system, e.g. `alertmanager`).
    pub author: String,
    /// When it happened.
    pub at: Timestamp,
    /// When it is recorded.
    pub recorded: Timestamp,
}

impl Stamp {
    /// An event happening as it is recorded, at `now`.
    pub fn new(author: impl Into<String>, now: Timestamp) -> Self {
        Self {
            author: author.into(),
            at: now,
            recorded: now,
        }
    }

    /// The same, for something that happened earlier (or later) at `at`.
    pub fn happened_at(mut self, at: Timestamp) -> Self {
        self.at = at;
        self
    }
}

/// An object under `incidents/` that could not be used, with its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl Problem {
    /// Whether this damaged object counts as a trading halt: everything
    /// inside an incident's folder does (cfdr writes only
    /// `incidents/<id>/<seq>.json` there, so it may be an event with a
    /// damaged name or body). Objects directly under `incidents/` belong to
    /// no incident and are only reported.
    pub fn counts_as_halt(&self) -> bool {
        self.key
            .strip_prefix(INCIDENTS_PREFIX)
            .is_some_and(|rest| rest.contains('/'))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// An incident read from the repository, with its events and the objects
/// that were skipped (corrupt, foreign or rejected by the state machine).
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The record.
    pub incident: Incident,
    /// Every readable event, by sequence number.
    pub events: Vec<Event>,
    /// Skipped objects.
    pub problems: Vec<Problem>,
}

impl Loaded {
    /// Whether some of the incident's objects could not be read or applied:
    /// its record may miss a halt, so it counts as halting.
    pub fn is_damaged(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// Every incident in the repository.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Readable incidents, by id.
    pub incidents: Vec<Loaded>,
    /// Unreadable incidents and objects.
    pub problems: Vec<Problem>,
}

impl Listing {
    /// Every object that could not be read or applied, of readable
    /// incidents and besides them, by key.
    pub fn damaged(&self) -> Vec<Problem> {
        let mut all: Vec<Problem> = self
            .problems
            .iter()
            .chain(self.incidents.iter().flat_map(|l| &l.problems))
            .cloned()
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// The trading halt as this listing shows it, fail-closed.
    pub fn halt_state(&self) -> HaltState {
        HaltState {
            halting: self
                .incidents
                .iter()
                .map(|l| &l.incident)
                .filter(|i| i.trading_halted())
                .cloned()
                .collect(),
            damaged: self
                .damaged()
                .into_iter()
                .filter(Problem::counts_as_halt)
                .collect(),
        }
    }
}

/// What to do about damaged incident objects, for messages.
pub const DAMAGE_ADVICE: &str = "trading counts as halted while an incident's objects cannot be read: \
restore each named object from a copy of the repository (bucket versioning, a replica); if none \
exists, decide by hand whether that incident still halts trading, move the object out of \
incidents/ and record the decision (`cfdr-incident halt ID --reason ...` or `resume-trading`)";

/// Whether trading may go on, read fail-closed: what a pre-trade gate asks
/// ([`Journal::halt_state`], `cfdr-incident halted`).
///
/// An event that cannot be read may be the one that halts trading, so an
/// incident with damaged objects (corrupt or truncated, foreign, rejected by
/// the state machine, or an unreadable opening event) counts as halting
/// until the objects are repaired; see [`DAMAGE_ADVICE`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use cfdr_incident::{Change, Journal, Severity, Stamp, event_key};
/// use cfdr_storage::StorageOptions;
///
/// let journal = Journal::new(StorageOptions::from_url("memory://halt-state-doc").build()?);
/// let now: jiff::Timestamp = "2025-11-06T14:30:00Z".parse().unwrap();
/// let opened = Change::Opened {
///     title: "Exchange keys leaked".into(),
///     severity: Severity::P1,
///     commander: None,
///     halt: true,
///     text: None,
/// };
/// let inc = journal.open(&Stamp::new("alice", now), opened).await?.incident;
/// let state = journal.halt_state().await?;
/// assert!(state.trading_halted());
/// assert_eq!(state.halting[0].id, inc.id);
///
/// // The event that halts trading is damaged: still halted, and the key is named.
/// journal.store().put(&event_key(&inc.id, 1), "{\"format\":1,\"inc").await?;
/// let state = journal.halt_state().await?;
/// assert!(state.trading_halted());
/// assert!(state.halting.is_empty());
/// assert!(state.damaged[0].key.starts_with("incidents/INC-20251106-001/"));
/// # Ok::<(), cfdr_incident::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default, Serialize)]
pub struct HaltState {
    /// Readable incidents that hold a trading halt, by id.
    pub halting: Vec<Incident>,
    /// Objects inside incident folders that could not be read or applied,
    /// by key; each counts as a halt.
    pub damaged: Vec<Problem>,
}

impl HaltState {
    /// Whether trading is halted: an incident holds a halt or an incident's
    /// objects cannot all be read.
    pub fn trading_halted(&self) -> bool {
        !self.halting.is_empty() || !self.damaged.is_empty()
    }

    /// One line per cause, for messages (`INC-... halts trading since ...`,
    /// `incidents/.../00000003.json cannot be read: ...`).
    pub fn reasons(&self) -> Vec<String> {
        let halts = self.halting.iter().map(|i| match i.current_halt() {
            Some(h) => format!(
                "{} halts trading since {} ({})",
                i.id,
                h.from.round(jiff::Unit::Second).unwrap_or(h.from),
                h.reason
            ),
            None => format!("{} halts trading", i.id),
        });
        let damaged = self
            .damaged
            .iter()
            .map(|p| format!("{p} (counts as a trading halt)"));
        halts.chain(damaged).collect()
    }
}

/// The result of an append: the stored event and the record after it.
#[derive(Clone, Debug)]
pub struct Appended {
    /// The record including the event.
    pub incident: Incident,
    /// The stored event.
    pub event: Event,
}

/// The incident log of one repository.
#[derive(Clone, Debug)]
pub struct Journal {
    store: Store,
}

/// The incident and sequence number of an event key,
/// `incidents/<id>/<seq:08>.json`; `None` for any other key.
pub fn parse_event_key(key: &str) -> Option<(IncidentId, u64)> {
    let rest = key.strip_prefix(INCIDENTS_PREFIX)?;
    let (id, file) = rest.split_once('/')?;
    let seq = file.strip_suffix(".json")?;
    if seq.len() != 8 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((IncidentId::parse(id).ok()?, seq.parse().ok()?))
}

impl Journal {
    /// A journal over `store` (usually [`cfdr_storage::Repository::store`]).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens a new incident: claims the next free id of the UTC day of
    /// `stamp.at` by creating its first event.
    pub async fn open(&self, stamp: &Stamp, change: Change) -> Result<Appended> {
        if !matches!(change, Change::Opened { .. }) {
            return Err(Error::IllegalTransition {
                id: "(new incident)".into(),
                action: change.action(),
                reason: "a new incident starts with an opening event".into(),
            });
        }
        let day = IncidentId::new(stamp.at, 0).day().to_owned();
        let mut number = self
            .store
            .list(INCIDENTS_PREFIX)
            .await?
            .iter()
            .filter_map(|m| parse_event_key(&m.key))
            .filter(|(id, _)| id.day() == day)
            .map(|(id, _)| id.number())
            .max()
            .unwrap_or(0);
        for _ in 0..MAX_ATTEMPTS {
            number += 1;
            let event = Event {
                format: EVENT_FORMAT,
                incident: IncidentId::new(stamp.at, number),
                seq: 1,
                at: stamp.at,
                recorded: stamp.recorded,
                author: stamp.author.trim().to_owned(),
                change: change.clone(),
            };
            let incident = Incident::open(&event)?;
            match self.write(&event).await {
                Ok(()) => return Ok(Appended { incident, event }),
                Err(Error::Storage(cfdr_storage::Error::AlreadyExists { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Contention {
            id: format!("INC-{day}-*"),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Appends `change` to incident `id` if the state machine allows it
    /// after every event stored so far.
    pub async fn append(&self, id: &IncidentId, stamp: &Stamp, change: Change) -> Result<Appended> {
        for attempt in 0..MAX_ATTEMPTS {
            let (loaded, next) = self.load_with_next(id).await?;
            let event = Event {
                format: EVENT_FORMAT,
                incident: id.clone(),
                seq: next,
                at: stamp.at,
                recorded: stamp.recorded,
                author: stamp.author.trim().to_owned(),
                change: change.clone(),
            };
            let mut incident = loaded.incident;
            incident.apply(&event)?;
            match self.write(&event).await {
                Ok(()) => return Ok(Appended { incident, event }),
                Err(Error::Storage(cfdr_storage::Error::AlreadyExists { key })) => {
                    tracing::debug!(%key, attempt, "another writer took this event number; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt % 8)))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Contention {
            id: id.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn write(&self, event: &Event) -> Result<()> {
        let key = event_key(&event.incident, event.seq);
        let bytes = serde_json::to_vec_pretty(event).map_err(|e| Error::InvalidSetting {
            setting: "event".into(),
            reason: e.to_string(),
        })?;
        self.store.create_if_absent(&key, bytes).await?;
        Ok(())
    }

    /// Reads incident `id`. Corrupt or rejected events are skipped and
    /// reported in [`Loaded::problems`] with their keys.
    pub async fn load(&self, id: &IncidentId) -> Result<Loaded> {
        Ok(self.load_with_next(id).await?.0)
    }

    /// The incident and the next free sequence number (after every object,
    /// readable or not).
    async fn load_with_next(&self, id: &IncidentId) -> Result<(Loaded, u64)> {
        let prefix = format!("{INCIDENTS_PREFIX}{id}/");
        let keys: Vec<String> = self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        let (mut groups, stray) = self.read(keys).await?;
        let Some(mut group) = groups.remove(id) else {
            return match stray.first() {
                Some(p) => Err(Error::Unreadable {
                    id: id.to_string(),
                    reason: p.to_string(),
                }),
                None => Err(Error::UnknownIncident { id: id.to_string() }),
            };
        };
        group.problems.extend(stray);
        let next = group.max_seq + 1;
        Ok((assemble(id, group)?, next))
    }

    /// Every incident, by id. Unreadable incidents and stray objects are
    /// reported in [`Listing::problems`].
    pub async fn list(&self) -> Result<Listing> {
        let keys: Vec<String> = self
            .store
            .list(INCIDENTS_PREFIX)
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        let (groups, mut problems) = self.read(keys).await?;
        let mut incidents = Vec::new();
        for (id, group) in groups {
            match assemble(&id, group) {
                Ok(loaded) => incidents.push(loaded),
                Err(e) => problems.push(Problem {
                    key: format!("{INCIDENTS_PREFIX}{id}/"),
                    reason: e.to_string(),
                }),
            }
        }
        Ok(Listing {
            incidents,
            problems,
        })
    }

    /// Whether trading is halted, read fail-closed: the incidents that hold
    /// a halt and every incident object that cannot be read, which counts as
    /// a halt (see [`HaltState`]). A pre-trade gate calls this and lets
    /// trading go on only when [`HaltState::trading_halted`] is false; an
    /// `Err` (repository unreachable) must stop trading too.
    pub async fn halt_state(&self) -> Result<HaltState> {
        Ok(self.list().await?.halt_state())
    }

    /// Reads and parses objects, grouped by incident; objects whose keys are
    /// not event keys are returned apart.
    async fn read(&self, keys: Vec<String>) -> Result<(BTreeMap<IncidentId, Group>, Vec<Problem>)> {
        let mut stray = Vec::new();
        let mut groups: BTreeMap<IncidentId, Group> = BTreeMap::new();
        let mut wanted = Vec::new();
        for key in keys {
            match parse_event_key(&key) {
                Some((id, seq)) => {
                    let g = groups.entry(id.clone()).or_default();
                    g.max_seq = g.max_seq.max(seq);
                    wanted.push((key, id, seq));
                }
                None => stray.push(Problem {
                    key,
                    reason:
                        "not an incident event (expected incidents/INC-YYYYMMDD-NNN/NNNNNNNN.json)"
                            .into(),
                }),
            }
        }
        let store = &self.store;
        let fetched: Vec<_> = futures::stream::iter(wanted)
            .map(|(key, id, seq)| async move {
                let bytes = store.get(&key).await?;
                Ok::<_, Error>((key, id, seq, bytes))
            })
            .buffered(8)
            .try_collect()
            .await?;
        for (key, id, seq, bytes) in fetched {
            let Some(g) = groups.get_mut(&id) else {
                continue;
            };
            match serde_json::from_slice::<Event>(&bytes) {
                Ok(ev) if ev.incident == id && ev.seq == seq => g.events.push(ev),
                Ok(ev) => g.problems.push(Problem {
                    key,
                    reason: format!(
                        "holds event {} of {}, not event {seq} of {id}",
                        ev.seq, ev.incident
                    ),
                }),
                Err(e) => g.problems.push(Problem {
                    key,
                    reason: format!("not a valid event document: {e}"),
                }),
            }
        }
        for g in groups.values_mut() {
            g.events.sort_by_key(|e| e.seq);
        }
        Ok((groups, stray))
    }
}

/// One incident's objects as read.
#[derive(Debug, Default)]
struct Group {
    events: Vec<Event>,
    max_seq: u64,
    problems: Vec<Problem>,
}

/// Folds one incident's events; fails when no readable opening event exists.
fn assemble(id: &IncidentId, group: Group) -> Result<Loaded> {
    let Group {
        events,
        mut problems,
        ..
    } = group;
    let (incident, rejected) = Incident::fold(&events);
    for (seq, err) in rejected {
        problems.push(Problem {
            key: event_key(id, seq),
            reason: format!("ignored: {err}"),
        });
    }
    problems.sort_by(|a, b| a.key.cmp(&b.key));
    match incident {
        Some(incident) => Ok(Loaded {
            incident,
            events,
            problems,
        }),
        None => {
            let reason = if problems.is_empty() {
                "it has no opening event".to_owned()
            } else {
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            Err(Error::Unreadable {
                id: id.to_string(),
                reason,
            })
        }
    }
}
