//! Snapshot frequency: an interval (`12 hours`) or a cron expression (always UTC), and the due
//! rule of SPEC §4.4 as a pure function.
//!
//! Cron forms, told apart by the wrapper, never by guessing (SPEC §2):
//! - bare text is the Python tool's dialect (its `crontab` package), so stored configurations
//!   keep their meaning: 5 fields `min hour dom month dow`, 6 with a trailing `year`, 7 with a
//!   leading `second`; day-of-week 0-7 (0 and 7 = Sunday, 1 = Monday); `?` reads as `*`;
//! - `cron(...)` is AWS's (EventBridge) dialect: 6 fields `min hour dom month dow year`,
//!   day-of-week 1-7 (1 = Sunday); 5 fields inside it are read as the classic form;
//! - names, ranges, lists, steps, `?`, `L`, `W`, `#` in both;
//! - the nicknames `@hourly @daily @weekly @monthly @yearly @annually`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::duration::{format_duration, parse_duration};
use crate::error::ScheduleError;

/// How often the snapshot job runs (the template's default schedule, `rate(30 minutes)`): a
/// due time is overdue once it passed more than an hour and one such interval ago.
pub const JOB_INTERVAL: TimeDelta = TimeDelta::minutes(30);
/// The slack before a due time is overdue, besides one job interval.
pub const OVERDUE_SLACK: TimeDelta = TimeDelta::hours(1);

/// The smallest interval frequency accepted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(3600);
/// Early-firing tolerance for intervals: F/20, capped at this.
pub const MAX_GRACE: Duration = Duration::from_secs(15 * 60);

// One per configuration: the size of the cron variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Schedule {
    Interval(Duration),
    Cron(CronSchedule),
}

/// A parsed cron expression with the text it came from.
#[derive(Clone)]
pub struct CronSchedule {
    text: String,
    cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval(d) => write!(f, "Interval({})", format_duration(*d)),
            Schedule::Cron(c) => write!(f, "Cron({:?})", c.text),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval(d) => write!(f, "every {}", format_duration(*d)),
            Schedule::Cron(c) => write!(f, "cron {}", c.text),
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Interval(a), Schedule::Interval(b)) => a == b,
            (Schedule::Cron(a), Schedule::Cron(b)) => a.text == b.text,
            _ => false,
        }
    }
}

impl Schedule {
    /// Parses a frequency: a duration of at least one hour, or a cron expression.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = text.trim();
        if looks_like_cron(trimmed) {
            return CronSchedule::parse(trimmed).map(Schedule::Cron);
        }
        match parse_duration(trimmed) {
            Ok(d) if d < MIN_INTERVAL => Err(ScheduleError::TooFrequent { text: text.to_string() }),
            Ok(d) => Ok(Schedule::Interval(d)),
            Err(duration_err) => {
                let fields = trimmed.split_whitespace().count();
                if (5..=7).contains(&fields) {
                    CronSchedule::parse(trimmed).map(Schedule::Cron)
                } else {
                    let reason = match duration_err {
                        crate::error::DurationError::Invalid { reason, .. } => reason,
                    };
                    Err(ScheduleError::Unrecognised {
                        text: text.to_string(),
                        reason: format!("as a duration: {reason}; as cron: expected 5 to 7 fields, found {fields}"),
                    })
                }
            }
        }
    }

    /// The earliest time at which a volume whose newest snapshot started at `last` is due again.
    /// `None` when a cron schedule never fires after `last`.
    pub fn next_due(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval(f) => {
                let grace = (*f / 20).min(MAX_GRACE);
                let wait = TimeDelta::from_std(*f - grace).ok()?;
                last.checked_add_signed(wait)
            }
            Schedule::Cron(c) => c.next_after(last),
        }
    }
}

impl Schedule {
    /// The longest time between two snapshots from `now`: the interval, or for a cron schedule
    /// the longest gap between its next three firings (zero when it fires fewer than twice more).
    pub fn longest_gap(&self, now: DateTime<Utc>) -> TimeDelta {
        match self {
            Schedule::Interval(f) => TimeDelta::from_std(*f).unwrap_or(TimeDelta::MAX),
            Schedule::Cron(c) => {
                let mut firings = Vec::with_capacity(3);
                let mut at = now;
                while firings.len() < 3 {
                    match c.next_after(at) {
                        Some(next) => {
                            firings.push(next);
                            at = next;
                        }
                        None => break,
                    }
                }
                firings.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
            }
        }
    }
}

fn looks_like_cron(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("cron(") || lower.starts_with('@')
}

impl CronSchedule {
    pub fn parse(text: &str) -> Result<CronSchedule, ScheduleError> {
        let err = |reason: String| ScheduleError::Cron { text: text.to_string(), reason };
        let mut body = text.trim();
        let wrapped = body.get(..5).is_some_and(|head| head.eq_ignore_ascii_case("cron("));
        if wrapped {
            body = body[5..].strip_suffix(')').ok_or_else(|| err("cron( is not closed by )".to_string()))?.trim();
        }
        let fields: Vec<&str> = body.split_whitespace().collect();
        let cron = if body.starts_with('@') {
            if fields.len() != 1 {
                return Err(err("a nickname such as @daily stands alone".to_string()));
            }
            let nickname = body.to_ascii_lowercase();
            if !["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"].contains(&nickname.as_str()) {
                return Err(err(format!(
                    "unknown nickname {body} (use @hourly, @daily, @weekly, @monthly or @yearly)"
                )));
            }
            CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build().parse(&nickname)
        } else {
            // croner reads six fields as seconds-first: the seconds and the year are spelled out.
            let posix = |with_seconds: String| {
                CronParser::builder().seconds(Seconds::Required).year(Year::Required).build().parse(&with_seconds)
            };
            match (wrapped, fields.len()) {
                // Classic: croner's POSIX mode (0-7, 0 and 7 = Sunday); it inserts seconds.
                (_, 5) => CronParser::builder()
                    .seconds(Seconds::Optional)
                    .year(Year::Disallowed)
                    .build()
                    .parse(&fields.join(" ")),
                // AWS, only as cron(...): min hour dom month dow year, 1 = Sunday (Quartz).
                (true, 6) => CronParser::builder()
                    .seconds(Seconds::Required)
                    .year(Year::Required)
                    .alternative_weekdays(true)
                    .build()
                    .parse(&format!("0 {}", fields.join(" "))),
                // The Python tool's `crontab` dialect: a trailing year...
                (false, 6) => posix(format!("0 {}", fields.join(" "))),
                // ... and a leading second.
                (false, 7) => posix(fields.join(" ")),
                (true, n) => {
                    return Err(err(format!(
                        "cron(...) is AWS's form: 6 fields (min hour day month weekday year), found {n}"
                    )))
                }
                (false, n) => {
                    return Err(err(format!(
                    "expected 5 fields (min hour day month weekday), 6 (and a year) or 7 (a second first), found {n}"
                )))
                }
            }
        }
        .map_err(|e| err(e.to_string()))?;
        // A pattern that can never fire (30 February) would silently stop all backups.
        let epoch = DateTime::<Utc>::from_timestamp(0, 0).expect("the epoch is a valid time");
        if cron.find_next_occurrence(&epoch, false).is_err() {
            return Err(err("it never fires".to_string()));
        }
        Ok(CronSchedule { text: text.trim().to_string(), cron })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

/// Whether a volume needs a snapshot now (SPEC §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// No pending or completed snapshot exists.
    NoSnapshot,
    /// The schedule says one is due; `since` is when it became due.
    Due { since: DateTime<Utc> },
    /// Not due until the given time.
    NotUntil(DateTime<Utc>),
    /// A cron schedule that never fires after the last snapshot.
    Never,
}

impl Due {
    pub fn is_due(&self) -> bool {
        matches!(self, Due::NoSnapshot | Due::Due { .. })
    }
}

/// The due rule: `last` is the newest start time among pending/completed snapshots.
pub fn due(schedule: &Schedule, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Due {
    let Some(last) = last else { return Due::NoSnapshot };
    match schedule.next_due(last) {
        None => Due::Never,
        Some(at) if at <= now => Due::Due { since: at },
        Some(at) => Due::NotUntil(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn the_longest_gap_is_the_interval_or_the_widest_of_the_next_three_firings() {
        let now = t(2026, 3, 6, 12, 0); // a Friday
        assert_eq!(Schedule::parse("12 hours").unwrap().longest_gap(now), TimeDelta::hours(12));
        // Weekdays at 01:00: from Friday noon, Monday, Tuesday and Wednesday fire next (a day
        // apart); from Thursday noon, Friday, Monday and Tuesday (three days across the weekend).
        assert_eq!(cron("0 1 * * 1-5").longest_gap(now), TimeDelta::hours(24));
        assert_eq!(cron("0 1 * * 1-5").longest_gap(t(2026, 3, 5, 12, 0)), TimeDelta::days(3));
        assert_eq!(cron("0 0 1 1 * 2020").longest_gap(now), TimeDelta::zero(), "never fires again");
    }

    fn cron(text: &str) -> Schedule {
        let s = Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(matches!(s, Schedule::Cron(_)), "{text} should be cron");
        s
    }

    #[test]
    fn reference_half_past() {
        let s = cron("30 * * * *");
        let at = t(2016, 7, 24, 11, 25);
        assert_eq!(s.next_due(at).unwrap() - at, TimeDelta::seconds(300));
        let at = t(2016, 7, 24, 11, 35);
        assert_eq!(s.next_due(at).unwrap() - at, TimeDelta::seconds(3300));
    }

    #[test]
    fn reference_sunday_one_am() {
        let s = cron("0 1 ? * SUN");
        let now = t(2016, 7, 24, 2, 5);
        assert!(!due(&s, Some(t(2016, 7, 24, 1, 5)), now).is_due());
        assert!(due(&s, Some(t(2016, 7, 17, 1, 5)), now).is_due());
        assert_eq!(s.next_due(t(2016, 7, 24, 1, 5)), Some(t(2016, 7, 31, 1, 0)));
    }

    #[test]
    fn reference_hourly() {
        let s = cron("@hourly");
        let now = t(2016, 7, 24, 2, 5);
        assert!(due(&s, Some(t(2016, 7, 17, 1, 5)), now).is_due());
        // last snapshot after now (clock skew): next fire is 03:00, not due.
        assert_eq!(due(&s, Some(t(2016, 7, 24, 2, 35)), now), Due::NotUntil(t(2016, 7, 24, 3, 0)));
    }

    #[test]
    fn aws_six_fields_daily_at_five() {
        let s = cron("0 5 * * ? *");
        assert_eq!(s.next_due(t(2020, 1, 1, 5, 0)), Some(t(2020, 1, 2, 5, 0)));
        assert_eq!(s.next_due(t(2020, 1, 1, 4, 59)), Some(t(2020, 1, 1, 5, 0)));
        let wrapped = cron("cron(0 5 * * ? *)");
        assert_eq!(wrapped.next_due(t(2020, 1, 1, 6, 0)), Some(t(2020, 1, 2, 5, 0)));
    }

    #[test]
    fn bare_text_is_the_python_tools_dialect_and_cron_wrapped_is_aws() {
        // Stored by the Python tool (its `crontab` package): six fields end with the year, and
        // 1 is Monday. 2026-11-30 is a Monday.
        let from = t(2026, 11, 25, 0, 0);
        assert_eq!(cron("0 5 * * 1 *").next_due(from), Some(t(2026, 11, 30, 5, 0)), "Mondays 05:00");
        assert_eq!(cron("0 5 * * 0 2026").next_due(from), Some(t(2026, 11, 29, 5, 0)), "Sundays 05:00");
        assert_eq!(cron("0 5 * * ? *").next_due(from), Some(t(2026, 11, 25, 5, 0)), "? is *");
        // Seven fields begin with the seconds.
        assert_eq!(cron("30 0 5 * * 1 *").next_due(from), Some(Utc.with_ymd_and_hms(2026, 11, 30, 5, 0, 30).unwrap()));
        // AWS's dialect only inside cron(...): 1 is Sunday, 2 Monday.
        assert_eq!(cron("cron(0 5 ? * 2 *)").next_due(from), Some(t(2026, 11, 30, 5, 0)), "Mondays 05:00");
        assert_eq!(cron("cron(0 5 ? * 1 *)").next_due(from), Some(t(2026, 11, 29, 5, 0)), "Sundays 05:00");
    }

    #[test]
    fn weekday_numbering_differs_between_classic_and_aws() {
        // 2016-07-24 is a Sunday.
        let classic_sunday_0 = cron("0 1 * * 0");
        let classic_sunday_7 = cron("0 1 * * 7");
        let aws_sunday_1 = cron("cron(0 1 ? * 1 *)");
        let aws_name = cron("cron(0 1 ? * SUN *)");
        let from = t(2016, 7, 20, 0, 0);
        for s in [&classic_sunday_0, &classic_sunday_7, &aws_sunday_1, &aws_name] {
            assert_eq!(s.next_due(from), Some(t(2016, 7, 24, 1, 0)), "{s}");
        }
        // classic 1 = Monday
        assert_eq!(cron("0 1 * * 1").next_due(from), Some(t(2016, 7, 25, 1, 0)));
    }

    #[test]
    fn special_characters() {
        // last day of month
        assert_eq!(cron("0 0 L * *").next_due(t(2016, 2, 1, 0, 0)), Some(t(2016, 2, 29, 0, 0)));
        // nearest weekday to the 15th (2016-10-15 is a Saturday -> Friday 14th)
        assert_eq!(cron("0 0 15W * *").next_due(t(2016, 10, 1, 0, 0)), Some(t(2016, 10, 14, 0, 0)));
        // second Friday (classic 5 = Friday)
        assert_eq!(cron("0 0 * * 5#2").next_due(t(2016, 7, 1, 0, 0)), Some(t(2016, 7, 8, 0, 0)));
        // steps, ranges, lists, month names
        assert_eq!(cron("*/15 9-17 * JAN,JUL MON-FRI").next_due(t(2016, 7, 23, 0, 0)), Some(t(2016, 7, 25, 9, 0)));
        assert_eq!(cron("@daily").next_due(t(2016, 7, 23, 0, 0)), Some(t(2016, 7, 24, 0, 0)));
        assert_eq!(cron("@weekly").next_due(t(2016, 7, 23, 0, 0)), Some(t(2016, 7, 24, 0, 0)));
        assert_eq!(cron("@monthly").next_due(t(2016, 7, 23, 0, 0)), Some(t(2016, 8, 1, 0, 0)));
        assert_eq!(cron("@yearly").next_due(t(2016, 7, 23, 0, 0)), Some(t(2017, 1, 1, 0, 0)));
    }

    #[test]
    fn interval_grace() {
        let daily = Schedule::parse("1 day").unwrap();
        let last = t(2020, 1, 1, 0, 0);
        // grace = min(24h/20 = 72 min, 15 min) = 15 min
        assert_eq!(daily.next_due(last), Some(t(2020, 1, 1, 23, 45)));
        assert!(!due(&daily, Some(last), t(2020, 1, 1, 23, 44)).is_due());
        assert!(due(&daily, Some(last), t(2020, 1, 1, 23, 45)).is_due());
        let hourly = Schedule::parse("1 hour").unwrap();
        // grace = 60 min / 20 = 3 min
        assert_eq!(hourly.next_due(last), Some(t(2020, 1, 1, 0, 57)));
        let two_hours = Schedule::parse("2 hours").unwrap();
        assert_eq!(two_hours.next_due(last), Some(t(2020, 1, 1, 1, 54)));
    }

    #[test]
    fn no_snapshot_is_due() {
        assert_eq!(due(&Schedule::parse("12 hours").unwrap(), None, t(2020, 1, 1, 0, 0)), Due::NoSnapshot);
    }

    #[test]
    fn intervals_under_an_hour_are_rejected() {
        assert!(matches!(Schedule::parse("59 minutes"), Err(ScheduleError::TooFrequent { .. })));
        assert!(Schedule::parse("60 minutes").is_ok());
        assert!(Schedule::parse("0 hours").is_err());
    }

    #[test]
    fn bad_cron_is_rejected_with_its_text() {
        for bad in [
            "61 * * * *",
            "* 25 * * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "0 0 30 2 *",
            "cron(0 5 * * ? *",
            "@fortnightly",
            "@daily extra",
            "a b c d e",
            "1 2 3 4 5 6 7",
            "cron()",
            "* * * *",
            "@0a\u{1000d}",
            "cron\u{1000d}(",
            "é* * * * *",
        ] {
            let e = Schedule::parse(bad);
            assert!(e.is_err(), "{bad:?} should be rejected");
            assert!(e.unwrap_err().to_string().contains(bad.trim()), "{bad:?}: message names the text");
        }
    }
}
