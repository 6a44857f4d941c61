//! `vault` (SPEC §16): a copy of every completed snapshot of the configuration in another
//! account, made and owned by that account, so that nothing the protected account does can
//! delete it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::config::lock::{check_locked_retention, parse_lock, Lock};
use crate::config::{kind, parse_kms_key, parse_minimum, parse_retention};
use crate::error::ConfigError;

pub use crate::tags::{TAG_VAULT_OF, TAG_VAULT_TO};

const VAULT_KEYS: [&str; 8] = ["account", "region", "retention", "minimum", "kms_key", "share_key", "lock", "drill"];

/// A KMS key for a vault's copies or for re-encrypting sources to share: KMS keys are regional,
/// so either one key of one region, a key per region, or a multi-Region key (`mrk-`), whose
/// replicas share its id in every region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionalKey {
    /// A key ARN, usable in its own region only.
    One(String),
    /// Region -> a key ARN of that region.
    PerRegion(BTreeMap<String, String>),
    /// A multi-Region key's ARN (of any of its regions).
    MultiRegion(String),
}

impl RegionalKey {
    /// The key's ARN in `region`, if it has one there.
    pub fn in_region(&self, region: &str) -> Option<String> {
        match self {
            RegionalKey::One(arn) => (arn_region(arn) == Some(region)).then(|| arn.clone()),
            RegionalKey::PerRegion(keys) => keys.get(region).cloned(),
            RegionalKey::MultiRegion(arn) => {
                let mut parts: Vec<&str> = arn.splitn(6, ':').collect();
                if parts.len() != 6 {
                    return None;
                }
                parts[3] = region;
                Some(parts.join(":"))
            }
        }
    }

    fn to_json(&self) -> Value {
        match self {
            RegionalKey::One(arn) | RegionalKey::MultiRegion(arn) => Value::String(arn.clone()),
            RegionalKey::PerRegion(keys) => keys
                .iter()
                .map(|(r, k)| (r.clone(), Value::String(k.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3)
}

fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4)
}

fn is_multi_region(arn: &str) -> bool {
    arn.rsplit('/').next().is_some_and(|id| id.starts_with("mrk-"))
}

/// A valid `vault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    /// The vault account (12 digits).
    pub account: String,
    /// Where the vault keeps its copies; `None`: in each source's own region.
    pub region: Option<String>,
    /// A vault copy's `DeleteOn` is its source's start + this.
    pub retention: Duration,
    /// The vault copies of one source volume kept at least; without it, the configuration's
    /// largest minimum.
    pub minimum: Option<u32>,
    /// The vault's key for its copies (a key of the vault account); `None`: the vault account's
    /// default EBS key of the region.
    pub kms_key: Option<RegionalKey>,
    /// A customer managed key of the source account the vault may use: a source encrypted with
    /// the AWS managed `aws/ebs` key (which cannot be shared) is copied in place under it first.
    pub share_key: Option<RegionalKey>,
    pub lock: Option<Lock>,
    /// Restore drills of the vault's copies, in the vault account (SPEC §17).
    pub drill: Option<crate::config::Drill>,
}

impl Vault {
    /// The `ebs-snapper:vault-to` value of a new snapshot in `region`.
    pub fn vault_to(&self, region: &str) -> String {
        format!("{}:{}", self.account, self.region.as_deref().unwrap_or(region))
    }

    pub fn to_json(&self) -> Value {
        let mut out = serde_json::json!({
            "account": self.account,
            "retention": crate::config::canonical_duration(self.retention),
        });
        if let Some(r) = &self.region {
            out["region"] = Value::String(r.clone());
        }
        if let Some(m) = self.minimum {
            out["minimum"] = m.into();
        }
        if let Some(k) = &self.kms_key {
            out["kms_key"] = k.to_json();
        }
        if let Some(k) = &self.share_key {
            out["share_key"] = k.to_json();
        }
        if let Some(l) = &self.lock {
            out["lock"] = l.to_json();
        }
        if let Some(d) = &self.drill {
            out["drill"] = d.to_json();
        }
        out
    }
}

/// `vault`, absent or null for none. `source_regions`: the regions the configuration's `match`
/// confines its instances to (its `availability-zone` values), empty when any region.
pub(crate) fn parse_vault(
    value: Option<&Value>,
    source_regions: &BTreeSet<String>,
    strictness: crate::config::Strictness,
    warnings: &mut Vec<String>,
) -> Result<Option<Vault>, ConfigError> {
    const FIELD: &str = "vault";
    let obj = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(ConfigError::new(
                FIELD,
                format!("must be an object with an account and a retention, found {}", kind(other)),
            ))
        }
    };
    crate::config::check_keys(obj, "vault.", &VAULT_KEYS, strictness, warnings)?;
    let account = match obj.get("account") {
        None => return Err(ConfigError::new("vault.account", "is required (the vault's 12-digit account id)")),
        Some(Value::String(a)) if crate::ids::is_account_id(a.trim()) => a.trim().to_string(),
        Some(Value::String(a)) => {
            return Err(ConfigError::new(
                "vault.account",
                format!("{} is not an account id (12 digits)", crate::error::Shown(a)),
            ))
        }
        Some(other) => {
            return Err(ConfigError::new("vault.account", format!("must be a 12-digit text, found {}", kind(other))))
        }
    };
    let region = match obj.get("region") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if crate::ids::is_region_name(r.trim()) => Some(r.trim().to_string()),
        Some(Value::String(r)) => {
            return Err(ConfigError::new(
                "vault.region",
                format!("{} is not an AWS region name", crate::error::Shown(r)),
            ))
        }
        Some(other) => {
            return Err(ConfigError::new("vault.region", format!("must be a region name, found {}", kind(other))))
        }
    };
    let retention = parse_retention(obj.get("retention"), "vault.retention")?;
    let minimum = match obj.get("minimum") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_minimum(Some(v), "vault.minimum")?),
    };
    let lock = parse_lock(obj.get("lock"), "vault.lock")?;
    check_locked_retention(lock.as_ref(), retention, "vault.lock", "vault.retention")?;
    // The vault's key is the vault's: a key of the protected account would let that account
    // make the vault's copies unreadable by deleting it.
    let kms_key = match obj.get("kms_key") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let key = parse_regional_key(v, "vault.kms_key", region.as_deref(), source_regions, "the vault's region")?;
            let arns: Vec<&str> = match &key {
                RegionalKey::One(a) | RegionalKey::MultiRegion(a) => vec![a.as_str()],
                RegionalKey::PerRegion(keys) => keys.values().map(String::as_str).collect(),
            };
            if let Some(other) = arns.iter().find(|a| arn_account(a) != Some(account.as_str())) {
                return Err(ConfigError::new(
                    "vault.kms_key",
                    format!(
                        "{} is a key of account {}, not of the vault {account}: the vault's copies must be under the \
                         vault's own key",
                        crate::error::Shown(other),
                        arn_account(other).unwrap_or("?")
                    ),
                ));
            }
            Some(key)
        }
    };
    // The sources are in the configuration's regions, whatever the vault's region.
    let share_key = match obj.get("share_key") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_regional_key(v, "vault.share_key", None, source_regions, "the source's region")?),
    };
    if share_key.as_ref().is_some_and(|k| {
        let arns: Vec<&str> = match k {
            RegionalKey::One(a) | RegionalKey::MultiRegion(a) => vec![a.as_str()],
            RegionalKey::PerRegion(keys) => keys.values().map(String::as_str).collect(),
        };
        arns.iter().any(|a| arn_account(a) == Some(account.as_str()))
    }) {
        return Err(ConfigError::new(
            "vault.share_key",
            format!(
                "is a key of the vault {account}: it must be a key of the protected account that the vault may use"
            ),
        ));
    }
    let drill = crate::config::drill::parse_drill(obj.get("drill"), "vault.drill")?;
    Ok(Some(Vault { account, region, retention, minimum, kms_key, share_key, lock, drill }))
}

/// A key for copies in `fixed_region` (when every copy goes there), else in the regions the
/// configuration runs in (`source_regions`, empty: any). A plain key ARN names one region, so
/// it fits only when all copies go there; otherwise a key per region or a multi-Region key.
fn parse_regional_key(
    value: &Value,
    field: &str,
    fixed_region: Option<&str>,
    source_regions: &BTreeSet<String>,
    whose: &str,
) -> Result<RegionalKey, ConfigError> {
    let err = |problem: String| ConfigError::new(field, problem);
    match value {
        Value::String(arn) => {
            let arn = arn.trim();
            let region = arn_region(arn).unwrap_or("");
            if is_multi_region(arn) {
                parse_kms_key(arn, region).map_err(err)?;
                return Ok(RegionalKey::MultiRegion(arn.to_string()));
            }
            let only = match (fixed_region, source_regions.len()) {
                (Some(r), _) => Some(r.to_string()),
                (None, 1) => source_regions.iter().next().cloned(),
                _ => None,
            };
            match only {
                Some(r) => {
                    parse_kms_key(arn, &r).map_err(|p| err(format!("{p} ({whose})")))?;
                    Ok(RegionalKey::One(arn.to_string()))
                }
                None => Err(err(format!(
                    "{} is a key of one region, but copies are made in every region the configuration runs in: give \
                     {{\"REGION\": \"ARN\", ...}} with a key for each, or a multi-Region key (mrk-...)",
                    crate::error::Shown(arn)
                ))),
            }
        }
        Value::Object(keys) if !keys.is_empty() => {
            if fixed_region.is_some() {
                return Err(err(
                    "must be one key ARN of the vault's region (every copy goes there), not a key per region".into(),
                ));
            }
            let mut out = BTreeMap::new();
            for (region, v) in keys {
                let at = format!("{field}.{}", crate::error::clip(region));
                if !crate::ids::is_region_name(region) {
                    return Err(ConfigError::new(
                        at,
                        format!("{} is not an AWS region name", crate::error::Shown(region)),
                    ));
                }
                let Value::String(arn) = v else {
                    return Err(ConfigError::new(at, format!("must be a KMS key ARN, found {}", kind(v))));
                };
                parse_kms_key(arn.trim(), region).map_err(|p| ConfigError::new(at.clone(), p))?;
                out.insert(region.clone(), arn.trim().to_string());
            }
            if let Some(missing) = source_regions.iter().find(|r| !out.contains_key(*r)) {
                return Err(err(format!("has no key for {missing}, a region the configuration runs in")));
            }
            Ok(RegionalKey::PerRegion(out))
        }
        other => Err(err(format!(
            "must be a KMS key ARN, an object of region -> key ARN, or a multi-Region key, found {}",
            kind(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Strictness;

    const VAULT: &str = "444455556666";
    const OWN: &str = "111122223333";

    fn key(region: &str, account: &str, id: &str) -> String {
        format!("arn:aws:kms:{region}:{account}:key/{id}")
    }

    fn parse(text: &str, regions: &[&str]) -> Result<Option<Vault>, String> {
        let v: Value = serde_json::from_str(text).unwrap();
        let regions: BTreeSet<String> = regions.iter().map(|r| r.to_string()).collect();
        parse_vault(Some(&v), &regions, Strictness::Strict, &mut Vec::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_spec_example_and_its_tag() {
        let text = format!(
            r#"{{"account": "{VAULT}", "region": "us-east-1", "retention": "90 days", "minimum": 7,
                "kms_key": "{}", "share_key": "{}", "lock": {{"mode": "compliance", "cool_off_hours": 72}}}}"#,
            key("us-east-1", VAULT, "1234abcd-12ab-34cd-56ef-1234567890ab"),
            key("us-west-2", OWN, "mrk-1234abcd12ab34cd56ef1234567890ab"),
        );
        let v = parse(&text, &[]).unwrap().unwrap();
        assert_eq!(v.vault_to("us-west-2"), format!("{VAULT}:us-east-1"));
        assert_eq!(v.minimum, Some(7));
        assert!(matches!(v.share_key, Some(RegionalKey::MultiRegion(_))));
        assert_eq!(
            v.share_key.as_ref().unwrap().in_region("eu-west-1").as_deref(),
            Some(key("eu-west-1", OWN, "mrk-1234abcd12ab34cd56ef1234567890ab").as_str()),
            "a multi-Region key has the same id in every region"
        );
        let back = parse(&v.to_json().to_string(), &[]).unwrap().unwrap();
        assert_eq!(back, v);
        // Without a region, each copy stays in its source's region.
        let v = parse(&format!(r#"{{"account": "{VAULT}", "retention": "30 days"}}"#), &[]).unwrap().unwrap();
        assert_eq!(v.vault_to("eu-west-1"), format!("{VAULT}:eu-west-1"));
    }

    #[test]
    fn keys_must_fit_the_regions_they_are_used_in() {
        let one = key("us-east-1", VAULT, "k1");
        let base = |extra: &str| format!(r#"{{"account": "{VAULT}", "retention": "30 days"{extra}}}"#);
        // Copies in every region: one plain key does not do.
        let e = parse(&base(&format!(r#", "kms_key": "{one}""#)), &[]).unwrap_err();
        assert!(e.starts_with("vault.kms_key: ") && e.contains("is a key of one region"), "{e}");
        // ... unless the configuration runs in that region only.
        assert!(parse(&base(&format!(r#", "kms_key": "{one}""#)), &["us-east-1"]).is_ok());
        let e = parse(&base(&format!(r#", "kms_key": "{one}""#)), &["eu-west-1"]).unwrap_err();
        assert!(e.contains("the key is in us-east-1, not in eu-west-1"), "{e}");
        // A key per region covers each region the configuration runs in.
        let per = format!(r#", "kms_key": {{"us-east-1": "{one}", "eu-west-1": "{}"}}"#, key("eu-west-1", VAULT, "k2"));
        assert!(parse(&base(&per), &["us-east-1", "eu-west-1"]).is_ok());
        let e = parse(&base(&per), &["us-east-1", "ap-south-1"]).unwrap_err();
        assert!(e.contains("vault.kms_key: has no key for ap-south-1"), "{e}");
        let wrong = format!(r#", "kms_key": {{"eu-west-1": "{one}"}}"#);
        let e = parse(&base(&wrong), &[]).unwrap_err();
        assert!(e.starts_with("vault.kms_key.eu-west-1: the key is in us-east-1"), "{e}");
        // With a vault region, one key of that region.
        let fixed =
            format!(r#"{{"account": "{VAULT}", "region": "eu-west-1", "retention": "30 days", "kms_key": "{one}"}}"#);
        assert!(parse(&fixed, &[]).unwrap_err().contains("not in eu-west-1"));
        // The vault's key is the vault's; the share key the protected account's.
        let theirs = format!(r#", "region": "us-east-1", "kms_key": "{}""#, key("us-east-1", OWN, "k"));
        assert!(parse(&base(&theirs), &[]).unwrap_err().contains("not of the vault 444455556666"));
        let share = format!(r#", "share_key": "{}""#, key("us-east-1", VAULT, "mrk-1"));
        assert!(parse(&base(&share), &[]).unwrap_err().contains("vault.share_key: is a key of the vault"));
    }

    #[test]
    fn each_field_is_checked() {
        for (text, expected) in [
            (r#"{"retention": "30 days"}"#, "vault.account: is required"),
            (r#"{"account": "4444", "retention": "30 days"}"#, "vault.account: \"4444\" is not an account id"),
            (r#"{"account": "444455556666"}"#, "vault.retention: is required"),
            (r#"{"account": "444455556666", "retention": "30 days", "region": "moon-1"}"#, "vault.region:"),
            (
                r#"{"account": "444455556666", "retention": "1 day", "lock": {"mode": "governance"}}"#,
                "vault.lock: needs a retention of at least 2 days",
            ),
            (r#"{"account": "444455556666", "retention": "30 days", "copies": 2}"#, "vault.copies: unknown key"),
            (
                r#"{"account": "444455556666", "retention": "30 days", "kms_key": 5}"#,
                "vault.kms_key: must be a KMS key ARN",
            ),
            (r#""444455556666""#, "vault: must be an object"),
        ] {
            let e = parse(text, &[]).expect_err(text);
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
