//! Retention rules: counts, calendar durations and the [`Policy`] that
//! combines them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use jiff::{Span, Timestamp, tz::TimeZone};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How many buckets a `keep-*` count rule keeps.
///
/// Written in configuration as a number (`keep-daily = 30`), as `-1` or as
/// `"unlimited"` (restic's spelling of "every bucket"). `0` switches the rule
/// off. Ordered so that `Limited(n) < Limited(n + 1) < Unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Count {
    /// Keep at most this many buckets (0 = rule off).
    Limited(u32),
    /// Keep the newest item of every bucket.
    Unlimited,
}

impl Default for Count {
    fn default() -> Self {
        Count::Limited(0)
    }
}

impl Count {
    /// True when the rule is off.
    pub fn is_zero(self) -> bool {
        self == Count::Limited(0)
    }
}

impl From<u32> for Count {
    fn from(n: u32) -> Self {
        Count::Limited(n)
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Limited(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl FromStr for Count {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") || t == "-1" {
            return Ok(Count::Unlimited);
        }
        t.parse::<u32>()
            .map(Count::Limited)
            .map_err(|_| Error::InvalidCount { text: s.to_owned() })
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Count::Limited(n) => s.serialize_u32(*n),
            Count::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number >= 0, -1 or \"unlimited\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Count, E> {
                match v {
                    -1 => Ok(Count::Unlimited),
                    _ => u32::try_from(v).map(Count::Limited).map_err(|_| {
                        E::custom(Error::InvalidCount {
                            text: v.to_string(),
                        })
                    }),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Count, E> {
                u32::try_from(v).map(Count::Limited).map_err(|_| {
                    E::custom(Error::InvalidCount {
                        text: v.to_string(),
                    })
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Count, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A calendar duration for `keep-within*` rules and the incomplete-backup
/// grace period, written like restic's: `1y2m3d4h` (years, **m**onths,
/// days, hours), plus `w` for weeks (7 days), which restic does not accept.
///
/// It is subtracted in the plan's time zone: years and months first (the day
/// of month is clamped, so 31 March minus one month is 28/29 February), then
/// weeks and days as calendar days (a day across a DST change is 23 or 25
/// hours), then hours as exact hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalendarDuration {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Weeks (7 calendar days each).
    pub weeks: u32,
    /// Calendar days.
    pub days: u32,
    /// Exact hours.
    pub hours: u32,
}

impl CalendarDuration {
    /// The zero duration (rule off).
    pub const ZERO: CalendarDuration = CalendarDuration {
        years: 0,
        months: 0,
        weeks: 0,
        days: 0,
        hours: 0,
    };

    /// A duration of `n` years.
    pub const fn years(n: u32) -> Self {
        CalendarDuration {
            years: n,
            ..Self::ZERO
        }
    }
    /// A duration of `n` months.
    pub const fn months(n: u32) -> Self {
        CalendarDuration {
            months: n,
            ..Self::ZERO
        }
    }
    /// A duration of `n` weeks.
    pub const fn weeks(n: u32) -> Self {
        CalendarDuration {
            weeks: n,
            ..Self::ZERO
        }
    }
    /// A duration of `n` days.
    pub const fn days(n: u32) -> Self {
        CalendarDuration {
            days: n,
            ..Self::ZERO
        }
    }
    /// A duration of `n` hours.
    pub const fn hours(n: u32) -> Self {
        CalendarDuration {
            hours: n,
            ..Self::ZERO
        }
    }

    /// True when every unit is zero (rule off).
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// `anchor` minus this duration, computed in `tz`. When the result would
    /// fall outside the supported range (year -9999), the earliest
    /// representable instant is returned, so that the window covers
    /// everything rather than nothing.
    pub fn before(&self, anchor: Timestamp, tz: &TimeZone) -> Timestamp {
        self.try_before(anchor, tz).unwrap_or(Timestamp::MIN)
    }

    fn try_before(&self, anchor: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let calendar = Span::new()
            .try_years(i64::from(self.years))
            .ok()?
            .try_months(i64::from(self.months))
            .ok()?;
        let days = Span::new()
            .try_days(i64::from(self.weeks) * 7 + i64::from(self.days))
            .ok()?;
        let hours = Span::new().try_hours(i64::from(self.hours)).ok()?;
        let zoned = anchor.to_zoned(tz.clone());
        let zoned = zoned.checked_sub(calendar).ok()?;
        let zoned = zoned.checked_sub(days).ok()?;
        let zoned = zoned.checked_sub(hours).ok()?;
        Some(zoned.timestamp())
    }
}

impl fmt::Display for CalendarDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.weeks, 'w'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for CalendarDuration {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidDuration { text: s.to_owned() };
        let text = s.trim();
        if text.is_empty() {
            return Err(bad());
        }
        let mut d = CalendarDuration::ZERO;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            if digits.is_empty() {
                return Err(bad());
            }
            let n: u32 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let slot = match c {
                'y' => &mut d.years,
                'm' => &mut d.months,
                'w' => &mut d.weeks,
                'd' => &mut d.days,
                'h' => &mut d.hours,
                _ => return Err(bad()),
            };
            *slot = slot.checked_add(n).ok_or_else(bad)?;
        }
        if !digits.is_empty() {
            // A bare number ("0") is accepted only as zero.
            if digits.parse::<u32>().map_err(|_| bad())? == 0 && d.is_zero() {
                return Ok(d);
            }
            return Err(bad());
        }
        Ok(d)
    }
}

impl Serialize for CalendarDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CalendarDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A calendar bucket for the `keep-{hourly,daily,...}` and
/// `keep-within-{hourly,daily,...}` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    /// A clock hour in the plan's zone. The repeated hour when clocks go
    /// back is two buckets (the offset is part of the key).
    Hourly,
    /// A calendar day in the plan's zone.
    Daily,
    /// An ISO 8601 week (Monday to Sunday, ISO week-numbering year).
    Weekly,
    /// A calendar month.
    Monthly,
    /// A calendar year.
    Yearly,
}

impl Period {
    /// All periods, shortest first.
    pub const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    /// The name used in rule and reason names (`hourly`, `daily`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The bucket key of `time` in `tz`. Two instants share a bucket iff
    /// their keys are equal, and every bucket is one contiguous interval of
    /// time, so in a newest-first list a bucket's items are adjacent.
    pub fn key(self, time: Timestamp, tz: &TimeZone) -> [i32; 5] {
        let z = time.to_zoned(tz.clone());
        let (y, m, d) = (
            i32::from(z.year()),
            i32::from(z.month()),
            i32::from(z.day()),
        );
        match self {
            Period::Hourly => [y, m, d, i32::from(z.hour()), z.offset().seconds()],
            Period::Daily => [y, m, d, 0, 0],
            Period::Weekly => {
                let w = z.date().iso_week_date();
                [i32::from(w.year()), i32::from(w.week()), 0, 0, 0]
            }
            Period::Monthly => [y, m, 0, 0, 0],
            Period::Yearly => [y, 0, 0, 0, 0],
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Period {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Period::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::InvalidReason { text: s.to_owned() })
    }
}

/// The retention rules of one data class, combined with OR as in restic
/// `forget`: an item is kept when any rule keeps it, and an item kept by
/// several count rules uses up one slot of each.
///
/// Every field defaults to "off"; a policy with every field off is *empty*
/// and keeps everything (see [`Policy::is_empty`]).
///
/// ```toml
/// keep-hourly = 48
/// keep-daily = 30
/// keep-weekly = 52
/// keep-within = "2d"
/// keep-tag = ["release", "verified,monthly-drill"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Policy {
    /// Keep the newest N items.
    pub keep_last: Count,
    /// Keep the newest item of each of the newest N hours that have items.
    pub keep_hourly: Count,
    /// Keep the newest item of each of the newest N days that have items.
    pub keep_daily: Count,
    /// Keep the newest item of each of the newest N ISO weeks that have items.
    pub keep_weekly: Count,
    /// Keep the newest item of each of the newest N months that have items.
    pub keep_monthly: Count,
    /// Keep the newest item of each of the newest N years that have items.
    pub keep_yearly: Count,
    /// Keep every item newer than (newest item − duration).
    pub keep_within: CalendarDuration,
    /// Keep the newest item of every hour newer than (newest − duration).
    pub keep_within_hourly: CalendarDuration,
    /// Keep the newest item of every day newer than (newest − duration).
    pub keep_within_daily: CalendarDuration,
    /// Keep the newest item of every ISO week newer than (newest − duration).
    pub keep_within_weekly: CalendarDuration,
    /// Keep the newest item of every month newer than (newest − duration).
    pub keep_within_monthly: CalendarDuration,
    /// Keep the newest item of every year newer than (newest − duration).
    pub keep_within_yearly: CalendarDuration,
    /// Keep every item that has all tags of any one of these lists; a list is
    /// written comma-separated (`"a,b"` = both a and b); the empty list `""`
    /// matches items without tags. Not counted.
    pub keep_tag: Vec<String>,
}

impl Policy {
    /// A policy that keeps everything explicitly (`keep-last = unlimited`),
    /// used for data kept indefinitely.
    pub fn keep_all() -> Self {
        Policy {
            keep_last: Count::Unlimited,
            ..Policy::default()
        }
    }

    /// True when no rule is set: such a policy keeps every item and the plan
    /// says so in a note, rather than deleting everything.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_zero()
            && Period::ALL.iter().all(|p| self.count(*p).is_zero())
            && self.keep_within.is_zero()
            && Period::ALL.iter().all(|p| self.within(*p).is_zero())
            && self.keep_tag.is_empty()
    }

    /// The count rule for `period`.
    pub fn count(&self, period: Period) -> Count {
        match period {
            Period::Hourly => self.keep_hourly,
            Period::Daily => self.keep_daily,
            Period::Weekly => self.keep_weekly,
            Period::Monthly => self.keep_monthly,
            Period::Yearly => self.keep_yearly,
        }
    }

    /// The count rule for `period`, mutably.
    pub fn count_mut(&mut self, period: Period) -> &mut Count {
        match period {
            Period::Hourly => &mut self.keep_hourly,
            Period::Daily => &mut self.keep_daily,
            Period::Weekly => &mut self.keep_weekly,
            Period::Monthly => &mut self.keep_monthly,
            Period::Yearly => &mut self.keep_yearly,
        }
    }

    /// The `keep-within-<period>` duration.
    pub fn within(&self, period: Period) -> CalendarDuration {
        match period {
            Period::Hourly => self.keep_within_hourly,
            Period::Daily => self.keep_within_daily,
            Period::Weekly => self.keep_within_weekly,
            Period::Monthly => self.keep_within_monthly,
            Period::Yearly => self.keep_within_yearly,
        }
    }

    /// The `keep-within-<period>` duration, mutably.
    pub fn within_mut(&mut self, period: Period) -> &mut CalendarDuration {
        match period {
            Period::Hourly => &mut self.keep_within_hourly,
            Period::Daily => &mut self.keep_within_daily,
            Period::Weekly => &mut self.keep_within_weekly,
            Period::Monthly => &mut self.keep_within_monthly,
            Period::Yearly => &mut self.keep_within_yearly,
        }
    }
}

/// True when `tags` satisfies the comma-separated tag list `list`, with
/// restic's rules: every listed tag must be present, and an empty entry
/// matches an item without tags.
pub(crate) fn has_tag_list(tags: &BTreeSet<String>, list: &str) -> bool {
    for tag in list.split(',').map(str::trim) {
        if tag.is_empty() && tags.is_empty() {
            return true;
        }
        if !tags.contains(tag) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn duration_grammar() {
        let d: CalendarDuration = "1y2m3w4d5h".parse().unwrap();
        assert_eq!(
            d,
            CalendarDuration {
                years: 1,
                months: 2,
                weeks: 3,
                days: 4,
                hours: 5
            }
        );
        assert_eq!(d.to_string(), "1y2m3w4d5h");
        assert_eq!(
            "1y1d1m".parse::<CalendarDuration>().unwrap().to_string(),
            "1y1m1d"
        );
        assert_eq!(
            "0".parse::<CalendarDuration>().unwrap(),
            CalendarDuration::ZERO
        );
        for bad in ["", "y", "1", "1x", "1y2", "-1d", "1.5d", "99999999999d"] {
            assert!(
                bad.parse::<CalendarDuration>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn duration_before_clamps_and_saturates() {
        let tz = TimeZone::UTC;
        let t: Timestamp = "2023-03-31T12:00:00Z".parse().unwrap();
        let one_month = CalendarDuration::months(1).before(t, &tz);
        assert_eq!(one_month.to_string(), "2023-02-28T12:00:00Z");
        let huge = CalendarDuration::years(30_000).before(t, &tz);
        assert_eq!(huge, Timestamp::MIN);
        let mixed: CalendarDuration = "1y2m3d3h".parse().unwrap();
        let t: Timestamp = "2016-01-18T12:02:03Z".parse().unwrap();
        assert_eq!(mixed.before(t, &tz).to_string(), "2014-11-15T09:02:03Z");
    }

    #[test]
    fn days_are_calendar_days_in_the_zone() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        // 2024-03-31 is 23 hours long in Berlin: 14:00 CEST minus one day is
        // 14:00 CET the day before, 23 hours earlier.
        let t: Timestamp = "2024-03-31T12:00:00Z".parse().unwrap();
        let back = CalendarDuration::days(1).before(t, &tz);
        assert_eq!(back.to_string(), "2024-03-30T13:00:00Z");
        let back = CalendarDuration::hours(24).before(t, &tz);
        assert_eq!(back.to_string(), "2024-03-30T12:00:00Z");
    }

    #[test]
    fn count_forms() {
        assert_eq!("unlimited".parse::<Count>().unwrap(), Count::Unlimited);
        assert_eq!("-1".parse::<Count>().unwrap(), Count::Unlimited);
        assert_eq!("7".parse::<Count>().unwrap(), Count::Limited(7));
        assert!("-2".parse::<Count>().is_err());
        assert!(Count::Limited(3) < Count::Limited(4));
        assert!(Count::Limited(u32::MAX) < Count::Unlimited);
    }

    #[test]
    fn policy_from_toml() {
        let p: Policy = toml::from_str(
            "keep-last = -1\nkeep-daily = 30\nkeep-weekly = \"unlimited\"\nkeep-within = \"90d\"\nkeep-tag = [\"a,b\"]\n",
        )
        .unwrap();
        assert_eq!(p.keep_last, Count::Unlimited);
        assert_eq!(p.keep_daily, Count::Limited(30));
        assert_eq!(p.keep_weekly, Count::Unlimited);
        assert_eq!(p.keep_within, CalendarDuration::days(90));
        assert_eq!(p.keep_tag, vec!["a,b".to_owned()]);
        assert!(!p.is_empty());
        assert!(Policy::default().is_empty());
        assert!(toml::from_str::<Policy>("keep-dayly = 3").is_err());
        assert!(toml::from_str::<Policy>("keep-daily = -5").is_err());
        let back = toml::to_string(&p).unwrap();
        assert_eq!(toml::from_str::<Policy>(&back).unwrap(), p);
    }

    #[test]
    fn tag_lists() {
        let tags: BTreeSet<String> = ["foo", "bar"].into_iter().map(String::from).collect();
        assert!(has_tag_list(&tags, "foo"));
        assert!(has_tag_list(&tags, "foo, bar"));
        assert!(!has_tag_list(&tags, "foo,baz"));
        assert!(!has_tag_list(&tags, ""));
        let none = BTreeSet::new();
        assert!(has_tag_list(&none, ""));
        assert!(!has_tag_list(&none, "foo"));
    }

    #[test]
    fn period_keys() {
        let tz = TimeZone::UTC;
        let t: Timestamp = "2016-01-03T07:02:03Z".parse().unwrap();
        assert_eq!(Period::Weekly.key(t, &tz), [2015, 53, 0, 0, 0]);
        assert_eq!(Period::Hourly.key(t, &tz), [2016, 1, 3, 7, 0]);
    }
}
