//! The instance-based findings of `configure -c`: configurations that match no instance in any
//! region, instances matched by several configurations, and instances tagged `backup` that no
//! configuration matches. The AWS crate fetches each region's inventory; the analysis is here.

use std::collections::BTreeSet;

use crate::config::exclusion;
use crate::configuration_set::ConfigurationSet;
use crate::inventory::{Encryption, Instance, Inventory, Volume};
use crate::tags::asks_for_backup;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct FleetFindings {
    /// Valid configurations that matched no instance in any region (only when every region
    /// answered: with a region unchecked, "matched nothing" could be wrong).
    pub unmatched: Vec<String>,
    /// (region, instance, configuration ids in order; the first applies).
    pub overlaps: Vec<(String, String, Vec<String>)>,
    /// (region, instance) tagged `backup` without a matching configuration.
    pub unconfigured: Vec<(String, String)>,
    /// (region, error): regions that could not be checked.
    pub failed: Vec<(String, String)>,
    /// (region, configuration, error): configurations whose instances EC2 would not list.
    pub failed_configs: Vec<(String, String, String)>,
    /// (region, instance, volume, configuration ids): volumes that every configuration matching
    /// their instance excludes (`exclude_boot`, `exclude_tags`): never snapshotted.
    pub excluded: Vec<(String, String, String, Vec<String>)>,
    /// (region, configuration, volume, key): volumes of a configuration with a vault but no
    /// `share_key` in that region, encrypted with the AWS managed key `aws/ebs`, which EC2 will
    /// not share: their snapshots cannot go to the vault (SPEC §16).
    pub unshareable: Vec<(String, String, String, String)>,
    /// (region, key, error): keys KMS could not describe; the volumes under them are unchecked.
    pub keys_unchecked: Vec<(String, String, String)>,
    /// (region, configuration, volume, the last drill that passed): volumes of a configuration
    /// with `drill` (of its sources, or of its copies in that region) that went two `every`
    /// periods without a restore drill that passed (SPEC §17).
    pub undrilled: Vec<(String, String, String, Option<chrono::DateTime<chrono::Utc>>)>,
    matched_somewhere: BTreeSet<String>,
}

/// The volumes whose keys `configure -c` checks (SPEC §16): those a configuration with a vault,
/// but without a `share_key` in this region, snapshots (of the instances it claims, not
/// excluded). (configuration id, volume).
pub fn vault_volumes<'a>(configs: &'a ConfigurationSet, inventory: &'a Inventory) -> Vec<(&'a str, &'a Volume)> {
    let claims = inventory.claims(configs);
    let mut out = Vec::new();
    for &(named, instance_id) in &claims.owned {
        let Some(vault) = &named.configuration.vault else { continue };
        if vault.share_key.as_ref().and_then(|k| k.in_region(&inventory.region)).is_some() {
            continue;
        }
        let Some(instance) = inventory.instances.get(instance_id) else { continue };
        for att in &instance.volumes {
            let Some(volume) = inventory.volumes.get(&att.volume_id) else { continue };
            if exclusion(&named.configuration, instance, att, Some(&volume.tags)).is_none() {
                out.push((named.id.as_str(), volume));
            }
        }
    }
    out
}

/// The KMS keys of [`vault_volumes`]: only KMS tells a customer managed key from the AWS
/// managed `aws/ebs` (EC2 names either by its ARN).
pub fn vault_keys<'a>(configs: &'a ConfigurationSet, inventory: &'a Inventory) -> BTreeSet<&'a str> {
    vault_volumes(configs, inventory)
        .into_iter()
        .filter_map(|(_, v)| match &v.encryption {
            Encryption::Kms(Some(key)) => Some(&**key),
            _ => None,
        })
        .collect()
}

impl FleetFindings {
    /// Adds one region: `inventory` as the snapshot job gathers it (the same owner rule,
    /// [`Inventory::claims`]), `live` every running or stopped instance of the region.
    pub fn add_region(&mut self, configs: &ConfigurationSet, inventory: &Inventory, live: &[Instance]) {
        let region = &inventory.region;
        for (id, e) in &inventory.failed_configs {
            self.failed_configs.push((region.clone(), id.clone(), e.clone()));
        }
        let claims = inventory.claims(configs);
        let owned: BTreeSet<&str> = claims.owned.iter().map(|&(_, instance)| instance).collect();
        for &(named, _) in &claims.owned {
            self.matched_somewhere.insert(named.id.clone());
        }
        for (instance, ids) in &claims.overlaps {
            self.matched_somewhere.extend(ids.iter().map(|id| id.to_string()));
            self.overlaps.push((region.clone(), instance.to_string(), ids.iter().map(|id| id.to_string()).collect()));
        }
        for &(named, instance_id) in &claims.owned {
            let Some(instance) = inventory.instances.get(instance_id) else { continue };
            let matching: Vec<&str> = match claims.overlaps.get(instance_id) {
                Some(ids) => ids.clone(),
                None => vec![named.id.as_str()],
            };
            for att in &instance.volumes {
                let tags = inventory.volumes.get(&att.volume_id).map(|v| &v.tags);
                let excluded_by_all = matching.iter().all(|id| {
                    configs.get(id).is_some_and(|c| exclusion(&c.configuration, instance, att, tags).is_some())
                });
                if excluded_by_all {
                    self.excluded.push((
                        region.clone(),
                        instance.id.clone(),
                        att.volume_id.clone(),
                        matching.iter().map(|id| id.to_string()).collect(),
                    ));
                }
            }
        }
        for instance in live.iter().filter(|i| asks_for_backup(&i.tags) && !owned.contains(i.id.as_str())) {
            self.unconfigured.push((region.clone(), instance.id.clone()));
        }
    }

    /// Adds one region's key findings (SPEC §16): `aws_managed`, the keys of [`vault_keys`] that
    /// KMS says are AWS managed; `unchecked`, those it could not describe (key, error). A volume
    /// EC2 says is encrypted without naming a key is taken for `aws/ebs`, the account's default.
    pub fn add_vault_keys(
        &mut self,
        configs: &ConfigurationSet,
        inventory: &Inventory,
        aws_managed: &BTreeSet<String>,
        unchecked: Vec<(String, String)>,
    ) {
        let region = &inventory.region;
        for (id, volume) in vault_volumes(configs, inventory) {
            let key = match &volume.encryption {
                Encryption::Kms(None) => "aws/ebs".to_string(),
                Encryption::Kms(Some(key)) if aws_managed.contains(&**key) => format!("aws/ebs ({key})"),
                _ => continue,
            };
            self.unshareable.push((region.clone(), id.to_string(), volume.id.clone(), key));
        }
        self.keys_unchecked.extend(unchecked.into_iter().map(|(key, e)| (region.clone(), key, e)));
    }

    /// Adds one region's drill findings: `inventory` with the region's own snapshots (their
    /// `ebs-snapper:drill`, configuration and copy tags).
    pub fn add_drills(
        &mut self,
        configs: &ConfigurationSet,
        inventory: &Inventory,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        use crate::drill_plan::{copies_of, overdue, source_snapshots};
        let region = &inventory.region;
        for named in &configs.valid {
            let c = &named.configuration;
            let mut found = Vec::new();
            if let Some(drill) = &c.drill {
                found.extend(overdue(drill, source_snapshots(configs, inventory, &named.id), now));
            }
            if let Some(drill) = c.copy_destination(region).and_then(|d| d.drill.as_ref()) {
                found.extend(overdue(drill, copies_of(&inventory.snapshots, &named.id), now));
            }
            for (volume, last_ok) in found {
                self.undrilled.push((region.clone(), named.id.clone(), volume, last_ok));
            }
        }
    }

    /// A region that could not be checked.
    pub fn region_failed(&mut self, region: &str, error: String) {
        self.failed.push((region.to_string(), error));
    }

    /// The findings, sorted, with the unmatched configurations when every region answered.
    pub fn finish(mut self, configs: &ConfigurationSet) -> FleetFindings {
        if self.failed.is_empty() && self.failed_configs.is_empty() {
            self.unmatched = configs
                .valid
                .iter()
                .filter(|c| !self.matched_somewhere.contains(&c.id))
                .map(|c| c.id.clone())
                .collect();
        }
        self.overlaps.sort();
        self.unconfigured.sort();
        self.failed.sort();
        self.failed_configs.sort();
        self.excluded.sort();
        self.unshareable.sort();
        self.keys_unchecked.sort();
        self.undrilled.sort();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration_set::StoredConfiguration;

    fn configs(ids: &[&str]) -> ConfigurationSet {
        let text = r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "5 days", "minimum": 1, "frequency": "1 day"}}"#;
        ConfigurationSet::from_stored(
            &ids.iter()
                .map(|id| StoredConfiguration { id: id.to_string(), text: text.to_string() })
                .collect::<Vec<_>>(),
        )
    }

    fn instance(id: &str, backup: Option<&str>) -> Instance {
        Instance {
            image_id: None,
            root_device: None,
            tags: backup.map(|v| ("Backup".to_string(), v.to_string())).into_iter().collect(),
            ..crate::testing::instance(id, &[])
        }
    }

    fn inventory(region: &str, matched: &[(&str, &[&str])], instances: &[Instance]) -> Inventory {
        Inventory {
            region: region.into(),
            matched: matched
                .iter()
                .map(|(c, ids)| (c.to_string(), ids.iter().map(|i| i.to_string()).collect()))
                .collect(),
            instances: instances.iter().map(|i| (i.id.clone(), i.clone())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn overlaps_unconfigured_and_unmatched_across_regions() {
        let set = configs(&["a", "b", "c"]);
        let live = [instance("i-1", Some("yes")), instance("i-2", Some("YES")), instance("i-3", Some("no"))];
        let mut f = FleetFindings::default();
        f.add_region(&set, &inventory("us-east-1", &[("a", &["i-1"]), ("b", &["i-1"])], &live[..1]), &live);
        f.add_region(&set, &inventory("eu-west-1", &[], &[]), &[instance("i-9", Some("true"))]);
        let f = f.finish(&set);
        assert_eq!(f.overlaps, [("us-east-1".to_string(), "i-1".to_string(), vec!["a".to_string(), "b".to_string()])]);
        // i-2 asks for a backup and nobody owns it; i-3 says no.
        assert_eq!(
            f.unconfigured,
            [("eu-west-1".to_string(), "i-9".to_string()), ("us-east-1".to_string(), "i-2".to_string())]
        );
        assert_eq!(f.unmatched, ["c"]);
    }

    #[test]
    fn nothing_is_called_unmatched_while_a_region_or_configuration_is_unchecked() {
        let set = configs(&["a"]);
        let mut f = FleetFindings::default();
        f.region_failed("ap-south-1", "AuthFailure".into());
        assert!(f.finish(&set).unmatched.is_empty());
        let mut f = FleetFindings::default();
        let mut inv = inventory("us-east-1", &[], &[]);
        inv.failed_configs.insert("a".into(), "bad filter".into());
        f.add_region(&set, &inv, &[]);
        let f = f.finish(&set);
        assert!(f.unmatched.is_empty());
        assert_eq!(f.failed_configs, [("us-east-1".to_string(), "a".to_string(), "bad filter".to_string())]);
    }

    #[test]
    fn a_volume_every_matching_configuration_excludes_is_found() {
        let text = |extra: &str| {
            format!(
                r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "5 days", "minimum": 1, "frequency": "1 day"}}{extra}}}"#
            )
        };
        let set = ConfigurationSet::from_stored(&[
            StoredConfiguration { id: "a".into(), text: text(r#", "exclude_boot": true"#) },
            StoredConfiguration { id: "b".into(), text: text(r#", "exclude_tags": {"scratch": "*"}"#) },
        ]);
        let mut i = instance("i-1", None);
        i.root_device = Some("/dev/xvda".into());
        i.volumes = vec![
            crate::inventory::Attachment { device: "/dev/xvda".into(), volume_id: "vol-root".into() },
            crate::inventory::Attachment { device: "/dev/xvdf".into(), volume_id: "vol-scratch".into() },
        ];
        let mut inv = inventory("us-east-1", &[("a", &["i-1"]), ("b", &["i-1"])], &[i]);
        for (v, tags) in [("vol-root", vec![("scratch", "yes")]), ("vol-scratch", vec![])] {
            let tags = tags.into_iter().map(|(k, val)| (k.to_string(), val.to_string())).collect();
            inv.volumes.insert(
                v.into(),
                crate::inventory::Volume { id: v.into(), tags, created: None, encryption: Default::default() },
            );
        }
        let mut f = FleetFindings::default();
        f.add_region(&set, &inv, &[]);
        // vol-root: a excludes the boot volume, b its tag; vol-scratch is neither boot nor tagged.
        assert_eq!(
            f.finish(&set).excluded,
            [(
                "us-east-1".to_string(),
                "i-1".to_string(),
                "vol-root".to_string(),
                vec!["a".to_string(), "b".to_string()]
            )]
        );
    }

    #[test]
    fn a_tier_whose_cron_years_are_past_is_never_due() {
        let c = crate::config::Configuration::parse(
            r#"{"match": {"tag:b": "y"}, "schedules": [
                {"name": "daily", "frequency": "1 day", "retention": "1 day", "minimum": 1},
                {"name": "y2020", "frequency": "cron(0 3 1 1 ? 2020)", "retention": "1 day", "minimum": 1}]}"#,
            crate::config::Strictness::Strict,
        )
        .unwrap()
        .configuration;
        assert_eq!(c.tiers_never_due(chrono::Utc::now()), ["y2020"]);
    }

    #[test]
    fn the_vaults_key_check_finds_the_volumes_on_aws_ebs_where_no_share_key_covers_them() {
        let vault = |share_key: &str| {
            format!(
                r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "5 days", "minimum": 1, "frequency": "1 day"}},
                    "vault": {{"account": "444455556666", "retention": "30 days"{share_key}}}}}"#
            )
        };
        let shared = r#", "share_key": "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab""#;
        let set = ConfigurationSet::from_stored(&[
            StoredConfiguration { id: "plain".into(), text: text_without_vault() },
            StoredConfiguration { id: "v".into(), text: vault("") },
            StoredConfiguration { id: "s".into(), text: vault(shared) },
        ]);
        const AWS_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/aws-managed";
        const CMK: &str = "arn:aws:kms:us-east-1:111122223333:key/customer";
        let instances = [
            crate::testing::instance("i-1", &["vol-a", "vol-b", "vol-c", "vol-d"]),
            crate::testing::instance("i-2", &["vol-e"]),
            crate::testing::instance("i-3", &["vol-f"]),
        ];
        let mut inv = inventory("us-east-1", &[("v", &["i-1"]), ("s", &["i-2"]), ("plain", &["i-3"])], &instances);
        for (id, encryption) in [
            ("vol-a", Encryption::None),
            ("vol-b", Encryption::Kms(None)),
            ("vol-c", Encryption::Kms(Some(AWS_KEY.into()))),
            ("vol-d", Encryption::Kms(Some(CMK.into()))),
            ("vol-e", Encryption::Kms(None)),
            ("vol-f", Encryption::Kms(None)),
        ] {
            inv.volumes
                .insert(id.into(), Volume { id: id.into(), tags: Default::default(), created: None, encryption });
        }
        // Only KMS tells the two named keys apart; a share key, or no vault, needs no check.
        assert_eq!(vault_keys(&set, &inv), BTreeSet::from([AWS_KEY, CMK]));
        let mut f = FleetFindings::default();
        let unchecked =
            vec![("arn:aws:kms:us-east-1:111122223333:key/gone".to_string(), "NotFoundException".to_string())];
        f.add_vault_keys(&set, &inv, &BTreeSet::from([AWS_KEY.to_string()]), unchecked);
        let f = f.finish(&set);
        let at = |v: &str, k: &str| ("us-east-1".to_string(), "v".to_string(), v.to_string(), k.to_string());
        assert_eq!(f.unshareable, [at("vol-b", "aws/ebs"), at("vol-c", &format!("aws/ebs ({AWS_KEY})"))]);
        assert_eq!(f.keys_unchecked.len(), 1);
    }

    fn text_without_vault() -> String {
        r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "5 days", "minimum": 1, "frequency": "1 day"}}"#
            .into()
    }
}
