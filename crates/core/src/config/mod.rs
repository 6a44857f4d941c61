//! The configuration model of SPEC §2, parsed from the JSON text stored in DynamoDB exactly as
//! the Python tool stored it.
//!
//! Parsing walks the JSON value by hand rather than deriving `Deserialize`, so every problem is
//! reported as `field: problem` and the Python tool's looser forms (a `minimum` written as a
//! string of digits, nested filter lists) keep working.

// What a configuration is made of, and the set of them an account stores.
pub mod configuration_set;
pub mod drill;
pub mod duration;
pub mod instance_filters;
pub mod lock;
pub mod schedule;
pub mod tiers;
pub mod vault;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::duration::parse_duration;
use crate::error::ConfigError;
use crate::schedule::Schedule;
pub use drill::Drill;
pub use lock::{Lock, LockMode};

/// EC2 filter that selects instances by state; the tool always restricts it.
pub const STATE_FILTER: &str = "instance-state-name";
/// Instance states the tool snapshots.
pub const SELECTED_STATES: [&str; 2] = ["running", "stopped"];
/// Instance states whose volumes keep their configuration's minimum in the clean job: every
/// state but `terminated`, so a volume never loses its minimum while its instance changes state.
pub const RETAINED_STATES: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

const TOP_LEVEL_KEYS: [&str; 13] = [
    "match",
    "snapshot",
    "schedules",
    "ignore",
    "ignore_retention",
    "replication",
    "exclude_boot",
    "exclude_tags",
    "consistency",
    "tags",
    "copies",
    "vault",
    "drill",
];
const SNAPSHOT_KEYS: [&str; 4] = ["retention", "minimum", "frequency", "lock"];
const TIER_KEYS: [&str; 6] = ["name", "frequency", "retention", "minimum", "archive", "lock"];
const COPY_KEYS: [&str; 6] = ["region", "retention", "minimum", "kms_key", "lock", "drill"];
/// Disaster-recovery destinations a configuration may have (SPEC §12).
pub const MAX_COPIES: usize = 3;

/// Tiers a configuration may have (SPEC §11).
pub const MAX_TIERS: usize = 4;
/// The name of the one tier of a configuration written with `snapshot`.
pub const DEFAULT_TIER: &str = "default";
/// Configured `tags` at most: with this tool's own tags (`DeleteOn`, provenance, tier, set,
/// replication) a snapshot stays within AWS's 50, so a configured tag is never cut.
pub const MAX_CONFIGURED_TAGS: usize = 40;

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

/// One tier of snapshots: how often, kept how long, at least how many (SPEC §11). A
/// configuration written with `snapshot` has one, named [`DEFAULT_TIER`].
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    pub retention: Duration,
    pub minimum: u32,
    pub frequency: Schedule,
    /// Older snapshots of this tier move to EC2's archive storage tier (the clean job).
    pub archive: bool,
    /// The lock put on each snapshot of this tier (SPEC §16).
    pub lock: Option<Lock>,
}

/// The largest minimum among `tiers` (0 for none): what they keep at least, per volume.
pub fn largest_minimum(tiers: &[Tier]) -> u32 {
    tiers.iter().map(|t| t.minimum).max().unwrap_or(0)
}

/// Which snapshots are taken together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// One `CreateSnapshot` per volume.
    #[default]
    Volume,
    /// One `CreateSnapshots` per instance: a crash-consistent set of its selected volumes.
    Instance,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Volume => "volume",
            Consistency::Instance => "instance",
        }
    }
}

/// The values of one `exclude_tags` key that exclude.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagValues {
    /// `"*"`: any value.
    Any,
    OneOf(Vec<String>),
}

impl TagValues {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            TagValues::Any => true,
            TagValues::OneOf(values) => values.iter().any(|v| v == value),
        }
    }
}

/// One disaster-recovery destination (SPEC §12): every snapshot of the configuration is copied
/// into `region`, where the copy lives by its own `DeleteOn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDestination {
    pub region: String,
    /// The copy's `DeleteOn` is the copy date + this; without it, the source's `DeleteOn`.
    pub retention: Option<Duration>,
    /// The copies of one source volume kept at least in `region`; without it, the
    /// configuration's largest minimum.
    pub minimum: Option<u32>,
    /// The KMS key (an ARN in `region`) the copy is encrypted with; without it, EC2's default.
    pub kms_key: Option<String>,
    /// The lock put on each copy made there (SPEC §16).
    pub lock: Option<Lock>,
    /// Restore drills of the copies in this region (SPEC §17).
    pub drill: Option<Drill>,
}

/// A valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    /// The `match` filters, in the order written (never empty).
    pub filters: Vec<Filter>,
    /// The tiers in schedule order: 1 to [`MAX_TIERS`].
    pub tiers: Vec<Tier>,
    /// Written with `schedules` (tiers named by the operator, snapshots tagged with their tier),
    /// rather than `snapshot` (the one tier `default`, snapshots tagged as by the Python tool).
    pub tiered: bool,
    pub ignore: BTreeSet<String>,
    pub ignore_retention: bool,
    pub replication: bool,
    /// The instance's root device volume is never snapshotted.
    pub exclude_boot: bool,
    /// An instance or volume carrying one of these keys with a listed value is not snapshotted.
    pub exclude_tags: Vec<(String, TagValues)>,
    pub consistency: Consistency,
    /// Added to every snapshot, over copied tags of the same key.
    pub tags: Vec<(String, String)>,
    /// Disaster-recovery destinations, 0 to [`MAX_COPIES`], regions unique.
    pub copies: Vec<CopyDestination>,
    /// The vault account that keeps a copy of every completed snapshot (SPEC §16).
    pub vault: Option<vault::Vault>,
    /// Restore drills of the source snapshots (SPEC §17).
    pub drill: Option<Drill>,
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
        let copies = parse_copies(top.get("copies"), &filters, strictness, &mut warnings)?;
        let vault = vault::parse_vault(top.get("vault"), &source_regions(&filters), strictness, &mut warnings)?;

        let (tiers, tiered) = match (top.get("snapshot"), top.get("schedules")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "schedules",
                    "cannot be given with snapshot; write the one tier as a schedule, or keep snapshot alone",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "snapshot",
                    "is required (an object with retention, minimum and frequency), or schedules (a list of tiers)",
                ))
            }
            (Some(snapshot_value), None) => {
                let snapshot_obj = snapshot_value.as_object().ok_or_else(|| {
                    ConfigError::new("snapshot", format!("must be an object, found {}", kind(snapshot_value)))
                })?;
                check_keys(snapshot_obj, "snapshot.", &SNAPSHOT_KEYS, strictness, &mut warnings)?;
                let tier = Tier {
                    name: DEFAULT_TIER.to_string(),
                    retention: parse_retention(snapshot_obj.get("retention"), "snapshot.retention")?,
                    minimum: parse_minimum(snapshot_obj.get("minimum"), "snapshot.minimum")?,
                    frequency: parse_frequency(snapshot_obj.get("frequency"), "snapshot.frequency")?,
                    archive: false,
                    lock: lock::parse_lock(snapshot_obj.get("lock"), "snapshot.lock")?,
                };
                lock::check_locked_retention(
                    tier.lock.as_ref(),
                    tier.retention,
                    "snapshot.lock",
                    "snapshot.retention",
                )?;
                (vec![tier], false)
            }
            (None, Some(schedules)) => (parse_schedules(schedules, strictness, &mut warnings)?, true),
        };
        // A locked copy lives by its own retention, else by its source's (the shortest tier's).
        for (i, copy) in copies.iter().enumerate() {
            let (retention, field) = match copy.retention {
                Some(r) => (r, format!("copies[{i}].retention")),
                None => (
                    tiers.iter().map(|t| t.retention).min().unwrap_or_default(),
                    "the shortest tier retention (copies[{i}] has none of its own)".replace("{i}", &i.to_string()),
                ),
            };
            lock::check_locked_retention(copy.lock.as_ref(), retention, &format!("copies[{i}].lock"), &field)?;
        }

        Ok(Parsed {
            configuration: Configuration {
                filters,
                tiers,
                tiered,
                ignore: parse_ignore(top.get("ignore"))?,
                ignore_retention: parse_flag(
                    top.get("ignore_retention"),
                    "ignore_retention",
                    &["true", "yes"],
                    &["false", "no"],
                )?,
                replication: parse_flag(top.get("replication"), "replication", &["yes", "true"], &["no", "false"])?,
                exclude_boot: parse_flag(top.get("exclude_boot"), "exclude_boot", &["true", "yes"], &["false", "no"])?,
                exclude_tags: parse_exclude_tags(top.get("exclude_tags"))?,
                consistency: parse_consistency(top.get("consistency"))?,
                tags: parse_tags(top.get("tags"))?,
                copies,
                vault,
                drill: drill::parse_drill(top.get("drill"), "drill")?,
            },
            warnings,
        })
    }

    /// The tier named `name`, if the configuration has one.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// The tiers whose schedule never fires after `now` (a cron expression whose years are
    /// past): once they have a snapshot, they are never due again.
    pub fn tiers_never_due(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<&str> {
        self.tiers
            .iter()
            .filter(|t| crate::schedule::due(&t.frequency, Some(now), now) == crate::schedule::Due::Never)
            .map(|t| t.name.as_str())
            .collect()
    }

    /// The value of `ebs-snapper:copy-to` on a new snapshot in `region`: the destinations other
    /// than `region`, joined by `,` (`None` when there are none).
    pub fn copy_to(&self, region: &str) -> Option<String> {
        let regions: Vec<&str> = self.copies.iter().map(|c| c.region.as_str()).filter(|r| *r != region).collect();
        (!regions.is_empty()).then(|| regions.join(","))
    }

    /// The destination `region`, if the configuration copies there.
    pub fn copy_destination(&self, region: &str) -> Option<&CopyDestination> {
        self.copies.iter().find(|c| c.region == region)
    }

    /// How many copies of one source volume are kept at least in `region`: the destination's
    /// `minimum`, else the configuration's largest.
    pub fn copy_minimum(&self, region: &str) -> u32 {
        self.copy_destination(region).and_then(|c| c.minimum).unwrap_or_else(|| self.largest_minimum())
    }

    /// The largest minimum of any tier: what the configuration keeps at least, per volume.
    pub fn largest_minimum(&self) -> u32 {
        largest_minimum(&self.tiers)
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
        let frequency = |t: &Tier| match &t.frequency {
            crate::schedule::Schedule::Interval(d) => canonical_duration(*d),
            crate::schedule::Schedule::Cron(c) => c.text().to_string(),
        };
        let mut doc = serde_json::json!({
            "match": filters,
            "ignore": self.ignore.iter().collect::<Vec<_>>(),
            "ignore_retention": self.ignore_retention,
            "replication": self.replication,
        });
        match (self.tiered, self.tiers.as_slice()) {
            (false, [t]) => {
                doc["snapshot"] = serde_json::json!({
                    "retention": canonical_duration(t.retention),
                    "minimum": t.minimum,
                    "frequency": frequency(t),
                });
                if let Some(lock) = &t.lock {
                    doc["snapshot"]["lock"] = lock.to_json();
                }
            }
            (_, tiers) => {
                doc["schedules"] = tiers
                    .iter()
                    .map(|t| {
                        let mut tier = serde_json::json!({
                            "name": t.name,
                            "frequency": frequency(t),
                            "retention": canonical_duration(t.retention),
                            "minimum": t.minimum,
                            "archive": t.archive,
                        });
                        if let Some(lock) = &t.lock {
                            tier["lock"] = lock.to_json();
                        }
                        tier
                    })
                    .collect();
            }
        }
        // The Part II keys only when set, so a Part I configuration reads back as it was.
        if self.exclude_boot {
            doc["exclude_boot"] = Value::Bool(true);
        }
        if !self.exclude_tags.is_empty() {
            doc["exclude_tags"] = self
                .exclude_tags
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        TagValues::Any => Value::String("*".into()),
                        TagValues::OneOf(values) => match values.as_slice() {
                            [one] => Value::String(one.clone()),
                            many => Value::Array(many.iter().cloned().map(Value::String).collect()),
                        },
                    };
                    (k.clone(), v)
                })
                .collect::<Map<String, Value>>()
                .into();
        }
        if self.consistency != Consistency::Volume {
            doc["consistency"] = Value::String(self.consistency.as_str().into());
        }
        if !self.copies.is_empty() {
            doc["copies"] = self
                .copies
                .iter()
                .map(|c| {
                    let mut entry = serde_json::json!({ "region": c.region });
                    if let Some(r) = c.retention {
                        entry["retention"] = Value::String(canonical_duration(r));
                    }
                    if let Some(m) = c.minimum {
                        entry["minimum"] = m.into();
                    }
                    if let Some(k) = &c.kms_key {
                        entry["kms_key"] = Value::String(k.clone());
                    }
                    if let Some(lock) = &c.lock {
                        entry["lock"] = lock.to_json();
                    }
                    if let Some(drill) = &c.drill {
                        entry["drill"] = drill.to_json();
                    }
                    entry
                })
                .collect();
        }
        if let Some(v) = &self.vault {
            doc["vault"] = v.to_json();
        }
        if let Some(d) = &self.drill {
            doc["drill"] = d.to_json();
        }
        if !self.tags.is_empty() {
            doc["tags"] = self
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<Map<String, Value>>()
                .into();
        }
        doc
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

pub(crate) fn check_keys(
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
pub(crate) fn canonical_duration(d: Duration) -> String {
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

pub(crate) fn parse_retention(value: Option<&Value>, field: &str) -> Result<Duration, ConfigError> {
    let value = value.ok_or_else(|| ConfigError::new(field, "is required (a duration such as \"7 days\")"))?;
    let text = value.as_str().ok_or_else(|| {
        ConfigError::new(field, format!("must be a duration text such as \"7 days\", found {}", kind(value)))
    })?;
    let d = parse_duration(text).map_err(|e| ConfigError::new(field, e.to_string()))?;
    if d.is_zero() {
        return Err(ConfigError::new(field, format!("\"{text}\" must be longer than zero")));
    }
    Ok(d)
}

pub(crate) fn parse_minimum(value: Option<&Value>, field: &str) -> Result<u32, ConfigError> {
    let value = value.ok_or_else(|| ConfigError::new(field, "is required (a whole number of snapshots to keep)"))?;
    let not_whole =
        |shown: String| ConfigError::new(field, format!("{shown} is not a whole number of snapshots (0 or more)"));
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(m) => u32::try_from(m).map_err(|_| ConfigError::new(field, format!("{m} is too large"))),
            None => Err(not_whole(n.to_string())),
        },
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
                return Err(not_whole(crate::error::Shown(s).to_string()));
            }
            t.parse::<u32>().map_err(|_| ConfigError::new(field, format!("{} is too large", crate::error::Shown(s))))
        }
        other => Err(ConfigError::new(field, format!("must be a whole number, found {}", kind(other)))),
    }
}

fn parse_frequency(value: Option<&Value>, field: &str) -> Result<Schedule, ConfigError> {
    let value = value
        .ok_or_else(|| ConfigError::new(field, "is required (a duration such as \"12 hours\" or a cron expression)"))?;
    let text = value.as_str().ok_or_else(|| {
        ConfigError::new(field, format!("must be a duration or cron expression text, found {}", kind(value)))
    })?;
    Schedule::parse(text).map_err(|e| ConfigError::new(field, e.to_string()))
}

/// `schedules`: 1 to [`MAX_TIERS`] tiers, each named `[a-z0-9-]{1,32}`, names unique.
fn parse_schedules(
    value: &Value,
    strictness: Strictness,
    warnings: &mut Vec<String>,
) -> Result<Vec<Tier>, ConfigError> {
    let items = value
        .as_array()
        .ok_or_else(|| ConfigError::new("schedules", format!("must be a list of tiers, found {}", kind(value))))?;
    if items.is_empty() || items.len() > MAX_TIERS {
        return Err(ConfigError::new(
            "schedules",
            format!("has {} tiers; a configuration has 1 to {MAX_TIERS}", items.len()),
        ));
    }
    let mut tiers: Vec<Tier> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("schedules[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| ConfigError::new(&at, format!("must be an object (a tier), found {}", kind(item))))?;
        check_keys(obj, &format!("{at}."), &TIER_KEYS, strictness, warnings)?;
        let name = match obj.get("name") {
            Some(Value::String(n)) if is_tier_name(n) => n.clone(),
            Some(Value::String(n)) => {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("{} is not a tier name (1 to 32 of a-z, 0-9 and -)", crate::error::Shown(n)),
                ))
            }
            Some(other) => {
                return Err(ConfigError::new(format!("{at}.name"), format!("must be a text, found {}", kind(other))))
            }
            None => return Err(ConfigError::new(format!("{at}.name"), "is required (a tier name such as \"daily\")")),
        };
        if tiers.iter().any(|t| t.name == name) {
            return Err(ConfigError::new(format!("{at}.name"), format!("\"{name}\" is the name of an earlier tier")));
        }
        let tier = Tier {
            retention: parse_retention(obj.get("retention"), &format!("{at}.retention"))?,
            minimum: parse_minimum(obj.get("minimum"), &format!("{at}.minimum"))?,
            frequency: parse_frequency(obj.get("frequency"), &format!("{at}.frequency"))?,
            archive: parse_flag(obj.get("archive"), &format!("{at}.archive"), &["true", "yes"], &["false", "no"])?,
            lock: lock::parse_lock(obj.get("lock"), &format!("{at}.lock"))?,
            name,
        };
        lock::check_locked_retention(
            tier.lock.as_ref(),
            tier.retention,
            &format!("{at}.lock"),
            &format!("{at}.retention"),
        )?;
        tiers.push(tier);
    }
    Ok(tiers)
}

fn is_tier_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `exclude_tags`: tag key -> a value, a list of values, or `"*"` (any value).
fn parse_exclude_tags(value: Option<&Value>) -> Result<Vec<(String, TagValues)>, ConfigError> {
    const FIELD: &str = "exclude_tags";
    let obj = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(ConfigError::new(
                FIELD,
                format!("must be an object of tag key -> value, list of values or \"*\", found {}", kind(other)),
            ))
        }
    };
    let mut out = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        let field = format!("{FIELD}.{}", crate::error::clip(key));
        if key.trim().is_empty() {
            return Err(ConfigError::new(FIELD, "has an empty tag key"));
        }
        let values = match v {
            Value::String(s) if s == "*" => TagValues::Any,
            Value::String(s) => TagValues::OneOf(vec![s.clone()]),
            Value::Array(items) if !items.is_empty() => {
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) if s == "*" => {
                            return Err(ConfigError::new(field, "\"*\" stands alone (any value), not in a list"))
                        }
                        Value::String(s) => values.push(s.clone()),
                        other => {
                            return Err(ConfigError::new(field, format!("values must be texts, found {}", kind(other))))
                        }
                    }
                }
                TagValues::OneOf(values)
            }
            Value::Array(_) => return Err(ConfigError::new(field, "needs at least one value (or \"*\" for any)")),
            other => {
                return Err(ConfigError::new(
                    field,
                    format!("must be a value, a list of values or \"*\", found {}", kind(other)),
                ))
            }
        };
        out.push((key.clone(), values));
    }
    Ok(out)
}

fn parse_consistency(value: Option<&Value>) -> Result<Consistency, ConfigError> {
    match value {
        None | Some(Value::Null) => Ok(Consistency::Volume),
        Some(Value::String(s)) if s == "volume" => Ok(Consistency::Volume),
        Some(Value::String(s)) if s == "instance" => Ok(Consistency::Instance),
        Some(other) => {
            Err(ConfigError::new("consistency", format!("must be \"volume\" or \"instance\", found {}", shown(other))))
        }
    }
}

/// `tags`: key -> value, added to every snapshot. Keys this tool sets itself, and AWS's
/// reserved `aws:` prefix, are refused: a configured `DeleteOn` would decide retention.
fn parse_tags(value: Option<&Value>) -> Result<Vec<(String, String)>, ConfigError> {
    const FIELD: &str = "tags";
    let obj = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(ConfigError::new(
                FIELD,
                format!("must be an object of tag key -> value, found {}", kind(other)),
            ))
        }
    };
    if obj.len() > MAX_CONFIGURED_TAGS {
        return Err(ConfigError::new(
            FIELD,
            format!("has {} tags; at most {MAX_CONFIGURED_TAGS} (a snapshot takes 50 with this tool's own)", obj.len()),
        ));
    }
    let mut out = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        let field = format!("{FIELD}.{}", crate::error::clip(key));
        if key.trim().is_empty() || key.chars().count() > 128 {
            return Err(ConfigError::new(
                FIELD,
                format!("{} is not a tag key (1 to 128 characters)", crate::error::Shown(key)),
            ));
        }
        if crate::tags::is_reserved_key(key) {
            return Err(ConfigError::new(field, "is a key this tool or AWS sets itself; choose another"));
        }
        let text = match v {
            Value::String(s) if s.chars().count() <= 256 => s.clone(),
            Value::String(_) => return Err(ConfigError::new(field, "is longer than 256 characters")),
            other => return Err(ConfigError::new(field, format!("must be a text, found {}", kind(other)))),
        };
        out.push((key.clone(), text));
    }
    Ok(out)
}

/// `copies`: up to [`MAX_COPIES`] destinations, each a region name (unique, and not a region the
/// `match` confines the instances to with `availability-zone`), with an optional `retention`
/// (longer than zero), `minimum` and `kms_key` (a KMS key ARN in that region).
fn parse_copies(
    value: Option<&Value>,
    filters: &[Filter],
    strictness: Strictness,
    warnings: &mut Vec<String>,
) -> Result<Vec<CopyDestination>, ConfigError> {
    const FIELD: &str = "copies";
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ConfigError::new(FIELD, format!("must be a list of destinations, found {}", kind(other))))
        }
    };
    if items.len() > MAX_COPIES {
        return Err(ConfigError::new(FIELD, format!("has {} destinations; at most {MAX_COPIES}", items.len())));
    }
    // A copy into a region the instances are confined to would be a copy into its own region.
    let source_regions = source_regions(filters);
    let mut out: Vec<CopyDestination> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |key: &str| format!("{FIELD}[{i}].{key}");
        let obj = item.as_object().ok_or_else(|| {
            ConfigError::new(format!("{FIELD}[{i}]"), format!("must be an object with a region, found {}", kind(item)))
        })?;
        check_keys(obj, &format!("{FIELD}[{i}]."), &COPY_KEYS, strictness, warnings)?;
        let region = match obj.get("region") {
            None => {
                return Err(ConfigError::new(field("region"), "is required (an AWS region name such as eu-west-1)"))
            }
            Some(Value::String(r)) if crate::ids::is_region_name(r.trim()) => r.trim().to_string(),
            Some(Value::String(r)) => {
                return Err(ConfigError::new(
                    field("region"),
                    format!("{} is not an AWS region name", crate::error::Shown(r)),
                ))
            }
            Some(other) => {
                return Err(ConfigError::new(field("region"), format!("must be a region name, found {}", kind(other))))
            }
        };
        if out.iter().any(|c| c.region == region) {
            return Err(ConfigError::new(field("region"), format!("{region} is listed twice")));
        }
        if source_regions.contains(&region) {
            return Err(ConfigError::new(
                field("region"),
                format!("{region} is the source region (match.availability-zone); a copy must go to another region"),
            ));
        }
        let retention = match obj.get("retention") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_retention(Some(v), &field("retention"))?),
        };
        let minimum = match obj.get("minimum") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_minimum(Some(v), &field("minimum"))?),
        };
        let kms_key = match obj.get("kms_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(arn)) => {
                Some(parse_kms_key(arn.trim(), &region).map_err(|p| ConfigError::new(field("kms_key"), p))?)
            }
            Some(other) => {
                return Err(ConfigError::new(field("kms_key"), format!("must be a KMS key ARN, found {}", kind(other))))
            }
        };
        let lock = lock::parse_lock(obj.get("lock"), &field("lock"))?;
        let drill = drill::parse_drill(obj.get("drill"), &field("drill"))?;
        out.push(CopyDestination { region, retention, minimum, kms_key, lock, drill });
    }
    Ok(out)
}

/// The regions the instances are confined to, when `match` names availability zones (empty:
/// any region).
fn source_regions(filters: &[Filter]) -> BTreeSet<String> {
    filters
        .iter()
        .filter(|f| f.name == "availability-zone")
        .flat_map(|f| f.values.iter())
        .filter_map(|zone| zone_region(zone))
        .collect()
}

/// The region of an availability zone name (`us-east-1a` -> `us-east-1`).
fn zone_region(zone: &str) -> Option<String> {
    let region = zone.trim().trim_end_matches(|c: char| c.is_ascii_lowercase());
    (region.len() < zone.trim().len() && crate::ids::is_region_name(region)).then(|| region.to_string())
}

/// A KMS key ARN in `region`: `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID`. Only a key ARN: the
/// template grants the function roles exactly these keys, and an alias or a bare id names no
/// key an IAM policy can grant.
pub(crate) fn parse_kms_key(arn: &str, region: &str) -> Result<String, String> {
    let shown = crate::error::Shown(arn);
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, key_region, account, resource] = parts.as_slice() else {
        return Err(format!("{shown} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"));
    };
    let key_id = resource.strip_prefix("key/").unwrap_or("");
    let id_ok =
        !key_id.is_empty() && key_id.len() <= 128 && key_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if *prefix != "arn"
        || !partition.starts_with("aws")
        || *service != "kms"
        || account.len() != 12
        || !account.chars().all(|c| c.is_ascii_digit())
        || !id_ok
    {
        return Err(format!("{shown} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"));
    }
    if *key_region != region {
        return Err(format!(
            "the key is in {key_region}, not in {region}: a copy is encrypted with a key of its own region"
        ));
    }
    Ok(arn.to_string())
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

// The exclusion rules of a configuration (`exclude_boot`, `exclude_tags`, SPEC §11).
/// The tag (key, value) of `tags` that `exclude_tags` names, if any, as `key=value`.
pub fn excluding_tag(exclude: &[(String, TagValues)], tags: &crate::inventory::Tags) -> Option<String> {
    exclude.iter().find_map(|(key, values)| {
        let value = tags.get(key)?;
        values.matches(value).then(|| format!("{key}={value}"))
    })
}

/// Why a configuration does not select an attached volume, if it does not (`exclude_boot`,
/// `exclude_tags` on the instance or the volume).
pub fn exclusion(
    configuration: &Configuration,
    instance: &crate::inventory::Instance,
    att: &crate::inventory::Attachment,
    volume_tags: Option<&crate::inventory::Tags>,
) -> Option<String> {
    if let Some(tag) = excluding_tag(&configuration.exclude_tags, &instance.tags) {
        return Some(format!("instance tag {tag} (exclude_tags)"));
    }
    if configuration.exclude_boot && instance.root_device.as_deref() == Some(att.device.as_str()) {
        return Some(format!("boot volume {} (exclude_boot)", att.device));
    }
    volume_tags
        .and_then(|tags| excluding_tag(&configuration.exclude_tags, tags))
        .map(|tag| format!("volume tag {tag} (exclude_tags)"))
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
        assert_eq!(c.tiers[0].retention, Duration::from_secs(4 * 86400));
        assert_eq!(c.tiers[0].minimum, 5);
        assert_eq!(c.tiers[0].frequency, Schedule::Interval(Duration::from_secs(12 * 3600)));
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
        assert_eq!(c.tiers[0].frequency, Schedule::Interval(Duration::from_secs(6 * 3600)));
        let c = strict(r#"{"snapshot": {"minimum": 5, "frequency": "1 day", "retention": "5 days"}, "match": {"tag:backup": "daily"}}"#).unwrap();
        assert_eq!(c.tiers[0].retention, Duration::from_secs(5 * 86400));
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
        assert_eq!(c.tiers[0].minimum, 7);
    }

    #[test]
    fn cron_frequency() {
        let c = strict(r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "0 1 ? * SUN"}}"#).unwrap();
        assert!(matches!(c.tiers[0].frequency, Schedule::Cron(_)));
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
        assert_eq!(e, format!("{}... (5000 characters): unknown key (known keys: match, snapshot, schedules, ignore, ignore_retention, replication, exclude_boot, exclude_tags, consistency, tags, copies, vault, drill)", "k".repeat(60)));
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

    const SPEC_11_EXAMPLE: &str = r#"{
      "match": { "tag:backup": "yes" },
      "schedules": [
        { "name": "daily",  "frequency": "cron(0 3 * * ? *)",   "retention": "8 days",  "minimum": 7 },
        { "name": "weekly", "frequency": "cron(0 3 ? * SUN *)", "retention": "35 days", "minimum": 4 },
        { "name": "monthly","frequency": "cron(0 3 1 * ? *)",   "retention": "400 days","minimum": 12,
          "archive": true }
      ],
      "exclude_boot": true,
      "exclude_tags": { "backup": "no", "ebs-snapper:skip": "*" },
      "consistency": "instance",
      "tags": { "Team": "payments" }
    }"#;

    #[test]
    fn spec_11_example_and_its_round_trip() {
        let c = strict(SPEC_11_EXAMPLE).unwrap();
        assert!(c.tiered);
        assert_eq!(c.tiers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["daily", "weekly", "monthly"]);
        assert_eq!((c.tiers[2].minimum, c.tiers[2].archive, c.tiers[0].archive), (12, true, false));
        assert_eq!(c.tiers[1].retention, Duration::from_secs(35 * 86400));
        assert!(c.exclude_boot);
        assert_eq!(
            c.exclude_tags,
            vec![
                ("backup".to_string(), TagValues::OneOf(vec!["no".into()])),
                ("ebs-snapper:skip".to_string(), TagValues::Any)
            ]
        );
        assert_eq!(c.consistency, Consistency::Instance);
        assert_eq!(c.tags, vec![("Team".to_string(), "payments".to_string())]);
        assert_eq!(c.largest_minimum(), 12);
        let back = strict(&c.to_json().to_string()).unwrap();
        assert_eq!(back, c);
        // A Part I configuration reads back as one: `snapshot`, none of the new keys.
        let part1 = strict(SPEC_EXAMPLE).unwrap();
        let json = part1.to_json();
        assert!(json.get("snapshot").is_some() && json.get("schedules").is_none());
        assert!(["exclude_boot", "exclude_tags", "consistency", "tags"].iter().all(|k| json.get(k).is_none()));
        assert_eq!((part1.tiers[0].name.as_str(), part1.tiered), (DEFAULT_TIER, false));
    }

    #[test]
    fn each_new_key_is_refused_with_its_field_and_problem() {
        let base = |extra: &str| {
            format!(
                r#"{{"match": {{"tag:b": "y"}}, "snapshot": {{"retention": "1 day", "minimum": 1, "frequency": "1 day"}}{extra}}}"#
            )
        };
        let tiers = |list: &str| format!(r#"{{"match": {{"tag:b": "y"}}, "schedules": {list}}}"#);
        let tier =
            |name: &str| format!(r#"{{"name": "{name}", "frequency": "1 day", "retention": "1 day", "minimum": 1}}"#);
        let cases: Vec<(String, &str)> = vec![
            (
                format!(
                    r#"{{"match": {{"tag:b": "y"}}, "snapshot": {{"retention": "1 day", "minimum": 1, "frequency": "1 day"}}, "schedules": [{}]}}"#,
                    tier("a")
                ),
                "schedules: cannot be given with snapshot",
            ),
            (r#"{"match": {"tag:b": "y"}}"#.to_string(), "snapshot: is required"),
            (tiers("[]"), "schedules: has 0 tiers; a configuration has 1 to 4"),
            (tiers(&format!("[{}]", ["a", "b", "c", "d", "e"].map(tier).join(","))), "schedules: has 5 tiers"),
            (
                tiers(&format!("[{}]", tier("Daily"))),
                "schedules[0].name: \"Daily\" is not a tier name (1 to 32 of a-z, 0-9 and -)",
            ),
            (
                tiers(&format!("[{}, {}]", tier("a"), tier("a"))),
                "schedules[1].name: \"a\" is the name of an earlier tier",
            ),
            (tiers(r#"[{"name": "a", "frequency": "1 day", "minimum": 1}]"#), "schedules[0].retention: is required"),
            (
                tiers(r#"[{"name": "a", "frequency": "5 minutes", "retention": "1 day", "minimum": 1}]"#),
                "schedules[0].frequency: ",
            ),
            (
                tiers(
                    r#"[{"name": "a", "frequency": "1 day", "retention": "1 day", "minimum": 1, "archive": "maybe"}]"#,
                ),
                "schedules[0].archive: must be true, false",
            ),
            (
                tiers(r#"[{"name": "a", "frequency": "1 day", "retention": "1 day", "minimum": 1, "keep": 3}]"#),
                "schedules[0].keep: unknown key",
            ),
            (base(r#", "exclude_boot": "sometimes""#), "exclude_boot: must be true, false"),
            (base(r#", "exclude_tags": ["backup"]"#), "exclude_tags: must be an object"),
            (base(r#", "exclude_tags": {"backup": []}"#), "exclude_tags.backup: needs at least one value"),
            (base(r#", "exclude_tags": {"backup": ["no", "*"]}"#), "exclude_tags.backup: \"*\" stands alone"),
            (
                base(r#", "exclude_tags": {"backup": 0}"#),
                "exclude_tags.backup: must be a value, a list of values or \"*\", found a number",
            ),
            (base(r#", "consistency": "crash""#), "consistency: must be \"volume\" or \"instance\", found \"crash\""),
            (base(r#", "tags": {"DeleteOn": "2099-01-01"}"#), "tags.DeleteOn: is a key this tool or AWS sets itself"),
            (base(r#", "tags": {"aws:owner": "x"}"#), "tags.aws:owner: is a key this tool or AWS sets itself"),
            (
                base(r#", "tags": {"ebs-snapper:tier": "x"}"#),
                "tags.ebs-snapper:tier: is a key this tool or AWS sets itself",
            ),
            (base(r#", "tags": {"Team": 7}"#), "tags.Team: must be a text, found a number"),
            (
                base(&format!(
                    r#", "tags": {{{}}}"#,
                    (0..41).map(|i| format!(r#""k{i}": "v""#)).collect::<Vec<_>>().join(",")
                )),
                "tags: has 41 tags; at most 40",
            ),
            (base(r#", "copies": {"region": "us-west-2"}"#), "copies: must be a list of destinations, found an object"),
            (
                base(
                    r#", "copies": [{"region": "us-west-1"}, {"region": "us-west-2"}, {"region": "eu-west-1"}, {"region": "eu-west-2"}]"#,
                ),
                "copies: has 4 destinations; at most 3",
            ),
            (base(r#", "copies": ["us-west-2"]"#), "copies[0]: must be an object with a region, found a string"),
            (base(r#", "copies": [{"retention": "7 days"}]"#), "copies[0].region: is required"),
            (base(r#", "copies": [{"region": "mars-1"}]"#), "copies[0].region: \"mars-1\" is not an AWS region name"),
            (
                base(r#", "copies": [{"region": "us-west-2"}, {"region": "us-west-2"}]"#),
                "copies[1].region: us-west-2 is listed twice",
            ),
            (
                r#"{"match": {"availability-zone": "eu-west-1a"}, "snapshot": {"retention": "7 days", "minimum": 1, "frequency": "1 day"}, "copies": [{"region": "eu-west-1"}]}"#.to_string(),
                "copies[0].region: eu-west-1 is the source region",
            ),
            (base(r#", "copies": [{"region": "us-west-2", "retention": "0 days"}]"#), "copies[0].retention: "),
            (base(r#", "copies": [{"region": "us-west-2", "minimum": -1}]"#), "copies[0].minimum: -1 is not a whole number"),
            (
                base(r#", "copies": [{"region": "us-west-2", "kms_key": "arn:aws:kms:us-east-1:111122223333:key/abc"}]"#),
                "copies[0].kms_key: the key is in us-east-1, not in us-west-2",
            ),
            (
                base(r#", "copies": [{"region": "us-west-2", "kms_key": "alias/backup"}]"#),
                "copies[0].kms_key: \"alias/backup\" is not a KMS key ARN",
            ),
            (
                base(r#", "copies": [{"region": "us-west-2", "kms_key": "arn:aws:kms:us-west-2:1111:key/abc"}]"#),
                "copies[0].kms_key: \"arn:aws:kms:us-west-2:1111:key/abc\" is not a KMS key ARN",
            ),
            (base(r#", "copies": [{"region": "us-west-2", "keep": 3}]"#), "copies[0].keep: unknown key"),
        ];
        for (text, expected) in cases {
            let got = err(&text);
            assert!(got.starts_with(expected), "{text}\n got: {got}\nwant: {expected}");
        }
    }

    #[test]
    fn copies_parse_and_read_back() {
        let base = |extra: &str| {
            format!(
                r#"{{"match": {{"tag:b": "y"}}, "snapshot": {{"retention": "1 day", "minimum": 2, "frequency": "1 day"}}{extra}}}"#
            )
        };
        let text = base(
            r#", "copies": [{"region": "eu-west-1", "retention": "90 days", "minimum": 3,
                "kms_key": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
                {"region": "us-west-2"}]"#,
        );
        let c = Configuration::parse(&text, Strictness::Strict).unwrap().configuration;
        assert_eq!(c.copies.len(), 2);
        assert_eq!(c.copies[0].retention, Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(c.copies[0].minimum, Some(3));
        assert_eq!(
            c.copies[1],
            CopyDestination {
                region: "us-west-2".into(),
                retention: None,
                minimum: None,
                kms_key: None,
                lock: None,
                drill: None
            }
        );
        assert_eq!(c.copy_to("us-east-1").as_deref(), Some("eu-west-1,us-west-2"));
        assert_eq!(c.copy_to("eu-west-1").as_deref(), Some("us-west-2"), "never a copy into its own region");
        assert_eq!(c.copy_minimum("eu-west-1"), 3);
        assert_eq!(c.copy_minimum("us-west-2"), c.largest_minimum());
        let back = Configuration::parse(&c.to_json().to_string(), Strictness::Strict).unwrap().configuration;
        assert_eq!(back, c);
        // Read leniently at run time, an unknown key in a destination is a warning.
        let p = Configuration::parse(&base(r#", "copies": [{"region": "us-west-2", "keep": 3}]"#), Strictness::Lenient)
            .unwrap();
        assert!(p.warnings.iter().any(|w| w.starts_with("copies[0].keep: unknown key")), "{:?}", p.warnings);
    }
}
