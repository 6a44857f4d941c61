//! What the jobs know about one region: the instances each configuration matched, their volumes
//! and the account's own snapshots. Gathered by the AWS layer in bulk; read by the planners.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// Tags as key -> value (AWS tags have no order; this keeps output deterministic).
pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Device name, e.g. `/dev/sda1`.
    pub device: String,
    pub volume_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    /// `running`, `stopped`, ...
    pub state: String,
    pub image_id: Option<String>,
    pub tags: Tags,
    /// Attached EBS volumes in block-device order.
    pub volumes: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SnapshotState {
    Pending,
    Completed,
    Error,
    /// Any other state AWS may report (`recoverable`, `recovering`...).
    Other,
}

impl SnapshotState {
    pub fn parse(text: &str) -> SnapshotState {
        match text {
            "pending" => SnapshotState::Pending,
            "completed" => SnapshotState::Completed,
            "error" => SnapshotState::Error,
            _ => SnapshotState::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    /// The source volume (`None` for copies and for snapshots whose volume AWS does not report).
    pub volume_id: Option<String>,
    pub start_time: DateTime<Utc>,
    pub state: SnapshotState,
    pub tags: Tags,
    pub description: String,
}

/// A region's inventory for the snapshot and clean jobs.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub region: String,
    /// Instance ids matched by each configuration id, as AWS returned them.
    pub matched: BTreeMap<String, Vec<String>>,
    pub instances: BTreeMap<String, Instance>,
    pub volumes: BTreeMap<String, Volume>,
    /// The account's own snapshots of interest (of the matched volumes, and for clean-up those
    /// tagged `DeleteOn`), each once.
    pub snapshots: Vec<Snapshot>,
}

impl Inventory {
    /// Snapshots of a volume.
    pub fn snapshots_of<'a>(&'a self, volume_id: &'a str) -> impl Iterator<Item = &'a Snapshot> + 'a {
        self.snapshots.iter().filter(move |s| s.volume_id.as_deref() == Some(volume_id))
    }
}
