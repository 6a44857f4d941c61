//! `ebs-snapper configure`: list, get, set, delete and check configurations.

use std::collections::BTreeMap;
use std::io::Read;

use ebs_snapper_aws::account::reach;
use ebs_snapper_aws::fleet_check::check_fleet;
use ebs_snapper_aws::regions::enabled_regions;
use ebs_snapper_aws::{caller_account_id, Aws, AwsError, ConfigStore};
use ebs_snapper_core::{Configuration, ConfigurationSet, Strictness};
use tracing::info;

use crate::accounts::check_role_name;
use crate::args::ConfigureArgs;
use crate::error::{check_account, CliError};
use crate::output::line;

/// Largest configuration id DynamoDB accepts as a range key.
const MAX_ID_BYTES: usize = 1024;

/// What `configure` was asked to do, with its arguments checked.
enum Action {
    List,
    Get(String),
    Set(String, String),
    Delete(String),
    Check,
}

/// Outcome of a command that did not fail: whether the thing asked for was found.
pub enum Outcome {
    Done,
    NotFound,
}

fn action(args: &ConfigureArgs) -> Result<Action, CliError> {
    let id = || -> Result<String, CliError> {
        let id = args.id.clone().ok_or_else(|| CliError::Usage("this action needs a configuration ID".into()))?;
        if id.trim().is_empty() {
            return Err(CliError::Usage("the configuration ID is empty".into()));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(CliError::Usage(format!("the configuration ID is longer than {MAX_ID_BYTES} bytes")));
        }
        if id.chars().any(char::is_control) {
            return Err(CliError::Usage("the configuration ID contains control characters".into()));
        }
        Ok(id)
    };
    let no_json = |what: &str| -> Result<(), CliError> {
        match &args.json {
            Some(extra) => Err(CliError::Usage(format!("{what} takes no JSON argument (got {extra:?})"))),
            None => Ok(()),
        }
    };
    if args.list || args.check {
        if let Some(extra) = &args.id {
            return Err(CliError::Usage(format!(
                "{} takes no ID argument (got {extra:?})",
                if args.list { "-l" } else { "-c" }
            )));
        }
        return Ok(if args.list { Action::List } else { Action::Check });
    }
    if args.extra.is_some() {
        return Err(CliError::Usage("-e/--extra goes with -c only".into()));
    }
    if args.get {
        no_json("-g")?;
        return Ok(Action::Get(id()?));
    }
    if args.delete {
        no_json("-d")?;
        return Ok(Action::Delete(id()?));
    }
    let id = id()?;
    let json = args
        .json
        .clone()
        .ok_or_else(|| CliError::Usage("-s needs ID and JSON (or - to read JSON from stdin)".into()))?;
    Ok(Action::Set(id, json))
}

pub async fn run(aws: &Aws, tool_region: &str, args: &ConfigureArgs) -> Result<Outcome, CliError> {
    // Check the whole command line before any AWS call.
    let action = action(args)?;
    if let Some(account) = &args.account {
        check_account("-a", account)?;
    }
    // Validate the configuration before asking anything of AWS: a bad one stores nothing.
    let set_text = match &action {
        Action::Set(_, json) => Some(validated_json(json)?),
        _ => None,
    };
    let account = match &args.account {
        Some(a) => a.clone(),
        None => caller_account_id(aws).await?,
    };
    info!(account = %account, region = tool_region, "configure");
    let store = ConfigStore::new(aws, tool_region, ebs_snapper_aws::table_name());

    match action {
        Action::List => {
            let items = store.list(&account).await?;
            if items.is_empty() {
                line("No configurations found")?;
            } else {
                line("aws_account_id,id")?;
                for item in items {
                    line(&format!("{account},{}", item.id))?;
                }
            }
            Ok(Outcome::Done)
        }
        Action::Get(id) => match store.get(&account, &id).await? {
            Some(item) => {
                line(&one_line_json(&item.text))?;
                Ok(Outcome::Done)
            }
            None => {
                line("No configuration found")?;
                Ok(Outcome::NotFound)
            }
        },
        Action::Set(id, _) => {
            let text = set_text.expect("validated above for Set");
            let parsed = Configuration::parse(&text, Strictness::Strict)?.configuration;
            if let Some(vault) = parsed.vault.as_ref().filter(|v| v.account == account) {
                return Err(ebs_snapper_core::ConfigError::new(
                    "vault.account",
                    format!("{} is this account: the vault must be another account", vault.account),
                )
                .into());
            }
            store.put(&account, &id, &text).await?;
            line(&format!("Saved to key {id} under account {account}"))?;
            if let Some(warning) = compliance_warning(&text) {
                eprintln!("warning: {warning}");
            }
            if let Some(vault) = &parsed.vault {
                let keys = if vault.share_key.is_some() {
                    " and CopyKmsKeyArns with the share_key of each region, which the vault's copies of sources on \
                     aws/ebs are made from"
                } else {
                    ""
                };
                eprintln!(
                    "warning: vault: the replication job shares, copies and locks each snapshot in the vault and \
                     the clean job cleans it there; deploy the stack with --parameter VaultAccountIds=ACCOUNT so that \
                     snapshots may be shared{keys}"
                );
            }
            Ok(Outcome::Done)
        }
        Action::Delete(id) => {
            if store.delete(&account, &id).await? {
                // The Python tool printed DynamoDB's (empty) answer; scripts may expect it.
                line("{}")?;
                Ok(Outcome::Done)
            } else {
                line("No configuration found")?;
                Ok(Outcome::NotFound)
            }
        }
        Action::Check => {
            check_role_name(&args.member_role)?;
            let home = match &args.account {
                Some(_) => caller_account_id(aws).await?,
                None => account.clone(),
            };
            let prefix_of = |account: &str| match &args.extra {
                Some(extra) => format!("{extra},{account}"),
                None => account.to_string(),
            };
            // Without -a: the caller's account, then every member account in the table.
            let mut accounts = vec![account.clone()];
            if args.account.is_none() {
                match store.accounts(&account).await {
                    Ok(all) => accounts.extend(all.into_iter().filter(|a| *a != account)),
                    // Not deployed: the caller's own check below says so.
                    Err(AwsError::NotDeployed { .. }) => {}
                    Err(e) => line(&format!(
                        "{}: could not list the member accounts in the table ({e}); only account {account} was checked",
                        prefix_of(&account)
                    ))?,
                }
            }
            for account in &accounts {
                let prefix = prefix_of(account);
                for finding in check_account_setup(aws, &store, &home, account, &args.member_role).await? {
                    line(&format!("{prefix}: {finding}"))?;
                }
            }
            Ok(Outcome::Done)
        }
    }
}

/// Reads (`-` = stdin), validates strictly, and returns the compact JSON text to store.
fn validated_json(json: &str) -> Result<String, CliError> {
    let text = if json == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .map_err(|source| CliError::Read { what: "JSON from stdin", source })?;
        buf
    } else {
        json.to_string()
    };
    Configuration::parse(&text, Strictness::Strict)?;
    let value: serde_json::Value = serde_json::from_str(&text).expect("parsed above");
    Ok(serde_json::to_string(&value).expect("a JSON value serialises"))
}

/// The one warning a configuration with a compliance lock gets when it is stored (SPEC §16).
fn compliance_warning(text: &str) -> Option<String> {
    let c = Configuration::parse(text, Strictness::Strict).ok()?.configuration;
    let mut locked: Vec<String> = c
        .tiers
        .iter()
        .filter(|t| t.lock.is_some_and(|l| l.mode == ebs_snapper_core::LockMode::Compliance))
        .map(|t| if c.tiered { format!("tier {}", t.name) } else { "snapshot".to_string() })
        .collect();
    locked.extend(
        c.copies
            .iter()
            .filter(|d| d.lock.is_some_and(|l| l.mode == ebs_snapper_core::LockMode::Compliance))
            .map(|d| format!("copies to {}", d.region)),
    );
    if c.vault.as_ref().and_then(|v| v.lock).is_some_and(|l| l.mode == ebs_snapper_core::LockMode::Compliance) {
        locked.push("the vault's copies".to_string());
    }
    (!locked.is_empty()).then(|| {
        format!(
            "compliance lock on {}: once the cool-off ends, nobody (root included) can delete those snapshots \
             before their DeleteOn date, so their storage is paid until then",
            locked.join(", ")
        )
    })
}

/// Stored text on one line: compact when it is JSON, otherwise as stored with line breaks folded.
fn one_line_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => serde_json::to_string(&v).expect("a JSON value serialises"),
        Err(_) => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// The problems `configure -c` reports for one account, one line each: a member account is
/// first reached through its role (a finding when it cannot be), and its instances are checked
/// in it.
async fn check_account_setup(
    aws: &Aws,
    store: &ConfigStore,
    home: &str,
    account: &str,
    role: &str,
) -> Result<Vec<String>, CliError> {
    match reach(aws, home, account, role, "ebs-snapper-cli-check").await {
        Ok(reached) => {
            let access = ebs_snapper_aws::vault::VaultAccess { home: aws, home_account: home, account };
            check(&reached.aws, store, account, access).await
        }
        Err(e) => Ok(vec![format!("{e}; its configurations are not run")]),
    }
}

/// The problems `configure -c` reports, one line each (`aws` acts in `account`; `vaults` is how
/// the vaults are reached from the caller's credentials).
async fn check(
    aws: &Aws,
    store: &ConfigStore,
    account: &str,
    vaults: ebs_snapper_aws::vault::VaultAccess<'_>,
) -> Result<Vec<String>, CliError> {
    let items = match store.list(account).await {
        Ok(items) => items,
        Err(e @ AwsError::NotDeployed { .. }) => return Ok(vec![e.to_string()]),
        Err(e) => return Err(e.into()),
    };
    let mut findings = Vec::new();
    if items.is_empty() {
        findings.push("No configurations existed for this account, but ebs-snapper was deployed".to_string());
    }
    let set = ConfigurationSet::from_stored(&items);
    for invalid in &set.invalid {
        findings.push(format!("configuration {} is invalid and is skipped: {}", invalid.id, invalid.error));
    }
    let now = chrono::Utc::now();
    for named in &set.valid {
        for tier in named.configuration.tiers_never_due(now) {
            findings.push(format!(
                "configuration {}: tier {tier} can never be due (its schedule does not fire after now)",
                named.id
            ));
        }
    }
    for (id, warning) in &set.warnings {
        findings.push(format!("configuration {id}: {warning}"));
    }
    if set.valid.is_empty() {
        return Ok(findings);
    }
    // SPEC §16: each vault can be reached through its role (once per vault account, listed in
    // the vault's region, else this one).
    let mut vault_of: BTreeMap<&str, (&str, String)> = BTreeMap::new();
    for named in &set.valid {
        if let Some(v) = &named.configuration.vault {
            let region = v.region.clone().unwrap_or_else(|| aws.region().unwrap_or("us-east-1").to_string());
            vault_of.entry(v.account.as_str()).or_insert((named.id.as_str(), region));
        }
    }
    for (vault, (id, region)) in vault_of {
        if let Err(e) = ebs_snapper_aws::vault::check_vault(vaults, vault, &region).await {
            // From an operator's credentials, always: the vault role trusts only the functions.
            findings.push(format!("configuration {id}: {e}"));
        }
    }
    let regions = match enabled_regions(aws).await {
        Ok(regions) => regions,
        Err(e) => {
            findings.push(format!("instances could not be checked: {e}"));
            return Ok(findings);
        }
    };
    let fleet = check_fleet(aws, &set, &regions).await;
    for id in &fleet.unmatched {
        findings.push(format!("configuration {id} was configured, but didn't match any instances"));
    }
    for (region, instance, ids) in &fleet.overlaps {
        findings.push(format!(
            "instance {instance} in {region} is matched by configurations {}; {} applies",
            ids.join(", "),
            ids[0]
        ));
    }
    for (region, instance, volume, ids) in &fleet.excluded {
        findings.push(format!(
            "volume {volume} of instance {instance} in {region} is excluded by every configuration that matches it \
             ({}); it is never snapshotted",
            ids.join(", ")
        ));
    }
    for (region, instance) in &fleet.unconfigured {
        findings.push(format!("instance {instance} in {region} is tagged backup, but no configuration matches it"));
    }
    for (region, e) in &fleet.failed {
        findings.push(format!("region {region} could not be checked: {e}"));
    }
    for (region, id, volume, key) in &fleet.unshareable {
        findings.push(format!(
            "volume {volume} in {region} (configuration {id}) is encrypted with {key}, which EC2 will not share: its \
             snapshots cannot go to the vault; set vault.share_key for {region}"
        ));
    }
    for (region, key, e) in &fleet.keys_unchecked {
        findings.push(format!(
            "key {key} in {region} could not be described ({e}); whether the vault can take its volumes' snapshots \
             was not checked"
        ));
    }
    for (region, id, volume, last_ok) in &fleet.undrilled {
        let every =
            set.get(id).and_then(|c| c.configuration.drill.or_else(|| c.configuration.copy_destination(region)?.drill));
        let every = every.map(|d| ebs_snapper_core::format_duration(d.every * 2)).unwrap_or_default();
        let last =
            last_ok.map(|t| format!("last passed {}", t.format("%Y-%m-%d"))).unwrap_or_else(|| "none passed".into());
        findings.push(format!(
            "volume {volume} in {region} (configuration {id}) went {every} (two drill periods) without a restore drill \
             that passed ({last}); see `ebs-snapper status` and `ebs-snapper drill`"
        ));
    }
    for (region, id, e) in &fleet.failed_configs {
        findings.push(format!("configuration {id} could not be evaluated in {region}: {e}"));
    }
    Ok(findings)
}
