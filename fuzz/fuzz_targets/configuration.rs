//! Configuration parsing: never panics, and whatever parses round-trips through its canonical
//! JSON (durations with sub-minute precision aside, which the canonical form rounds).
#![no_main]

use ebs_snapper_core::{Configuration, Strictness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Configuration::parse(text, Strictness::Lenient);
    let Ok(parsed) = Configuration::parse(text, Strictness::Strict) else { return };
    let first = parsed.configuration;
    let whole_minutes = |d: std::time::Duration| d.subsec_nanos() == 0 && d.as_secs() % 60 == 0;
    let interval_ok = match &first.snapshot.frequency {
        ebs_snapper_core::Schedule::Interval(d) => whole_minutes(*d),
        ebs_snapper_core::Schedule::Cron(_) => true,
    };
    if !(whole_minutes(first.snapshot.retention) && interval_ok) {
        return;
    }
    let json = first.to_json();
    let second = Configuration::parse(&json.to_string(), Strictness::Strict)
        .unwrap_or_else(|e| panic!("{json} does not parse back: {e}"))
        .configuration;
    assert_eq!(second, first, "{json}");
});
