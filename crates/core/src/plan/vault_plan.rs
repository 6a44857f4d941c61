//! The vault planner (SPEC §16): for each snapshot of this account tagged `ebs-snapper:vault-to`,
//! what the replication job does toward its copy in the vault: share it with the vault and have
//! the vault copy it, remove the share once the copy completed, or nothing (with the reason).
//! A source whose key cannot be shared (`aws/ebs`) goes through a share copy: a copy in its own
//! region under `vault.share_key`, shared and copied instead, and deleted once the vault's copy
//! completed. The AWS layer gathers the listings (this region's tagged snapshots, those of them
//! shared with each vault, each vault's copies of this account's snapshots) and carries the
//! plan out.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, TimeDelta};
use rustc_hash::FxHashMap;

use crate::config::Lock;
use crate::configuration_set::ConfigurationSet;
use crate::inventory::{Snapshot, SnapshotState};
use crate::report::{Action, ActionReport, Executed, RegionReport, ReportOptions};
use crate::tags::{
    delete_on_value, DELETE_ON, REPLICATION_SNAPSHOT_ID, REPLICATION_SRC, TAG_CONFIG, TAG_VAULT_OF, TAG_VAULT_SHARE_OF,
    TAG_VAULT_TO, TAG_VOLUME,
};

/// AWS allows at most this many copies in progress per destination region and account; every
/// protected account shares the vault's.
pub const MAX_VAULT_IN_FLIGHT: usize = 20;

/// A copy in the vault: its id, its state, and AWS's reason when it ended in error.
type VaultCopyState = (Box<str>, SnapshotState, Option<Box<str>>);

/// What a vault's listing says of one protected account's copies there (those tagged
/// `ebs-snapper:vault-of` = that account), built one snapshot at a time.
#[derive(Debug, Clone, Default)]
pub struct VaultIndex {
    /// Source id -> its copy.
    copies: FxHashMap<Box<str>, VaultCopyState>,
    /// Copies in progress in the vault (of every account: they share the vault's 20).
    pub pending: usize,
}

impl VaultIndex {
    /// Takes in one snapshot of the vault's listing of this account's copies. A copy in error
    /// never hides one that is not.
    pub fn add(&mut self, s: &Snapshot) {
        if s.state == SnapshotState::Pending {
            self.pending += 1;
        }
        let Some(source) = s.tags.get(REPLICATION_SNAPSHOT_ID) else { return };
        let entry = (s.id.as_str().into(), s.state, s.state_message.clone());
        match self.copies.get(source) {
            Some((_, state, _)) if *state != SnapshotState::Error => {}
            _ => {
                self.copies.insert(source.into(), entry);
            }
        }
    }
}

/// Where a snapshot's vault copy goes: `ACCOUNT:REGION`, as `ebs-snapper:vault-to` says.
pub fn vault_target(tag: &str) -> Option<(&str, &str)> {
    let (account, region) = tag.split_once(':')?;
    (crate::ids::is_account_id(account) && crate::ids::is_region_name(region)).then_some((account, region))
}

/// A copy into a vault, complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultCopy {
    pub source_id: String,
    pub source_region: String,
    /// `ACCOUNT:REGION`.
    pub target: String,
    pub description: String,
    pub tags: Vec<(String, String)>,
    /// The vault's key in the vault's region (`KmsKeyId`, with `Encrypted`); `None`: the vault's
    /// default EBS key.
    pub kms_key: Option<String>,
    /// The lock to put on the copy, and until when (its `DeleteOn`).
    pub lock: Option<(Lock, NaiveDate)>,
}

/// A share copy to make (SPEC §16): the source copied in its own region under `vault.share_key`,
/// tagged `ebs-snapper:vault-share-of` (the source), `ebs-snapper:vault-to` (so that it may be
/// shared with the vault) and `ebs-snapper:config`. It carries no `DeleteOn` and no lock: the
/// clean job never sees it, and the replication job deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareCopy {
    pub source_id: String,
    pub region: String,
    pub description: String,
    pub tags: Vec<(String, String)>,
    /// The share key in the source's region.
    pub kms_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultAction<'a> {
    /// Share `copy.source_id` with the vault (`share`: it is not shared yet), then have the vault
    /// copy it. That is the source itself, or its completed share copy. `fallback`: when EC2
    /// refuses to share the source because of its key (`aws/ebs`) and the configuration has a
    /// `share_key` here, the share copy to make instead ([`VaultAction::refused_share`]).
    Copy {
        target: &'a str,
        share: bool,
        copy: Box<VaultCopy>,
        fallback: Option<Box<ShareCopy>>,
    },
    /// The source's key cannot be shared: it is copied in place under `vault.share_key`, and the
    /// vault copies that copy once it completes (a later run).
    CopyUnderShareKey {
        target: &'a str,
        copy: Box<ShareCopy>,
    },
    /// The source's share copy is still being made: the vault copies it once it completes.
    ShareCopyPending {
        target: &'a str,
        copy: &'a str,
    },
    /// The source's share copy ended in error: it is deleted, the run reports it, and the next
    /// run makes it again.
    ErroredShareCopy {
        target: &'a str,
        copy: &'a str,
        message: &'a str,
    },
    /// A share copy no longer needed (the decision's snapshot): the vault's copy of its source
    /// completed, or its source is gone or no longer kept in the vault. It is deleted.
    DropShareCopy {
        target: &'a str,
        source: &'a str,
        why: &'static str,
    },
    /// The vault's copy completed: the share is removed.
    Unshare {
        target: &'a str,
        copy: &'a str,
    },
    /// The vault's copy exists and no share is left (`pending`: it is still being made; the
    /// share stays until it completes).
    InSync {
        target: &'a str,
        copy: &'a str,
        pending: bool,
    },
    /// The vault's copy ended in error (it holds no data, SPEC §10.11): the vault deletes it,
    /// the run reports it, and the next run copies the source again.
    ErroredCopy {
        target: &'a str,
        copy: &'a str,
        message: &'a str,
    },
    /// The vault has [`MAX_VAULT_IN_FLIGHT`] copies in progress: the next run copies it.
    Deferred {
        target: &'a str,
    },
    Skip(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultDecision<'a> {
    pub snapshot_id: &'a str,
    pub action: VaultAction<'a>,
}

impl<'a> VaultAction<'a> {
    /// What to do instead when EC2 refused to share the source because of its key: its share
    /// copy, when the configuration has a `share_key` in this region; `None` otherwise (the
    /// refusal is a failure naming the fix).
    pub fn refused_share(&self) -> Option<VaultAction<'a>> {
        match self {
            VaultAction::Copy { target, fallback: Some(copy), .. } => {
                Some(VaultAction::CopyUnderShareKey { target, copy: copy.clone() })
            }
            _ => None,
        }
    }
}

/// The best of a source's share copies: a completed one, else one being made, else the first;
/// the rest are duplicates.
fn best<'s>(copies: &[&'s Snapshot]) -> Option<&'s Snapshot> {
    let rank = |c: &&&Snapshot| match c.state {
        SnapshotState::Completed => 0,
        SnapshotState::Pending | SnapshotState::Other => 1,
        SnapshotState::Error => 2,
    };
    copies.iter().min_by_key(rank).copied()
}

/// The lock a vault copy should carry (SPEC §16): its configuration's `vault.lock`, until the
/// copy's `DeleteOn`. The replication job locks again a copy of its region whose lock is missing
/// or short, as for disaster-recovery copies.
pub fn vault_copy_lock(configs: &ConfigurationSet, s: &Snapshot) -> Option<(Lock, NaiveDate)> {
    let config = &configs.get(s.tags.get(TAG_CONFIG)?)?.configuration;
    let lock = config.vault.as_ref()?.lock?;
    Some((lock, crate::tags::parse_delete_on(s.tags.get(DELETE_ON)?)?))
}

/// Plans the vault work of this region (`region`, of account `own_account`).
///
/// `sources`: this account's snapshots here tagged `ebs-snapper:vault-to`; `shared`: the ids of
/// those shared with their vault now; `vaults`: by `ACCOUNT:REGION`, the vault's listing of this
/// account's copies, or why it could not be listed.
pub fn plan_vault<'a>(
    region: &str,
    own_account: &str,
    sources: &'a [Snapshot],
    shared: &BTreeSet<String>,
    vaults: &'a BTreeMap<String, Result<VaultIndex, String>>,
    configs: &ConfigurationSet,
    today: NaiveDate,
) -> Vec<VaultDecision<'a>> {
    let mut in_flight: BTreeMap<&str, usize> =
        vaults.iter().filter_map(|(t, v)| Some((t.as_str(), v.as_ref().ok()?.pending))).collect();
    // The share copies, by the source they are copies of; the sources themselves, oldest first.
    let mut share_copies: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
    let mut sorted: Vec<&Snapshot> = Vec::with_capacity(sources.len());
    for s in sources {
        // A disaster-recovery copy is never a vault source: its source is (one made before copies
        // stopped carrying `ebs-snapper:vault-to` still carries it).
        if s.tags.contains_key(REPLICATION_SRC) {
            continue;
        }
        match s.tags.get(TAG_VAULT_SHARE_OF) {
            Some(of) => share_copies.entry(of).or_default().push(s),
            None => sorted.push(s),
        }
    }
    sorted.sort_by(|a, b| a.start_time.cmp(&b.start_time).then_with(|| a.id.cmp(&b.id)));
    // Share copies that stay (still needed, or their fate unknown), and why a source's others go.
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    let mut dropped_why: BTreeMap<&str, &'static str> = BTreeMap::new();
    let mut out = Vec::with_capacity(sorted.len());
    for s in sorted {
        let Some(target) = s.tags.get(TAG_VAULT_TO) else { continue };
        let mine: &[&Snapshot] = share_copies.get(s.id.as_str()).map(Vec::as_slice).unwrap_or_default();
        let keep_mine = |kept: &mut BTreeSet<&'a str>| kept.extend(mine.iter().map(|c| c.id.as_str()));
        let decide = |action| VaultDecision { snapshot_id: &s.id, action };
        let skip = |why: String| decide(VaultAction::Skip(why));
        if vault_target(target).is_none() {
            keep_mine(&mut kept);
            out.push(skip(format!("{TAG_VAULT_TO} {target:?} is not ACCOUNT:REGION; nothing is copied")));
            continue;
        }
        let index = match vaults.get(target) {
            Some(Ok(index)) => index,
            Some(Err(e)) => {
                keep_mine(&mut kept);
                out.push(skip(format!("the vault {target} could not be listed ({e})")));
                continue;
            }
            None => {
                keep_mine(&mut kept);
                out.push(skip(format!("the vault {target} was not listed")));
                continue;
            }
        };
        if let Some((copy, state, message)) = index.copies.get(s.id.as_str()) {
            let action = match state {
                SnapshotState::Completed if shared.contains(&s.id) => VaultAction::Unshare { target, copy },
                SnapshotState::Completed => VaultAction::InSync { target, copy, pending: false },
                SnapshotState::Error => VaultAction::ErroredCopy {
                    target,
                    copy,
                    message: message.as_deref().unwrap_or("AWS gave no reason"),
                },
                _ => VaultAction::InSync { target, copy, pending: true },
            };
            if *state == SnapshotState::Completed {
                dropped_why.insert(&s.id, "the vault's copy of its source completed");
            } else {
                keep_mine(&mut kept);
            }
            out.push(decide(action));
            continue;
        }
        let share_copy = best(mine);
        if share_copy.is_none() {
            if s.state != SnapshotState::Completed {
                out.push(skip("source is not completed; only completed snapshots go to the vault".into()));
                continue;
            }
            if s.archived {
                out.push(skip("source is in the archive tier: it cannot be copied until restored".into()));
                continue;
            }
        }
        let Some((config_id, vault)) = s
            .tags
            .get(TAG_CONFIG)
            .and_then(|id| configs.get(id))
            .and_then(|n| Some((n.id.as_str(), n.configuration.vault.as_ref()?)))
            .filter(|(_, v)| v.vault_to(region) == target)
        else {
            dropped_why.insert(&s.id, "its source is no longer kept in the vault");
            out.push(skip(format!("its configuration no longer keeps it in the vault {target}; not copied")));
            continue;
        };
        let retention = TimeDelta::from_std(vault.retention).unwrap_or(TimeDelta::MAX);
        let delete_on = s.start_time.checked_add_signed(retention).map(|t| t.date_naive()).unwrap_or(NaiveDate::MAX);
        if delete_on <= today {
            dropped_why.insert(&s.id, "its source's vault copy would be expired already");
            out.push(skip(format!("its vault copy would be expired already ({})", delete_on_value(delete_on))));
            continue;
        }
        if let Some(c) = share_copy {
            kept.insert(&c.id);
            dropped_why.insert(&s.id, "a second share copy of the same source");
            match c.state {
                SnapshotState::Pending | SnapshotState::Other => {
                    out.push(decide(VaultAction::ShareCopyPending { target, copy: &c.id }));
                    continue;
                }
                SnapshotState::Error => {
                    let message = c.state_message.as_deref().unwrap_or("AWS gave no reason");
                    out.push(decide(VaultAction::ErroredShareCopy { target, copy: &c.id, message }));
                    continue;
                }
                SnapshotState::Completed => {}
            }
        }
        let flying = in_flight.entry(target).or_insert(0);
        if *flying >= MAX_VAULT_IN_FLIGHT {
            out.push(decide(VaultAction::Deferred { target }));
            continue;
        }
        *flying += 1;
        let vault_region = vault.region.as_deref().unwrap_or(region);
        let mut tags = vec![
            (TAG_VAULT_OF.to_string(), own_account.to_string()),
            (REPLICATION_SRC.to_string(), region.to_string()),
            (REPLICATION_SNAPSHOT_ID.to_string(), s.id.clone()),
            (DELETE_ON.to_string(), delete_on_value(delete_on)),
            (TAG_CONFIG.to_string(), config_id.to_string()),
        ];
        if let Some(volume) = s.volume_id.as_deref().or(s.tags.get(TAG_VOLUME)) {
            tags.push((TAG_VOLUME.to_string(), volume.to_string()));
        }
        // The vault copies the source itself, or its completed share copy.
        let from = share_copy.map_or(&s.id, |c| &c.id);
        let copy = VaultCopy {
            source_id: from.clone(),
            source_region: region.to_string(),
            target: target.to_string(),
            description: s.description.clone(),
            tags,
            kms_key: vault.kms_key.as_ref().and_then(|k| k.in_region(vault_region)),
            lock: vault.lock.map(|l| (l, delete_on)),
        };
        let fallback = match (share_copy, vault.share_key.as_ref().and_then(|k| k.in_region(region))) {
            (None, Some(kms_key)) => Some(Box::new(ShareCopy {
                source_id: s.id.clone(),
                region: region.to_string(),
                description: s.description.clone(),
                tags: vec![
                    (TAG_VAULT_SHARE_OF.to_string(), s.id.clone()),
                    (TAG_VAULT_TO.to_string(), target.to_string()),
                    (TAG_CONFIG.to_string(), config_id.to_string()),
                ],
                kms_key,
            })),
            _ => None,
        };
        out.push(decide(VaultAction::Copy { target, share: !shared.contains(from), copy: Box::new(copy), fallback }));
    }
    // Every other share copy goes once it is no longer being made. One whose source is gone stays
    // while the vault cannot be listed or its copy of that source is still being made.
    for (of, copies) in &share_copies {
        for c in copies.iter().filter(|c| !kept.contains(c.id.as_str())) {
            let target = c.tags.get(TAG_VAULT_TO).map_or("", |t| t);
            let decide = |action| VaultDecision { snapshot_id: &c.id, action };
            if matches!(c.state, SnapshotState::Pending | SnapshotState::Other) {
                out.push(decide(VaultAction::Skip(format!(
                    "a share copy of {of} no longer needed, still being made: deleted once it completes"
                ))));
                continue;
            }
            let why = match dropped_why.get(of) {
                Some(why) => why,
                None => match vaults.get(target) {
                    Some(Ok(index)) => match index.copies.get(*of) {
                        Some((_, SnapshotState::Completed, _)) => "the vault's copy of its source completed",
                        Some((copy, SnapshotState::Pending | SnapshotState::Other, _)) => {
                            out.push(decide(VaultAction::Skip(format!(
                                "share copy of {of}, which is gone: kept until the vault's copy {copy} completes"
                            ))));
                            continue;
                        }
                        _ => "its source is gone",
                    },
                    _ => {
                        out.push(decide(VaultAction::Skip(format!(
                            "share copy of {of}, which is gone: kept, the vault {target} was not listed"
                        ))));
                        continue;
                    }
                },
            };
            out.push(decide(VaultAction::DropShareCopy { target, source: of, why }));
        }
    }
    out
}

/// The configurations as the clean job sees the vault `target` (`ACCOUNT:REGION`) of copies made
/// from `source_region`: those whose vault it is, each keeping the vault's copies of a source
/// volume like disaster-recovery copies in the vault's region (SPEC §12), by the vault's
/// retention, minimum (else the configuration's largest) and lock. The retention planner then
/// plans the vault's clean-up as it plans a destination's.
pub fn vault_configurations(configs: &ConfigurationSet, source_region: &str, target: &str) -> ConfigurationSet {
    let valid = configs
        .valid
        .iter()
        .filter_map(|named| {
            let vault = named.configuration.vault.as_ref().filter(|v| v.vault_to(source_region) == target)?;
            let mut configuration = named.configuration.clone();
            configuration.copies = vec![crate::config::CopyDestination {
                region: vault.region.clone().unwrap_or_else(|| source_region.to_string()),
                retention: Some(vault.retention),
                minimum: vault.minimum,
                kms_key: None,
                lock: vault.lock,
                drill: vault.drill,
            }];
            Some(crate::configuration_set::NamedConfiguration { id: named.id.clone(), configuration })
        })
        .collect();
    ConfigurationSet { valid, invalid: Vec::new(), warnings: Vec::new() }
}

impl VaultDecision<'_> {
    /// The reason, for people.
    pub fn reason(&self) -> String {
        match &self.action {
            VaultAction::Copy { target, share, copy, .. } if copy.source_id != self.snapshot_id => format!(
                "its share copy {} {}, copied to the vault {target}",
                copy.source_id,
                if *share { "shared with the vault" } else { "(shared already)" }
            ),
            VaultAction::Copy { target, share: true, .. } => format!("shared with the vault {target}, copied there"),
            VaultAction::Copy { target, share: false, .. } => format!("copied to the vault {target} (shared already)"),
            VaultAction::CopyUnderShareKey { target, .. } => format!(
                "its key cannot be shared (aws/ebs): copied here under vault.share_key, which the vault {target} \
                 copies once the copy completes"
            ),
            VaultAction::ShareCopyPending { target, copy } => {
                format!("its share copy {copy} is being made; the vault {target} copies it once it completes")
            }
            VaultAction::ErroredShareCopy { copy, message, .. } => format!(
                "its share copy {copy} ended in error ({message}); deleted, made again by the next run"
            ),
            VaultAction::DropShareCopy { source, why, .. } => format!("share copy of {source}: deleted ({why})"),
            VaultAction::Unshare { target, copy } => format!("the vault {target} has completed its copy {copy}: unshared"),
            VaultAction::InSync { target, copy, pending: false } => format!("in the vault {target} as {copy}"),
            VaultAction::InSync { target, copy, pending: true } => {
                format!("being copied to the vault {target} as {copy}; shared until it completes")
            }
            VaultAction::ErroredCopy { target, copy, message } => format!(
                "its copy {copy} in the vault {target} ended in error ({message}); deleted there, copied again by the next run"
            ),
            VaultAction::Deferred { target } => {
                format!("the vault {target} has {MAX_VAULT_IN_FLIGHT} copies in progress; the next run copies it")
            }
            VaultAction::Skip(why) => why.clone(),
        }
    }
}

/// Adds the vault decisions to a replication report. `executed`: for each decision in order,
/// what became of its mutation (`None`: none, or a dry run). A copy counts as copied; a copy
/// in error is a failure whatever became of its deletion; the vault's limit is a skip, not a
/// deferral (a continuation would meet the same limit).
pub fn report_vault(
    report: &mut RegionReport,
    opts: ReportOptions,
    decisions: &[VaultDecision<'_>],
    executed: Vec<Option<Executed>>,
) {
    let mut executed = executed.into_iter();
    for d in decisions {
        let done = executed.next().flatten();
        let listed = |action: Action| ActionReport::new(action, d.snapshot_id, d.reason());
        match &d.action {
            VaultAction::Copy { .. } => {
                let planned = if opts.dry_run { None } else { Some(done.unwrap_or(Executed::Deferred)) };
                if report.mutation(opts, Action::Copy, planned, listed) {
                    report.copied += 1;
                }
            }
            VaultAction::Unshare { .. } => {
                let planned = if opts.dry_run { None } else { Some(done.unwrap_or(Executed::Deferred)) };
                report.mutation(opts, Action::Unshare, planned, listed);
            }
            VaultAction::CopyUnderShareKey { .. } => {
                let planned = if opts.dry_run { None } else { Some(done.unwrap_or(Executed::Deferred)) };
                report.mutation(opts, Action::Copy, planned, listed);
            }
            VaultAction::DropShareCopy { .. } => {
                let planned = if opts.dry_run { None } else { Some(done.unwrap_or(Executed::Deferred)) };
                if report.mutation(opts, Action::Delete, planned, listed) {
                    report.deleted += 1;
                }
            }
            VaultAction::ErroredShareCopy { .. } => {
                let error = match done {
                    Some(Executed::Failed(e)) => format!("{}; deleting it failed: {e}", d.reason()),
                    _ => d.reason(),
                };
                report.mutation(opts, Action::Copy, Some(Executed::Failed(error)), listed);
            }
            VaultAction::ErroredCopy { .. } => {
                let error = match done {
                    Some(Executed::Failed(e)) => format!("{}; deleting it failed: {e}", d.reason()),
                    _ => d.reason(),
                };
                report.mutation(opts, Action::Copy, Some(Executed::Failed(error)), listed);
            }
            VaultAction::InSync { .. } => {
                report.in_sync += 1;
                report.note(opts, || listed(Action::InSync));
            }
            VaultAction::Deferred { .. } | VaultAction::ShareCopyPending { .. } | VaultAction::Skip(_) => {
                report.skipped += 1;
                report.note(opts, || listed(Action::Skip));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration_set::StoredConfiguration;
    use crate::testing::snapshot;
    use chrono::{TimeZone, Utc};

    const OWN: &str = "111122223333";
    const VAULT: &str = "444455556666";
    const R: &str = "us-west-2";

    fn configs() -> ConfigurationSet {
        let text = format!(
            r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "7 days", "minimum": 2, "frequency": "1 day"}},
                "vault": {{"account": "{VAULT}", "region": "us-east-1", "retention": "30 days",
                          "kms_key": "arn:aws:kms:us-east-1:{VAULT}:key/k1", "lock": {{"mode": "compliance"}}}}}}"#
        );
        ConfigurationSet::from_stored(&[StoredConfiguration { id: "c".into(), text }])
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
    }

    fn source(id: &str, days_ago: i64) -> Snapshot {
        snapshot(id)
            .volume("vol-1")
            .at(Utc.with_ymd_and_hms(2026, 3, 10, 1, 0, 0).unwrap() - TimeDelta::days(days_ago))
            .tags(&[("ebs-snapper:config", "c"), ("ebs-snapper:vault-to", "444455556666:us-east-1")])
            .description(&format!("desc of {id}"))
            .build()
    }

    fn copy(id: &str, of: &str, state: SnapshotState) -> Snapshot {
        snapshot(id).copy().state(state).tags(&[("replication_snapshot_id", of), ("ebs-snapper:vault-of", OWN)]).build()
    }

    fn vaults(copies: &[Snapshot]) -> BTreeMap<String, Result<VaultIndex, String>> {
        let mut index = VaultIndex::default();
        copies.iter().for_each(|c| index.add(c));
        BTreeMap::from([(format!("{VAULT}:us-east-1"), Ok(index))])
    }

    fn actions<'a>(plan: &'a [VaultDecision<'a>]) -> Vec<(&'a str, String)> {
        plan.iter()
            .map(|d| {
                let what = match &d.action {
                    VaultAction::Copy { share, copy, fallback, .. } => format!(
                        "copy share={share}{}{}",
                        if copy.source_id == d.snapshot_id {
                            String::new()
                        } else {
                            format!(" from {}", copy.source_id)
                        },
                        if fallback.is_some() { " else share copy" } else { "" }
                    ),
                    VaultAction::CopyUnderShareKey { .. } => "copy under the share key".into(),
                    VaultAction::ShareCopyPending { copy, .. } => format!("share copy {copy} pending"),
                    VaultAction::ErroredShareCopy { copy, message, .. } => {
                        format!("errored share copy {copy}: {message}")
                    }
                    VaultAction::DropShareCopy { source, why, .. } => format!("drop share copy of {source}: {why}"),
                    VaultAction::Unshare { copy, .. } => format!("unshare {copy}"),
                    VaultAction::InSync { copy, pending, .. } => format!("in sync {copy} pending={pending}"),
                    VaultAction::ErroredCopy { copy, message, .. } => format!("errored {copy}: {message}"),
                    VaultAction::Deferred { .. } => "deferred".into(),
                    VaultAction::Skip(why) => format!("skip: {why}"),
                };
                (d.snapshot_id, what)
            })
            .collect()
    }

    #[test]
    fn share_and_copy_then_unshare_once_the_copy_completed() {
        let c = configs();
        let sources = vec![source("s1", 3), source("s2", 2), source("s3", 1), source("s4", 1)];
        let mut errored = copy("v4", "s4", SnapshotState::Error);
        errored.state_message = Some("Given key ID is not accessible".into());
        let listed =
            vaults(&[copy("v1", "s1", SnapshotState::Completed), copy("v2", "s2", SnapshotState::Pending), errored]);
        let shared: BTreeSet<String> = ["s1", "s2", "s4"].iter().map(|s| s.to_string()).collect();
        let plan = plan_vault(R, OWN, &sources, &shared, &listed, &c, today());
        assert_eq!(
            actions(&plan),
            [
                ("s1", "unshare v1".to_string()),
                ("s2", "in sync v2 pending=true".to_string()),
                ("s3", "copy share=true".to_string()),
                ("s4", "errored v4: Given key ID is not accessible".to_string()),
            ]
        );
        let VaultAction::Copy { copy, .. } = &plan[2].action else { unreachable!() };
        assert_eq!(copy.target, "444455556666:us-east-1");
        assert_eq!(copy.kms_key.as_deref(), Some("arn:aws:kms:us-east-1:444455556666:key/k1"));
        let tag = |k: &str| copy.tags.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(tag("ebs-snapper:vault-of"), Some(OWN));
        assert_eq!(tag("replication_snapshot_id"), Some("s3"));
        assert_eq!(tag("replication_src_region"), Some(R));
        assert_eq!(tag("ebs-snapper:volume-id"), Some("vol-1"));
        assert_eq!(tag("DeleteOn"), Some("2026-04-08"), "the source's start + the vault's 30 days");
        assert_eq!(
            copy.lock.map(|(l, d)| (l.mode, d)),
            Some((crate::config::LockMode::Compliance, NaiveDate::from_ymd_opt(2026, 4, 8).unwrap()))
        );
        // Once unshared, the completed copy is in sync; a source shared already is not shared again.
        let plan = plan_vault(R, OWN, &sources[..1], &BTreeSet::new(), &listed, &c, today());
        assert_eq!(actions(&plan), [("s1", "in sync v1 pending=false".to_string())]);
        let shared: BTreeSet<String> = ["s3".to_string()].into();
        let plan = plan_vault(R, OWN, &sources[2..3], &shared, &listed, &c, today());
        assert_eq!(actions(&plan), [("s3", "copy share=false".to_string())]);
    }

    #[test]
    fn the_vaults_copies_are_cleaned_like_a_destinations_under_the_vaults_minimum_and_lock() {
        use crate::inventory::{Inventory, LockState, SnapshotLock};
        let text = format!(
            r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "7 days", "minimum": 5, "frequency": "1 day"}},
                "vault": {{"account": "{VAULT}", "region": "us-east-1", "retention": "30 days", "minimum": 2}}}}"#
        );
        let c = ConfigurationSet::from_stored(&[StoredConfiguration { id: "c".into(), text }]);
        let view = vault_configurations(&c, R, &format!("{VAULT}:us-east-1"));
        assert_eq!(view.valid.len(), 1);
        assert!(vault_configurations(&c, R, "999988887777:us-east-1").valid.is_empty());
        // Five expired copies of one source volume: the vault's minimum of 2 keeps the newest two
        // (not the configuration's 5); a locked one is kept by its lock.
        let copies: Vec<Snapshot> = (0..5)
            .map(|n| {
                snapshot(&format!("v{n}"))
                    .copy()
                    .at(Utc.with_ymd_and_hms(2026, 1, 1 + n, 0, 0, 0).unwrap())
                    .tags(&[
                        ("replication_src_region", R),
                        ("replication_snapshot_id", "snap-x"),
                        ("ebs-snapper:volume-id", "vol-1"),
                        ("ebs-snapper:config", "c"),
                        ("ebs-snapper:vault-of", OWN),
                        ("DeleteOn", "2026-02-01"),
                    ])
                    .build()
            })
            .collect();
        let mut inv = Inventory { region: "us-east-1".into(), snapshots: copies, ..Default::default() };
        let until = crate::lock_plan::start_of(today() + TimeDelta::days(3));
        inv.locks.insert("v1".into(), SnapshotLock { state: LockState::Compliance, expires: Some(until) });
        let plan = crate::retention_plan::plan_retention(&view, &inv, &BTreeSet::new(), today());
        assert_eq!(plan.delete_ids(), ["v0", "v2"]);
    }

    #[test]
    fn what_is_not_copied_says_why_and_the_vaults_twenty_copies_in_progress_defer_the_rest() {
        let c = configs();
        let mut pending = source("p", 1);
        pending.state = SnapshotState::Pending;
        let mut archived = source("a", 1);
        archived.archived = true;
        let old = source("old", 40);
        let mut other = source("o", 1);
        other.tags.insert("ebs-snapper:vault-to".into(), "999988887777:us-east-1".into());
        let sources = vec![pending, archived, old, other];
        let mut listed = vaults(&[]);
        listed.insert("999988887777:us-east-1".into(), Ok(VaultIndex::default()));
        let plan = plan_vault(R, OWN, &sources, &BTreeSet::new(), &listed, &c, today());
        let why: BTreeMap<&str, String> = actions(&plan).into_iter().collect();
        assert!(why["p"].contains("not completed"), "{}", why["p"]);
        assert!(why["a"].contains("archive tier"), "{}", why["a"]);
        assert!(why["old"].contains("would be expired already (2026-02-28)"), "{}", why["old"]);
        assert!(why["o"].contains("no longer keeps it in the vault 999988887777:us-east-1"), "{}", why["o"]);

        // 18 in progress in the vault already: two more start, the third waits.
        let mut index = VaultIndex::default();
        for n in 0..18 {
            index.add(&copy(&format!("x{n}"), &format!("someone-{n}"), SnapshotState::Pending));
        }
        let listed = BTreeMap::from([(format!("{VAULT}:us-east-1"), Ok(index))]);
        let sources: Vec<Snapshot> = (0..3).map(|n| source(&format!("s{n}"), 1)).collect();
        let plan = plan_vault(R, OWN, &sources, &BTreeSet::new(), &listed, &c, today());
        let kinds: Vec<String> = actions(&plan).into_iter().map(|(_, a)| a).collect();
        assert_eq!(kinds, ["copy share=true", "copy share=true", "deferred"]);
        // A vault that could not be listed: nothing is shared or copied toward it.
        let failed = BTreeMap::from([(format!("{VAULT}:us-east-1"), Err("AccessDenied".to_string()))]);
        let plan = plan_vault(R, OWN, &sources[..1], &BTreeSet::new(), &failed, &c, today());
        assert!(actions(&plan)[0].1.contains("could not be listed (AccessDenied)"));
    }

    fn share_copy(id: &str, of: &str, state: SnapshotState) -> Snapshot {
        snapshot(id)
            .copy()
            .state(state)
            .tags(&[
                ("ebs-snapper:vault-share-of", of),
                ("ebs-snapper:vault-to", "444455556666:us-east-1"),
                ("ebs-snapper:config", "c"),
            ])
            .build()
    }

    #[test]
    fn a_source_whose_key_cannot_be_shared_goes_through_a_share_copy_deleted_once_the_vault_has_its_copy() {
        const SHARE_KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        let text = format!(
            r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "7 days", "minimum": 2, "frequency": "1 day"}},
                "vault": {{"account": "{VAULT}", "region": "us-east-1", "retention": "30 days",
                          "share_key": "{SHARE_KEY}"}}}}"#
        );
        let c = ConfigurationSet::from_stored(&[StoredConfiguration { id: "c".into(), text }]);
        let s1 = source("s1", 2);
        let none = BTreeSet::new();
        let empty = vaults(&[]);
        let shared = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();

        // No share copy yet: the source is shared, and should EC2 refuse (aws/ebs), its share
        // copy is made instead, under the share key, tagged so it can be shared and found.
        let sources = vec![s1.clone()];
        let plan = plan_vault(R, OWN, &sources, &none, &empty, &c, today());
        assert_eq!(actions(&plan), [("s1", "copy share=true else share copy".to_string())]);
        let Some(VaultAction::CopyUnderShareKey { copy: share, .. }) = plan[0].action.refused_share() else {
            panic!("no fallback: {:?}", plan[0].action)
        };
        assert_eq!((share.source_id.as_str(), share.region.as_str(), share.kms_key.as_str()), ("s1", R, SHARE_KEY));
        let tag = |k: &str| share.tags.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(tag("ebs-snapper:vault-share-of"), Some("s1"));
        assert_eq!(tag("ebs-snapper:vault-to"), Some("444455556666:us-east-1"));
        assert_eq!(tag("DeleteOn"), None, "the clean job never sees a share copy");
        assert!(plan[0].reason().starts_with("shared with the vault"), "{}", plan[0].reason());

        // Being made: wait. In error: deleted and reported (made again next run).
        let pending = vec![s1.clone(), share_copy("c1", "s1", SnapshotState::Pending)];
        let plan = plan_vault(R, OWN, &pending, &none, &empty, &c, today());
        assert_eq!(actions(&plan), [("s1", "share copy c1 pending".to_string())]);
        let mut errored = share_copy("c1", "s1", SnapshotState::Error);
        errored.state_message = Some("Internal error".into());
        let errored = [s1.clone(), errored];
        let plan = plan_vault(R, OWN, &errored, &none, &empty, &c, today());
        assert_eq!(actions(&plan), [("s1", "errored share copy c1: Internal error".to_string())]);

        // Completed: the share copy is shared and copied, under the source's name in the vault;
        // a duplicate share copy goes.
        let done = vec![
            s1.clone(),
            share_copy("c1", "s1", SnapshotState::Completed),
            share_copy("c0", "s1", SnapshotState::Error),
        ];
        let plan = plan_vault(R, OWN, &done, &none, &empty, &c, today());
        assert_eq!(
            actions(&plan),
            [
                ("s1", "copy share=true from c1".to_string()),
                ("c0", "drop share copy of s1: a second share copy of the same source".to_string())
            ]
        );
        let VaultAction::Copy { copy: made, .. } = &plan[0].action else { unreachable!() };
        assert_eq!(made.source_id, "c1");
        let tag = |k: &str| made.tags.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(tag("replication_snapshot_id"), Some("s1"), "the vault's copy is the source's");
        assert_eq!(tag("ebs-snapper:volume-id"), Some("vol-1"));
        assert!(plan[0].action.refused_share().is_none(), "a share copy's refusal is a failure");
        let plan = plan_vault(R, OWN, &done[..2], &shared(&["c1"]), &empty, &c, today());
        assert_eq!(actions(&plan), [("s1", "copy share=false from c1".to_string())]);

        // The vault's copy in progress keeps the share copy; completed, it goes (never unshared:
        // it is deleted).
        let in_progress = vaults(&[copy("v1", "s1", SnapshotState::Pending)]);
        let plan = plan_vault(R, OWN, &done[..2], &shared(&["c1"]), &in_progress, &c, today());
        assert_eq!(actions(&plan), [("s1", "in sync v1 pending=true".to_string())]);
        let completed = vaults(&[copy("v1", "s1", SnapshotState::Completed)]);
        let plan = plan_vault(R, OWN, &done[..2], &shared(&["c1"]), &completed, &c, today());
        assert_eq!(
            actions(&plan),
            [
                ("s1", "in sync v1 pending=false".to_string()),
                ("c1", "drop share copy of s1: the vault's copy of its source completed".to_string())
            ]
        );

        // A share copy whose source is gone goes once it is no longer being made, unless the
        // vault's copy of that source is still being made, or the vault could not be listed.
        let orphans = vec![
            share_copy("c2", "gone", SnapshotState::Completed),
            share_copy("c3", "gone-too", SnapshotState::Pending),
            share_copy("c4", "copying", SnapshotState::Completed),
            share_copy("c5", "copied", SnapshotState::Completed),
        ];
        let listed =
            vaults(&[copy("v4", "copying", SnapshotState::Pending), copy("v5", "copied", SnapshotState::Completed)]);
        let plan = plan_vault(R, OWN, &orphans, &none, &listed, &c, today());
        let kinds: Vec<String> = actions(&plan).into_iter().map(|(id, a)| format!("{id}: {a}")).collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(kinds.contains(&"c5: drop share copy of copied: the vault's copy of its source completed".to_string()));
        assert!(kinds.iter().any(|k| k.starts_with("c4: skip: share copy of copying, which is gone: kept until")));
        assert!(kinds.contains(&"c2: drop share copy of gone: its source is gone".to_string()), "{kinds:?}");
        assert!(
            kinds
                .iter()
                .any(|k| k.starts_with("c3: skip: a share copy of gone-too no longer needed, still being made")),
            "{kinds:?}"
        );
        let failed = BTreeMap::from([(format!("{VAULT}:us-east-1"), Err("AccessDenied".to_string()))]);
        let plan = plan_vault(R, OWN, &done[..2], &none, &failed, &c, today());
        assert_eq!(actions(&plan).len(), 1, "only the source's skip: {:?}", actions(&plan));
        let plan = plan_vault(R, OWN, &orphans[..1], &none, &failed, &c, today());
        assert!(actions(&plan)[0].1.contains("kept, the vault"), "{:?}", actions(&plan));

        // Of two share copies of one source, the completed one is used, whatever the order.
        let two = vec![
            s1.clone(),
            share_copy("c8", "s1", SnapshotState::Pending),
            share_copy("c9", "s1", SnapshotState::Completed),
        ];
        let plan = plan_vault(R, OWN, &two, &none, &empty, &c, today());
        assert_eq!(actions(&plan)[0], ("s1", "copy share=true from c9".to_string()));
        assert!(actions(&plan).iter().all(|(id, _)| *id != "c9"), "the one used is not dropped: {:?}", actions(&plan));

        // Without a share key there is no fallback: the refusal is a failure naming the fix.
        // (A key for some regions only is refused by `configure`: every region the configuration
        // runs in needs one.)
        let plan = plan_vault(R, OWN, &sources, &none, &empty, &configs(), today());
        assert!(plan[0].action.refused_share().is_none());

        // A lost answer is looked up by the share copy's own tag, not as a copy of the source.
        let request = crate::replication_plan::CopyRequest {
            source_id: share.source_id.clone(),
            source_region: share.region.clone(),
            destination_region: share.region.clone(),
            description: share.description.clone(),
            tags: share.tags.clone(),
            kms_key: Some(share.kms_key.clone()),
        };
        assert_eq!(request.identity(), ("ebs-snapper:vault-share-of", "s1"));
    }

    #[test]
    fn a_disaster_recovery_copy_is_never_a_vault_source_and_no_longer_carries_the_vault_tag() {
        // A DR copy made in the vault's region, as copies were made before: it carried the
        // source's `ebs-snapper:vault-to`, and the vault would have had a second copy of it.
        let mut dr = source("dr1", 1);
        dr.tags.insert("replication_src_region".into(), "eu-west-1".into());
        dr.tags.insert("replication_snapshot_id".into(), "s-eu".into());
        let (sources, listed) = ([dr], vaults(&[]));
        let plan = plan_vault(R, OWN, &sources, &BTreeSet::new(), &listed, &configs(), today());
        assert!(plan.is_empty(), "{:?}", actions(&plan));

        let s = source("s1", 1);
        let dr = crate::replication_plan::DrCopy {
            config_id: "c".into(),
            delete_on: today() + TimeDelta::days(30),
            kms_key: None,
        };
        for request in [
            crate::replication_plan::dr_copy_request(R, "eu-west-1", &s, &dr),
            crate::replication_plan::copy_request(R, "eu-west-1", &s),
        ] {
            assert!(request.tags.iter().all(|(k, _)| k != TAG_VAULT_TO), "{:?}", request.tags);
            assert_eq!(request.identity(), (REPLICATION_SNAPSHOT_ID, "s1"));
        }
    }
}
