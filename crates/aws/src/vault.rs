//! The vault's half of the replication job (SPEC §16): this region's snapshots tagged
//! `ebs-snapper:vault-to`, shared with their vault account, copied by the vault (through its
//! role, reached from the deployment's own credentials), locked there, and unshared once the
//! vault's copy completed. The plan is `ebs_snapper_core::vault_plan`.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{OperationType, SnapshotAttributeName};
use chrono::Utc;
use ebs_snapper_core::lock_plan::{decide, requests, LockDecision};
use ebs_snapper_core::tags::{REPLICATION_SNAPSHOT_ID, TAG_VAULT_OF, TAG_VAULT_TO};
use ebs_snapper_core::vault_plan::{plan_vault, report_vault, vault_target, VaultAction, VaultIndex};
use ebs_snapper_core::{
    plan_retention, ConfigurationSet, CopyRequest, Executed, Inventory, RegionReport, ReportOptions,
};
use tracing::warn;

use crate::account::{reach, vault_role_name};
use crate::budget::TimeBudget;
use crate::error::AwsError;
use crate::executor::{copy_snapshots, delete_snapshot, delete_snapshots, lock_snapshots};
use crate::inventory::{
    describe_locks, describe_own_snapshots, each_own_snapshot, ec2_filter, SnapshotDetail, RETENTION_TAGS,
};
use crate::sdk::Aws;

/// How the replication job reaches a vault: the vault role trusts the deployment's function
/// roles only, so it is assumed with the deployment's own credentials (`home`), whichever
/// account (`account`, the deployment's or a member's) the run works in.
#[derive(Debug, Clone, Copy)]
pub struct VaultAccess<'a> {
    pub home: &'a Aws,
    pub home_account: &'a str,
    pub account: &'a str,
}

impl VaultAccess<'_> {
    /// The vault `vault` reached through its role, and a client of it in `vault_region`.
    pub async fn reach(&self, vault: &str, vault_region: &str) -> Result<(Aws, aws_sdk_ec2::Client), AwsError> {
        let reached = reach(self.home, self.home_account, vault, &vault_role_name(), "ebs-snapper-vault").await?;
        let client = aws_sdk_ec2::Client::new(&reached.aws.in_region(vault_region));
        Ok((reached.aws, client))
    }
}

/// The ids of this account's snapshots in `region` tagged for a vault that are shared with
/// `vault` (`RestorableByUserIds`: what EC2 says the vault may use).
async fn shared_with(client: &aws_sdk_ec2::Client, region: &str, vault: &str) -> Result<BTreeSet<String>, AwsError> {
    let mut out = BTreeSet::new();
    let mut pages = client
        .describe_snapshots()
        .owner_ids("self")
        .restorable_by_user_ids(vault)
        .filters(ec2_filter("tag-key", [TAG_VAULT_TO.to_string()]))
        .max_results(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("DescribeSnapshots", region, e))?;
        out.extend(page.snapshots().iter().filter_map(|s| s.snapshot_id().map(str::to_string)));
    }
    Ok(out)
}

/// One vault's listing: this account's copies there, and every copy in progress there.
async fn vault_index(client: &aws_sdk_ec2::Client, region: &str, account: &str) -> Result<VaultIndex, AwsError> {
    let mut index = VaultIndex::default();
    let mine = vec![ec2_filter(&format!("tag:{TAG_VAULT_OF}"), [account.to_string()])];
    each_own_snapshot(client, region, mine, SnapshotDetail::Tags(&[REPLICATION_SNAPSHOT_ID]), |s| index.add(&s))
        .await?;
    let pending = vec![ec2_filter("status", ["pending".to_string()])];
    index.pending = describe_own_snapshots(client, region, pending, SnapshotDetail::Bare).await?.len();
    Ok(index)
}

async fn set_share(
    client: &aws_sdk_ec2::Client,
    region: &str,
    snapshot: &str,
    vault: &str,
    add: bool,
) -> Result<(), AwsError> {
    client
        .modify_snapshot_attribute()
        .snapshot_id(snapshot)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .operation_type(if add { OperationType::Add } else { OperationType::Remove })
        .user_ids(vault)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| AwsError::call("ModifySnapshotAttribute", region, e))
}

/// Where a copy goes: the source account's client in its region, and the vault.
struct Vault<'a> {
    client: &'a aws_sdk_ec2::Client,
    region: &'a str,
    vault: &'a str,
    vault_region: &'a str,
    aws: &'a Aws,
}

/// Shares the source with the vault (unless `shared` already), then has the vault copy it (a
/// lost answer verified, never repeated blindly: the executor's copy).
async fn share_and_copy(
    to: Vault<'_>,
    source: &str,
    share: bool,
    copy: &ebs_snapper_core::vault_plan::VaultCopy,
    budget: &TimeBudget,
) -> Executed {
    if share {
        if let Err(e) = set_share(to.client, to.region, source, to.vault, true).await {
            let fix = if e.code() == Some("OperationNotPermitted") {
                " (a snapshot encrypted with aws/ebs cannot be shared; copying it under vault.share_key first is \
                 not built yet in this version)"
            } else {
                ""
            };
            return Executed::Failed(format!("could not share it with the vault: {e}{fix}"));
        }
    }
    let request = CopyRequest {
        source_id: copy.source_id.clone(),
        source_region: copy.source_region.clone(),
        destination_region: to.vault_region.to_string(),
        description: copy.description.clone(),
        tags: copy.tags.clone(),
        kms_key: copy.kms_key.clone(),
    };
    copy_snapshots(to.aws, &[&request], budget).await.pop().unwrap_or(Executed::Deferred)
}

/// Does this region's vault work and adds it to `report`. Nothing when no configuration has a
/// vault (no call).
pub async fn vault_region(
    source: &Aws,
    access: VaultAccess<'_>,
    configs: &ConfigurationSet,
    region: &str,
    budget: &TimeBudget,
    opts: ReportOptions,
    report: &mut RegionReport,
) {
    if !configs.valid.iter().any(|n| n.configuration.vault.is_some()) {
        return;
    }
    let client = aws_sdk_ec2::Client::new(&source.in_region(region));
    let tagged = vec![ec2_filter("tag-key", [TAG_VAULT_TO.to_string()])];
    let sources = match describe_own_snapshots(&client, region, tagged, SnapshotDetail::Full).await {
        Ok(s) => s,
        Err(e) => {
            report.failed += 1;
            report.errors.push(format!("could not list the snapshots tagged for a vault: {e}"));
            return;
        }
    };
    let targets: BTreeSet<&str> = sources.iter().filter_map(|s| s.tags.get(TAG_VAULT_TO)).collect();
    let mut vaults: BTreeMap<String, Result<VaultIndex, String>> = BTreeMap::new();
    let mut vault_aws: BTreeMap<String, Aws> = BTreeMap::new();
    let mut shared: BTreeSet<String> = BTreeSet::new();
    for target in targets {
        let Some((vault, vault_region)) = vault_target(target) else { continue };
        let listing = async {
            let (aws, vault_client) = access.reach(vault, vault_region).await?;
            let index = vault_index(&vault_client, vault_region, access.account).await?;
            shared.extend(shared_with(&client, region, vault).await?);
            Ok::<_, AwsError>((aws, index))
        };
        match listing.await {
            Ok((aws, index)) => {
                vault_aws.insert(target.to_string(), aws);
                vaults.insert(target.to_string(), Ok(index));
            }
            Err(e) => {
                warn!(region, vault = target, error = %e, "could not list the vault");
                report.failed += 1;
                report.errors.push(format!("could not reach or list the vault {target}: {e}"));
                vaults.insert(target.to_string(), Err(e.to_string()));
            }
        }
    }
    let plan = plan_vault(region, access.account, &sources, &shared, &vaults, configs, Utc::now().date_naive());
    let mut executed: Vec<Option<Executed>> = Vec::with_capacity(plan.len());
    let mut locks: BTreeMap<String, Vec<LockDecision>> = BTreeMap::new();
    for d in &plan {
        if opts.dry_run {
            executed.push(None);
            continue;
        }
        let vault_of = |target: &str| {
            let (vault, vault_region) = vault_target(target).expect("planned from a valid target");
            (vault.to_string(), vault_region.to_string(), vault_aws.get(target))
        };
        let outcome = match &d.action {
            VaultAction::Copy { target, share, copy } => {
                let (vault, vault_region, aws) = vault_of(target);
                Some(match aws {
                    None => Executed::Failed(format!("the vault {target} was not reached")),
                    Some(_) if !budget.allows_mutation() => Executed::Deferred,
                    Some(aws) => {
                        let to = Vault { client: &client, region, vault: &vault, vault_region: &vault_region, aws };
                        let done = share_and_copy(to, d.snapshot_id, *share, copy, budget).await;
                        if let (Executed::Done(Some(id)), Some((lock, date))) = (&done, copy.lock) {
                            let decision = decide(id, lock, date, None, Utc::now());
                            locks.entry(target.to_string()).or_default().extend(decision);
                        }
                        done
                    }
                })
            }
            VaultAction::Unshare { target, .. } => {
                let (vault, _, _) = vault_of(target);
                Some(match set_share(&client, region, d.snapshot_id, &vault, false).await {
                    Ok(()) => Executed::Done(None),
                    Err(e) => Executed::Failed(e.to_string()),
                })
            }
            VaultAction::ErroredCopy { target, copy, .. } => match vault_of(target) {
                (_, vault_region, Some(aws)) => {
                    let vault_client = aws_sdk_ec2::Client::new(&aws.in_region(&vault_region));
                    Some(delete_snapshot(&vault_client, &vault_region, copy, budget).await)
                }
                _ => Some(Executed::Failed(format!("the vault {target} was not reached"))),
            },
            _ => None,
        };
        executed.push(outcome);
    }
    report_vault(report, opts, &plan, executed);
    for (target, decisions) in locks {
        let Some((_, vault_region)) = vault_target(&target) else { continue };
        let Some(aws) = vault_aws.get(&target) else { continue };
        let vault_client = aws_sdk_ec2::Client::new(&aws.in_region(vault_region));
        let outcomes = lock_snapshots(&vault_client, vault_region, &requests(&decisions), budget).await;
        ebs_snapper_core::lock_plan::report_locks(report, opts, &decisions, outcomes, Some(&target));
    }
}

/// The clean job's vault work (SPEC §16): in each vault of this region's configurations, the
/// copies of this account's snapshots from this region (tagged `ebs-snapper:vault-of` and
/// `replication_src_region`) are cleaned like a destination's disaster-recovery copies, under
/// the vault's minimum, never a locked one, through the vault role (which may delete only vault
/// copies). What it did is added to `report`; nothing when no configuration has a vault.
pub async fn vault_clean_region(
    access: VaultAccess<'_>,
    configs: &ConfigurationSet,
    region: &str,
    budget: &TimeBudget,
    opts: ReportOptions,
    report: &mut RegionReport,
) {
    let targets: BTreeSet<String> =
        configs.valid.iter().filter_map(|n| Some(n.configuration.vault.as_ref()?.vault_to(region))).collect();
    for target in targets {
        let Some((vault, vault_region)) = vault_target(&target) else { continue };
        let view = ebs_snapper_core::vault_plan::vault_configurations(configs, region, &target);
        let listed = async {
            let (_, client) = access.reach(vault, vault_region).await?;
            let filters = vec![
                ec2_filter(&format!("tag:{TAG_VAULT_OF}"), [access.account.to_string()]),
                ec2_filter(&format!("tag:{}", ebs_snapper_core::tags::REPLICATION_SRC), [region.to_string()]),
            ];
            let snapshots =
                describe_own_snapshots(&client, vault_region, filters, SnapshotDetail::Tags(&RETENTION_TAGS)).await?;
            let locks = describe_locks(&client, vault_region).await?;
            Ok::<_, AwsError>((client, snapshots, locks))
        };
        let (client, snapshots, locks) = match listed.await {
            Ok(found) => found,
            Err(e) => {
                warn!(region, vault = %target, error = %e, "could not list the vault's copies");
                report.failed += 1;
                report.errors.push(format!("the vault {target}: could not list its copies, so none was deleted: {e}"));
                continue;
            }
        };
        let inventory = Inventory { region: vault_region.to_string(), snapshots, locks, ..Default::default() };
        let plan = plan_retention(&view, &inventory, &BTreeSet::new(), Utc::now().date_naive());
        let (deleted, locked) = if opts.dry_run {
            (Vec::new(), Vec::new())
        } else {
            let deleted = delete_snapshots(&client, vault_region, &plan.delete_ids(), budget).await;
            (deleted, lock_snapshots(&client, vault_region, &plan.lock_requests(), budget).await)
        };
        let mut part = plan.report(std::iter::empty(), deleted, Vec::new(), locked, opts);
        for a in &mut part.actions {
            a.reason = format!("{} (the vault {target})", a.reason);
        }
        report.deleted += part.deleted;
        report.kept += part.kept;
        report.locked += part.locked;
        report.skipped += part.skipped;
        report.failed += part.failed;
        report.deferred += part.deferred;
        report.errors.extend(part.errors.into_iter().map(|e| format!("the vault {target}: {e}")));
        report.warnings.extend(part.warnings.into_iter().map(|w| format!("the vault {target}: {w}")));
        report.actions.extend(part.actions);
    }
}
