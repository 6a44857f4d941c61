//! What a job did in one region: the summary the CLI prints and the Lambda workers return.
//!
//! Each planner turns its plan, plus what became of the mutations it asked for, into a
//! [`RegionReport`] (`SnapshotPlan::report` and the others): the job only gathers, plans,
//! executes and hands the outcomes over, in the plan's order.

// What a run reports: its summary here, the metrics it emits, and the status report.
pub mod drill_result;
pub mod metrics;
pub mod status;

use serde::Serialize;

use crate::job::Job;

/// What an action is. The names are those of the JSON output and the dry-run listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Snapshot a volume (snapshot job).
    Create,
    NotDue,
    Ignored,
    /// A volume that could not be snapshotted for a known reason (snapshot job).
    Skipped,
    /// Delete a snapshot (clean job) or a replica (replication job).
    Delete,
    /// Move a snapshot to the archive storage tier (clean job).
    Archive,
    Keep,
    /// Copy a snapshot to another region (replication job).
    Copy,
    InSync,
    /// A snapshot the replication job leaves alone, with the reason.
    Skip,
    /// A configuration whose instances could not be listed.
    Match,
    /// Lock a snapshot, or lock it longer (SPEC §16).
    Lock,
    /// Remove a source's share with the vault once the vault's copy completed (SPEC §16).
    Unshare,
    /// Restore a snapshot to a volume, read back a sample of its blocks, delete the volume
    /// (clean job, SPEC §17).
    Drill,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::NotDue => "not_due",
            Action::Ignored => "ignored",
            Action::Skipped => "skipped",
            Action::Delete => "delete",
            Action::Archive => "archive",
            Action::Keep => "keep",
            Action::Copy => "copy",
            Action::InSync => "in_sync",
            Action::Skip => "skip",
            Action::Match => "match",
            Action::Lock => "lock",
            Action::Unshare => "unshare",
            Action::Drill => "drill",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not a mutation: nothing to do.
    None,
    /// A mutation not (yet) executed: a dry run.
    Planned,
    Done,
    Skipped,
    Failed,
    /// Left for a continuation: the time ran out before it started.
    Deferred,
}

/// What the executor made of one mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// Done; the id of the snapshot created or copied, when there is one.
    Done(Option<String>),
    /// Not done for a known, harmless reason.
    Skipped(String),
    Failed(String),
    /// Not started: the time budget ran out.
    Deferred,
}

/// One action of a job, planned or done, with its reason and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionReport {
    pub action: Action,
    /// The volume or snapshot acted on.
    pub resource: String,
    /// Context: instance, device, configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_id: Option<String>,
    pub reason: String,
    pub outcome: Outcome,
    /// The snapshot created or copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ActionReport {
    pub fn new(action: Action, resource: &str, reason: String) -> ActionReport {
        ActionReport {
            action,
            resource: resource.to_string(),
            instance_id: None,
            device: None,
            config_id: None,
            reason,
            outcome: Outcome::None,
            result_id: None,
            error: None,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How much a report keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    pub dry_run: bool,
    /// Record every decision in the report (the CLI prints them), or only the mutations and
    /// count the rest (a Lambda worker returns counts; 100,000 kept snapshots would cost tens of
    /// megabytes of report).
    pub every_action: bool,
}

/// A volume's protection, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The newest snapshot of the volume is in state `error`.
    Error,
    /// No completed snapshot (of the tier).
    Never,
    /// A due time passed more than an hour and one job interval ago without a new snapshot.
    Overdue,
    /// Fewer completed snapshots than the minimum, although the volume is older than minimum ×
    /// frequency.
    BelowMinimum,
    Ok,
}

impl Verdict {
    pub const ALL: [Verdict; 5] =
        [Verdict::Ok, Verdict::Never, Verdict::Overdue, Verdict::BelowMinimum, Verdict::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Error => "error",
            Verdict::Never => "never",
            Verdict::Overdue => "overdue",
            Verdict::BelowMinimum => "below-minimum",
            Verdict::Ok => "ok",
        }
    }
}

/// The selected volumes of a snapshot run by their protection when the run began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Protection {
    pub ok: usize,
    pub never: usize,
    pub overdue: usize,
}

/// The summary of one job in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionReport {
    pub job: Job,
    pub region: String,
    pub dry_run: bool,
    /// Snapshots created (snapshot job).
    pub created: usize,
    /// Snapshots deleted (clean and replication jobs).
    pub deleted: usize,
    /// Snapshots copied (replication job).
    pub copied: usize,
    /// Snapshots moved to the archive storage tier (clean job).
    pub archived: usize,
    /// Snapshots locked, or locked longer (SPEC §16); left out of the JSON when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub locked: usize,
    /// Restore drills run (clean job, SPEC §17), passed or failed; left out when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub drilled: usize,
    /// Of those, the drills that failed (each is also a failure of the run).
    #[serde(skip_serializing_if = "is_zero")]
    pub drills_failed: usize,
    /// Volumes not due (snapshot job).
    pub not_due: usize,
    /// Snapshots kept (clean job): not expired, or held by the minimum, ignored or unparseable.
    pub kept: usize,
    /// Snapshots already replicated, and replicas whose source still exists (replication job).
    pub in_sync: usize,
    /// Volumes or snapshots ignored by configuration.
    pub ignored: usize,
    /// Actions skipped for a known, harmless reason (rate limits, in use...).
    pub skipped: usize,
    /// Actions that failed; the run reports an error when this is not zero.
    pub failed: usize,
    /// Mutations left for a continuation because time ran out.
    pub deferred: usize,
    /// Whether a continuation was started for the deferred work.
    pub continued: bool,
    /// Snapshot job: the selected volumes by protection when the run began.
    pub volumes: Protection,
    pub actions: Vec<ActionReport>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl RegionReport {
    pub fn new(job: Job, region: &str, dry_run: bool) -> RegionReport {
        RegionReport {
            job,
            region: region.to_string(),
            dry_run,
            created: 0,
            deleted: 0,
            copied: 0,
            archived: 0,
            locked: 0,
            drilled: 0,
            drills_failed: 0,
            not_due: 0,
            kept: 0,
            in_sync: 0,
            ignored: 0,
            skipped: 0,
            failed: 0,
            deferred: 0,
            continued: false,
            volumes: Protection::default(),
            actions: Vec::new(),
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// A region whose run could not even start (inventory or listing failed).
    pub fn failed(job: Job, region: &str, dry_run: bool, error: String) -> RegionReport {
        let mut r = RegionReport::new(job, region, dry_run);
        r.failed = 1;
        r.errors.push(error);
        r
    }

    /// A report for a plan: its warnings kept, and each configuration that could not be
    /// evaluated (`failed_configs`: id -> error) reported as a failed action of its own.
    pub(crate) fn for_plan<'a>(
        job: Job,
        region: &str,
        opts: ReportOptions,
        warnings: &[String],
        failed_configs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> RegionReport {
        let mut report = RegionReport::new(job, region, opts.dry_run);
        report.warnings.extend(warnings.iter().cloned());
        for (id, error) in failed_configs {
            report.failed += 1;
            report.errors.push(format!("configuration {id}: {error}"));
            let mut a = ActionReport::new(
                Action::Match,
                &format!("configuration {id}"),
                "its instances could not be listed".into(),
            );
            a.config_id = Some(id.clone());
            a.error = Some(error.clone());
            a.outcome = Outcome::Failed;
            report.actions.push(a);
        }
        report
    }

    /// Lists a decision that is not a mutation (the caller counts it) when every action is kept.
    pub(crate) fn note(&mut self, opts: ReportOptions, action: impl FnOnce() -> ActionReport) {
        if opts.every_action {
            self.actions.push(action());
        }
    }

    /// Counts a mutation's outcome (`None`: not executed, a dry run) and lists it with what
    /// became of it (`describe` says what it was); true when it was done.
    ///
    /// Without `every_action` (a Lambda worker), a deletion, archive or copy that was done is
    /// counted, not listed: a large region deletes 100,000 snapshots in a run. A creation is
    /// always listed (the run checks that EC2 lists it before handing over), and so is every
    /// mutation that did not complete (it carries its error).
    pub(crate) fn mutation(
        &mut self,
        opts: ReportOptions,
        kind: Action,
        executed: Option<Executed>,
        describe: impl FnOnce(Action) -> ActionReport,
    ) -> bool {
        if !opts.every_action && kind != Action::Create && matches!(executed, Some(Executed::Done(_))) {
            return true;
        }
        let mut action = describe(kind);
        let done = match executed {
            None => {
                action.outcome = Outcome::Planned;
                false
            }
            Some(Executed::Done(id)) => {
                action.outcome = Outcome::Done;
                action.result_id = id;
                true
            }
            Some(Executed::Skipped(why)) => {
                self.skipped += 1;
                action.outcome = Outcome::Skipped;
                action.error = Some(why);
                false
            }
            Some(Executed::Failed(e)) => {
                self.failed += 1;
                action.outcome = Outcome::Failed;
                self.errors.push(format!("{}: {e}", action.resource));
                action.error = Some(e);
                false
            }
            Some(Executed::Deferred) => {
                self.deferred += 1;
                action.outcome = Outcome::Deferred;
                false
            }
        };
        self.actions.push(action);
        done
    }

    /// The deferred mutations will not be done by this run: no continuation takes them (a CLI
    /// run, a worker's last hop, a continuation that could not be invoked). Each becomes a
    /// failure, under one error saying how many and why (`why`: the cause, as a clause), so a
    /// volume left without its snapshot fails the run and raises the alarm; the next run finds
    /// it still to do.
    pub fn fail_deferred(&mut self, why: &str) {
        if self.deferred == 0 {
            return;
        }
        for a in self.actions.iter_mut().filter(|a| a.outcome == Outcome::Deferred) {
            a.outcome = Outcome::Failed;
            a.error = Some(format!("not started: {why}"));
        }
        self.errors.push(format!("{} action(s) not started: {why}; the next run takes them", self.deferred));
        self.failed += self.deferred;
        self.deferred = 0;
    }

    /// The snapshots this run created and EC2 acknowledged.
    pub fn created_ids(&self) -> impl Iterator<Item = &str> {
        self.actions
            .iter()
            .filter(|a| a.action == Action::Create && a.outcome == Outcome::Done)
            .filter_map(|a| a.result_id.as_deref())
    }

    /// The one-line summary: `us-east-1: created 2, not due 3, ignored 1, skipped 0, failed 0`.
    /// A dry run counts planned actions: `would create 2`.
    pub fn summary_line(&self) -> String {
        let kept = self.kept;
        let mut parts = match (self.job, self.dry_run) {
            (Job::Snapshot, false) => vec![format!("created {}", self.created), format!("not due {}", self.not_due)],
            (Job::Snapshot, true) => {
                vec![format!("would create {}", self.planned(Action::Create)), format!("not due {}", self.not_due)]
            }
            (Job::Clean, false) => {
                let mut parts = vec![format!("deleted {}", self.deleted)];
                if self.archived > 0 || self.actions.iter().any(|a| a.action == Action::Archive) {
                    parts.push(format!("archived {}", self.archived));
                }
                parts.push(format!("kept {kept}"));
                parts
            }
            (Job::Clean, true) => {
                let mut parts = vec![format!("would delete {}", self.planned(Action::Delete))];
                if self.planned(Action::Archive) > 0 {
                    parts.push(format!("would archive {}", self.planned(Action::Archive)));
                }
                parts.push(format!("kept {kept}"));
                parts
            }
            (Job::Replication, false) => {
                vec![
                    format!("copied {}", self.copied),
                    format!("deleted {}", self.deleted),
                    format!("in sync {}", self.in_sync),
                ]
            }
            (Job::Replication, true) => vec![
                format!("would copy {}", self.planned(Action::Copy)),
                format!("would delete {}", self.planned(Action::Delete)),
                format!("in sync {}", self.in_sync),
            ],
        };
        if self.locked > 0 {
            parts.push(format!("locked {}", self.locked));
        } else if self.dry_run && self.planned(Action::Lock) > 0 {
            parts.push(format!("would lock {}", self.planned(Action::Lock)));
        }
        if self.drilled > 0 {
            parts.push(format!("drilled {} ({} failed)", self.drilled, self.drills_failed));
        } else if self.dry_run && self.planned(Action::Drill) > 0 {
            parts.push(format!("would drill {}", self.planned(Action::Drill)));
        }
        parts.push(format!("ignored {}", self.ignored));
        parts.push(format!("skipped {}", self.skipped));
        parts.push(format!("failed {}", self.failed));
        if self.deferred > 0 {
            parts.push(format!("deferred {}", self.deferred));
        }
        format!("{}: {}", self.region, parts.join(", "))
    }

    /// `ebs-snapper drill`'s line: `us-east-1: drilled 2 (1 failed), skipped 0, failed 1`, or
    /// for a dry run `would drill 2`.
    pub fn drill_summary_line(&self) -> String {
        let drilled = if self.dry_run {
            format!("would drill {}", self.planned(Action::Drill))
        } else {
            format!("drilled {} ({} failed)", self.drilled, self.drills_failed)
        };
        let mut line = format!("{}: {drilled}, skipped {}, failed {}", self.region, self.skipped, self.failed);
        if self.deferred > 0 {
            line.push_str(&format!(", deferred {}", self.deferred));
        }
        line
    }

    fn planned(&self, action: Action) -> usize {
        self.actions.iter().filter(|a| a.action == action && a.outcome == Outcome::Planned).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        let mut r = RegionReport::new(Job::Snapshot, "us-east-1", false);
        r.created = 2;
        r.not_due = 3;
        r.ignored = 1;
        assert_eq!(r.summary_line(), "us-east-1: created 2, not due 3, ignored 1, skipped 0, failed 0");
        let mut d = RegionReport::new(Job::Snapshot, "us-west-2", true);
        let opts = ReportOptions { dry_run: true, every_action: true };
        d.mutation(opts, Action::Create, None, |kind| ActionReport::new(kind, "vol-1", "r".into()));
        assert_eq!(d.summary_line(), "us-west-2: would create 1, not due 0, ignored 0, skipped 0, failed 0");
        let f = RegionReport::failed(Job::Snapshot, "eu-west-1", false, "boom".into());
        assert_eq!(f.failed, 1);
        assert_eq!(f.summary_line(), "eu-west-1: created 0, not due 0, ignored 0, skipped 0, failed 1");
    }

    #[test]
    fn a_worker_counts_done_deletions_without_listing_them_but_lists_creations_and_failures() {
        let mut r = RegionReport::new(Job::Clean, "us-east-1", false);
        let opts = ReportOptions { dry_run: false, every_action: false };
        let a = |id: &'static str| move |kind| ActionReport::new(kind, id, "why".into());
        assert!(r.mutation(opts, Action::Delete, Some(Executed::Done(None)), a("snap-done")));
        assert!(r.mutation(opts, Action::Archive, Some(Executed::Done(None)), a("snap-archived")));
        assert!(!r.mutation(opts, Action::Delete, Some(Executed::Failed("denied".into())), a("snap-failed")));
        assert!(!r.mutation(opts, Action::Delete, Some(Executed::Deferred), a("snap-later")));
        assert!(r.mutation(opts, Action::Create, Some(Executed::Done(Some("snap-new".into()))), a("vol-1")));
        let listed: Vec<&str> = r.actions.iter().map(|a| a.resource.as_str()).collect();
        assert_eq!(listed, ["snap-failed", "snap-later", "vol-1"]);
        assert_eq!(r.created_ids().collect::<Vec<_>>(), ["snap-new"]);
        assert_eq!((r.failed, r.deferred), (1, 1));
    }

    #[test]
    fn deferred_work_nobody_takes_over_fails_each_action_under_one_error() {
        let mut r = RegionReport::new(Job::Snapshot, "us-east-1", false);
        let opts = ReportOptions { dry_run: false, every_action: false };
        let a = |id: &'static str| move |kind| ActionReport::new(kind, id, "due".into());
        r.fail_deferred("no time");
        assert_eq!((r.failed, r.deferred, r.errors.len()), (0, 0, 0), "nothing deferred, nothing failed");
        r.mutation(opts, Action::Create, Some(Executed::Failed("denied".into())), a("vol-1"));
        r.mutation(opts, Action::Create, Some(Executed::Deferred), a("vol-2"));
        r.mutation(opts, Action::Create, Some(Executed::Deferred), a("vol-3"));
        r.mutation(opts, Action::Create, Some(Executed::Done(Some("snap-4".into()))), a("vol-4"));
        r.fail_deferred("the lease was lost");
        assert_eq!((r.failed, r.deferred), (3, 0));
        assert_eq!(r.errors, ["vol-1: denied", "2 action(s) not started: the lease was lost; the next run takes them"]);
        let outcomes: Vec<(Outcome, Option<&str>)> =
            r.actions.iter().map(|a| (a.outcome, a.error.as_deref())).collect();
        assert_eq!(
            outcomes,
            [
                (Outcome::Failed, Some("denied")),
                (Outcome::Failed, Some("not started: the lease was lost")),
                (Outcome::Failed, Some("not started: the lease was lost")),
                (Outcome::Done, None),
            ]
        );
    }

    #[test]
    fn each_outcome_is_counted_and_named_as_in_the_json_output() {
        let mut r = RegionReport::new(Job::Clean, "us-east-1", false);
        let opts = ReportOptions { dry_run: false, every_action: true };
        let a = |id: &'static str| move |kind| ActionReport::new(kind, id, "expired".into());
        assert!(r.mutation(opts, Action::Delete, Some(Executed::Done(None)), a("snap-1")));
        assert!(!r.mutation(opts, Action::Delete, Some(Executed::Skipped("in use".into())), a("snap-2")));
        assert!(!r.mutation(opts, Action::Delete, Some(Executed::Failed("denied".into())), a("snap-3")));
        assert!(!r.mutation(opts, Action::Delete, Some(Executed::Deferred), a("snap-4")));
        assert_eq!((r.skipped, r.failed, r.deferred), (1, 1, 1));
        assert_eq!(r.errors, ["snap-3: denied"]);
        let doc = serde_json::to_value(&r).unwrap();
        assert_eq!(doc["job"], "clean");
        let outcomes: Vec<&str> =
            doc["actions"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["done", "skipped", "failed", "deferred"]);
        assert_eq!(doc["actions"][1]["error"], "in use");
        assert_eq!(serde_json::to_value(Action::NotDue).unwrap(), "not_due");
        assert_eq!(serde_json::to_value(Outcome::None).unwrap(), "none");
    }
}
