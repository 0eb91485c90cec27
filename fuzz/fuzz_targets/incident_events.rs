//! Incident event documents (`incidents/<id>/<seq>.json`), folded into an
//! incident record and rendered as the report, the listing and `show`
//! print it. Events are separated by NUL bytes.
#![no_main]

use cfdr_incident::{Event, Incident, report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let events: Vec<Event> = data
        .split(|b| *b == 0)
        .filter_map(|doc| serde_json::from_slice(doc).ok())
        .collect();
    if let Some(text) = data.split(|b| *b == 0).next()
        && let Ok(text) = std::str::from_utf8(text)
    {
        let _ = text.trim().parse::<cfdr_incident::IncidentId>();
    }
    let (incident, _rejected) = Incident::fold(&events);
    if let Some(incident) = incident {
        let _ = incident.trading_halted();
        let _ = incident.trading_stopped();
        let _ = report::render(&incident);
        let _ = report::show(&incident);
        let _ = report::list_line(&incident);
    }
});
