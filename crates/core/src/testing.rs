//! Builders of what the planners read, written once for core's unit tests, its property tests,
//! benchmarks and the scaling example. Compiled for core's own tests, and with the `testing`
//! feature for the other targets (`cargo bench` and the example turn it on); never in a release
//! build of the functions or the CLI.

use chrono::{DateTime, TimeZone, Utc};

use crate::inventory::{Attachment, Instance, Snapshot, SnapshotState, Tags};

/// A snapshot to build: `completed`, of no volume, started 2020-01-01T00:00:00Z, untagged.
pub fn snapshot(id: &str) -> SnapshotBuilder {
    SnapshotBuilder(Snapshot {
        id: id.into(),
        volume_id: None,
        is_copy: false,
        start_time: Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).single().expect("a valid date"),
        state: SnapshotState::Completed,
        tags: Tags::new(),
        description: String::new(),
        archived: false,
        state_message: None,
    })
}

/// A [`Snapshot`] under construction; [`SnapshotBuilder::build`] ends it.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder(Snapshot);

impl SnapshotBuilder {
    pub fn volume(mut self, volume_id: &str) -> Self {
        self.0.volume_id = Some(volume_id.into());
        self
    }

    /// A copy (`CopySnapshot`): EC2 reports no volume of its own.
    pub fn copy(mut self) -> Self {
        self.0.is_copy = true;
        self.0.volume_id = None;
        self
    }

    pub fn at(mut self, start_time: DateTime<Utc>) -> Self {
        self.0.start_time = start_time;
        self
    }

    pub fn state(mut self, state: SnapshotState) -> Self {
        self.0.state = state;
        self
    }

    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.0.tags.insert(key.into(), value.into());
        self
    }

    pub fn tags(mut self, tags: &[(&str, &str)]) -> Self {
        self.0.tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self
    }

    pub fn description(mut self, description: &str) -> Self {
        self.0.description = description.into();
        self
    }

    pub fn build(self) -> Snapshot {
        self.0
    }
}

/// A running instance with `volumes` attached in order (`/dev/xvda`, `/dev/xvdb`...; the first is
/// the root device), tagged `Name` = `name-ID` and `backup` = `yes`.
pub fn instance(id: &str, volumes: &[&str]) -> Instance {
    Instance {
        id: id.into(),
        state: "running".into(),
        image_id: Some("ami-1".into()),
        root_device: Some("/dev/xvda".into()),
        tags: [("Name".to_string(), format!("name-{id}")), ("backup".to_string(), "yes".to_string())].into(),
        volumes: volumes
            .iter()
            .enumerate()
            .map(|(i, v)| Attachment {
                device: format!("/dev/xvd{}", (b'a' + i as u8) as char),
                volume_id: v.to_string(),
            })
            .collect(),
    }
}

/// A synthetic region for benchmarks: `volumes` volumes on `volumes / 2` instances (two each),
/// `per_volume` snapshots per volume spread over the last weeks, a third of them expired, and
/// two configurations (one matching every instance, one matching a tenth of them). The tiered
/// variant gives the configuration that matches every instance four tiers, and each snapshot
/// the tiers it was taken for.
pub mod synthetic {
    use chrono::{DateTime, Duration, Utc};

    use crate::configuration_set::{ConfigurationSet, StoredConfiguration};
    use crate::inventory::{Attachment, Instance, Inventory, Snapshot, SnapshotState, Tags, Volume};

    pub fn configurations() -> ConfigurationSet {
        ConfigurationSet::from_stored(&[
            StoredConfiguration {
                id: "all".into(),
                text: r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "14 days", "minimum": 5, "frequency": "1 day"}}"#.into(),
            },
            StoredConfiguration {
                id: "some".into(),
                text: r#"{"match": {"tag:tier": "gold"}, "snapshot": {"retention": "30 days", "minimum": 10, "frequency": "0 */6 * * *"}}"#.into(),
            },
        ])
    }

    /// The same configurations, the first with four tiers (SPEC §11), the last archived.
    pub fn tiered_configurations() -> ConfigurationSet {
        ConfigurationSet::from_stored(&[
            StoredConfiguration {
                id: "all".into(),
                text: r#"{"match": {"tag:backup": "yes"}, "schedules": [
                    {"name": "daily", "frequency": "1 day", "retention": "14 days", "minimum": 7},
                    {"name": "weekly", "frequency": "7 days", "retention": "35 days", "minimum": 4},
                    {"name": "monthly", "frequency": "30 days", "retention": "400 days", "minimum": 12},
                    {"name": "yearly", "frequency": "365 days", "retention": "2000 days", "minimum": 3, "archive": true}],
                    "exclude_tags": {"scratch": "*"}, "tags": {"Team": "payments"}}"#
                    .into(),
            },
            StoredConfiguration {
                id: "some".into(),
                text: r#"{"match": {"tag:tier": "gold"}, "snapshot": {"retention": "30 days", "minimum": 10, "frequency": "0 */6 * * *"}}"#.into(),
            },
        ])
    }

    /// [`inventory`] with each snapshot tagged with the tiers it was taken for: every one daily,
    /// every seventh also weekly, every thirtieth also monthly and yearly.
    pub fn tiered_inventory(volumes: usize, per_volume: usize, now: DateTime<Utc>) -> Inventory {
        let mut inv = inventory(volumes, per_volume, now);
        for (n, s) in inv.snapshots.iter_mut().enumerate() {
            let tiers = match n % 30 {
                0 => "daily,weekly,monthly,yearly",
                k if k % 7 == 0 => "daily,weekly",
                _ => "daily",
            };
            s.tags.insert("ebs-snapper:tier".to_string(), tiers.to_string());
        }
        inv
    }

    /// An EC2-like id: the prefix and 17 hex digits that look random (real ids share no long prefix,
    /// which matters for the cost of comparing them).
    fn id(prefix: &str, n: usize) -> String {
        let mut x = (n as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        format!("{prefix}-0{:016x}", x)
    }

    pub fn inventory(volumes: usize, per_volume: usize, now: DateTime<Utc>) -> Inventory {
        let mut inv = Inventory { region: "us-east-1".into(), ..Default::default() };
        let tags: Tags = [("Name", "web"), ("backup", "yes"), ("Service", "shop"), ("Owner", "team-a")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut all = Vec::with_capacity(volumes / 2);
        let mut some = Vec::new();
        for i in 0..volumes / 2 {
            let instance_id = id("i", i);
            let vols: Vec<Attachment> = (0..2)
                .map(|d| Attachment {
                    device: format!("/dev/xvd{}", (b'a' + d as u8) as char),
                    volume_id: id("vol", i * 2 + d),
                })
                .collect();
            for a in &vols {
                inv.volumes.insert(
                    a.volume_id.clone(),
                    Volume {
                        id: a.volume_id.clone(),
                        tags: [("Name".to_string(), format!("{instance_id}-data"))].into(),
                        created: None,
                        encryption: Default::default(),
                    },
                );
            }
            inv.instances.insert(
                instance_id.clone(),
                Instance {
                    id: instance_id.clone(),
                    state: "running".into(),
                    image_id: Some("ami-1".into()),
                    root_device: Some("/dev/xvda".into()),
                    tags: tags.clone(),
                    volumes: vols,
                },
            );
            if i % 10 == 0 {
                some.push(instance_id.clone());
            }
            all.push(instance_id);
        }
        inv.matched.insert("all".into(), all);
        inv.matched.insert("some".into(), some);
        for v in 0..volumes {
            for n in 0..per_volume {
                let start = now - Duration::hours((n as i64) * 24 * 21 / per_volume.max(1) as i64 + (v % 24) as i64);
                let delete_on = (start + Duration::days(14)).date_naive();
                inv.snapshots.push(Snapshot {
                    id: id("snap", v * per_volume + n),
                    is_copy: false,
                    volume_id: Some(id("vol", v)),
                    start_time: start,
                    state: if n == 0 && v % 50 == 0 { SnapshotState::Pending } else { SnapshotState::Completed },
                    tags: [
                        ("DeleteOn".to_string(), delete_on.format("%Y-%m-%d").to_string()),
                        ("ebs-snapper:config".to_string(), "all".to_string()),
                    ]
                    .into(),
                    description: String::new(),
                    archived: false,
                    state_message: None,
                });
            }
        }
        inv
    }
}
