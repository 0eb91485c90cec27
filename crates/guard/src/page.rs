//! The on-call status page: one self-contained HTML document (no external
//! assets) that reloads itself every few seconds.

use std::fmt::Write;

use crate::state::TradingState;
use crate::status::{Level, Status, words_for};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn light(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Critical => "crit",
        Level::Unknown => "unknown",
        Level::NotMeasured => "none",
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d232b}
header{padding:14px 24px;background:#1d232b;color:#fff;display:flex;justify-content:space-between;align-items:baseline}
h1{font-size:20px;margin:0}h2{font-size:16px;margin:22px 0 8px}main{padding:0 24px 24px}
.banner{padding:16px 24px;font-size:20px;font-weight:600;color:#fff}
.banner.active{background:#1f883d}.banner.reducing{background:#bf8700}.banner.halted{background:#cf222e}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#eaeef2;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.dot{display:inline-block;width:12px;height:12px;border-radius:6px;margin-right:6px;vertical-align:-1px}
.dot.ok{background:#1f883d}.dot.warn{background:#bf8700}.dot.crit{background:#cf222e}
.dot.unknown{background:#8c959f}.dot.none{background:#d0d7de}
.muted{color:#57606a}.reasons{margin:6px 0 0;font-size:15px;font-weight:400}";

/// The page for `status`; it reloads itself every `refresh_secs`.
pub fn render(status: &Status, refresh_secs: u32) -> String {
    let mut h = String::with_capacity(8192);
    let g = &status.gate;
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{refresh_secs}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>cfdr: {state}</title><style>{STYLE}</style></head><body>\
         <header><h1>cfdr recovery objectives</h1><span>{repo} &middot; {when}</span></header>",
        state = g.state,
        repo = esc(&status.repository),
        when = status.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
    );
    let banner = match g.state {
        TradingState::Active => "Trading ACTIVE",
        TradingState::Reducing => "REDUCING: no new risk, only orders that reduce positions",
        TradingState::Halted => "TRADING HALTED",
    };
    let _ = write!(
        h,
        "<div class=\"banner {}\" id=\"gate\">{banner}<span class=\"muted\" style=\"color:#fff;opacity:.8;font-size:14px\"> since {}{}</span>",
        g.state,
        g.since.strftime("%Y-%m-%d %H:%M:%S UTC"),
        if g.stale {
            " (the guard is not refreshing: fail-closed state)"
        } else {
            ""
        }
    );
    let restricting: Vec<String> = g
        .reasons
        .iter()
        .filter(|c| c.effect > TradingState::Active)
        .map(|c| format!("{}: {}", c.reason, esc(&c.detail)))
        .collect();
    if !restricting.is_empty() {
        let _ = write!(
            h,
            "<div class=\"reasons\">{}</div>",
            restricting.join("<br>")
        );
    }
    h.push_str("</div><main>");

    h.push_str("<h2>Objectives</h2><table id=\"objectives\"><tr><th>Objective</th><th>Measured</th><th>Limit</th><th>Status</th></tr>");
    for o in &status.objectives {
        let _ = write!(
            h,
            "<tr><td><span class=\"dot {}\"></span>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            light(o.level),
            esc(&o.name),
            o.value_seconds.map_or("-".into(), words_for),
            words_for(o.limit_seconds),
            esc(&o.words)
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Backups</h2><table id=\"backups\"><tr><th>Kind / class</th><th>Newest</th><th>Age</th><th>Limit</th></tr>");
    for b in &status.backups {
        let level = match b.age_seconds {
            Some(a) if a <= b.limit_seconds => Level::Ok,
            _ => Level::Critical,
        };
        let _ = write!(
            h,
            "<tr><td><span class=\"dot {}\"></span>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            light(level),
            esc(&b.objective),
            b.newest.as_ref().map_or("none".into(), |n| esc(&n.id)),
            b.age_seconds.map_or("-".into(), words_for),
            words_for(b.limit_seconds)
        );
    }
    h.push_str("</table>");

    let w = &status.wal;
    let e = w.exposure;
    h.push_str("<h2>WAL archiving</h2><table id=\"wal\">");
    let rows = [
        (
            "RPO exposure",
            e.map_or("not measured".into(), |e| {
                format!(
                    "{}{} ({} bytes at risk)",
                    if e.lower_bound { "at least " } else { "" },
                    words_for(e.seconds),
                    e.bytes
                )
            }),
        ),
        ("Timeline", w.timeline.map_or("-".into(), |t| t.to_string())),
        (
            "Server position",
            w.server_lsn.clone().unwrap_or("-".into()),
        ),
        (
            "Safe up to",
            match (&w.safe_lsn, &w.safe_by) {
                (Some(l), Some(by)) => format!("{l} ({by})"),
                (Some(l), None) => l.clone(),
                _ => "nothing yet".into(),
            },
        ),
        (
            "Highest segment",
            w.highest_segment.clone().unwrap_or("-".into()),
        ),
        (
            "Last archived",
            w.archiver
                .as_ref()
                .and_then(|a| a.last_archived_wal.clone())
                .unwrap_or("-".into()),
        ),
        (
            "Last failed",
            w.archiver
                .as_ref()
                .and_then(|a| a.last_failed_wal.clone())
                .unwrap_or("-".into()),
        ),
        (
            "Failures",
            w.archiver
                .as_ref()
                .map_or("-".into(), |a| a.failed_count.to_string()),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    h.push_str("</table>");

    h.push_str("<h2>Replicas</h2><table id=\"replicas\"><tr><th>Name</th><th>State</th><th>Lag (bytes)</th><th>Lag</th></tr>");
    if status.replicas.is_empty() {
        h.push_str("<tr><td colspan=\"4\" class=\"muted\">no standby connected</td></tr>");
    }
    for r in &status.replicas {
        let _ = write!(
            h,
            "<tr><td>{}{}</td><td>{} ({})</td><td class=\"num\">{}</td><td class=\"num\">{:.1} s</td></tr>",
            esc(&r.name),
            if r.counts_as_safe {
                " <span class=\"muted\">(counts as safe)</span>"
            } else {
                ""
            },
            esc(&r.state),
            esc(&r.sync_state),
            r.lag_bytes,
            r.lag_seconds
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Off-region copies</h2><table id=\"copies\"><tr><th>Copy</th><th>Lag (bytes)</th><th>Lag</th><th>Updated</th></tr>");
    if status.copies.is_empty() {
        h.push_str(
            "<tr><td colspan=\"4\" class=\"muted\">no copy state in the repository</td></tr>",
        );
    }
    for c in &status.copies {
        match &c.error {
            Some(e) => {
                let _ = write!(
                    h,
                    "<tr><td><span class=\"dot unknown\"></span>{}</td><td colspan=\"3\">unreadable: {}</td></tr>",
                    esc(&c.name),
                    esc(e)
                );
            }
            None => {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    esc(&c.name),
                    c.lag_bytes.unwrap_or_default(),
                    c.lag_seconds.map_or("-".into(), words_for),
                    c.updated_at.map_or("-".into(), |u| u
                        .strftime("%Y-%m-%d %H:%M:%S UTC")
                        .to_string())
                );
            }
        }
    }
    h.push_str("</table>");

    let drill_level = status
        .objectives
        .iter()
        .find(|o| o.name == "drill")
        .map_or(Level::Unknown, |o| o.level);
    h.push_str("<h2>Last DR drill</h2><table id=\"drill\"><tr><th>Drill</th><th>Status</th><th>Finished</th><th>RTO measured</th><th>RPO measured</th></tr>");
    match &status.drill {
        None => h.push_str("<tr><td colspan=\"5\" class=\"muted\">none reported</td></tr>"),
        Some(d) => {
            let _ = write!(
                h,
                "<tr><td><span class=\"dot {}\"></span>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                light(drill_level),
                esc(&d.id),
                esc(&d.status),
                d.finished.strftime("%Y-%m-%d %H:%M:%S UTC"),
                d.rto_actual_seconds.map_or("-".into(), words_for),
                d.rpo_actual_seconds.map_or("-".into(), words_for)
            );
        }
    }
    h.push_str("</table>");

    if !status.operations.is_empty() {
        h.push_str("<h2>Restores and failovers in progress</h2><table id=\"operations\"><tr><th>Operation</th><th>Since</th><th>Where</th><th></th></tr>");
        for o in &status.operations {
            let _ = write!(
                h,
                "<tr><td><span class=\"dot {}\"></span>{}</td><td>{}</td><td>{} (pid {})</td><td>{}{}</td></tr>",
                if o.stale.is_some() { "warn" } else { "crit" },
                esc(&o.kind),
                o.started.strftime("%Y-%m-%d %H:%M:%S UTC"),
                esc(&o.host),
                o.pid,
                esc(&o.detail),
                o.stale.as_deref().map_or(String::new(), |s| format!(
                    " <strong>stale: {}</strong>",
                    esc(s)
                ))
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Open incidents</h2><table id=\"incidents\"><tr><th>Id</th><th>Severity</th><th>Title</th><th>Halt</th></tr>");
    if status.incidents.is_empty() {
        h.push_str("<tr><td colspan=\"4\" class=\"muted\">none</td></tr>");
    }
    for i in &status.incidents {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.id),
            esc(&i.severity),
            esc(&i.title),
            if i.halt {
                "<strong>halts trading</strong>"
            } else {
                ""
            }
        );
    }
    h.push_str("</table>");

    h.push_str(
        "<h2>Checks</h2><table id=\"checks\"><tr><th>Check</th><th>Status</th><th></th></tr>",
    );
    for c in status.checks() {
        let _ = write!(
            h,
            "<tr><td><span class=\"dot {}\"></span>{}</td><td>{}</td><td>{}</td></tr>",
            light(c.level),
            esc(&c.name),
            c.level.name(),
            esc(&c.words)
        );
    }
    let _ = write!(
        h,
        "</table><p class=\"muted\">Last refresh {} &middot; {} cycles &middot; reloads every {refresh_secs} s</p></main></body></html>",
        g.last_refresh.strftime("%H:%M:%S UTC"),
        status.cycles
    );
    h
}
