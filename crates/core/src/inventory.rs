//! What the jobs know about one region: the instances each configuration matched, their volumes
//! and the account's own snapshots. Gathered by the AWS layer in bulk; read by the planners.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// Tags as key -> value, kept sorted by key (AWS tags have no order; this keeps output
/// deterministic).
///
/// Packed: every key and value in one string, with their lengths beside it. A resource carries a
/// handful of tags and a region may hold 200,000 snapshots: a tree node per snapshot cost about
/// half a kilobyte, and a string per key and value still two allocations per tag; this is two
/// per snapshot.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tags {
    /// Key, value, key, value... in key order, unseparated.
    text: Box<str>,
    /// (key length, value length) in bytes, per tag in order. AWS keys are at most 128
    /// characters and values 256, well within u16 in UTF-8.
    lengths: Box<[(u16, u16)]>,
}

impl Tags {
    pub fn new() -> Tags {
        Tags::default()
    }

    /// Pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut at = 0;
        self.lengths.iter().map(move |&(k, v)| {
            let (k, v) = (k as usize, v as usize);
            let pair = (&self.text[at..at + k], &self.text[at + k..at + k + v]);
            at += k + v;
            pair
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`, returning the value it replaced.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        let old = self.get(&key).map(str::to_string);
        let updated: Tags = self.iter().chain([(key.as_str(), value.as_str())]).collect();
        *self = updated;
        old
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let old = self.get(key).map(str::to_string)?;
        let rest: Tags = self.iter().filter(|(k, _)| *k != key).collect();
        *self = rest;
        Some(old)
    }

    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    fn pack(pairs: &[(&str, &str)]) -> Tags {
        let mut text = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len()).sum());
        let mut lengths = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            // Longer than AWS allows: cut at a character boundary rather than fail.
            let (k, v) = (clip(k), clip(v));
            text.push_str(k);
            text.push_str(v);
            lengths.push((k.len() as u16, v.len() as u16));
        }
        Tags { text: text.into_boxed_str(), lengths: lengths.into_boxed_slice() }
    }
}

/// `text` cut to at most u16::MAX bytes, at a character boundary.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(u16::MAX as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl std::fmt::Debug for Tags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Collects pairs; on a repeated key the last value wins, as with a map.
impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Tags {
        let owned: Vec<(K, V)> = pairs.into_iter().collect();
        let mut v: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(b.0)); // stable: the last of equal keys comes first
        v.dedup_by(|later, first| later.0 == first.0);
        Tags::pack(&v)
    }
}

impl<const N: usize> From<[(String, String); N]> for Tags {
    fn from(pairs: [(String, String); N]) -> Tags {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Tags {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }
}

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
    /// The device name of the root volume (`RootDeviceName`), when EC2 reports one.
    pub root_device: Option<String>,
    pub tags: Tags,
    /// Attached EBS volumes in block-device order.
    pub volumes: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    pub tags: Tags,
    /// When the volume was created (`CreateTime`), when EC2 says.
    pub created: Option<DateTime<Utc>>,
    pub encryption: Encryption,
}

/// How a volume is encrypted, as EC2 reports it (and so its snapshots).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Encryption {
    #[default]
    None,
    /// Under this KMS key (EC2's `KmsKeyId`, an ARN); `None` when EC2 names no key.
    Kms(Option<Box<str>>),
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
    /// Made by `CopySnapshot`: EC2 reports a copy's volume as `vol-ffffffff`.
    pub is_copy: bool,
    pub start_time: DateTime<Utc>,
    pub state: SnapshotState,
    pub tags: Tags,
    pub description: String,
    /// In EC2's archive storage tier (`StorageTier` = `archive`).
    pub archived: bool,
    /// AWS's reason for a snapshot in state `error` (`StateMessage`, for instance `Given key ID
    /// is not accessible`); `None` otherwise.
    pub state_message: Option<Box<str>>,
}

/// The state of a snapshot's lock (EC2's `LockState`), which moves with time: a compliance lock
/// is `ComplianceCooloff` until its cool-off ends, and every lock is `Expired` once its date
/// passed (EC2 still lists it then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Governance,
    ComplianceCooloff,
    Compliance,
    Expired,
}

impl LockState {
    pub fn parse(text: &str) -> Option<LockState> {
        match text {
            "governance" => Some(LockState::Governance),
            "compliance-cooloff" => Some(LockState::ComplianceCooloff),
            "compliance" => Some(LockState::Compliance),
            "expired" => Some(LockState::Expired),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LockState::Governance => "governance",
            LockState::ComplianceCooloff => "compliance-cooloff",
            LockState::Compliance => "compliance",
            LockState::Expired => "expired",
        }
    }
}

/// A snapshot's lock as `DescribeLockedSnapshots` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLock {
    pub state: LockState,
    /// `LockExpiresOn` (EC2 may leave it out while a lock by duration waits for its snapshot to
    /// complete).
    pub expires: Option<DateTime<Utc>>,
}

impl SnapshotLock {
    /// Whether the lock still forbids deletion at `now`: not expired, and its date not passed
    /// (a listing read a while ago may not know yet). A lock without a date holds.
    pub fn holds(&self, now: DateTime<Utc>) -> bool {
        self.state != LockState::Expired && self.expires.is_none_or(|e| now < e)
    }
}

/// The region's snapshot locks by snapshot id: only the jobs of a configuration with a lock, and
/// the clean job, read them (one paginated `DescribeLockedSnapshots`).
pub type Locks = BTreeMap<String, SnapshotLock>;

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
    /// Configurations whose instances could not be listed (EC2 refused the filters, say), with
    /// the error. Their instances are unknown this run: the snapshot job reports them failed,
    /// and the clean job keeps what they might protect.
    pub failed_configs: BTreeMap<String, String>,
    /// The region's snapshot locks, when the job read them.
    pub locks: Locks,
}

impl Inventory {
    /// Snapshots of a volume.
    pub fn snapshots_of<'a>(&'a self, volume_id: &'a str) -> impl Iterator<Item = &'a Snapshot> + 'a {
        self.snapshots.iter().filter(move |s| s.volume_id.as_deref() == Some(volume_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn tags_are_kept_in_key_order_and_the_last_value_wins() {
        let tags: Tags = [pair("b", "1"), pair("a", "2"), pair("b", "3"), pair("c", "4")].into();
        assert_eq!(tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(), ["a=2", "b=3", "c=4"]);
        assert_eq!(tags.get("b"), Some("3"));
        assert!(tags.contains_key("c") && !tags.contains_key("d"));
    }

    #[test]
    fn packed_tags_keep_multibyte_empty_and_long_text() {
        let long = "é".repeat(40_000); // 80,000 bytes: more than AWS allows, cut at a character
        let tags: Tags = [pair("ключ", "значение"), pair("", "empty key"), pair("e", ""), pair("z", &long)].into();
        assert_eq!(
            tags.iter().map(|(k, v)| (k, v.chars().count())).collect::<Vec<_>>(),
            [("", 9), ("e", 0), ("z", 32_767), ("ключ", 8)]
        );
        assert_eq!(tags.get("ключ"), Some("значение"));
        assert_eq!(tags.get(""), Some("empty key"));
        assert_eq!(tags.get("e"), Some(""));
        assert_eq!(Tags::new(), Vec::<(String, String)>::new().into_iter().collect::<Tags>());
        assert_eq!(format!("{:?}", Tags::from([pair("a", "1")])), r#"{"a": "1"}"#);
    }

    #[test]
    fn tags_insert_and_remove_keep_the_order() {
        let mut tags = Tags::new();
        assert_eq!(tags.insert("m".into(), "1".into()), None);
        assert_eq!(tags.insert("a".into(), "2".into()), None);
        assert_eq!(tags.insert("z".into(), "3".into()), None);
        assert_eq!(tags.insert("m".into(), "4".into()), Some("1".into()));
        assert_eq!(tags.clone().into_iter().collect::<Vec<_>>(), [pair("a", "2"), pair("m", "4"), pair("z", "3")]);
        assert_eq!(tags.remove("a"), Some("2".into()));
        assert_eq!(tags.remove("a"), None);
        assert_eq!(tags.len(), 2);
        assert_eq!(tags.get("z"), Some("3"));
    }
}
