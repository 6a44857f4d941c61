//! The set of configurations stored for one account, as the jobs see it: valid ones in `id`
//! order (first match wins on overlap), invalid ones kept aside with their error so they can be
//! reported, and the account-wide settings derived from the valid ones.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Configuration, Strictness};
use crate::error::ConfigError;
use crate::inventory::Inventory;

/// A configuration item as stored: its `id` and the JSON text of its `configuration` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConfiguration {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct NamedConfiguration {
    pub id: String,
    pub configuration: Configuration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfiguration {
    pub id: String,
    pub error: ConfigError,
}

#[derive(Debug, Clone, Default)]
pub struct ConfigurationSet {
    /// Valid configurations, sorted by `id`.
    pub valid: Vec<NamedConfiguration>,
    /// Invalid configurations, skipped by every job.
    pub invalid: Vec<InvalidConfiguration>,
    /// `(id, warning)` pairs from lenient parsing (unknown keys).
    pub warnings: Vec<(String, String)>,
}

impl ConfigurationSet {
    /// Parses stored items leniently: unknown keys warn, any other problem makes the item invalid.
    pub fn from_stored(items: &[StoredConfiguration]) -> ConfigurationSet {
        let mut sorted: Vec<&StoredConfiguration> = items.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let mut set = ConfigurationSet::default();
        for item in sorted {
            if item.text.trim().is_empty() {
                let error = ConfigError::new("configuration", "is missing or empty in the stored item");
                set.invalid.push(InvalidConfiguration { id: item.id.clone(), error });
                continue;
            }
            match Configuration::parse(&item.text, Strictness::Lenient) {
                Ok(parsed) => {
                    set.warnings.extend(parsed.warnings.into_iter().map(|w| (item.id.clone(), w)));
                    set.valid.push(NamedConfiguration { id: item.id.clone(), configuration: parsed.configuration });
                }
                Err(error) => set.invalid.push(InvalidConfiguration { id: item.id.clone(), error }),
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.valid.is_empty() && self.invalid.is_empty()
    }

    /// The valid configuration with this id.
    pub fn get(&self, id: &str) -> Option<&NamedConfiguration> {
        self.valid.iter().find(|c| c.id == id)
    }

    /// Ids never to snapshot, delete or copy: the union of every valid configuration's `ignore`.
    pub fn ignored_ids(&self) -> BTreeSet<String> {
        self.valid.iter().flat_map(|c| c.configuration.ignore.iter().cloned()).collect()
    }

    /// True when any valid configuration sets `ignore_retention`.
    pub fn ignore_retention(&self) -> bool {
        self.valid.iter().any(|c| c.configuration.ignore_retention)
    }

    /// True when any valid configuration asks for replication, or for disaster-recovery
    /// copies (which the replication job makes).
    pub fn replication_enabled(&self) -> bool {
        self.valid.iter().any(|c| c.configuration.replication || !c.configuration.copies.is_empty())
    }
}

/// Which configuration an instance belongs to, from one rule: the first configuration, in id
/// order, whose filters matched it. The others that matched it too are overlaps, reported and
/// otherwise ignored.
#[derive(Debug, Default)]
pub struct Claims<'a> {
    /// (configuration, instance id), each instance once, in the order the rule finds them:
    /// configurations by id, then instances as AWS listed them.
    pub owned: Vec<(&'a NamedConfiguration, &'a str)>,
    /// Instance id -> every configuration id that matched it, the owner first; only instances
    /// matched more than once.
    pub overlaps: BTreeMap<&'a str, Vec<&'a str>>,
}

impl Inventory {
    /// Who owns each matched instance (see [`Claims`]). `configs.valid` is sorted by id.
    pub fn claims<'a>(&'a self, configs: &'a ConfigurationSet) -> Claims<'a> {
        let mut claims = Claims::default();
        let mut first: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for named in &configs.valid {
            for instance_id in self.matched.get(&named.id).into_iter().flatten() {
                match first.get(instance_id.as_str()) {
                    Some(owner) => {
                        if *owner != named.id {
                            let ids = claims.overlaps.entry(instance_id.as_str()).or_insert_with(|| vec![*owner]);
                            if !ids.contains(&named.id.as_str()) {
                                ids.push(named.id.as_str());
                            }
                        }
                    }
                    None => {
                        first.insert(instance_id.as_str(), named.id.as_str());
                        claims.owned.push((named, instance_id.as_str()));
                    }
                }
            }
        }
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, text: &str) -> StoredConfiguration {
        StoredConfiguration { id: id.into(), text: text.into() }
    }

    const GOOD: &str = r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}, "ignore": ["i-1"]}"#;

    #[test]
    fn sorts_by_id_and_separates_invalid() {
        let set = ConfigurationSet::from_stored(&[
            item("zeta", GOOD),
            item("bad", r#"{"match": {}, "snapshot": {}}"#),
            item(
                "alpha",
                &GOOD
                    .replace("i-1", "vol-2")
                    .replace("}, \"ignore\"", ", \"oops\": 1}, \"replication\": true, \"ignore\""),
            ),
        ]);
        assert_eq!(set.valid.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec!["alpha", "zeta"]);
        assert_eq!(set.invalid.len(), 1);
        assert_eq!(set.invalid[0].id, "bad");
        assert!(set.invalid[0].error.to_string().starts_with("match: is empty"));
        assert_eq!(set.warnings.len(), 1);
        assert_eq!(set.warnings[0].0, "alpha");
        assert_eq!(set.ignored_ids().into_iter().collect::<Vec<_>>(), vec!["i-1", "vol-2"]);
        assert!(set.replication_enabled());
        assert!(!set.ignore_retention());
        assert!(set.get("zeta").is_some());
        assert!(set.get("bad").is_none());
    }

    #[test]
    fn missing_text_is_invalid() {
        let set = ConfigurationSet::from_stored(&[item("empty", "  ")]);
        assert_eq!(set.invalid[0].error.to_string(), "configuration: is missing or empty in the stored item");
    }

    #[test]
    fn invalid_configurations_contribute_nothing() {
        let set = ConfigurationSet::from_stored(&[item(
            "bad",
            r#"{"match": {}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}, "ignore_retention": true, "replication": "yes"}"#,
        )]);
        assert!(set.valid.is_empty());
        assert!(!set.ignore_retention());
        assert!(!set.replication_enabled());
        assert!(!set.is_empty());
    }

    /// Disaster-recovery copies are made by the replication job, so a configuration with
    /// `copies` switches the replication schedule on as `replication` does (SPEC §12).
    #[test]
    fn copies_enable_replication() {
        let with_copies = GOOD.replace(", \"ignore\"", ", \"copies\": [{\"region\": \"eu-west-1\"}], \"ignore\"");
        let set = ConfigurationSet::from_stored(&[item("dr", &with_copies)]);
        assert!(set.invalid.is_empty(), "{:?}", set.invalid.first().map(|c| c.error.to_string()));
        assert!(set.replication_enabled());
        assert!(!ConfigurationSet::from_stored(&[item("plain", GOOD)]).replication_enabled());
    }
}
