//! What a job did in one region: the summary the CLI prints and the Lambda workers return.

use serde::Serialize;

/// One action of a job, planned or done, with its reason and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionReport {
    /// `create`, `not_due`, `ignored`, `skipped`, `delete`, `keep`, `copy`...
    pub action: String,
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
    /// `planned` (dry run or not a mutation), `done`, `skipped`, `failed`, `deferred`.
    pub outcome: String,
    /// The snapshot created or copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The summary of one job in one region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RegionReport {
    pub job: String,
    pub region: String,
    pub dry_run: bool,
    /// Snapshots created (snapshot job).
    pub created: usize,
    /// Snapshots deleted (clean and replication jobs).
    pub deleted: usize,
    /// Snapshots copied (replication job).
    pub copied: usize,
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
    pub actions: Vec<ActionReport>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl RegionReport {
    pub fn new(job: &str, region: &str, dry_run: bool) -> RegionReport {
        RegionReport { job: job.to_string(), region: region.to_string(), dry_run, ..Default::default() }
    }

    /// A region whose run could not even start (inventory or listing failed).
    pub fn failed(job: &str, region: &str, dry_run: bool, error: String) -> RegionReport {
        let mut r = RegionReport::new(job, region, dry_run);
        r.failed = 1;
        r.errors.push(error);
        r
    }

    /// The one-line summary: `us-east-1: created 2, not due 3, ignored 1, skipped 0, failed 0`.
    /// A dry run counts planned actions: `would create 2`.
    pub fn summary_line(&self) -> String {
        let kept = self.kept;
        let mut parts = match (self.job.as_str(), self.dry_run) {
            ("snapshot", false) => vec![format!("created {}", self.created), format!("not due {}", self.not_due)],
            ("snapshot", true) => {
                vec![format!("would create {}", self.planned("create")), format!("not due {}", self.not_due)]
            }
            ("clean", false) => vec![format!("deleted {}", self.deleted), format!("kept {kept}")],
            ("clean", true) => vec![format!("would delete {}", self.planned("delete")), format!("kept {kept}")],
            (_, false) => {
                vec![
                    format!("copied {}", self.copied),
                    format!("deleted {}", self.deleted),
                    format!("in sync {}", self.in_sync),
                ]
            }
            (_, true) => vec![
                format!("would copy {}", self.planned("copy")),
                format!("would delete {}", self.planned("delete")),
                format!("in sync {}", self.in_sync),
            ],
        };
        parts.push(format!("ignored {}", self.ignored));
        parts.push(format!("skipped {}", self.skipped));
        parts.push(format!("failed {}", self.failed));
        if self.deferred > 0 {
            parts.push(format!("deferred {}", self.deferred));
        }
        format!("{}: {}", self.region, parts.join(", "))
    }

    fn planned(&self, action: &str) -> usize {
        self.actions.iter().filter(|a| a.action == action && a.outcome == "planned").count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        let mut r = RegionReport::new("snapshot", "us-east-1", false);
        r.created = 2;
        r.not_due = 3;
        r.ignored = 1;
        assert_eq!(r.summary_line(), "us-east-1: created 2, not due 3, ignored 1, skipped 0, failed 0");
        let mut d = RegionReport::new("snapshot", "us-west-2", true);
        d.actions.push(ActionReport {
            action: "create".into(),
            resource: "vol-1".into(),
            instance_id: None,
            device: None,
            config_id: None,
            reason: "r".into(),
            outcome: "planned".into(),
            result_id: None,
            error: None,
        });
        assert_eq!(d.summary_line(), "us-west-2: would create 1, not due 0, ignored 0, skipped 0, failed 0");
        let f = RegionReport::failed("snapshot", "eu-west-1", false, "boom".into());
        assert_eq!(f.failed, 1);
        assert_eq!(f.summary_line(), "eu-west-1: created 0, not due 0, ignored 0, skipped 0, failed 1");
    }
}
