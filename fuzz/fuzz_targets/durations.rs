//! Durations written by operators: retention windows (`90d`, `1y6m`), the
//! guard's and status's durations (`5m`, `1h 30m`, `250ms`), incident SLA
//! deadlines (`4h 30m`, `PT1H`, `2 business days`).
#![no_main]

use cfdr_retention::CalendarDuration;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let anchor: Timestamp = "2026-06-30T12:00:00Z".parse().expect("a valid time");
    if let Ok(d) = text.parse::<CalendarDuration>() {
        let _ = d.before(anchor, &TimeZone::UTC);
        let _ = d.before(Timestamp::MIN, &TimeZone::UTC);
        assert_eq!(
            d.to_string().parse::<CalendarDuration>().ok(),
            Some(d),
            "a retention duration prints as text that reads back the same"
        );
    }
    let _ = cfdr_guard::Dur::parse(text);
    if let Ok(deadline) = text.parse::<cfdr_incident::Deadline>() {
        let _ = deadline.due(anchor, &cfdr_incident::Calendar::default());
        let _ = deadline.due(Timestamp::MAX, &cfdr_incident::Calendar::default());
    }
});
