//! The frequency parser (durations and cron): never panics, and a parsed schedule can always be
//! evaluated, with the next due time never before the last snapshot.
#![no_main]

use chrono::{TimeZone, Utc};
use ebs_snapper_core::{due, Schedule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = ebs_snapper_core::parse_duration(text);
    let Ok(schedule) = Schedule::parse(text) else { return };
    let last = Utc.with_ymd_and_hms(2026, 11, 28, 6, 30, 0).unwrap();
    if let Some(next) = schedule.next_due(last) {
        assert!(next >= last, "{text:?}: due {next} before the last snapshot {last}");
    }
    let _ = due(&schedule, Some(last), last + chrono::Duration::days(3));
    let _ = due(&schedule, None, last);
});
