//! `drill` (SPEC §17): how often a configuration's snapshots are proven to restore, how many
//! volumes a run drills, and how many data blocks each drill reads back.

use std::time::Duration;

use serde_json::Value;

use crate::config::{canonical_duration, kind};
use crate::duration::parse_duration;
use crate::error::ConfigError;

/// A configured restore drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drill {
    /// A volume is drilled again once its last drill is older than this.
    pub every: Duration,
    /// Volumes drilled at most per configuration and run.
    pub per_run: u32,
    /// Written blocks read back and checked per drill (0: the volume is only made).
    pub sample_blocks: u32,
}

/// What `"drill": {}` means: SPEC §17's example.
pub const DEFAULT_DRILL: Drill = Drill { every: Duration::from_secs(7 * 86_400), per_run: 3, sample_blocks: 16 };
/// Drills closer together than this would cost more than they prove: a drill makes a volume.
pub const MIN_EVERY: Duration = Duration::from_secs(86_400);
/// Volumes a configuration may drill per run: each drill waits for a volume, and a clean worker
/// has 15 minutes for every configuration of its region.
pub const MAX_PER_RUN: u32 = 100;
/// Blocks a drill may read (512 KiB each): 1,024 is half a gibibyte.
pub const MAX_SAMPLE_BLOCKS: u32 = 1_024;

const DRILL_KEYS: [&str; 3] = ["every", "per_run", "sample_blocks"];

impl Drill {
    /// `{"every", "per_run", "sample_blocks"}` as [`parse_drill`] reads it back.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "every": canonical_duration(self.every),
            "per_run": self.per_run,
            "sample_blocks": self.sample_blocks,
        })
    }
}

/// `drill` at `field`: absent or null is no drill; each key left out takes [`DEFAULT_DRILL`]'s.
pub fn parse_drill(value: Option<&Value>, field: &str) -> Result<Option<Drill>, ConfigError> {
    let obj = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(ConfigError::new(
                field,
                format!("must be an object (every, per_run, sample_blocks), found {}", kind(other)),
            ))
        }
    };
    if let Some(key) = obj.keys().find(|k| !DRILL_KEYS.contains(&k.as_str())) {
        return Err(ConfigError::new(
            format!("{field}.{}", crate::error::clip(key)),
            "is not a key of drill (every, per_run, sample_blocks)",
        ));
    }
    let every = match obj.get("every") {
        None | Some(Value::Null) => DEFAULT_DRILL.every,
        Some(Value::String(text)) => {
            let every = parse_duration(text).map_err(|e| ConfigError::new(format!("{field}.every"), e.to_string()))?;
            if every < MIN_EVERY {
                return Err(ConfigError::new(
                    format!("{field}.every"),
                    format!("is {text}; at least 1 day (each drill makes a volume)"),
                ));
            }
            every
        }
        Some(other) => {
            return Err(ConfigError::new(
                format!("{field}.every"),
                format!("must be a duration text such as \"7 days\", found {}", kind(other)),
            ))
        }
    };
    let per_run = whole(obj.get("per_run"), &format!("{field}.per_run"), 1, MAX_PER_RUN, DEFAULT_DRILL.per_run)?;
    let sample_blocks = whole(
        obj.get("sample_blocks"),
        &format!("{field}.sample_blocks"),
        0,
        MAX_SAMPLE_BLOCKS,
        DEFAULT_DRILL.sample_blocks,
    )?;
    Ok(Some(Drill { every, per_run, sample_blocks }))
}

/// A whole number from `low` to `high` at `field` (`default` when absent).
fn whole(value: Option<&Value>, field: &str, low: u32, high: u32, default: u32) -> Result<u32, ConfigError> {
    let value = match value {
        None | Some(Value::Null) => return Ok(default),
        Some(v) => v,
    };
    match value.as_u64() {
        Some(n) if (low as u64..=high as u64).contains(&n) => Ok(n as u32),
        _ => {
            let shown = match value {
                Value::Number(n) => n.to_string(),
                other => kind(other).to_string(),
            };
            Err(ConfigError::new(field, format!("must be a whole number from {low} to {high}, found {shown}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Option<Drill>, String> {
        let v: Value = serde_json::from_str(json).unwrap();
        parse_drill(Some(&v), "drill").map_err(|e| e.to_string())
    }

    #[test]
    fn a_drill_reads_its_three_keys_and_defaults_the_rest() {
        assert_eq!(
            parse(r#"{"every": "14 days", "per_run": 5, "sample_blocks": 0}"#).unwrap(),
            Some(Drill { every: Duration::from_secs(14 * 86_400), per_run: 5, sample_blocks: 0 })
        );
        assert_eq!(parse("{}").unwrap(), Some(DEFAULT_DRILL));
        assert_eq!(parse("null").unwrap(), None);
        assert_eq!(parse_drill(None, "drill").unwrap(), None);
        let d = parse(r#"{"every": "1 week", "per_run": 2}"#).unwrap().unwrap();
        assert_eq!(parse(&d.to_json().to_string()).unwrap(), Some(d));
        assert_eq!(d.to_json()["every"], "1 weeks");
    }

    #[test]
    fn a_bad_drill_names_the_key_and_the_problem() {
        for (json, expected) in [
            (r#""weekly""#, "drill: must be an object (every, per_run, sample_blocks), found a string"),
            (r#"{"evry": "7 days"}"#, "drill.evry: is not a key of drill (every, per_run, sample_blocks)"),
            (r#"{"every": "2 hours"}"#, "drill.every: is 2 hours; at least 1 day (each drill makes a volume)"),
            (r#"{"every": 7}"#, "drill.every: must be a duration text such as \"7 days\", found a number"),
            (r#"{"per_run": 0}"#, "drill.per_run: must be a whole number from 1 to 100, found 0"),
            (r#"{"per_run": 101}"#, "drill.per_run: must be a whole number from 1 to 100, found 101"),
            (r#"{"per_run": "3"}"#, "drill.per_run: must be a whole number from 1 to 100, found a string"),
            (r#"{"sample_blocks": -1}"#, "drill.sample_blocks: must be a whole number from 0 to 1024, found -1"),
            (r#"{"sample_blocks": 2.5}"#, "drill.sample_blocks: must be a whole number from 0 to 1024, found 2.5"),
        ] {
            assert_eq!(parse(json).unwrap_err(), expected, "{json}");
        }
        assert!(parse(r#"{"every": "soon"}"#).unwrap_err().starts_with("drill.every: "));
    }

    #[test]
    fn a_configuration_copies_and_vault_each_carry_their_own_drill() {
        use crate::config::{Configuration, Strictness};
        let text = r#"{"match": {"tag:backup": "yes"},
            "snapshot": {"retention": "30 days", "minimum": 5, "frequency": "1 day"},
            "drill": {"every": "7 days"},
            "copies": [{"region": "eu-west-1", "drill": {"per_run": 1}}, {"region": "eu-west-2"}],
            "vault": {"account": "444455556666", "retention": "90 days", "drill": {"sample_blocks": 4}}}"#;
        let c = Configuration::parse(text, Strictness::Strict).unwrap().configuration;
        assert_eq!(c.drill, Some(DEFAULT_DRILL));
        assert_eq!(c.copies[0].drill, Some(Drill { per_run: 1, ..DEFAULT_DRILL }));
        assert_eq!(c.copies[1].drill, None);
        assert_eq!(c.vault.as_ref().unwrap().drill, Some(Drill { sample_blocks: 4, ..DEFAULT_DRILL }));
        let again = Configuration::parse(&c.to_json().to_string(), Strictness::Strict).unwrap().configuration;
        assert_eq!(again, c);
        let bad = text.replace(r#""per_run": 1"#, r#""per_run": 0"#);
        let e = Configuration::parse(&bad, Strictness::Strict).unwrap_err().to_string();
        assert_eq!(e, "copies[0].drill.per_run: must be a whole number from 1 to 100, found 0");
        let bad = text.replace(r#""sample_blocks": 4"#, r#""sample_blocks": 4, "x": 1"#);
        let e = Configuration::parse(&bad, Strictness::Strict).unwrap_err().to_string();
        assert_eq!(e, "vault.drill.x: is not a key of drill (every, per_run, sample_blocks)");
    }
}
