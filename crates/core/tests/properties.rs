//! Property tests: parsers never panic, whatever the input.

use ebs_snapper_core::{parse_duration, Configuration, Schedule, Strictness};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn duration_parse_never_panics(s in "\\PC{0,40}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn duration_like_text_never_panics(n in "[0-9.]{0,25}", unit in "(?i)(s|m|h|d|w|min|hours?|days?|weeks?|months?|x)", rest in "[ ,0-9a-z.]{0,12}") {
        let _ = parse_duration(&format!("{n} {unit}{rest}"));
    }

    #[test]
    fn schedule_parse_never_panics(s in "\\PC{0,40}") {
        let _ = Schedule::parse(&s);
    }

    #[test]
    fn cron_like_text_never_panics(fields in proptest::collection::vec("[0-9*?/,#LW A-Z-]{1,6}", 1..8), wrap in any::<bool>()) {
        let body = fields.join(" ");
        let text = if wrap { format!("cron({body})") } else { body };
        if let Ok(s) = Schedule::parse(&text) {
            // A parsed schedule can always be evaluated without panicking.
            let _ = s.next_due(chrono::Utc::now());
        }
    }

    #[test]
    fn configuration_parse_never_panics(s in "\\PC{0,200}") {
        let _ = Configuration::parse(&s, Strictness::Strict);
        let _ = Configuration::parse(&s, Strictness::Lenient);
    }

    #[test]
    fn configuration_with_arbitrary_fields_never_panics(
        key in "\\PC{0,10}", value in "\\PC{0,20}", retention in "\\PC{0,15}", minimum in any::<i64>(), frequency in "\\PC{0,20}"
    ) {
        let v = serde_json::json!({
            "match": { key: value },
            "snapshot": { "retention": retention, "minimum": minimum, "frequency": frequency },
        });
        let _ = Configuration::parse(&v.to_string(), Strictness::Strict);
    }
}
