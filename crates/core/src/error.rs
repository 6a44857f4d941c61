//! Errors of the pure core. Each message names what was wrong so an operator can fix it.

use std::fmt;

use thiserror::Error;

/// Longest part of an operator's value repeated in a message.
const SHOWN_CHARS: usize = 60;

/// An operator's text cut to a readable length for a message: as is when short, otherwise its
/// first characters and how long it was.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    let count = text.chars().count();
    if count <= SHOWN_CHARS {
        text.into()
    } else {
        let head: String = text.chars().take(SHOWN_CHARS).collect();
        format!("{head}... ({count} characters)").into()
    }
}

/// A value for an error message: quoted, and cut when long so a message stays one readable line.
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.chars().count();
        if count <= SHOWN_CHARS {
            write!(f, "\"{}\"", self.0.escape_debug())
        } else {
            let head: String = self.0.chars().take(SHOWN_CHARS).collect();
            write!(f, "\"{}...\" ({count} characters)", head.escape_debug())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("{} is not a duration: {reason}", Shown(text))]
    Invalid { text: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    #[error("{} is neither a duration nor a cron expression ({reason})", Shown(text))]
    Unrecognised { text: String, reason: String },
    #[error("{} is not a valid cron expression: {reason}", Shown(text))]
    Cron { text: String, reason: String },
    #[error("{} is shorter than the smallest frequency of 1 hour", Shown(text))]
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
