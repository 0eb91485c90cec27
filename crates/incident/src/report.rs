//! The incident report: Markdown following the runbook's incident template
//! section by section (header, Summary, Impact, Timeline (UTC), Root Cause,
//! Resolution, Action Items, Lessons Learned). Output depends only on the
//! record, so the same record always gives the same text.

use std::fmt::Write;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::journal::{Loaded, Problem};
use crate::model::Severity;
use crate::record::Incident;

const MISSING: &str = "_Not recorded yet._";

fn date(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC).strftime("%Y-%m-%d").to_string()
}

fn hm(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC).strftime("%H:%M").to_string()
}

/// A duration in words: `13 minutes`, `2 hours 5 minutes`, `45 seconds`.
pub fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let unit = |n: i64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    match (h, m) {
        (0, 0) => unit(s, "second"),
        (0, m) => unit(m, "minute"),
        (h, 0) => unit(h, "hour"),
        (h, m) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
    }
}

fn severity_line(s: Severity) -> String {
    format!("{s} - {}", s.label())
}

/// Renders the report of `incident`.
pub fn render(incident: &Incident) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, incident);
    out
}

fn write_report(out: &mut String, inc: &Incident) -> std::fmt::Result {
    let day = date(inc.detected);
    writeln!(out, "# Incident Report: {}", inc.title)?;
    writeln!(out)?;
    writeln!(out, "**Date**: {day}")?;
    writeln!(out, "**Severity**: {}", severity_line(inc.severity))?;
    writeln!(out, "**Status**: {}", inc.status.title())?;
    writeln!(
        out,
        "**Incident Commander**: {}",
        inc.commander.as_deref().unwrap_or("_unassigned_")
    )?;
    writeln!(out, "**Incident ID**: {}", inc.id)?;
    if let Some(h) = inc.current_halt() {
        writeln!(out)?;
        writeln!(
            out,
            "> **Trading is halted** by this incident since {} UTC ({}).",
            h.from.strftime("%Y-%m-%d %H:%M"),
            h.reason
        )?;
    }

    writeln!(out, "\n## Summary")?;
    writeln!(out, "{}", inc.summary.as_deref().unwrap_or(MISSING))?;

    writeln!(out, "\n## Impact")?;
    let (stopped, ongoing) = inc.trading_stopped();
    let stopped = match (inc.halts.is_empty(), ongoing) {
        (true, _) => "not stopped".to_owned(),
        (false, false) => human_duration(stopped),
        (false, true) => match inc.current_halt() {
            Some(h) => format!(
                "{}still halted since {} UTC",
                if stopped.is_zero() {
                    String::new()
                } else {
                    format!("{} so far, ", human_duration(stopped))
                },
                h.from.strftime("%Y-%m-%d %H:%M")
            ),
            None => human_duration(stopped),
        },
    };
    writeln!(out, "- Trading stopped for: {stopped}")?;
    writeln!(
        out,
        "- Financial impact: {}",
        inc.impact.financial.as_deref().unwrap_or("not assessed")
    )?;
    writeln!(
        out,
        "- Users affected: {}",
        inc.impact
            .users_affected
            .as_deref()
            .unwrap_or("not assessed")
    )?;

    writeln!(out, "\n## Timeline (UTC)")?;
    for e in inc.timeline.iter().filter(|e| e.kind.in_report()) {
        let when = if date(e.at) == day {
            hm(e.at)
        } else {
            format!("{} {}", date(e.at), hm(e.at))
        };
        writeln!(out, "- {when} - {} ({})", e.text, e.author)?;
    }

    writeln!(out, "\n## Root Cause")?;
    writeln!(out, "{}", inc.root_cause.as_deref().unwrap_or(MISSING))?;

    writeln!(out, "\n## Resolution")?;
    if inc.resolution.is_empty() {
        writeln!(out, "{MISSING}")?;
    }
    for (i, step) in inc.resolution.iter().enumerate() {
        writeln!(out, "{}. {step}", i + 1)?;
    }

    writeln!(out, "\n## Action Items")?;
    if inc.action_items.is_empty() {
        writeln!(out, "{MISSING}")?;
    }
    for item in &inc.action_items {
        let mark = if item.done { 'x' } else { ' ' };
        match &item.owner {
            Some(o) => writeln!(out, "- [{mark}] {} (owner: {o})", item.text)?,
            None => writeln!(out, "- [{mark}] {}", item.text)?,
        }
    }

    writeln!(out, "\n## Lessons Learned")?;
    if inc.lessons.is_empty() {
        writeln!(out, "{MISSING}")?;
    }
    for l in &inc.lessons {
        writeln!(out, "- {l}")?;
    }

    if !inc.links.backups.is_empty() || !inc.links.drills.is_empty() {
        writeln!(out, "\n## Related")?;
        for b in &inc.links.backups {
            writeln!(out, "- Backup `{b}`")?;
        }
        for d in &inc.links.drills {
            writeln!(out, "- Drill `{d}`")?;
        }
    }
    Ok(())
}

/// A short multi-line summary for terminals (`cfdr-incident show`).
pub fn show(incident: &Incident) -> String {
    let i = incident;
    let mut out = String::new();
    let t = |t: Option<Timestamp>| {
        t.map_or("-".to_owned(), |t| {
            t.round(jiff::Unit::Second).unwrap_or(t).to_string()
        })
    };
    let _ = (|| -> std::fmt::Result {
        writeln!(out, "{} [{}] {}: {}", i.id, i.severity, i.status, i.title)?;
        writeln!(
            out,
            "  commander: {}   opened by: {}",
            i.commander.as_deref().unwrap_or("-"),
            i.opened_by
        )?;
        writeln!(
            out,
            "  detected {}  acknowledged {}{}",
            t(Some(i.detected)),
            t(i.acknowledged),
            i.acknowledged_by
                .as_deref()
                .map_or(String::new(), |b| format!(" by {b}"))
        )?;
        writeln!(
            out,
            "  mitigated {}  resolved {}  closed {}",
            t(i.mitigated),
            t(i.resolved),
            t(i.closed)
        )?;
        match i.current_halt() {
            Some(h) => writeln!(
                out,
                "  TRADING HALTED since {} by {}: {}",
                t(Some(h.from)),
                h.set_by,
                h.reason
            )?,
            None => writeln!(out, "  trading not halted by this incident")?,
        }
        writeln!(out, "  timeline:")?;
        for e in &i.timeline {
            writeln!(
                out,
                "    {}  #{:<3} {:<10} {}",
                t(Some(e.at)),
                e.seq,
                e.author,
                e.text
            )?;
        }
        for (n, a) in i.action_items.iter().enumerate() {
            writeln!(
                out,
                "  action {}: [{}] {}{}",
                n + 1,
                if a.done { 'x' } else { ' ' },
                a.text,
                a.owner
                    .as_deref()
                    .map_or(String::new(), |o| format!(" (owner: {o})"))
            )?;
        }
        Ok(())
    })();
    out
}

/// One line per incident for listings (`cfdr-incident list`).
pub fn list_line(i: &Incident) -> String {
    let halt = if i.trading_halted() {
        "  TRADING HALTED"
    } else {
        ""
    };
    format!(
        "{}  {}  {:<13} {}{halt}",
        i.id,
        i.severity,
        i.status.to_string(),
        i.title
    )
}

/// [`list_line`] of a loaded incident; one whose objects cannot all be
/// read is marked as counting as a halt (its record may miss the halt).
pub fn listing_line(l: &Loaded) -> String {
    let mut line = list_line(&l.incident);
    if l.is_damaged() {
        line.push_str(DAMAGED_MARK);
    }
    line
}

/// A line for a damaged object (`list`, `halted`): its key and that it
/// counts as a halt.
pub fn damaged_line(p: &Problem) -> String {
    format!("{}{DAMAGED_MARK}", p.key)
}

const DAMAGED_MARK: &str = "  DAMAGED: counts as TRADING HALTED";

/// The text of the timeline entry of event `seq`, if any.
pub fn entry_text(i: &Incident, seq: u64) -> &str {
    i.timeline
        .iter()
        .find(|e| e.seq == seq)
        .map_or("", |e| e.text.as_str())
}
