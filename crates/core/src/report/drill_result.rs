//! A restore drill's result (SPEC §17), as tagged on its snapshot (`ebs-snapper:drill`): what the
//! drill planner reads back to know when a volume was last drilled, and what `status` shows.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::inventory::Snapshot;
use crate::tags::TAG_DRILL;

/// AWS's longest tag value.
const MAX_TAG_VALUE: usize = 256;

/// What a drill found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillOutcome {
    /// The volume became available after `seconds` and every sampled block read back intact;
    /// `empty`: the snapshot has no written block (a never-written volume).
    Ok {
        seconds: u64,
        empty: bool,
    },
    Failed(String),
}

/// A drill's result, as tagged on its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillResult {
    pub at: DateTime<Utc>,
    pub outcome: DrillOutcome,
}

impl DrillResult {
    pub fn ok(&self) -> bool {
        matches!(self.outcome, DrillOutcome::Ok { .. })
    }

    /// Time to available, for a drill that passed.
    pub fn seconds(&self) -> Option<u64> {
        match self.outcome {
            DrillOutcome::Ok { seconds, .. } => Some(seconds),
            DrillOutcome::Failed(_) => None,
        }
    }

    /// The tag value (at most 256 characters: a long reason is cut).
    pub fn to_tag(&self) -> String {
        let at = self.at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let text = match &self.outcome {
            DrillOutcome::Ok { seconds, empty: false } => format!("{at} ok {seconds}s"),
            DrillOutcome::Ok { seconds, empty: true } => format!("{at} ok {seconds}s (empty)"),
            DrillOutcome::Failed(reason) => format!("{at} failed: {reason}"),
        };
        match text.char_indices().nth(MAX_TAG_VALUE) {
            Some((cut, _)) => text[..cut].to_string(),
            None => text,
        }
    }

    /// Reads a tag value back; `None` when it is not one (someone else's text).
    pub fn parse(text: &str) -> Option<DrillResult> {
        let (at, rest) = text.split_once(' ')?;
        let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
        let outcome = if let Some(reason) = rest.strip_prefix("failed: ") {
            DrillOutcome::Failed(reason.to_string())
        } else {
            let rest = rest.strip_prefix("ok ")?;
            let (seconds, empty) = match rest.strip_suffix(" (empty)") {
                Some(seconds) => (seconds, true),
                None => (rest, false),
            };
            DrillOutcome::Ok { seconds: seconds.strip_suffix('s')?.parse().ok()?, empty }
        };
        Some(DrillResult { at, outcome })
    }

    /// How `status` and the reports show it: `2026-12-07 ok (12 s to available)`.
    pub fn describe(&self) -> String {
        let at = self.at.format("%Y-%m-%d %H:%M");
        match &self.outcome {
            DrillOutcome::Ok { seconds, empty: false } => format!("{at} ok ({seconds} s to available)"),
            DrillOutcome::Ok { seconds, empty: true } => {
                format!("{at} ok, empty ({seconds} s to available)")
            }
            DrillOutcome::Failed(reason) => format!("{at} failed: {reason}"),
        }
    }
}

/// The drill result a snapshot carries, if any.
pub fn result_of(snapshot: &Snapshot) -> Option<DrillResult> {
    snapshot.tags.get(TAG_DRILL).and_then(DrillResult::parse)
}
