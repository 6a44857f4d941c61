//! The vault's half of the replication job (SPEC §16): this region's snapshots tagged
//! `ebs-snapper:vault-to`, shared with their vault account, copied by the vault (through its
//! role, reached from the deployment's own credentials), locked there, and unshared once the
//! vault's copy completed. The plan is `ebs_snapper_core::vault_plan`.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{OperationType, SnapshotAttributeName};
use chrono::Utc;
use ebs_snapper_core::lock_plan::{decide, plan_locks, requests, LockDecision};
use ebs_snapper_core::tags::{
    DELETE_ON, REPLICATION_SNAPSHOT_ID, REPLICATION_SRC, TAG_CONFIG, TAG_VAULT_OF, TAG_VAULT_TO,
};
use ebs_snapper_core::vault_plan::{
    plan_vault, report_vault, vault_copy_lock, vault_target, ShareCopy, VaultAction, VaultIndex,
};
use ebs_snapper_core::{
    plan_retention, ConfigurationSet, CopyRequest, Executed, Inventory, RegionReport, ReportOptions, Snapshot,
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
use ebs_snapper_core::drill_plan::{copies_of, pick, DrillKind, DrillPick};

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
        let reached = reach(self.home, self.home_account, vault, &vault_role_name(), "ebs-snapper-vault")
            .await
            .map_err(|e| match e {
                AwsError::Member { account, role, message } => AwsError::Vault { account, role, message },
                other => other,
            })?;
        let client = aws_sdk_ec2::Client::new(&reached.aws.in_region(vault_region));
        Ok((reached.aws, client))
    }
}

/// `configure -c`'s check of a vault (SPEC §16): its role can be assumed from these credentials
/// and this account's copies there listed (one page, in `region`). The error says why not.
pub async fn check_vault(access: VaultAccess<'_>, vault: &str, region: &str) -> Result<(), AwsError> {
    let (_, client) = access.reach(vault, region).await?;
    client
        .describe_snapshots()
        .owner_ids("self")
        .filters(ec2_filter(&format!("tag:{TAG_VAULT_OF}"), [access.account.to_string()]))
        .max_results(5)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| AwsError::call("DescribeSnapshots", region, e))
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

/// The tags of a vault copy the replication job reads: what it is a copy of, and what its lock
/// should be.
const VAULT_COPY_TAGS: [&str; 4] = [REPLICATION_SNAPSHOT_ID, REPLICATION_SRC, DELETE_ON, TAG_CONFIG];

/// One vault's listing: this account's copies there (indexed, and as listed), and every copy in
/// progress there.
async fn vault_index(
    client: &aws_sdk_ec2::Client,
    region: &str,
    account: &str,
) -> Result<(VaultIndex, Vec<Snapshot>), AwsError> {
    let mut index = VaultIndex::default();
    let mut copies = Vec::new();
    let mine = vec![ec2_filter(&format!("tag:{TAG_VAULT_OF}"), [account.to_string()])];
    each_own_snapshot(client, region, mine, SnapshotDetail::Tags(&VAULT_COPY_TAGS), |s| {
        index.add(&s);
        copies.push(s);
    })
    .await?;
    let pending = vec![ec2_filter("status", ["pending".to_string()])];
    index.pending = describe_own_snapshots(client, region, pending, SnapshotDetail::Bare).await?.len();
    Ok((index, copies))
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

/// Why a share was refused, for the report: a source encrypted with `aws/ebs` cannot be
/// shared, and without `vault.share_key` nothing can be done about it here.
fn share_refused(e: &AwsError) -> String {
    let fix = if e.code() == Some("OperationNotPermitted") {
        " (a snapshot encrypted with aws/ebs cannot be shared: set vault.share_key, a key of this account \
         the vault may use, and it is copied under that key and the copy shared)"
    } else {
        ""
    };
    format!("could not share it with the vault: {e}{fix}")
}

/// The copy request for a vault copy (made in the vault's region, by the vault).
fn vault_request(copy: &ebs_snapper_core::vault_plan::VaultCopy, vault_region: &str) -> CopyRequest {
    CopyRequest {
        source_id: copy.source_id.clone(),
        source_region: copy.source_region.clone(),
        destination_region: vault_region.to_string(),
        description: copy.description.clone(),
        tags: copy.tags.clone(),
        kms_key: copy.kms_key.clone(),
    }
}

/// The copy request for a share copy (made in the source's region, by the source account).
fn share_copy_request(copy: &ShareCopy) -> CopyRequest {
    CopyRequest {
        source_id: copy.source_id.clone(),
        source_region: copy.region.clone(),
        destination_region: copy.region.clone(),
        description: copy.description.clone(),
        tags: copy.tags.clone(),
        kms_key: Some(copy.kms_key.clone()),
    }
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
    // The vaults the sources name, and those of this region's configurations (whose copies may
    // want their lock when no source is left).
    let mut targets: BTreeSet<String> =
        sources.iter().filter_map(|s| s.tags.get(TAG_VAULT_TO).map(str::to_string)).collect();
    targets.extend(configs.valid.iter().filter_map(|n| Some(n.configuration.vault.as_ref()?.vault_to(region))));
    let mut vaults: BTreeMap<String, Result<VaultIndex, String>> = BTreeMap::new();
    let mut vault_aws: BTreeMap<String, Aws> = BTreeMap::new();
    let mut listed: BTreeMap<String, Vec<Snapshot>> = BTreeMap::new();
    let mut shared: BTreeSet<String> = BTreeSet::new();
    for target in &targets {
        let Some((vault, vault_region)) = vault_target(target) else { continue };
        let listing = async {
            let (aws, vault_client) = access.reach(vault, vault_region).await?;
            let index = vault_index(&vault_client, vault_region, access.account).await?;
            shared.extend(shared_with(&client, region, vault).await?);
            Ok::<_, AwsError>((aws, index))
        };
        match listing.await {
            Ok((aws, (index, copies))) => {
                vault_aws.insert(target.to_string(), aws);
                vaults.insert(target.to_string(), Ok(index));
                listed.insert(target.to_string(), copies);
            }
            Err(e) => {
                warn!(region, vault = target, error = %e, "could not list the vault");
                report.failed += 1;
                report.errors.push(format!("could not reach or list the vault {target}: {e}"));
                vaults.insert(target.to_string(), Err(e.to_string()));
            }
        }
    }
    let mut plan = plan_vault(region, access.account, &sources, &shared, &vaults, configs, Utc::now().date_naive());
    // The vault copies of this region's snapshots whose lock is missing or short are locked again
    // (SPEC §16: locks only grow): one lock listing per vault where a configuration locks.
    let now = Utc::now();
    let mut locks: BTreeMap<String, Vec<LockDecision>> = BTreeMap::new();
    for (target, copies) in &listed {
        let from_here = |s: &&Snapshot| s.tags.get(REPLICATION_SRC).is_some_and(|r| r == region);
        let mine: Vec<&Snapshot> =
            copies.iter().filter(from_here).filter(|s| vault_copy_lock(configs, s).is_some()).collect();
        let (Some((_, vault_region)), Some(aws)) = (vault_target(target), vault_aws.get(target)) else { continue };
        if mine.is_empty() {
            continue;
        }
        let vault_client = aws_sdk_ec2::Client::new(&aws.in_region(vault_region));
        match describe_locks(&vault_client, vault_region).await {
            Ok(found) => {
                locks.insert(target.clone(), plan_locks(mine, |s| vault_copy_lock(configs, s), &found, now));
            }
            Err(e) => {
                report.failed += 1;
                report.errors.push(format!(
                    "the vault {target}: could not list its locks, so no missing lock of a copy there was sent again: {e}"
                ));
            }
        }
    }
    if opts.dry_run {
        let executed = vec![None; plan.len()];
        report_vault(report, opts, &plan, executed);
        for (target, decisions) in &locks {
            ebs_snapper_core::lock_plan::report_locks(report, opts, decisions, Vec::new(), Some(target));
        }
        return;
    }
    // Shares first, one by one; then the copies, one batch per vault (so that one pace and the
    // vault's limit of copies in progress apply to all of them) and one of share copies here;
    // then the deletions.
    let mut executed: Vec<Option<Executed>> = vec![None; plan.len()];
    let mut vault_copies: BTreeMap<&str, Vec<(usize, CopyRequest)>> = BTreeMap::new();
    let mut share_copies: Vec<(usize, CopyRequest)> = Vec::new();
    let mut here: Vec<(usize, &str)> = Vec::new();
    for (i, d) in plan.iter_mut().enumerate() {
        /// The vault `target` names, its region, and its session, when it was reached.
        fn reached<'t>(target: &'t str, vault_aws: &'t BTreeMap<String, Aws>) -> Option<(&'t str, &'t str, &'t Aws)> {
            vault_target(target).and_then(|(vault, r)| Some((vault, r, vault_aws.get(target)?)))
        }
        match &d.action {
            VaultAction::Copy { target, share, copy, .. } => {
                let Some((vault, vault_region, _)) = reached(target, &vault_aws) else {
                    executed[i] = Some(Executed::Failed(format!("the vault {target} was not reached")));
                    continue;
                };
                if !budget.allows_mutation() {
                    executed[i] = Some(Executed::Deferred);
                    continue;
                }
                if *share {
                    if let Err(e) = set_share(&client, region, &copy.source_id, vault, true).await {
                        match d.action.refused_share().filter(|_| e.code() == Some("OperationNotPermitted")) {
                            Some(instead) => {
                                d.action = instead;
                                let VaultAction::CopyUnderShareKey { copy, .. } = &d.action else { unreachable!() };
                                share_copies.push((i, share_copy_request(copy)));
                            }
                            None => executed[i] = Some(Executed::Failed(share_refused(&e))),
                        }
                        continue;
                    }
                }
                vault_copies.entry(target).or_default().push((i, vault_request(copy, vault_region)));
            }
            VaultAction::Unshare { target, .. } => {
                let (vault, _) = vault_target(target).expect("planned from a valid target");
                executed[i] = Some(match set_share(&client, region, d.snapshot_id, vault, false).await {
                    Ok(()) => Executed::Done(None),
                    Err(e) => Executed::Failed(e.to_string()),
                });
            }
            VaultAction::ErroredCopy { target, copy, .. } => {
                executed[i] = Some(match reached(target, &vault_aws) {
                    Some((_, vault_region, aws)) => {
                        let vault_client = aws_sdk_ec2::Client::new(&aws.in_region(vault_region));
                        delete_snapshot(&vault_client, vault_region, copy, budget).await
                    }
                    None => Executed::Failed(format!("the vault {target} was not reached")),
                });
            }
            VaultAction::ErroredShareCopy { copy, .. } => here.push((i, copy)),
            VaultAction::DropShareCopy { .. } => here.push((i, d.snapshot_id)),
            _ => {}
        }
    }
    for (target, requests) in &vault_copies {
        let aws = vault_aws.get(*target).expect("reached");
        let outcomes = copy_snapshots(aws, &requests.iter().map(|(_, r)| r).collect::<Vec<_>>(), budget).await;
        for ((i, _), done) in requests.iter().zip(outcomes) {
            if let (Executed::Done(Some(id)), VaultAction::Copy { copy, .. }) = (&done, &plan[*i].action) {
                if let Some((lock, date)) = copy.lock {
                    locks.entry(target.to_string()).or_default().extend(decide(id, lock, date, None, Utc::now()));
                }
            }
            executed[*i] = Some(done);
        }
    }
    let wanted: Vec<&CopyRequest> = share_copies.iter().map(|(_, r)| r).collect();
    for ((i, _), done) in share_copies.iter().zip(copy_snapshots(source, &wanted, budget).await) {
        executed[*i] = Some(done);
    }
    let ids: Vec<&str> = here.iter().map(|(_, id)| *id).collect();
    for ((i, _), done) in here.iter().zip(delete_snapshots(&client, region, &ids, budget).await) {
        executed[*i] = Some(done);
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

/// This account's copies from `region` in one vault (tagged `ebs-snapper:vault-of` and
/// `replication_src_region`), with the vault's locks, through the vault role.
async fn vault_copies(
    access: VaultAccess<'_>,
    vault: &str,
    vault_region: &str,
    region: &str,
) -> Result<(Aws, aws_sdk_ec2::Client, Vec<Snapshot>, ebs_snapper_core::Locks), AwsError> {
    let (vault_aws, client) = access.reach(vault, vault_region).await?;
    let filters = vec![
        ec2_filter(&format!("tag:{TAG_VAULT_OF}"), [access.account.to_string()]),
        ec2_filter(&format!("tag:{}", ebs_snapper_core::tags::REPLICATION_SRC), [region.to_string()]),
    ];
    let snapshots =
        describe_own_snapshots(&client, vault_region, filters, SnapshotDetail::Tags(&RETENTION_TAGS)).await?;
    let locks = describe_locks(&client, vault_region).await?;
    Ok((vault_aws, client, snapshots, locks))
}

/// The vaults of this region's configurations: `ACCOUNT:REGION` each.
fn vault_targets(configs: &ConfigurationSet, region: &str) -> BTreeSet<String> {
    configs.valid.iter().filter_map(|n| Some(n.configuration.vault.as_ref()?.vault_to(region))).collect()
}

/// The clean job's vault work (SPEC §16): in each vault of this region's configurations, the
/// copies of this account's snapshots from this region (tagged `ebs-snapper:vault-of` and
/// `replication_src_region`) are cleaned like a destination's disaster-recovery copies, under
/// the vault's minimum, never a locked one, through the vault role (which may delete only vault
/// copies); then, where `vault.drill` is set, the kept ones are drilled there (SPEC §17). What it
/// did is added to `report`; nothing when no configuration has a vault.
pub async fn vault_clean_region(
    access: VaultAccess<'_>,
    configs: &ConfigurationSet,
    region: &str,
    budget: &TimeBudget,
    opts: ReportOptions,
    report: &mut RegionReport,
) {
    for target in vault_targets(configs, region) {
        let Some((vault, vault_region)) = vault_target(&target) else { continue };
        let view = ebs_snapper_core::vault_plan::vault_configurations(configs, region, &target);
        let (vault_aws, client, snapshots, locks) = match vault_copies(access, vault, vault_region, region).await {
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
        // The vault's restore drills, among the copies the plan keeps.
        let drills = {
            let deleting: BTreeSet<&str> = plan.delete_ids().into_iter().collect();
            vault_drill_picks(&view, &inventory.snapshots, |s| !deleting.contains(s.id.as_str()))
        };
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
        report.warnings.extend(part.warnings.iter().map(|w| format!("the vault {target}: {w}")));
        merge(report, part, &target);
        let vault_site = VaultSite { aws: &vault_aws, client: &client, region: vault_region, target: &target };
        vault_drills(&vault_site, &view, &drills, budget, opts, report).await;
    }
}

/// `ebs-snapper drill`'s vault work: the drills `vault.drill` asks for in each vault of this
/// region's configurations, without the retention work.
pub async fn vault_drill_region(
    access: VaultAccess<'_>,
    configs: &ConfigurationSet,
    region: &str,
    budget: &TimeBudget,
    opts: ReportOptions,
    report: &mut RegionReport,
) {
    for target in vault_targets(configs, region) {
        let Some((vault, vault_region)) = vault_target(&target) else { continue };
        let view = ebs_snapper_core::vault_plan::vault_configurations(configs, region, &target);
        if !drills_in(&view) {
            continue;
        }
        let (vault_aws, client, snapshots, _) = match vault_copies(access, vault, vault_region, region).await {
            Ok(found) => found,
            Err(e) => {
                report.failed += 1;
                report.errors.push(format!("the vault {target}: could not list its copies, so none was drilled: {e}"));
                continue;
            }
        };
        let drills = vault_drill_picks(&view, &snapshots, |_| true);
        let vault_site = VaultSite { aws: &vault_aws, client: &client, region: vault_region, target: &target };
        vault_drills(&vault_site, &view, &drills, budget, opts, report).await;
    }
}

/// Whether a vault's view (its configurations, the vault as their one destination) drills.
fn drills_in(view: &ConfigurationSet) -> bool {
    view.valid.iter().any(|n| n.configuration.copies.first().is_some_and(|c| c.drill.is_some()))
}

/// The vault copies to drill now, per configuration of the view whose vault has `drill`.
fn vault_drill_picks(view: &ConfigurationSet, copies: &[Snapshot], keep: impl Fn(&Snapshot) -> bool) -> Vec<DrillPick> {
    view.valid
        .iter()
        .filter_map(|n| Some((n.id.as_str(), n.configuration.copies.first()?.drill?)))
        .flat_map(|(id, drill)| {
            pick(id, DrillKind::Vault, &drill, copies_of(copies, id).filter(|s| keep(s)), Utc::now())
        })
        .collect()
}

/// One vault, reached.
struct VaultSite<'a> {
    aws: &'a Aws,
    client: &'a aws_sdk_ec2::Client,
    region: &'a str,
    target: &'a str,
}

/// Sweeps the vault's left drill volumes and runs `drills` there, when the view drills at all.
async fn vault_drills(
    site: &VaultSite<'_>,
    view: &ConfigurationSet,
    drills: &[DrillPick],
    budget: &TimeBudget,
    opts: ReportOptions,
    report: &mut RegionReport,
) {
    if !drills_in(view) {
        return;
    }
    let mut part = RegionReport::new(report.job, site.region, opts.dry_run);
    crate::drill::sweep(site.client, site.region, budget, opts, &mut part).await;
    let label = Some(format!("the vault {}", site.target));
    let drill_site = crate::drill::DrillSite { aws: site.aws, region: site.region, source_aws: None, label };
    crate::drill::run_drills(&drill_site, drills, budget, opts, &mut part).await;
    report.drilled += part.drilled;
    report.drills_failed += part.drills_failed;
    merge(report, part, site.target);
}

/// Adds a vault's part to `report`: its outcomes, errors (named with the vault) and actions.
fn merge(report: &mut RegionReport, part: RegionReport, target: &str) {
    report.skipped += part.skipped;
    report.failed += part.failed;
    report.deferred += part.deferred;
    report.errors.extend(part.errors.into_iter().map(|e| format!("the vault {target}: {e}")));
    report.actions.extend(part.actions);
}
