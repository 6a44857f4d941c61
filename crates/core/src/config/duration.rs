//! Durations as operators write them: `4 days`, `12 hours`, `1.5 hours`, `5d`, `1w 2d`.
//!
//! The text is lower-cased and checked against a strict grammar (a number, optionally with a
//! fractional part, followed by a unit; several such terms are summed), then handed to
//! `humantime` in a normalised form. Normalising first matters: humantime on its own reads
//! `1 2 days` as twelve days and accepts months and years, whose length is ambiguous.

use std::time::Duration;

use crate::error::DurationError;

/// Units accepted, with every spelling. Seconds are accepted because the Python tool's parser
/// (pytimeparse) accepted them and stored configurations may use them.
const UNITS: &[(&[&str], &str)] = &[
    (&["s", "sec", "secs", "second", "seconds"], "s"),
    (&["m", "min", "mins", "minute", "minutes"], "m"),
    (&["h", "hr", "hrs", "hour", "hours"], "h"),
    (&["d", "day", "days"], "d"),
    (&["w", "wk", "wks", "week", "weeks"], "w"),
];

/// Parses a duration such as `4 days`, `1.5 hours` or `1w 2d` (case-insensitive).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let normalised = normalise(text)?;
    humantime::parse_duration(&normalised)
        .map_err(|e| DurationError::Invalid { text: text.to_string(), reason: e.to_string() })
}

/// Formats a duration for people: `4days 12h`.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn normalise(text: &str) -> Result<String, DurationError> {
    let invalid = |reason: &str| DurationError::Invalid { text: text.to_string(), reason: reason.to_string() };
    let lower = text.trim().to_lowercase();
    if lower.is_empty() {
        return Err(invalid("it is empty"));
    }
    let mut out = Vec::new();
    let mut rest = lower.as_str();
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() {
            return Err(invalid("expected a number followed by a unit (minutes, hours, days, weeks)"));
        }
        let valid_number = {
            let mut parts = number.splitn(2, '.');
            let int = parts.next().unwrap_or("");
            let frac = parts.next();
            !int.is_empty() && frac.is_none_or(|f| !f.is_empty() && !f.contains('.'))
        };
        if !valid_number {
            return Err(invalid(&format!("{} is not a number", crate::error::Shown(number))));
        }
        rest = rest[number_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(invalid(&format!("{} has no unit (minutes, hours, days, weeks)", crate::error::Shown(number))));
        }
        let canonical = UNITS.iter().find(|(names, _)| names.contains(&unit)).map(|(_, c)| *c).ok_or_else(|| {
            invalid(&format!("{} is not a unit (use minutes, hours, days or weeks)", crate::error::Shown(unit)))
        })?;
        out.push(format!("{number}{canonical}"));
        rest = rest[unit_len..].trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if let Some(stripped) = rest.strip_prefix("and ") {
            rest = stripped.trim_start();
        }
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}")).as_secs()
    }

    #[test]
    fn every_spec_form() {
        assert_eq!(secs("4 days"), 4 * 86400);
        assert_eq!(secs("12 hours"), 12 * 3600);
        assert_eq!(secs("1 day"), 86400);
        assert_eq!(secs("2 weeks"), 14 * 86400);
        assert_eq!(secs("90 minutes"), 5400);
        assert_eq!(secs("1.5 hours"), 5400);
        assert_eq!(secs("5d"), 5 * 86400);
        assert_eq!(secs("12h"), 12 * 3600);
        assert_eq!(secs("1w 2d"), 9 * 86400);
    }

    #[test]
    fn case_insensitive_and_spelling_variants() {
        assert_eq!(secs("4 DAYS"), 4 * 86400);
        assert_eq!(secs("1 Hour"), 3600);
        assert_eq!(secs("30 Min"), 1800);
        assert_eq!(secs("1 week, 2 days"), 9 * 86400);
        assert_eq!(secs("1 day and 12 hours"), 36 * 3600);
        assert_eq!(secs("3600 seconds"), 3600);
        assert_eq!(secs("  6h  "), 6 * 3600);
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "   ",
            "4 dayz",
            "days",
            "4",
            "1 2 days",
            "1.2.3 days",
            "1. hour",
            ".5 hours",
            "-1 day",
            "1 month",
            "1 year",
            "12 hours ago",
            "0x10 h",
            "1h30",
            "4 days; drop",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn error_names_the_text() {
        let e = parse_duration("4 dayz").unwrap_err().to_string();
        assert!(e.contains("\"4 dayz\""), "{e}");
        assert!(e.contains("dayz"), "{e}");
    }

    #[test]
    fn huge_numbers_are_an_error_not_a_panic() {
        assert!(parse_duration("99999999999999999999999 weeks").is_err());
        assert!(parse_duration("18446744073709551615 weeks").is_err());
    }
}
