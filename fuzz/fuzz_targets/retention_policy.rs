//! Retention settings (`[retention]` of the config file: per-class
//! `keep-*` counts, `keep-within` durations, tags, time zone) and the plan
//! they give over a fixed set of backups and WAL.
#![no_main]

use cfdr_retention::{Config, Count, Item, Kind, Period, WalItem};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;

fn items(now: Timestamp) -> Vec<Item> {
    let hour = jiff::SignedDuration::from_hours(1);
    (0..40i32)
        .map(|i| {
            let at = now - hour * (i * 7);
            let (kind, class) = match i % 4 {
                0 => (Kind::Logical, "daily"),
                1 => (Kind::Physical, "hourly"),
                2 => (Kind::Secrets, "manual"),
                _ => (Kind::Config, "archive"),
            };
            let mut item = Item::new(format!("b{i}"), at, kind).class(class);
            if i % 5 == 0 {
                item = item.tag("release");
            }
            if i % 11 == 0 {
                item = item.pinned();
            }
            item
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<Count>();
    let _ = text.parse::<Period>();
    let _ = text.parse::<cfdr_retention::Reason>();
    let Ok(config) = toml::from_str::<Config>(text) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    let now: Timestamp = "2026-06-30T12:00:00Z".parse().expect("a valid time");
    let wal: Vec<WalItem> = (1..=3u64)
        .filter_map(|n| {
            WalItem::parse(&format!("00000001000000000000000{n}"), 16 << 20, 16 << 20).ok()
        })
        .collect();
    let _ = cfdr_retention::plan(&items(now), &wal, &config, now);
});
