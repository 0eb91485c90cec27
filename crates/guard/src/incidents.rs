//! Open incidents and the trading halt, read incrementally.
//!
//! [`cfdr_incident::Journal::halt_state`] lists `incidents/` and reads
//! every event object each time. The guard does this every
//! `incident-interval`, so it keeps what it read: a check lists
//! `incidents/` (one request per 1,000 objects) and reads only objects it
//! has not read yet, or whose size or modification time changed (a damaged
//! event repaired in place); unreadable ones are read again each check.
//! Events are create-only objects, so a read event stays valid. The fold is
//! the journal's own ([`Incident::fold`]), with the same fail-closed rules:
//! an object inside an incident's folder that cannot be read or applied
//! counts as a halt.

use std::collections::BTreeMap;

use cfdr_incident::{Event, INCIDENTS_PREFIX, Incident, IncidentId, Problem};
use cfdr_storage::{Error as StorageError, Store};
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

/// The incident log, kept in memory between checks.
#[derive(Debug, Default)]
pub struct IncidentView {
    seen: BTreeMap<String, Seen>,
    /// Listing and read requests made so far.
    pub requests: u64,
}

fn parse_key(key: &str) -> Option<(IncidentId, u64)> {
    let rest = key.strip_prefix(INCIDENTS_PREFIX)?;
    let (id, file) = rest.split_once('/')?;
    let seq = file.strip_suffix(".json")?;
    if seq.len() != 8 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((IncidentId::parse(id).ok()?, seq.parse().ok()?))
}

impl IncidentView {
    /// Brings the view up to date and folds it.
    pub async fn refresh(&mut self, store: &Store) -> cfdr_storage::Result<IncidentsNow> {
        self.requests += 1;
        let listing = store.list(INCIDENTS_PREFIX).await?;
        let present: std::collections::BTreeSet<&str> =
            listing.iter().map(|m| m.key.as_str()).collect();
        self.seen.retain(|k, _| present.contains(k.as_str()));
        let wanted: Vec<cfdr_storage::ObjectMeta> = listing
            .iter()
            .filter(|m| parse_key(&m.key).is_some())
            .filter(|m| match self.seen.get(&m.key) {
                None
                | Some(Seen {
                    read: Read::Bad(_), ..
                }) => true,
                Some(s) => s.size != m.size || s.modified != m.modified,
            })
            .cloned()
            .collect();
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
            let Some((id, seq)) = parse_key(&meta.key) else {
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
        Ok(self.fold(&listing))
    }

    fn fold(&self, listing: &[cfdr_storage::ObjectMeta]) -> IncidentsNow {
        let mut problems = Vec::new();
        let mut groups: BTreeMap<IncidentId, Vec<&Event>> = BTreeMap::new();
        for m in listing {
            let Some((id, _)) = parse_key(&m.key) else {
                problems.push(Problem {
                    key: m.key.clone(),
                    reason:
                        "not an incident event (expected incidents/INC-YYYYMMDD-NNN/NNNNNNNN.json)"
                            .into(),
                });
                continue;
            };
            let group = groups.entry(id).or_default();
            match self.seen.get(&m.key).map(|s| &s.read) {
                Some(Read::Event(ev)) => group.push(ev),
                Some(Read::Bad(reason)) => problems.push(Problem {
                    key: m.key.clone(),
                    reason: reason.clone(),
                }),
                None => {}
            }
        }
        let mut now = IncidentsNow::default();
        for (id, mut events) in groups {
            events.sort_by_key(|e| e.seq);
            let (incident, rejected) = Incident::fold(events.iter().copied());
            for (seq, err) in rejected {
                problems.push(Problem {
                    key: cfdr_incident::event_key(&id, seq),
                    reason: format!("ignored: {err}"),
                });
            }
            let Some(i) = incident else {
                problems.push(Problem {
                    key: format!("{INCIDENTS_PREFIX}{id}/"),
                    reason: "it has no readable opening event".into(),
                });
                continue;
            };
            if i.trading_halted() {
                now.halting.push((i.id.clone(), i.title.clone()));
            }
            if i.status.is_active() {
                now.open.push(OpenIncident {
                    id: i.id.to_string(),
                    title: i.title.clone(),
                    severity: format!("{:?}", i.severity),
                    halt: i.trading_halted(),
                });
            }
        }
        problems.sort_by(|a, b| a.key.cmp(&b.key));
        now.damaged = problems
            .into_iter()
            .filter(Problem::counts_as_halt)
            .collect();
        now
    }
}
