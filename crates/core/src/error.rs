//! Errors of the pure core. Each message names what was wrong so an operator can fix it.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("\"{text}\" is not a duration: {reason}")]
    Invalid { text: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    #[error("\"{text}\" is neither a duration nor a cron expression ({reason})")]
    Unrecognised { text: String, reason: String },
    #[error("\"{text}\" is not a valid cron expression: {reason}")]
    Cron { text: String, reason: String },
    #[error("\"{text}\" is shorter than the smallest frequency of 1 hour")]
    TooFrequent { text: String },
}

/// A configuration problem: the field path (`snapshot.retention`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { field: field.into(), problem: problem.into() }
    }
}
