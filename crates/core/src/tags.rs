//! Tags and description of a new snapshot (SPEC §4.5).

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::inventory::{Snapshot, Tags};

pub const DELETE_ON: &str = "DeleteOn";
pub const TAG_INSTANCE: &str = "ebs-snapper:instance-id";
pub const TAG_DEVICE: &str = "ebs-snapper:device";
pub const TAG_CONFIG: &str = "ebs-snapper:config";
/// The tiers a snapshot was taken for, `,`-joined in schedule order (SPEC §11).
pub const TAG_TIER: &str = "ebs-snapper:tier";
/// The id shared by the snapshots of one crash-consistent set (SPEC §11).
pub const TAG_SET: &str = "ebs-snapper:set";
/// The disaster-recovery destinations of a snapshot, `,`-joined (SPEC §12).
pub const TAG_COPY_TO: &str = "ebs-snapper:copy-to";
/// On a new snapshot of a configuration with a vault (SPEC §16): `ACCOUNT:REGION` (the vault's
/// region, else the snapshot's own).
pub const TAG_VAULT_TO: &str = "ebs-snapper:vault-to";
/// On a vault copy: the account whose snapshot it is a copy of; the vault role may delete only
/// snapshots carrying it.
pub const TAG_VAULT_OF: &str = "ebs-snapper:vault-of";
/// On a share copy (SPEC §16): the snapshot it is a copy of, made in the source's own region
/// under `vault.share_key` because the source's key (`aws/ebs`) cannot be shared. The vault
/// copies it instead; the replication job deletes it once the vault's copy completed.
pub const TAG_VAULT_SHARE_OF: &str = "ebs-snapper:vault-share-of";
/// On a drilled snapshot (SPEC §17): `TIME ok SECONDSs` or `TIME failed: REASON`; on a drill
/// volume: the snapshot it was made from.
pub const TAG_DRILL: &str = "ebs-snapper:drill";
/// On a disaster-recovery copy: the source snapshot's volume, by which copies are kept.
pub const TAG_VOLUME: &str = "ebs-snapper:volume-id";
pub const REPLICATION_DST: &str = "replication_dst_region";
pub const REPLICATION_SRC: &str = "replication_src_region";
pub const REPLICATION_SNAPSHOT_ID: &str = "replication_snapshot_id";
/// A tag-key filter value that matches each of the three replication tags (EC2 filters take `*`).
pub const REPLICATION_TAGS: &str = "replication_*";

/// AWS allows at most 50 tags per resource.
pub const MAX_TAGS: usize = 50;
/// AWS allows at most 255 characters in a snapshot description.
pub const MAX_DESCRIPTION: usize = 255;

/// Copied tags with these keys come first, in this order.
pub const PRIORITY_KEYS: [&str; 19] = [
    "Name",
    "BusinessUnit",
    "Group",
    "Department",
    "CostCenter",
    "Application",
    "Environment",
    "Project",
    "Owner",
    "Service",
    "Cluster",
    "Role",
    "Customer",
    "Version",
    "Billing1",
    "Billing2",
    "Billing3",
    "Billing4",
    "Billing5",
];

/// Whether a tag of the instance or volume may be copied onto its snapshot. Not copied: AWS's
/// reserved `aws:` keys, empty values, and the keys this tool sets itself. The replication
/// markers of a copy are never copied either: a new snapshot carrying them would be taken for a
/// replica, which the replication job may delete.
fn copyable(key: &str, value: &str) -> bool {
    !value.is_empty()
        && !key.to_ascii_lowercase().starts_with("aws:")
        && key != DELETE_ON
        && !key.starts_with("ebs-snapper:")
        && key != REPLICATION_SRC
        && key != REPLICATION_SNAPSHOT_ID
}

/// Whether `key` is one this tool or AWS sets itself: never taken from a configuration's `tags`.
pub fn is_reserved_key(key: &str) -> bool {
    key.to_ascii_lowercase().starts_with("aws:")
        || key == DELETE_ON
        || key.starts_with("ebs-snapper:")
        || [REPLICATION_DST, REPLICATION_SRC, REPLICATION_SNAPSHOT_ID].contains(&key)
}

/// Whether an instance's tags ask for a backup, as the Python tool's check read them: a tag
/// whose key is `backup` in any case (`Backup`, `BACKUP`), unless its value says no (`no`,
/// `false`, `0`, `off`, in any case).
pub fn asks_for_backup(tags: &Tags) -> bool {
    tags.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("backup")
            && !["no", "false", "0", "off"].iter().any(|no| v.trim().eq_ignore_ascii_case(no))
    })
}

/// What this tool writes on a new snapshot besides the tags it copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance<'a> {
    pub delete_on: NaiveDate,
    pub instance_id: &'a str,
    /// `None` on the snapshots of a crash-consistent set, which all carry the same tags.
    pub device: Option<&'a str>,
    pub config_id: &'a str,
    /// `ebs-snapper:tier`, for a configuration written with `schedules`.
    pub tier: Option<String>,
    /// `ebs-snapper:set`, for the snapshots of a crash-consistent set.
    pub set: Option<&'a str>,
    /// `ebs-snapper:copy-to`, for a configuration with `copies`.
    pub copy_to: Option<&'a str>,
    /// `ebs-snapper:vault-to` (`ACCOUNT:REGION`), for a configuration with a `vault`.
    pub vault_to: Option<&'a str>,
}

/// The tags of a new snapshot, in order, at most [`MAX_TAGS`]: `DeleteOn`, the provenance tags,
/// `ebs-snapper:copy-to` and `replication_dst_region` when present, the configuration's own `tags`, then the instance
/// tags merged with the volume tags (the volume's value wins), priority keys first, the rest by
/// key. Configured tags win over copied tags of the same key. Only copied tags are ever cut:
/// a configuration has at most [`crate::config::MAX_CONFIGURED_TAGS`].
/// The value of a `DeleteOn` tag for `date` (`YYYY-MM-DD`, as the Python tool writes it and
/// [`crate::retention_plan::parse_delete_on`] reads it).
pub fn delete_on_value(date: chrono::NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// The UTC date on which a snapshot taken at `now` with this retention may be deleted.
pub fn delete_on(now: DateTime<Utc>, retention: std::time::Duration) -> NaiveDate {
    let retention = TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX);
    now.checked_add_signed(retention).map(|t| t.date_naive()).unwrap_or(NaiveDate::MAX)
}

/// Parses a `DeleteOn` value (`YYYY-MM-DD`).
pub fn parse_delete_on(text: &str) -> Option<NaiveDate> {
    // Hand-parsed: this runs once per snapshot, and chrono's format-string parser is slow.
    let b = text.trim().as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
}

/// The destinations of a snapshot: its `ebs-snapper:copy-to` regions (disaster-recovery copies),
/// then its `replication_dst_region` unless a copy already goes there (one copy per region).
pub fn destinations(s: &Snapshot) -> Vec<(&str, bool)> {
    let mut out: Vec<(&str, bool)> = Vec::new();
    if let Some(copy_to) = s.tags.get(TAG_COPY_TO) {
        for r in copy_to.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            if !out.iter().any(|(d, _)| *d == r) {
                out.push((r, true));
            }
        }
    }
    if let Some(dst) = s.tags.get(REPLICATION_DST) {
        if !out.iter().any(|(d, _)| *d == dst) {
            out.push((dst, false));
        }
    }
    out
}

pub fn snapshot_tags(
    instance_tags: &Tags,
    volume_tags: &Tags,
    provenance: &Provenance<'_>,
    configured: &[(String, String)],
) -> Vec<(String, String)> {
    // The volume's tags win over the instance's (the last of equal keys wins); borrowed and
    // sorted by key, so taking one out allocates nothing (this runs for every new snapshot).
    let mut merged: Vec<(&str, &str)> =
        instance_tags.iter().chain(volume_tags.iter()).filter(|(k, v)| copyable(k, v)).collect();
    merged.reverse();
    merged.sort_by(|a, b| a.0.cmp(b.0)); // stable: the volume's value of a key comes first
    merged.dedup_by(|later, first| later.0 == first.0);
    let mut take = |key: &str| -> Option<String> {
        let i = merged.binary_search_by(|(k, _)| (*k).cmp(key)).ok()?;
        Some(merged.remove(i).1.to_string())
    };
    let mut out = vec![
        (DELETE_ON.to_string(), delete_on_value(provenance.delete_on)),
        (TAG_INSTANCE.to_string(), provenance.instance_id.to_string()),
    ];
    if let Some(device) = provenance.device {
        out.push((TAG_DEVICE.to_string(), device.to_string()));
    }
    out.push((TAG_CONFIG.to_string(), provenance.config_id.to_string()));
    if let Some(tier) = &provenance.tier {
        out.push((TAG_TIER.to_string(), tier.clone()));
    }
    if let Some(set) = provenance.set {
        out.push((TAG_SET.to_string(), set.to_string()));
    }
    if let Some(copy_to) = provenance.copy_to {
        out.push((TAG_COPY_TO.to_string(), copy_to.to_string()));
    }
    if let Some(vault_to) = provenance.vault_to {
        out.push((TAG_VAULT_TO.to_string(), vault_to.to_string()));
    }
    if let Some(v) = take(REPLICATION_DST) {
        out.push((REPLICATION_DST.to_string(), v));
    }
    for (k, v) in configured {
        take(k);
        out.push((k.clone(), v.clone()));
    }
    for key in PRIORITY_KEYS {
        if let Some(v) = take(key) {
            out.push((key.to_string(), v));
        }
    }
    out.extend(
        merged.into_iter().take(MAX_TAGS.saturating_sub(out.len())).map(|(k, v)| (k.to_string(), v.to_string())),
    );
    out.truncate(MAX_TAGS);
    out
}

pub fn snapshot_description(instance_id: &str, version: &str, image_id: Option<&str>, volume_id: &str) -> String {
    let text = format!(
        "Created from {instance_id} by EbsSnapper({version}) for {} from {volume_id}",
        image_id.unwrap_or("unknown-ami")
    );
    truncate_chars(&text, MAX_DESCRIPTION)
}

/// The description of the snapshots of a crash-consistent set (one `CreateSnapshots` call
/// gives them all the same).
pub fn set_description(instance_id: &str, version: &str, image_id: Option<&str>, volumes: usize) -> String {
    let text = format!(
        "Created from {instance_id} by EbsSnapper({version}) for {} (crash-consistent set of {volumes} volumes)",
        image_id.unwrap_or("unknown-ami")
    );
    truncate_chars(&text, MAX_DESCRIPTION)
}

fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2020, 1, 6).unwrap()
    }

    /// The tags of a Part I snapshot (one tier, one volume).
    fn part1(
        instance: &Tags,
        volume: &Tags,
        instance_id: &str,
        device: &str,
        config_id: &str,
    ) -> Vec<(String, String)> {
        let provenance = Provenance {
            delete_on: day(),
            instance_id,
            device: Some(device),
            config_id,
            tier: None,
            set: None,
            copy_to: None,
            vault_to: None,
        };
        snapshot_tags(instance, volume, &provenance, &[])
    }

    #[test]
    fn merge_order_and_volume_wins() {
        let out = part1(
            &tags(&[
                ("Name", "Foo"),
                ("Service", "Bar"),
                ("backup", "yes"),
                ("aws:cloudformation:stack-name", "s"),
                ("Empty", ""),
            ]),
            &tags(&[("Service", "Baz"), ("zeta", "z"), ("Billing1", "b1")]),
            "i-1",
            "/dev/sda1",
            "cfg",
        );
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![DELETE_ON, TAG_INSTANCE, TAG_DEVICE, TAG_CONFIG, "Name", "Service", "Billing1", "backup", "zeta"]
        );
        let get = |k: &str| out.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Service"), Some("Baz"));
        assert_eq!(get(DELETE_ON), Some("2020-01-06"));
        assert_eq!(get(TAG_DEVICE), Some("/dev/sda1"));
    }

    #[test]
    fn cut_to_fifty_keeping_delete_on_and_replication() {
        let instance: Tags = (0..40).map(|i| (format!("itag{i:02}"), "v".to_string())).collect();
        let mut volume: Tags = (0..20).map(|i| (format!("vtag{i:02}"), "v".to_string())).collect();
        volume.insert(REPLICATION_DST.into(), "us-west-2".into());
        volume.insert("Name".into(), "n".into());
        let out = part1(&instance, &volume, "i-1", "/dev/xvdf", "cfg");
        assert_eq!(out.len(), MAX_TAGS);
        assert!(out.iter().any(|(k, _)| k == DELETE_ON));
        assert!(out.iter().any(|(k, v)| k == REPLICATION_DST && v == "us-west-2"));
        assert!(out.iter().any(|(k, _)| k == "Name"));
        // The rest by key: all itags (sorted before vtags) survive, the last vtags are cut.
        assert!(out.iter().any(|(k, _)| k == "itag39"));
        assert!(!out.iter().any(|(k, _)| k == "vtag19"));
    }

    #[test]
    fn own_and_replica_markers_are_not_copied() {
        let out = part1(
            &tags(&[
                ("DeleteOn", "1999-01-01"),
                ("ebs-snapper:config", "other"),
                (REPLICATION_SRC, "us-east-1"),
                (REPLICATION_SNAPSHOT_ID, "snap-1"),
                ("AWS:x", "y"),
            ]),
            &Tags::new(),
            "i-1",
            "/dev/sda1",
            "cfg",
        );
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], (DELETE_ON.to_string(), "2020-01-06".to_string()));
        assert_eq!(out[3], (TAG_CONFIG.to_string(), "cfg".to_string()));
    }

    #[test]
    fn tier_set_and_configured_tags_are_never_cut_and_win_over_copied_ones() {
        let instance: Tags = (0..60).map(|i| (format!("itag{i:02}"), "v".to_string())).collect();
        let mut volume = tags(&[("Team", "copied"), (REPLICATION_DST, "eu-west-1")]);
        volume.insert("Name".into(), "n".into());
        let configured: Vec<(String, String)> = (0..40)
            .map(|i| (format!("ctag{i:02}"), "c".to_string()))
            .chain([("Team".into(), "payments".into())])
            .take(40)
            .collect();
        let provenance = Provenance {
            delete_on: day(),
            instance_id: "i-1",
            device: None,
            config_id: "cfg",
            tier: Some("daily,weekly".into()),
            set: Some("i-1-20200106T0300Z"),
            copy_to: None,
            vault_to: None,
        };
        let out = snapshot_tags(&instance, &volume, &provenance, &configured);
        assert_eq!(out.len(), MAX_TAGS);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys[..6], [DELETE_ON, TAG_INSTANCE, TAG_CONFIG, TAG_TIER, TAG_SET, REPLICATION_DST]);
        assert!(!keys.contains(&TAG_DEVICE), "a set's snapshots carry no device");
        for (k, _) in &configured {
            assert!(keys.contains(&k.as_str()), "{k} was cut");
        }
        let configured = [("Team".to_string(), "payments".to_string())];
        let out = snapshot_tags(&Tags::new(), &volume, &provenance, &configured);
        assert_eq!(
            out.iter().filter(|(k, _)| k == "Team").collect::<Vec<_>>(),
            [&("Team".to_string(), "payments".to_string())]
        );
    }

    #[test]
    fn description() {
        assert_eq!(
            snapshot_description("i-1", "0.1.0", Some("ami-9"), "vol-2"),
            "Created from i-1 by EbsSnapper(0.1.0) for ami-9 from vol-2"
        );
        let long = snapshot_description(&"i".repeat(300), "0.1.0", None, "vol-2");
        assert_eq!(long.chars().count(), MAX_DESCRIPTION);
    }

    #[test]
    fn backup_tags_in_any_case_and_the_values_that_say_no() {
        let tags = |k: &str, v: &str| -> crate::inventory::Tags { [(k.to_string(), v.to_string())].into() };
        for (k, v) in [("backup", "yes"), ("Backup", "true"), ("BACKUP", ""), ("backup", "daily")] {
            assert!(asks_for_backup(&tags(k, v)), "{k}={v}");
        }
        for (k, v) in [("backup", "no"), ("Backup", "False"), ("backup", "0"), ("backup", "OFF"), ("backups", "yes")] {
            assert!(!asks_for_backup(&tags(k, v)), "{k}={v}");
        }
    }
}
