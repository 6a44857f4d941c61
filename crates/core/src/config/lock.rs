//! `lock` (SPEC §16): the EBS snapshot lock a tier, a DR destination or the vault puts on what
//! the tool makes there.

use serde_json::Value;

use crate::config::kind;
use crate::error::ConfigError;
use crate::inventory::LockState;

/// How a lock protects (EC2's `LockMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    /// Nobody can delete the snapshot, but whoever may call `LockSnapshot` or `UnlockSnapshot`
    /// can shorten or lift the lock: a guard against mistakes and other tools.
    Governance,
    /// Once the cool-off has ended, nobody (root included) can delete the snapshot, shorten the
    /// lock or change its mode before it expires.
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }

    pub fn parse(text: &str) -> Option<LockMode> {
        match text {
            "governance" => Some(LockMode::Governance),
            "compliance" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// The mode of a lock in `state` (an expired lock has none).
pub fn mode_of(state: LockState) -> Option<LockMode> {
    match state {
        LockState::Governance => Some(LockMode::Governance),
        LockState::ComplianceCooloff | LockState::Compliance => Some(LockMode::Compliance),
        LockState::Expired => None,
    }
}

/// A configured lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub mode: LockMode,
    /// Compliance only: the hours after the first lock during which it can still be lifted
    /// (EC2's `CoolOffPeriod`, 1 to 72). `None`: compliance from the start.
    pub cool_off_hours: Option<u8>,
}

/// The shortest retention a lock may go with: its date (the snapshot's `DeleteOn` at 00:00 UTC)
/// must be in the future when the snapshot is made.
pub const MIN_LOCKED_RETENTION: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);
/// EC2's range of `CoolOffPeriod`, in hours.
pub const COOL_OFF_HOURS: std::ops::RangeInclusive<u8> = 1..=72;

impl Lock {
    /// `{"mode": ..., "cool_off_hours": ...}` as [`parse_lock`] reads it back.
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::json!({ "mode": self.mode.as_str() });
        if let Some(h) = self.cool_off_hours {
            out["cool_off_hours"] = h.into();
        }
        out
    }
}

/// `lock` at `field`: absent or null is no lock.
pub fn parse_lock(value: Option<&Value>, field: &str) -> Result<Option<Lock>, ConfigError> {
    let obj = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(ConfigError::new(
                field,
                format!("must be an object with a mode (governance or compliance), found {}", kind(other)),
            ))
        }
    };
    if let Some(key) = obj.keys().find(|k| !["mode", "cool_off_hours"].contains(&k.as_str())) {
        return Err(ConfigError::new(
            format!("{field}.{}", crate::error::clip(key)),
            "is not a key of lock (mode, cool_off_hours)",
        ));
    }
    let mode = match obj.get("mode") {
        None => return Err(ConfigError::new(format!("{field}.mode"), "is required: governance or compliance")),
        Some(Value::String(m)) => LockMode::parse(m.trim()).ok_or_else(|| {
            ConfigError::new(
                format!("{field}.mode"),
                format!("must be governance or compliance, found {}", crate::error::Shown(m)),
            )
        })?,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{field}.mode"),
                format!("must be governance or compliance, found {}", kind(other)),
            ))
        }
    };
    let cool_off_hours = match obj.get("cool_off_hours") {
        None | Some(Value::Null) => None,
        Some(_) if mode == LockMode::Governance => {
            return Err(ConfigError::new(
                format!("{field}.cool_off_hours"),
                "is for compliance mode only (a governance lock can always be lifted)",
            ))
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(h) if (1..=72).contains(&h) => Some(h as u8),
            _ => {
                return Err(ConfigError::new(
                    format!("{field}.cool_off_hours"),
                    format!("must be a whole number of hours from 1 to 72, found {n}"),
                ))
            }
        },
        Some(other) => {
            return Err(ConfigError::new(
                format!("{field}.cool_off_hours"),
                format!("must be a whole number of hours from 1 to 72, found {}", kind(other)),
            ))
        }
    };
    Ok(Some(Lock { mode, cool_off_hours }))
}

/// Refuses a lock with a retention shorter than [`MIN_LOCKED_RETENTION`].
pub fn check_locked_retention(
    lock: Option<&Lock>,
    retention: std::time::Duration,
    lock_field: &str,
    retention_field: &str,
) -> Result<(), ConfigError> {
    if lock.is_some() && retention < MIN_LOCKED_RETENTION {
        return Err(ConfigError::new(
            lock_field,
            format!(
                "needs a retention of at least 2 days ({retention_field} is {}): a lock ends on the snapshot's \
                 DeleteOn date at 00:00 UTC, which must be in the future when it is made",
                crate::duration::format_duration(retention)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Lock>, String> {
        let v: Value = serde_json::from_str(text).unwrap();
        parse_lock(Some(&v), "snapshot.lock").map_err(|e| e.to_string())
    }

    #[test]
    fn modes_and_cool_off() {
        assert_eq!(
            parse(r#"{"mode": "governance"}"#),
            Ok(Some(Lock { mode: LockMode::Governance, cool_off_hours: None }))
        );
        assert_eq!(
            parse(r#"{"mode": "compliance", "cool_off_hours": 24}"#),
            Ok(Some(Lock { mode: LockMode::Compliance, cool_off_hours: Some(24) }))
        );
        assert_eq!(
            parse(r#"{"mode": "compliance"}"#),
            Ok(Some(Lock { mode: LockMode::Compliance, cool_off_hours: None }))
        );
        assert_eq!(parse("null"), Ok(None));
        for (text, expected) in [
            (
                r#"{"mode": "governance", "cool_off_hours": 2}"#,
                "snapshot.lock.cool_off_hours: is for compliance mode only",
            ),
            (
                r#"{"mode": "compliance", "cool_off_hours": 0}"#,
                "snapshot.lock.cool_off_hours: must be a whole number of hours from 1 to 72, found 0",
            ),
            (r#"{"mode": "compliance", "cool_off_hours": 73}"#, "from 1 to 72, found 73"),
            (r#"{"mode": "compliance", "cool_off_hours": 1.5}"#, "found 1.5"),
            (r#"{"mode": "compliance", "cool_off_hours": "24"}"#, "found a string"),
            (r#"{"mode": "Compliance"}"#, "snapshot.lock.mode: must be governance or compliance"),
            (r#"{}"#, "snapshot.lock.mode: is required"),
            (r#"{"mode": "governance", "days": 3}"#, "snapshot.lock.days: is not a key of lock"),
            (r#""compliance""#, "snapshot.lock: must be an object"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn a_lock_needs_two_days_of_retention() {
        let lock = Lock { mode: LockMode::Governance, cool_off_hours: None };
        let day = std::time::Duration::from_secs(86_400);
        assert!(check_locked_retention(Some(&lock), 2 * day, "l", "r").is_ok());
        assert!(check_locked_retention(None, day, "l", "r").is_ok());
        let e = check_locked_retention(Some(&lock), day + day / 2, "schedules[0].lock", "schedules[0].retention")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("schedules[0].lock: needs a retention of at least 2 days (schedules[0].retention is"),
            "{e}"
        );
    }
}
