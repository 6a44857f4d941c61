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

/// A duration as an operator writes it.
fn duration_text(min_hours: bool) -> impl Strategy<Value = String> {
    let units: &[&str] = if min_hours {
        &["hours", "hour", "h", "days", "d", "weeks", "w", "DAYS"]
    } else {
        &["minutes", "min", "hours", "h", "days", "day", "d", "weeks", "w", "Days"]
    };
    (1u32..400, proptest::sample::select(units.to_vec()), any::<bool>()).prop_map(|(n, unit, half)| {
        if half {
            format!("{n}.5 {unit}")
        } else {
            format!("{n} {unit}")
        }
    })
}

fn frequency_text() -> impl Strategy<Value = String> {
    prop_oneof![
        duration_text(true),
        proptest::sample::select(vec![
            "0 */6 * * *",
            "30 2 * * 1-5",
            "0 0 1 * *",
            "cron(0 3 * * ? *)",
            "cron(15 */4 ? * MON-FRI *)",
            "0 12 * * SUN",
        ])
        .prop_map(str::to_string),
    ]
}

fn flag() -> impl Strategy<Value = serde_json::Value> {
    proptest::sample::select(vec![
        serde_json::json!(true),
        serde_json::json!(false),
        serde_json::json!("yes"),
        serde_json::json!("no"),
    ])
}

prop_compose! {
    /// The JSON text of a configuration built from valid parts.
    fn configuration_text()(
        filters in proptest::collection::vec(
            ("tag:[A-Za-z][A-Za-z0-9_-]{0,8}", proptest::collection::vec("[a-z0-9-]{1,10}", 1..3)),
            1..4,
        ),
        retention in duration_text(false),
        minimum in 0u32..100_000,
        frequency in frequency_text(),
        ignore in proptest::collection::vec("(i|vol|snap)-0[0-9a-f]{8,16}", 0..4),
        ignore_retention in flag(),
        replication in flag(),
    ) -> String {
        let matches: serde_json::Map<String, serde_json::Value> =
            filters.into_iter().map(|(k, v)| (k, serde_json::json!(v))).collect();
        serde_json::json!({
            "match": matches,
            "snapshot": { "retention": retention, "minimum": minimum, "frequency": frequency },
            "ignore": ignore,
            "ignore_retention": ignore_retention,
            "replication": replication,
        })
        .to_string()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A valid configuration written back as JSON reads back to the same configuration, and its
    /// canonical JSON is stable.
    #[test]
    fn valid_configuration_round_trips_through_json(text in configuration_text()) {
        let first = Configuration::parse(&text, Strictness::Strict)
            .unwrap_or_else(|e| panic!("built from valid parts, yet {text} is rejected: {e}"))
            .configuration;
        let json = first.to_json();
        let second = Configuration::parse(&json.to_string(), Strictness::Strict)
            .unwrap_or_else(|e| panic!("{json} does not parse back: {e}"))
            .configuration;
        prop_assert_eq!(&second, &first, "{}", json);
        prop_assert_eq!(second.to_json(), json);
    }
}
