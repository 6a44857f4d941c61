//! The configuration model of SPEC §2, parsed from the JSON text stored in DynamoDB exactly as
//! the Python tool stored it.
//!
//! Parsing walks the JSON value by hand rather than deriving `Deserialize`, so every problem is
//! reported as `field: problem` and the Python tool's looser forms (a `minimum` written as a
//! string of digits, nested filter lists) keep working.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::duration::parse_duration;
use crate::error::ConfigError;
use crate::schedule::Schedule;

/// EC2 filter that selects instances by state; the tool always restricts it.
pub const STATE_FILTER: &str = "instance-state-name";
/// Instance states the tool snapshots.
pub const SELECTED_STATES: [&str; 2] = ["running", "stopped"];
/// Instance states whose volumes keep their configuration's minimum in the clean job: every
/// state but `terminated`, so a volume never loses its minimum while its instance changes state.
pub const RETAINED_STATES: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

const TOP_LEVEL_KEYS: [&str; 5] = ["match", "snapshot", "ignore", "ignore_retention", "replication"];
const SNAPSHOT_KEYS: [&str; 3] = ["retention", "minimum", "frequency"];

/// How unknown keys are treated: an error when an operator stores a configuration, a warning
/// when a stored one is read at run time (so one typo does not stop backups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    Strict,
    Lenient,
}

/// One `DescribeInstances` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotPolicy {
    pub retention: Duration,
    pub minimum: u32,
    pub frequency: Schedule,
}

/// A valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    /// The `match` filters, in the order written (never empty).
    pub filters: Vec<Filter>,
    pub snapshot: SnapshotPolicy,
    pub ignore: BTreeSet<String>,
    pub ignore_retention: bool,
    pub replication: bool,
}

/// A parsed configuration with the warnings parsing produced (unknown keys in lenient mode).
#[derive(Debug, Clone)]
pub struct Parsed {
    pub configuration: Configuration,
    pub warnings: Vec<String>,
}

impl Configuration {
    /// Parses and validates configuration JSON text.
    pub fn parse(text: &str, strictness: Strictness) -> Result<Parsed, ConfigError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::new("configuration", format!("is not valid JSON: {e}")))?;
        Self::from_value(&value, strictness)
    }

    pub fn from_value(value: &Value, strictness: Strictness) -> Result<Parsed, ConfigError> {
        let mut warnings = Vec::new();
        let top = value.as_object().ok_or_else(|| {
            ConfigError::new("configuration", format!("must be a JSON object, found {}", kind(value)))
        })?;
        check_keys(top, "", &TOP_LEVEL_KEYS, strictness, &mut warnings)?;

        let filters = parse_match(top.get("match"), strictness)?;

        let snapshot_value = top.get("snapshot").ok_or_else(|| {
            ConfigError::new("snapshot", "is required (an object with retention, minimum and frequency)")
        })?;
        let snapshot_obj = snapshot_value.as_object().ok_or_else(|| {
            ConfigError::new("snapshot", format!("must be an object, found {}", kind(snapshot_value)))
        })?;
        check_keys(snapshot_obj, "snapshot.", &SNAPSHOT_KEYS, strictness, &mut warnings)?;
        let snapshot = SnapshotPolicy {
            retention: parse_retention(snapshot_obj.get("retention"))?,
            minimum: parse_minimum(snapshot_obj.get("minimum"))?,
            frequency: parse_frequency(snapshot_obj.get("frequency"))?,
        };

        Ok(Parsed {
            configuration: Configuration {
                filters,
                snapshot,
                ignore: parse_ignore(top.get("ignore"))?,
                ignore_retention: parse_flag(
                    top.get("ignore_retention"),
                    "ignore_retention",
                    &["true", "yes"],
                    &["false", "no"],
                )?,
                replication: parse_flag(top.get("replication"), "replication", &["yes", "true"], &["no", "false"])?,
            },
            warnings,
        })
    }

    /// The configuration as canonical JSON: what [`Configuration::parse`] reads back to an equal
    /// configuration. Durations are written in the largest of weeks, days, hours and minutes
    /// that divides them (sub-minute precision, which no sensible schedule has, is rounded to
    /// the second in fractional minutes).
    pub fn to_json(&self) -> Value {
        let filters: serde_json::Map<String, Value> = self
            .filters
            .iter()
            .map(|f| {
                let values = match f.values.as_slice() {
                    [one] => Value::String(one.clone()),
                    many => Value::Array(many.iter().cloned().map(Value::String).collect()),
                };
                (f.name.clone(), values)
            })
            .collect();
        let frequency = match &self.snapshot.frequency {
            crate::schedule::Schedule::Interval(d) => canonical_duration(*d),
            crate::schedule::Schedule::Cron(c) => c.text().to_string(),
        };
        serde_json::json!({
            "match": filters,
            "snapshot": {
                "retention": canonical_duration(self.snapshot.retention),
                "minimum": self.snapshot.minimum,
                "frequency": frequency,
            },
            "ignore": self.ignore.iter().collect::<Vec<_>>(),
            "ignore_retention": self.ignore_retention,
            "replication": self.replication,
        })
    }

    /// The filters to send with `DescribeInstances`: the `match` filters plus the state filter
    /// (running and stopped only; a `match` on state is narrowed to those).
    pub fn instance_filters(&self) -> Vec<Filter> {
        let mut out: Vec<Filter> = self.filters.iter().filter(|f| f.name != STATE_FILTER).cloned().collect();
        let states = match self.filters.iter().find(|f| f.name == STATE_FILTER) {
            Some(f) => SELECTED_STATES
                .iter()
                .filter(|s| f.values.iter().any(|v| v.eq_ignore_ascii_case(s)))
                .map(|s| s.to_string())
                .collect(),
            None => SELECTED_STATES.iter().map(|s| s.to_string()).collect(),
        };
        out.push(Filter { name: STATE_FILTER.to_string(), values: states });
        out
    }

    /// The filters the clean job matches instances with: the `match` filters, with every state
    /// but `terminated` (a state in `match` says what to snapshot, not whose snapshots to keep).
    pub fn retention_filters(&self) -> Vec<Filter> {
        let mut out: Vec<Filter> = self.filters.iter().filter(|f| f.name != STATE_FILTER).cloned().collect();
        out.push(Filter { name: STATE_FILTER.to_string(), values: RETAINED_STATES.map(String::from).to_vec() });
        out
    }
}

/// What a JSON value is, for messages ("a list", "null"...).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn check_keys(
    obj: &Map<String, Value>,
    prefix: &str,
    known: &[&str],
    strictness: Strictness,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            let problem = format!("unknown key (known keys: {})", known.join(", "));
            let key = crate::error::clip(key);
            match strictness {
                Strictness::Strict => return Err(ConfigError::new(format!("{prefix}{key}"), problem)),
                Strictness::Lenient => warnings.push(format!("{prefix}{key}: {problem}; ignored")),
            }
        }
    }
    Ok(())
}

/// `2 weeks`, `3 days`, `12 hours`, `90 minutes`: the largest unit that divides the duration.
fn canonical_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs % 60 != 0 {
        return format!("{} minutes", (d.as_secs_f64() / 60.0 * 1e6).round() / 1e6);
    }
    let units = [(604_800, "weeks"), (86_400, "days"), (3_600, "hours"), (60, "minutes")];
    let (size, name) = units.iter().find(|(size, _)| secs % size == 0).copied().unwrap_or((60, "minutes"));
    format!("{} {name}", secs / size)
}

/// The `match` object. Strict validation (`configure --set`) also refuses what EC2 would refuse
/// at run time: a filter name `DescribeInstances` does not know, or more values than one filter
/// takes. A stored configuration is read leniently: EC2 decides, and the run reports it.
fn parse_match(value: Option<&Value>, strictness: Strictness) -> Result<Vec<Filter>, ConfigError> {
    let value = value.ok_or_else(|| {
        ConfigError::new("match", "is required (an object of EC2 filters, e.g. {\"tag:backup\": \"yes\"})")
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| ConfigError::new("match", format!("must be an object of EC2 filters, found {}", kind(value))))?;
    if obj.is_empty() {
        return Err(ConfigError::new("match", "is empty; it would select every instance, so it is not allowed"));
    }
    let mut filters = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        let field = format!("match.{}", crate::error::clip(name));
        if name.trim().is_empty() {
            return Err(ConfigError::new("match", "has an empty filter name"));
        }
        let mut values = Vec::new();
        flatten_filter_values(v, &field, &mut values)?;
        if values.is_empty() {
            return Err(ConfigError::new(field, "needs at least one value"));
        }
        if strictness == Strictness::Strict {
            check_filter(name, &field, values.len())?;
        }
        filters.push(Filter { name: name.clone(), values });
    }
    if filters.iter().all(|f| f.name == STATE_FILTER) {
        return Err(ConfigError::new(
            "match",
            format!("filters only on {STATE_FILTER}; it would select every instance, so it is not allowed"),
        ));
    }
    if let Some(state) = filters.iter().find(|f| f.name == STATE_FILTER) {
        let any_selected = state.values.iter().any(|v| SELECTED_STATES.iter().any(|s| v.eq_ignore_ascii_case(s)));
        if !any_selected {
            return Err(ConfigError::new(
                format!("match.{STATE_FILTER}"),
                "selects no running or stopped instance; only those are snapshotted",
            ));
        }
    }
    Ok(filters)
}

fn check_filter(name: &str, field: &str, values: usize) -> Result<(), ConfigError> {
    use crate::instance_filters::{close_matches, is_instance_filter, MAX_FILTER_VALUES};
    if !is_instance_filter(name) {
        let near = close_matches(name);
        let hint = if near.is_empty() {
            "use tag:KEY, tag-key, instance-id or another documented filter".to_string()
        } else {
            format!("did you mean {}?", near.join(", "))
        };
        return Err(ConfigError::new(field, format!("is not a DescribeInstances filter name; {hint}")));
    }
    if values > MAX_FILTER_VALUES {
        return Err(ConfigError::new(
            field,
            format!("has {values} values; EC2 takes at most {MAX_FILTER_VALUES} in one filter"),
        ));
    }
    Ok(())
}

fn flatten_filter_values(v: &Value, field: &str, out: &mut Vec<String>) -> Result<(), ConfigError> {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => {
            for item in items {
                flatten_filter_values(item, field, out)?;
            }
        }
        other => {
            return Err(ConfigError::new(
                field,
                format!("values must be strings, numbers or lists of them, found {}", kind(other)),
            ))
        }
    }
    Ok(())
}

fn parse_retention(value: Option<&Value>) -> Result<Duration, ConfigError> {
    const FIELD: &str = "snapshot.retention";
    let value = value.ok_or_else(|| ConfigError::new(FIELD, "is required (a duration such as \"7 days\")"))?;
    let text = value.as_str().ok_or_else(|| {
        ConfigError::new(FIELD, format!("must be a duration text such as \"7 days\", found {}", kind(value)))
    })?;
    let d = parse_duration(text).map_err(|e| ConfigError::new(FIELD, e.to_string()))?;
    if d.is_zero() {
        return Err(ConfigError::new(FIELD, format!("\"{text}\" must be longer than zero")));
    }
    Ok(d)
}

fn parse_minimum(value: Option<&Value>) -> Result<u32, ConfigError> {
    const FIELD: &str = "snapshot.minimum";
    let value = value.ok_or_else(|| ConfigError::new(FIELD, "is required (a whole number of snapshots to keep)"))?;
    let not_whole =
        |shown: String| ConfigError::new(FIELD, format!("{shown} is not a whole number of snapshots (0 or more)"));
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(m) => u32::try_from(m).map_err(|_| ConfigError::new(FIELD, format!("{m} is too large"))),
            None => Err(not_whole(n.to_string())),
        },
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
                return Err(not_whole(crate::error::Shown(s).to_string()));
            }
            t.parse::<u32>().map_err(|_| ConfigError::new(FIELD, format!("{} is too large", crate::error::Shown(s))))
        }
        other => Err(ConfigError::new(FIELD, format!("must be a whole number, found {}", kind(other)))),
    }
}

fn parse_frequency(value: Option<&Value>) -> Result<Schedule, ConfigError> {
    const FIELD: &str = "snapshot.frequency";
    let value = value
        .ok_or_else(|| ConfigError::new(FIELD, "is required (a duration such as \"12 hours\" or a cron expression)"))?;
    let text = value.as_str().ok_or_else(|| {
        ConfigError::new(FIELD, format!("must be a duration or cron expression text, found {}", kind(value)))
    })?;
    Schedule::parse(text).map_err(|e| ConfigError::new(FIELD, e.to_string()))
}

fn parse_ignore(value: Option<&Value>) -> Result<BTreeSet<String>, ConfigError> {
    const FIELD: &str = "ignore";
    let mut out = BTreeSet::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(id) if !id.trim().is_empty() => {
                        out.insert(id.trim().to_string());
                    }
                    Some(_) => return Err(ConfigError::new(format!("{FIELD}[{i}]"), "is empty")),
                    None => {
                        return Err(ConfigError::new(
                            format!("{FIELD}[{i}]"),
                            format!("must be an instance, volume or snapshot id, found {}", kind(item)),
                        ))
                    }
                }
            }
        }
        Some(other) => return Err(ConfigError::new(FIELD, format!("must be a list of ids, found {}", kind(other)))),
    }
    Ok(out)
}

fn parse_flag(value: Option<&Value>, field: &str, yes: &[&str], no: &[&str]) -> Result<bool, ConfigError> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if yes.iter().any(|y| s.trim().eq_ignore_ascii_case(y)) => Ok(true),
        Some(Value::String(s)) if no.iter().any(|n| s.trim().eq_ignore_ascii_case(n)) => Ok(false),
        Some(other) => Err(ConfigError::new(
            field,
            format!("must be true, false, \"{}\" or \"{}\", found {}", yes[0], no[0], shown(other)),
        )),
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => crate::error::Shown(s).to_string(),
        other => kind(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(text: &str) -> Result<Configuration, ConfigError> {
        Configuration::parse(text, Strictness::Strict).map(|p| p.configuration)
    }

    fn err(text: &str) -> String {
        strict(text).expect_err(text).to_string()
    }

    const SPEC_EXAMPLE: &str = r#"{
      "match":    { "tag:backup": "yes", "instance-id": ["i-0abc", "i-0def"] },
      "snapshot": { "retention": "4 days", "minimum": 5, "frequency": "12 hours" },
      "ignore":   ["i-0123", "vol-0456", "snap-0789"],
      "ignore_retention": false,
      "replication": "yes"
    }"#;

    #[test]
    fn spec_example() {
        let c = strict(SPEC_EXAMPLE).unwrap();
        assert_eq!(
            c.filters,
            vec![
                Filter { name: "tag:backup".into(), values: vec!["yes".into()] },
                Filter { name: "instance-id".into(), values: vec!["i-0abc".into(), "i-0def".into()] },
            ]
        );
        assert_eq!(c.snapshot.retention, Duration::from_secs(4 * 86400));
        assert_eq!(c.snapshot.minimum, 5);
        assert_eq!(c.snapshot.frequency, Schedule::Interval(Duration::from_secs(12 * 3600)));
        assert_eq!(c.ignore.iter().cloned().collect::<Vec<_>>(), vec!["i-0123", "snap-0789", "vol-0456"]);
        assert!(!c.ignore_retention);
        assert!(c.replication);
    }

    #[test]
    fn python_readme_examples() {
        let c = strict(r#"{"match": { "tag:backup": "yes" }, "snapshot": {"retention": "4 days", "minimum": 5, "frequency": "12 hours"}, "ignore": []}"#).unwrap();
        assert!(c.ignore.is_empty());
        assert!(!c.replication);
        let c = strict(r#"{"snapshot": {"minimum": 5, "frequency": "6 hours", "retention": "5 days"}, "match": {"tag:backup": "yes"}}"#).unwrap();
        assert_eq!(c.snapshot.frequency, Schedule::Interval(Duration::from_secs(6 * 3600)));
        let c = strict(r#"{"snapshot": {"minimum": 5, "frequency": "1 day", "retention": "5 days"}, "match": {"tag:backup": "daily"}}"#).unwrap();
        assert_eq!(c.snapshot.retention, Duration::from_secs(5 * 86400));
    }

    #[test]
    fn match_values_flatten_and_stringify() {
        let c = strict(r#"{"match": {"tag:Backup": 5, "instance-id": [["i-1", ["i-2"]], "i-3"], "tag:x": "a*?"}, "snapshot": {"retention": "1 day", "minimum": 0, "frequency": "1 day"}}"#).unwrap();
        assert_eq!(c.filters[0].values, vec!["5"]);
        assert_eq!(c.filters[1].values, vec!["i-1", "i-2", "i-3"]);
        assert_eq!(c.filters[2].values, vec!["a*?"]);
    }

    #[test]
    fn minimum_as_string_of_digits_is_accepted() {
        let c = strict(
            r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": "7", "frequency": "1 day"}}"#,
        )
        .unwrap();
        assert_eq!(c.snapshot.minimum, 7);
    }

    #[test]
    fn cron_frequency() {
        let c = strict(r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "0 1 ? * SUN"}}"#).unwrap();
        assert!(matches!(c.snapshot.frequency, Schedule::Cron(_)));
    }

    #[test]
    fn retention_filters_keep_every_state_but_terminated() {
        for text in [
            SPEC_EXAMPLE.to_string(),
            SPEC_EXAMPLE
                .replace(r#""tag:backup": "yes","#, r#""tag:backup": "yes", "instance-state-name": "running","#),
        ] {
            let c = strict(&text).unwrap();
            let f = c.retention_filters();
            let states = &f.iter().find(|f| f.name == STATE_FILTER).unwrap().values;
            assert_eq!(states, &["pending", "running", "stopping", "stopped", "shutting-down"], "{text}");
            assert_eq!(f.iter().filter(|f| f.name == STATE_FILTER).count(), 1);
            assert!(f.iter().any(|f| f.name == "tag:backup"));
        }
    }

    #[test]
    fn instance_filters_always_restrict_state() {
        let c = strict(SPEC_EXAMPLE).unwrap();
        let f = c.instance_filters();
        assert_eq!(
            f.last().unwrap(),
            &Filter { name: STATE_FILTER.into(), values: vec!["running".into(), "stopped".into()] }
        );
        let c = strict(r#"{"match": {"tag:b": "y", "instance-state-name": ["running", "terminated"]}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}}"#).unwrap();
        let f = c.instance_filters();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].values, vec!["running"]);
    }

    #[test]
    fn errors_name_the_field_and_problem() {
        let base = |snap: &str| format!(r#"{{"match": {{"tag:b": "y"}}, "snapshot": {snap}}}"#);
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "configuration: is not valid JSON"),
            ("[]".into(), "configuration: must be a JSON object"),
            (r#"{"snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}}"#.into(), "match: is required"),
            (r#"{"match": {}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}}"#.into(), "match: is empty"),
            (r#"{"match": "tag:b", "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}}"#.into(), "match: must be an object"),
            (r#"{"match": {"tag:b": []}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}}"#.into(), "match.tag:b: needs at least one value"),
            (r#"{"match": {"tag:b": true}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}}"#.into(), "match.tag:b: values must be strings"),
            (r#"{"match": {"instance-state-name": "running"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}}"#.into(), "match: filters only on instance-state-name"),
            (r#"{"match": {"tag:b": "y"}}"#.into(), "snapshot: is required"),
            (base(r#"{"retention": "4 dayz", "minimum": 1, "frequency": "1 day"}"#), "snapshot.retention: \"4 dayz\" is not a duration"),
            (base(r#"{"retention": 4, "minimum": 1, "frequency": "1 day"}"#), "snapshot.retention: must be a duration text"),
            (base(r#"{"retention": "0 days", "minimum": 1, "frequency": "1 day"}"#), "snapshot.retention: \"0 days\" must be longer than zero"),
            (base(r#"{"minimum": 1, "frequency": "1 day"}"#), "snapshot.retention: is required"),
            (base(r#"{"retention": "1 day", "minimum": -1, "frequency": "1 day"}"#), "snapshot.minimum: -1 is not a whole number"),
            (base(r#"{"retention": "1 day", "minimum": 1.5, "frequency": "1 day"}"#), "snapshot.minimum: 1.5 is not a whole number"),
            (base(r#"{"retention": "1 day", "minimum": "five", "frequency": "1 day"}"#), "snapshot.minimum: \"five\" is not a whole number"),
            (base(r#"{"retention": "1 day", "minimum": 99999999999, "frequency": "1 day"}"#), "snapshot.minimum: 99999999999 is too large"),
            (base(r#"{"retention": "1 day", "frequency": "1 day"}"#), "snapshot.minimum: is required"),
            (base(r#"{"retention": "1 day", "minimum": 1, "frequency": "30 minutes"}"#), "snapshot.frequency: \"30 minutes\" is shorter than the smallest frequency of 1 hour"),
            (base(r#"{"retention": "1 day", "minimum": 1, "frequency": "61 * * * *"}"#), "snapshot.frequency: \"61 * * * *\" is not a valid cron expression"),
            (base(r#"{"retention": "1 day", "minimum": 1, "frequency": "sometimes"}"#), "snapshot.frequency: \"sometimes\" is neither a duration nor a cron expression"),
            (base(r#"{"retention": "1 day", "minimum": 1}"#), "snapshot.frequency: is required"),
            (base(r#"{"retention": "1 day", "minimum": 1, "frequency": "1 day", "retension": "2 days"}"#), "snapshot.retension: unknown key"),
            (r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}, "retension": "x"}"#.into(), "retension: unknown key"),
            (r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}, "ignore": "i-1"}"#.into(), "ignore: must be a list of ids"),
            (r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}, "ignore": [1]}"#.into(), "ignore[0]: must be an instance, volume or snapshot id"),
            (r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}, "replication": "maybe"}"#.into(), "replication: must be true, false, \"yes\" or \"no\", found \"maybe\""),
            (r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}, "ignore_retention": 1}"#.into(), "ignore_retention: must be true, false"),
        ];
        for (text, expected) in cases {
            let e = err(&text);
            assert!(e.starts_with(expected), "for {text}\n  got: {e}\n  want prefix: {expected}");
        }
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        let key = "k".repeat(5000);
        let text = format!(
            r#"{{"match": {{"tag:b": "y"}}, "snapshot": {{"retention": "1 day", "minimum": 1, "frequency": "1 day"}}, "{key}": 1}}"#
        );
        let e = err(&text);
        assert_eq!(e, format!("{}... (5000 characters): unknown key (known keys: match, snapshot, ignore, ignore_retention, replication)", "k".repeat(60)));
        let text = format!(
            r#"{{"match": {{"{key}": []}}, "snapshot": {{"retention": "1 day", "minimum": 1, "frequency": "1 day"}}}}"#
        );
        assert_eq!(err(&text), format!("match.{}... (5000 characters): needs at least one value", "k".repeat(60)));
    }

    #[test]
    fn unknown_keys_warn_when_lenient() {
        let p = Configuration::parse(
            r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day", "extra": 1}, "retension": "x"}"#,
            Strictness::Lenient,
        )
        .unwrap();
        assert_eq!(p.warnings.len(), 2);
        assert!(p.warnings.iter().any(|w| w.starts_with("retension: unknown key")));
        assert!(p.warnings.iter().any(|w| w.starts_with("snapshot.extra: unknown key")));
    }

    #[test]
    fn flags_accept_python_forms() {
        let with = |extra: &str| {
            strict(&format!(r#"{{"match": {{"tag:b": "y"}}, "snapshot": {{"retention": "1 day", "minimum": 1, "frequency": "1 day"}}{extra}}}"#)).unwrap()
        };
        assert!(with(r#", "replication": true"#).replication);
        assert!(with(r#", "replication": "YES""#).replication);
        assert!(!with(r#", "replication": "no""#).replication);
        assert!(!with(r#", "replication": false"#).replication);
        assert!(with(r#", "ignore_retention": true"#).ignore_retention);
        assert!(!with(r#", "ignore_retention": "false""#).ignore_retention);
    }
}
